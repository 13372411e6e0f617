//! What the two HTTPS servers (the ingest API and the admin API) share:
//! a TLS configuration that requires client certificates, and a listener
//! served on its own thread by a single-threaded runtime.

use crate::DaemonError;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The server's TLS configuration: `cert` and `key`, and client
/// certificates mandatory, from the CAs in `client_ca`, checked against
/// `crl`.
pub(crate) fn tls_config(
    cert: &Path,
    key: &Path,
    client_ca: &[PathBuf],
    crl: &[PathBuf],
) -> Result<Arc<rustls::ServerConfig>, DaemonError> {
    let cas: Vec<&Path> = client_ca.iter().map(PathBuf::as_path).collect();
    let crls: Vec<&Path> = crl.iter().map(PathBuf::as_path).collect();
    let trust = ferry_certs::TrustStore::load(&cas, &crls)?;
    Ok(ferry_certs::server_config(cert, key, &trust)?)
}

/// Binds `listen` now (so a taken port stops `ferryd` at start) and runs
/// `serve` on a thread named `thread`. `serve` may return a thread to join
/// once its runtime, and every task it still held, is gone.
pub(crate) fn spawn<F, Fut>(
    thread: &str,
    listen: SocketAddr,
    serve: F,
) -> Result<std::thread::JoinHandle<()>, DaemonError>
where
    F: FnOnce(std::net::TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = Option<std::thread::JoinHandle<()>>>,
{
    let addr = PathBuf::from(listen.to_string());
    let listener = std::net::TcpListener::bind(listen).map_err(DaemonError::io(&addr))?;
    listener
        .set_nonblocking(true)
        .map_err(DaemonError::io(&addr))?;
    let name = thread.to_owned();
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, thread = %name, "runtime failed to start");
                    return;
                }
            };
            let after = rt.block_on(serve(listener));
            drop(rt);
            if let Some(t) = after {
                let _ = t.join();
            }
        })
        .map_err(DaemonError::io(Path::new("server thread")))
}
