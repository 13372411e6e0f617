//! The HTTPS ingest API of the ingress side: intranet systems push packages
//! with a client certificate (mTLS, mandatory), the body streamed to disk,
//! and get `202` only once the package is durable in the queue, or in a
//! hold: for reviewers (`awaiting_approval`) or, while its channel's time
//! window is closed, until it opens (`awaiting_window`, with `hold_until`).
//!
//! `POST /v1/channels/{channel}/packages` with the file name in
//! `X-Ferry-File-Name`, the type in `Content-Type` and an optional
//! `X-Ferry-Digest: sha256=HEX` (or `sm3=HEX` on a GM link) that the server
//! checks. `GET /v1/packages/{id}` answers what the ingress side knows.
//! It runs on its own thread with a single-threaded tokio runtime, so the
//! link's send loop keeps its core.

pub(crate) mod accept;

use crate::config::IngestSection;
use crate::ingress::shared::Shared;
use crate::ops::activity::PACKAGE_TARGET;
use crate::state::store::QueueState;
use crate::DaemonError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Longest accepted content type (the manifest's limit).
const MAX_CONTENT_TYPE_BYTES: usize = ferry_protocol::manifest::MAX_CONTENT_TYPE_LEN;
/// How much of a refused request's body is read (after the answer went
/// out) so that the client, still sending, sees the answer instead of a
/// reset connection; and for how long at most.
const EARLY_REFUSAL_DRAIN_BYTES: usize = 4 << 20;
const EARLY_REFUSAL_DRAIN_TIME: Duration = Duration::from_secs(2);
/// What `Retry-After` says while a channel is stopped.
const STOPPED_RETRY_AFTER_S: u64 = 300;
/// What `Retry-After` says when the disk is low.
const RETRY_AFTER_S: u64 = 60;
/// How long refusals are summed up before the flood check starts over.
const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// Starts the ingest API on its own thread. Binding and loading the
/// certificates happen before this returns, so a bad `[ingest]` section
/// stops `ferryd` at start with the file named.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    cfg: IngestSection,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    let plane = crate::http::server::Plane::new(
        "ingest API",
        &cfg.cert,
        &cfg.key,
        &cfg.client_ca,
        &cfg.crl,
        Duration::from_secs(cfg.trust_reload_interval_s),
    )?;
    let listen = cfg.listen;
    let thread = crate::http::server::spawn("ferry-ingest", listen, move |listener| {
        // The committer is joined after the runtime is dropped: that drops
        // every request's handle on it, so it finishes what it was given
        // and ends.
        serve(shared, cfg, plane, listener)
    })?;
    tracing::info!(listen = %listen, "HTTPS ingest API listening (client certificates required)");
    Ok(thread)
}

/// How much of a streamed body past the package limit is read and
/// discarded before the `413` is sent, so that a client still sending sees
/// the answer rather than a reset connection.
const OVERSIZE_DRAIN_BYTES: u64 = 8 << 20;
/// Every this many body bytes, the upload's write-back is started (see
/// [`ferry_hardening::writeback`]).
const WRITEBACK_STEP_BYTES: u64 = 8 << 20;
/// A body up to this size is gathered in memory and written by the
/// committer; a larger one goes to its file as it comes. Why: each
/// `tokio::fs` call is a hand-off to a blocking thread and back, and a
/// small push paid four of them (open, write, flush, close) and a rename.
/// Bounds what pushes hold in memory at `max_connections` × 64 KiB (32 MiB
/// with the default 512 connections).
const SMALL_BODY_BYTES: usize = 64 << 10;

/// What every request handler needs besides the shared state.
struct Api {
    cfg: Arc<IngestSection>,
    /// Where finished uploads go to be made durable and queued together.
    committer: crate::ingress::ingest::accept::Committer,
    /// The queue filesystem's free space, for the `min_free_bytes` check.
    queue_free: FreeSpace,
}

/// How old a free-space figure may be and still let a push through.
const FREE_SPACE_MAX_AGE: Duration = Duration::from_millis(100);

/// The free space of a directory's filesystem for a check made per push:
/// measured with `statvfs(2)` at most every [`FREE_SPACE_MAX_AGE`], and
/// again whenever the figure says a push does not fit, so a refusal always
/// rests on a fresh measurement. Each push let through takes its declared
/// size off the figure, so pushes between two measurements cannot share
/// the same free bytes. Why: two `statvfs` per push (this one and the
/// audit log's) were about 2 % of the small-package path.
struct FreeSpace {
    dir: PathBuf,
    /// When measured, and the bytes free then less what pushes since took.
    figure: std::sync::Mutex<Option<(Instant, u64)>>,
}

impl FreeSpace {
    fn new(dir: PathBuf) -> FreeSpace {
        FreeSpace {
            dir,
            figure: std::sync::Mutex::new(None),
        }
    }

    /// Whether `need` bytes (the floor and the push's declared size) are
    /// free; if so, `declared` is taken off the figure. A filesystem that
    /// cannot be measured refuses nothing (as before the cache): the
    /// upload itself then meets a full disk and is refused whole.
    fn fits(&self, need: u64, declared: u64, now: Instant) -> bool {
        let mut figure = self.figure.lock().unwrap_or_else(|p| p.into_inner());
        let cached = figure.filter(|(at, free)| {
            now.saturating_duration_since(*at) < FREE_SPACE_MAX_AGE && *free >= need
        });
        let free = match cached {
            Some((_, free)) => free,
            None => match free_bytes(&self.dir) {
                Some(free) => {
                    *figure = Some((now, free));
                    free
                }
                None => {
                    *figure = None;
                    return true;
                }
            },
        };
        if free < need {
            return false;
        }
        if let Some((_, f)) = figure.as_mut() {
            *f = f.saturating_sub(declared);
        }
        true
    }
}

/// The ingest plane's connection-level events: refusals counted, audited
/// and alarmed; reload failures alarmed.
struct IngestHooks {
    shared: Arc<Shared>,
    alarm_per_minute: u64,
}

impl crate::http::server::Hooks for IngestHooks {
    fn refused(&self, r: crate::http::server::Refused<'_>) {
        record_refusal(
            &self.shared,
            self.alarm_per_minute,
            Refusal {
                reason: r.reason,
                status: None,
                peer: Some(r.peer),
                identity: r.identity,
                actor: None,
                channel: None,
                detail: r.detail,
                audited: false,
            },
        );
    }

    fn reloaded(&self, r: Result<bool, DaemonError>) {
        crate::http::server::report_reload(&self.shared.status, "ingest", r);
    }

    fn tick(&self) {
        refusal_tick(&self.shared, self.alarm_per_minute);
    }

    fn shutting_down(&self) -> bool {
        self.shared.shutdown.load(Ordering::Relaxed)
    }
}

/// Serves until shutdown; returns the committer thread to join once the
/// runtime (and with it every handle on the committer) is gone.
async fn serve(
    shared: Arc<Shared>,
    cfg: IngestSection,
    plane: Arc<crate::http::server::Plane>,
    listener: std::net::TcpListener,
) -> Option<std::thread::JoinHandle<()>> {
    remove_unfinished_uploads(&shared.queue_dir);
    let limits = crate::http::server::Limits::from(&cfg.limits);
    let (committer, committer_thread) =
        match crate::ingress::ingest::accept::spawn(shared.clone(), limits.max_connections) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "ingest API committer");
                return None;
            }
        };
    let hooks: Arc<dyn crate::http::server::Hooks> = Arc::new(IngestHooks {
        shared: shared.clone(),
        alarm_per_minute: cfg.refusal_alarm_per_minute,
    });
    let api = Arc::new(Api {
        cfg: Arc::new(cfg),
        committer,
        queue_free: FreeSpace::new(shared.queue_dir.clone()),
    });
    crate::http::server::serve(listener, plane, limits, hooks, move |conn, req| {
        let (shared, api) = (shared.clone(), api.clone());
        async move { handle(&shared, &api, &conn, req).await }
    })
    .await;
    Some(committer_thread)
}

/// One client refusal: counted by reason, audited (unless the policy or
/// guard record already says it), alarmed when they flood.
pub(crate) struct Refusal<'a> {
    /// Stable label (metrics and audit).
    pub(crate) reason: &'static str,
    /// The HTTP status answered, if any.
    pub(crate) status: Option<u16>,
    pub(crate) peer: Option<std::net::SocketAddr>,
    pub(crate) identity: Option<&'a ferry_certs::Identity>,
    /// Who, when not a certificate (a spool).
    pub(crate) actor: Option<crate::ops::audit_trail::Actor>,
    /// The channel asked for (client-chosen: recorded escaped).
    pub(crate) channel: Option<&'a str>,
    /// What was refused and why (may quote client input: recorded escaped
    /// and shortened).
    pub(crate) detail: String,
    /// A policy decision or guard record already audits it.
    pub(crate) audited: bool,
}

/// Refusals of the current minute.
struct RefusalWindow {
    started: std::time::Instant,
    count: u64,
    /// Refusals beyond the threshold, not audited one by one, by reason.
    summed: std::collections::BTreeMap<&'static str, u64>,
}

static REFUSALS: std::sync::Mutex<Option<RefusalWindow>> = std::sync::Mutex::new(None);

/// Prefix of the flood alarm.
const REFUSAL_ALARM: &str = "ingest refusals:";

/// Client-chosen text for a log or audit record: control, format and
/// bidirectional characters escaped, at most `max` characters.
pub(crate) fn escaped(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// Counts, audits and (on a flood) alarms a refusal.
pub(crate) fn record_refusal(s: &Shared, alarm_per_minute: u64, r: Refusal<'_>) {
    crate::admin::protocol::update(&s.status, |st| {
        *st.client_refusals.entry(r.reason.to_owned()).or_default() += 1;
    });
    let detail = escaped(&r.detail, 200);
    let who = match (r.identity, &r.actor) {
        (Some(id), _) => id.subject.clone(),
        (None, Some(a)) => a.id.clone(),
        (None, None) => "(no certificate yet)".into(),
    };
    tracing::warn!(reason = r.reason, status = ?r.status, peer = ?r.peer, identity = %who, detail = %detail, "client refused");
    // One by one up to the threshold per window; beyond it, summed up.
    let one_by_one = {
        let Ok(mut w) = REFUSALS.lock() else { return };
        let w = w.get_or_insert_with(|| RefusalWindow {
            started: std::time::Instant::now(),
            count: 0,
            summed: Default::default(),
        });
        w.count += 1;
        if w.count == alarm_per_minute {
            raise_flood_alarm(s, w.count);
        }
        if w.count > alarm_per_minute && !r.audited {
            *w.summed.entry(r.reason).or_default() += 1;
            false
        } else {
            true
        }
    };
    if r.audited || !one_by_one {
        return;
    }
    let actor = match (r.identity, r.actor) {
        (Some(id), _) => crate::ops::audit_trail::actor_of(id),
        (None, Some(a)) => a,
        (None, None) => crate::ops::audit_trail::Actor::new(
            format!(
                "tls-peer:{}",
                r.peer.map(|p| p.to_string()).unwrap_or_default()
            ),
            crate::ops::audit_trail::Role::Sender,
        ),
    };
    let mut rec = crate::ops::audit_trail::AuditRecord::new(
        crate::ops::audit_trail::EventKind::ClientRefused,
        actor,
        crate::ops::audit_trail::Outcome::Refused,
    )
    .reason(r.reason)
    .detail("detail", detail);
    if let Some(code) = r.status {
        rec = rec.detail("status", code.to_string());
    }
    if let Some(p) = r.peer {
        rec = rec.detail("peer", p.to_string());
    }
    if let Some(c) = r.channel {
        rec = rec.channel(escaped(c, 64));
    }
    if let Err(e) = s.audit.record(rec) {
        tracing::error!(error = %e, "could not audit a client refusal");
    }
}

fn raise_flood_alarm(s: &Shared, n: u64) {
    let msg = format!(
        "{REFUSAL_ALARM} {n} or more clients refused within a minute; a client may be attacking or misconfigured: see `ferryctl audit query` for client.refused and the ferry_client_refusals_total metric"
    );
    crate::admin::protocol::update(&s.status, |st| {
        st.alarms.retain(|a| !a.starts_with(REFUSAL_ALARM));
        st.alarms.push(msg);
    });
}

/// Closes a refusal window after a minute: one audit record sums up what
/// was not audited one by one, and the flood alarm stays only while the
/// refusals stay at the threshold.
pub(crate) fn refusal_tick(s: &Shared, alarm_per_minute: u64) {
    let closed = {
        let Ok(mut w) = REFUSALS.lock() else { return };
        match w.as_ref() {
            Some(cur) if cur.started.elapsed() >= REFUSAL_WINDOW => w.take(),
            _ => None,
        }
    };
    let Some(closed) = closed else { return };
    if !closed.summed.is_empty() {
        let total: u64 = closed.summed.values().sum();
        let by_reason = closed
            .summed
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rec = crate::ops::audit_trail::AuditRecord::new(
            crate::ops::audit_trail::EventKind::ClientRefused,
            crate::ops::audit_trail::Actor::system(),
            crate::ops::audit_trail::Outcome::Refused,
        )
        .reason("flood")
        .detail("not_recorded_one_by_one", total.to_string())
        .detail("by_reason", by_reason);
        if let Err(e) = s.audit.record(rec) {
            tracing::error!(error = %e, "could not audit a refusal summary");
        }
    }
    if closed.count < alarm_per_minute {
        crate::admin::protocol::update(&s.status, |st| {
            st.alarms.retain(|a| !a.starts_with(REFUSAL_ALARM))
        });
    }
}

/// A refusal's label, carried on its answer to where it is counted.
#[derive(Debug, Clone, Copy)]
struct RefusalTag {
    reason: &'static str,
    /// Already audited (policy decision, guard report).
    audited: bool,
}

/// `reply` labelled with why it refuses.
fn tagged(mut reply: Reply, reason: &'static str, audited: bool) -> Reply {
    reply
        .extensions_mut()
        .insert(RefusalTag { reason, audited });
    reply
}

/// The label of an answer no code path labelled, by its status.
fn reason_of_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        403 => "forbidden",
        404 => "not_found",
        408 => "too_slow",
        413 => "too_large",
        429 => "rate_limited",
        503 => "unavailable",
        _ => "error",
    }
}

/// Bodies a crash or a shutdown cut off mid-upload were never answered
/// `202`: they go.
fn remove_unfinished_uploads(queue_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(queue_dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".upload-") {
            let p = e.path();
            match std::fs::remove_file(&p) {
                Ok(()) => tracing::info!(path = %p.display(), "removed an unfinished upload"),
                Err(err) => {
                    tracing::warn!(path = %p.display(), error = %err, "could not remove an unfinished upload")
                }
            }
        }
    }
}

type Reply = Response<Full<Bytes>>;

fn json(status: StatusCode, body: serde_json::Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    let message = message.into();
    let mut r = json(status, serde_json::json!({ "error": message }));
    r.extensions_mut().insert(ErrorText(message));
    r
}

async fn handle(
    s: &Arc<Shared>,
    api: &Api,
    conn: &Arc<crate::http::server::Conn>,
    req: Request<Incoming>,
) -> Reply {
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut channel_asked = None;
    let reply = match (req.method(), parts.as_slice()) {
        (&Method::POST, ["v1", "channels", channel, "packages"]) => {
            let channel = (*channel).to_owned();
            let (parts, body) = req.into_parts();
            let mut body = Some(body);
            let mut reply = push(s, api, conn, &channel, &parts, &mut body).await;
            channel_asked = Some(channel);
            let waits_for_continue = parts
                .headers
                .get(hyper::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            if let Some(unread) = body.filter(|b| !hyper::body::Body::is_end_stream(b)) {
                // Refused before the whole body was read: the answer goes
                // out at once and the connection closes after it. A client
                // still sending would see a reset instead of the answer
                // if nothing read on: a bounded part of the body is read
                // for a bounded time after the answer, then cut off. A
                // client that sent `Expect: 100-continue` has sent nothing
                // and gets the answer alone.
                reply.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
                if !waits_for_continue {
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(
                            EARLY_REFUSAL_DRAIN_TIME,
                            Limited::new(unread, EARLY_REFUSAL_DRAIN_BYTES).collect(),
                        )
                        .await;
                    });
                }
            }
            reply
        }
        (&Method::GET, ["v1", "packages", id]) => package_state(s, &conn.identity, id),
        _ => error(
            StatusCode::NOT_FOUND,
            "no such endpoint: POST /v1/channels/{channel}/packages or GET /v1/packages/{id}",
        ),
    };
    // Every refusal of the ingest API is counted and audited here, in one
    // place, whichever code path answered it.
    let status = reply.status();
    if status.is_client_error() || status.is_server_error() {
        let tag = reply.extensions().get::<RefusalTag>().copied();
        let detail = reply_error_text(&reply);
        record_refusal(
            s,
            api.cfg.refusal_alarm_per_minute,
            Refusal {
                reason: tag.map_or_else(|| reason_of_status(status), |t| t.reason),
                status: Some(status.as_u16()),
                peer: Some(conn.peer),
                identity: Some(conn.identity.as_ref()),
                actor: None,
                channel: channel_asked.as_deref(),
                detail: format!("{} {}: {detail}", status.as_u16(), escaped(&path, 80)),
                audited: tag.is_some_and(|t| t.audited),
            },
        );
    }
    reply
}

/// The `error` text of an answer made by [`error`].
fn reply_error_text(reply: &Reply) -> String {
    reply
        .extensions()
        .get::<ErrorText>()
        .map(|t| t.0.clone())
        .unwrap_or_default()
}

/// An error answer's message, kept for the refusal record.
#[derive(Clone)]
struct ErrorText(String);

/// The name the manifest records for a certificate identity: its subject
/// and a fingerprint prefix, within the manifest's limit.
fn sender_identity(identity: &ferry_certs::Identity) -> String {
    let fp: String = identity.fingerprint_sha256.chars().take(16).collect();
    let mut text = format!("{} (sha256:{fp})", identity.subject);
    let max = ferry_protocol::manifest::MAX_IDENTITY_LEN;
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn header<'a>(headers: &'a hyper::HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| format!("header `{name}` is not visible ASCII")),
    }
}

/// Decodes an RFC 8187 ext-value: `UTF-8'[language]'percent-encoded`.
pub(crate) fn decode_ext_value(v: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!("`X-Ferry-File-Name*` {why}; write UTF-8'' followed by the percent-encoded UTF-8 name, e.g. UTF-8''%E5%9C%B0%E5%9D%97.csv")
    };
    let mut parts = v.splitn(3, '\'');
    let (charset, _lang, encoded) = match (parts.next(), parts.next(), parts.next()) {
        (Some(c), Some(l), Some(e)) => (c, l, e),
        _ => return Err(bad("is not charset'language'value")),
    };
    if !charset.eq_ignore_ascii_case("utf-8") {
        return Err(bad("must use the UTF-8 charset"));
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad("has a broken %-escape"))?;
                out.push(hex);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) => {
                out.push(b);
                i += 1;
            }
            _ => return Err(bad("has a character that must be %-encoded")),
        }
    }
    String::from_utf8(out).map_err(|_| bad("does not decode to UTF-8"))
}

/// The one file-name rule of ingest, spool and outbox
/// ([`crate::state::outbox::sanitize_file_name`]): a name the egress side would
/// not deliver (a sidecar's `.ferry.json`, a path, a hidden or too long
/// name, control or bidirectional characters) is refused here, with a
/// `400`, instead of being accepted and silently not delivered.
fn check_file_name(name: &str) -> Result<(), String> {
    match crate::state::outbox::sanitize_file_name(name) {
        Ok(_) => Ok(()),
        Err(crate::state::outbox::OutboxError::InvalidName { reason, .. }) => Err(format!(
            "`X-Ferry-File-Name` \"{}\" refused: {reason}; rename the file and push it again (the receiving side could not deliver it under this name); nothing was queued",
            escaped(name, 80)
        )),
        Err(other) => Err(other.to_string()),
    }
}

/// Parses `ALGO=HEX` against the link suite's digest algorithm.
fn expected_digest(value: &str, suite: ferry_keys::Suite) -> Result<Vec<u8>, String> {
    let want_algo = match suite {
        ferry_keys::Suite::Intl => "sha256",
        ferry_keys::Suite::Gm => "sm3",
    };
    let (algo, hex_text) = value
        .split_once('=')
        .ok_or_else(|| format!("`X-Ferry-Digest` must be `{want_algo}=HEX`"))?;
    if !algo.eq_ignore_ascii_case(want_algo) {
        return Err(format!(
            "`X-Ferry-Digest` uses `{algo}`, but this link digests with `{want_algo}`"
        ));
    }
    let d = hex::decode(hex_text.trim())
        .map_err(|_| "`X-Ferry-Digest` value is not hex".to_string())?;
    if d.len() != 32 {
        return Err("`X-Ferry-Digest` must be 32 bytes of hex".into());
    }
    Ok(d)
}

fn free_bytes(dir: &Path) -> Option<u64> {
    nix::sys::statvfs::statvfs(dir)
        .ok()
        .map(|v| v.blocks_available().saturating_mul(v.fragment_size()))
}

async fn push(
    s: &Arc<Shared>,
    api: &Api,
    conn: &crate::http::server::Conn,
    channel: &str,
    parts: &hyper::http::request::Parts,
    body: &mut Option<Incoming>,
) -> Reply {
    let identity: &ferry_certs::Identity = &conn.identity;
    let cfg: &IngestSection = &api.cfg;
    if let Err(why) = s.audit.accepting() {
        let mut r = error(StatusCode::SERVICE_UNAVAILABLE, why);
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, RETRY_AFTER_S.into());
        return r;
    }
    if let Err(r) = channel_on_this_link(s, channel) {
        return *r;
    }
    // Back-pressure: the send queue as last counted (every second).
    let queued = crate::admin::protocol::read(&s.status, |st| st.queued);
    if queued >= cfg.max_queued_packages {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the send queue is full ({queued} packages waiting, limit {}); try again later",
                cfg.max_queued_packages
            ),
        );
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, RETRY_AFTER_S.into());
        return r;
    }
    // `X-Ferry-File-Name*: UTF-8''…` (RFC 8187) carries any UTF-8 name
    // (地块-2026.csv); the plain header, ASCII only, is the fallback.
    let extended = match header(&parts.headers, "x-ferry-file-name*") {
        Ok(Some(v)) => match decode_ext_value(v) {
            Ok(n) => Some(n),
            Err(m) => return error(StatusCode::BAD_REQUEST, m),
        },
        Ok(None) => None,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let file_name = match (extended, header(&parts.headers, "x-ferry-file-name")) {
        (Some(n), _) => n,
        (None, Ok(Some(n))) => n.to_owned(),
        (None, Ok(None)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "missing header `X-Ferry-File-Name` (or `X-Ferry-File-Name*: UTF-8''NAME` for a non-ASCII name)",
            )
        }
        (None, Err(m)) => return error(StatusCode::BAD_REQUEST, m),
    };
    if let Err(m) = check_file_name(&file_name) {
        return tagged(error(StatusCode::BAD_REQUEST, m), "file_name", false);
    }
    let content_type = match header(&parts.headers, "content-type") {
        Ok(v) => v.unwrap_or("application/octet-stream").to_owned(),
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    if content_type.len() > MAX_CONTENT_TYPE_BYTES {
        return error(StatusCode::BAD_REQUEST, "`Content-Type` is too long");
    }
    let expected = match header(&parts.headers, "x-ferry-digest") {
        Ok(None) => None,
        Ok(Some(v)) => match expected_digest(v, s.keys.suite()) {
            Ok(d) => Some(d),
            Err(m) => return error(StatusCode::BAD_REQUEST, m),
        },
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let declared: Option<u64> = match header(&parts.headers, "content-length") {
        Ok(v) => match v.map(str::parse::<u64>).transpose() {
            Ok(n) => n,
            Err(_) => return error(StatusCode::BAD_REQUEST, "bad `Content-Length`"),
        },
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    if declared.is_some_and(|n| n > cfg.max_package_bytes) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "package of {} bytes is over this channel's limit of {} bytes",
                declared.unwrap_or(0),
                cfg.max_package_bytes
            ),
        );
    }
    // With a declared length the policy decides before a byte is stored;
    // a chunked body is decided once its real size is known.
    let subject = s
        .policy
        .as_ref()
        .map(|_| crate::inspection::policy_gate::subject_of(identity));
    // What the decision charged to the policy's rate and quota counters is
    // taken back if this request ends without the package kept (see
    // `Charge`); `charge` is set before anything can fail after it.
    let mut charge = Charge {
        s: s.clone(),
        taken: None,
    };
    let mut decide = |size: u64| -> Result<Option<Granted>, Box<Reply>> {
        match (&s.policy, &subject) {
            (Some(gate), Some(subject)) => {
                let request = ferry_policy::Request {
                    identity: subject.clone(),
                    channel: channel.to_owned(),
                    file_name: file_name.clone(),
                    content_type: content_type.clone(),
                    size_bytes: size,
                    at: crate::now_utc(),
                };
                let d = gate.decide_and_charge_holding(&request);
                if d.is_allowed() || d.verdict == ferry_policy::Verdict::Hold {
                    charge.taken = Some((request, d.clone()));
                }
                let record = crate::ingress::admission::decision_record(
                    &d,
                    crate::ops::audit_trail::actor_of(identity),
                    channel,
                    &file_name,
                    size,
                );
                // A refusal's record is its only one: on disk before the
                // answer. A grant's is not waited for here (that wait held
                // every connection of this one-thread runtime for a disk
                // flush per push): the package's own record, whose flush
                // comes before any 202, or the refusal's if the request
                // fails later, makes it durable first.
                let granted = charge.taken.is_some();
                let logged = if granted {
                    s.audit.record_pending(record)
                } else {
                    s.audit.record(record)
                };
                if let Err(e) = logged {
                    return refuse(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()));
                }
                let answer = verdict(d, identity)
                    .map(Some)
                    .map_err(|r| Box::new(tagged(*r, "policy", true)));
                if answer.is_err() {
                    crate::admin::protocol::count_rejected(&s.status, channel);
                }
                answer
            }
            _ => Ok(None),
        }
    };
    let mut granted: Option<Granted> = None;
    if let Some(n) = declared {
        match decide(n) {
            Ok(g) => granted = g,
            Err(r) => return *r,
        }
    }
    let need = cfg.min_free_bytes.saturating_add(declared.unwrap_or(0));
    if !api
        .queue_free
        .fits(need, declared.unwrap_or(0), Instant::now())
    {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ingress queue's disk is low; try again later",
        );
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, RETRY_AFTER_S.into());
        return r;
    }

    let id = match crate::ingress::admission::new_package_id() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let upload = s.queue_dir.join(format!(".upload-{}", id.to_hex()));
    let Some(incoming) = body.as_mut() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "request body already consumed",
        );
    };
    let result = receive_body(s, cfg, incoming, &upload).await;
    let (size, digest, mut in_memory) = match result {
        Ok(x) => x,
        Err(reply) => {
            let _ = tokio::fs::remove_file(&upload).await;
            return reply;
        }
    };
    if declared.is_none() {
        match decide(size) {
            Ok(g) => granted = g,
            Err(r) => {
                let _ = tokio::fs::remove_file(&upload).await;
                return *r;
            }
        }
    }
    if expected.as_ref().is_some_and(|e| *e != digest) {
        let _ = tokio::fs::remove_file(&upload).await;
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "digest mismatch: the body's digest is {}; nothing was queued",
                hex::encode(&digest)
            ),
        );
    }
    let (profile, mut approval, window_until) = match granted {
        Some(g) => (g.profile, g.approval, g.window_until_unix_ms),
        None => (None, None, None),
    };
    // The content guard, in fixed order after the policy: reject, mask in
    // place, or hold for review; the findings go to the audit log.
    let mut size = size;
    let mut digest = digest;
    let mut guard_verdict = None;
    let mut inspection = None;
    if let Some(name) = profile {
        // The guard reads the upload's file.
        if let Some(bytes) = in_memory.take() {
            if let Err(r) = write_upload(&upload, bytes).await {
                let _ = tokio::fs::remove_file(&upload).await;
                return r;
            }
        }
        let inspected = {
            let s = s.clone();
            let (upload, file_name, content_type, channel) = (
                upload.clone(),
                file_name.clone(),
                content_type.clone(),
                channel.to_owned(),
            );
            let actor = crate::ops::audit_trail::actor_of(identity);
            let approval = approval.clone();
            tokio::task::spawn_blocking(move || {
                crate::ingress::admission::guard_package(
                    &s,
                    &crate::ingress::admission::GuardJob {
                        profile: &name,
                        path: &upload,
                        file_name: &file_name,
                        content_type: &content_type,
                        id: &id.to_hex(),
                        channel: &channel,
                        approval: approval.as_ref(),
                    },
                    actor,
                )
            })
            .await
        };
        match inspected {
            Ok(Ok(g)) => match g {
                crate::ingress::admission::Guarded::Go { report, changed } => {
                    if let Some((new_size, new_digest)) = changed {
                        size = new_size;
                        digest = new_digest;
                    }
                    guard_verdict = Some(report.verdict);
                    inspection = crate::inspection::content::inspection_of(&report);
                }
                crate::ingress::admission::Guarded::Review {
                    report,
                    requirement,
                } => {
                    guard_verdict = Some(report.verdict);
                    inspection = crate::inspection::content::inspection_of(&report);
                    approval = Some(requirement);
                }
                crate::ingress::admission::Guarded::HeldForScan { report, why } => {
                    // Held at the sender: nothing is kept here, the client
                    // pushes again (counted as a refusal of this request,
                    // audited and alarmed by the guard step).
                    let _ = tokio::fs::remove_file(&upload).await;
                    let mut r = json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({
                            "error": why,
                            "profile": report.profile,
                            "verdict": report.verdict,
                            "reasons": report.reasons,
                            "malware": report.malware,
                        }),
                    );
                    r.headers_mut().insert(
                        hyper::header::RETRY_AFTER,
                        crate::inspection::malware::HOLD_RETRY_S.into(),
                    );
                    return tagged(r, "malware_engine_unavailable", true);
                }
                crate::ingress::admission::Guarded::Refused { report, why } => {
                    let _ = tokio::fs::remove_file(&upload).await;
                    // Refused on its content: it counts against the
                    // sender's rate and quota, as a refused spool file does.
                    charge.keep();
                    crate::admin::protocol::count_rejected(&s.status, channel);
                    let r = json(
                        StatusCode::FORBIDDEN,
                        serde_json::json!({
                            "error": why,
                            "profile": report.profile,
                            "verdict": report.verdict,
                            "reasons": report.reasons,
                            "findings": report.findings,
                            "findings_total": report.findings_total,
                            "detected_type": report.detected_type,
                            "malware": report.malware,
                        }),
                    );
                    return tagged(r, "guard", true);
                }
            },
            Ok(Err(e)) => {
                let _ = tokio::fs::remove_file(&upload).await;
                tracing::error!(error = %e, "content guard failed");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the content guard could not inspect the package: {e}; nothing was queued"
                    ),
                );
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&upload).await;
                return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
        }
    }
    // A certificate revoked while this upload ran is refused now, not
    // queued: revocation reaches requests in flight within the reload
    // period too.
    if let Err(why) = conn.still_trusted() {
        let _ = tokio::fs::remove_file(&upload).await;
        return tagged(
            error(
                StatusCode::FORBIDDEN,
                format!("client certificate no longer trusted: {why}; nothing was queued"),
            ),
            "certificate_no_longer_trusted",
            false,
        );
    }
    let (reply, accepted) = tokio::sync::oneshot::channel();
    let job = crate::ingress::ingest::accept::Job {
        staged: upload.clone(),
        body: in_memory,
        upload: crate::ingress::admission::Upload {
            id,
            channel: channel.to_owned(),
            file_name: file_name.clone(),
            content_type: content_type.clone(),
            sender_identity: sender_identity(identity),
            size,
            digest,
            inspection,
        },
        actor: crate::ops::audit_trail::actor_of(identity),
        grant: crate::ingress::shared::Grant {
            approval,
            window_until_unix_ms: window_until,
            subject: subject.clone(),
        },
        reply,
    };
    if api.committer.send(job).await.is_err() {
        let _ = tokio::fs::remove_file(&upload).await;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ferryd is shutting down; nothing was queued",
        );
    }
    match accepted.await {
        Ok(Ok(admitted)) => {
            charge.keep();
            let url = format!("/v1/packages/{}", id.to_hex());
            let body = match admitted {
                crate::ingress::shared::Admitted::Queued(seq) => {
                    tracing::debug!(target: PACKAGE_TARGET, package = %id, seq, file = %file_name, size, identity = %identity.subject, role = ?identity.role, "accepted over HTTPS");
                    serde_json::json!({
                        "package_id": id.to_hex(),
                        "state": "queued",
                        "seq": seq,
                        "size": size,
                        "guard": guard_verdict,
                        "state_url": url,
                    })
                }
                crate::ingress::shared::Admitted::AwaitingWindow(until) => {
                    tracing::info!(package = %id, file = %file_name, size, identity = %identity.subject, "accepted over HTTPS; held until its channel's window opens");
                    serde_json::json!({
                        "package_id": id.to_hex(),
                        "state": "awaiting_window",
                        "hold_until": crate::ingress::holds::window_holds::rfc3339(until),
                        "hold_until_unix_ms": until,
                        "size": size,
                        "guard": guard_verdict,
                        "state_url": url,
                    })
                }
                crate::ingress::shared::Admitted::Held(expires) => {
                    tracing::info!(package = %id, file = %file_name, size, identity = %identity.subject, "accepted over HTTPS; held for approval");
                    serde_json::json!({
                        "package_id": id.to_hex(),
                        "state": "awaiting_approval",
                        "expires_unix_ms": expires,
                        "size": size,
                        "guard": guard_verdict,
                        "state_url": url,
                    })
                }
            };
            let mut r = json(StatusCode::ACCEPTED, body);
            if let Ok(v) = hyper::header::HeaderValue::from_str(&url) {
                r.headers_mut().insert(hyper::header::LOCATION, v);
            }
            r
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "accepting an upload failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("could not queue the package: {e}"),
            )
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ferryd is shutting down; the package was not queued",
        ),
    }
}

/// What a push's policy decision charged to the policy's rate and quota
/// counters. Dropped while it still holds the charge — the request ended
/// without the package kept: the queue's disk was low, the body broke
/// off or did not match its digest, the malware engine was unavailable,
/// the guard failed, the certificate was revoked meanwhile, the commit
/// failed, or the client went away — it takes the charge back, so a
/// client whose uploads fail does not use up its quota. Kept for a
/// package queued or held, and for one the content guard refused.
struct Charge {
    s: Arc<Shared>,
    taken: Option<(ferry_policy::Request, ferry_policy::Decision)>,
}

impl Charge {
    /// The package was kept (or refused on its content): the charge stands.
    fn keep(&mut self) {
        self.taken = None;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let (Some(gate), Some((request, decision))) = (&self.s.policy, self.taken.take()) {
            gate.refund(&request, &decision);
        }
    }
}

/// A refusal, boxed: replies are large and refusals rare.
fn refuse<T>(r: Reply) -> Result<T, Box<Reply>> {
    Err(Box::new(r))
}

/// Whether `channel` is carried by this link: with a policy, a channel it
/// defines on this link; without one, the link's name.
fn channel_on_this_link(s: &Shared, channel: &str) -> Result<(), Box<Reply>> {
    if let Some(stop) = s.stopped(channel) {
        // Temporary by nature: the client retries, nothing is lost.
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "channel `{channel}` is stopped by the system administrator ({}); push again when it is started; nothing was queued",
                stop.reason
            ),
        );
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, STOPPED_RETRY_AFTER_S.into());
        return refuse(r);
    }
    match &s.policy {
        None if channel == s.cfg.link.name => Ok(()),
        None => refuse(error(
            StatusCode::NOT_FOUND,
            format!(
                "unknown channel `{channel}`; this link carries `{}`",
                s.cfg.link.name
            ),
        )),
        Some(gate) => match gate.current().channel(channel) {
            Some(c) if c.link == s.cfg.link.name => Ok(()),
            Some(c) => refuse(error(
                StatusCode::NOT_FOUND,
                format!(
                    "channel `{channel}` is carried by link `{}`, not by this one (`{}`)",
                    c.link, s.cfg.link.name
                ),
            )),
            None => refuse(error(
                StatusCode::NOT_FOUND,
                format!("unknown channel `{channel}`: the policy in force does not define it"),
            )),
        },
    }
}

/// What an allowed push was granted by the policy.
struct Granted {
    /// Held for these approvals first.
    approval: Option<ferry_policy::ApprovalRequirement>,
    /// Inspected under this content profile.
    profile: Option<String>,
    /// A window is closed: held, not sent, until it opens (ms since the
    /// Unix epoch).
    window_until_unix_ms: Option<u64>,
}

/// Maps a policy decision to the answer: `403` with every reason, `429`
/// with `Retry-After` for a rate or quota. An allowed package comes back
/// with what it was granted: on a channel that requires approvals it is
/// held for them, and while a window is closed (`Hold`, decided with
/// [`ferry_policy::Policy::decide_holding`], so quotas, profile and
/// approvals are those of an allowed package) it is accepted and held
/// until the window opens — not refused.
fn verdict(
    d: ferry_policy::Decision,
    identity: &ferry_certs::Identity,
) -> Result<Granted, Box<Reply>> {
    let body = |msg: &str| {
        serde_json::json!({
            "error": msg,
            "verdict": d.verdict,
            "rule_id": d.rule_id,
            "reasons": d.reasons,
            "policy_hash": d.policy_hash,
        })
    };
    let retry = |mut r: Reply, secs: u64| {
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, secs.max(1).into());
        r
    };
    match d.verdict {
        ferry_policy::Verdict::Allow => Ok(Granted {
            approval: d.approval,
            profile: d.profile,
            window_until_unix_ms: None,
        }),
        ferry_policy::Verdict::Hold => {
            // A closed window that never opens again is refused when the
            // policy loads; should one slip through, the release check
            // looks again a minute later.
            let now = crate::now_utc();
            let until = d
                .hold_until
                .unwrap_or(now + time::Duration::seconds(RETRY_AFTER_S as i64));
            Ok(Granted {
                approval: d.approval,
                profile: d.profile,
                window_until_unix_ms: Some(crate::ingress::holds::window_holds::unix_ms(until)),
            })
        }
        ferry_policy::Verdict::Deny => {
            tracing::info!(identity = %identity.subject, rule = ?d.rule_id, "push refused by policy");
            let quota = d.reasons.iter().find_map(|r| match r {
                ferry_policy::Reason::QuotaExceeded { retry_after_s, .. } => Some(*retry_after_s),
                _ => None,
            });
            match quota {
                Some(Some(secs)) => refuse(retry(
                    json(StatusCode::TOO_MANY_REQUESTS, body("rate or quota reached")),
                    secs,
                )),
                Some(None) => refuse(json(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    body("the package alone exceeds a quota of this channel or identity"),
                )),
                None => refuse(json(StatusCode::FORBIDDEN, body("forbidden by policy"))),
            }
        }
    }
}

/// Streams the body into `path`, digesting as it goes, stopping at the
/// size limit, at a pause longer than `body_idle_timeout_s`, and when the
/// body falls below `min_body_bytes_per_s` on average after its first
/// `body_idle_timeout_s` (a client dripping a byte now and then holds a
/// connection no longer than that). Not synced: the committer does.
async fn receive_body(
    s: &Shared,
    cfg: &IngestSection,
    body: &mut Incoming,
    path: &Path,
) -> Result<(u64, Vec<u8>, Option<Vec<u8>>), Reply> {
    let io_err = |e: std::io::Error| {
        tracing::error!(error = %e, path = %path.display(), "writing an upload failed");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("could not store the upload: {e}"),
        )
    };
    // The body in memory while it is small, then its file.
    let mut sink = Sink::Memory(Vec::new());
    let mut digest = s.keys.link_crypto().new_digest();
    let idle = Duration::from_secs(cfg.limits.body_idle_timeout_s);
    let min_rate = cfg.limits.min_body_bytes_per_s;
    let started = tokio::time::Instant::now();
    let mut size = 0u64;
    let mut writeback_from = 0u64;
    let too_large = || {
        tagged(
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "package is over this channel's limit of {} bytes; nothing was queued",
                    cfg.max_package_bytes
                ),
            ),
            "too_large",
            false,
        )
    };
    loop {
        // The next piece must come within the idle timeout, and before the
        // moment the average rate would fall below the minimum.
        let mut deadline = tokio::time::Instant::now() + idle;
        if min_rate > 0 {
            let rate_deadline =
                started + idle + Duration::from_secs_f64(size as f64 / min_rate as f64);
            deadline = deadline.min(rate_deadline);
        }
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => {
                return Err(tagged(
                    error(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the body came too slowly ({size} bytes in {} s; at most {} s without data, at least {min_rate} bytes/s on average after the first {} s); nothing was queued",
                            started.elapsed().as_secs(),
                            idle.as_secs(),
                            idle.as_secs()
                        ),
                    ),
                    "too_slow",
                    false,
                ))
            }
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("upload interrupted: {e}; nothing was queued"),
                ));
            }
        };
        if let Ok(data) = frame.into_data() {
            size += data.len() as u64;
            if size > cfg.max_package_bytes {
                // Read on and discard, up to a bound, before answering:
                // a connection closed while the client is still sending
                // is reset, and the reset can destroy the 413 before the
                // client reads it (seen as curl's last code 100). Past
                // the bound, or at the body's end, the 413 goes out.
                if size > cfg.max_package_bytes.saturating_add(OVERSIZE_DRAIN_BYTES) {
                    return Err(too_large());
                }
                continue;
            }
            digest.update(&data);
            if let Sink::Memory(buf) = &mut sink {
                if buf.len() + data.len() <= SMALL_BODY_BYTES {
                    buf.extend_from_slice(&data);
                    continue;
                }
                let mut f = tokio::fs::OpenOptions::from(accept::upload_options())
                    .open(path)
                    .await
                    .map_err(io_err)?;
                f.write_all(buf).await.map_err(io_err)?;
                sink = Sink::File(f);
            }
            let Sink::File(f) = &mut sink else {
                continue;
            };
            f.write_all(&data).await.map_err(io_err)?;
            if size - writeback_from >= WRITEBACK_STEP_BYTES {
                // The committer's one sync would otherwise find a large
                // body all dirty: start its write-back as it comes (a hint;
                // refused, it only costs time at that sync).
                // The call can block on a congested disk queue: it runs
                // on a blocking thread, on its own descriptor, unawaited.
                f.flush().await.map_err(io_err)?;
                let copy = f.try_clone().await.map_err(io_err)?.into_std().await;
                let (from, len) = (writeback_from, size - writeback_from);
                let shown = path.display().to_string();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = ferry_hardening::writeback::start_writeback(&copy, from, len) {
                        tracing::debug!(path = %shown, error = %e, "write-back hint refused");
                    }
                });
                writeback_from = size;
            }
        }
    }
    if size > cfg.max_package_bytes {
        return Err(too_large());
    }
    // Not synced here: the committer makes every body of its batch
    // durable with one sync before anything is queued or answered. A
    // small body is written by the committer itself, straight under its
    // queue name (no upload file, no hand-off, no rename).
    match sink {
        Sink::File(mut f) => {
            f.flush().await.map_err(io_err)?;
            Ok((size, digest.finish(), None))
        }
        Sink::Memory(buf) => Ok((size, digest.finish(), Some(buf))),
    }
}

/// Where a body being received goes.
enum Sink {
    /// Up to [`SMALL_BODY_BYTES`].
    Memory(Vec<u8>),
    /// Past that: its upload file.
    File(tokio::fs::File),
}

/// Writes a body gathered in memory to its upload file (for the content
/// guard, which reads files), on a blocking thread.
async fn write_upload(path: &Path, bytes: Vec<u8>) -> Result<(), Reply> {
    let target = path.to_path_buf();
    let written = tokio::task::spawn_blocking(move || {
        crate::ingress::ingest::accept::write_new(&target, &bytes)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    written.map_err(|e| {
        tracing::error!(error = %e, path = %path.display(), "writing an upload failed");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("could not store the upload: {e}"),
        )
    })
}

/// Whether `identity` may see a package whose manifest names `recorded`
/// as its sender: the identity that pushed it (its certificate subject, so
/// a renewed certificate of the same pusher too), or an administrator
/// (system administrator, security administrator, auditor).
fn may_see(identity: &ferry_certs::Identity, recorded: Option<&str>) -> bool {
    if matches!(
        identity.role.as_deref(),
        Some(
            ferry_certs::Role::SYSADMIN | ferry_certs::Role::SECADMIN | ferry_certs::Role::AUDITOR
        )
    ) {
        return true;
    }
    let Some(recorded) = recorded else {
        return false;
    };
    if recorded == sender_identity(identity) {
        return true;
    }
    // `SUBJECT (sha256:PREFIX)`: the prefix never holds the separator, so
    // the last one splits off exactly the subject.
    recorded
        .rsplit_once(" (sha256:")
        .is_some_and(|(subject, _)| subject == identity.subject)
}

/// The one answer for a package this caller may not see and for one that
/// does not exist: no oracle for other pushers' package ids.
fn no_such_package() -> Reply {
    tagged(
        error(
            StatusCode::NOT_FOUND,
            "no such package on this side for this client certificate (never accepted, rejected, expired, past retention, or pushed by another identity)",
        ),
        "unknown_package",
        false,
    )
}

/// `GET /v1/packages/{id}`: what the ingress side knows, for the identity
/// that pushed it or an administrator; everyone else gets
/// [`no_such_package`].
fn package_state(s: &Shared, identity: &ferry_certs::Identity, id: &str) -> Reply {
    let Some(bytes) = hex::decode(id)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
    else {
        return error(StatusCode::BAD_REQUEST, "package id must be 32 hex digits");
    };
    match s.store.get(bytes) {
        Ok(Some(q)) => {
            let (state, times) = match q.state {
                QueueState::Queued => ("queued", 0),
                QueueState::Sending => ("sending", 0),
                QueueState::Sent { times, .. } => ("sent", times),
            };
            let meta: serde_json::Value =
                serde_json::from_str(&q.meta_json).unwrap_or(serde_json::Value::Null);
            if !may_see(
                identity,
                meta.get("sender_identity").and_then(|v| v.as_str()),
            ) {
                return no_such_package();
            }
            json(
                StatusCode::OK,
                serde_json::json!({
                    "package_id": id,
                    "state": state,
                    "sent_times": times,
                    "seq": q.seq,
                    "size": q.bytes,
                    "file_name": meta.get("file_name"),
                    "channel": meta.get("channel"),
                }),
            )
        }
        Ok(None) => match s.store.hold_get(bytes) {
            Ok(Some(h)) => {
                let meta = h.meta();
                if !may_see(
                    identity,
                    meta.get("sender_identity").and_then(|v| v.as_str()),
                ) {
                    return no_such_package();
                }
                let kind = h.kind();
                let mut v = serde_json::json!({
                    "package_id": id,
                    "state": kind.state(),
                    "size": h.bytes,
                    "file_name": meta.get("file_name"),
                    "channel": meta.get("channel"),
                });
                match kind {
                    crate::state::store::HoldKind::Approval => {
                        v["approvals"] = h.approvals.len().into();
                        v["needed"] = h.reviewers_needed.into();
                        v["expires_unix_ms"] = h.expires_unix_ms.into();
                    }
                    crate::state::store::HoldKind::Window { until_unix_ms } => {
                        v["hold_until"] =
                            crate::ingress::holds::window_holds::rfc3339(until_unix_ms).into();
                        v["hold_until_unix_ms"] = until_unix_ms.into();
                    }
                    crate::state::store::HoldKind::ChannelStopped => {}
                }
                json(StatusCode::OK, v)
            }
            Ok(None) => no_such_package(),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        },
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(fs: &FreeSpace, at: Instant, free: u64) {
        *fs.figure.lock().expect("lock") = Some((at, free));
    }

    #[test]
    fn the_free_space_figure_refuses_only_on_a_fresh_measurement_and_counts_what_it_let_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = FreeSpace::new(dir.path().to_path_buf());
        let now = Instant::now();
        // More than any test machine's disk.
        let huge = 1u64 << 62;
        // A fresh figure that says "plenty" is used as it is…
        set(&fs, now, u64::MAX);
        assert!(fs.fits(huge, 0, now));
        // …but not once it is older than the bound: measured again.
        set(&fs, now, u64::MAX);
        assert!(!fs.fits(huge, 0, now + FREE_SPACE_MAX_AGE));
        // A figure that says "no room" is never trusted: measured again,
        // and the real disk has room for a small push.
        set(&fs, now, 0);
        assert!(fs.fits(4096, 4096, now));
        // Each push let through takes its declared size off the figure,
        // so the next one that no longer fits is measured, and refused.
        set(&fs, now, huge + huge / 2);
        assert!(fs.fits(huge, huge, now));
        assert!(
            !fs.fits(huge, huge, now),
            "two pushes shared the same free bytes"
        );
    }
}
