//! Real mTLS handshakes on loopback: a tiny HTTPS server built from
//! `server_config`, and rustls, curl and openssl s_client as clients.
//!
//! Every socket has timeouts, every child process a deadline, every server
//! thread is joined.

use ferry_certs::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConfig, ServerConnection, StreamOwned};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(5);
const PROCESS_TIMEOUT: Duration = Duration::from_secs(20);
const SERVER_LIFETIME: Duration = Duration::from_secs(60);
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

/// What the server made of one connection.
#[derive(Debug)]
enum Outcome {
    /// Handshake completed; the request was answered for this identity.
    Served(Box<Identity>),
    /// Handshake refused, with the reason the server saw.
    Refused(String),
}

struct TestServer {
    addr: SocketAddr,
    outcomes: mpsc::Receiver<Outcome>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(config: Arc<ServerConfig>) -> TestServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, outcomes) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + SERVER_LIFETIME;
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let outcome = serve_one(config.clone(), stream);
                        if tx.send(outcome).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        TestServer {
            addr,
            outcomes,
            stop,
            thread: Some(thread),
        }
    }

    fn next_outcome(&self) -> Outcome {
        self.outcomes
            .recv_timeout(Duration::from_secs(15))
            .expect("the server saw a connection")
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.unwrap();
            }
        }
    }
}

fn tls_reason(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(tls) => rejection_reason(tls),
        None => e.to_string(),
    }
}

fn serve_one(config: Arc<ServerConfig>, stream: TcpStream) -> Outcome {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let conn = ServerConnection::new(config).unwrap();
    let mut tls = StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            return Outcome::Refused(tls_reason(&e));
        }
    }
    let identity = match Identity::from_peer_certificates(tls.conn.peer_certificates()) {
        Ok(Some(id)) => Box::new(id),
        Ok(None) => return Outcome::Refused("handshake finished without a certificate".into()),
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    // Read the request head (bounded).
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Outcome::Refused(tls_reason(&e)),
        }
    }
    let body = format!(
        "CN={} role={} fp={}\n",
        identity.common_name.as_deref().unwrap_or("-"),
        identity.role.as_deref().unwrap_or("-"),
        identity.fingerprint_sha256
    );
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(resp.as_bytes());
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Outcome::Served(identity)
}

/// A site: CA, server certificate for 127.0.0.1, and client certificates.
struct Site {
    tmp: tempfile::TempDir,
    ca: CaInfo,
    server: Issued,
    out: PathBuf,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let ca_dir = tmp.path().join("ca");
        let out = tmp.path().join("certs");
        let ca = init_ca(&ca_dir, "Ferry Test Site CA", 365).unwrap();
        let server = issue_server(
            &ca_dir,
            &out,
            "ingest",
            &["localhost".to_string()],
            &["127.0.0.1".parse().unwrap()],
            30,
        )
        .unwrap();
        Site {
            tmp,
            ca,
            server,
            out,
        }
    }

    fn client(&self, name: &str, role: Option<&str>) -> Issued {
        issue_client(
            &self.ca.dir,
            &self.out,
            name,
            role.map(|r| Role::new(r).unwrap()),
            30,
        )
        .unwrap()
    }

    fn trust(&self) -> TrustStore {
        TrustStore::load(
            &[self.ca.cert_path.as_path()],
            &[self.ca.crl_path.as_path()],
        )
        .unwrap()
    }

    fn start(&self) -> TestServer {
        let cfg =
            server_config(&self.server.cert_path, &self.server.key_path, &self.trust()).unwrap();
        TestServer::start(cfg)
    }

    fn rustls_client(&self, c: &Issued) -> Arc<rustls::ClientConfig> {
        client_config(&self.ca.cert_path, &c.cert_path, &c.key_path).unwrap()
    }
}

/// One HTTPS GET with a rustls client; the response text or the error.
fn rustls_get(cfg: Arc<rustls::ClientConfig>, port: u16) -> Result<String, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::IpAddress(std::net::IpAddr::from(Ipv4Addr::LOCALHOST).into());
    let conn = ClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(REQUEST).map_err(|e| e.to_string())?;
    let mut resp = String::new();
    tls.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    Ok(resp)
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs a child with `input` on stdin, killed after `PROCESS_TIMEOUT`.
fn run(mut cmd: Command, input: &[u8]) -> Ran {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {PROCESS_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    Ran {
        ok: status.success(),
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

fn tool_present(name: &str, version_arg: &str) -> bool {
    Command::new(name)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn curl(ca: &Path, client: Option<&Issued>, port: u16) -> Ran {
    assert!(
        tool_present("curl", "--version"),
        "curl is installed on the test machines"
    );
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"]).arg(ca);
    if let Some(c) = client {
        cmd.arg("--cert").arg(&c.cert_path);
        cmd.arg("--key").arg(&c.key_path);
    }
    cmd.arg(format!("https://127.0.0.1:{port}/"));
    run(cmd, b"")
}

fn s_client(ca: &Path, client: &Issued, port: u16) -> Ran {
    assert!(
        tool_present("openssl", "version"),
        "openssl is installed on the test machines"
    );
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&client.cert_path)
        .arg("-key")
        .arg(&client.key_path)
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_return_error", "-quiet"]);
    run(cmd, REQUEST)
}

fn expect_served(outcome: Outcome, want: &Identity) {
    match outcome {
        Outcome::Served(id) => assert_eq!(&*id, want),
        Outcome::Refused(r) => panic!("server refused a valid client: {r}"),
    }
}

fn expect_refused(outcome: Outcome, reason: &str) {
    match outcome {
        Outcome::Refused(r) => {
            assert!(r.contains(reason), "refused for `{r}`, expected `{reason}`")
        }
        Outcome::Served(id) => panic!("server accepted {id:?}"),
    }
}

#[test]
fn valid_client_is_accepted_and_identified() {
    let site = Site::new();
    let alice = site.client("alice", Some("sysadmin"));
    let pusher = site.client("registry-feed", Some("pusher"));
    let server = site.start();

    let resp = rustls_get(site.rustls_client(&alice), server.port()).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    let line = format!(
        "CN=alice role=sysadmin fp={}",
        alice.identity.fingerprint_sha256
    );
    assert!(resp.contains(&line), "{resp}");
    match server.next_outcome() {
        Outcome::Served(id) => {
            assert_eq!(id.common_name.as_deref(), Some("alice"));
            assert_eq!(id.role.as_deref(), Some("sysadmin"));
            assert_eq!(id.fingerprint_sha256, alice.identity.fingerprint_sha256);
            assert_eq!(id.serial, alice.identity.serial);
        }
        Outcome::Refused(r) => panic!("refused: {r}"),
    }

    let ran = curl(&site.ca.cert_path, Some(&pusher), server.port());
    assert!(ran.ok, "curl failed: {}", ran.stderr);
    assert_eq!(
        ran.stdout,
        format!(
            "CN=registry-feed role=pusher fp={}\n",
            pusher.identity.fingerprint_sha256
        )
    );
    expect_served(server.next_outcome(), &pusher.identity);

    let ran = s_client(&site.ca.cert_path, &alice, server.port());
    assert!(
        ran.stdout.contains("HTTP/1.1 200 OK"),
        "{}\n{}",
        ran.stdout,
        ran.stderr
    );
    assert!(ran.stdout.contains(&line), "{}", ran.stdout);
    expect_served(server.next_outcome(), &alice.identity);
}

#[test]
fn client_without_certificate_is_refused() {
    let site = Site::new();
    let server = site.start();

    let cfg = client_config_without_cert(&site.ca.cert_path).unwrap();
    let err = rustls_get(cfg, server.port()).unwrap_err();
    assert!(!err.contains("200 OK"), "{err}");
    expect_refused(server.next_outcome(), "no client certificate presented");

    let ran = curl(&site.ca.cert_path, None, server.port());
    assert!(
        !ran.ok,
        "curl without a certificate succeeded: {}",
        ran.stdout
    );
    assert!(!ran.stdout.contains("CN="), "{}", ran.stdout);
    expect_refused(server.next_outcome(), "no client certificate presented");
}

#[test]
fn client_from_another_ca_is_refused() {
    let site = Site::new();
    let rogue_dir = site.tmp.path().join("rogue");
    init_ca(&rogue_dir, "Rogue CA", 365).unwrap();
    // Same name and role as a real administrator: only the issuer differs.
    let mallory = issue_client(
        &rogue_dir,
        &rogue_dir,
        "alice",
        Some(Role::new("sysadmin").unwrap()),
        30,
    )
    .unwrap();
    let server = site.start();

    let cfg = client_config(&site.ca.cert_path, &mallory.cert_path, &mallory.key_path).unwrap();
    let err = rustls_get(cfg, server.port()).unwrap_err();
    assert!(!err.contains("200 OK"), "{err}");
    expect_refused(server.next_outcome(), "not issued by a trusted CA");

    let ran = curl(&site.ca.cert_path, Some(&mallory), server.port());
    assert!(
        !ran.ok,
        "curl with a rogue certificate succeeded: {}",
        ran.stdout
    );
    expect_refused(server.next_outcome(), "not issued by a trusted CA");
}

#[test]
fn expired_client_is_refused() {
    let site = Site::new();
    let now = time::OffsetDateTime::now_utc();
    let mut req = IssueRequest::client("stale", Some(Role::new("pusher").unwrap()), 1).unwrap();
    req.validity = Validity::between(
        now - time::Duration::days(10),
        now - time::Duration::hours(1),
    )
    .unwrap();
    let stale = issue(&site.ca.dir, &site.out, &req).unwrap();
    let server = site.start();

    let err = rustls_get(site.rustls_client(&stale), server.port()).unwrap_err();
    assert!(!err.contains("200 OK"), "{err}");
    expect_refused(server.next_outcome(), "expired");

    let ran = curl(&site.ca.cert_path, Some(&stale), server.port());
    assert!(
        !ran.ok,
        "curl with an expired certificate succeeded: {}",
        ran.stdout
    );
    expect_refused(server.next_outcome(), "expired");
}

#[test]
fn revoked_client_is_refused_once_the_crl_is_reloaded() {
    let site = Site::new();
    let bob = site.client("bob", Some("auditor"));
    let carol = site.client("carol", Some("auditor"));

    // Before revocation: accepted.
    let before = site.start();
    let resp = rustls_get(site.rustls_client(&bob), before.port()).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    expect_served(before.next_outcome(), &bob.identity);

    let revoked = revoke(
        &site.ca.dir,
        &RevokeTarget::Serial(bob.identity.serial.clone()),
        RevokeReason::KeyCompromise,
    )
    .unwrap();
    assert_eq!(revoked.crl.number, 2);

    // A server still holding the old trust store does not know yet: the
    // CRL takes effect when the trust store is reloaded.
    let resp = rustls_get(site.rustls_client(&bob), before.port()).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    expect_served(before.next_outcome(), &bob.identity);
    drop(before);

    let after = site.start();
    let err = rustls_get(site.rustls_client(&bob), after.port()).unwrap_err();
    assert!(!err.contains("200 OK"), "{err}");
    expect_refused(after.next_outcome(), "revoked");

    let ran = curl(&site.ca.cert_path, Some(&bob), after.port());
    assert!(
        !ran.ok,
        "curl with a revoked certificate succeeded: {}",
        ran.stdout
    );
    expect_refused(after.next_outcome(), "revoked");

    let ran = s_client(&site.ca.cert_path, &bob, after.port());
    assert!(!ran.stdout.contains("200 OK"), "{}", ran.stdout);
    expect_refused(after.next_outcome(), "revoked");

    // Others of the same CA are unaffected.
    let ran = curl(&site.ca.cert_path, Some(&carol), after.port());
    assert!(ran.ok, "{}", ran.stderr);
    assert!(
        ran.stdout.starts_with("CN=carol role=auditor"),
        "{}",
        ran.stdout
    );
    expect_served(after.next_outcome(), &carol.identity);
}

#[test]
fn server_config_refuses_a_key_that_does_not_match() {
    let site = Site::new();
    let other = site.client("other", None);
    let err = server_config(&site.server.cert_path, &other.key_path, &site.trust()).unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
}

#[test]
fn openssl_verify_agrees_with_the_crl() {
    // The files work with stock tools, as docs/certs.md shows operators.
    let site = Site::new();
    let ok = site.client("ok", Some("pusher"));
    let gone = site.client("gone", None);
    revoke(
        &site.ca.dir,
        &RevokeTarget::CertFile(gone.cert_path.clone()),
        RevokeReason::Superseded,
    )
    .unwrap();
    let verify = |c: &Issued| {
        let mut cmd = Command::new("openssl");
        cmd.args(["verify", "-crl_check", "-CAfile"])
            .arg(&site.ca.cert_path)
            .arg("-CRLfile")
            .arg(&site.ca.crl_path)
            .arg(&c.cert_path);
        run(cmd, b"")
    };
    let r = verify(&ok);
    assert!(
        r.ok && r.stdout.contains(": OK"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let r = verify(&gone);
    assert!(!r.ok, "{}", r.stdout);
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("certificate revoked"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let r = verify(&site.server);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
}
