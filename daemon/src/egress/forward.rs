//! Delivery to downstream HTTPS endpoints: the egress side's second way
//! out, for channels whose policy `destination` is an `https://` URL.
//!
//! A verified package is made durable in `OUTBOX/.forward/` and recorded
//! in the delivery ledger as `Forwarding` (one redb transaction with the
//! replay window) before anything is sent, so a package the link brought
//! is never lost to a downstream outage or a crash. This thread then POSTs
//! each waiting package to its endpoint over mTLS, in sequence order per
//! endpoint, and records `Delivered` only after a 2xx answer.
//!
//! Failures are of two kinds. The endpoint being down, slow, overloaded
//! (408, 425, 429, 5xx) or the TLS connection failing are retried with
//! exponential back-off (honouring `Retry-After`), without limit: the
//! packages wait on disk, memory stays bounded, and an alarm rises once the
//! endpoint has failed for `alarm_after_s`. An outright refusal (any other
//! 4xx) will not change by retrying: that package is parked with the
//! endpoint's answer, audited and alarmed, and the others go on; the
//! system administrator retries it with `ferryctl forward retry` once the
//! cause is fixed.
//!
//! Once-only delivery: the ledger never sends a package again after it
//! recorded the 2xx. The one window it cannot close is a crash after the
//! endpoint accepted and before the ledger write; the package is then sent
//! again with the same `Idempotency-Key` (its package id), which the
//! endpoint uses to recognise the repeat.

use crate::admin::protocol::{self, DownstreamStatus, SharedStatus};
use crate::config::DownstreamSection;
use crate::http::client::{Endpoint, IngestClient, Payload, PushError, Upload};
use crate::ops::activity::PACKAGE_TARGET;
use crate::ops::audit_trail::{Actor, AuditRecord, AuditTrail, EventKind, Outcome};
use crate::state::outbox::Outbox;
use crate::state::store::{LedgerEntry, LedgerState, PackageIdBytes, StateStore};
use crate::{now_millis, DaemonError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the waiting packages are looked at without a wake-up.
const PASS_INTERVAL: Duration = Duration::from_millis(500);
/// How often an in-flight request checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);
/// Longest endpoint answer kept in a parked package's reason.
const MAX_REASON_CHARS: usize = 300;
/// Prefix of the alarms this module raises (replaced, not accumulated).
const ALARM_PREFIX: &str = "downstream ";

/// Messages to the forwarder thread.
pub enum Msg {
    /// A package was recorded as forwarding: look now.
    Wake,
    /// An operator asked for a retry: back-off is forgotten.
    RetryNow,
}

/// The packages waiting for an endpoint, by sequence number, with their
/// endpoint: kept in memory so that a pass reads only what it sends
/// instead of scanning the whole delivery ledger, which only grows.
type Waiting = Arc<Mutex<BTreeMap<(u64, PackageIdBytes), String>>>;

/// How the writer and the control socket reach the forwarder.
#[derive(Clone)]
pub struct Notifier {
    tx: SyncSender<Msg>,
    waiting: Waiting,
}

impl Notifier {
    /// Packages the ledger now records as forwarding: look at them now.
    pub fn added(&self, packages: impl IntoIterator<Item = ((u64, PackageIdBytes), String)>) {
        match self.waiting.lock() {
            Ok(mut w) => w.extend(packages),
            Err(p) => p.into_inner().extend(packages),
        }
        // A full queue means a pass is due anyway.
        let _ = self.tx.try_send(Msg::Wake);
    }

    /// Forget every endpoint's back-off.
    pub fn retry_now(&self) {
        let _ = self.tx.try_send(Msg::RetryNow);
    }
}

/// The running forwarder.
pub struct Handle {
    notifier: Notifier,
    join: std::thread::JoinHandle<()>,
}

impl Handle {
    /// Where to announce new packages and retries.
    pub fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    /// Waits for the thread (after `shutdown` was set).
    pub fn join(self) {
        drop(self.notifier);
        let _ = self.join.join();
    }
}

/// Starts the forwarder thread. `downstream` is `None` when the
/// configuration has no `[downstream]`: packages recorded as forwarding
/// then wait, with an alarm, until it is configured.
pub fn spawn(
    downstream: Option<DownstreamSection>,
    store: Arc<StateStore>,
    outbox: Outbox,
    status: SharedStatus,
    audit: Arc<AuditTrail>,
    shutdown: Arc<AtomicBool>,
) -> Result<Handle, DaemonError> {
    // The one full scan of the ledger, at start.
    let listed = store.list_forwarding()?;
    let keys: HashSet<String> = listed.iter().map(|(id, _)| hex::encode(id)).collect();
    let mut waiting = BTreeMap::new();
    let mut parked = HashSet::new();
    for (id, e) in &listed {
        if let LedgerState::Forwarding { url, parked: p, .. } = &e.state {
            waiting.insert((e.seq, *id), url.clone());
            if p.is_some() {
                parked.insert(*id);
            }
        }
    }
    let waiting: Waiting = Arc::new(Mutex::new(waiting));
    let removed = outbox.cleanup_forward(&keys)?;
    if removed > 0 {
        tracing::info!(
            removed,
            "removed forward-area files no waiting package names (a crash before the ledger write, or a finished forward)"
        );
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::io(std::path::Path::new("forwarder runtime")))?;
    let mut f = Forwarder {
        downstream,
        store,
        outbox,
        status,
        audit,
        shutdown,
        endpoints: HashMap::new(),
        runtime,
        waiting: waiting.clone(),
        parked,
    };
    let join = std::thread::Builder::new()
        .name("ferry-forward".into())
        .spawn(move || f.run(rx))
        .map_err(DaemonError::thread_start("forwarder"))?;
    Ok(Handle {
        notifier: Notifier { tx, waiting },
        join,
    })
}

/// Back-off state of one endpoint (in memory: a restart tries at once).
#[derive(Default)]
struct EndpointState {
    client: Option<IngestClient>,
    failures: u32,
    failing_since: Option<u64>,
    next_try: Option<Instant>,
    last_error: Option<String>,
    forwarded: u64,
}

struct Forwarder {
    downstream: Option<DownstreamSection>,
    store: Arc<StateStore>,
    outbox: Outbox,
    status: SharedStatus,
    audit: Arc<AuditTrail>,
    shutdown: Arc<AtomicBool>,
    endpoints: HashMap<String, EndpointState>,
    runtime: tokio::runtime::Runtime,
    waiting: Waiting,
    /// Waiting packages an endpoint refused outright, as last read.
    parked: HashSet<PackageIdBytes>,
}

/// Headers sent besides the file name, content type and digest.
type Headers = Vec<(&'static str, String)>;

/// How one attempt ended.
enum Attempt {
    /// 2xx: the endpoint has it.
    Accepted(u16),
    /// Worth retrying later (down, overloaded, TLS, timeout).
    Retry {
        why: String,
        retry_after_s: Option<u64>,
    },
    /// Refused outright: retrying will not help.
    Refused(String),
    /// ferryd is shutting down; the package stays waiting.
    Interrupted,
}

impl Forwarder {
    fn run(&mut self, rx: Receiver<Msg>) {
        while !self.shutdown.load(Ordering::Relaxed) {
            if let Err(e) = self.pass() {
                set_alarm(
                    &self.status,
                    "downstream forwarding:",
                    &format!("downstream forwarding: state store: {e}"),
                );
            }
            match rx.recv_timeout(PASS_INTERVAL) {
                Ok(Msg::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Msg::RetryNow) => {
                    for e in self.endpoints.values_mut() {
                        e.next_try = None;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Several wake-ups are one pass.
            while let Ok(m) = rx.try_recv() {
                if let Msg::RetryNow = m {
                    for e in self.endpoints.values_mut() {
                        e.next_try = None;
                    }
                }
            }
        }
    }

    /// Tries every endpoint that is not backing off, oldest package first.
    /// Only a due endpoint's packages are read from the ledger, one by one,
    /// and a failing endpoint's after its first failure are not read at
    /// all: a long outage costs no more than a short one.
    fn pass(&mut self) -> Result<(), DaemonError> {
        let snapshot: Vec<((u64, PackageIdBytes), String)> = match self.waiting.lock() {
            Ok(w) => w.iter().map(|(k, u)| (*k, u.clone())).collect(),
            Err(p) => p
                .into_inner()
                .iter()
                .map(|(k, u)| (*k, u.clone()))
                .collect(),
        };
        let mut by_url: BTreeMap<String, Vec<(u64, PackageIdBytes)>> = BTreeMap::new();
        for (key, url) in snapshot {
            by_url.entry(url).or_default().push(key);
        }
        for (url, keys) in &by_url {
            if self.shutdown.load(Ordering::Relaxed) {
                break;
            }
            let due = self
                .endpoints
                .get(url)
                .and_then(|e| e.next_try)
                .is_none_or(|t| Instant::now() >= t);
            if !due {
                continue;
            }
            for &(seq, id) in keys {
                if self.shutdown.load(Ordering::Relaxed) {
                    break;
                }
                let entry = match self.store.ledger_get(id)? {
                    Some(e) if matches!(e.state, LedgerState::Forwarding { .. }) => e,
                    // Delivered (or never recorded): no longer waiting.
                    _ => {
                        self.forget(&[(seq, id)]);
                        continue;
                    }
                };
                if matches!(
                    entry.state,
                    LedgerState::Forwarding {
                        parked: Some(_),
                        ..
                    }
                ) {
                    self.parked.insert(id);
                    continue;
                }
                self.parked.remove(&id);
                if !self.forward_one(url, id, &entry)? {
                    // The endpoint is failing: the rest waits behind the
                    // oldest, in order.
                    break;
                }
            }
        }
        self.publish(&by_url);
        Ok(())
    }

    /// One package to its endpoint. Returns false when the endpoint
    /// failed and the next attempt must wait for the back-off.
    fn forward_one(
        &mut self,
        url: &str,
        id: PackageIdBytes,
        entry: &LedgerEntry,
    ) -> Result<bool, DaemonError> {
        let key = hex::encode(id);
        let attempt = match self.prepare(url, &key) {
            Ok((upload, extra)) => self.attempt(url, &upload, &extra),
            Err(a) => a,
        };
        match attempt {
            Attempt::Interrupted => Ok(false),
            Attempt::Accepted(code) => {
                self.accepted(url, id, entry, code);
                Ok(true)
            }
            Attempt::Refused(why) => {
                self.park(url, id, entry, &why)?;
                Ok(true)
            }
            Attempt::Retry { why, retry_after_s } => {
                self.failed(url, id, entry, &why, retry_after_s)?;
                Ok(false)
            }
        }
    }

    /// The upload and its headers, from the forward area's files.
    fn prepare(&self, url: &str, key: &str) -> Result<(Upload, Headers), Attempt> {
        let local = |e: &dyn std::fmt::Display| {
            Attempt::Refused(format!(
                "its files in the forward area cannot be read ({e}); it cannot be sent to {url}"
            ))
        };
        let sidecar = self.outbox.forward_sidecar(key).map_err(|e| local(&e))?;
        let path = self.outbox.forward_data(key).map_err(|e| local(&e))?;
        let len = std::fs::metadata(&path).map_err(|e| local(&e))?.len();
        let text = |k: &str| sidecar.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let upload = Upload {
            file_name: text("file_name").to_owned(),
            content_type: match text("content_type") {
                "" => "application/octet-stream".to_owned(),
                t => t.to_owned(),
            },
            digest: Some(digest_header(&sidecar)),
            payload: Payload::File { path, len },
        };
        let mut extra = vec![
            ("idempotency-key", key.to_owned()),
            ("x-ferry-package-id", key.to_owned()),
        ];
        for (header, field) in [
            ("x-ferry-channel", "channel"),
            ("x-ferry-link", "link"),
            ("x-ferry-sender", "sender_identity"),
        ] {
            // Header values must be visible ASCII; a name that is not is
            // left out rather than mangled (the sidecar fields are in the
            // audit log either way).
            let v = text(field);
            if !v.is_empty() && v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                extra.push((header, v.to_owned()));
            }
        }
        if let Some(seq) = sidecar.get("seq").and_then(|v| v.as_u64()) {
            extra.push(("x-ferry-seq", seq.to_string()));
        }
        Ok((upload, extra))
    }

    fn attempt(&mut self, url: &str, upload: &Upload, extra: &[(&'static str, String)]) -> Attempt {
        let Some(ds) = self.downstream.clone() else {
            return Attempt::Retry {
                why: "this egress configuration has no [downstream] section (CA, client certificate and key): add it and restart ferryd".into(),
                retry_after_s: None,
            };
        };
        let state = self.endpoints.entry(url.to_owned()).or_default();
        if state.client.is_none() {
            let endpoint = match Endpoint::parse(url) {
                Ok(e) => e,
                Err(e) => {
                    return Attempt::Refused(format!(
                        "the channel's destination cannot be used: {e}; correct `destination` in the egress policy, reload it, then retry"
                    ))
                }
            };
            match IngestClient::new(endpoint, &ds.ca, Some((&ds.cert, &ds.key))) {
                Ok(c) => {
                    state.client = Some(
                        c.keep_alive(true)
                            .idle_timeout(Duration::from_secs(ds.timeout_s)),
                    );
                }
                Err(e) => {
                    return Attempt::Retry {
                        why: format!("the [downstream] TLS files cannot be used: {e}"),
                        retry_after_s: None,
                    }
                }
            }
        }
        let Some(client) = state.client.as_mut() else {
            return Attempt::Interrupted;
        };
        let path = client.base_path().to_owned();
        let shutdown = self.shutdown.clone();
        let result = self.runtime.block_on(async {
            let stop = async {
                while !shutdown.load(Ordering::Relaxed) {
                    tokio::time::sleep(SHUTDOWN_POLL).await;
                }
            };
            tokio::select! {
                r = client.post(&path, upload, extra, None) => Some(r),
                () = stop => None,
            }
        });
        match result {
            None => Attempt::Interrupted,
            Some(Ok(a)) => classify(a.status, &a.body, a.retry_after_s),
            Some(Err(e)) => {
                // A new connection (and TLS files read again) next time:
                // a renewed certificate is picked up after a failure.
                state.client = None;
                Attempt::Retry {
                    why: push_error_text(&e),
                    retry_after_s: None,
                }
            }
        }
    }

    fn forget(&mut self, done: &[(u64, PackageIdBytes)]) {
        if done.is_empty() {
            return;
        }
        let mut w = match self.waiting.lock() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        for d in done {
            w.remove(d);
            self.parked.remove(&d.1);
        }
    }

    fn accepted(&mut self, url: &str, id: PackageIdBytes, entry: &LedgerEntry, code: u16) {
        let key = hex::encode(id);
        let sidecar = self.outbox.forward_sidecar(&key).unwrap_or_default();
        if let Err(e) = self.store.finish_delivery(id, url, now_millis().0) {
            // The endpoint has it but the ledger does not say so: the next
            // pass sends it again with the same Idempotency-Key.
            set_alarm(
                &self.status,
                "downstream forwarding:",
                &format!("downstream forwarding: state store: {e}"),
            );
            return;
        }
        self.outbox.forward_done(&key);
        self.forget(&[(entry.seq, id)]);
        let state = self.endpoints.entry(url.to_owned()).or_default();
        state.failures = 0;
        state.failing_since = None;
        state.next_try = None;
        state.last_error = None;
        state.forwarded += 1;
        clear_alarm(&self.status, &format!("{ALARM_PREFIX}{url}"));
        let text = |k: &str| {
            sidecar
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let channel = text("channel");
        let size = sidecar.get("size").and_then(|v| v.as_u64()).unwrap_or(0);
        protocol::count(&self.status, &channel, |c| {
            c.delivered += 1;
            c.delivered_bytes += size;
        });
        protocol::update(&self.status, |s| {
            s.delivered += 1;
            s.delivered_bytes += size;
        });
        let attempts = match &entry.state {
            LedgerState::Forwarding { attempts, .. } => *attempts + 1,
            _ => 1,
        };
        tracing::debug!(target: PACKAGE_TARGET, seq = entry.seq, package = %key, destination = url, status = code, attempts, "delivered downstream");
        self.audit.note(
            AuditRecord::new(
                EventKind::PackageDelivered,
                Actor::system(),
                Outcome::Success,
            )
            .package(key)
            .channel(channel)
            .detail("seq", entry.seq.to_string())
            .detail("size", size.to_string())
            .detail("destination", url.to_owned())
            .detail("http_status", code.to_string())
            .detail("attempts", attempts.to_string())
            .detail("digest", text("digest"))
            .detail("sender", text("sender_identity")),
        );
    }

    fn park(
        &mut self,
        url: &str,
        id: PackageIdBytes,
        entry: &LedgerEntry,
        why: &str,
    ) -> Result<(), DaemonError> {
        let key = hex::encode(id);
        let mut parked_entry = entry.clone();
        if let LedgerState::Forwarding {
            attempts,
            last_error,
            parked,
            ..
        } = &mut parked_entry.state
        {
            *attempts += 1;
            *last_error = Some(why.to_owned());
            *parked = Some(why.to_owned());
        }
        self.store.update_forwarding(id, &parked_entry)?;
        let sidecar = self.outbox.forward_sidecar(&key).unwrap_or_default();
        let channel = sidecar
            .get("channel")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        tracing::error!(seq = entry.seq, package = %key, destination = url, "downstream refused the package: {why}");
        self.audit.note(
            AuditRecord::new(EventKind::PackageFailed, Actor::system(), Outcome::Failure)
                .package(key.clone())
                .channel(channel)
                .reason(format!("refused by {url}: {why}"))
                .detail("seq", entry.seq.to_string())
                .detail("destination", url.to_owned()),
        );
        set_alarm(
            &self.status,
            &format!("downstream package {key}"),
            &format!(
                "downstream package {key} refused by {url}: {why}; it is kept: fix the cause, then `ferryctl forward retry --package {key}`"
            ),
        );
        Ok(())
    }

    fn failed(
        &mut self,
        url: &str,
        id: PackageIdBytes,
        entry: &LedgerEntry,
        why: &str,
        retry_after_s: Option<u64>,
    ) -> Result<(), DaemonError> {
        let ds_initial = self
            .downstream
            .as_ref()
            .map_or(crate::config::DEFAULT_DOWNSTREAM_RETRY_INITIAL_MS, |d| {
                d.retry_initial_ms
            });
        let ds_max = self
            .downstream
            .as_ref()
            .map_or(crate::config::DEFAULT_DOWNSTREAM_RETRY_MAX_MS, |d| {
                d.retry_max_ms
            });
        let alarm_after_ms = self
            .downstream
            .as_ref()
            .map_or(crate::config::DEFAULT_DOWNSTREAM_ALARM_AFTER_S, |d| {
                d.alarm_after_s
            })
            .saturating_mul(1000);
        let now = now_millis().0;
        let state = self.endpoints.entry(url.to_owned()).or_default();
        state.failures = state.failures.saturating_add(1);
        let since = *state.failing_since.get_or_insert(now);
        let delay = backoff_ms(state.failures, ds_initial, ds_max, retry_after_s);
        state.next_try = Some(Instant::now() + Duration::from_millis(delay));
        state.last_error = Some(why.to_owned());
        let failures = state.failures;
        tracing::warn!(package = %hex::encode(id), destination = url, failures, retry_in_ms = delay, "downstream delivery failed, will retry: {why}");
        let mut e = entry.clone();
        if let LedgerState::Forwarding {
            attempts,
            last_error,
            ..
        } = &mut e.state
        {
            *attempts = attempts.saturating_add(1);
            *last_error = Some(why.to_owned());
        }
        self.store.update_forwarding(id, &e)?;
        if now.saturating_sub(since) >= alarm_after_ms {
            set_alarm(
                &self.status,
                &format!("{ALARM_PREFIX}{url}"),
                &format!(
                    "{ALARM_PREFIX}{url} failing for {} s ({failures} attempts): {why}; packages wait on disk and are retried every {} s at most",
                    now.saturating_sub(since) / 1000,
                    ds_max / 1000
                ),
            );
        }
        Ok(())
    }

    fn publish(&self, by_url: &BTreeMap<String, Vec<(u64, PackageIdBytes)>>) {
        let now_ms = now_millis().0;
        let now = Instant::now();
        let mut shown: BTreeMap<String, DownstreamStatus> = BTreeMap::new();
        for (url, e) in &self.endpoints {
            shown.insert(
                url.clone(),
                DownstreamStatus {
                    forwarded: e.forwarded,
                    consecutive_failures: e.failures,
                    failing_since_unix_ms: e.failing_since,
                    next_attempt_unix_ms: e
                        .next_try
                        .filter(|t| *t > now)
                        .map(|t| now_ms + (t - now).as_millis() as u64),
                    last_error: e.last_error.clone(),
                    ..DownstreamStatus::default()
                },
            );
        }
        for (url, keys) in by_url {
            let s = shown.entry(url.clone()).or_default();
            s.waiting = keys.len() as u64;
            s.parked = keys
                .iter()
                .filter(|(_, id)| self.parked.contains(id))
                .count() as u64;
        }
        protocol::update(&self.status, |s| s.downstream = shown);
    }
}

/// What an answer means for the package.
fn classify(status: u16, body: &serde_json::Value, retry_after_s: Option<u64>) -> Attempt {
    let answer = || {
        let text = match body.get("raw").and_then(|r| r.as_str()) {
            Some(raw) => raw.to_owned(),
            None => body.to_string(),
        };
        let short: String = text.trim().chars().take(MAX_REASON_CHARS).collect();
        format!("HTTP {status}: {short}")
    };
    match status {
        200..=299 => Attempt::Accepted(status),
        // Timeout, too early, rate-limited, server-side trouble: the same
        // request can succeed later.
        408 | 425 | 429 | 500..=599 => Attempt::Retry {
            why: answer(),
            retry_after_s,
        },
        _ => Attempt::Refused(answer()),
    }
}

/// The delay before the next attempt after `failures` in a row: doubling
/// from `initial_ms` up to `max_ms`, or what `Retry-After` asked if that
/// is longer (still at most `max_ms`).
pub fn backoff_ms(failures: u32, initial_ms: u64, max_ms: u64, retry_after_s: Option<u64>) -> u64 {
    let shift = failures.saturating_sub(1).min(32);
    let doubled = initial_ms.saturating_mul(1u64 << shift).min(max_ms);
    let asked = retry_after_s.map_or(0, |s| s.saturating_mul(1000));
    doubled.max(asked).min(max_ms)
}

/// `X-Ferry-Digest` of the file as it is sent: the egress guard's digest
/// after masking when it rewrote the file, else the manifest's digest.
fn digest_header(sidecar: &serde_json::Value) -> String {
    if let Some(after) = sidecar
        .get("egress_guard")
        .and_then(|g| g.get("sha256_after"))
        .and_then(|v| v.as_str())
    {
        return format!("sha256={after}");
    }
    let alg = sidecar
        .get("digest_algorithm")
        .and_then(|v| v.as_str())
        .unwrap_or("sha256");
    let digest = sidecar
        .get("digest")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    format!("{alg}={digest}")
}

fn push_error_text(e: &PushError) -> String {
    e.to_string()
        .replace("--cert and --key", "[downstream] cert and key")
        .replace("ingress ferryd's log", "downstream server's log")
}

/// Replaces the alarm starting with `prefix` by `msg`.
fn set_alarm(status: &SharedStatus, prefix: &str, msg: &str) {
    protocol::update(status, |s| {
        s.alarms.retain(|a| !a.starts_with(prefix));
        s.alarms.push(msg.to_owned());
    });
}

fn clear_alarm(status: &SharedStatus, prefix: &str) {
    protocol::update(status, |s| s.alarms.retain(|a| !a.starts_with(prefix)));
}

/// `ferryctl forward retry`: parked packages (all, or `package`) go back
/// to waiting, and every endpoint's back-off is forgotten. Returns the
/// answer for the control socket.
pub fn retry(
    store: &StateStore,
    status: &SharedStatus,
    package: Option<&str>,
) -> Result<serde_json::Value, DaemonError> {
    let mut released = Vec::new();
    let mut found = package.is_none();
    for (id, mut entry) in store.list_forwarding()? {
        let key = hex::encode(id);
        if package.is_some_and(|p| !p.eq_ignore_ascii_case(&key)) {
            continue;
        }
        found = true;
        if let LedgerState::Forwarding { parked, .. } = &mut entry.state {
            if parked.take().is_some() {
                store.update_forwarding(id, &entry)?;
                clear_alarm(status, &format!("downstream package {key}"));
                released.push(key);
            }
        }
    }
    if !found {
        return Ok(serde_json::json!({
            "error": format!("package {} is not waiting for a downstream endpoint (delivered, or not forwarded by this side)", package.unwrap_or_default())
        }));
    }
    Ok(serde_json::json!({ "released": released, "retrying": "now" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_honours_retry_after() {
        assert_eq!(backoff_ms(1, 1000, 300_000, None), 1000);
        assert_eq!(backoff_ms(2, 1000, 300_000, None), 2000);
        assert_eq!(backoff_ms(5, 1000, 300_000, None), 16_000);
        assert_eq!(backoff_ms(9, 1000, 300_000, None), 256_000);
        assert_eq!(backoff_ms(10, 1000, 300_000, None), 300_000);
        assert_eq!(backoff_ms(u32::MAX, 1000, 300_000, None), 300_000);
        assert_eq!(backoff_ms(1, 1000, 300_000, Some(30)), 30_000);
        assert_eq!(backoff_ms(1, 1000, 300_000, Some(86_400)), 300_000);
        assert_eq!(backoff_ms(9, 1000, 300_000, Some(1)), 256_000);
    }

    #[test]
    fn an_hour_down_costs_a_bounded_number_of_attempts() {
        // Attempts made while an endpoint is down for an hour with the
        // defaults: the back-off reaches five minutes after nine failures.
        let mut t = 0u64;
        let mut attempts = 0;
        while t < 3_600_000 {
            attempts += 1;
            t += backoff_ms(attempts, 1000, 300_000, None);
        }
        assert!((15..=25).contains(&attempts), "{attempts}");
    }

    #[test]
    fn answers_are_classified() {
        let body = serde_json::json!({ "raw": "nope" });
        assert!(matches!(classify(200, &body, None), Attempt::Accepted(200)));
        assert!(matches!(classify(204, &body, None), Attempt::Accepted(204)));
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(s, &body, None), Attempt::Retry { .. }),
                "{s}"
            );
        }
        for s in [301, 400, 401, 403, 404, 409, 413, 415, 422] {
            match classify(s, &body, None) {
                Attempt::Refused(why) => assert_eq!(why, format!("HTTP {s}: nope")),
                _ => panic!("{s} must park"),
            }
        }
        match classify(503, &body, Some(7)) {
            Attempt::Retry { retry_after_s, .. } => assert_eq!(retry_after_s, Some(7)),
            _ => panic!("503 must retry"),
        }
    }

    #[test]
    fn digest_header_names_what_is_sent() {
        let plain = serde_json::json!({ "digest_algorithm": "sm3", "digest": "ab" });
        assert_eq!(digest_header(&plain), "sm3=ab");
        let masked = serde_json::json!({
            "digest_algorithm": "sha256", "digest": "ab",
            "egress_guard": { "sha256_after": "cd" }
        });
        assert_eq!(digest_header(&masked), "sha256=cd");
    }
}
