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

use crate::admin::protocol::{Caller, CertCaller, Request, SharedStatus};
use crate::config::AdminApiSection;
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
/// An open connection with no request is closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections of one administrator certificate subject at once.
const MAX_CONNECTIONS_PER_IDENTITY: usize = 16;

/// Starts the admin API; it stops when `shutdown` is set.
pub fn spawn(
    cfg: &AdminApiSection,
    handler: Handler,
    note: Note,
    shutdown: Arc<AtomicBool>,
    status: SharedStatus,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    // The same trust store as the ingest API when both name the same CA
    // and CRL files, with the same reload: a revoked reviewer's open
    // connection is cut off like a revoked pusher's.
    let plane = crate::http::server::Plane::new(
        "admin API",
        &cfg.cert,
        &cfg.key,
        &cfg.client_ca,
        &cfg.crl,
        Duration::from_secs(cfg.trust_reload_interval_s),
    )
    .map_err(|e| DaemonError::Config(format!("[admin_api]: {e}")))?;
    let limits = crate::http::server::Limits {
        handshake: TIMEOUT,
        header: TIMEOUT,
        idle: IDLE_TIMEOUT,
        max_connections: MAX_CONNECTIONS,
        max_connections_per_identity: MAX_CONNECTIONS_PER_IDENTITY,
        max_handshakes_per_address: MAX_CONNECTIONS,
    };
    let hooks: Arc<dyn crate::http::server::Hooks> = Arc::new(AdminHooks {
        shutdown,
        status,
        note: note.clone(),
        window: std::sync::Mutex::new(RefusalWindow::default()),
    });
    let thread =
        crate::http::server::spawn("ferry-admin-api", cfg.listen, move |listener| async move {
            crate::http::server::serve(listener, plane, limits, hooks, move |conn, req| {
                let id = &conn.identity;
                let caller = Caller::certificate(CertCaller {
                    common_name: id.common_name.clone().unwrap_or_else(|| id.subject.clone()),
                    // A certificate that names no one is a person of its own.
                    person: id
                        .person()
                        .unwrap_or_else(|| format!("cert:{}", id.fingerprint_sha256)),
                    fingerprint: id.fingerprint_sha256.clone(),
                    role: id.role.clone(),
                });
                handle(req, caller, handler.clone(), note.clone())
            })
            .await;
            None
        })?;
    tracing::info!(listen = %cfg.listen, "HTTPS admin API listening (administrator certificates required)");
    Ok(thread)
}

/// Connection-level refusals audited one by one in a minute; beyond this
/// they are counted and summed into the next record, so that a flood of
/// hostile handshakes cannot flood the audit log.
const REFUSALS_AUDITED_PER_MINUTE: u64 = 100;

#[derive(Default)]
struct RefusalWindow {
    started: Option<std::time::Instant>,
    audited: u64,
    summed: u64,
}

/// The admin plane's connection-level events (a failed handshake, a cap,
/// a certificate revoked while its connection was open): counted, logged
/// and audited as `client.refused` with `plane = admin_api`. Requests are
/// audited by the gate and by `handle`.
struct AdminHooks {
    shutdown: Arc<AtomicBool>,
    /// Where a failed reload of the admin API's TLS files is alarmed.
    status: SharedStatus,
    note: Note,
    window: std::sync::Mutex<RefusalWindow>,
}

impl crate::http::server::Hooks for AdminHooks {
    fn refused(&self, r: crate::http::server::Refused<'_>) {
        crate::admin::gate::count_refusal("admin_api", r.reason);
        tracing::warn!(peer = %r.peer, reason = r.reason, detail = %r.detail, "admin API client refused");
        let summed = {
            let Ok(mut w) = self.window.lock() else {
                return;
            };
            let now = std::time::Instant::now();
            if w.started
                .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(60))
            {
                w.started = Some(now);
                w.audited = 0;
            }
            if w.audited >= REFUSALS_AUDITED_PER_MINUTE {
                w.summed += 1;
                return;
            }
            w.audited += 1;
            std::mem::take(&mut w.summed)
        };
        let actor = match r.identity {
            Some(id) => crate::ops::audit_trail::actor_of(id),
            None => {
                ferry_audit::Actor::new(format!("tls-peer:{}", r.peer), ferry_audit::Role::None)
            }
        };
        let mut record = ferry_audit::AuditRecord::new(
            ferry_audit::EventKind::ClientRefused,
            actor,
            ferry_audit::Outcome::Refused,
        )
        .reason(r.reason)
        .detail("plane", "admin_api")
        .detail("peer", r.peer.to_string())
        .detail("detail", r.detail.chars().take(200).collect::<String>());
        if summed > 0 {
            record = record.detail(
                "earlier_refusals_not_audited_one_by_one",
                summed.to_string(),
            );
        }
        (self.note)(record);
    }

    fn reloaded(&self, r: Result<bool, DaemonError>) {
        crate::http::server::report_reload(&self.status, "admin API", r);
    }

    fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
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
        crate::admin::gate::count_refusal(
            "admin_api",
            match status {
                StatusCode::NOT_FOUND => "no_such_endpoint",
                StatusCode::METHOD_NOT_ALLOWED => "method",
                StatusCode::REQUEST_TIMEOUT => "body_timeout",
                StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                _ => "bad_request",
            },
        );
        if let Some(c) = &caller.cert {
            let record = ferry_audit::AuditRecord::new(
                ferry_audit::EventKind::AdminAction,
                crate::admin::gate::certificate_actor(c),
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
        status: SharedStatus,
    ) -> Result<Planes, DaemonError> {
        let control = {
            let h = handler.clone();
            crate::admin::socket::serve(
                &cfg.control_socket(),
                socket_mode,
                shutdown.clone(),
                move |caller, req| h(caller, req),
            )?
        };
        let api = match &cfg.admin_api {
            Some(a) => Some(spawn(a, handler, note, shutdown, status)?),
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
