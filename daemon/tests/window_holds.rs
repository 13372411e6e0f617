//! Time windows against real `ferryd` processes: a push while its
//! channel's window is closed is accepted (`202 awaiting_window`), held out
//! of the sequence order (nothing reaches the egress outbox, reviewers
//! cannot release it, kill -9 does not lose it), and delivered exactly
//! once, byte for byte, when the window opens. Packages still queued when
//! a reload closes their channel's window wait with it. The audit log
//! shows each hold and release.
//!
//! The window opens at the next whole UTC minute at least
//! `SETUP_MARGIN` away, so the test runs between about half a minute and
//! a minute and a half, and every wait in it is bounded.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time the steps before the window opens need (push, checks, kill -9 and
/// restart), with room to spare on a busy machine.
const SETUP_MARGIN_S: u64 = 35;
/// Longest wait for delivery once the window is open.
const DELIVERY_LIMIT: Duration = Duration::from_secs(90);

fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `HH:MM` (UTC) of a Unix time.
fn hhmm(unix_s: u64) -> String {
    let m = (unix_s / 60) % (24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// The policy: `night` opens at `opens` (Unix seconds, a whole minute) for
/// ten minutes; `bulk` has that window too, or none (`bulk_open`).
fn policy(opens: u64, bulk_open: bool) -> String {
    let bulk_windows = if bulk_open {
        ""
    } else {
        "windows = [\"soon\"]"
    };
    format!(
        r#"version = 1

[policy]
name = "window-test"
time_zone = "UTC"

[identity.feed]
description = "The registry feed"
cn = "registry-feed"
role = "pusher"

[window.soon]
description = "Opens at the next whole minute the test chose"
from = "{from}"
to = "{to}"

[channel.night]
description = "Only inside the window"
direction = "import"
link = "e2e"
destination = "outbox"
windows = ["soon"]

[approval.one]
description = "One reviewer"
reviewers = 1
roles = ["reviewer"]
expires_after_s = 3600

[channel.reviewed]
description = "Reviewed, and only inside the window"
direction = "import"
link = "e2e"
destination = "outbox"
windows = ["soon"]
approval = "one"

[channel.bulk]
description = "Open until a reload gives it the window"
direction = "import"
link = "e2e"
destination = "outbox"
{bulk_windows}

[[rule]]
id = "R-feed"
description = "The feed pushes on both"
effect = "allow"
identities = ["feed"]
channels = ["night", "reviewed", "bulk"]
"#,
        from = hhmm(opens),
        to = hhmm(opens + 600),
    )
}

struct Site {
    port: u16,
    ca: PathBuf,
    clients: PathBuf,
}

impl Site {
    fn curl(&self, extra: &[&str], url: &str) -> (u16, serde_json::Value) {
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
            .args(["--cacert", path_str(&self.ca.join("ca.crt"))])
            .arg("--cert")
            .arg(self.clients.join("registry-feed.crt"))
            .arg("--key")
            .arg(self.clients.join("registry-feed.key"))
            .args(extra)
            .arg(format!("https://127.0.0.1:{}{url}", self.port))
            .output()
            .expect("curl");
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, code) = t.rsplit_once('\n').unwrap_or(("", ""));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }

    fn push(&self, channel: &str, name: &str, data: &Path) -> (u16, serde_json::Value) {
        let header = format!("X-Ferry-File-Name: {name}");
        let body = format!("@{}", path_str(data));
        self.curl(
            &[
                "-H",
                &header,
                "-H",
                "Content-Type: text/csv",
                "--data-binary",
                &body,
            ],
            &format!("/v1/channels/{channel}/packages"),
        )
    }

    fn state(&self, id: &str) -> (u16, serde_json::Value) {
        self.curl(&[], &format!("/v1/packages/{id}"))
    }
}

#[test]
fn a_closed_window_holds_pushes_and_queued_packages_until_it_opens() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    // A slow link, so that bulk packages are still queued when the reload
    // closes their window.
    let tb = testbed(root, |o| {
        o.rate_bytes_per_s = 40_000;
        o.loss_budget_percent = 0.0;
    });
    let site = Site {
        port: free_tcp_port(),
        ca: root.join("ca"),
        clients: root.join("clients"),
    };
    ferry_certs::init_ca(&site.ca, "window test CA", 365).expect("CA");
    ferry_certs::issue_server(
        &site.ca,
        &root.join("ingress/tls"),
        "ingest",
        &[],
        &[std::net::IpAddr::from([127, 0, 0, 1])],
        30,
    )
    .expect("server certificate");
    let pusher = Some(ferry_certs::Role::new("pusher").expect("role"));
    ferry_certs::issue_client(&site.ca, &site.clients, "registry-feed", pusher, 30)
        .expect("client certificate");
    let audit_dir = root.join("audit");
    let o = ctl(&[
        "audit",
        "init",
        "--dir",
        path_str(&audit_dir),
        "--verify-key-out",
        path_str(&root.join("audit.verify")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    append_config(&tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{ca}\"]\nmin_free_bytes = 0\n\n[policy]\nfile = \"policy.toml\"\n\n[audit]\ndir = \"{audit}\"\nmin_free_bytes_accept = 0\n",
            port = site.port,
            ca = path_str(&site.ca.join("ca.crt")),
            audit = path_str(&audit_dir),
        ));
    let config = path_str(&tb.ingress_config).to_owned();

    // The window opens at the next whole minute far enough away.
    let mut opens = (unix_now_s() / 60 + 1) * 60;
    if opens - unix_now_s() < SETUP_MARGIN_S {
        opens += 60;
    }
    let policy_file = root.join("ingress/policy.toml");
    std::fs::write(&policy_file, policy(opens, true)).expect("policy");
    let _egress = Daemon::start(&tb.egress_config);
    let mut ingress = Daemon::start(&tb.ingress_config);
    ingress.wait_listening(&[site.port], "ingest listening");

    // Bulk packages on the open channel start on the slow link.
    let bulk: Vec<String> = (0..6).map(|i| format!("bulk-{i}.csv")).collect();
    for (i, name) in bulk.iter().enumerate() {
        let f = root.join(name);
        std::fs::write(&f, content(i as u64, 100_000)).expect("write");
        let (code, v) = site.push("bulk", name, &f);
        assert_eq!(code, 202, "{v}");
        assert_eq!(v["state"], "queued", "{v}");
    }

    // The push on the closed channel: accepted and held, not refused.
    let data = root.join("parcels.csv");
    std::fs::write(&data, "parcel,area\nA-1,20.5\nA-2,7.25\n").expect("write");
    let (code, v) = site.push("night", "parcels.csv", &data);
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["state"], "awaiting_window", "{v}");
    assert_eq!(v["hold_until_unix_ms"], opens * 1000, "{v}");
    assert!(
        v["hold_until"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );
    let id = v["package_id"].as_str().expect("id").to_owned();
    let (code, st) = site.state(&id);
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["state"], "awaiting_window", "{st}");
    assert_eq!(st["hold_until_unix_ms"], opens * 1000, "{st}");

    // Approvals come first; approved while the window is closed, the
    // package waits for it.
    let (code, v) = site.push("reviewed", "reviewed.csv", &data);
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["state"], "awaiting_approval", "{v}");
    let reviewed = v["package_id"].as_str().expect("id").to_owned();
    let o = ctl(&[
        "approvals",
        "approve",
        "--config",
        &config,
        &reviewed,
        "--reason",
        "figures checked",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("awaiting_window"), "{}", text(&o));
    let (_, st) = site.state(&reviewed);
    assert_eq!(st["state"], "awaiting_window", "{st}");
    assert_eq!(st["hold_until_unix_ms"], opens * 1000, "{st}");

    // A reload gives `bulk` the closed window: what is still queued waits.
    std::fs::write(&policy_file, policy(opens, false)).expect("policy");
    let o = ctl(&["policy", "reload", "--config", &config]);
    assert!(o.status.success(), "{}", text(&o));
    let held_bulk = || {
        held_field(
            &config,
            |h| h["state"] == "awaiting_window" && h["channel"] == "bulk",
            "file_name",
        )
    };
    // Whatever was being sent arrives; the rest is held.
    wait_for(
        Duration::from_secs(30),
        "bulk queue drained into holds",
        || {
            let st = status(&tb.ingress_config).unwrap_or_default();
            st["queued"] == 0 && outbox_files(&tb.outbox).len() + held_bulk().len() == bulk.len()
        },
    );
    let bulk_held = held_bulk();
    assert!(
        !bulk_held.is_empty(),
        "no bulk package was held: the link was too fast for the test"
    );
    let st = status(&tb.ingress_config).expect("status");
    assert_eq!(st["awaiting_window"], bulk_held.len() + 2, "{st}");
    assert_eq!(st["awaiting_approval"], 0, "{st}");

    // A reviewer (root holds every role without [admin]) cannot release it.
    let o = ctl(&[
        "approvals",
        "approve",
        "--config",
        &config,
        &id,
        "--reason",
        "send it now",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("time window opens"), "{}", text(&o));
    let o = ctl(&[
        "approvals",
        "reject",
        "--config",
        &config,
        &id,
        "--reason",
        "no",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("time window opens"), "{}", text(&o));

    // kill -9 while held: after the restart it is still held.
    ingress.kill9();
    ingress = Daemon::start(&tb.ingress_config);
    ingress.wait_listening(&[site.port], "ingest back");
    let (_, st) = site.state(&id);
    assert_eq!(st["state"], "awaiting_window", "{st}");
    // A package whose redundant sends the kill cut short is queued again at
    // start and held too (the egress ledger delivers it once regardless).
    let st = status(&tb.ingress_config).expect("status");
    assert!(
        st["awaiting_window"]
            .as_u64()
            .is_some_and(|n| n as usize >= bulk_held.len() + 2),
        "{st}"
    );

    // Nothing held reached the outbox while the window was closed.
    assert!(
        unix_now_s() < opens,
        "setup took past the window's opening; raise SETUP_MARGIN_S"
    );
    let delivered_early = outbox_files(&tb.outbox);
    for n in ["parcels.csv", "reviewed.csv"] {
        assert!(
            !delivered_early.contains(&n.to_string()),
            "{delivered_early:?}"
        );
    }
    for n in &bulk_held {
        assert!(!delivered_early.contains(n), "{n} held and delivered");
    }

    // The window opens: everything arrives, each once, byte for byte.
    let mut all = bulk.clone();
    all.push("parcels.csv".into());
    all.push("reviewed.csv".into());
    all.sort();
    let wait = Duration::from_secs(opens.saturating_sub(unix_now_s())) + DELIVERY_LIMIT;
    wait_for(wait, "delivery once the window opened", || {
        outbox_files(&tb.outbox) == all
    });
    assert!(unix_now_s() >= opens, "delivered before the window opened");
    assert_eq!(
        std::fs::read(tb.outbox.join("parcels.csv")).expect("read"),
        std::fs::read(&data).expect("read")
    );
    for (i, name) in bulk.iter().enumerate() {
        assert_eq!(
            std::fs::read(tb.outbox.join(name)).expect("read"),
            content(i as u64, 100_000),
            "{name}"
        );
    }
    wait_for(Duration::from_secs(10), "holds cleared", || {
        status(&tb.ingress_config).is_some_and(|v| v["awaiting_window"] == 0)
    });
    let (_, st) = site.state(&id);
    assert_eq!(st["state"], "sent", "{st}");
    // Still once a moment later (a second release would deliver again): a
    // deliberate window.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(outbox_files(&tb.outbox), all);
    ingress.stop();

    // The audit log: held and released, for the push and the bulk ones.
    let o = ctl(&["audit", "query", "--dir", path_str(&audit_dir), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let count = |event: &str, pkg: &str| {
        records
            .iter()
            .filter(|r| r["event"] == event && r["package"] == pkg)
            .count()
    };
    assert_eq!(count("package.held", &id), 1, "{records:?}");
    assert_eq!(count("package.released", &id), 1, "{records:?}");
    assert_eq!(count("package.pushed", &id), 1, "{records:?}");
    assert_eq!(count("package.held", &reviewed), 1, "{records:?}");
    assert_eq!(count("package.released", &reviewed), 1, "{records:?}");
    let held_records = records
        .iter()
        .filter(|r| r["event"] == "package.held" && r["channel"] == "bulk")
        .count();
    assert!(held_records >= bulk_held.len(), "{records:?}");
}
