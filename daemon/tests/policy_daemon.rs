//! The policy enforced by a running ingress `ferryd`: pushes decided by it
//! (over HTTPS with curl, and from the spool), rates, and signed hot reload
//! (a valid signed policy is swapped in; an invalid or unsigned one is
//! refused and the old one stays in force).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn policy_text(spool: &Path, allow_feed: bool, per_minute: u32) -> String {
    let rule = if allow_feed {
        r#"
[[rule]]
id = "R-feed"
description = "The feed pushes CSV"
effect = "allow"
identities = ["feed"]
channels = ["stats"]
names = ["*.csv"]
max_package_bytes = 1000000
"#
    } else {
        ""
    };
    format!(
        r#"version = 1

[policy]
name = "test-site"
time_zone = "Asia/Shanghai"

[identity.feed]
description = "The statistics feed"
cn = "registry-feed"
role = "pusher"
limits = {{ packages_per_minute = {per_minute} }}

[identity.spool]
description = "The spool of this link"
spool = "e2e"

[spool.e2e]
description = "This link's spool"
dir = "{spool}"
channel = "stats"
schedule = "continuous"

[channel.stats]
description = "Statistics"
direction = "import"
link = "e2e"
destination = "outbox"

[[rule]]
id = "R-no-exe"
description = "Nothing executable"
effect = "deny"
identities = ["*"]
channels = ["*"]
names = ["*.exe"]

[[rule]]
id = "R-spool"
description = "The spool sends anything but executables"
effect = "allow"
identities = ["spool"]
channels = ["stats"]
{rule}"#,
        spool = path_str(spool)
    )
}

fn curl_push(
    port: u16,
    ca: &Path,
    clients: &Path,
    who: &str,
    name: &str,
    data: &Path,
) -> (u16, String) {
    curl_push_with(port, ca, clients, who, name, data, &[])
}

/// [`curl_push`] with more curl arguments (`-H …`).
fn curl_push_with(
    port: u16,
    ca: &Path,
    clients: &Path,
    who: &str,
    name: &str,
    data: &Path,
    extra: &[&str],
) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .args(extra)
        .args(["--cacert", path_str(&ca.join("ca.crt"))])
        .arg("--cert")
        .arg(clients.join(format!("{who}.crt")))
        .arg("--key")
        .arg(clients.join(format!("{who}.key")))
        .args(["-H", &format!("X-Ferry-File-Name: {name}")])
        .args(["--data-binary", &format!("@{}", path_str(data))])
        .arg(format!(
            "https://127.0.0.1:{port}/v1/channels/stats/packages"
        ))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn policy_status(cfg: &Path) -> (String, String) {
    let v = status(cfg).unwrap_or_default();
    (
        v["policy_hash"].as_str().unwrap_or_default().to_owned(),
        v["policy_reload"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn running_ferryd_enforces_and_hot_reloads_a_signed_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let ca = root.join("ca");
    let clients = root.join("clients");
    let tls = root.join("ingress/tls");
    SiteCa::init(&ca);
    SiteCa::at(&ca).server(&tls, "ingest");
    SiteCa::at(&ca).client(&clients, "registry-feed", "pusher");
    SiteCa::at(&ca).client(&clients, "someone-else", "pusher");
    let key: PathBuf = root.join("secadmin.key");
    ctl_ok(&["policy", "keygen", path_str(&key)]);
    let public = PathBuf::from(format!("{}.pub", path_str(&key)));
    let public = if public.exists() {
        public
    } else {
        root.join("secadmin.pub")
    };
    assert!(public.exists(), "keygen wrote no public key");
    let policy = root.join("ingress/policy.toml");
    std::fs::write(&policy, policy_text(&tb.spool, true, 2)).expect("policy");
    ctl_ok(&["policy", "sign", path_str(&policy), "--key", path_str(&key)]);

    let port = free_tcp_port();
    append_config(&tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{ca_crt}\"]\ncrl = [\"{crl}\"]\nmin_free_bytes = 0\n\n[policy]\nfile = \"policy.toml\"\nsigners = [\"{public}\"]\n",
            ca_crt = path_str(&ca.join("ca.crt")),
            crl = path_str(&ca.join("ca.crl")),
            public = path_str(&public)
        ));
    let _egress = Daemon::start(&tb.egress_config);
    let ingress = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(15), "ingest listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (hash0, _) = policy_status(&tb.ingress_config);
    assert_eq!(hash0.len(), 64, "status shows the policy hash");

    let data = root.join("data.csv");
    std::fs::write(&data, b"a,b\n1,2\n").expect("write");
    // Allowed by R-feed.
    let (code, body) = curl_push(port, &ca, &clients, "registry-feed", "one.csv", &data);
    assert_eq!(code, 202, "{body}");
    // Forbidden by rule R-no-exe, named in the answer.
    let (code, body) = curl_push(port, &ca, &clients, "registry-feed", "tool.exe", &data);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("R-no-exe"), "{body}");
    // An identity the policy does not know: deny by default.
    let (code, body) = curl_push(port, &ca, &clients, "someone-else", "two.csv", &data);
    assert_eq!(code, 403, "{body}");
    // Two per minute: the third push in the same minute gets 429 (unless
    // the minute turned over between them, then the next one does).
    let (code2, _) = curl_push(port, &ca, &clients, "registry-feed", "two.csv", &data);
    let (code3, body3) = curl_push(port, &ca, &clients, "registry-feed", "three.csv", &data);
    assert!(
        code2 == 429 || code3 == 429,
        "rate limit not enforced: {code2} {code3} {body3}"
    );

    // A spool file is decided too: an executable is moved aside with its reason.
    ferry_daemon::testkit::spool_file(&tb.spool, "bad.exe", b"MZ").expect("spool");
    let rejected = tb.spool.join(".rejected");
    wait_for(Duration::from_secs(10), "spool refusal", || {
        rejected.join("bad.exe").exists() && rejected.join("bad.exe.reason.json").exists()
    });
    let reason = std::fs::read_to_string(rejected.join("bad.exe.reason.json")).expect("reason");
    assert!(reason.contains("R-no-exe"), "{reason}");

    // Hot reload of a valid signed policy that no longer allows the feed.
    std::fs::write(&policy, policy_text(&tb.spool, false, 2)).expect("policy");
    ctl_ok(&["policy", "sign", path_str(&policy), "--key", path_str(&key)]);
    let pid = nix::unistd::Pid::from_raw(ingress.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    wait_for(Duration::from_secs(10), "reload", || {
        let (h, r) = policy_status(&tb.ingress_config);
        h != hash0 && r.starts_with("reloaded")
    });
    // Status shows "reloaded" only after the gate swapped (reload_policy
    // updates it after PolicyGate::reload returned): the new policy is in
    // force now, no time to wait.
    let (hash1, _) = policy_status(&tb.ingress_config);
    let (code, body) = curl_push(port, &ca, &clients, "registry-feed", "four.csv", &data);
    assert_eq!(code, 403, "the new policy is in force: {body}");

    // An unsigned change (signature no longer matches): refused, old kept.
    std::fs::write(&policy, policy_text(&tb.spool, true, 100)).expect("policy");
    let out = ctl(&["policy", "reload", "--config", path_str(&tb.ingress_config)]);
    assert!(!out.status.success(), "a refused reload exits non-zero");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("\"reloaded\": false") && answer.contains("changed after signing"),
        "{answer}"
    );
    let (h, r) = policy_status(&tb.ingress_config);
    assert_eq!(h, hash1);
    assert!(r.starts_with("refused"), "{r}");
    // An invalid file cannot be signed: `policy sign` checks it first, so
    // the signature on disk stays the old one.
    std::fs::write(&policy, "version = 1\n[channel.x]\nbogus_key = 1\n").expect("policy");
    let signed = ctl(&["policy", "sign", path_str(&policy), "--key", path_str(&key)]);
    assert!(!signed.status.success(), "signed an invalid policy");
    assert!(text(&signed).contains("bogus_key"), "{}", text(&signed));
    // A file that is signed (it compiles) but that ferryd cannot load (its
    // content profile names a dirty-word list that is not there): the
    // SIGHUP reload is refused for that reason and the old policy is kept.
    let missing_list = root.join("no-such-words.txt");
    let unloadable = policy_text(&tb.spool, true, 100).replace(
        "destination = \"outbox\"\n",
        "destination = \"outbox\"\nprofile = \"strict\"\n",
    ) + &format!(
        "\n[profile.strict]\ndirty_words = {{ action = \"reject\", lists = [\"{}\"] }}\n",
        path_str(&missing_list)
    );
    std::fs::write(&policy, unloadable).expect("policy");
    ctl_ok(&["policy", "sign", path_str(&policy), "--key", path_str(&key)]);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    // Before this SIGHUP the status already said "refused" (the unsigned
    // change above), so wait for this reload's own reason.
    wait_for(
        Duration::from_secs(10),
        "the SIGHUP reload refused for the missing word list",
        || {
            let (_, r) = policy_status(&tb.ingress_config);
            r.starts_with("refused") && r.contains("no-such-words.txt")
        },
    );
    let (h, _) = policy_status(&tb.ingress_config);
    assert_eq!(h, hash1, "an unloadable policy swapped in");
    let (code, _) = curl_push(port, &ca, &clients, "registry-feed", "five.csv", &data);
    assert_eq!(code, 403, "the last good policy is still in force");
}

/// A spool file put back because it changed while it was taken is decided
/// again when it is taken again, and counted once against its identity's
/// quota. The spool may send 3 packages a day: a first file, a file that
/// grows after its rename (taken, put back at least once, taken again)
/// and a third file. Were the put-back counted, the third would be the
/// fourth charge and be refused.
#[test]
fn a_spool_file_put_back_and_taken_again_is_counted_once_against_its_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let text = policy_text(&tb.spool, false, 100).replace(
        "spool = \"e2e\"\n",
        "spool = \"e2e\"\nlimits = { packages_per_day = 3 }\n",
    );
    assert!(text.contains("packages_per_day = 3"), "{text}");
    std::fs::write(root.join("ingress/policy.toml"), text).expect("policy");
    append_config(&tb.ingress_config, "[policy]\nfile = \"policy.toml\"\n");
    let _egress = Daemon::start(&tb.egress_config);
    let ingress = Daemon::start(&tb.ingress_config);
    ferry_daemon::testkit::spool_file(&tb.spool, "first.csv", b"a\n").expect("spool");
    wait_for(Duration::from_secs(60), "the first file delivered", || {
        outbox_files(&tb.outbox).len() == 1
    });
    // As in link_loopback's put-back test.
    spool_growing_file(&tb.spool, "growing.csv");
    wait_for(Duration::from_secs(120), "the grown file delivered", || {
        outbox_files(&tb.outbox).len() == 2
    });
    let st = status(&tb.ingress_config).expect("status");
    let retakes = st["spool_retakes"].as_u64().unwrap_or(0);
    assert!(retakes >= 1, "the grown file was not put back: {st}");

    ferry_daemon::testkit::spool_file(&tb.spool, "third.csv", b"c\n").expect("spool");
    wait_for(
        Duration::from_secs(60),
        "the third file delivered or refused",
        || outbox_files(&tb.outbox).len() == 3 || tb.spool.join(".rejected/third.csv").exists(),
    );
    assert!(
        tb.outbox.join("third.csv").exists(),
        "the third file was refused after {retakes} put-back(s): {}",
        std::fs::read_to_string(tb.spool.join(".rejected/third.csv.reason.json"))
            .unwrap_or_default()
    );
    // And the quota still holds: a fourth is refused, with its reason.
    ferry_daemon::testkit::spool_file(&tb.spool, "fourth.csv", b"d\n").expect("spool");
    let reason = tb.spool.join(".rejected/fourth.csv.reason.json");
    wait_for(Duration::from_secs(60), "the fourth file refused", || {
        reason.exists()
    });
    let why = std::fs::read_to_string(&reason).expect("reason");
    assert!(
        why.contains("packages_per_day") || why.contains("quota") || why.contains("limit"),
        "{why}"
    );
    drop(ingress);
}

/// A push that fails after its policy decision (here: its body does not
/// match the digest it declared) is not counted against the sender's
/// quota: the feed may push 3 packages a day, four pushes with a wrong
/// digest fail (400, nothing queued), and three good pushes are still
/// accepted; the fourth good one is refused for the quota. Were the
/// failed pushes counted, the second good one would be refused.
#[test]
fn https_pushes_that_fail_after_the_decision_do_not_use_up_the_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let ca = root.join("ca");
    let clients = root.join("clients");
    SiteCa::init(&ca);
    SiteCa::at(&ca).server(&root.join("ingress/tls"), "ingest");
    SiteCa::at(&ca).client(&clients, "registry-feed", "pusher");
    let text = policy_text(&tb.spool, true, 100).replace(
        "limits = { packages_per_minute = 100 }",
        "limits = { packages_per_day = 3 }",
    );
    assert!(text.contains("packages_per_day = 3"), "{text}");
    std::fs::write(root.join("ingress/policy.toml"), text).expect("policy");
    let port = free_tcp_port();
    append_config(&tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{}\"]\nmin_free_bytes = 0\n\n[policy]\nfile = \"policy.toml\"\n",
        path_str(&ca.join("ca.crt"))
    ));
    let _egress = Daemon::start(&tb.egress_config);
    let mut ingress = Daemon::start(&tb.ingress_config);
    ingress.wait_listening(&[port], "ingest listening");
    let data = root.join("data.csv");
    std::fs::write(&data, b"a,b\n1,2\n").expect("write");
    let wrong = format!("X-Ferry-Digest: sha256={}", "00".repeat(32));
    for i in 0..4 {
        let (code, body) = curl_push_with(
            port,
            &ca,
            &clients,
            "registry-feed",
            &format!("bad{i}.csv"),
            &data,
            &["-H", &wrong],
        );
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("digest mismatch"), "{body}");
    }
    for name in ["one.csv", "two.csv", "three.csv"] {
        let (code, body) = curl_push(port, &ca, &clients, "registry-feed", name, &data);
        assert_eq!(code, 202, "{name}: {body}");
    }
    let (code, body) = curl_push(port, &ca, &clients, "registry-feed", "four.csv", &data);
    assert_eq!(code, 429, "the quota still holds: {body}");
    assert!(
        body.contains("quota-exceeded") && body.contains("\"limit\":3"),
        "{body}"
    );
}

/// A granted push's policy decision is appended without its own wait for
/// the disk (the ingest runtime would stall every connection on it); the
/// package's record, flushed before the 202, must carry it to disk. Attack:
/// answered pushes, then SIGKILL with no chance to flush anything; every
/// 202 must have its `policy.decided` record, before its `package.pushed`.
#[test]
fn every_push_answered_202_has_its_policy_decision_on_disk_through_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let audit = with_audit(root, &tb.ingress_config, "ingress");
    let ca = root.join("ca");
    let clients = root.join("clients");
    SiteCa::init(&ca);
    SiteCa::at(&ca).server(&root.join("ingress/tls"), "ingest");
    SiteCa::at(&ca).client(&clients, "registry-feed", "pusher");
    std::fs::write(
        root.join("ingress/policy.toml"),
        policy_text(&tb.spool, true, 1000),
    )
    .expect("policy");
    let port = free_tcp_port();
    append_config(&tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{}\"]\nmin_free_bytes = 0\n\n[policy]\nfile = \"policy.toml\"\n",
        path_str(&ca.join("ca.crt"))
    ));
    let mut ingress = Daemon::start(&tb.ingress_config);
    ingress.wait_listening(&[port], "ingest listening");
    let data = root.join("data.csv");
    std::fs::write(&data, b"a,b\n1,2\n").expect("write");
    let names: Vec<String> = (0..6).map(|i| format!("push-{i}.csv")).collect();
    for name in &names {
        let (code, body) = curl_push(port, &ca, &clients, "registry-feed", name, &data);
        assert_eq!(code, 202, "{name}: {body}");
    }
    ingress.kill9();
    let decided = audit_records(&audit, "policy.decided");
    let pushed = audit_records(&audit, "package.pushed");
    for name in &names {
        let seq_of = |records: &[serde_json::Value]| {
            records
                .iter()
                .find(|r| r["details"]["file_name"] == name.as_str())
                .and_then(|r| r["seq"].as_u64())
        };
        let d = seq_of(&decided)
            .unwrap_or_else(|| panic!("no decision on disk for {name}: {decided:?}"));
        let p = seq_of(&pushed).unwrap_or_else(|| panic!("no push record for {name}: {pushed:?}"));
        assert!(d < p, "{name}: decision {d} after its push record {p}");
    }
}
