//! The two-person rule against real `ferryd` processes: a package pushed
//! with curl on a channel that needs two approvals is held (not sent), each
//! reviewer approves once, the submitter cannot approve its own push, other
//! roles are refused, a rejected package is never sent, a held package
//! survives kill -9, and every step is in the audit log. Needs root (to act
//! as other uids with `setpriv`); skips otherwise.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const ADMINS_GID: u32 = 64_910;
const SYSADMIN: u32 = 64_911;
const REVIEWER_A: u32 = 64_912;
/// The second reviewer is the real `nobody` account, so a client
/// certificate with CN=nobody is "their" push.
const NOBODY: u32 = 65_534;

fn policy(spool: &Path) -> String {
    format!(
        r#"version = 1

[policy]
name = "approvals-test"
time_zone = "Asia/Shanghai"

[identity.feed]
description = "The registry feed"
cn = "registry-feed"
role = "pusher"

[identity.nobody]
description = "A person who is also a reviewer"
cn = "nobody"
role = "pusher"

[identity.spool]
description = "This link's spool"
spool = "e2e"

[spool.e2e]
description = "Unused here"
dir = "{spool}"
channel = "release"
schedule = "continuous"

[approval.two-person]
reviewers = 2
roles = ["reviewer"]
expires_after_s = 3600

[profile.open]
description = "No content rules (the guard is tested elsewhere)"

[channel.release]
description = "Release to the portal, two approvals"
direction = "release"
link = "e2e"
destination = "outbox"
approval = "two-person"
profile = "open"

[[rule]]
id = "R-push"
description = "The feed and nobody push CSV"
effect = "allow"
identities = ["feed", "nobody", "spool"]
channels = ["release"]
"#,
        spool = path_str(spool)
    )
}

struct Site {
    port: u16,
    ca: std::path::PathBuf,
    clients: std::path::PathBuf,
}

fn push(site: &Site, who: &str, name: &str, data: &Path) -> (u16, serde_json::Value) {
    let (code, body) = curl_https(
        &SiteCa::at(&site.ca),
        site.port,
        "/v1/channels/release/packages",
        Some((&site.clients, who)),
        &[
            "-H",
            &format!("X-Ferry-File-Name: {name}"),
            "-H",
            "Content-Type: text/csv",
            "--data-binary",
            &format!("@{}", path_str(data)),
        ],
    );
    (
        code.parse().unwrap_or(0),
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn state(site: &Site, id: &str) -> (u16, serde_json::Value) {
    let (code, body) = curl_https(
        &SiteCa::at(&site.ca),
        site.port,
        &format!("/v1/packages/{id}"),
        Some((&site.clients, "registry-feed")),
        &[],
    );
    (
        code.parse().unwrap_or(0),
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn two_reviewers_release_a_held_package_and_nothing_else_gets_out() {
    if !setpriv_or_skip("acting as reviewers (setpriv)") {
        return;
    }
    if nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(NOBODY))
        .ok()
        .flatten()
        .is_none_or(|u| u.name != "nobody")
    {
        skip("no `nobody` account with uid 65534");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tb = testbed(root, |_| {});
    std::fs::set_permissions(root.join("ingress"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let site = Site {
        port: free_tcp_port(),
        ca: root.join("ca"),
        clients: root.join("clients"),
    };
    SiteCa::init(&site.ca);
    SiteCa::at(&site.ca).server(&root.join("ingress/tls"), "ingest");
    for name in ["registry-feed", "nobody"] {
        SiteCa::at(&site.ca).client(&site.clients, name, "pusher");
    }
    std::fs::write(root.join("ingress/policy.toml"), policy(&tb.spool)).expect("policy");
    let run_dir = root.join("run");
    std::fs::create_dir(&run_dir).expect("run dir");
    nix::unistd::chown(&run_dir, None, Some(nix::unistd::Gid::from_raw(ADMINS_GID)))
        .expect("chgrp");
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o2750)).expect("chmod");
    let audit_dir = root.join("audit");
    ctl_ok(&[
        "audit",
        "init",
        "--dir",
        path_str(&audit_dir),
        "--verify-key-out",
        path_str(&root.join("audit.verify")),
    ]);
    append_config(&tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{ca}\"]\nmin_free_bytes = 0\n\n[policy]\nfile = \"policy.toml\"\n\n[audit]\ndir = \"{audit}\"\nmin_free_bytes_accept = 0\n\n[admin]\nsocket = \"{sock}\"\nsysadmin = [\"uid:{SYSADMIN}\"]\nreviewer = [\"uid:{REVIEWER_A}\", \"nobody\"]\n",
            port = site.port,
            ca = path_str(&site.ca.join("ca.crt")),
            audit = path_str(&audit_dir),
            sock = path_str(&run_dir.join("ingress.sock")),
        ));
    std::fs::set_permissions(&tb.ingress_config, std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let config = path_str(&tb.ingress_config).to_owned();
    let _egress = Daemon::start(&tb.egress_config);
    let mut ingress = Daemon::start(&tb.ingress_config);
    ingress.wait_listening(&[site.port], "ingest listening");

    // Pushed and held: 202 awaiting approval; nothing is sent.
    let data = root.join("parcels.csv");
    std::fs::write(&data, "parcel,area\nA-1,20.5\n").expect("write");
    let (code, v) = push(&site, "registry-feed", "parcels.csv", &data);
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["state"], "awaiting_approval", "{v}");
    let id = v["package_id"].as_str().expect("id").to_owned();
    let (code, st) = state(&site, &id);
    assert_eq!(
        (code, st["state"].as_str()),
        (200, Some("awaiting_approval")),
        "{st}"
    );
    assert_eq!(st["needed"], 2, "{st}");

    // The reviewers see it, with a preview of the text.
    let o = ctl_as(
        REVIEWER_A,
        ADMINS_GID,
        &["approvals", "list", "--config", &config],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&id) && text(&o).contains("0 of 2"),
        "{}",
        text(&o)
    );
    let o = ctl_as(
        REVIEWER_A,
        ADMINS_GID,
        &["approvals", "show", "--config", &config, &id],
    );
    assert!(text(&o).contains("parcel,area\nA-1,20.5"), "{}", text(&o));

    // A system administrator may not approve.
    let o = ctl_as(
        SYSADMIN,
        ADMINS_GID,
        &[
            "approvals",
            "approve",
            "--config",
            &config,
            &id,
            "--reason",
            "x",
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("a reviewer's job"), "{}", text(&o));

    // Kill -9 while held: after the restart it is still held, not sent.
    ingress.kill9();
    ingress = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(15), "ingest back", || {
        std::net::TcpStream::connect(("127.0.0.1", site.port)).is_ok()
    });
    let (_, st) = state(&site, &id);
    assert_eq!(st["state"], "awaiting_approval", "{st}");

    // First approval; the same reviewer cannot approve twice.
    let approve = |uid: u32, why: &str| {
        ctl_as(
            uid,
            ADMINS_GID,
            &[
                "approvals",
                "approve",
                "--config",
                &config,
                &id,
                "--reason",
                why,
            ],
        )
    };
    let o = approve(REVIEWER_A, "checked against the release list");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("\"approvals\": 1"), "{}", text(&o));
    let o = approve(REVIEWER_A, "again");
    assert!(!o.status.success());
    assert!(text(&o).contains("already approved"), "{}", text(&o));
    // A deliberate window in which a premature send would be delivered.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        outbox_files(&tb.outbox).is_empty(),
        "sent before two approvals"
    );

    // Second approval by another reviewer: queued, sent, delivered once.
    let o = approve(NOBODY, "figures confirmed");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("\"state\": \"queued\""), "{}", text(&o));
    wait_for(Duration::from_secs(30), "delivery", || {
        outbox_files(&tb.outbox) == vec!["parcels.csv".to_string()]
    });

    // nobody pushes; nobody may not approve its own push.
    let (code, v) = push(&site, "nobody", "own.csv", &data);
    assert_eq!(code, 202, "{v}");
    let own = v["package_id"].as_str().expect("id").to_owned();
    let o = ctl_as(
        NOBODY,
        ADMINS_GID,
        &[
            "approvals",
            "approve",
            "--config",
            &config,
            &own,
            "--reason",
            "mine",
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("you pushed package"), "{}", text(&o));

    // Rejected: gone, never sent.
    let o = ctl_as(
        REVIEWER_A,
        ADMINS_GID,
        &[
            "approvals",
            "reject",
            "--config",
            &config,
            &own,
            "--reason",
            "draft figures",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let (code, _) = state(&site, &own);
    assert_eq!(code, 404);
    let o = ctl_as(
        REVIEWER_A,
        ADMINS_GID,
        &[
            "approvals",
            "approve",
            "--config",
            &config,
            &own,
            "--reason",
            "late",
        ],
    );
    assert!(text(&o).contains("is awaiting approval"), "{}", text(&o));
    // A deliberate window in which a wrongly released package would arrive.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(outbox_files(&tb.outbox), vec!["parcels.csv".to_string()]);
    let o = ctl_as(
        SYSADMIN,
        ADMINS_GID,
        &["status", "--config", &config, "--json"],
    );
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(st["awaiting_approval"], 0, "{st}");
    ingress.stop();

    // The audit log holds each step with its reviewer.
    let out = ctl_ok(&["audit", "query", "--dir", path_str(&audit_dir), "--json"]);
    let records: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let find = |event: &str, outcome: &str, pkg: &str, who: u32| {
        records.iter().any(|r| {
            r["event"] == event
                && r["outcome"] == outcome
                && r["package"] == pkg
                && r["actor"]["id"]
                    .as_str()
                    .is_some_and(|a| a.ends_with(&format!("(uid {who})")))
        })
    };
    assert!(
        find("approval.approved", "allowed", &id, REVIEWER_A),
        "{records:?}"
    );
    assert!(
        find("approval.approved", "refused", &id, REVIEWER_A),
        "{records:?}"
    );
    assert!(
        find("approval.approved", "allowed", &id, NOBODY),
        "{records:?}"
    );
    assert!(
        find("approval.approved", "refused", &own, NOBODY),
        "{records:?}"
    );
    assert!(
        find("approval.rejected", "success", &own, REVIEWER_A),
        "{records:?}"
    );
}
