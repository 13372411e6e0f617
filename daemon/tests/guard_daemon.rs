//! The content guard inside real `ferryd` processes, on both sides: a
//! clean CSV crosses unchanged, a CSV with an identity number crosses
//! masked, a text marked 秘密 is refused with 403 and never delivered, a
//! refused spool file is set aside with its reason, and the audit logs of
//! both sides record every inspection without the sensitive value.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A valid (fake) PRC resident identity number: region, birth date,
/// sequence, and the ISO 7064 MOD 11-2 check character.
fn prc_id(body17: &str) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body17
        .chars()
        .zip(W)
        .map(|(c, w)| c.to_digit(10).expect("digit") * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body17}{check}")
}

fn policy(spool: &Path, words: &Path) -> String {
    format!(
        r#"version = 1

[policy]
name = "guard-test"
time_zone = "Asia/Shanghai"

[identity.feed]
description = "The registry feed"
cn = "registry-feed"
role = "pusher"

[identity.spool]
description = "This link's spool"
spool = "e2e"

[spool.e2e]
description = "The spool"
dir = "{spool}"
channel = "release"
schedule = "continuous"

[profile.strict]
description = "What may leave"
allowed_types = ["text/csv", "text/plain"]
dirty_words = {{ lists = ["{words}"], action = "reject" }}
pii = {{ detectors = ["prc_id", "mobile"], action = "mask", keep_prefix = 6, keep_suffix = 4 }}

[channel.release]
description = "Release, inspected on both sides"
direction = "import"
link = "e2e"
destination = "outbox"
profile = "strict"
egress_profile = "strict"

[[rule]]
id = "R-push"
description = "The feed and the spool push"
effect = "allow"
identities = ["feed", "spool"]
channels = ["release"]
"#,
        spool = path_str(spool),
        words = path_str(words)
    )
}

fn push(port: u16, ca: &Path, clients: &Path, name: &str, ty: &str, data: &Path) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .args(["--cacert", path_str(&ca.join("ca.crt"))])
        .arg("--cert")
        .arg(clients.join("registry-feed.crt"))
        .arg("--key")
        .arg(clients.join("registry-feed.key"))
        .args(["-H", &format!("X-Ferry-File-Name: {name}")])
        .args(["-H", &format!("Content-Type: {ty}")])
        .args(["--data-binary", &format!("@{}", path_str(data))])
        .arg(format!(
            "https://127.0.0.1:{port}/v1/channels/release/packages"
        ))
        .output()
        .expect("curl");
    let t = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = t.rsplit_once('\n').unwrap_or(("", ""));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn both_sides_inspect_mask_and_refuse_and_audit_without_values() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    let tb = testbed(root, |_| {});
    let ca = root.join("ca");
    let clients = root.join("clients");
    SiteCa::init(&ca);
    SiteCa::at(&ca).server(&root.join("ingress/tls"), "ingest");
    SiteCa::at(&ca).client(&clients, "registry-feed", "pusher");
    let words = root.join("words/classified.txt");
    std::fs::create_dir_all(words.parent().expect("dir")).expect("mkdir");
    std::fs::write(&words, "秘密\n绝密\n").expect("words");
    let policy_text = policy(&tb.spool, &words);
    let mut audits: Vec<PathBuf> = Vec::new();
    for (side, config) in [
        ("ingress", &tb.ingress_config),
        ("egress", &tb.egress_config),
    ] {
        std::fs::write(root.join(side).join("policy.toml"), &policy_text).expect("policy");
        let dir = root.join(format!("audit-{side}"));
        ctl_ok(&[
            "audit",
            "init",
            "--dir",
            path_str(&dir),
            "--verify-key-out",
            path_str(&root.join(format!("{side}.verify"))),
        ]);
        append_config(config, &format!("[policy]\nfile = \"policy.toml\"\n\n[audit]\ndir = \"{}\"\nmin_free_bytes_accept = 0\n",
                path_str(&dir)
            ));
        audits.push(dir);
    }
    let port = free_tcp_port();
    append_config(&tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{}\"]\nmin_free_bytes = 0\n",
            path_str(&ca.join("ca.crt"))
        ));
    let egress = Daemon::start(&tb.egress_config);
    let mut ingress = Daemon::start(&tb.ingress_config);
    ingress.wait_listening(&[port], "ingest listening");

    // Clean: crosses unchanged, both inspections pass.
    let clean = root.join("clean.csv");
    let clean_bytes = "parcel,area_m2,county\nA-001,1200.5,Xinjian\nA-002,88.0,Anyi\n";
    std::fs::write(&clean, clean_bytes).expect("write");
    let (code, body) = push(port, &ca, &clients, "clean.csv", "text/csv", &clean);
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("\"guard\":\"pass\""), "{body}");

    // An identity number and a mobile number: masked (first 6, last 4).
    let id = prc_id("36010219800101123");
    let owners = root.join("owners.csv");
    std::fs::write(
        &owners,
        format!("parcel,owner_id,phone\nA-001,{id},13812345678\n"),
    )
    .expect("write");
    let (code, body) = push(port, &ca, &clients, "owners.csv", "text/csv", &owners);
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("\"guard\":\"masked\""), "{body}");

    // Marked 秘密 with a space and a full-width letter inside: refused.
    let secret = root.join("memo.txt");
    std::fs::write(&secret, "会议纪要 秘 密 ★ 第三季度\n").expect("write");
    let (code, body) = push(port, &ca, &clients, "memo.txt", "text/plain", &secret);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("dirty_word"), "{body}");
    assert!(
        !body.contains("秘密"),
        "the answer repeats the word: {body}"
    );

    // A spool file with a dirty word is set aside with the guard's reason.
    ferry_daemon::testkit::spool_file(&tb.spool, "note.txt", "绝密文件\n".as_bytes())
        .expect("spool");

    wait_for(Duration::from_secs(30), "two deliveries", || {
        outbox_files(&tb.outbox) == vec!["clean.csv".to_string(), "owners.csv".to_string()]
    });
    assert_eq!(
        std::fs::read_to_string(tb.outbox.join("clean.csv")).expect("read"),
        clean_bytes,
        "clean data passes unchanged"
    );
    let masked = std::fs::read_to_string(tb.outbox.join("owners.csv")).expect("read");
    assert!(!masked.contains(&id), "identity number crossed: {masked}");
    assert!(!masked.contains("13812345678"), "phone crossed: {masked}");
    assert!(
        masked.contains(&id[..6]) && masked.contains(&id[14..]),
        "{masked}"
    );
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tb.outbox.join("clean.csv.ferry.json")).expect("sidecar"),
    )
    .expect("json");
    assert_eq!(side["egress_guard"]["verdict"], "pass", "{side}");
    // The manifest carries the ingress inspection, signed: clean data is
    // unchanged (before = after = the delivered bytes' SHA-256).
    let sha = |b: &[u8]| hex::encode(ring::digest::digest(&ring::digest::SHA256, b));
    assert_eq!(side["ingress_guard"]["verdict"], "pass", "{side}");
    assert_eq!(side["ingress_guard"]["profile"], "strict", "{side}");
    assert_eq!(
        side["ingress_guard"]["sha256_before"],
        sha(clean_bytes.as_bytes())
    );
    assert_eq!(
        side["ingress_guard"]["sha256_after"],
        sha(clean_bytes.as_bytes())
    );
    let oside: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tb.outbox.join("owners.csv.ferry.json")).expect("sidecar"),
    )
    .expect("json");
    let original = std::fs::read(&owners).expect("read");
    assert_eq!(oside["ingress_guard"]["verdict"], "masked", "{oside}");
    assert_eq!(
        oside["ingress_guard"]["sha256_before"],
        sha(&original),
        "{oside}"
    );
    assert_eq!(
        oside["ingress_guard"]["sha256_after"],
        sha(masked.as_bytes()),
        "{oside}"
    );
    assert_eq!(
        side["egress_guard"]["sha256_before"], side["egress_guard"]["sha256_after"],
        "{side}"
    );
    wait_for(Duration::from_secs(10), "spool refusal", || {
        tb.spool.join(".rejected/note.txt.reason.json").exists()
    });
    let reason =
        std::fs::read_to_string(tb.spool.join(".rejected/note.txt.reason.json")).expect("reason");
    assert!(reason.contains("dirty_word"), "{reason}");
    assert!(
        !reason.contains("绝密"),
        "the reason repeats the word: {reason}"
    );
    assert!(!outbox_files(&tb.outbox).contains(&"note.txt".to_string()));

    // Both refusals (the 403 push and the spool file) are counted, in the
    // total and for the channel.
    let st = status(&tb.ingress_config).expect("status");
    assert_eq!(st["rejected"], 2, "{st}");
    assert_eq!(st["channels"]["release"]["rejected"], 2, "{st}");
    assert_eq!(st["channels"]["release"]["accepted"], 2, "{st}");
    ingress.stop();
    egress.stop();
    // Both sides recorded the inspections; no value appears in either log.
    for (dir, event, min) in [
        (&audits[0], "guard.inspected", 4),
        (&audits[1], "guard.reinspected", 2),
    ] {
        let out = ctl_ok(&[
            "audit",
            "query",
            "--dir",
            path_str(dir),
            "--event",
            event,
            "--json",
        ]);
        assert!(out.lines().count() >= min, "{event}: {out}");
        let all = ctl_ok(&["audit", "export", "--dir", path_str(dir)]);
        for value in [id.as_str(), "13812345678", "秘密", "绝密"] {
            assert!(!all.contains(value), "{value} is in the audit log");
        }
    }
}
