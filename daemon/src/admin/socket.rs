//! The local control socket: `STATE_DIR/control.sock` (mode 0600 without
//! `[admin]`), one JSON request per connection answered with one JSON
//! document. The kernel names the caller (`SO_PEERCRED`); the admin
//! plane's gate decides what it may ask.

use crate::admin::protocol::{Caller, Request};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MAX_REQUEST_BYTES: u64 = 4096;

/// Control-socket errors.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket could not be created or reached.
    #[error("control socket {path}: {source} (is ferryd running with this state_dir?)")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The socket exists but this account may not connect to it.
    #[error("control socket {path}: permission denied for this account; with [admin] the socket is for the administrators' group: ask the security administrator for a role in [admin] and membership of the socket's group (without [admin] only root and the service user may connect)")]
    Denied {
        /// The socket path.
        path: PathBuf,
    },
    /// There is no socket there.
    #[error("no control socket at {path}: is ferryd running with this configuration (`[admin] socket`, else STATE_DIR/control.sock)?")]
    Missing {
        /// The socket path.
        path: PathBuf,
    },
    /// The daemon's answer was not understood.
    #[error("control socket {path}: bad answer: {what}")]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
}

/// Answers requests on `socket` (created with `mode`) until `shutdown` is
/// set. `handle` turns a request from a caller into a JSON answer; the
/// admin plane's gate decides what the caller may ask.
pub fn serve(
    socket: &Path,
    mode: u32,
    shutdown: Arc<AtomicBool>,
    handle: impl Fn(Caller, Request) -> serde_json::Value + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, ControlError> {
    let path = socket.to_path_buf();
    let err = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let handle_path = path.clone();
    Ok(std::thread::spawn(move || {
        while !shutdown.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = answer(stream, &handle) {
                        tracing::warn!(socket = %handle_path.display(), error = %e, "control request failed");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        let _ = std::fs::remove_file(&handle_path);
    }))
}

fn answer(
    stream: UnixStream,
    handle: &impl Fn(Caller, Request) -> serde_json::Value,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let cred = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(std::io::Error::from)?;
    let caller = Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
        cert: None,
    };
    let mut line = String::new();
    BufReader::new(std::io::Read::take(&stream, MAX_REQUEST_BYTES)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => handle(caller, req),
        Err(e) => serde_json::json!({ "error": format!("bad request: {e}") }),
    };
    let mut w = &stream;
    serde_json::to_writer(&mut w, &reply).map_err(std::io::Error::other)?;
    w.write_all(b"\n")
}

/// Sends one request to a running daemon's control socket
/// ([`crate::config::Config::control_socket`]) and returns its answer.
pub fn request(socket: &Path, req: &Request) -> Result<serde_json::Value, ControlError> {
    let path = socket.to_path_buf();
    let err = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = UnixStream::connect(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => ControlError::Denied { path: path.clone() },
        std::io::ErrorKind::NotFound => ControlError::Missing { path: path.clone() },
        _ => err(e),
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(err)?;
    let mut text = serde_json::to_string(req).map_err(|e| ControlError::Protocol {
        path: path.clone(),
        what: e.to_string(),
    })?;
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(err)?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).map_err(err)?;
    serde_json::from_str(&line).map_err(|e| ControlError::Protocol {
        path: path.clone(),
        what: e.to_string(),
    })
}
