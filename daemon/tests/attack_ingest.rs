//! The ingest API (and the admin API's TLS side) attacked the way a hostile
//! or careless pusher would: hundreds of connections that never finish,
//! a revoked certificate that keeps its connection open, another pusher's
//! package ids, names the egress would not deliver, a server that dies
//! mid-request. Each test names the promise it pins (issue 14, items A1-A5
//! and B7).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A site: the CA, the ingest server certificate next to the ingress
/// configuration, and client certificates in `clients/`.
struct Site {
    ca: SiteCa,
    clients: PathBuf,
}

fn site(root: &Path, clients: &[(&str, &str)]) -> Site {
    let ca = SiteCa::init(&root.join("ca"));
    ca.server(&root.join("ingress/tls"), "ingest");
    let dir = root.join("clients");
    for (name, role) in clients {
        ca.client(&dir, name, role);
    }
    Site { ca, clients: dir }
}

impl Site {
    fn crl(&self) -> PathBuf {
        self.ca.dir.join("ca.crl")
    }

    fn connector(&self, who: &str) -> tokio_rustls::TlsConnector {
        let cfg = ferry_certs::client_config(
            &self.ca.crt(),
            &self.clients.join(format!("{who}.crt")),
            &self.clients.join(format!("{who}.key")),
        )
        .expect("client TLS config");
        tokio_rustls::TlsConnector::from(cfg)
    }

    fn revoke(&self, who: &str) {
        ctl_ok(&[
            "certs",
            "revoke",
            "--ca",
            path_str(&self.ca.dir),
            path_str(&self.clients.join(format!("{who}.crt"))),
        ]);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn server_name() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A TCP connection to `127.0.0.1:port` from the address `src` (another
/// host of the loopback network).
async fn tcp_from(src: Ipv4Addr, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    sock.connect(SocketAddr::from(([127, 0, 0, 1], port))).await
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls_from(
    connector: &tokio_rustls::TlsConnector,
    src: Ipv4Addr,
    port: u16,
) -> std::io::Result<Tls> {
    let tcp = tcp_from(src, port).await?;
    connector.connect(server_name(), tcp).await
}

/// Reads one HTTP/1.1 answer (head and `Content-Length` body): the status
/// and the body; `None` when the connection ends or `limit` passes first.
async fn read_answer<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Option<(u16, String)> {
    let work = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some((
            status,
            String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string(),
        ))
    };
    tokio::time::timeout(limit, work).await.ok().flatten()
}

/// True when the peer closes the connection (EOF or reset) within `limit`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(s: &mut S, limit: Duration) -> bool {
    let mut b = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn post_head(channel: &str, name: &str, len: u64) -> String {
    format!(
        "POST /v1/channels/{channel}/packages HTTP/1.1\r\nHost: ingest\r\nX-Ferry-File-Name: {name}\r\nContent-Type: text/csv\r\nContent-Length: {len}\r\n\r\n"
    )
}

fn client_refusals(config: &Path, reason: &str) -> u64 {
    status(config)
        .and_then(|v| v["client_refusals"][reason].as_u64())
        .unwrap_or(0)
}

/// `GET /metrics` of the ingress side.
fn metrics(port: u16) -> String {
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = c.read_to_string(&mut text);
    text
}

fn alarms(config: &Path) -> String {
    status(config)
        .map(|v| v["alarms"].to_string())
        .unwrap_or_default()
}

/// An ingress with an `[ingest]` section (`extra` appended to it) and an
/// audit log; the daemon is listening when this returns.
fn start_ingress(
    root: &Path,
    tb: &ferry_daemon::testkit::Testbed,
    site: &Site,
    extra: &str,
    more: &str,
) -> (Daemon, u16, PathBuf) {
    let port = free_tcp_port();
    let audit = root.join("audit-ingress");
    ctl_ok(&[
        "audit",
        "init",
        "--dir",
        path_str(&audit),
        "--verify-key-out",
        path_str(&root.join("ingress.verify")),
    ]);
    append_config(
        &tb.ingress_config,
        &format!(
            "[audit]\ndir = \"{}\"\nmin_free_bytes_accept = 0\n\n{}\n{more}",
            path_str(&audit),
            ingest_section(port, &site.ca, extra)
        ),
    );
    let d = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(20), "ingest listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (d, port, audit)
}

fn audit_query(config: &Path, dir: &Path, event: &str) -> String {
    ctl_ok(&[
        "audit",
        "--via",
        path_str(config),
        "query",
        "--dir",
        path_str(dir),
        "--event",
        event,
        "--json",
    ])
}

/// A1: a request whose `Content-Length` exceeds `max_package_bytes`, sent
/// without `Expect: 100-continue`, is answered `413` at once and its
/// connection closed; and three hundred hostile connections from one
/// pusher's host (half TLS handshakes, slow-loris request heads, oversize
/// uploads that never send their body) do not keep another pusher from
/// pushing: the per-address handshake cap and the per-identity
/// connection cap hold the attacker to its share of a global cap the
/// attack alone would fill. Every refusal is counted by reason, audited,
/// and the flood raises an alarm.
#[test]
fn a1_hostile_connections_from_one_pusher_leave_room_for_another_and_oversize_is_413_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let site = site(root, &[("hostile", "pusher"), ("honest", "pusher")]);
    let (ingress, port, audit) = start_ingress(
        root,
        &tb,
        &site,
        "max_package_bytes = 1048576\nmax_connections = 64\nmax_connections_per_identity = 8\nmax_handshakes_per_address = 8\nhandshake_timeout_s = 20\nheader_timeout_s = 20\nidle_timeout_s = 30\nrefusal_alarm_per_minute = 20\n",
        "",
    );
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let rt = runtime();
    let hostile = site.connector("hostile");

    // 413 at once, then the connection closes, though the body never comes.
    rt.block_on(async {
        let mut c = tls_from(&hostile, attacker, port).await.expect("tls");
        c.write_all(post_head("e2e", "big.csv", 10 << 30).as_bytes())
            .await
            .expect("head");
        let (code, body) = read_answer(&mut c, Duration::from_secs(10))
            .await
            .expect("an answer to an oversize request without its body");
        assert_eq!(code, 413, "{body}");
        assert!(
            closed_within(&mut c, Duration::from_secs(10)).await,
            "connection left open after 413"
        );
    });

    // The flood, kept open (in `held`) while the honest pusher pushes:
    // 200 TLS connections of the hostile certificate, one after the other
    // (slow-loris request heads, and oversize uploads that never send
    // their body), then 100 half handshakes at once.
    let held = rt.block_on(async {
        let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
        for i in 0..200u32 {
            let Ok(Ok(mut tls)) =
                tokio::time::timeout(Duration::from_secs(10), tls_from(&hostile, attacker, port))
                    .await
            else {
                continue;
            };
            let head = if i % 2 == 0 {
                "POST /v1/channels/e2e/packages HTTP/1.1\r\nHost: ingest\r\n".to_string()
            } else {
                post_head("e2e", "flood.csv", 1 << 40)
            };
            let _ = tls.write_all(head.as_bytes()).await;
            held.push(Box::new(tls));
        }
        let half: Vec<_> = (0..100)
            .map(|_| {
                tokio::spawn(async move {
                    let mut tcp = tcp_from(attacker, port).await.ok()?;
                    // A TLS record header, then nothing.
                    let _ = tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await;
                    Some(tcp)
                })
            })
            .collect();
        for t in half {
            if let Ok(Some(c)) = t.await {
                held.push(Box::new(c));
            }
        }
        held
    });
    eprintln!("{} hostile connections made", held.len());

    // The honest pusher, from another host, gets through while the
    // flood's connections are held open.
    let data = root.join("honest.csv");
    std::fs::write(&data, b"a,b\n1,2\n").expect("write");
    let (code, body) = curl_https(
        &site.ca,
        port,
        "/v1/channels/e2e/packages",
        Some((&site.clients, "honest")),
        &[
            "--data-binary",
            &format!("@{}", path_str(&data)),
            "-H",
            "X-Ferry-File-Name: honest.csv",
        ],
    );
    assert_eq!(code, "202", "honest push under attack: {body}");
    drop(held);

    // Every kind of refusal was counted; the flood is alarmed and audited.
    for reason in [
        "too_large",
        "handshake_cap_address",
        "connection_cap_identity",
    ] {
        wait_for(Duration::from_secs(20), reason, || {
            client_refusals(&tb.ingress_config, reason) > 0
        });
    }
    assert!(
        alarms(&tb.ingress_config).contains("ingest refusals:"),
        "{}",
        alarms(&tb.ingress_config)
    );
    let records = audit_query(&tb.ingress_config, &audit, "client.refused");
    // The first refusals one by one; past the alarm threshold they are
    // summed up when the minute ends.
    for reason in ["too_large", "connection_cap_identity"] {
        assert!(records.contains(reason), "{reason} not audited: {records}");
    }
    drop(rt);
    ingress.stop();
}

/// A2 + B7: a certificate revoked while its keep-alive connection stays
/// open is refused at its next request on that connection within the
/// reload period (`trust_reload_interval_s`), and the connection closed;
/// the admin API, sharing the same trust store, does the same for an
/// administrator's certificate.
#[test]
fn a2_b7_revocation_reaches_open_keep_alive_connections_on_both_planes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let site = site(root, &[("soon-revoked", "pusher"), ("ops-sys", "sysadmin")]);
    site.ca.server(&root.join("ingress/tls"), "admin-api");
    let admin_port = free_tcp_port();
    let metrics_port = free_tcp_port();
    let crl = path_str(&site.crl()).to_owned();
    let (ingress, port, _audit) = start_ingress(
        root,
        &tb,
        &site,
        &format!("crl = [\"{crl}\"]\ntrust_reload_interval_s = 1\n"),
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n[admin]\nsysadmin = [\"uid:64901\"]\n\n[admin_api]\nlisten = \"127.0.0.1:{admin_port}\"\ncert = \"tls/admin-api.crt\"\nkey = \"tls/admin-api.key\"\nclient_ca = [\"{}\"]\ncrl = [\"{crl}\"]\ntrust_reload_interval_s = 1\n",
            path_str(&site.ca.crt())
        ),
    );
    wait_for(Duration::from_secs(20), "admin API listening", || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    let rt = runtime();
    let local = Ipv4Addr::LOCALHOST;
    let (mut push_conn, mut admin_conn) = rt.block_on(async {
        let mut p = tls_from(&site.connector("soon-revoked"), local, port)
            .await
            .expect("ingest tls");
        p.write_all(format!("{}a,b\n", post_head("e2e", "before.csv", 4)).as_bytes())
            .await
            .expect("push");
        let (code, body) = read_answer(&mut p, Duration::from_secs(20))
            .await
            .expect("answer");
        assert_eq!(code, 202, "{body}");
        let mut a = tls_from(&site.connector("ops-sys"), local, admin_port)
            .await
            .expect("admin tls");
        let req = "{\"cmd\":\"status\"}";
        a.write_all(
            format!(
                "POST /v1/admin HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{req}",
                req.len()
            )
            .as_bytes(),
        )
        .await
        .expect("admin request");
        let (code, body) = read_answer(&mut a, Duration::from_secs(20))
            .await
            .expect("admin answer");
        assert_eq!(code, 200, "{body}");
        (p, a)
    });

    site.revoke("soon-revoked");
    site.revoke("ops-sys");
    let revoked_at = Instant::now();

    // The same connections go on asking; within the reload period (plus
    // the time to notice) the next request is refused.
    rt.block_on(async {
        let mut n = 0;
        let refused = loop {
            n += 1;
            let r = push_conn
                .write_all(format!("{}a,b\n", post_head("e2e", &format!("after-{n}.csv"), 4)).as_bytes())
                .await;
            if r.is_err() {
                break None;
            }
            match read_answer(&mut push_conn, Duration::from_secs(20)).await {
                Some((202, _)) if revoked_at.elapsed() < Duration::from_secs(15) => continue,
                other => break other,
            }
        };
        // Either the next request is answered 403 and the connection
        // closed, or the idle connection was closed when the CRL was
        // reloaded; never a 202 past the bound.
        eprintln!("ingest, after revocation: {refused:?}");
        if let Some((code, body)) = refused {
            assert_eq!(code, 403, "{body}");
            assert!(body.contains("no longer trusted"), "{body}");
            assert!(
                closed_within(&mut push_conn, Duration::from_secs(10)).await,
                "connection kept open after the refusal"
            );
        }

        let req = "{\"cmd\":\"status\"}";
        let refused = loop {
            let r = admin_conn
                .write_all(
                    format!(
                        "POST /v1/admin HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{req}",
                        req.len()
                    )
                    .as_bytes(),
                )
                .await;
            if r.is_err() {
                break None;
            }
            match read_answer(&mut admin_conn, Duration::from_secs(20)).await {
                Some((200, _)) if revoked_at.elapsed() < Duration::from_secs(15) => continue,
                other => break other,
            }
        };
        eprintln!("admin API, after revocation: {refused:?}");
        if let Some((code, body)) = refused {
            assert_eq!(code, 403, "{body}");
            assert!(body.contains("no longer trusted"), "{body}");
        }
    });
    assert!(
        revoked_at.elapsed() < Duration::from_secs(15) + Duration::from_secs(20),
        "revoked certificates kept being served"
    );
    // Counted (the control socket is for administrators here: read the
    // metric).
    wait_for(Duration::from_secs(10), "revocation counted", || {
        metrics(metrics_port).contains(
            "ferry_client_refusals_total{side=\"ingress\",reason=\"certificate_no_longer_trusted\"}",
        )
    });
    // And a new connection with the revoked certificate fails its handshake.
    rt.block_on(async {
        let r = tls_from(&site.connector("soon-revoked"), local, port).await;
        if let Ok(mut c) = r {
            // TLS 1.3: the refusal arrives after the client's Finished.
            assert!(read_answer(&mut c, Duration::from_secs(5)).await.is_none());
        }
    });
    drop(rt);

    // A CRL that cannot be loaded leaves the previous trust store in force
    // and raises one alarm per plane, each naming its plane once (the
    // ingest alarm read "ingest TLS: ingest TLS: …", and the admin API's
    // failure raised none); a good CRL again clears both.
    let status_file = tb
        .ingress_config
        .with_file_name("state")
        .join("status.json");
    let alarms = || -> Vec<String> {
        std::fs::read(&status_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("alarms").cloned())
            .and_then(|a| serde_json::from_value(a).ok())
            .unwrap_or_default()
    };
    let tls_alarms = |prefix: &str| {
        alarms()
            .into_iter()
            .filter(|a| a.starts_with(prefix))
            .count()
    };
    std::fs::write(
        site.crl(),
        "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n",
    )
    .expect("break the CRL");
    wait_for(
        Duration::from_secs(20),
        "a TLS alarm on both planes",
        || tls_alarms("ingest TLS:") == 1 && tls_alarms("admin API TLS:") == 1,
    );
    for a in alarms() {
        assert!(
            !a.contains("TLS: ingest TLS") && !a.contains("TLS: admin API TLS"),
            "{a}"
        );
    }
    ctl_ok(&["certs", "renew-crl", "--ca", path_str(&site.ca.dir)]);
    wait_for(Duration::from_secs(20), "both TLS alarms cleared", || {
        tls_alarms("ingest TLS:") == 0 && tls_alarms("admin API TLS:") == 0
    });
    ingress.stop();
}

/// A3: `GET /v1/packages/ID` shows a package only to the identity that
/// pushed it (also under a renewed certificate of the same subject) and
/// to an administrator; another pusher of the same CA gets exactly the
/// answer an unknown id gets (no oracle).
#[test]
fn a3_package_state_is_for_its_pusher_and_administrators_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let site = site(
        root,
        &[
            ("owner", "pusher"),
            ("other", "pusher"),
            ("ops-audit", "auditor"),
        ],
    );
    let (ingress, port, _audit) = start_ingress(root, &tb, &site, "", "");
    let data = root.join("mine.csv");
    std::fs::write(&data, b"a,b\n1,2\n").expect("write");
    let (code, body) = curl_https(
        &site.ca,
        port,
        "/v1/channels/e2e/packages",
        Some((&site.clients, "owner")),
        &[
            "--data-binary",
            &format!("@{}", path_str(&data)),
            "-H",
            "X-Ferry-File-Name: mine.csv",
        ],
    );
    assert_eq!(code, "202", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let id = v["package_id"].as_str().expect("id").to_owned();
    let get = |who: &str, id: &str| {
        curl_https(
            &site.ca,
            port,
            &format!("/v1/packages/{id}"),
            Some((&site.clients, who)),
            &[],
        )
    };
    let (code, body) = get("owner", &id);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("mine.csv"), "{body}");
    let (code, body) = get("ops-audit", &id);
    assert_eq!(code, "200", "an auditor sees it: {body}");
    // A renewed certificate of the owner (same subject) still sees it.
    site.ca.client(&root.join("renewed"), "owner", "pusher");
    let (code, body) = curl_https(
        &site.ca,
        port,
        &format!("/v1/packages/{id}"),
        Some((&root.join("renewed"), "owner")),
        &[],
    );
    assert_eq!(code, "200", "renewed owner: {body}");
    let (code, other) = get("other", &id);
    assert_eq!(code, "404", "{other}");
    let (code, unknown) = get("other", &"ab".repeat(16));
    assert_eq!(code, "404");
    assert_eq!(other, unknown, "a foreign package must look unknown");
    assert!(!other.contains("mine.csv"));
    ingress.stop();
}

/// A4: names the egress would not deliver (`x.ferry.json` in any case, a
/// backslash, a name leaving no room for the sidecar suffix) are refused
/// at ingest with a `400` naming the rule, by the same rule the spool
/// intake applies (a spool file so named is set aside in `.rejected/`);
/// each refusal is counted and audited, with the name escaped.
#[test]
fn a4_undeliverable_names_are_refused_at_ingest_and_spool_counted_and_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let site = site(root, &[("feed", "pusher")]);
    let (ingress, port, audit) = start_ingress(root, &tb, &site, "", "");
    let data = root.join("d.csv");
    std::fs::write(&data, b"a,b\n1,2\n").expect("write");
    let long = format!("{}.csv", "n".repeat(245));
    let names = ["x.ferry.json", "X.FERRY.JSON", "a\\b.csv", long.as_str()];
    for name in names {
        let (code, body) = curl_https(
            &site.ca,
            port,
            "/v1/channels/e2e/packages",
            Some((&site.clients, "feed")),
            &[
                "--data-binary",
                &format!("@{}", path_str(&data)),
                "-H",
                &format!("X-Ferry-File-Name: {name}"),
            ],
        );
        assert_eq!(code, "400", "{name}: {body}");
        assert!(body.contains("refused"), "{name}: {body}");
    }
    std::fs::write(tb.spool.join("y.ferry.json"), b"{}").expect("spool");
    wait_for(Duration::from_secs(20), "spool file set aside", || {
        tb.spool.join(".rejected/y.ferry.json").exists()
    });
    wait_for(Duration::from_secs(10), "refusals counted", || {
        client_refusals(&tb.ingress_config, "file_name") == names.len() as u64 + 1
    });
    let records = audit_query(&tb.ingress_config, &audit, "client.refused");
    assert!(
        records.matches("\"file_name\"").count() > names.len(),
        "{records}"
    );
    assert!(records.contains("spool:"), "{records}");
    // Nothing was queued under any of these names.
    assert_eq!(
        status(&tb.ingress_config).map(|v| v["queued"].clone()),
        Some(serde_json::json!(0))
    );
    ingress.stop();
}

/// A fake ingest server that completes the TLS handshake (accepting the
/// client certificate), reads the request head and part of the body, then
/// dies (drops the connection); returns its port.
fn dying_server(site: &Site, root: &Path) -> u16 {
    let trust = ferry_certs::TrustStore::load(&[&site.ca.crt()], &[]).expect("trust");
    let cfg = ferry_certs::server_config(
        &root.join("ingress/tls/ingest.crt"),
        &root.join("ingress/tls/ingest.key"),
        &trust,
    )
    .expect("server config");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut got = Vec::new();
                let mut b = [0u8; 4096];
                // Head and 64 KiB of body, then the process "dies".
                while got.len() < 64 << 10 {
                    match tls.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&b[..n]),
                    }
                }
                let _ = tls.sock.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

fn push(site: &Site, port: u16, who: &str, file: &Path, extra: &[&str]) -> (bool, String) {
    let mut c = Command::new(ferryctl());
    c.args([
        "push",
        "--url",
        &format!("https://127.0.0.1:{port}"),
        "--channel",
        "e2e",
    ])
    .arg("--cacert")
    .arg(site.ca.crt())
    .arg("--cert")
    .arg(site.clients.join(format!("{who}.crt")))
    .arg("--key")
    .arg(site.clients.join(format!("{who}.key")))
    .args(extra)
    .arg(file);
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ferryctl push");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A5: `ferryctl push` says what it saw. A server that accepted the
/// certificate and died mid-request is "broke off in the middle of the
/// request", not "client certificate refused"; a revoked certificate is
/// named as refused; a server that never answers is a timeout.
#[test]
fn a5_push_diagnoses_a_server_that_dies_mid_request_apart_from_a_refused_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let site = site(root, &[("feed", "pusher"), ("gone", "pusher")]);
    let big = root.join("big.csv");
    std::fs::write(&big, content(5, 4 << 20)).expect("write");

    let port = dying_server(&site, root);
    let (ok, text) = push(&site, port, "feed", &big, &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("broke off in the middle of the request"),
        "{text}"
    );
    assert!(!text.contains("client certificate refused"), "{text}");

    // A server that accepts the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let (ok, text) = push(&site, silent_port, "feed", &big, &["--timeout", "2"]);
    assert!(!ok, "{text}");
    assert!(text.contains("no progress"), "{text}");
    drop(silent);

    // The real server refusing a revoked certificate.
    site.revoke("gone");
    let crl = path_str(&site.crl()).to_owned();
    let (ingress, port, _audit) =
        start_ingress(root, &tb, &site, &format!("crl = [\"{crl}\"]\n"), "");
    let (ok, text) = push(&site, port, "gone", &big, &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("client certificate refused"), "{text}");
    assert!(!text.contains("broke off"), "{text}");
    let (ok, text) = push(&site, port, "feed", &big, &[]);
    assert!(ok, "{text}");
    ingress.stop();
}

/// B9 on the shared server: an admin API request whose body never comes
/// is answered `408` after the admin plane's body deadline, and that
/// refusal is counted (`ferry_admin_refusals_total{plane="admin_api",
/// reason="body_timeout"}`) and audited (a refused `admin.action` with
/// status 408 under the certificate) — a slow administrator client is
/// neither held forever nor silent.
#[test]
fn b9_admin_api_body_that_never_comes_is_408_counted_and_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let site = site(root, &[("ops-sys", "sysadmin")]);
    site.ca.server(&root.join("ingress/tls"), "admin-api");
    let admin_port = free_tcp_port();
    let metrics_port = free_tcp_port();
    let (ingress, _port, audit) = start_ingress(
        root,
        &tb,
        &site,
        "",
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n[admin]\nsysadmin = [\"uid:64901\"]\n\n[admin_api]\nlisten = \"127.0.0.1:{admin_port}\"\ncert = \"tls/admin-api.crt\"\nkey = \"tls/admin-api.key\"\nclient_ca = [\"{}\"]\n",
            path_str(&site.ca.crt())
        ),
    );
    wait_for(Duration::from_secs(20), "admin API listening", || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    let rt = runtime();
    let answer = rt.block_on(async {
        let mut a = tls_from(&site.connector("ops-sys"), Ipv4Addr::LOCALHOST, admin_port)
            .await
            .expect("admin tls");
        // Promises 100 bytes, sends 10, then nothing.
        a.write_all(
            b"POST /v1/admin HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"cmd\":\"st",
        )
        .await
        .expect("admin request");
        read_answer(&mut a, Duration::from_secs(40)).await
    });
    let (code, body) = answer.expect("an answer, not a connection held open");
    assert_eq!(code, 408, "{body}");
    wait_for(Duration::from_secs(10), "the 408 counted", || {
        metrics(metrics_port).lines().any(|l| {
            l.starts_with("ferry_admin_refusals_total{")
                && l.contains("plane=\"admin_api\"")
                && l.contains("reason=\"body_timeout\"")
        })
    });
    ingress.stop();
    let recs = ctl_ok(&["audit", "query", "--dir", path_str(&audit), "--json"]);
    assert!(
        recs.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|r| r["event"] == "admin.action"
                && r["outcome"] == "refused"
                && r["details"]["status"] == "408"
                && r["actor"]["id"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("cert:ops-sys"))),
        "no audit record of the 408: {recs}"
    );
}
