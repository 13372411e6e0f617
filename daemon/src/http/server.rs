//! What the two HTTPS servers (the ingest API and the admin API) share:
//! one client trust store (CA certificates and CRLs) that reloads on a
//! period and re-checks open connections against what it reloaded, a TLS
//! configuration that requires client certificates, the listener thread,
//! and the connection handling that bounds what a hostile client can hold
//! (handshake, header and idle deadlines; a global, a per-identity and a
//! per-address cap).
//!
//! Everything a client is refused at the connection level is reported to
//! the plane's [`Hooks`], which counts, audits and alarms it: no refusal
//! here is silent.

use crate::admin::protocol::SharedStatus;
use crate::DaemonError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

/// How often the accept loop looks at shutdown, reload and its hooks.
const TICK: Duration = Duration::from_millis(200);

/// The content of `files`, digested: a change of any byte (a CRL renewed
/// within the same second, same size) is a change.
fn digest_files(files: &[&Path]) -> Vec<u8> {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    for f in files {
        d.update(f.as_os_str().as_encoded_bytes());
        match std::fs::read(f) {
            Ok(bytes) => {
                d.update(&(bytes.len() as u64).to_le_bytes());
                d.update(&bytes);
            }
            Err(e) => d.update(format!("unreadable: {e}").as_bytes()),
        }
    }
    d.finish().as_ref().to_vec()
}

struct TrustState {
    store: Arc<ferry_certs::TrustStore>,
    verifier: Arc<dyn ClientCertVerifier>,
    digest: Vec<u8>,
}

/// The client trust store of the HTTPS planes: the CA certificates and
/// CRLs, read again every `period`; each change bumps a generation that
/// every open connection watches, so a certificate revoked while its
/// keep-alive connection stays open is cut off within one period. Planes
/// that name the same files share one instance (one reload, one state).
pub(crate) struct Trust {
    client_ca: Vec<PathBuf>,
    crl: Vec<PathBuf>,
    period_ms: AtomicU64,
    state: RwLock<TrustState>,
    last_check: Mutex<Instant>,
    generation: tokio::sync::watch::Sender<u64>,
}

/// Every trust store in use, to share one between planes that name the
/// same files.
static TRUSTS: Mutex<Vec<Weak<Trust>>> = Mutex::new(Vec::new());

impl Trust {
    /// The trust store of these files, loaded now (a bad file stops
    /// `ferryd` at start), or the one already in use for them; it reloads
    /// at the shortest period asked for.
    pub(crate) fn shared(
        client_ca: &[PathBuf],
        crl: &[PathBuf],
        period: Duration,
    ) -> Result<Arc<Trust>, DaemonError> {
        let mut all = TRUSTS.lock().map_err(|_| DaemonError::Poisoned)?;
        all.retain(|w| w.strong_count() > 0);
        if let Some(t) = all
            .iter()
            .filter_map(Weak::upgrade)
            .find(|t| t.client_ca == client_ca && t.crl == crl)
        {
            let ms = period.as_millis() as u64;
            t.period_ms.fetch_min(ms.max(1), Ordering::Relaxed);
            return Ok(t);
        }
        let (store, digest) = Self::load(client_ca, crl)?;
        let verifier = store.client_verifier()?;
        let t = Arc::new(Trust {
            client_ca: client_ca.to_vec(),
            crl: crl.to_vec(),
            period_ms: AtomicU64::new((period.as_millis() as u64).max(1)),
            state: RwLock::new(TrustState {
                store: Arc::new(store),
                verifier,
                digest,
            }),
            last_check: Mutex::new(Instant::now()),
            generation: tokio::sync::watch::channel(0).0,
        });
        all.push(Arc::downgrade(&t));
        Ok(t)
    }

    fn files(client_ca: &[PathBuf], crl: &[PathBuf]) -> Vec<PathBuf> {
        client_ca.iter().chain(crl.iter()).cloned().collect()
    }

    fn load(
        client_ca: &[PathBuf],
        crl: &[PathBuf],
    ) -> Result<(ferry_certs::TrustStore, Vec<u8>), DaemonError> {
        let files = Self::files(client_ca, crl);
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        // Digest first: a file replaced between the digest and the load is
        // seen as changed again at the next look.
        let digest = digest_files(&refs);
        let cas: Vec<&Path> = client_ca.iter().map(PathBuf::as_path).collect();
        let crls: Vec<&Path> = crl.iter().map(PathBuf::as_path).collect();
        Ok((ferry_certs::TrustStore::load(&cas, &crls)?, digest))
    }

    /// Reads the files again if a period has passed since the last look:
    /// `Some(Ok(true))` when the trust store changed (the generation moved
    /// on), `Some(Err)` when the files changed but cannot be loaded (the
    /// previous store stays in force), `None` when it was not time yet.
    pub(crate) fn reload_if_due(&self) -> Option<Result<bool, DaemonError>> {
        {
            let mut last = self.last_check.lock().ok()?;
            let period = Duration::from_millis(self.period_ms.load(Ordering::Relaxed));
            if last.elapsed() < period {
                return None;
            }
            *last = Instant::now();
        }
        Some(self.reload())
    }

    /// Reads the files now; true when they changed and were loaded.
    pub(crate) fn reload(&self) -> Result<bool, DaemonError> {
        let files = Self::files(&self.client_ca, &self.crl);
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let digest = digest_files(&refs);
        {
            let st = self.state.read().map_err(|_| DaemonError::Poisoned)?;
            if st.digest == digest {
                return Ok(false);
            }
        }
        let (store, digest) = Self::load(&self.client_ca, &self.crl)?;
        let verifier = store.client_verifier()?;
        {
            let mut st = self.state.write().map_err(|_| DaemonError::Poisoned)?;
            *st = TrustState {
                store: Arc::new(store),
                verifier,
                digest,
            };
        }
        self.generation.send_modify(|g| *g += 1);
        Ok(true)
    }

    /// The generation of the store in force (moves on at each change).
    pub(crate) fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn store(&self) -> Result<Arc<ferry_certs::TrustStore>, DaemonError> {
        Ok(self
            .state
            .read()
            .map_err(|_| DaemonError::Poisoned)?
            .store
            .clone())
    }

    /// Verifies a peer's chain against the store in force now (a CRL
    /// reloaded since its handshake counts): the reason when refused.
    pub(crate) fn verify(&self, chain: &[CertificateDer<'static>]) -> Result<(), String> {
        let Some((leaf, rest)) = chain.split_first() else {
            return Err("no client certificate".into());
        };
        let verifier = match self.state.read() {
            Ok(st) => st.verifier.clone(),
            Err(_) => return Err(DaemonError::Poisoned.to_string()),
        };
        verifier
            .verify_client_cert(leaf, rest, rustls::pki_types::UnixTime::now())
            .map(|_| ())
            .map_err(|e| ferry_certs::rejection_reason(&e))
    }
}

/// One HTTPS plane's TLS side: its own certificate and key, and the
/// shared client trust store; its server configuration is rebuilt when
/// either changes.
pub(crate) struct Plane {
    name: &'static str,
    cert: PathBuf,
    key: PathBuf,
    trust: Arc<Trust>,
    current: Mutex<PlaneTls>,
}

struct PlaneTls {
    acceptor: tokio_rustls::TlsAcceptor,
    trust_generation: u64,
    own_digest: Vec<u8>,
}

/// Reports a reload of `plane`'s TLS files (`ingest`, `admin API`) the one
/// way both planes share: a failure is logged and raised as a status alarm
/// (the previous files stay in force, so an operator must act), and the
/// alarm clears at the next successful load.
pub(crate) fn report_reload(status: &SharedStatus, plane: &str, r: Result<bool, DaemonError>) {
    let prefix = format!("{plane} TLS:");
    match r {
        // Unchanged files are the ones in force, so they loaded: clear too.
        // Planes that share a trust store see one `Ok(true)` between them;
        // the other plane learns of the repair from its next `Ok(false)`.
        Ok(_) => crate::admin::protocol::update(status, |st| {
            st.alarms.retain(|a| !a.starts_with(&prefix))
        }),
        Err(e) => {
            // The error may already name the plane (`DaemonError::Tls`);
            // say it once.
            let detail = match &e {
                DaemonError::Tls { source, .. } => source.to_string(),
                DaemonError::Certs(source) => source.to_string(),
                other => other.to_string(),
            };
            tracing::error!(plane, error = %detail, "TLS files changed but cannot be loaded; the previous ones stay in force");
            let msg = format!("{prefix} {detail}; the previous trust store stays in force");
            crate::admin::protocol::update(status, |st| {
                // One alarm per plane: a newer failure replaces the older.
                st.alarms.retain(|a| !a.starts_with(&prefix));
                st.alarms.push(msg);
            });
        }
    }
}

impl Plane {
    /// Loads the plane's certificate and the trust store (shared with the
    /// other plane when they name the same CA and CRL files).
    pub(crate) fn new(
        name: &'static str,
        cert: &Path,
        key: &Path,
        client_ca: &[PathBuf],
        crl: &[PathBuf],
        reload: Duration,
    ) -> Result<Arc<Plane>, DaemonError> {
        // Certificate errors name the plane, so an operator knows whether
        // the ingest or the admin files are wrong.
        let on_plane = |e: DaemonError| match e {
            DaemonError::Certs(source) => DaemonError::Tls {
                plane: name,
                source: Box::new(source),
            },
            other => other,
        };
        let trust = Trust::shared(client_ca, crl, reload).map_err(on_plane)?;
        let trust_generation = trust.generation();
        let own_digest = digest_files(&[cert, key]);
        let config = ferry_certs::server_config(cert, key, &*trust.store().map_err(on_plane)?)
            .map_err(|source| DaemonError::Tls {
                plane: name,
                source: Box::new(source),
            })?;
        Ok(Arc::new(Plane {
            name,
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            trust,
            current: Mutex::new(PlaneTls {
                acceptor: tokio_rustls::TlsAcceptor::from(config),
                trust_generation,
                own_digest,
            }),
        }))
    }

    /// The acceptor for a new connection, and the trust generation its
    /// verifier was built from.
    fn acceptor(&self) -> Option<(tokio_rustls::TlsAcceptor, u64)> {
        self.current
            .lock()
            .ok()
            .map(|c| (c.acceptor.clone(), c.trust_generation))
    }

    /// Reloads the trust store when due and rebuilds this plane's server
    /// configuration when the store or the plane's own certificate or key
    /// changed: `Some(Ok(true))` when new connections get new TLS files,
    /// `Some(Err)` when they changed but cannot be used (the previous ones
    /// stay in force).
    pub(crate) fn refresh(&self) -> Option<Result<bool, DaemonError>> {
        let reloaded = self.trust.reload_if_due()?;
        if let Err(e) = reloaded {
            return Some(Err(e));
        }
        let mut cur = match self.current.lock() {
            Ok(c) => c,
            Err(_) => return Some(Err(DaemonError::Poisoned)),
        };
        let own = digest_files(&[&self.cert, &self.key]);
        let generation = self.trust.generation();
        if own == cur.own_digest && generation == cur.trust_generation {
            return Some(Ok(false));
        }
        let built = self
            .trust
            .store()
            .and_then(|store| Ok(ferry_certs::server_config(&self.cert, &self.key, &store)?));
        Some(match built {
            Ok(config) => {
                cur.acceptor = tokio_rustls::TlsAcceptor::from(config);
                cur.own_digest = own;
                cur.trust_generation = generation;
                tracing::info!(
                    plane = self.name,
                    "TLS files changed: trust store and certificate reloaded"
                );
                Ok(true)
            }
            Err(e) => Err(e),
        })
    }
}

/// The caps and deadlines one plane's connections are held to.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) handshake: Duration,
    pub(crate) header: Duration,
    pub(crate) idle: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_identity: usize,
    pub(crate) max_handshakes_per_address: usize,
}

impl From<&crate::config::ConnectionLimits> for Limits {
    fn from(c: &crate::config::ConnectionLimits) -> Limits {
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Limits {
            handshake: Duration::from_secs(c.handshake_timeout_s),
            header: Duration::from_secs(c.header_timeout_s),
            idle: Duration::from_secs(c.idle_timeout_s),
            max_connections: n(c.max_connections),
            max_connections_per_identity: n(c.max_connections_per_identity),
            max_handshakes_per_address: n(c.max_handshakes_per_address),
        }
    }
}

/// A client refused at the connection level.
pub(crate) struct Refused<'a> {
    /// A stable reason label (metrics, audit): `tls_handshake`,
    /// `handshake_timeout`, `handshake_cap_address`, `connection_cap_global`,
    /// `connection_cap_identity`, `certificate_no_longer_trusted`.
    pub(crate) reason: &'static str,
    pub(crate) peer: SocketAddr,
    /// The certificate's identity, once known.
    pub(crate) identity: Option<&'a ferry_certs::Identity>,
    /// What was seen, in an operator's words.
    pub(crate) detail: String,
}

/// What a plane does besides serving requests.
pub(crate) trait Hooks: Send + Sync + 'static {
    /// A client was refused at the connection level.
    fn refused(&self, r: Refused<'_>);
    /// The outcome of a trust store / certificate reload.
    fn reloaded(&self, r: Result<bool, DaemonError>);
    /// Called every tick of the accept loop.
    fn tick(&self) {}
    /// True once the plane must stop.
    fn shutting_down(&self) -> bool;
}

/// One client connection after its handshake, as request handlers see it.
pub(crate) struct Conn {
    pub(crate) peer: SocketAddr,
    pub(crate) identity: Arc<ferry_certs::Identity>,
    chain: Vec<CertificateDer<'static>>,
    trust: Arc<Trust>,
    /// The trust generation the chain was last verified under.
    checked: AtomicU64,
    /// Requests being answered.
    in_flight: AtomicUsize,
    /// When the last request ended (or the connection began), ms since
    /// `born`.
    last_active_ms: AtomicU64,
    born: Instant,
}

impl Conn {
    /// Whether the client certificate is still trusted under the trust
    /// store in force: verified again once per reload (a CRL that revokes
    /// it reaches this connection within the reload period).
    pub(crate) fn still_trusted(&self) -> Result<(), String> {
        let now = self.trust.generation();
        if self.checked.load(Ordering::Acquire) == now {
            return Ok(());
        }
        self.trust.verify(&self.chain)?;
        self.checked.store(now, Ordering::Release);
        Ok(())
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.born.elapsed().as_millis() as u64;
        Some(Duration::from_millis(
            since.saturating_sub(self.last_active_ms.load(Ordering::Acquire)),
        ))
    }
}

/// A refusal answer that also closes the connection.
pub(crate) fn closing_answer(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

/// Handshakes in progress per address, oldest first, each with the means
/// to cut it off.
type Pending = Arc<Mutex<HashMap<IpAddr, VecDeque<(u64, tokio::sync::oneshot::Sender<()>)>>>>;

/// Decrements a per-identity count when its connection ends.
struct IdentitySlot {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Drop for IdentitySlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.counts.lock() {
            if let Some(n) = m.get_mut(&self.key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.key);
                }
            }
        }
    }
}

/// Decrements `in_flight` and stamps the end of a request.
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.born.elapsed().as_millis() as u64;
        self.0.last_active_ms.store(now, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `listener` until `hooks` says stop: TLS with the plane's current
/// configuration, the caps and deadlines of `limits`, and `handler` for
/// every request of a connection whose certificate is (still) trusted.
pub(crate) async fn serve<H, Fut>(
    listener: std::net::TcpListener,
    plane: Arc<Plane>,
    limits: Limits,
    hooks: Arc<dyn Hooks>,
    handler: H,
) where
    H: Fn(Arc<Conn>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(plane = plane.name, error = %e, "HTTPS listener");
            return;
        }
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let pending: Pending = Arc::default();
    let identities: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut next_id = 0u64;
    let mut tick = tokio::time::interval(TICK);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tick.tick() => {
                if hooks.shutting_down() {
                    return;
                }
                if let Some(r) = plane.refresh() {
                    hooks.reloaded(r);
                }
                hooks.tick();
                continue;
            }
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(plane = plane.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Small answers go out at once, not after Nagle's delay.
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            hooks.refused(Refused {
                reason: "connection_cap_global",
                peer,
                identity: None,
                detail: format!("{} connections open, the limit", limits.max_connections),
            });
            continue;
        };
        // A new handshake from an address at its cap cuts off that
        // address's oldest one: a flood from one host cannot keep a
        // handshake slot from a client that just arrived.
        next_id += 1;
        let id = next_id;
        let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<()>();
        if let Ok(mut p) = pending.lock() {
            let q = p.entry(peer.ip()).or_default();
            while q.len() >= limits.max_handshakes_per_address.max(1) {
                if let Some((_, cut)) = q.pop_front() {
                    let _ = cut.send(());
                }
            }
            q.push_back((id, cut_tx));
        }
        let Some((acceptor, verified_under)) = plane.acceptor() else {
            continue;
        };
        let (plane, limits, hooks, handler, pending, identities) = (
            plane.clone(),
            limits.clone(),
            hooks.clone(),
            handler.clone(),
            pending.clone(),
            identities.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = tokio::select! {
                r = tokio::time::timeout(limits.handshake, acceptor.accept(tcp)) => Some(r),
                _ = cut_rx => None,
            };
            if let Ok(mut p) = pending.lock() {
                if let Some(q) = p.get_mut(&peer.ip()) {
                    q.retain(|(i, _)| *i != id);
                    if q.is_empty() {
                        p.remove(&peer.ip());
                    }
                }
            }
            let tls = match handshake {
                Some(Ok(Ok(s))) => s,
                Some(Ok(Err(e))) => {
                    let detail = match e.get_ref().and_then(|x| x.downcast_ref::<rustls::Error>()) {
                        Some(t) => ferry_certs::rejection_reason(t),
                        None => e.to_string(),
                    };
                    hooks.refused(Refused {
                        reason: "tls_handshake",
                        peer,
                        identity: None,
                        detail,
                    });
                    return;
                }
                Some(Err(_)) => {
                    hooks.refused(Refused {
                        reason: "handshake_timeout",
                        peer,
                        identity: None,
                        detail: format!(
                            "TLS handshake not finished within {} s",
                            limits.handshake.as_secs()
                        ),
                    });
                    return;
                }
                None => {
                    hooks.refused(Refused {
                        reason: "handshake_cap_address",
                        peer,
                        identity: None,
                        detail: format!(
                            "more than {} TLS handshakes in progress from this address; the oldest was closed",
                            limits.max_handshakes_per_address
                        ),
                    });
                    return;
                }
            };
            let chain: Vec<CertificateDer<'static>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
                .unwrap_or_default();
            let identity = match ferry_certs::Identity::from_peer_certificates(
                tls.get_ref().1.peer_certificates(),
            ) {
                Ok(Some(id)) => Arc::new(id),
                Ok(None) | Err(_) => {
                    hooks.refused(Refused {
                        reason: "tls_handshake",
                        peer,
                        identity: None,
                        detail: "client certificate unreadable".into(),
                    });
                    return;
                }
            };
            // Counted per subject: a pusher's renewed certificate is the
            // same client.
            let (slot, over_cap) = {
                let key = identity.subject.clone();
                match identities.lock() {
                    Ok(mut m) => {
                        let n = m.entry(key.clone()).or_insert(0);
                        if *n >= limits.max_connections_per_identity {
                            (None, Some(*n))
                        } else {
                            *n += 1;
                            (
                                Some(IdentitySlot {
                                    counts: identities.clone(),
                                    key,
                                }),
                                None,
                            )
                        }
                    }
                    Err(_) => return,
                }
            };
            if let Some(open) = over_cap {
                hooks.refused(Refused {
                    reason: "connection_cap_identity",
                    peer,
                    identity: Some(identity.as_ref()),
                    detail: format!("{open} connections of this identity open, the limit"),
                });
                // Answered and closed at once, without waiting for a
                // request: a connection over the cap must not hold a slot
                // of the global cap either.
                let mut tls = tls;
                let body = serde_json::json!({
                    "error": format!("too many connections of this client certificate ({open} open, the limit); reuse one connection (keep-alive) or close the others")
                })
                .to_string();
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tokio::time::timeout(limits.header, async {
                    use tokio::io::AsyncWriteExt as _;
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                })
                .await;
                return;
            }
            let conn = Arc::new(Conn {
                peer,
                identity,
                chain,
                // The handshake verified the chain under the acceptor's
                // generation: a reload since then is checked at the first
                // request.
                checked: AtomicU64::new(verified_under),
                trust: plane.trust.clone(),
                in_flight: AtomicUsize::new(0),
                last_active_ms: AtomicU64::new(0),
                born: Instant::now(),
            });
            let service = {
                let (conn, hooks) = (conn.clone(), hooks.clone());
                hyper::service::service_fn(move |req| {
                    let (conn, hooks, handler) = (conn.clone(), hooks.clone(), handler.clone());
                    async move {
                        conn.in_flight.fetch_add(1, Ordering::AcqRel);
                        let _busy = InFlight(conn.clone());
                        let answer = if let Err(why) = conn.still_trusted() {
                            hooks.refused(Refused {
                                reason: "certificate_no_longer_trusted",
                                peer: conn.peer,
                                identity: Some(conn.identity.as_ref()),
                                detail: why.clone(),
                            });
                            closing_answer(
                                StatusCode::FORBIDDEN,
                                &format!("client certificate no longer trusted: {why}; connection closed"),
                            )
                        } else {
                            handler(conn.clone(), req).await
                        };
                        Ok::<_, std::convert::Infallible>(answer)
                    }
                })
            };
            let io = hyper_util::rt::TokioIo::new(tls);
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header)
                .serve_connection(io, service);
            tokio::pin!(served);
            let mut changes = plane.trust.subscribe();
            changes.borrow_and_update();
            let mut watching = true;
            let mut closing: Option<Instant> = None;
            let mut look = tokio::time::interval(Duration::from_millis(500).min(limits.idle));
            loop {
                tokio::select! {
                    r = served.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(plane = plane.name, %peer, error = %e, "connection ended");
                        }
                        break;
                    }
                    c = changes.changed(), if watching => {
                        if c.is_err() {
                            watching = false;
                            continue;
                        }
                        if let Err(why) = conn.still_trusted() {
                            hooks.refused(Refused {
                                reason: "certificate_no_longer_trusted",
                                peer,
                                identity: Some(conn.identity.as_ref()),
                                detail: why,
                            });
                            served.as_mut().graceful_shutdown();
                            closing.get_or_insert_with(Instant::now);
                            watching = false;
                        }
                    }
                    _ = look.tick() => {
                        match closing {
                            // A request still running after its connection
                            // was told to close gets the idle period, then
                            // the connection is dropped.
                            Some(t) if t.elapsed() >= limits.idle => break,
                            Some(_) => {}
                            None => {
                                if conn.idle_for().is_some_and(|d| d >= limits.idle) {
                                    served.as_mut().graceful_shutdown();
                                    closing = Some(Instant::now());
                                }
                            }
                        }
                    }
                }
            }
            drop(slot);
        });
    }
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
        .map_err(DaemonError::thread_start("server"))
}
