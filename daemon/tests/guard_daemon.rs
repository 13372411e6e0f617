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

/// The profile of the first test: detectors only.
const STRICT: &str = r#"[profile.strict]
description = "What may leave"
allowed_types = ["text/csv", "text/plain"]
dirty_words = { lists = ["WORDS"], action = "reject" }
pii = { detectors = ["prc_id", "mobile"], action = "mask" }
"#;

/// A de-identifying profile: owners pseudonymized, phones masked, dates
/// to the month, remarks dropped, and every column named.
const DEID: &str = r#"[profile.strict]
description = "Parcel tables for open data"
allowed_types = ["text/csv"]
dirty_words = { lists = ["WORDS"], action = "reject" }
pii = { action = "mask" }
require_rules = true
columns = [
  { match = ["parcel"], action = "keep" },
  { match = ["owner", "owner_id"], action = "pseudonymize" },
  { match = ["phone"], action = "mask", keep_prefix = 3, keep_suffix = 4 },
  { match = ["registered"], action = "generalize", to = "month" },
  { match = ["remark"], action = "drop" },
]
"#;

fn policy(spool: &Path, words: &Path, profile: &str) -> String {
    let profile = profile.replace("WORDS", path_str(words));
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

{profile}
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

/// Two real `ferryd`, both inspecting under `policy_text`, each with its
/// own audit log; the ingress side serves HTTPS to `registry-feed` and
/// gets `ingress_policy_extra` in its `[policy]` section.
struct Site {
    _t: tempfile::TempDir,
    root: PathBuf,
    tb: ferry_daemon::testkit::Testbed,
    ca: PathBuf,
    clients: PathBuf,
    audits: Vec<PathBuf>,
    port: u16,
    words: PathBuf,
}

impl Site {
    fn new() -> Site {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().to_path_buf();
        let tb = testbed(&root, |_| {});
        let ca = root.join("ca");
        let clients = root.join("clients");
        SiteCa::init(&ca);
        SiteCa::at(&ca).server(&root.join("ingress/tls"), "ingest");
        SiteCa::at(&ca).client(&clients, "registry-feed", "pusher");
        let words = root.join("words/classified.txt");
        std::fs::create_dir_all(words.parent().expect("dir")).expect("mkdir");
        std::fs::write(&words, "秘密\n绝密\n").expect("words");
        Site {
            _t: t,
            root,
            tb,
            ca,
            clients,
            audits: Vec::new(),
            port: free_tcp_port(),
            words,
        }
    }

    /// Writes the policy and the config sections, starts both daemons.
    fn start(&mut self, policy_text: &str, ingress_policy_extra: &str) -> (Daemon, Daemon) {
        let root = self.root.clone();
        for (side, config, extra) in [
            ("ingress", &self.tb.ingress_config, ingress_policy_extra),
            ("egress", &self.tb.egress_config, ""),
        ] {
            std::fs::write(root.join(side).join("policy.toml"), policy_text).expect("policy");
            let dir = root.join(format!("audit-{side}"));
            ctl_ok(&[
                "audit",
                "init",
                "--dir",
                path_str(&dir),
                "--verify-key-out",
                path_str(&root.join(format!("{side}.verify"))),
            ]);
            append_config(config, &format!("[policy]\nfile = \"policy.toml\"\n{extra}\n[audit]\ndir = \"{}\"\nmin_free_bytes_accept = 0\n",
                    path_str(&dir)
                ));
            self.audits.push(dir);
        }
        append_config(&self.tb.ingress_config, &format!("[ingest]\nlisten = \"127.0.0.1:{}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{}\"]\nmin_free_bytes = 0\n",
                self.port,
                path_str(&self.ca.join("ca.crt"))
            ));
        let egress = Daemon::start(&self.tb.egress_config);
        let mut ingress = Daemon::start(&self.tb.ingress_config);
        ingress.wait_listening(&[self.port], "ingest listening");
        (ingress, egress)
    }

    fn push(&self, name: &str, ty: &str, data: &Path) -> (u16, String) {
        push(self.port, &self.ca, &self.clients, name, ty, data)
    }

    /// Every record of `event` in the audit log at `dir`, and the whole
    /// log exported.
    fn audit(&self, dir: &Path, event: &str) -> (String, String) {
        let out = ctl_ok(&[
            "audit",
            "query",
            "--dir",
            path_str(dir),
            "--event",
            event,
            "--json",
        ]);
        (out, ctl_ok(&["audit", "export", "--dir", path_str(dir)]))
    }
}

#[test]
fn both_sides_inspect_mask_and_refuse_and_audit_without_values() {
    let mut site = Site::new();
    let policy_text = policy(&site.tb.spool, &site.words, STRICT);
    let (ingress, egress) = site.start(&policy_text, "");
    let (root, tb) = (site.root.clone(), &site.tb);

    // Clean: crosses unchanged, both inspections pass.
    let clean = root.join("clean.csv");
    let clean_bytes = "parcel,area_m2,county\nA-001,1200.5,Xinjian\nA-002,88.0,Anyi\n";
    std::fs::write(&clean, clean_bytes).expect("write");
    let (code, body) = site.push("clean.csv", "text/csv", &clean);
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
    let (code, body) = site.push("owners.csv", "text/csv", &owners);
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("\"guard\":\"masked\""), "{body}");

    // Marked 秘密 with a space and a full-width letter inside: refused.
    let secret = root.join("memo.txt");
    std::fs::write(&secret, "会议纪要 秘 密 ★ 第三季度\n").expect("write");
    let (code, body) = site.push("memo.txt", "text/plain", &secret);
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
        (&site.audits[0], "guard.inspected", 4),
        (&site.audits[1], "guard.reinspected", 2),
    ] {
        let (out, all) = site.audit(dir, event);
        assert!(out.lines().count() >= min, "{event}: {out}");
        for value in [id.as_str(), "13812345678", "秘密", "绝密"] {
            assert!(!all.contains(value), "{value} is in the audit log");
        }
    }
}

/// A parcel table: (owner, owner_id, phone) per row, with a registration
/// date and a remark that repeats the phone number.
fn parcel_table(rows: &[(&str, &str, &str)]) -> String {
    let mut s = String::from("parcel,owner,owner_id,phone,registered,remark\n");
    for (i, (owner, id, phone)) in rows.iter().enumerate() {
        s.push_str(&format!(
            "420111GB{i:05},{owner},{id},{phone},2021-03-{:02},witness {phone}\n",
            i + 1
        ));
    }
    s
}

/// Promise: a table released through two real `ferryd` is de-identified
/// by its column rules on the ingress side, passes the egress side's
/// re-inspection without a key, carries the same pseudonym for the same
/// owner in two packages, a new one after the security administrator
/// rotates the key and reloads, and the audit logs record the techniques
/// and key epochs without a value.
#[test]
fn deidentified_tables_cross_with_stable_pseudonyms_until_the_key_rotates() {
    let mut site = Site::new();
    let keys = site.root.join("pseudonym-keys");
    ctl_ok(&["keys", "pseudonym", "rotate", "--dir", path_str(&keys)]);
    let policy_text = policy(&site.tb.spool, &site.words, DEID);
    let (ingress, egress) = site.start(
        &policy_text,
        &format!("pseudonym_keys = \"{}\"\n", path_str(&keys)),
    );
    let zhang = ("张伟", prc_id("42010219800101123"), "13812345678");
    let wang = ("王芳", prc_id("42010219900505456"), "13998765432");
    let rows = |who: &[&(&str, String, &str)]| -> String {
        let r: Vec<(&str, &str, &str)> = who.iter().map(|(a, b, c)| (*a, b.as_str(), *c)).collect();
        parcel_table(&r)
    };
    let send = |name: &str, text: &str| {
        let f = site.root.join(name);
        std::fs::write(&f, text).expect("write");
        let (code, body) = site.push(name, "text/csv", &f);
        assert_eq!(code, 202, "{body}");
        assert!(body.contains("\"guard\":\"masked\""), "{body}");
    };
    send("parcels-a.csv", &rows(&[&zhang, &wang]));
    send("parcels-b.csv", &rows(&[&wang, &zhang, &zhang]));
    let tb = &site.tb;
    wait_for(Duration::from_secs(30), "two deliveries", || {
        outbox_files(&tb.outbox).len() == 2
    });
    // owner_id column → pseudonym, by the owner's identity number.
    let tokens = |name: &str| -> Vec<(String, String)> {
        let text = std::fs::read_to_string(tb.outbox.join(name)).expect("delivered");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("parcel,owner,owner_id,phone,registered"));
        lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                assert_eq!(f.len(), 5, "{l}");
                assert!(f[3].contains("****"), "{l}");
                assert_eq!(f[4], "2021-03", "{l}");
                (f[1].to_string(), f[2].to_string())
            })
            .collect()
    };
    let a = tokens("parcels-a.csv");
    let b = tokens("parcels-b.csv");
    assert!(
        a[0].1.starts_with("p1-") && a[0].0.starts_with("p1-"),
        "{a:?}"
    );
    assert_eq!(a[0], b[1], "the same owner, the same pseudonym");
    assert_eq!(a[0], b[2]);
    assert_eq!(a[1], b[0]);
    assert_ne!(a[0], a[1]);
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tb.outbox.join("parcels-a.csv.ferry.json")).expect("sidecar"),
    )
    .expect("json");
    assert_eq!(side["ingress_guard"]["verdict"], "masked", "{side}");
    assert_eq!(side["egress_guard"]["verdict"], "pass", "{side}");

    // The security administrator rotates; a reload makes ferryd use it.
    ctl_ok(&["keys", "pseudonym", "rotate", "--dir", path_str(&keys)]);
    ctl_ok(&["policy", "reload", "--config", path_str(&tb.ingress_config)]);
    send("parcels-c.csv", &rows(&[&zhang]));
    wait_for(Duration::from_secs(30), "third delivery", || {
        outbox_files(&tb.outbox).len() == 3
    });
    let c = tokens("parcels-c.csv");
    assert!(c[0].1.starts_with("p2-"), "{c:?}");
    assert_ne!(c[0].1[3..], a[0].1[3..], "rotation changes the pseudonym");
    ingress.stop();
    egress.stop();

    let (inspected, all) = site.audit(&site.audits[0], "guard.inspected");
    assert!(inspected.contains("deidentification"), "{inspected}");
    assert!(
        inspected.contains("key_epoch\\\":1") || inspected.contains("key_epoch\":1"),
        "{inspected}"
    );
    assert!(
        inspected.contains("key_epoch\\\":2") || inspected.contains("key_epoch\":2"),
        "{inspected}"
    );
    let (_, egress_all) = site.audit(&site.audits[1], "guard.reinspected");
    for value in [
        zhang.0,
        zhang.1.as_str(),
        zhang.2,
        wang.0,
        wang.1.as_str(),
        wang.2,
    ] {
        assert!(!all.contains(value), "{value} is in the ingress audit log");
        assert!(
            !egress_all.contains(value),
            "{value} is in the egress audit log"
        );
    }
}

/// A profile that strips image metadata (docs/guard.md, "Disarm").
const PHOTOS: &str = r#"[profile.strict]
description = "Parcel photographs"
allowed_types = ["image/jpeg"]
disarm = "strip"
"#;

#[test]
fn a_photo_crosses_both_sides_without_its_gps_position() {
    for tool in ["cjpeg", "exiftool"] {
        if Command::new(tool).arg("-ver").output().is_err() {
            skip(&format!(
                "`{tool}` not found (Debian: libjpeg-turbo-progs, libimage-exiftool-perl)"
            ));
            return;
        }
    }
    let mut site = Site::new();
    let policy_text = policy(&site.tb.spool, &site.words, PHOTOS);
    let (ingress, egress) = site.start(&policy_text, "");
    let root = site.root.clone();

    // A real photo, as a phone would tag it.
    let ppm = root.join("raw.ppm");
    let mut raw = b"P6\n32 32\n255\n".to_vec();
    raw.extend((0..32 * 32 * 3).map(|i| (i % 251) as u8));
    std::fs::write(&ppm, raw).expect("ppm");
    let jpeg = Command::new("cjpeg").arg(&ppm).output().expect("cjpeg");
    assert!(jpeg.status.success());
    let photo = root.join("parcel.jpg");
    std::fs::write(&photo, &jpeg.stdout).expect("jpeg");
    let tag = Command::new("exiftool")
        .args([
            "-q",
            "-overwrite_original",
            "-GPSLatitude=28.6829",
            "-GPSLatitudeRef=N",
        ])
        .args([
            "-GPSLongitude=115.8582",
            "-GPSLongitudeRef=E",
            "-Artist=Surveyor Wang",
        ])
        .arg(&photo)
        .output()
        .expect("exiftool");
    assert!(tag.status.success(), "{tag:?}");
    let original = std::fs::read(&photo).expect("read");

    let (code, body) = site.push("parcel.jpg", "image/jpeg", &photo);
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("\"guard\":\"masked\""), "{body}");
    let tb = &site.tb;
    wait_for(Duration::from_secs(30), "the photo delivered", || {
        outbox_files(&tb.outbox) == vec!["parcel.jpg".to_string()]
    });
    let delivered = tb.outbox.join("parcel.jpg");
    let crossed = std::fs::read(&delivered).expect("read");
    assert!(crossed.len() < original.len());
    let tags = Command::new("exiftool")
        .args(["-j", "-G", "-a"])
        .arg(&delivered)
        .output()
        .expect("exiftool");
    let tags = String::from_utf8_lossy(&tags.stdout);
    for t in ["GPS", "Artist", "Wang"] {
        assert!(!tags.contains(t), "{t} crossed: {tags}");
    }
    // The egress side re-inspected the stripped photo: nothing left.
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tb.outbox.join("parcel.jpg.ferry.json")).expect("sidecar"),
    )
    .expect("json");
    assert_eq!(side["ingress_guard"]["verdict"], "masked", "{side}");
    assert_eq!(side["egress_guard"]["verdict"], "pass", "{side}");
    // The ingress audit names what was stripped, never the position
    // (read once the daemons have stopped: one writer at a time).
    drop((ingress, egress));
    let (records, export) = site.audit(&site.audits[0], "guard.inspected");
    assert!(records.contains("image_gps"), "{records}");
    assert!(
        records.contains("the stripped copy was inspected again"),
        "{records}"
    );
    for secret in ["28.68", "115.85", "Wang"] {
        assert!(!export.contains(secret), "{secret} in the audit log");
    }
}
