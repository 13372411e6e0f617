//! The systemd notification protocol (`sd_notify`) without libsystemd:
//! one datagram per message to the socket named by `NOTIFY_SOCKET`.
//! `READY=1` once the daemon serves, `WATCHDOG=1` while its main loop
//! turns, `STOPPING=1` on the way out. Without `NOTIFY_SOCKET` (not under
//! systemd, or `Type=simple`) nothing is sent.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connected notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
}

impl Notifier {
    /// Connects to `$NOTIFY_SOCKET` (a path, or `@name` for an abstract
    /// socket). Call it before the hardening: Landlock may forbid the
    /// path later and the environment is sanitized.
    pub fn from_env() -> std::io::Result<Option<Notifier>> {
        let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let target = target.to_string_lossy().into_owned();
        let addr = if let Some(name) = target.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else {
            SocketAddr::from_pathname(&target)?
        };
        let socket = UnixDatagram::unbound()?;
        socket.connect_addr(&addr)?;
        Ok(Some(Notifier { socket }))
    }

    /// Sends one message, e.g. `READY=1` or `STATUS=...`.
    pub fn notify(&self, message: &str) -> std::io::Result<()> {
        self.socket.send(message.as_bytes()).map(|_| ())
    }

    /// The socket's descriptor, to keep it open across
    /// [`crate::fds::close_inherited_fds`].
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// The watchdog interval systemd expects pings within
/// (`WatchdogSec=`), when it is meant for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_as_datagrams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let addr = SocketAddr::from_pathname(&path).unwrap();
        let socket = UnixDatagram::unbound().unwrap();
        socket.connect_addr(&addr).unwrap();
        let n = Notifier { socket };
        n.notify("READY=1").unwrap();
        n.notify("WATCHDOG=1").unwrap();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }
}
