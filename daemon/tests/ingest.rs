//! The HTTPS ingest API against a real `ferryd`, driven by real `curl`
//! with client certificates from `ferryctl certs`.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct Site {
    ca: PathBuf,
    tls: PathBuf,
    clients: PathBuf,
}

fn site(root: &Path) -> Site {
    let site = Site {
        ca: root.join("ca"),
        tls: root.join("ingress/tls"),
        clients: root.join("clients"),
    };
    SiteCa::init(&site.ca);
    SiteCa::at(&site.ca).server(&site.tls, "ingest");
    for (name, role) in [("registry-feed", "pusher"), ("revoked-feed", "pusher")] {
        SiteCa::at(&site.ca).client(&site.clients, name, role);
    }
    ctl_ok(&[
        "certs",
        "revoke",
        "--ca",
        path_str(&site.ca),
        path_str(&site.clients.join("revoked-feed.crt")),
    ]);
    let other = root.join("other-ca");
    SiteCa::init(&other);
    SiteCa::at(&other).client(&root.join("stranger"), "registry-feed", "pusher");
    site
}

/// Raises this process's open-file limit to `n` (root may raise the hard
/// limit); `None` when it cannot.
fn raise_fd_limit(n: u64) -> Option<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= n {
        return Some(());
    }
    setrlimit(Resource::RLIMIT_NOFILE, n, hard.max(n)).ok()
}

struct Curl {
    code: Option<u16>,
    body: String,
    exit: Option<i32>,
}

fn curl(port: u16, site: &Site, client: Option<(&Path, &str)>, path: &str, extra: &[&str]) -> Curl {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .args(["--cacert", path_str(&site.ca.join("ca.crt"))]);
    if let Some((dir, name)) = client {
        c.arg("--cert")
            .arg(dir.join(format!("{name}.crt")))
            .arg("--key")
            .arg(dir.join(format!("{name}.key")));
    }
    c.args(extra).arg(format!("https://127.0.0.1:{port}{path}"));
    let out = c.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Curl {
        code: code.trim().parse().ok().filter(|c| *c != 0),
        body: body.to_owned(),
        exit: out.status.code(),
    }
}

#[test]
fn curl_pushes_with_a_client_certificate_and_the_package_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let site = site(dir.path());
    let port = free_tcp_port();
    append_config(&tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{}\"]\ncrl = [\"{}\"]\nmax_package_bytes = 1048576\nmin_free_bytes = 0\n",
            path_str(&site.ca.join("ca.crt")),
            path_str(&site.ca.join("ca.crl"))
        ));
    // Both sides expose /metrics on a listener of their own.
    let (imetrics, emetrics) = (free_tcp_port(), free_tcp_port());
    for (config, port) in [
        (&tb.ingress_config, imetrics),
        (&tb.egress_config, emetrics),
    ] {
        append_config(
            config,
            &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        );
    }
    let _egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(15), "ingest listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let data = content(7, 300_000);
    let upload = dir.path().join("stats.csv");
    std::fs::write(&upload, &data).expect("write");
    let digest = format!(
        "sha256={}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &data))
    );
    let feed = Some((site.clients.as_path(), "registry-feed"));
    let r = curl(
        port,
        &site,
        feed,
        "/v1/channels/e2e/packages",
        &[
            "--data-binary",
            &format!("@{}", path_str(&upload)),
            "-H",
            "X-Ferry-File-Name: stats.csv",
            "-H",
            "Content-Type: text/csv",
            "-H",
            &format!("X-Ferry-Digest: {digest}"),
        ],
    );
    assert_eq!(r.code, Some(202), "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    let id = v["package_id"].as_str().expect("id").to_owned();
    wait_for(Duration::from_secs(30), "delivery", || {
        outbox_files(&tb.outbox) == vec!["stats.csv".to_string()]
    });
    assert!(std::fs::read(tb.outbox.join("stats.csv")).expect("read") == data);
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tb.outbox.join("stats.csv.ferry.json")).expect("sidecar"),
    )
    .expect("json");
    assert_eq!(side["package_id"], id.as_str());
    assert_eq!(side["content_type"], "text/csv");
    assert!(
        side["sender_identity"]
            .as_str()
            .is_some_and(|i| i.contains("CN=registry-feed")),
        "{side}"
    );
    wait_for(Duration::from_secs(10), "state sent", || {
        let r = curl(port, &site, feed, &format!("/v1/packages/{id}"), &[]);
        r.code == Some(200) && r.body.contains("\"state\":\"sent\"")
    });
    // The metrics say the same, per channel, scraped as Prometheus would.
    let scrape = |port: u16| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-i"])
            .arg(format!("http://127.0.0.1:{port}/metrics"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let size = data.len().to_string();
    wait_for(Duration::from_secs(10), "ingress metrics", || {
        let m = scrape(imetrics);
        m.contains("text/plain; version=0.0.4")
            && m.contains(
                "ferry_packages_total{side=\"ingress\",channel=\"e2e\",outcome=\"accepted\"} 1\n",
            )
            && m.contains(
                "ferry_packages_total{side=\"ingress\",channel=\"e2e\",outcome=\"sent\"} 1\n",
            )
            && m.contains(&format!(
                "ferry_bytes_total{{side=\"ingress\",channel=\"e2e\",outcome=\"sent\"}} {size}\n"
            ))
            && m.contains("ferry_queue_depth{side=\"ingress\"} 0\n")
    });
    wait_for(Duration::from_secs(10), "egress metrics", || {
        let m = scrape(emetrics);
        m.contains(
            "ferry_packages_total{side=\"egress\",channel=\"e2e\",outcome=\"delivered\"} 1\n",
        ) && m.contains("ferry_link_up{side=\"egress\"} 1\n")
            && m.contains("ferry_link_heartbeat_age_seconds{side=\"egress\"}")
            && m.contains("ferry_forged_datagrams_total{side=\"egress\"} 0\n")
    });
    // The ingest API's certificate is watched for expiry.
    assert!(
        scrape(imetrics).lines().any(|l| l
            .starts_with("ferry_certificate_not_after_seconds{side=\"ingress\",file=\"")
            && l.contains("ingest.crt")),
        "{}",
        scrape(imetrics)
    );
    assert!(scrape(imetrics).starts_with("HTTP/1.1 200"));
    let not_found = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{imetrics}/other"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&not_found.stdout), "404");

    let push = |client: Option<(&Path, &str)>, path: &str, headers: &[&str], file: &Path| {
        let mut extra = vec!["--data-binary".to_string(), format!("@{}", path_str(file))];
        for h in headers {
            extra.push("-H".into());
            extra.push((*h).to_string());
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        curl(port, &site, client, path, &extra)
    };
    let named = ["X-Ferry-File-Name: x.csv"];
    // Refusals, each with its status, none of them queued or delivered.
    let r = push(feed, "/v1/channels/e2e/packages", &[], &upload);
    assert_eq!(r.code, Some(400), "missing file name: {}", r.body);
    let r = push(
        feed,
        "/v1/channels/e2e/packages",
        &["X-Ferry-File-Name: x.csv", "X-Ferry-Digest: sha256=00"],
        &upload,
    );
    assert_eq!(r.code, Some(400), "bad digest header: {}", r.body);
    let wrong = format!("X-Ferry-Digest: sha256={}", "ab".repeat(32));
    let r = push(
        feed,
        "/v1/channels/e2e/packages",
        &["X-Ferry-File-Name: x.csv", &wrong],
        &upload,
    );
    assert_eq!(r.code, Some(400), "digest mismatch: {}", r.body);
    assert!(r.body.contains("digest mismatch"), "{}", r.body);
    let r = push(feed, "/v1/channels/other/packages", &named, &upload);
    assert_eq!(r.code, Some(404), "unknown channel: {}", r.body);
    let big = dir.path().join("big.bin");
    std::fs::write(&big, content(8, 2 << 20)).expect("write");
    let r = push(feed, "/v1/channels/e2e/packages", &named, &big);
    assert_eq!(r.code, Some(413), "over the limit: {}", r.body);
    // Streamed without a length: stopped at the limit while streaming.
    let r = push(
        feed,
        "/v1/channels/e2e/packages",
        &["X-Ferry-File-Name: x.csv", "Transfer-Encoding: chunked"],
        &big,
    );
    assert_eq!(r.code, Some(413), "chunked over the limit: {}", r.body);

    // No certificate, another CA's certificate, a revoked one: no HTTP at all.
    for (client, what) in [
        (None, "no client certificate"),
        (
            Some((dir.path().join("stranger"), "registry-feed")),
            "another CA",
        ),
        (Some((site.clients.clone(), "revoked-feed")), "revoked"),
    ] {
        let r = push(
            client.as_ref().map(|(d, n)| (d.as_path(), *n)),
            "/v1/channels/e2e/packages",
            &named,
            &upload,
        );
        assert!(
            r.code.is_none() && r.exit != Some(0),
            "{what}: curl got HTTP {:?}",
            r.code
        );
    }
    // A deliberate window in which a refused upload would be delivered.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(outbox_files(&tb.outbox), vec!["stats.csv".to_string()]);
    let queue = dir.path().join("ingress/state/queue");
    let leftovers: Vec<_> = std::fs::read_dir(&queue)
        .expect("queue dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".upload"))
        .collect();
    assert!(leftovers.is_empty(), "refused uploads left files behind");
}

/// A TCP connection to the ingest port from 127.0.0.2.
async fn flood_connect(port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(std::net::SocketAddr::from(([127, 0, 0, 2], 0)))?;
    sock.connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

/// Clients that hold connections open without speaking (a flood of idle
/// TCP connections, a TLS client that sends half a request) cost bounded
/// descriptors and are cut off by timeouts, and a real client still gets
/// its package in meanwhile.
#[test]
fn floods_and_slow_clients_are_bounded_and_a_real_push_still_lands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let site = site(dir.path());
    let port = free_tcp_port();
    append_config(&tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{}\"]\nmax_package_bytes = 1048576\nmin_free_bytes = 0\n",
            path_str(&site.ca.join("ca.crt")),
        ));
    let _egress = Daemon::start(&tb.egress_config);
    let ingress = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(15), "ingest listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let pid = ingress.child.id();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = fds();

    // A TLS client that sends half a request head and then nothing: the
    // header timeout (10 s) closes it.
    let mut slow = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["-CAfile", path_str(&site.ca.join("ca.crt"))])
        .args(["-cert", path_str(&site.clients.join("registry-feed.crt"))])
        .args(["-key", path_str(&site.clients.join("registry-feed.key"))])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl");
    if let Some(stdin) = slow.stdin.as_mut() {
        use std::io::Write;
        let _ = stdin.write_all(b"POST /v1/channels/e2e/packages HTTP/1.1\r\nHost: x\r\n");
    }
    let started = std::time::Instant::now();

    // 10 000 TCP connections opened at once, then left idle (no TLS), from
    // another loopback address (another host): far more than the 512
    // served at once, and than the handshakes one address may hold in
    // progress (a new one closes that address's oldest, so a flood from
    // the slow client's own address would close its handshake too). The
    // test raises its own descriptor limit (root) to hold them.
    let attempts = raise_fd_limit(10_500).map_or(1500, |_| 10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let idle: Vec<tokio::net::TcpStream> = rt.block_on(async {
        let tasks: Vec<_> = (0..attempts)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(3),
                    flood_connect(port),
                ))
            })
            .collect();
        let mut open = Vec::new();
        for t in tasks {
            if let Ok(Ok(Ok(c))) = t.await {
                open.push(c);
            }
        }
        open
    });
    eprintln!(
        "{attempts} connections attempted at once, {} open",
        idle.len()
    );
    assert!(idle.len() > 600, "only {} connections made", idle.len());
    // A deliberate pause: the bound below is an upper one, so giving the
    // daemon time to accept more of the idle connections only makes the
    // check stricter; a fast or a slow machine cannot make it pass wrongly.
    std::thread::sleep(Duration::from_millis(500));
    let during = fds();
    assert!(
        during <= before + 512 + 16,
        "ferryd holds {during} descriptors with {} idle clients (before: {before})",
        idle.len()
    );

    // A real push still lands: the idle connections time out of their
    // TLS handshake (10 s) and free their slots.
    let data = dir.path().join("late.csv");
    std::fs::write(&data, b"a,b\n1,2\n").expect("write");
    let r = curl(
        port,
        &site,
        Some((site.clients.as_path(), "registry-feed")),
        "/v1/channels/e2e/packages",
        &[
            "--max-time",
            "60",
            "--data-binary",
            &format!("@{}", path_str(&data)),
            "-H",
            "X-Ferry-File-Name: late.csv",
            "-H",
            "Content-Type: text/csv",
        ],
    );
    assert_eq!(r.code, Some(202), "{} (curl exit {:?})", r.body, r.exit);
    drop(idle);
    drop(rt);

    // The half-request client was cut off by the header timeout.
    wait_for(Duration::from_secs(30), "slow client cut off", || {
        matches!(slow.try_wait(), Ok(Some(_)))
    });
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9),
        "closed after {waited:?}: before the header timeout?"
    );
    wait_for(Duration::from_secs(30), "delivery", || {
        outbox_files(&tb.outbox) == vec!["late.csv".to_string()]
    });
    let _ = slow.kill();
}

/// A CRL the CA renews while ferryd runs takes effect without a restart:
/// a client revoked after start is refused at the handshake within
/// seconds, and the others keep pushing.
#[test]
fn a_renewed_crl_takes_effect_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let site = site(dir.path());
    SiteCa::at(&site.ca).client(&site.clients, "soon-revoked", "pusher");
    let port = free_tcp_port();
    append_config(&tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{}\"]\ncrl = [\"{}\"]\nmax_package_bytes = 1048576\nmin_free_bytes = 0\n",
            path_str(&site.ca.join("ca.crt")),
            path_str(&site.ca.join("ca.crl"))
        ));
    let _egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(15), "ingest listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let data = dir.path().join("d.csv");
    std::fs::write(&data, b"a,b\n1,2\n").expect("write");
    let push = |who: &str, name: &str| {
        curl(
            port,
            &site,
            Some((site.clients.as_path(), who)),
            "/v1/channels/e2e/packages",
            &[
                "--data-binary",
                &format!("@{}", path_str(&data)),
                "-H",
                &format!("X-Ferry-File-Name: {name}"),
                "-H",
                "Content-Type: text/csv",
            ],
        )
    };
    assert_eq!(push("soon-revoked", "before.csv").code, Some(202));
    ctl_ok(&[
        "certs",
        "revoke",
        "--ca",
        path_str(&site.ca),
        path_str(&site.clients.join("soon-revoked.crt")),
    ]);
    let mut n = 0;
    wait_for(Duration::from_secs(30), "the renewed CRL in force", || {
        n += 1;
        push("soon-revoked", &format!("after-{n}.csv"))
            .code
            .is_none()
    });
    assert_eq!(push("registry-feed", "other.csv").code, Some(202));
}

/// Back-pressure: while the send queue holds `max_queued_packages`, a push
/// gets `503` with `Retry-After`, and nothing of it is queued.
#[test]
fn a_full_send_queue_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A slow link, so what is queued stays queued for the test's length.
    let tb = testbed(dir.path(), |o| o.rate_bytes_per_s = 2000);
    let site = site(dir.path());
    let port = free_tcp_port();
    append_config(&tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{}\"]\nmin_free_bytes = 0\nmax_queued_packages = 3\n",
            path_str(&site.ca.join("ca.crt")),
        ));
    let _egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(15), "ingest listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let data = dir.path().join("p.bin");
    std::fs::write(&data, content(9, 4096)).expect("write");
    let push = |name: &str| {
        curl(
            port,
            &site,
            Some((site.clients.as_path(), "registry-feed")),
            "/v1/channels/e2e/packages",
            &[
                "-i",
                "--data-binary",
                &format!("@{}", path_str(&data)),
                "-H",
                &format!("X-Ferry-File-Name: {name}"),
            ],
        )
    };
    for i in 0..6 {
        let r = push(&format!("fill-{i}.bin"));
        assert_eq!(r.code, Some(202), "{}", r.body);
    }
    // The queue is counted every second, by the send loop; the bound is
    // wide because the other tests of this file load the two cores (it
    // timed out at 10 s once beside the 24 pushes of the kept-bodies test).
    let mut refused = None;
    wait_for(Duration::from_secs(30), "a 503 for the full queue", || {
        let r = push("late.bin");
        if r.code == Some(503) {
            refused = Some(r.body);
            return true;
        }
        false
    });
    let body = refused.unwrap_or_default();
    assert!(body.contains("send queue is full"), "{body}");
    assert!(
        body.to_ascii_lowercase().contains("retry-after:"),
        "503 without Retry-After: {body}"
    );
}

/// A small body pushed over HTTPS is kept in the state store with its
/// queue record, not as a file: the queue directory never holds a copy of
/// it, queued, sent or retained, and an operator's resend sends it again
/// from the store (the egress side suppresses the copy). A package whose
/// channel is stopped while it waits is written to the queue directory,
/// byte for byte, for its hold, and delivered once when the channel starts.
#[test]
fn small_pushed_bodies_are_kept_in_the_store_and_a_held_one_gets_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 100 KB/s and one package per send: pushed packages wait in the
    // queue (1.4 MB pushed; the pacer lets about 380 KB go at once).
    let tb = one_by_one_slow_testbed(dir.path(), 100_000);
    let site = site(dir.path());
    let port = free_tcp_port();
    append_config(&tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{}\"]\nmax_package_bytes = 1048576\nmin_free_bytes = 0\n",
            path_str(&site.ca.join("ca.crt")),
        ));
    let config = path_str(&tb.ingress_config).to_owned();
    let _egress = Daemon::start_ready(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(15), "ingest listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let queue = tb
        .ingress_config
        .parent()
        .expect("config dir")
        .join("state")
        .join("queue");
    let copies = || -> Vec<String> {
        std::fs::read_dir(&queue)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let feed = Some((site.clients.as_path(), "registry-feed"));
    let mut pushed = std::collections::BTreeMap::new();
    for i in 0..24u64 {
        let name = format!("small-{i:02}.bin");
        // Within the 64 KiB a request keeps in memory.
        let data = content(100 + i, 60_000);
        let upload = dir.path().join(&name);
        std::fs::write(&upload, &data).expect("write");
        let r = curl(
            port,
            &site,
            feed,
            "/v1/channels/e2e/packages",
            &[
                "--data-binary",
                &format!("@{}", path_str(&upload)),
                "-H",
                &format!("X-Ferry-File-Name: {name}"),
            ],
        );
        assert_eq!(r.code, Some(202), "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        let id = v["package_id"].as_str().expect("id").to_owned();
        pushed.insert(id, (name, data));
    }
    let no_copy_of = |ids: &mut dyn Iterator<Item = &String>| {
        let here = copies();
        ids.filter(|id| here.contains(id))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        no_copy_of(&mut pushed.keys()),
        Vec::<String>::new(),
        "queued bodies kept as files"
    );

    // Stopped while they wait: the held ones are written out for the hold.
    let o = ctl(&[
        "channel",
        "stop",
        "--config",
        &config,
        "e2e",
        "--reason",
        "maintenance",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let held = || held_field(&config, |_| true, "package_id");
    wait_for(
        Duration::from_secs(60),
        "the queue drained into holds",
        || {
            let st = status(&tb.ingress_config).unwrap_or_default();
            st["queued"] == 0 && outbox_files(&tb.outbox).len() + held().len() == pushed.len()
        },
    );
    let held_ids = held();
    assert!(
        !held_ids.is_empty(),
        "nothing was held: the stop was not exercised"
    );
    for id in &held_ids {
        let (_, data) = &pushed[id];
        let copy = std::fs::read(queue.join(id)).expect("a held package's file");
        assert!(&copy == data, "{id}: its file differs from what was pushed");
    }

    let o = ctl(&["channel", "start", "--config", &config, "e2e"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut names: Vec<String> = pushed.values().map(|(n, _)| n.clone()).collect();
    names.sort();
    wait_for(Duration::from_secs(90), "everything delivered", || {
        outbox_files(&tb.outbox) == names
    });
    for (name, data) in pushed.values() {
        assert!(
            &std::fs::read(tb.outbox.join(name)).expect("read") == data,
            "{name}"
        );
    }
    // Retained in the store: no file for those never held, and a resend
    // finds them.
    let never_held: Vec<&String> = pushed.keys().filter(|id| !held_ids.contains(id)).collect();
    assert!(!never_held.is_empty(), "every package was held");
    assert_eq!(
        no_copy_of(&mut never_held.iter().copied()),
        Vec::<String>::new(),
        "retained bodies kept as files"
    );
    wait_for(Duration::from_secs(30), "all sent", || {
        status(&tb.ingress_config).is_some_and(|s| s["retained"] == pushed.len())
    });
    let o = ctl(&["resend", "--seq", "0..1000000", "--config", &config]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let requeued: Vec<String> = v["requeued"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["package"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for id in &never_held {
        assert!(requeued.contains(id), "{id} not re-sent: {v}");
    }
    wait_for(Duration::from_secs(60), "the copies suppressed", || {
        status(&tb.egress_config)
            .and_then(|s| s["duplicates_suppressed"].as_u64())
            .is_some_and(|n| n >= requeued.len() as u64)
    });
    assert_eq!(outbox_files(&tb.outbox), names, "a copy delivered twice");
}
