//! Adversarial suite for the admin plane (issue 14, B6, B8, B9): each test
//! attacks one promise the way a careless operator or a hostile
//! administrator would, with the real binaries, curl and unshare.
//!
//! - The two-person rule counts persons: two certificates of one person
//!   (a renewal with the same CN, or two names with one `--person`) never
//!   release a package alone; two persons do.
//! - Requests the admin API answers before its gate (400, 404, 405) are
//!   audited, and refusals name the role the caller holds (`none`), with
//!   the role needed apart.
//! - A caller without the auditor role learns nothing from `audit verify
//!   --via` and gets the documented exit code 3; `selfcheck` and the
//!   control client say what actually happened.
//! - In a user namespace that hides administrators (PrivateUsers=yes,
//!   reproduced with `unshare --user`), ferryd says so loudly.
//!
//! Tests that act as other uids or make namespaces need root and skip
//! loudly otherwise.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const ADMINS_GID: u32 = 64_920;
const SYSADMIN: u32 = 64_921;
const AUDITOR: u32 = 64_922;
const STRANGER: u32 = 64_923;

fn can_act_as_others() -> bool {
    setpriv_or_skip("acting as other uids (setpriv) and namespaces")
}

/// Every record of the log in `dir`, as JSON.
fn records(dir: &Path) -> Vec<serde_json::Value> {
    ctl_ok(&["audit", "query", "--dir", path_str(dir), "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn audit_init(root: &Path) -> (PathBuf, PathBuf) {
    let dir = root.join("audit");
    let key = root.join("audit.verify");
    ctl_ok(&[
        "audit",
        "init",
        "--dir",
        path_str(&dir),
        "--verify-key-out",
        path_str(&key),
    ]);
    (dir, key)
}

/// An ingress side with the ingest API, the admin API and an audit log; a
/// release channel that needs two approvals.
struct ApiSite {
    tb: ferry_daemon::testkit::Testbed,
    ca: SiteCa,
    people: PathBuf,
    api: u16,
    ingest: u16,
    audit: PathBuf,
    ingress: Daemon,
    _egress: Daemon,
}

impl ApiSite {
    fn start(root: &Path, people: &[(&str, &str, Option<&str>)]) -> ApiSite {
        let tb = testbed(root, |_| {});
        let ca = SiteCa::init(&root.join("ca"));
        for name in ["admin-api", "ingest"] {
            ca.server(&root.join("ingress/tls"), name);
        }
        let dir = root.join("people");
        ca.client(&dir, "registry-feed", "pusher");
        for (name, role, person) in people {
            issue(&ca, &dir, name, role, *person).expect("issue");
        }
        let (audit, _) = audit_init(root);
        std::fs::write(
            root.join("ingress/policy.toml"),
            "version = 1\n\n[policy]\nname = \"attack-admin\"\ntime_zone = \"Asia/Shanghai\"\n\n\
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
                "[policy]\nfile = \"policy.toml\"\n\n[audit]\ndir = \"{}\"\nmin_free_bytes_accept = 0\n\n{}\n\
                 [admin]\nsysadmin = [\"uid:{SYSADMIN}\"]\n\n[admin_api]\nlisten = \"127.0.0.1:{api}\"\n\
                 cert = \"tls/admin-api.crt\"\nkey = \"tls/admin-api.key\"\nclient_ca = [\"{}\"]\n",
                path_str(&audit),
                ingest_section(ingest, &ca, ""),
                path_str(&ca.crt())
            ),
        );
        let egress = Daemon::start_ready(&tb.egress_config);
        let mut ingress = Daemon::start(&tb.ingress_config);
        ingress.wait_listening(&[api, ingest], "both APIs listening");
        ApiSite {
            tb,
            ca,
            people: dir,
            api,
            ingest,
            audit,
            ingress,
            _egress: egress,
        }
    }

    /// Pushes a small CSV as the feed; the package id (held for review).
    fn push(&self, name: &str) -> String {
        let data = self.tb.root.join(name);
        std::fs::write(&data, format!("parcel,area\n{name},10\n")).expect("write");
        let (code, body) = curl_https(
            &self.ca,
            self.ingest,
            "/v1/channels/release/packages",
            Some((&self.people, "registry-feed")),
            &[
                "-H",
                &format!("X-Ferry-File-Name: {name}"),
                "-H",
                "Content-Type: text/csv",
                "--data-binary",
                &format!("@{}", path_str(&data)),
            ],
        );
        assert_eq!(code, "202", "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["state"], "awaiting_approval", "{v}");
        v["package_id"].as_str().expect("id").to_owned()
    }

    /// `POST /v1/admin` with `body` as `dir/who`.
    fn admin(&self, dir: &Path, who: &str, extra: &[&str]) -> (String, String) {
        curl_https(&self.ca, self.api, "/v1/admin", Some((dir, who)), extra)
    }

    fn approve(&self, dir: &Path, who: &str, id: &str) -> (String, String) {
        let body = format!(r#"{{"cmd":"approve","package":"{id}","reason":"checked"}}"#);
        self.admin(dir, who, &["--data", &body])
    }
}

/// `ferryctl certs issue-client` with an optional `--person`.
fn issue(
    ca: &SiteCa,
    out: &Path,
    name: &str,
    role: &str,
    person: Option<&str>,
) -> Result<(), String> {
    let mut c = Command::new(ferryctl());
    c.args([
        "certs",
        "issue-client",
        "--ca",
        path_str(&ca.dir),
        "--out",
        path_str(out),
    ])
    .args(["--name", name, "--role", role]);
    if let Some(p) = person {
        c.args(["--person", p]);
    }
    let o = c.output().expect("ferryctl");
    if o.status.success() {
        Ok(())
    } else {
        Err(text(&o))
    }
}

/// Promise (B6): reviewers are persons, not certificates. Two
/// certificates of one person — named apart but issued `--person alice`,
/// or a renewal under the same CN without `--person` (the documented
/// fallback) — count as one reviewer and cannot release a package alone;
/// two persons can. The CA also refuses a second officer role to a person.
#[test]
fn two_certificates_of_one_person_cannot_release_alone_two_persons_can() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let site = ApiSite::start(
        root,
        &[
            ("alice-2025", "reviewer", Some("alice")),
            ("alice-2026", "reviewer", Some("Alice")),
            ("bob", "reviewer", None),
        ],
    );
    // carol's old certificate and its renewal: same CN, two files.
    let (old, new) = (root.join("carol-old"), root.join("carol-new"));
    issue(&site.ca, &old, "carol", "reviewer", None).expect("carol");
    issue(&site.ca, &new, "carol", "reviewer", None).expect("carol renewed");
    // One person, one officer role, at the CA.
    let e = issue(
        &site.ca,
        &site.people,
        "alice-ops",
        "sysadmin",
        Some("alice"),
    )
    .expect_err("alice is a reviewer already");
    assert!(e.contains("one officer role"), "{e}");
    let e = issue(&site.ca, &root.join("x"), "carol", "auditor", None)
        .expect_err("carol (by CN) is a reviewer already");
    assert!(e.contains("already holds the `reviewer` role"), "{e}");

    // alice twice: one approval.
    let p1 = site.push("one.csv");
    let (code, body) = site.approve(&site.people, "alice-2025", &p1);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("awaiting_approval"), "{body}");
    let (code, body) = site.approve(&site.people, "alice-2026", &p1);
    assert_eq!(
        code, "403",
        "alice's second certificate approved again: {body}"
    );
    assert!(body.contains("already approved"), "{body}");
    // carol (another person) completes it.
    let (code, body) = site.approve(&old, "carol", &p1);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"queued\""), "{body}");

    // carol and carol's renewal: one approval; bob completes it.
    let p2 = site.push("two.csv");
    let (code, body) = site.approve(&old, "carol", &p2);
    assert_eq!(code, "200", "{body}");
    let (code, body) = site.approve(&new, "carol", &p2);
    assert_eq!(
        code, "403",
        "carol's renewed certificate approved again: {body}"
    );
    assert!(body.contains("already approved"), "{body}");
    let (code, body) = site.approve(&site.people, "bob", &p2);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"queued\""), "{body}");
    wait_for(Duration::from_secs(30), "both delivered", || {
        outbox_files(&site.tb.outbox) == vec!["one.csv".to_string(), "two.csv".to_string()]
    });
    let audit = site.audit.clone();
    site.ingress.stop();

    // Each allowed approval names its person; the refused ones are there.
    let recs = records(&audit);
    let persons = |pkg: &str, outcome: &str| -> Vec<String> {
        let mut v: Vec<String> = recs
            .iter()
            .filter(|r| {
                r["event"] == "approval.approved" && r["package"] == pkg && r["outcome"] == outcome
            })
            .map(|r| r["details"]["person"].as_str().unwrap_or("-").to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(persons(&p1, "allowed"), ["alice", "carol"], "{recs:?}");
    assert_eq!(persons(&p2, "allowed"), ["bob", "carol"], "{recs:?}");
    assert_eq!(persons(&p1, "refused").len(), 1, "{recs:?}");
    assert_eq!(persons(&p2, "refused").len(), 1, "{recs:?}");
}

/// Promise (B9): every request the admin API answers, not only those the
/// gate decides, is audited: 404 (other path), 405 (other method) and 400
/// (not a known command) leave a refused `admin.action` naming the
/// certificate and the status; a certificate without an administrative
/// role is recorded as holding `none`, with the role needed apart.
#[test]
fn admin_api_requests_answered_before_the_gate_are_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = ApiSite::start(dir.path(), &[("bob", "reviewer", None)]);
    let people = site.people.clone();
    let (code, _) = curl_https(
        &site.ca,
        site.api,
        "/v1/nothing",
        Some((&people, "bob")),
        &[],
    );
    assert_eq!(code, "404");
    let (code, _) = site.admin(&people, "bob", &["-X", "GET"]);
    assert_eq!(code, "405");
    let (code, _) = site.admin(&people, "bob", &["--data", "{\"cmd\":\"format_disk\"}"]);
    assert_eq!(code, "400");
    let (code, _) = site.admin(
        &people,
        "registry-feed",
        &["--data", "{\"cmd\":\"reload_policy\"}"],
    );
    assert_eq!(code, "403");
    // A client with no certificate never completes the handshake: that
    // refusal is counted and audited too (client.refused, plane admin_api).
    let (code, _) = curl_https(&site.ca, site.api, "/v1/admin", None, &[]);
    assert_ne!(code, "200");
    let audit = site.audit.clone();
    site.ingress.stop();

    let recs = records(&audit);
    let refused = |status: &str| {
        recs.iter().any(|r| {
            r["event"] == "admin.action"
                && r["outcome"] == "refused"
                && r["details"]["status"] == status
                && r["details"]["via"] == "admin_api"
                && r["actor"]["id"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("cert:bob "))
                && r["actor"]["role"] == "approver"
        })
    };
    for status in ["404", "405", "400"] {
        assert!(
            refused(status),
            "no audit record for the {status}: {recs:?}"
        );
    }
    assert!(
        recs.iter().any(|r| r["event"] == "admin.action"
            && r["outcome"] == "refused"
            && r["actor"]["id"]
                .as_str()
                .is_some_and(|a| a.starts_with("cert:registry-feed "))
            && r["actor"]["role"] == "none"
            && r["details"]["role_needed"] == "secadmin"),
        "the pusher's refusal must show the role it holds (none): {recs:?}"
    );
    assert!(
        recs.iter().any(|r| r["event"] == "client.refused"
            && r["details"]["plane"] == "admin_api"
            && r["actor"]["id"]
                .as_str()
                .is_some_and(|a| a.starts_with("tls-peer:127.0.0.1:"))),
        "a handshake without a certificate on the admin API must be audited: {recs:?}"
    );
}

/// A control socket in a setgid directory of the administrators' group,
/// an audit log, `[admin]` with a sysadmin and an auditor.
fn socket_site(root: &Path) -> (ferry_daemon::testkit::Testbed, PathBuf, PathBuf, PathBuf) {
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tb = testbed(root, |_| {});
    std::fs::set_permissions(root.join("ingress"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let run = root.join("run");
    std::fs::create_dir(&run).expect("run dir");
    nix::unistd::chown(&run, None, Some(nix::unistd::Gid::from_raw(ADMINS_GID))).expect("chgrp");
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o2750)).expect("chmod");
    let (audit, key) = audit_init(root);
    let socket = run.join("ingress.sock");
    append_config(
        &tb.ingress_config,
        &format!(
            "[audit]\ndir = \"{}\"\nmin_free_bytes_accept = 0\n\n[admin]\nsocket = \"{}\"\nsysadmin = [\"uid:{SYSADMIN}\"]\nauditor = [\"uid:{AUDITOR}\"]\n",
            path_str(&audit),
            path_str(&socket)
        ),
    );
    std::fs::set_permissions(&tb.ingress_config, std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    (tb, audit, key, socket)
}

/// Promise (B9): a caller refused by the admin plane learns nothing it
/// may not see and is told what happened. `audit verify --via` by a
/// non-auditor (root, with no role in `[admin]`) prints nothing of the
/// result and exits 3 (refused), not 1 (tampered); the refusal is recorded
/// under `unix:root (uid 0)` with the role it holds (`none`) and the role
/// it needed; `selfcheck` by a caller without a role says it was refused
/// on the configured socket; a caller outside the socket's group is told
/// permission was denied, not that ferryd is not running.
#[test]
fn refused_callers_learn_nothing_and_are_told_what_happened() {
    if !can_act_as_others() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (tb, audit, key, socket) = socket_site(dir.path());
    let ingress = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(15), "control socket", || {
        socket.exists()
    });
    let config = path_str(&tb.ingress_config).to_owned();

    let o = Command::new(ferryctl())
        .args([
            "audit",
            "verify",
            "--via",
            &config,
            "--dir",
            path_str(&audit),
            "--key",
            path_str(&key),
        ])
        .output()
        .expect("verify");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        o.stdout.is_empty() && !text(&o).contains("INTACT"),
        "a non-auditor saw the result: {}",
        text(&o)
    );
    assert!(text(&o).contains("refused"), "{}", text(&o));
    // The same command without a daemon to ask: could not run, 2.
    let o = Command::new(ferryctl())
        .args([
            "audit",
            "verify",
            "--dir",
            path_str(&audit),
            "--key",
            path_str(&dir.path().join("nokey")),
        ])
        .output()
        .expect("verify");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // selfcheck without a role: refused, on the socket actually asked.
    let o = ctl_as(STRANGER, ADMINS_GID, &["selfcheck", "--config", &config]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("refused this caller") && t.contains(path_str(&socket)),
        "{t}"
    );
    assert!(
        !t.contains("control.sock"),
        "names a socket that does not exist: {t}"
    );
    // Outside the administrators' group the socket cannot be reached.
    let o = ctl_as(STRANGER, STRANGER, &["status", "--config", &config]);
    assert!(!o.status.success());
    assert!(text(&o).contains("permission denied"), "{}", text(&o));
    assert!(!text(&o).contains("is ferryd running"), "{}", text(&o));
    ingress.stop();

    let recs = records(&audit);
    let root_refused = recs.iter().find(|r| {
        r["event"] == "admin.action"
            && r["outcome"] == "refused"
            && r["details"]["request"] == "audit_note"
    });
    let r = root_refused.unwrap_or_else(|| panic!("the refusal is not recorded: {recs:?}"));
    assert_eq!(r["actor"]["id"], "unix:root (uid 0)", "{r}");
    assert_eq!(r["actor"]["role"], "none", "{r}");
    assert_eq!(r["details"]["role_needed"], "auditor", "{r}");
    // (The query above records its own audit.read; the refused verify
    // must not have produced one.)
    assert!(
        recs.iter()
            .all(|r| r["event"] != "audit.read" || r["details"]["command"] != "verify"),
        "a refused use was recorded as a read: {recs:?}"
    );
}

/// Promise (B8): in a user namespace where administrators are not mapped
/// (what `PrivateUsers=yes` did; reproduced with `unshare --user
/// --map-root-user`), a caller shows up as uid 65534. ferryd must say so
/// loudly — an alarm in its status, an error in its log — and the caller
/// is told which uid the daemon saw, instead of being refused silently.
#[test]
fn a_user_namespace_that_hides_administrators_is_named_loudly() {
    if !can_act_as_others() {
        return;
    }
    if Command::new("unshare")
        .args(["--user", "--map-root-user", "true"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        skip("this host does not allow user namespaces");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (tb, _audit, _key, socket) = socket_site(dir.path());
    let mut ingress = Daemon::start_with(
        &tb.ingress_config,
        &["unshare", "--user", "--map-root-user"],
    );
    wait_for(Duration::from_secs(15), "control socket", || {
        assert!(ingress.alive(), "ferryd exited:\n{}", ingress.log_text());
        socket.exists()
    });
    let cfg = ferry_daemon::config::load(&tb.ingress_config).expect("config");
    let status_file = cfg.paths.state_dir.join("status.json");
    let mut alarms = String::new();
    wait_for(Duration::from_secs(15), "the user-namespace alarm", || {
        let v: serde_json::Value = std::fs::read(&status_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        alarms = v["alarms"].to_string();
        alarms.contains("user namespace")
    });
    assert!(
        alarms.contains(&format!("uid:{SYSADMIN} (uid {SYSADMIN})")),
        "{alarms}"
    );
    assert!(
        ingress.log_text().contains("user namespace"),
        "{}",
        ingress.log_text()
    );

    // What the sysadmin sees: refused, and the uid the daemon saw.
    let o = ctl_as(
        SYSADMIN,
        ADMINS_GID,
        &["status", "--config", path_str(&tb.ingress_config)],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("(uid 65534)"), "{}", text(&o));
    ingress.stop();
}
