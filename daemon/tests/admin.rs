//! The admin plane against a real `ferryd`: callers on the control socket
//! are told apart by the kernel's peer credentials, each role is refused
//! outside its job, and every request, allowed or refused, is in the audit
//! log with the uid that made it. The socket tests need root (to act as
//! other uids with `setpriv`) and skip otherwise. Over the mTLS admin API,
//! callers are told apart by their client certificates (no root needed).

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The administrators' group and the test users (no passwd entries
/// needed: `uid:N` in `[admin]`).
const ADMINS_GID: u32 = 64_900;
const SYSADMIN: u32 = 64_901;
const SECADMIN: u32 = 64_902;
const AUDITOR: u32 = 64_903;
const REVIEWER: u32 = 64_904;
const STRANGER: u32 = 64_905;

#[test]
fn each_role_is_refused_outside_its_job_and_every_request_is_audited() {
    if !setpriv_or_skip("acting as other uids (setpriv)") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    // The administrators must reach the configuration and the socket's
    // directory; nothing else of the test site.
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tb = testbed(t.path(), |_| {});
    for dir in [t.path().join("ingress"), t.path().join("egress")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let run = t.path().join("run");
    std::fs::create_dir(&run).expect("run dir");
    // setgid: the socket ferryd creates there gets the administrators' group.
    nix::unistd::chown(&run, None, Some(nix::unistd::Gid::from_raw(ADMINS_GID))).expect("chgrp");
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o2750)).expect("chmod");
    let audit_dir = t.path().join("audit");
    let key = t.path().join("audit.verify");
    let out = Command::new(ferryctl())
        .args([
            "audit",
            "init",
            "--dir",
            path_str(&audit_dir),
            "--verify-key-out",
            path_str(&key),
        ])
        .output()
        .expect("audit init");
    assert!(out.status.success(), "{}", text(&out));
    let socket = run.join("ingress.sock");
    append_config(&tb.ingress_config, &format!("[audit]\ndir = \"{}\"\nmin_free_bytes_accept = 0\n\n[admin]\nsocket = \"{}\"\nsysadmin = [\"uid:{SYSADMIN}\"]\nsecadmin = [\"uid:{SECADMIN}\"]\nauditor = [\"uid:{AUDITOR}\"]\nreviewer = [\"uid:{REVIEWER}\"]\n",
            path_str(&audit_dir),
            path_str(&socket)
        ));
    std::fs::set_permissions(&tb.ingress_config, std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let ingress = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(15), "control socket", || {
        socket.exists()
    });
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "the socket is for the administrators' group");
    let config = path_str(&tb.ingress_config);

    // Any administrator reads the status; it names who holds what.
    for uid in [SYSADMIN, SECADMIN, AUDITOR, REVIEWER] {
        let o = ctl_as(uid, ADMINS_GID, &["status", "--config", config, "--json"]);
        assert!(o.status.success(), "status as {uid}: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(
            v["admin_roles"],
            "sysadmin: uid:64901; secadmin: uid:64902; auditor: uid:64903; reviewer: uid:64904",
            "{v}"
        );
    }
    // A uid with no role, and root itself (not listed), get nothing.
    let o = ctl_as(STRANGER, ADMINS_GID, &["status", "--config", config]);
    assert!(!o.status.success());
    assert!(text(&o).contains("holds no role"), "{}", text(&o));
    let o = Command::new(ferryctl())
        .args(["status", "--config", config])
        .output()
        .expect("ferryctl");
    assert!(text(&o).contains("holds no role"), "root: {}", text(&o));

    // resend: the system administrator's job.
    let resend = ["resend", "--config", config, "--seq", "1..1"];
    for uid in [SECADMIN, AUDITOR, REVIEWER] {
        let o = ctl_as(uid, ADMINS_GID, &resend);
        assert!(!o.status.success());
        assert!(
            text(&o).contains("`resend` is the system administrator's job"),
            "{uid}: {}",
            text(&o)
        );
    }
    let o = ctl_as(SYSADMIN, ADMINS_GID, &resend);
    assert!(!text(&o).contains("refused"), "sysadmin: {}", text(&o));

    // Policy reload: the security administrator's job (this side has no
    // [policy], so the allowed call reports that, not a refusal).
    let reload = ["policy", "reload", "--config", config];
    for uid in [SYSADMIN, AUDITOR, REVIEWER] {
        let o = ctl_as(uid, ADMINS_GID, &reload);
        assert!(!o.status.success());
        assert!(
            text(&o).contains("security administrator's job"),
            "{uid}: {}",
            text(&o)
        );
    }
    let o = ctl_as(SECADMIN, ADMINS_GID, &reload);
    assert!(text(&o).contains("no [policy] configured"), "{}", text(&o));

    ingress.stop();
    let o = Command::new(ferryctl())
        .args([
            "audit",
            "query",
            "--dir",
            path_str(&audit_dir),
            "--event",
            "admin.action",
            "--json",
        ])
        .output()
        .expect("query");
    assert!(o.status.success(), "{}", text(&o));
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let count = |uid: u32, outcome: &str, request: &str| {
        records
            .iter()
            .filter(|r| {
                r["actor"]["id"]
                    .as_str()
                    .is_some_and(|a| a.ends_with(&format!("(uid {uid})")))
                    && r["outcome"] == outcome
                    && r["details"]["request"] == request
            })
            .count()
    };
    assert_eq!(count(SYSADMIN, "allowed", "resend"), 1, "{records:?}");
    assert_eq!(
        count(SECADMIN, "allowed", "reload_policy"),
        1,
        "{records:?}"
    );
    for uid in [SECADMIN, AUDITOR, REVIEWER] {
        assert_eq!(count(uid, "refused", "resend"), 1, "{uid}: {records:?}");
    }
    for uid in [SYSADMIN, AUDITOR, REVIEWER] {
        assert_eq!(
            count(uid, "refused", "reload_policy"),
            1,
            "{uid}: {records:?}"
        );
    }
    assert_eq!(count(STRANGER, "refused", "status"), 1, "{records:?}");
    // The role a refused request needed is its own detail.
    assert!(
        records.iter().any(|r| r["actor"]["id"]
            .as_str()
            .is_some_and(|a| a.ends_with(&format!("(uid {SECADMIN})")))
            && r["outcome"] == "refused"
            && r["details"]["role_needed"] == "sysadmin"),
        "{records:?}"
    );
    // Each record carries the role the caller holds, not the one needed.
    for (uid, role) in [
        (SYSADMIN, "system_admin"),
        (SECADMIN, "security_admin"),
        (AUDITOR, "auditor"),
        (REVIEWER, "approver"),
        // No role: recorded as holding none (issue 14 B9), never under
        // the role the request needed.
        (STRANGER, "none"),
    ] {
        let id = format!("(uid {uid})");
        assert!(
            records
                .iter()
                .filter(|r| r["actor"]["id"].as_str().is_some_and(|a| a.ends_with(&id)))
                .all(|r| r["actor"]["role"] == role),
            "{uid} {role}: {records:?}"
        );
    }
    let v = Command::new(ferryctl())
        .args([
            "audit",
            "verify",
            "--dir",
            path_str(&audit_dir),
            "--key",
            path_str(&key),
        ])
        .output()
        .expect("verify");
    assert!(v.status.success(), "{}", text(&v));
}

/// `ferryctl channel stop|start` (the system administrator's job): a
/// stopped channel takes nothing from its spool, its queued packages are
/// held out of the sequence order instead of sent, the stop survives a
/// restart, and starting it sends every held package exactly once.
#[test]
fn a_stopped_channel_holds_its_queue_and_start_sends_everything_once() {
    let t = tempfile::tempdir().expect("tempdir");
    // A slow link, one package per send: packages wait in the queue.
    let tb = one_by_one_slow_testbed(t.path(), 40_000);
    let config = path_str(&tb.ingress_config).to_owned();
    let _egress = Daemon::start(&tb.egress_config);
    let mut ingress = Daemon::start(&tb.ingress_config);
    let names: Vec<String> = (0..10).map(|i| format!("parcel-{i:02}.bin")).collect();
    for (i, n) in names.iter().enumerate() {
        ferry_daemon::testkit::spool_file(&tb.spool, n, &content(i as u64, 60_000)).expect("spool");
    }
    wait_for(Duration::from_secs(20), "all ten taken", || {
        status(&tb.ingress_config).is_some_and(|v| v["taken"] == 10)
    });
    let ctl = |args: &[&str]| {
        Command::new(ferryctl())
            .args(args)
            .output()
            .expect("ferryctl")
    };
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
    ferry_daemon::testkit::spool_file(&tb.spool, "late.bin", b"late").expect("spool");

    let held = || held_field(&config, |h| h["channel_stopped"] == true, "file_name");
    // Whatever was already being sent arrives; the rest is held.
    wait_for(Duration::from_secs(60), "queue drained into holds", || {
        let st = status(&tb.ingress_config).unwrap_or_default();
        st["queued"] == 0 && outbox_files(&tb.outbox).len() + held().len() == 10
    });
    let held_now = held();
    assert!(
        !held_now.is_empty(),
        "nothing was held: the test did not exercise the stop"
    );
    for n in &held_now {
        assert!(
            !outbox_files(&tb.outbox).contains(n),
            "{n} held and delivered"
        );
    }
    assert!(
        tb.spool.join("late.bin").exists(),
        "a stopped channel's spool was collected"
    );
    let st = status(&tb.ingress_config).expect("status");
    assert!(
        st["stopped_channels"]["e2e"]
            .as_str()
            .is_some_and(|r| r.contains("maintenance")),
        "{st}"
    );
    // Reviewers cannot release a stopped channel's packages.
    let o = ctl(&["approvals", "list", "--config", &config, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let some_id = v["held"][0]["package_id"].as_str().expect("id").to_owned();
    let o = ctl(&[
        "approvals",
        "approve",
        "--config",
        &config,
        &some_id,
        "--reason",
        "x",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("channel is stopped"), "{}", text(&o));

    // The stop survives a restart.
    ingress.stop();
    ingress = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(15), "ingress back", || {
        status(&tb.ingress_config).is_some_and(|v| v["stopped_channels"]["e2e"].is_string())
    });
    // A deliberate window: a stopped channel must leave the late file in
    // the spool, and it would be picked up within it if it were not.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(tb.spool.join("late.bin").exists());

    // Start: every held package and the late file arrive, each once.
    let o = ctl(&["channel", "start", "--config", &config, "e2e"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["released"], held_now.len(), "{v}");
    let mut all = names.clone();
    all.push("late.bin".into());
    all.sort();
    wait_for(Duration::from_secs(90), "everything delivered once", || {
        outbox_files(&tb.outbox) == all
    });
    // The held packages' skipped sequence numbers were gaps at the egress
    // side; released under new numbers that name their first, their
    // delivery closes those gaps (no gap alarm left for an operator).
    wait_for(
        Duration::from_secs(30),
        "the held packages' gaps closed",
        || status(&tb.egress_config).is_some_and(|s| s["gap_seqs_open"] == 0),
    );
    let o = ctl(&["channel", "start", "--config", &config, "e2e"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("is not stopped"), "{}", text(&o));
    ingress.stop();
}

/// `[admin]` (a local sysadmin) and `[admin_api]` on `port` with the
/// server certificate `tls/admin-api.crt` and `ca` for administrators.
fn admin_sections(port: u16, ca: &SiteCa) -> String {
    format!(
        "[admin]\nsysadmin = [\"uid:{SYSADMIN}\"]\n\n[admin_api]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/admin-api.crt\"\nkey = \"tls/admin-api.key\"\nclient_ca = [\"{}\"]\n",
        path_str(&ca.crt())
    )
}

/// The admin plane over HTTPS: the role is the one the client certificate
/// carries, the same gate refuses a role outside its job, certificates
/// without an admin role or from another CA get nothing, and the audit log
/// names the certificate for each request.
#[test]
fn the_admin_api_takes_roles_from_certificates_through_the_same_gate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let ca = SiteCa::init(&root.join("ca"));
    let certs = root.join("admins");
    ca.server(&root.join("ingress/tls"), "admin-api");
    for (name, role) in [
        ("ops-sys", "sysadmin"),
        ("ops-audit", "auditor"),
        ("feed", "pusher"),
    ] {
        ca.client(&certs, name, role);
    }
    SiteCa::init(&root.join("other-ca")).client(&root.join("stranger"), "ops-sys", "sysadmin");
    let audit = root.join("audit-ingress");
    ctl_ok(&[
        "audit",
        "init",
        "--dir",
        path_str(&audit),
        "--verify-key-out",
        path_str(&root.join("ingress.verify")),
    ]);
    let port = free_tcp_port();
    append_config(
        &tb.ingress_config,
        &format!(
            "[audit]\ndir = \"{}\"\nmin_free_bytes_accept = 0\n\n{}",
            path_str(&audit),
            admin_sections(port, &ca)
        ),
    );
    let mut ingress = Daemon::start(&tb.ingress_config);
    ingress.wait_listening(&[port], "admin API listening");
    let call = |dir: &Path, who: Option<&str>, body: &str| {
        curl_https(
            &ca,
            port,
            "/v1/admin",
            who.map(|w| (dir, w)),
            &["--data", body],
        )
    };
    let stop = r#"{"cmd":"channel_stop","channel":"e2e","reason":"portal maintenance"}"#;

    let (code, body) = call(&certs, Some("ops-audit"), stop);
    assert_eq!(code, "403", "an auditor may not stop a channel: {body}");
    assert!(body.contains("ops-audit holds auditor"), "{body}");
    let (code, body) = call(&certs, Some("feed"), r#"{"cmd":"status"}"#);
    assert_eq!(code, "403", "a pusher is no administrator: {body}");
    let (code, _) = call(&certs, None, r#"{"cmd":"status"}"#);
    assert_ne!(code, "200", "no certificate, no answer");
    let (code, _) = call(
        &root.join("stranger"),
        Some("ops-sys"),
        r#"{"cmd":"status"}"#,
    );
    assert_ne!(code, "200", "a certificate from another CA gets nothing");
    let (code, body) = call(&certs, Some("ops-audit"), r#"{"cmd":"status"}"#);
    assert_eq!(code, "200", "status is open to every administrator: {body}");
    let (code, body) = call(&certs, Some("ops-sys"), r#"{"cmd":"nonsense"}"#);
    assert_eq!(code, "400", "{body}");

    let (code, body) = call(&certs, Some("ops-sys"), stop);
    assert_eq!(code, "200", "{body}");
    let (_, body) = call(&certs, Some("ops-audit"), r#"{"cmd":"status"}"#);
    let v: serde_json::Value = serde_json::from_str(&body).expect("status json");
    let stopped = v["stopped_channels"]["e2e"].as_str().unwrap_or("");
    assert!(stopped.contains("cert:ops-sys"), "{v}");
    let (code, body) = call(
        &certs,
        Some("ops-sys"),
        r#"{"cmd":"channel_start","channel":"e2e"}"#,
    );
    assert_eq!(code, "200", "{body}");
    ingress.stop();

    let out = Command::new(ferryctl())
        .args([
            "audit",
            "query",
            "--dir",
            path_str(&audit),
            "--event",
            "admin.action",
            "--json",
        ])
        .output()
        .expect("query");
    let log = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = log.lines().collect();
    let has = |who: &str, outcome: &str, what: &str| {
        lines
            .iter()
            .any(|l| l.contains(who) && l.contains(outcome) && l.contains(what))
    };
    assert!(has("cert:ops-sys", "allowed", "channel_stop"), "{log}");
    assert!(has("cert:ops-audit", "refused", "channel_stop"), "{log}");
    assert!(has("cert:feed", "refused", "status"), "{log}");
    assert!(has("cert:ops-sys", "allowed", "admin_api"), "{log}");
}

/// The two-person rule over the admin API: reviewers are told apart by
/// their certificates, the same reviewer cannot approve twice, a reviewer
/// whose certificate CN pushed the package cannot approve it, and two
/// different reviewers release it for delivery.
#[test]
fn reviewers_approve_over_the_admin_api_by_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let ca = SiteCa::init(&root.join("ca"));
    let certs = root.join("people");
    for name in ["admin-api", "ingest"] {
        ca.server(&root.join("ingress/tls"), name);
    }
    ca.client(&certs, "registry-feed", "pusher");
    for name in ["rev-a", "rev-b"] {
        ca.client(&certs, name, "reviewer");
    }
    // The feed's operator also holds a reviewer certificate, under the
    // same CN as the pushing certificate.
    let own = root.join("own");
    ca.client(&own, "registry-feed", "reviewer");
    std::fs::write(
        root.join("ingress/policy.toml"),
        "version = 1\n\n[policy]\nname = \"api-approvals\"\ntime_zone = \"Asia/Shanghai\"\n\n\
         [identity.feed]\ndescription = \"The feed\"\ncn = \"registry-feed\"\nrole = \"pusher\"\n\n\
         [approval.two-person]\nreviewers = 2\nroles = [\"reviewer\"]\nexpires_after_s = 3600\n\n\
         [profile.open]\ndescription = \"No content rules\"\n\n\
         [channel.release]\ndescription = \"Two approvals\"\ndirection = \"release\"\nlink = \"e2e\"\n\
         destination = \"outbox\"\napproval = \"two-person\"\nprofile = \"open\"\n\n\
         [[rule]]\nid = \"R-push\"\ndescription = \"The feed pushes\"\neffect = \"allow\"\n\
         identities = [\"feed\"]\nchannels = [\"release\"]\n",
    )
    .expect("policy");
    let (api, ingest) = (free_tcp_port(), free_tcp_port());
    append_config(
        &tb.ingress_config,
        &format!(
            "[policy]\nfile = \"policy.toml\"\n\n{}\n{}",
            ingest_section(ingest, &ca, ""),
            admin_sections(api, &ca)
        ),
    );
    let _egress = Daemon::start_ready(&tb.egress_config);
    let mut ingress = Daemon::start(&tb.ingress_config);
    ingress.wait_listening(&[api, ingest], "both APIs listening");
    let data = root.join("notice.csv");
    std::fs::write(&data, "parcel,area\nA-1,10\n").expect("write");
    let (code, body) = curl_https(
        &ca,
        ingest,
        "/v1/channels/release/packages",
        Some((&certs, "registry-feed")),
        &[
            "-H",
            "X-Ferry-File-Name: notice.csv",
            "-H",
            "Content-Type: text/csv",
            "--data-binary",
            &format!("@{}", path_str(&data)),
        ],
    );
    assert_eq!(code, "202", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["state"], "awaiting_approval", "{v}");
    let id = v["package_id"].as_str().expect("id").to_owned();
    let approve = format!(r#"{{"cmd":"approve","package":"{id}","reason":"checked"}}"#);
    let call = |dir: &Path, who: &str| {
        curl_https(
            &ca,
            api,
            "/v1/admin",
            Some((dir, who)),
            &["--data", &approve],
        )
    };

    let (code, body) = call(&certs, "rev-a");
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("awaiting_approval"), "{body}");
    let (code, body) = call(&certs, "rev-a");
    assert_eq!(code, "403", "the same reviewer twice: {body}");
    assert!(body.contains("already approved"), "{body}");
    let (code, body) = call(&own, "registry-feed");
    assert_eq!(code, "403", "the submitter approving its own push: {body}");
    assert!(body.contains("you pushed"), "{body}");
    assert!(
        outbox_files(&tb.outbox).is_empty(),
        "not sent with one approval"
    );
    let (code, body) = call(&certs, "rev-b");
    assert_eq!(code, "200", "{body}");
    wait_for(
        Duration::from_secs(30),
        "delivered after two approvals",
        || outbox_files(&tb.outbox) == vec!["notice.csv".to_string()],
    );
}
