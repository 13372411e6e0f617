//! Egress delivery to a downstream HTTPS endpoint with mTLS, against a
//! real TLS server that verifies ferryd's client certificate: packages
//! arrive byte-identical with their metadata; an endpoint that is down
//! (and ferryd killed with -9 meanwhile) gets every package once when it
//! comes back; 503s are retried; an outright 403 parks that package only,
//! and `ferryctl forward retry` sends it once the endpoint takes it.

mod common;

use common::*;
use http_body_util::BodyExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the downstream server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    key: String,
    file_name: String,
    content_type: String,
    channel: String,
    client_cn: String,
    status: u16,
}

/// What the downstream server does and saw.
#[derive(Default)]
struct ServerState {
    /// Answer this many requests with 503 (Retry-After: 1) first.
    fail_next: u32,
    /// Answer 403 to packages with this file name.
    refuse_name: Option<String>,
    requests: Vec<Seen>,
    /// Bodies accepted, by Idempotency-Key, with their file names.
    accepted: BTreeMap<String, (String, Vec<u8>)>,
    /// Requests repeating an accepted key (answered 200, not stored again).
    repeats: u32,
    /// Bodies whose SHA-256 did not match X-Ferry-Digest.
    digest_mismatches: u32,
}

type Shared = Arc<Mutex<ServerState>>;

/// A downstream HTTPS endpoint requiring client certificates from the
/// test CA, on a fixed port so it can go down and come back.
struct Downstream {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Downstream {
    fn start(port: u16, tls: &Path, ca: &Path, state: Shared) -> Downstream {
        let trust = ferry_certs::TrustStore::load(&[&ca.join("ca.crt")], &[]).expect("trust");
        let config = ferry_certs::server_config(
            &tls.join("downstream.crt"),
            &tls.join("downstream.key"),
            &trust,
        )
        .expect("server config");
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .expect("bind the downstream port again");
                let _ = ready_tx.send(());
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        r = listener.accept() => {
                            let Ok((tcp, _)) = r else { continue };
                            let acceptor = acceptor.clone();
                            let state = state.clone();
                            tokio::spawn(async move {
                                let Ok(tls) = acceptor.accept(tcp).await else { return };
                                let cn = tls
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .and_then(|c| ferry_certs::Identity::from_cert_der(c).ok())
                                    .and_then(|i| i.common_name)
                                    .unwrap_or_default();
                                let service = hyper::service::service_fn(move |req| {
                                    handle(req, cn.clone(), state.clone())
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("downstream listening");
        Downstream {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    client_cn: String,
    state: Shared,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, hyper::Error> {
    let header = |k: &str| {
        req.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut seen = Seen {
        path: req.uri().path().to_owned(),
        key: header("idempotency-key"),
        file_name: header("x-ferry-file-name"),
        content_type: header("content-type"),
        channel: header("x-ferry-channel"),
        client_cn,
        status: 0,
    };
    let digest = header("x-ferry-digest");
    let body = req.into_body().collect().await?.to_bytes();
    let actual = format!(
        "sha256={}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &body))
    );
    let mut st = state.lock().expect("state");
    let status = if digest != actual {
        st.digest_mismatches += 1;
        400
    } else if st.refuse_name.as_deref() == Some(seen.file_name.as_str()) {
        403
    } else if st.fail_next > 0 {
        st.fail_next -= 1;
        503
    } else if st.accepted.contains_key(&seen.key) {
        st.repeats += 1;
        200
    } else {
        st.accepted
            .insert(seen.key.clone(), (seen.file_name.clone(), body.to_vec()));
        201
    };
    seen.status = status;
    st.requests.push(seen);
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(format!(
        "{{\"status\":{status}}}"
    ))));
    *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    if status == 503 {
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from(1),
        );
    }
    Ok(r)
}

fn egress_status(config: &Path) -> serde_json::Value {
    let o = Command::new(ferryctl())
        .args(["status", "--json", "--config", path_str(config)])
        .output()
        .expect("ferryctl");
    serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
}

fn downstream_field(v: &serde_json::Value, url: &str, k: &str) -> u64 {
    v["downstream"][url][k].as_u64().unwrap_or(0)
}

struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
    tb: ferry_daemon::testkit::Testbed,
    url: String,
    port: u16,
}

/// A testbed whose egress policy sends channel `e2e` to a downstream
/// endpoint; `downstream` is appended to the egress configuration.
fn site(downstream: bool) -> Site {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let tb = testbed(&root, |_| {});
    let port = free_tcp_port();
    let url = format!("https://127.0.0.1:{port}/upload");
    let policy = format!(
        "version = 1\n\n[policy]\nname = \"forward-test\"\ntime_zone = \"Asia/Shanghai\"\n\n\
         [channel.e2e]\ndescription = \"The portal's upload API\"\ndirection = \"import\"\n\
         link = \"e2e\"\ndestination = \"{url}\"\n"
    );
    std::fs::write(root.join("egress/policy.toml"), policy).expect("policy");
    let site_ca = SiteCa::init(&root.join("ca"));
    site_ca.server(&root.join("downstream-tls"), "downstream");
    site_ca.client(&root.join("egress/tls"), "egress-forwarder", "pusher");
    let ca = site_ca.dir.clone();
    let audit = root.join("audit-egress");
    ctl_ok(&[
        "audit",
        "init",
        "--dir",
        path_str(&audit),
        "--verify-key-out",
        path_str(&root.join("egress.verify")),
    ]);
    let mut extra = format!(
        "\n[policy]\nfile = \"policy.toml\"\n\n[audit]\ndir = \"{}\"\nmin_free_bytes_accept = 0\n",
        path_str(&audit)
    );
    if downstream {
        extra.push_str(&format!(
            "\n[downstream]\nca = \"{}\"\ncert = \"tls/egress-forwarder.crt\"\nkey = \"tls/egress-forwarder.key\"\ntimeout_s = 10\nretry_initial_ms = 100\nretry_max_ms = 1000\nalarm_after_s = 1\n",
            path_str(&ca.join("ca.crt"))
        ));
    }
    append_config(&tb.egress_config, &extra);
    Site {
        _dir: dir,
        root,
        tb,
        url,
        port,
    }
}

fn accepted_names(state: &Shared) -> Vec<String> {
    let st = state.lock().expect("state");
    let mut v: Vec<String> = st.accepted.values().map(|(n, _)| n.clone()).collect();
    v.sort();
    v
}

#[test]
fn forwards_over_mtls_through_outage_crash_503_and_refusal_exactly_once() {
    let site = site(true);
    let (root, tb, url) = (&site.root, &site.tb, site.url.as_str());
    let state: Shared = Arc::default();
    let tls = root.join("downstream-tls");
    let ca = root.join("ca");
    let server = Downstream::start(site.port, &tls, &ca, state.clone());
    let mut egress = Daemon::start_ready(&tb.egress_config);
    let mut ingress = Daemon::start(&tb.ingress_config);

    // 1. The endpoint is up: three packages, one of 3 MiB, arrive whole.
    let mut sent: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (name, len) in [("a.csv", 1000), ("big.bin", 3 << 20), ("c d.txt", 10)] {
        let data = content(name.len() as u64 + len as u64, len);
        ferry_daemon::testkit::spool_file(&tb.spool, name, &data).expect("spool");
        sent.insert(name.to_owned(), data);
    }
    wait_for(Duration::from_secs(60), "three packages downstream", || {
        assert!(egress.alive(), "egress exited:\n{}", egress.log_text());
        assert!(ingress.alive(), "ingress exited:\n{}", ingress.log_text());
        accepted_names(&state).len() == 3
    });
    {
        let st = state.lock().expect("state");
        for (name, body) in st.accepted.values() {
            assert_eq!(Some(body), sent.get(name), "{name} arrived changed");
        }
        assert_eq!(st.digest_mismatches, 0);
        for r in &st.requests {
            assert_eq!(r.path, "/upload");
            assert_eq!(
                r.client_cn, "egress-forwarder",
                "ferryd's client certificate"
            );
            assert_eq!(r.channel, "e2e");
            assert_eq!(r.key.len(), 32, "the package id is the idempotency key");
        }
        let types: Vec<&str> = st
            .requests
            .iter()
            .map(|r| r.content_type.as_str())
            .collect();
        assert!(types.iter().all(|t| !t.is_empty()), "{types:?}");
    }
    assert!(
        outbox_files(&tb.outbox).is_empty(),
        "a downstream channel leaves nothing in the outbox: {:?}",
        outbox_files(&tb.outbox)
    );
    wait_for(Duration::from_secs(10), "the forward area emptied", || {
        std::fs::read_dir(tb.outbox.join(".forward"))
            .map(|d| d.count() == 0)
            .unwrap_or(false)
    });
    let st = egress_status(&tb.egress_config);
    assert_eq!(downstream_field(&st, url, "forwarded"), 3, "{st}");
    assert_eq!(st["delivered"], 3, "{st}");

    // 2. The endpoint goes down; packages wait on disk, an alarm rises;
    // ferryd is killed and restarted meanwhile; the endpoint comes back
    // answering 503 twice; each package is delivered once.
    server.stop();
    for i in 0..4 {
        let name = format!("outage-{i}.csv");
        let data = content(100 + i, 5000);
        ferry_daemon::testkit::spool_file(&tb.spool, &name, &data).expect("spool");
        sent.insert(name, data);
    }
    wait_for(
        Duration::from_secs(60),
        "four packages waiting, alarm up",
        || {
            let st = egress_status(&tb.egress_config);
            downstream_field(&st, url, "waiting") == 4
                && downstream_field(&st, url, "consecutive_failures") >= 2
                && st["alarms"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x.as_str().unwrap_or("").contains(url)))
        },
    );
    egress.kill9();
    let mut egress = Daemon::start(&tb.egress_config);
    wait_for(
        Duration::from_secs(30),
        "still waiting after kill -9",
        || {
            assert!(egress.alive(), "egress exited:\n{}", egress.log_text());
            let st = egress_status(&tb.egress_config);
            downstream_field(&st, url, "waiting") == 4
                && downstream_field(&st, url, "consecutive_failures") >= 1
        },
    );
    state.lock().expect("state").fail_next = 2;
    let server = Downstream::start(site.port, &tls, &ca, state.clone());
    wait_for(
        Duration::from_secs(60),
        "the outage's packages downstream",
        || accepted_names(&state).len() == 7,
    );
    {
        let st = state.lock().expect("state");
        assert_eq!(st.requests.iter().filter(|r| r.status == 503).count(), 2);
        assert_eq!(st.repeats, 0, "nothing was sent twice");
        for (name, body) in st.accepted.values() {
            assert_eq!(Some(body), sent.get(name), "{name} arrived changed");
        }
    }
    wait_for(Duration::from_secs(10), "the alarm cleared", || {
        let st = egress_status(&tb.egress_config);
        downstream_field(&st, url, "waiting") == 0
            && st["alarms"]
                .as_array()
                .is_some_and(|a| !a.iter().any(|x| x.as_str().unwrap_or("").contains(url)))
    });

    // 3. An outright refusal parks that package only; the next one goes
    // through; after the cause is fixed, `forward retry` sends it.
    state.lock().expect("state").refuse_name = Some("refused.csv".into());
    let refused = content(7, 700);
    ferry_daemon::testkit::spool_file(&tb.spool, "refused.csv", &refused).expect("spool");
    sent.insert("refused.csv".into(), refused);
    wait_for(Duration::from_secs(60), "refused.csv parked", || {
        let st = egress_status(&tb.egress_config);
        downstream_field(&st, url, "parked") == 1
    });
    let after = content(8, 800);
    ferry_daemon::testkit::spool_file(&tb.spool, "after.csv", &after).expect("spool");
    sent.insert("after.csv".into(), after);
    wait_for(
        Duration::from_secs(60),
        "a parked package does not block",
        || accepted_names(&state).contains(&"after.csv".to_owned()),
    );
    // A deliberate window in which a retry of the parked package would
    // reach the downstream (it must not be retried).
    std::thread::sleep(Duration::from_millis(1500));
    let refusals = state
        .lock()
        .expect("state")
        .requests
        .iter()
        .filter(|r| r.status == 403)
        .count();
    assert_eq!(refusals, 1, "a refused package is not retried by itself");
    let st = egress_status(&tb.egress_config);
    assert!(
        st["alarms"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x.as_str().unwrap_or("").contains("forward retry"))),
        "{st}"
    );
    state.lock().expect("state").refuse_name = None;
    let answer = ctl_ok(&["forward", "retry", "--config", path_str(&tb.egress_config)]);
    assert!(answer.contains("released"), "{answer}");
    wait_for(Duration::from_secs(30), "the parked package sent", || {
        accepted_names(&state).contains(&"refused.csv".to_owned())
    });
    {
        let st = state.lock().expect("state");
        assert_eq!(st.accepted.len(), 9);
        assert_eq!(st.repeats, 0, "nothing was sent twice");
        for (name, body) in st.accepted.values() {
            assert_eq!(Some(body), sent.get(name), "{name} arrived changed");
        }
    }
    let st = egress_status(&tb.egress_config);
    assert_eq!(downstream_field(&st, url, "parked"), 0, "{st}");
    assert!(outbox_files(&tb.outbox).is_empty());

    ingress.stop();
    egress.stop();
    drop(server);

    // The audit log names the endpoint for each delivery and the refusal.
    let audit = root.join("audit-egress");
    let out = ctl_ok(&[
        "audit",
        "query",
        "--dir",
        path_str(&audit),
        "--event",
        "package.delivered",
        "--json",
    ]);
    let delivered = out.lines().filter(|l| l.contains(url)).count();
    assert_eq!(delivered, 9, "{out}");
    let out = ctl_ok(&[
        "audit",
        "query",
        "--dir",
        path_str(&audit),
        "--event",
        "package.failed",
        "--json",
    ]);
    assert!(out.contains("refused by") && out.contains("403"), "{out}");
    ctl_ok(&[
        "audit",
        "verify",
        "--dir",
        path_str(&audit),
        "--key",
        path_str(&root.join("egress.verify")),
    ]);
}

#[test]
fn a_downstream_destination_without_client_identity_is_refused_at_start() {
    let site = site(false);
    let o = Command::new(ferryd())
        .args(["--config", path_str(&site.tb.egress_config)])
        .output()
        .expect("ferryd");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("[downstream]") && err.contains("e2e"),
        "the refusal names the channel and the section to add: {err}"
    );
}
