//! The admin plane over HTTPS, for administrators on another host.
//!
//! `POST /v1/admin` takes the same JSON request as the control socket
//! (`{"cmd": "status"}`, `{"cmd": "channel_stop", "channel": …, "reason":
//! …}`, …) and answers with the same JSON. The caller is whoever its
//! client certificate says, verified against `[admin_api] client_ca` (and
//! CRLs); the role is the one that certificate carries. The same gate as
//! the control socket authorizes and audits every request, so a role
//! cannot do another's job here either.
//!
//! Answers: `200` done, `403` refused by the gate (recorded), `409` allowed
//! but failed (the JSON says why), `400` a request that is not JSON of a
//! known command, `404` any other path, `405` any other method, `408` a
//! body too slow. Those four are recorded too, as a refused `admin.action`
//! under the certificate with the status, so probing the API leaves a
//! trace.

use crate::config::AdminApiSection;
use crate::control::{Caller, CertCaller, Request};
use crate::DaemonError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What answers a request: the admin gate in front of the side's handler.
pub type Handler = Arc<dyn Fn(Caller, Request) -> serde_json::Value + Send + Sync>;

/// Writes an audit record that does not gate anything (a request refused
/// before it reached the gate).
pub type Note = Arc<dyn Fn(ferry_audit::AuditRecord) + Send + Sync>;

/// Largest request body.
const MAX_REQUEST_BYTES: usize = 64 << 10;
/// Connections served at once (administrators are few).
const MAX_CONNECTIONS: usize = 64;
/// TLS handshake, request head and body each get this long.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the admin API; it stops when `shutdown` is set.
pub fn spawn(
    cfg: &AdminApiSection,
    handler: Handler,
    note: Note,
    shutdown: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    let tls = crate::https_server::tls_config(&cfg.cert, &cfg.key, &cfg.client_ca, &cfg.crl)
        .map_err(|e| DaemonError::Config(format!("[admin_api]: {e}")))?;
    let thread =
        crate::https_server::spawn("ferry-admin-api", cfg.listen, move |listener| async move {
            serve(listener, tls, handler, note, shutdown).await;
            None
        })?;
    tracing::info!(listen = %cfg.listen, "HTTPS admin API listening (administrator certificates required)");
    Ok(thread)
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handler: Handler,
    note: Note,
    shutdown: Arc<AtomicBool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin API listener");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while !shutdown.load(Ordering::Relaxed) {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tick.tick() => continue,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "admin API busy; connection closed");
            continue;
        };
        let (acceptor, handler, note) = (acceptor.clone(), handler.clone(), note.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, reason = %e, "admin API TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let caller = match ferry_certs::Identity::from_peer_certificates(
                tls.get_ref().1.peer_certificates(),
            ) {
                Ok(Some(id)) => Caller::certificate(CertCaller {
                    common_name: id.common_name.clone().unwrap_or_else(|| id.subject.clone()),
                    // A certificate that names no one is a person of its own.
                    person: id
                        .person()
                        .unwrap_or_else(|| format!("cert:{}", id.fingerprint_sha256)),
                    fingerprint: id.fingerprint_sha256.clone(),
                    role: id.role.clone(),
                }),
                Ok(None) | Err(_) => {
                    tracing::warn!(%peer, "admin API client certificate unreadable; closing");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let (caller, handler, note) = (caller.clone(), handler.clone(), note.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(handle(req, caller, handler, note).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(
    req: hyper::Request<Incoming>,
    caller: Caller,
    handler: Handler,
    note: Note,
) -> Response<Full<Bytes>> {
    let what = format!("{} {}", req.method(), req.uri().path());
    // Answers the gate never saw are recorded here: refused, under the
    // certificate, with the status and what was asked.
    let refuse = |status: StatusCode, msg: String| {
        if let Some(c) = &caller.cert {
            let record = ferry_audit::AuditRecord::new(
                ferry_audit::EventKind::AdminAction,
                crate::admin::certificate_actor(c),
                ferry_audit::Outcome::Refused,
            )
            .reason(msg.clone())
            .detail("request", what.chars().take(200).collect::<String>())
            .detail("status", status.as_u16().to_string())
            .detail("via", "admin_api");
            note(record);
        }
        tracing::warn!(request = %what, status = status.as_u16(), "admin API request refused: {msg}");
        json(status, &serde_json::json!({ "error": msg }))
    };
    if req.uri().path() != "/v1/admin" {
        return refuse(
            StatusCode::NOT_FOUND,
            "no such endpoint: POST /v1/admin".into(),
        );
    }
    if req.method() != Method::POST {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST /v1/admin with a JSON request".into(),
        );
    }
    let body = Limited::new(req.into_body(), MAX_REQUEST_BYTES);
    let bytes = match tokio::time::timeout(TIMEOUT, body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("request body unreadable or over {MAX_REQUEST_BYTES} bytes: {e}"),
            )
        }
        Err(_) => return refuse(StatusCode::REQUEST_TIMEOUT, "request body too slow".into()),
    };
    let request: Request = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "bad request: {e}; send the control socket's JSON, e.g. {{\"cmd\":\"status\"}}"
                ),
            )
        }
    };
    // The handler takes locks and writes redb and the audit log.
    let answer = match tokio::task::spawn_blocking(move || handler(caller, request)).await {
        Ok(v) => v,
        Err(e) => {
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({ "error": e.to_string() }),
            )
        }
    };
    let status = if answer.get("refused").and_then(|r| r.as_bool()) == Some(true) {
        StatusCode::FORBIDDEN
    } else if answer.get("error").is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    json(status, &answer)
}

/// The admin plane's listeners: the control socket, and the admin API
/// when `[admin_api]` is configured, both in front of the same handler.
pub struct Planes {
    control: std::thread::JoinHandle<()>,
    api: Option<std::thread::JoinHandle<()>>,
}

impl Planes {
    /// Starts them.
    pub fn start(
        cfg: &crate::config::Config,
        socket_mode: u32,
        shutdown: Arc<AtomicBool>,
        handler: Handler,
        note: Note,
    ) -> Result<Planes, DaemonError> {
        let control = {
            let h = handler.clone();
            crate::control::serve(
                &cfg.control_socket(),
                socket_mode,
                shutdown.clone(),
                move |caller, req| h(caller, req),
            )?
        };
        let api = match &cfg.admin_api {
            Some(a) => Some(spawn(a, handler, note, shutdown)?),
            None => None,
        };
        Ok(Planes { control, api })
    }

    /// Waits for both (after `shutdown` was set).
    pub fn join(self) {
        let _ = self.control.join();
        if let Some(a) = self.api {
            let _ = a.join();
        }
    }
}
