//! Forwarding records to a central syslog (RFC 5424) over a Unix datagram
//! or stream socket, or TCP, with a durable cursor: the cursor file holds
//! the last sequence number the destination accepted, and is advanced only
//! after a batch was sent, so an outage never skips a record (a record may
//! be sent twice after a crash between send and cursor write; the `seq` in
//! its structured data lets the collector drop duplicates). TLS is not
//! implemented yet.

use crate::error::AuditError;
use crate::query::{scan, to_syslog, Filter};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `unix:/dev/log` — one message per datagram.
    UnixDatagram(PathBuf),
    /// `unix-stream:/path` — octet-counted frames (RFC 6587).
    UnixStream(PathBuf),
    /// `tcp:host:port` — octet-counted frames (RFC 6587).
    Tcp(String),
}

impl std::str::FromStr for Target {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, AuditError> {
        if let Some(p) = s.strip_prefix("unix-stream:") {
            Ok(Target::UnixStream(p.into()))
        } else if let Some(p) = s.strip_prefix("unix:") {
            Ok(Target::UnixDatagram(p.into()))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            Ok(Target::Tcp(a.into()))
        } else {
            Err(AuditError::Usage(format!(
                "forward target {s:?}: use unix:/dev/log, unix-stream:/path or tcp:host:port"
            )))
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::UnixDatagram(p) => write!(f, "unix:{}", p.display()),
            Target::UnixStream(p) => write!(f, "unix-stream:{}", p.display()),
            Target::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

enum Conn {
    Dgram(std::os::unix::net::UnixDatagram),
    Stream(Box<dyn Write>),
}

/// Sends records after the cursor.
pub struct Forwarder {
    dir: PathBuf,
    target: Target,
    cursor: PathBuf,
    hostname: String,
}

/// The forwarding cursor is no secret; like the log it may be read by the
/// audit group.
const CURSOR_MODE: u32 = 0o640;

/// Records sent per cursor update.
const BATCH_RECORDS: usize = 512;

impl Forwarder {
    /// A forwarder for the log in `dir`; `cursor` is its cursor file.
    pub fn new(dir: &Path, target: Target, cursor: &Path) -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "-".into());
        Forwarder {
            dir: dir.to_path_buf(),
            target,
            cursor: cursor.to_path_buf(),
            hostname,
        }
    }

    /// The last sequence number forwarded (0 if none).
    pub fn cursor(&self) -> Result<u64, AuditError> {
        match std::fs::read_to_string(&self.cursor) {
            Ok(t) => t
                .trim()
                .parse()
                .map_err(|_| AuditError::corrupt(&self.cursor, "cursor is not a number")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(AuditError::io("reading cursor", &self.cursor, e)),
        }
    }

    fn store_cursor(&self, seq: u64) -> Result<(), AuditError> {
        // Replaced whole or not at all: a torn cursor would re-send or
        // skip records after a crash.
        ferry_common::durable::write(
            &self.cursor,
            format!("{seq}\n").as_bytes(),
            CURSOR_MODE,
            ferry_common::durable::Replace::Atomically,
        )
        .map_err(AuditError::write)
    }

    fn connect(&self) -> Result<Conn, std::io::Error> {
        match &self.target {
            Target::UnixDatagram(p) => {
                let s = std::os::unix::net::UnixDatagram::unbound()?;
                s.connect(p)?;
                Ok(Conn::Dgram(s))
            }
            Target::UnixStream(p) => Ok(Conn::Stream(Box::new(
                std::os::unix::net::UnixStream::connect(p)?,
            ))),
            Target::Tcp(a) => {
                let s = std::net::TcpStream::connect(a.as_str())?;
                s.set_write_timeout(Some(Duration::from_secs(10)))?;
                Ok(Conn::Stream(Box::new(s)))
            }
        }
    }

    /// Sends every record after the cursor; returns how many were sent.
    pub fn forward_once(&self) -> Result<u64, AuditError> {
        let start = self.cursor()?;
        let mut conn: Option<Conn> = None;
        let mut batch: Vec<(u64, String)> = Vec::with_capacity(BATCH_RECORDS);
        let mut sent = 0u64;
        let mut failure: Option<AuditError> = None;
        let filter = Filter {
            after_seq: Some(start),
            ..Filter::default()
        };
        scan(&self.dir, &filter, |r| {
            batch.push((r.seq, to_syslog(&r, &self.hostname)));
            if batch.len() < BATCH_RECORDS {
                return true;
            }
            match self.send_batch(&mut conn, &batch) {
                Ok(()) => {
                    sent += batch.len() as u64;
                    batch.clear();
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if !batch.is_empty() {
            self.send_batch(&mut conn, &batch)?;
            sent += batch.len() as u64;
        }
        Ok(sent)
    }

    fn send_batch(
        &self,
        conn: &mut Option<Conn>,
        batch: &[(u64, String)],
    ) -> Result<(), AuditError> {
        let ferr = |e| AuditError::Forward {
            target: self.target.to_string(),
            source: e,
        };
        if conn.is_none() {
            *conn = Some(self.connect().map_err(ferr)?);
        }
        let Some(c) = conn.as_mut() else {
            return Ok(());
        };
        for (_, line) in batch {
            match c {
                Conn::Dgram(s) => {
                    s.send(line.as_bytes()).map_err(ferr)?;
                }
                Conn::Stream(w) => {
                    write!(w, "{} {}", line.len(), line).map_err(ferr)?;
                }
            }
        }
        if let Conn::Stream(w) = c {
            w.flush().map_err(ferr)?;
        }
        if let Some((last, _)) = batch.last() {
            self.store_cursor(*last)?;
        }
        Ok(())
    }

    /// Forwards until `stop` is set, polling every `poll`; errors (outages)
    /// are retried with the cursor kept.
    pub fn run(&self, stop: &std::sync::atomic::AtomicBool, poll: Duration) {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = self.forward_once();
            std::thread::sleep(poll);
        }
    }
}
