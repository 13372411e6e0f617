//! `ferryctl push` against real `ferryd` processes: accepted packages
//! arrive in the egress outbox with the digest the client computed; every
//! refusal (400, 403 with the policy's reasons, 404, 413, 429, 503) and
//! every TLS failure (untrusted server, missing, foreign or revoked client
//! certificate, nobody listening) is named in words and in the exit code;
//! `--json` prints one parseable object per file. Plus a smoke run of
//! `ferryctl bench e2e`.
//!
//! Every `ferryctl` run is bounded by a deadline and killed past it.

mod common;

use common::*;

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest any single `ferryctl push` may run in these tests.
const PUSH_LIMIT: Duration = Duration::from_secs(60);

/// A site: CA, ingest server certificate, clients, a foreign CA's client,
/// a policy, and both daemons running with the ingest API on `port`.
struct Site {
    root: PathBuf,
    ca: PathBuf,
    clients: PathBuf,
    outbox: PathBuf,
    port: u16,
    _egress: Daemon,
    _ingress: Daemon,
}

/// A weekday other than today (UTC), so a window on it is closed now (and
/// a push on its channel is held, not sent).
fn not_today() -> &'static str {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    // 1970-01-01 was a Thursday (index 3); three days on is never today.
    DAYS[((days + 3 + 3) % 7) as usize]
}

fn policy_text() -> String {
    format!(
        r#"version = 1

[policy]
name = "push-test"
time_zone = "UTC"

[identity.feed]
description = "The statistics feed"
cn = "registry-feed"
role = "pusher"

[identity.limited]
description = "A feed allowed one package a minute"
cn = "limited-feed"
role = "pusher"
limits = {{ packages_per_minute = 1 }}

[window.closed]
description = "A window that is not open today"
from = "00:00"
to = "24:00"
days = ["{day}"]

[channel.stats]
description = "Statistics"
direction = "import"
link = "e2e"
destination = "outbox"

[channel.night]
description = "Only inside a window that is closed today"
direction = "import"
link = "e2e"
destination = "outbox"
windows = ["closed"]

[[rule]]
id = "R-no-exe"
description = "Nothing executable"
effect = "deny"
identities = ["*"]
channels = ["*"]
names = ["*.exe"]

[[rule]]
id = "R-feed"
description = "The feeds push statistics"
effect = "allow"
identities = ["feed", "limited"]
channels = ["stats", "night"]
"#,
        day = not_today()
    )
}

fn start_site(root: &Path) -> Site {
    let tb = testbed(root, |_| {});
    let ca = root.join("ca");
    let clients = root.join("clients");
    ferry_certs::init_ca(&ca, "push test CA", 365).expect("CA");
    ferry_certs::issue_server(
        &ca,
        &root.join("ingress/tls"),
        "ingest",
        &[],
        &[std::net::IpAddr::from([127, 0, 0, 1])],
        30,
    )
    .expect("server certificate");
    let pusher = || Some(ferry_certs::Role::new("pusher").expect("role"));
    for name in ["registry-feed", "limited-feed", "revoked-feed"] {
        ferry_certs::issue_client(&ca, &clients, name, pusher(), 30).expect("client certificate");
    }
    ferry_certs::revoke(
        &ca,
        &ferry_certs::RevokeTarget::CertFile(clients.join("revoked-feed.crt")),
        ferry_certs::RevokeReason::KeyCompromise,
    )
    .expect("revoke");
    let other = root.join("other-ca");
    ferry_certs::init_ca(&other, "some other CA", 365).expect("other CA");
    ferry_certs::issue_client(
        &other,
        &root.join("stranger"),
        "registry-feed",
        pusher(),
        30,
    )
    .expect("foreign client certificate");

    std::fs::write(root.join("ingress/policy.toml"), policy_text()).expect("policy");
    let port = free_tcp_port();
    append_config(&tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{}\"]\ncrl = [\"{}\"]\nmax_package_bytes = 1048576\nmin_free_bytes = 0\n\n[policy]\nfile = \"policy.toml\"\n",
            path_str(&ca.join("ca.crt")),
            path_str(&ca.join("ca.crl"))
        ));
    let egress = Daemon::start(&tb.egress_config);
    let mut ingress = Daemon::start(&tb.ingress_config);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            ingress.alive() && Instant::now() < deadline,
            "ingest API not listening: {}",
            ingress.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Site {
        root: root.to_path_buf(),
        ca,
        clients,
        outbox: tb.outbox,
        port,
        _egress: egress,
        _ingress: ingress,
    }
}

impl Site {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn cacert(&self) -> String {
        path_str(&self.ca.join("ca.crt")).to_owned()
    }

    fn cert(&self, who: &str) -> (String, String) {
        (
            path_str(&self.clients.join(format!("{who}.crt"))).to_owned(),
            path_str(&self.clients.join(format!("{who}.key"))).to_owned(),
        )
    }

    /// `ferryctl push` as `who` on `channel` with `extra` arguments.
    fn push(&self, who: &str, channel: &str, extra: &[&str]) -> Run {
        let (crt, key) = self.cert(who);
        let url = self.url();
        let cacert = self.cacert();
        let mut args = vec![
            "push",
            "--url",
            &url,
            "--channel",
            channel,
            "--cacert",
            &cacert,
            "--cert",
            &crt,
            "--key",
            &key,
        ];
        args.extend_from_slice(extra);
        ctl_within(&args, PUSH_LIMIT)
    }

    fn file(&self, name: &str, data: &[u8]) -> String {
        let p = self.root.join("files").join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, data).expect("write");
        path_str(&p).to_owned()
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn pushed_files_are_accepted_digested_and_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = start_site(dir.path());

    // Two files on one kept-alive connection, one of them large enough to
    // go through `Expect: 100-continue` and several body chunks.
    let small = content(1, 3_000);
    let large = content(2, 900_000 + 123);
    let a = site.file("parcels.csv", &small);
    let b = site.file("survey.geojson", &large);
    let r = site.push(
        "registry-feed",
        "stats",
        &["--json", "--wait", "--wait-timeout", "40", &a, &b],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let objects = json_lines(&r.stdout);
    assert_eq!(objects.len(), 2, "{r:?}");
    for (o, name, data, ctype) in [
        (&objects[0], "parcels.csv", &small, "text/csv"),
        (
            &objects[1],
            "survey.geojson",
            &large,
            "application/geo+json",
        ),
    ] {
        assert_eq!(o["status"], 202, "{o}");
        assert_eq!(o["accepted"], true, "{o}");
        assert_eq!(o["name"], name, "{o}");
        assert_eq!(o["content_type"], ctype, "{o}");
        assert_eq!(o["size"], data.len(), "{o}");
        assert_eq!(o["state"]["state"], "sent", "--wait waits until sent: {o}");
        // The digest sent is the digest of the file.
        let digest = format!("sha256={}", sha256_hex(data));
        assert_eq!(o["digest"], digest.as_str(), "{o}");
        let id = o["answer"]["package_id"].as_str().expect("package id");
        wait_for(Duration::from_secs(30), "delivery", || {
            site.outbox.join(format!("{name}.ferry.json")).exists()
                && site.outbox.join(name).exists()
        });
        assert!(std::fs::read(site.outbox.join(name)).expect("delivered") == *data);
        let side: serde_json::Value = serde_json::from_slice(
            &std::fs::read(site.outbox.join(format!("{name}.ferry.json"))).expect("sidecar"),
        )
        .expect("sidecar JSON");
        assert_eq!(side["package_id"], id);
        assert_eq!(side["content_type"], ctype);
        assert_eq!(side["digest"], sha256_hex(data).as_str());
    }

    // --name and --content-type override; the text output names the package.
    let c = site.file("local-export-2026-07.dat", b"a,b\n1,2\n");
    let r = site.push(
        "registry-feed",
        "stats",
        &["--name", "renamed.csv", "--content-type", "text/plain", &c],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.contains("renamed.csv: accepted (202) as package "),
        "{r:?}"
    );
    wait_for(Duration::from_secs(30), "renamed delivery", || {
        site.outbox.join("renamed.csv.ferry.json").exists()
            && site.outbox.join("renamed.csv").exists()
    });
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.outbox.join("renamed.csv.ferry.json")).expect("sidecar"),
    )
    .expect("sidecar JSON");
    assert_eq!(side["content_type"], "text/plain");

    // The server checks the digest header: the wrong algorithm for this
    // link is refused, with the hint to choose the link's digest.
    let r = site.push("registry-feed", "stats", &["--digest", "sm3", &c]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("bad request (400)"), "{r:?}");
    assert!(r.stderr.contains("--digest"), "{r:?}");

    // --name with several files is a usage error; nothing is pushed.
    let r = site.push("registry-feed", "stats", &["--name", "x.csv", &a, &b]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("--name"), "{r:?}");
    // A missing file is reported and counts as a failure; the others go on.
    let missing = path_str(&site.root.join("files/missing.csv")).to_owned();
    let d = site.file("after-missing.csv", b"x\n");
    let r = site.push("registry-feed", "stats", &["--json", &missing, &d]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let objects = json_lines(&r.stdout);
    assert_eq!(objects.len(), 2, "{r:?}");
    assert!(
        objects[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("missing.csv")),
        "{r:?}"
    );
    assert_eq!(objects[1]["status"], 202, "{r:?}");

    // A Chinese file name crosses intact (RFC 8187 `X-Ferry-File-Name*`).
    let zh = site.file("地块-2026.csv", &small);
    let r = site.push("registry-feed", "stats", &["--json", &zh]);
    assert_eq!(r.code, Some(0), "{r:?}");
    wait_for(
        Duration::from_secs(30),
        "delivery of the Chinese name",
        || site.outbox.join("地块-2026.csv").exists(),
    );
    assert_eq!(
        std::fs::read(site.outbox.join("地块-2026.csv")).expect("read"),
        small
    );
}

#[test]
fn refusals_are_explained_with_status_reasons_and_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = start_site(dir.path());

    // 403 with the policy's reasons, in words and in JSON.
    let exe = site.file("tool.exe", b"MZ\x90\x00");
    let r = site.push("registry-feed", "stats", &[&exe]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("refused by policy (403)"), "{r:?}");
    assert!(r.stderr.contains("forbidden by rule `R-no-exe`"), "{r:?}");
    let r = site.push("registry-feed", "stats", &["--json", &exe]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let o = &json_lines(&r.stdout)[0];
    assert_eq!(o["status"], 403, "{o}");
    assert_eq!(o["accepted"], false, "{o}");
    assert_eq!(
        o["answer"]["reasons"][0]["kind"], "forbidden-by-rule",
        "{o}"
    );

    // 404: a channel the policy does not define.
    let csv = site.file("ok.csv", b"a\n1\n");
    let r = site.push("registry-feed", "nowhere", &[&csv]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("not found (404)"), "{r:?}");
    assert!(r.stderr.contains("unknown channel"), "{r:?}");

    // 413: over the server's 1 MiB limit, refused from the declared length
    // (the client waits for 100-continue, so the 2 MiB are never sent).
    let big = site.file("big.csv", &content(3, 2 << 20));
    let r = site.push("registry-feed", "stats", &[&big]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("too large (413)"), "{r:?}");

    // Not a refusal: the channel's window is closed today, so the package
    // is accepted and held until it opens (202, `awaiting_window`).
    let r = site.push("registry-feed", "night", &[&csv]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout
            .contains("held until the channel's time window opens"),
        "{r:?}"
    );
    let r = site.push("registry-feed", "night", &["--json", &csv]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let o = &json_lines(&r.stdout)[0];
    assert_eq!(o["status"], 202, "{o}");
    assert_eq!(o["answer"]["state"], "awaiting_window", "{o}");
    assert!(o["answer"]["hold_until"].is_string(), "{o}");

    // 429 with Retry-After: one package a minute. Within a minute the
    // second push is refused; if the minute turns over between two pushes,
    // the next one is.
    let first = site.push("limited-feed", "stats", &[&csv]);
    assert_eq!(first.code, Some(0), "{first:?}");
    let until_refused = |extra: &[&str]| {
        let mut r = site.push("limited-feed", "stats", extra);
        for _ in 0..2 {
            if r.code != Some(0) {
                break;
            }
            r = site.push("limited-feed", "stats", extra);
        }
        r
    };
    let limited = until_refused(&["--json", &csv]);
    assert_eq!(limited.code, Some(75), "{limited:?}");
    let o = &json_lines(&limited.stdout)[0];
    assert_eq!(o["status"], 429, "{o}");
    assert!(
        o["retry_after_s"]
            .as_u64()
            .is_some_and(|s| (1..=60).contains(&s)),
        "{o}"
    );
    let text = until_refused(&[&csv]);
    assert_eq!(text.code, Some(75), "{text:?}");
    assert!(
        text.stderr.contains("rate or quota reached (429)"),
        "{text:?}"
    );
    assert!(text.stderr.contains("retry after"), "{text:?}");
    assert!(text.stderr.contains("quota exceeded"), "{text:?}");

    // Several files, mixed outcomes: the permanent refusal decides.
    let r = site.push("registry-feed", "stats", &[&csv, &exe]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stdout.contains("ok.csv: accepted (202)"), "{r:?}");
}

#[test]
fn tls_failures_are_named_and_exit_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = start_site(dir.path());
    let csv = site.file("x.csv", b"a\n1\n");
    let url = site.url();
    let (crt, key) = site.cert("registry-feed");

    // The server's certificate does not chain to the CA given.
    let wrong_ca = path_str(&site.root.join("other-ca/ca.crt")).to_owned();
    let r = ctl_within(
        &[
            "push",
            "--url",
            &url,
            "--channel",
            "stats",
            "--cacert",
            &wrong_ca,
            "--cert",
            &crt,
            "--key",
            &key,
            &csv,
        ],
        PUSH_LIMIT,
    );
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("server certificate not trusted by {wrong_ca}")),
        "{r:?}"
    );

    // No client certificate at all.
    let cacert = site.cacert();
    let r = ctl_within(
        &[
            "push",
            "--url",
            &url,
            "--channel",
            "stats",
            "--cacert",
            &cacert,
            &csv,
        ],
        PUSH_LIMIT,
    );
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains("client certificate refused"), "{r:?}");
    assert!(r.stderr.contains("--cert"), "{r:?}");

    // A revoked certificate, and one from another CA with the same name.
    let (rcrt, rkey) = site.cert("revoked-feed");
    let stranger = site.root.join("stranger");
    let (scrt, skey) = (
        path_str(&stranger.join("registry-feed.crt")).to_owned(),
        path_str(&stranger.join("registry-feed.key")).to_owned(),
    );
    for (c, k, what) in [(&rcrt, &rkey, "revoked"), (&scrt, &skey, "another CA")] {
        let r = ctl_within(
            &[
                "push",
                "--url",
                &url,
                "--channel",
                "stats",
                "--cacert",
                &cacert,
                "--cert",
                c,
                "--key",
                k,
                "--json",
                &csv,
                &csv,
            ],
            PUSH_LIMIT,
        );
        assert_eq!(r.code, Some(3), "{what}: {r:?}");
        let objects = json_lines(&r.stdout);
        assert_eq!(objects.len(), 2, "{what}: {r:?}");
        assert!(
            objects[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("client certificate refused")),
            "{what}: {r:?}"
        );
        // After a connection-level failure the rest is not attempted.
        assert!(
            objects[1]["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("not attempted")),
            "{what}: {r:?}"
        );
    }

    // Nobody listening.
    let closed = free_tcp_port();
    let r = ctl_within(
        &[
            "push",
            "--url",
            &format!("https://127.0.0.1:{closed}"),
            "--channel",
            "stats",
            "--cacert",
            &cacert,
            "--cert",
            &crt,
            "--key",
            &key,
            &csv,
        ],
        PUSH_LIMIT,
    );
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains("cannot connect"), "{r:?}");

    // Bad arguments: exit 2 before any connection.
    for (args, what) in [
        (
            vec![
                "push",
                "--url",
                "http://127.0.0.1:1",
                "--channel",
                "stats",
                "--cacert",
                &cacert,
                &csv,
            ],
            "http URL",
        ),
        (
            vec![
                "push",
                "--url",
                &url,
                "--channel",
                "a/b",
                "--cacert",
                &cacert,
                &csv,
            ],
            "channel with a slash",
        ),
        (
            vec![
                "push",
                "--url",
                &url,
                "--channel",
                "stats",
                "--cacert",
                "/nonexistent/ca.crt",
                &csv,
            ],
            "missing CA file",
        ),
        (
            vec![
                "push",
                "--url",
                &url,
                "--channel",
                "stats",
                "--cacert",
                &cacert,
                "--cert",
                &crt,
                &csv,
            ],
            "--cert without --key",
        ),
    ] {
        let r = ctl_within(&args, PUSH_LIMIT);
        assert_eq!(r.code, Some(2), "{what}: {r:?}");
        assert!(!r.stderr.is_empty(), "{what}: {r:?}");
    }
    // Nothing of all this was delivered (a deliberate window in which a
    // wrongly accepted push would arrive).
    std::thread::sleep(Duration::from_millis(500));
    assert!(outbox_files(&site.outbox).is_empty());
}

#[test]
fn bench_e2e_runs_and_prints_its_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("bench");
    let r = ctl_within(
        &[
            "bench",
            "e2e",
            "--packages",
            "200",
            "--clients",
            "4",
            "--dir",
            path_str(&work),
            "--timeout",
            "120",
        ],
        Duration::from_secs(180),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    for needle in [
        "ingest:",
        "end-to-end:",
        "packages/s",
        "202 latency p50",
        "ingest-to-delivery p50",
        "p99",
        "MB/s",
        "0 refused or failed, 0 accepted but not delivered",
        "bundles:",
    ] {
        assert!(r.stdout.contains(needle), "missing `{needle}`: {r:?}");
    }
    assert_eq!(outbox_files(&work.join("egress/outbox")).len(), 200);
    assert_logs_in_named_file(&r, &work.join("daemons.log"));
}

/// A bench's terminal shows its figures, not the daemons' log lines: those
/// go to the file it names (`--dir DIR`: `DIR/daemons.log`), which holds
/// the egress side's activity summary (at its stop) with what it delivered.
fn assert_logs_in_named_file(r: &Run, log: &Path) {
    for (stream, out) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.contains(" INFO ") || l.contains(" WARN ") || l.contains("delivered\""))
            .collect();
        assert!(lines.is_empty(), "log lines on {stream}: {lines:?}");
    }
    assert!(
        r.stdout
            .contains(&format!("daemons' logs: {}", path_str(log))),
        "the log file is not named: {r:?}"
    );
    let text = std::fs::read_to_string(log).expect("the named log file");
    assert!(
        text.lines()
            .any(|l| l.contains(" INFO ") && l.contains("activity") && l.contains("delivered=")),
        "no daemon lines in {}:\n{text}",
        log.display()
    );
}

#[test]
fn bench_link_runs_and_keeps_the_daemons_logs_off_the_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("bench");
    let r = ctl_within(
        &[
            "bench",
            "link",
            "--size",
            "2000000",
            "--files",
            "20",
            "--loss",
            "0",
            "--dir",
            path_str(&work),
        ],
        Duration::from_secs(180),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("moved 2000000 bytes"), "{r:?}");
    assert!(r.stdout.contains("0 lost, 0 corrupted"), "{r:?}");
    assert_logs_in_named_file(&r, &work.join("daemons.log"));
}
