//! The one HTTPS client of the ingest API: `ferryctl push` and the egress
//! forwarder (which pushes delivered packages on to a downstream ferry)
//! both use it, so there is one implementation of mTLS, keep-alive,
//! `Expect: 100-continue`, retries and the server's refusal reasons.
//!
//! The digest travels in the `X-Ferry-Digest` header, and HTTP/1 headers go
//! before the body, so a pushed file is read twice: once to digest it, once
//! to send it. A file that changes between the two reads is refused by the
//! server (digest mismatch) instead of being delivered half old, half new.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};

/// Bodies at least this large ask for `100 Continue` first, so a refusal
/// decided from the headers alone (403, 413, 429) costs no upload.
pub(crate) const EXPECT_CONTINUE_MIN_BYTES: u64 = 1 << 20;
/// How long to wait for `100 Continue` before sending anyway (as curl
/// does: an HTTP/1.0 proxy in between would never send it).
pub(crate) const EXPECT_CONTINUE_WAIT: Duration = Duration::from_secs(1);
/// Read size while digesting and sending a file.
pub(crate) const CHUNK_BYTES: usize = 256 << 10;

/// Largest server answer read (the server's answers are small JSON).
pub(crate) const MAX_ANSWER_BYTES: usize = 1 << 20;
/// TCP connect plus TLS handshake.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// What `--retry` waits when a 429/503 carries no usable `Retry-After`.
pub(crate) const DEFAULT_RETRY_AFTER_S: u64 = 5;
/// Longest `Retry-After` that `--retry` honours; beyond it the file is
/// reported as temporarily refused instead of blocking the command.
pub(crate) const MAX_RETRY_AFTER_S: u64 = 600;

/// Why a push could not be made or answered. Each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The `--url` is not usable.
    #[error("--url `{url}`: {why}; give the ingest API as https://HOST:PORT (the ingress side's [ingest] listen address)")]
    BadUrl {
        /// As given.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// A command-line value is not usable.
    #[error("{0}")]
    Usage(String),
    /// The certificate, key or CA files.
    #[error("{0}")]
    Certs(#[from] ferry_certs::CertError),
    /// A file to push cannot be read.
    #[error("{path}: {source}; check the path and that this account may read the file")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file changed size while it was read.
    #[error("{path}: it changed while being read ({before} bytes, then {after}); push files only once they are complete")]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// Size when opened.
        before: u64,
        /// Bytes read.
        after: u64,
    },
    /// No TCP connection.
    #[error("cannot connect to {addr}: {source}; is the ingress ferryd running with an [ingest] section listening there?")]
    Connect {
        /// `HOST:PORT`.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server's certificate does not chain to `--cacert`.
    #[error("server certificate not trusted by {cacert}: {why}; give the CA that issued the ingest server's certificate with --cacert")]
    ServerCertUntrusted {
        /// The `--cacert` file.
        cacert: String,
        /// rustls's reason, in an operator's words.
        why: String,
    },
    /// The server's certificate is for another name.
    #[error("server certificate is not valid for `{host}`: use a host name or address its certificate carries in --url (`ferryctl certs show` lists them)")]
    ServerCertWrongName {
        /// The host in `--url`.
        host: String,
    },
    /// The server refused our client certificate (or its absence).
    #[error("client certificate refused by the server: {why}")]
    ClientCertRefused {
        /// What the server's alert says, and what to do.
        why: String,
    },
    /// Another TLS failure.
    #[error("TLS with {addr} failed: {why}; check that {addr} is the ingest API of a ferryd and that --cacert, --cert and --key belong to this link")]
    Tls {
        /// `HOST:PORT`.
        addr: String,
        /// rustls's words.
        why: String,
    },
    /// The HTTP exchange broke off.
    #[error("HTTP exchange with {addr} failed: {why}; check that {addr} is the ingest API of a ferryd (not another HTTPS service), then push again")]
    Http {
        /// `HOST:PORT`.
        addr: String,
        /// hyper's words.
        why: String,
    },
    /// The connection broke off (reset, end of stream) in the middle of a
    /// request, after the server had accepted our certificate: the server
    /// stopped or the network failed; not a certificate problem.
    #[error("the connection to {addr} broke off in the middle of the request ({why}); the server had accepted the client certificate, so it stopped, crashed or restarted, or the network between failed; the package was not acknowledged and the server keeps no partial upload: push it again once the server answers")]
    Interrupted {
        /// `HOST:PORT`.
        addr: String,
        /// What was seen.
        why: String,
    },
    /// Nothing moved for too long.
    #[error("no progress for {secs} s while {what}; the server or the network is stuck (raise --timeout for very slow links)")]
    Timeout {
        /// What was going on.
        what: &'static str,
        /// The limit.
        secs: u64,
    },
    /// The local async runtime could not start.
    #[error("cannot start the I/O runtime: {0}; the system is short of threads or file descriptors (check `ulimit -n` and `ulimit -u`)")]
    Runtime(std::io::Error),
}

impl PushError {
    /// Failures of the connection itself: every further file would fail
    /// the same way.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(
            self,
            PushError::Connect { .. }
                | PushError::ServerCertUntrusted { .. }
                | PushError::ServerCertWrongName { .. }
                | PushError::ClientCertRefused { .. }
                | PushError::Tls { .. }
        )
    }
}

/// Where the ingest API is.
#[derive(Debug, Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    authority: String,
    base_path: String,
    server_name: rustls::pki_types::ServerName<'static>,
}

impl Endpoint {
    /// Parses `https://HOST[:PORT][/PREFIX]` (port 443 by default).
    pub fn parse(url: &str) -> Result<Endpoint, PushError> {
        let bad = |why: &str| PushError::BadUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| bad("not a URL; write https://HOST:PORT"))?;
        match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => {}
            Some(_) => return Err(bad("the ingest API speaks HTTPS only; write https://")),
            None => return Err(bad("give the scheme: https://HOST:PORT")),
        }
        let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
            return Err(bad("no host; write https://HOST:PORT"));
        };
        if uri.query().is_some() {
            return Err(bad("no query string expected"));
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| bad("the host is neither a DNS name nor an IP address"))?;
        Ok(Endpoint {
            port: uri.port_u16().unwrap_or(443),
            authority: authority.as_str().to_owned(),
            base_path: uri.path().trim_end_matches('/').to_owned(),
            server_name,
            host,
        })
    }

    /// `HOST:PORT`, for messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What a push sends besides its bytes.
#[derive(Debug, Clone)]
pub struct Upload {
    /// `X-Ferry-File-Name`.
    pub file_name: String,
    /// `Content-Type`.
    pub content_type: String,
    /// `X-Ferry-Digest` value (`sha256=HEX`), if any.
    pub digest: Option<String>,
    /// The bytes.
    pub payload: Payload,
}

/// Where the bytes of an upload come from.
#[derive(Debug, Clone)]
pub enum Payload {
    /// `len` bytes streamed from a file.
    File {
        /// The file.
        path: PathBuf,
        /// Bytes to send (as digested).
        len: u64,
    },
    /// Bytes in memory (small packages, the benchmark).
    Bytes(Bytes),
}

impl Payload {
    fn len(&self) -> u64 {
        match self {
            Payload::File { len, .. } => *len,
            Payload::Bytes(b) => b.len() as u64,
        }
    }
}

/// The server's answer to one request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The JSON body (`{"raw": TEXT}` if the body was not JSON).
    pub body: serde_json::Value,
    /// `Retry-After` in seconds, when given as seconds.
    pub retry_after_s: Option<u64>,
}

impl Answer {
    /// `package_id` of a 202.
    pub fn package_id(&self) -> Option<&str> {
        self.body.get("package_id").and_then(|v| v.as_str())
    }
}

pub(crate) struct Connection {
    sender: SendRequest<UploadBody>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The connection task would otherwise go on writing a body the
        // server no longer reads.
        self.task.abort();
    }
}

/// An HTTPS client of one ingest API, keeping its connection alive
/// between requests (unless told not to).
pub struct IngestClient {
    endpoint: Endpoint,
    tls: tokio_rustls::TlsConnector,
    cacert: String,
    presents_cert: bool,
    conn: Option<Connection>,
    keep_alive: bool,
    idle_timeout: Duration,
    /// Whether the server of the current connection has accepted our
    /// certificate (see [`Watched`]): what tells a refused certificate
    /// from a server that died mid-request.
    cert_accepted: Arc<std::sync::atomic::AtomicBool>,
}

impl IngestClient {
    /// A client trusting the CAs in `cacert` and presenting `cert_key`
    /// (certificate and key PEM files), or no certificate.
    pub fn new(
        endpoint: Endpoint,
        cacert: &Path,
        cert_key: Option<(&Path, &Path)>,
    ) -> Result<IngestClient, PushError> {
        let config = match cert_key {
            Some((cert, key)) => ferry_certs::client_config(cacert, cert, key)?,
            None => ferry_certs::client_config_without_cert(cacert)?,
        };
        Ok(IngestClient::with_config(
            endpoint,
            config,
            &cacert.display().to_string(),
            cert_key.is_some(),
        ))
    }

    /// A client with a ready TLS configuration; `cacert` names the trust
    /// anchors in messages.
    pub fn with_config(
        endpoint: Endpoint,
        config: Arc<rustls::ClientConfig>,
        cacert: &str,
        presents_cert: bool,
    ) -> IngestClient {
        IngestClient {
            endpoint,
            tls: tokio_rustls::TlsConnector::from(config),
            cacert: cacert.to_owned(),
            presents_cert,
            conn: None,
            keep_alive: true,
            idle_timeout: Duration::from_secs(60),
            cert_accepted: Arc::default(),
        }
    }

    /// Whether to reuse the connection for the next request (default on).
    pub fn keep_alive(mut self, on: bool) -> IngestClient {
        self.keep_alive = on;
        self
    }

    /// How long a request may make no progress.
    pub fn idle_timeout(mut self, t: Duration) -> IngestClient {
        self.idle_timeout = t;
        self
    }

    /// `POST /v1/channels/{channel}/packages`. `sent` counts body bytes
    /// as they leave (for a progress bar).
    pub async fn push(
        &mut self,
        channel: &str,
        upload: &Upload,
        sent: Option<Arc<AtomicU64>>,
    ) -> Result<Answer, PushError> {
        check_channel(channel)?;
        let path = format!("{}/v1/channels/{channel}/packages", self.endpoint.base_path);
        self.post(&path, upload, &[], sent).await
    }

    /// The endpoint's own path (`https://HOST/PATH` as given), for a
    /// downstream system that takes uploads there.
    pub fn base_path(&self) -> &str {
        if self.endpoint.base_path.is_empty() {
            "/"
        } else {
            &self.endpoint.base_path
        }
    }

    /// `POST path` with `upload` as the body and `extra` headers besides
    /// the file name, content type and digest.
    pub async fn post(
        &mut self,
        path: &str,
        upload: &Upload,
        extra: &[(&'static str, String)],
        sent: Option<Arc<AtomicU64>>,
    ) -> Result<Answer, PushError> {
        let len = upload.payload.len();
        // A kept-alive connection the server closed meanwhile fails
        // before anything was processed: one more try on a fresh one.
        for attempt in 0..2 {
            if let Some(s) = &sent {
                s.store(0, Ordering::Relaxed);
            }
            let fresh = self.connect_if_needed().await?;
            let (go_tx, go) = if len >= EXPECT_CONTINUE_MIN_BYTES {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (Some(tx), Some(ContinueGate::new(rx)))
            } else {
                (None, None)
            };
            let body = UploadBody::open(&upload.payload, sent.clone(), go).await?;
            let mut req = Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(hyper::header::HOST, self.endpoint.authority.as_str())
                .header(hyper::header::USER_AGENT, USER_AGENT)
                .header(hyper::header::CONTENT_TYPE, upload.content_type.as_str())
                .header(hyper::header::CONTENT_LENGTH, len);
            // Non-ASCII names go as RFC 8187 `X-Ferry-File-Name*`.
            req = if upload.file_name.is_ascii() {
                req.header("x-ferry-file-name", upload.file_name.as_str())
            } else {
                req.header("x-ferry-file-name*", encode_ext_value(&upload.file_name))
            };
            if let Some(d) = &upload.digest {
                req = req.header("x-ferry-digest", d.as_str());
            }
            for (name, value) in extra {
                req = req.header(*name, value.as_str());
            }
            if go_tx.is_some() {
                req = req.header(hyper::header::EXPECT, "100-continue");
            }
            let mut req = req.body(body).map_err(|e| {
                PushError::Usage(format!(
                    "file name or content type cannot be sent in an HTTP header ({e})"
                ))
            })?;
            if let Some(tx) = go_tx {
                let tx = Mutex::new(Some(tx));
                hyper::ext::on_informational(&mut req, move |res| {
                    if res.status() == StatusCode::CONTINUE {
                        if let Some(tx) = tx.lock().ok().and_then(|mut g| g.take()) {
                            let _ = tx.send(());
                        }
                    }
                });
            }
            match self.exchange(req, sent.clone(), "sending").await {
                Err(Failure::Stale) if !fresh && attempt == 0 => continue,
                Err(f) => return Err(self.failure(f, fresh)),
                Ok(a) => return Ok(a),
            }
        }
        Err(PushError::Http {
            addr: self.endpoint.addr(),
            why: "the server closed the connection twice before answering".into(),
        })
    }

    /// `GET /v1/packages/{id}`.
    pub async fn state(&mut self, package_id: &str) -> Result<Answer, PushError> {
        if package_id.is_empty() || !package_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PushError::Usage(format!(
                "package id `{package_id}` is not hex"
            )));
        }
        let path = format!("{}/v1/packages/{package_id}", self.endpoint.base_path);
        for attempt in 0..2 {
            let fresh = self.connect_if_needed().await?;
            let req = Request::builder()
                .method(Method::GET)
                .uri(path.as_str())
                .header(hyper::header::HOST, self.endpoint.authority.as_str())
                .header(hyper::header::USER_AGENT, USER_AGENT)
                .body(UploadBody::empty())
                .map_err(|e| PushError::Usage(e.to_string()))?;
            match self
                .exchange(req, None, "asking for a package's state")
                .await
            {
                Err(Failure::Stale) if !fresh && attempt == 0 => continue,
                Err(f) => return Err(self.failure(f, fresh)),
                Ok(a) => return Ok(a),
            }
        }
        Err(PushError::Http {
            addr: self.endpoint.addr(),
            why: "the server closed the connection twice before answering".into(),
        })
    }

    /// Opens a connection unless a usable one is kept; true when new.
    async fn connect_if_needed(&mut self) -> Result<bool, PushError> {
        if let Some(c) = &mut self.conn {
            if !c.sender.is_closed() && c.sender.ready().await.is_ok() {
                return Ok(false);
            }
            self.conn = None;
        }
        let addr = self.endpoint.addr();
        let connect = async {
            let tcp =
                tokio::net::TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
                    .await
                    .map_err(|source| PushError::Connect {
                        addr: addr.clone(),
                        source,
                    })?;
            // Small requests back to back on one connection: Nagle's
            // algorithm would hold each behind the last one's ACK.
            let _ = tcp.set_nodelay(true);
            let tls = self
                .tls
                .connect(self.endpoint.server_name.clone(), tcp)
                .await
                .map_err(|e| {
                    self.classify_io(&e).unwrap_or_else(|| PushError::Tls {
                        addr: addr.clone(),
                        why: e.to_string(),
                    })
                })?;
            self.cert_accepted.store(false, Ordering::Release);
            let tls = Watched {
                inner: tls,
                accepted: self.cert_accepted.clone(),
            };
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .map_err(|e| PushError::Http {
                        addr: addr.clone(),
                        why: e.to_string(),
                    })?;
            let task = tokio::spawn(async move {
                // Its errors reach the request that was waiting on it.
                let _ = conn.await;
            });
            Ok::<_, PushError>(Connection { sender, task })
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(c)) => {
                self.conn = Some(c);
                Ok(true)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(PushError::Timeout {
                what: "connecting (TCP and TLS handshake)",
                secs: CONNECT_TIMEOUT.as_secs(),
            }),
        }
    }

    /// Sends `req` on the open connection and reads the answer, giving up
    /// when neither body bytes nor the answer move for the idle timeout.
    async fn exchange(
        &mut self,
        req: Request<UploadBody>,
        sent: Option<Arc<AtomicU64>>,
        what: &'static str,
    ) -> Result<Answer, Failure> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failure::Stale);
        };
        let idle = self.idle_timeout;
        let response = conn.sender.send_request(req);
        tokio::pin!(response);
        let progress = || sent.as_ref().map_or(0, |s| s.load(Ordering::Relaxed));
        let mut last = (progress(), Instant::now());
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let response = loop {
            tokio::select! {
                r = &mut response => break r,
                _ = tick.tick() => {
                    let now = progress();
                    if now != last.0 {
                        last = (now, Instant::now());
                    } else if last.1.elapsed() >= idle {
                        self.conn = None;
                        return Err(Failure::Timeout(what, idle.as_secs()));
                    }
                }
            }
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                // Closed before a byte of the answer: nothing was processed.
                if e.is_canceled() || (e.is_incomplete_message() && progress() == 0) {
                    return Err(Failure::Stale);
                }
                return Err(Failure::Hyper(e));
            }
        };
        let status = response.status();
        let retry_after_s = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let limited = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES);
        let bytes = match tokio::time::timeout(idle, limited.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => {
                self.conn = None;
                return Err(Failure::Other(format!("reading the answer: {e}")));
            }
            Err(_) => {
                self.conn = None;
                return Err(Failure::Timeout("reading the answer", idle.as_secs()));
            }
        };
        // Only a fully sent and answered success leaves the connection in
        // a known state; after a refusal the server may not have read the
        // body, and the connection is not worth reusing.
        if !self.keep_alive || !status.is_success() {
            self.conn = None;
        }
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::json!({ "raw": String::from_utf8_lossy(&bytes) }));
        Ok(Answer {
            status: status.as_u16(),
            body,
            retry_after_s,
        })
    }

    fn failure(&self, f: Failure, fresh: bool) -> PushError {
        let addr = self.endpoint.addr();
        // Seen from here, a refused certificate and a server that died
        // look alike (a reset or an end of stream); what tells them apart
        // is whether the server had accepted the certificate first.
        let accepted = self.cert_accepted.load(Ordering::Acquire);
        match f {
            Failure::Stale if fresh && accepted => PushError::Interrupted {
                addr,
                why: "the server closed the connection before answering".into(),
            },
            Failure::Stale if fresh => self.closed_after_handshake("no answer"),
            Failure::Stale => PushError::Http {
                addr,
                why: "the server closed the connection before answering".into(),
            },
            Failure::Timeout(what, secs) => PushError::Timeout { what, secs },
            Failure::Other(why) => PushError::Http { addr, why },
            Failure::Hyper(e) => {
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                let mut reset = false;
                while let Some(c) = cause {
                    if let Some(io) = c.downcast_ref::<std::io::Error>() {
                        if let Some(p) = self.classify_io(io) {
                            return p;
                        }
                        reset |= matches!(
                            io.kind(),
                            std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::BrokenPipe
                                | std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::UnexpectedEof
                        );
                    }
                    cause = c.source();
                }
                let broke_off = reset || e.is_incomplete_message() || e.is_closed();
                if broke_off && (accepted || !fresh) {
                    return PushError::Interrupted {
                        addr,
                        why: error_chain(&e),
                    };
                }
                if fresh && broke_off {
                    return self.closed_after_handshake(&error_chain(&e));
                }
                PushError::Http {
                    addr,
                    why: error_chain(&e),
                }
            }
        }
    }

    /// The server closed a new connection right after the handshake
    /// without an alert we could read. With TLS 1.3 the server checks the
    /// client certificate after the client considers the handshake done,
    /// and its alert is often lost to the TCP reset of a socket closed
    /// with our request unread: this is how a refused certificate looks.
    fn closed_after_handshake(&self, detail: &str) -> PushError {
        PushError::ClientCertRefused {
            why: format!(
                "the server closed the connection right after the TLS handshake without answering ({detail}); \
                 most likely it refused {}; the ingress ferryd's log says why",
                self.what_we_presented()
            ),
        }
    }

    fn what_we_presented(&self) -> &'static str {
        if self.presents_cert {
            "the client certificate (expired, revoked, or not issued by a CA it trusts)"
        } else {
            "the connection because no client certificate was given (--cert and --key)"
        }
    }

    /// A TLS failure inside an I/O error, in an operator's terms.
    fn classify_io(&self, io: &std::io::Error) -> Option<PushError> {
        let tls = io.get_ref()?.downcast_ref::<rustls::Error>()?;
        use rustls::AlertDescription as A;
        Some(match tls {
            rustls::Error::InvalidCertificate(c) => match c {
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. } => {
                    PushError::ServerCertWrongName {
                        host: self.endpoint.host.clone(),
                    }
                }
                _ => PushError::ServerCertUntrusted {
                    cacert: self.cacert.clone(),
                    why: ferry_certs::rejection_reason(tls),
                },
            },
            rustls::Error::AlertReceived(alert) => {
                let why = match alert {
                    A::CertificateRequired => Some(if self.presents_cert {
                        "the server wants a client certificate and got none".to_owned()
                    } else {
                        "the server requires a client certificate: give --cert and --key".to_owned()
                    }),
                    A::UnknownCA => Some(
                        "not issued by a CA the server trusts, or its CA's CRL is missing or out of date"
                            .to_owned(),
                    ),
                    A::CertificateRevoked => Some("it is revoked (listed in the CA's CRL)".into()),
                    A::CertificateExpired => Some("it is expired or not yet valid".into()),
                    A::UnsupportedCertificate => {
                        Some("it is not a client certificate (extended key usage)".into())
                    }
                    A::BadCertificate | A::CertificateUnknown | A::DecryptError => {
                        Some(format!("the server's alert: {alert:?}"))
                    }
                    A::AccessDenied => Some("access denied".into()),
                    _ => None,
                };
                match why {
                    Some(why) => PushError::ClientCertRefused { why },
                    None => PushError::Tls {
                        addr: self.endpoint.addr(),
                        why: format!("the server sent the alert {alert:?}"),
                    },
                }
            }
            other => PushError::Tls {
                addr: self.endpoint.addr(),
                why: other.to_string(),
            },
        })
    }
}

/// The client's TLS stream, noting when the server has accepted our
/// certificate: with TLS 1.3 the server sends its session tickets only
/// after it verified the client certificate (rustls sends two by
/// default), and with TLS 1.2 the handshake ends only after that check.
pub(crate) struct Watched {
    inner: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    accepted: Arc<std::sync::atomic::AtomicBool>,
}

impl Watched {
    fn note(&self) {
        let c = self.inner.get_ref().1;
        if c.tls13_tickets_received() > 0
            || c.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_2)
        {
            self.accepted.store(true, Ordering::Release);
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note();
        r
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How an exchange failed, before it is put in an operator's terms.
pub(crate) enum Failure {
    /// The connection was closed before the request was processed.
    Stale,
    Timeout(&'static str, u64),
    Hyper(hyper::Error),
    Other(String),
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

pub(crate) const USER_AGENT: &str = concat!("ferryctl/", env!("CARGO_PKG_VERSION"));

/// Channel names travel in the URL path; anything but these characters
/// would need escaping, and no policy names a channel like that.
pub(crate) fn check_channel(channel: &str) -> Result<(), PushError> {
    let ok = !channel.is_empty()
        && channel.len() <= 128
        && channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(PushError::Usage(format!(
            "--channel `{channel}`: a channel name is letters, digits, `-`, `_` and `.`"
        )))
    }
}

/// Holds a body back until the server sent `100 Continue`, or a second
/// passed.
pub(crate) struct ContinueGate {
    go: tokio::sync::oneshot::Receiver<()>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl ContinueGate {
    fn new(go: tokio::sync::oneshot::Receiver<()>) -> ContinueGate {
        ContinueGate {
            go,
            deadline: Box::pin(tokio::time::sleep(EXPECT_CONTINUE_WAIT)),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if Pin::new(&mut self.go).poll(cx).is_ready() {
            return Poll::Ready(());
        }
        self.deadline.as_mut().poll(cx)
    }
}

/// A request body: nothing, bytes in memory, or a file read chunk by chunk
/// as hyper asks for more (so memory stays at one chunk per upload).
pub struct UploadBody {
    source: Source,
    sent: Option<Arc<AtomicU64>>,
    gate: Option<ContinueGate>,
}

pub(crate) enum Source {
    Empty,
    Bytes(Option<Bytes>),
    File {
        file: tokio::fs::File,
        path: PathBuf,
        left: u64,
        buf: Vec<u8>,
    },
}

impl UploadBody {
    fn empty() -> UploadBody {
        UploadBody {
            source: Source::Empty,
            sent: None,
            gate: None,
        }
    }

    async fn open(
        payload: &Payload,
        sent: Option<Arc<AtomicU64>>,
        gate: Option<ContinueGate>,
    ) -> Result<UploadBody, PushError> {
        let source = match payload {
            Payload::Bytes(b) => Source::Bytes(Some(b.clone())),
            Payload::File { path, len } => Source::File {
                file: tokio::fs::File::open(path)
                    .await
                    .map_err(|source| PushError::File {
                        path: path.clone(),
                        source,
                    })?,
                path: path.clone(),
                left: *len,
                buf: vec![0; CHUNK_BYTES.min(usize::try_from(*len).unwrap_or(CHUNK_BYTES).max(1))],
            },
        };
        Ok(UploadBody { source, sent, gate })
    }

    fn count(&self, n: usize) {
        if let Some(s) = &self.sent {
            s.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl Body for UploadBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if let Some(gate) = &mut this.gate {
            if gate.poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.gate = None;
        }
        let chunk = match &mut this.source {
            Source::Empty => None,
            Source::Bytes(b) => b.take(),
            Source::File {
                file,
                path,
                left,
                buf,
            } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let want = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                let mut rb = ReadBuf::new(&mut buf[..want]);
                match Pin::new(file).poll_read(cx, &mut rb) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(())) => {}
                }
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: the file shrank while it was being sent",
                            path.display()
                        ),
                    ))));
                }
                *left -= n as u64;
                Some(Bytes::copy_from_slice(rb.filled()))
            }
        };
        match chunk {
            Some(c) => {
                this.count(c.len());
                Poll::Ready(Some(Ok(Frame::data(c))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Empty => true,
            Source::Bytes(b) => b.is_none(),
            Source::File { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(match &self.source {
            Source::Empty => 0,
            Source::Bytes(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            Source::File { left, .. } => *left,
        })
    }
}

/// The content type for a file name's extension, or
/// `application/octet-stream`.
pub fn guess_content_type(file_name: &str) -> &'static str {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "csv" => "text/csv",
        "json" => "application/json",
        "geojson" => "application/geo+json",
        "txt" => "text/plain",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "zip" => "application/zip",
        "tar" => "application/x-tar",
        "gz" | "tgz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// `UTF-8''` plus the name percent-encoded (RFC 8187 attr-char kept).
pub(crate) fn encode_ext_value(name: &str) -> String {
    let mut out = String::from("UTF-8''");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_names_round_trip_through_rfc_8187() {
        for name in ["地块-2026.csv", "a b.txt", "plain.csv", "秘%'.txt"] {
            let v = encode_ext_value(name);
            assert!(v.is_ascii() && v.starts_with("UTF-8''"), "{v}");
            assert_eq!(
                crate::ingress::ingest::decode_ext_value(&v).as_deref(),
                Ok(name)
            );
        }
        for bad in [
            "latin1''abc",
            "UTF-8''%E5%9",
            "UTF-8''a b",
            "UTF-8''%FF",
            "noquotes",
        ] {
            assert!(
                crate::ingress::ingest::decode_ext_value(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn urls_are_https_with_host_and_port() {
        let e = Endpoint::parse("https://127.0.0.1:8443").expect("parses");
        assert_eq!(e.addr(), "127.0.0.1:8443");
        assert_eq!(e.base_path, "");
        let e = Endpoint::parse("https://ingest.example/prefix/").expect("parses");
        assert_eq!(e.addr(), "ingest.example:443");
        assert_eq!(e.base_path, "/prefix");
        let e = Endpoint::parse("https://[::1]:9000").expect("parses");
        assert_eq!(e.addr(), "[::1]:9000");
        for bad in [
            "http://127.0.0.1:1",
            "127.0.0.1:8443",
            "https://",
            "https://h:1/?q",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_types_follow_extensions() {
        assert_eq!(guess_content_type("a.CSV"), "text/csv");
        assert_eq!(guess_content_type("x.geojson"), "application/geo+json");
        assert_eq!(guess_content_type("p.tar.gz"), "application/gzip");
        assert_eq!(guess_content_type("photo.jpeg"), "image/jpeg");
        assert_eq!(guess_content_type("README"), "application/octet-stream");
    }

    #[test]
    fn channels_are_path_safe() {
        assert!(check_channel("land-stats_2026.v1").is_ok());
        for bad in ["", "a/b", "a b", "..%2f", "é"] {
            assert!(check_channel(bad).is_err(), "{bad}");
        }
    }
}
