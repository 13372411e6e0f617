//! Bundles between two real daemons: small packages queued one after
//! another cross as bundles, and each is still a package of its own —
//! delivered exactly once, whole, with its own sidecar, ledger entry and
//! audit record — through kill -9 of either side mid-transfer.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Small files spooled per test: enough for several bundles at the
/// configured `bundle_max_packages`.
const FILES: u64 = 300;
const SIZE: usize = 1000;

/// Sidecars in the outbox: file name to (package id, bundle id if it
/// crossed in one).
fn sidecars(outbox: &Path) -> BTreeMap<String, (String, Option<String>)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(outbox).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(file) = name.strip_suffix(".ferry.json") else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let Ok(text) = std::fs::read(e.path()) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        let id = v["package_id"].as_str().unwrap_or_default().to_owned();
        let bundle = v["bundle"]["id"].as_str().map(str::to_owned);
        out.insert(file.to_owned(), (id, bundle));
    }
    out
}

fn counter(config: &Path, key: &str) -> u64 {
    status(config)
        .and_then(|s| s[key].as_u64())
        .unwrap_or_default()
}

struct Bed {
    _dir: tempfile::TempDir,
    tb: ferry_daemon::testkit::Testbed,
    egress_audit: std::path::PathBuf,
    files: BTreeMap<String, Vec<u8>>,
}

/// A link paced to 150 kB/s (a 32-package bundle takes about a quarter
/// of a second, so a backlog builds and bundles are in flight when a
/// daemon is killed), bundles of at most 32, and the self-healing
/// re-send after 3 s (what brings a bundle the egress lost in its crash).
fn bed(suite: ferry_keys::Suite) -> Bed {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |o| {
        o.rate_bytes_per_s = 150_000;
        o.suite = suite;
    });
    link_keys(
        &tb.ingress_config,
        "bundle_max_packages = 32\nheal_resend_after_ms = 3000",
    );
    let egress_audit = with_audit(dir.path(), &tb.egress_config, "egress");
    let files = (0..FILES)
        .map(|i| (format!("p{i:04}.csv"), content(700 + i, SIZE)))
        .collect();
    Bed {
        _dir: dir,
        tb,
        egress_audit,
        files,
    }
}

fn spool_all(b: &Bed) {
    for (name, data) in &b.files {
        ferry_daemon::testkit::spool_file(&b.tb.spool, name, data).expect("spool");
    }
}

/// Some delivered, not all: the kill lands mid-transfer.
fn wait_part_delivered(b: &Bed) {
    wait_for(
        Duration::from_secs(60),
        "a first bundle delivered, the rest still to come",
        || counter(&b.tb.egress_config, "bundles_received") >= 1,
    );
    let n = sidecars(&b.tb.outbox).len();
    assert!(
        n < b.files.len(),
        "all {n} delivered before the kill: the test needs a backlog"
    );
}

/// Every file delivered once, bit-exact, under one package id, with one
/// `package.delivered` audit record; most of them in bundles. Stops the
/// egress daemon to read its audit log (one writer at a time).
fn assert_each_exactly_once(b: &Bed, egress: Daemon) {
    wait_for(Duration::from_secs(120), "every file delivered", || {
        sidecars(&b.tb.outbox).len() >= b.files.len()
    });
    // A deliberate window in which a second delivery (a heal re-send of
    // a bundle already delivered) would show.
    std::thread::sleep(Duration::from_secs(4));
    let seen = sidecars(&b.tb.outbox);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        b.files.keys().collect::<Vec<_>>(),
        "each file delivered under its own name, none twice (a second copy would be name.1.csv)"
    );
    for (name, data) in &b.files {
        let got = std::fs::read(b.tb.outbox.join(name)).expect("read");
        assert!(&got == data, "{name} differs");
    }
    let bundled = seen.values().filter(|(_, bundle)| bundle.is_some()).count();
    assert!(
        bundled * 2 > b.files.len(),
        "only {bundled} of {} crossed in a bundle",
        b.files.len()
    );
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for (id, _) in seen.values() {
        *ids.entry(id.clone()).or_default() += 1;
    }
    assert_eq!(ids.len(), b.files.len(), "one package id per file");
    egress.stop();
    let mut audited: BTreeMap<String, usize> = BTreeMap::new();
    for r in audit_records(&b.egress_audit, "package.delivered") {
        if let Some(p) = r["package"].as_str() {
            *audited.entry(p.to_owned()).or_default() += 1;
        }
    }
    for id in ids.keys() {
        assert_eq!(
            audited.get(id),
            Some(&1),
            "package {id}: one package.delivered record"
        );
    }
    assert_eq!(audited.len(), ids.len(), "no record for anything else");
    assert!(
        std::fs::read_dir(b.tb.outbox.join(".staging"))
            .map(|mut r| r.next().is_none())
            .unwrap_or(true),
        "nothing left in staging"
    );
}

/// Which daemon a crash test kills.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Ingress,
    Egress,
}

/// 300 small files spooled, `side` killed with SIGKILL once a first
/// bundle is delivered and restarted; then a second copy of something
/// must have arrived and been suppressed (the self-healing re-send brings
/// again what was delivered before the kill, and what an ingress kill
/// interrupted is sent again), so the exactly-once check is attacked, not
/// vacuous.
fn crash_test(suite: ferry_keys::Suite, side: Side) {
    let b = bed(suite);
    let egress = Daemon::start_ready(&b.tb.egress_config);
    let ingress = Daemon::start(&b.tb.ingress_config);
    spool_all(&b);
    wait_part_delivered(&b);
    let (egress, _ingress) = match side {
        Side::Egress => {
            egress.kill9();
            (Daemon::start(&b.tb.egress_config), ingress)
        }
        Side::Ingress => {
            ingress.kill9();
            (egress, Daemon::start(&b.tb.ingress_config))
        }
    };
    let (config, counter_name) = match side {
        Side::Egress => (&b.tb.egress_config, "bundles_received"),
        Side::Ingress => (&b.tb.ingress_config, "bundles_sent"),
    };
    wait_for(
        Duration::from_secs(120),
        "bundles after the restart",
        || counter(config, counter_name) >= 1,
    );
    wait_for(Duration::from_secs(60), "a second copy suppressed", || {
        counter(&b.tb.egress_config, "duplicates_suppressed") >= 1
    });
    assert_each_exactly_once(&b, egress);
}

#[test]
fn bundled_packages_are_each_delivered_exactly_once_through_kill_9_of_the_egress() {
    crash_test(ferry_keys::Suite::Intl, Side::Egress);
}

/// The same through kill -9 of the ingress side, on the GM suite (SM2
/// signatures and SM3 digests, the members' checked on the egress side).
#[test]
fn bundled_packages_are_each_delivered_exactly_once_through_kill_9_of_the_ingress() {
    crash_test(ferry_keys::Suite::Gm, Side::Ingress);
}

/// The policy both sides load: the spool feeds channel `release`; the
/// ingress side applies no profile to it (`ingress_profile` empty), the
/// egress side refuses any text with a listed word.
fn guard_policy(spool: &Path, words: &Path, ingress_profile: &str) -> String {
    format!(
        r#"version = 1

[policy]
name = "bundle-guard"
time_zone = "Asia/Shanghai"

[identity.spool]
description = "This link's spool"
spool = "e2e"

[spool.e2e]
description = "The spool"
dir = "{spool}"
channel = "release"
schedule = "continuous"

[profile.strict]
description = "What may arrive"
allowed_types = ["text/csv", "text/plain", "application/octet-stream"]
dirty_words = {{ lists = ["{words}"], action = "reject" }}

[channel.release]
description = "Release, inspected again on the egress side"
direction = "import"
link = "e2e"
destination = "outbox"
{ingress_profile}
egress_profile = "strict"

[[rule]]
id = "R-spool"
description = "The spool pushes"
effect = "allow"
identities = ["spool"]
channels = ["release"]
"#,
        spool = path_str(spool),
        words = path_str(words),
    )
}

/// Each member of a bundle gets its own decision on the egress side: one
/// file with a forbidden word among forty small ones is refused alone
/// (audited `package.failed` with its own id, never in the outbox), and
/// the other thirty-nine, which crossed in the same bundles, are
/// delivered, each with its own `guard.reinspected` record.
#[test]
fn a_bundle_member_the_egress_guard_refuses_is_refused_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // Slow enough that the files queue up behind the first and go in
    // bundles.
    let tb = testbed(root, |o| o.rate_bytes_per_s = 100_000);
    let words = root.join("words.txt");
    std::fs::write(&words, "绝密\n").expect("words");
    // The egress side's copy of the policy names a spool directory of its
    // own (it has none; the key must still point somewhere absolute).
    for (side, config) in [
        ("ingress", &tb.ingress_config),
        ("egress", &tb.egress_config),
    ] {
        std::fs::write(
            root.join(side).join("policy.toml"),
            guard_policy(&tb.spool, &words, ""),
        )
        .expect("policy");
        append_config(config, "[policy]\nfile = \"policy.toml\"\n");
    }
    let audit = with_audit(root, &tb.egress_config, "egress");
    let egress = Daemon::start_ready(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    let mut files = BTreeMap::new();
    for i in 0..40u64 {
        let text = if i == 17 {
            "parcel,remark\n17,绝密 do not release\n".to_owned()
        } else {
            format!("parcel,remark\n{i},open data row {i}\n")
        };
        files.insert(format!("r{i:02}.csv"), text.into_bytes());
    }
    for (name, data) in &files {
        ferry_daemon::testkit::spool_file(&tb.spool, name, data).expect("spool");
    }
    wait_for(
        Duration::from_secs(60),
        "39 delivered and 1 refused",
        || {
            let st = status(&tb.egress_config).unwrap_or_default();
            sidecars(&tb.outbox).len() >= 39 && st["rejected"].as_u64() >= Some(1)
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let seen = sidecars(&tb.outbox);
    let mut want: Vec<_> = files.keys().cloned().collect();
    want.retain(|n| n != "r17.csv");
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), want);
    assert!(
        seen.values().filter(|(_, b)| b.is_some()).count() >= 20,
        "most crossed in bundles: {seen:?}"
    );
    assert_eq!(counter(&tb.egress_config, "bundles_refused"), 0);
    assert!(counter(&tb.egress_config, "bundles_received") >= 1);
    egress.stop();
    let refused = audit_records(&audit, "package.failed");
    assert_eq!(refused.len(), 1, "{refused:?}");
    let refused_id = refused[0]["package"].as_str().expect("id").to_owned();
    assert!(
        !seen.values().any(|(id, _)| *id == refused_id),
        "the refused member's id is not in the outbox"
    );
    let reinspected = audit_records(&audit, "guard.reinspected");
    assert_eq!(reinspected.len(), 40, "one inspection per member");
}

/// A bundle whose member table does not match its signed range — what a
/// faulty or compromised ingress side could send, sealed with the link's
/// real keys — is refused whole by a real egress `ferryd`: nothing of it
/// delivered, counted, alarmed, audited, and the numbers of its range
/// opened as gaps (the replay window accepted them with the bundle, so a
/// resend is how they come). A correct bundle after it is delivered.
#[test]
fn a_bundle_whose_members_do_not_match_its_signed_range_is_refused_whole() {
    use ferry_protocol::bundle::{self, BundleMember, BUNDLE_CONTENT_TYPE};
    use ferry_protocol::suite::LinkCrypto;
    use ferry_protocol::{PackageId, PackageMeta, Transmit};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut listen = None;
    let tb = testbed(dir.path(), |o| listen = Some(o.listen));
    let listen = listen.expect("the egress listen address");
    let audit = with_audit(dir.path(), &tb.egress_config, "egress");
    let egress = Daemon::start_ready(&tb.egress_config);

    // The ingress side's own sender, outside its daemon.
    let cfg = ferry_daemon::config::load(&tb.ingress_config).expect("ingress config");
    let mut keys = ferry_daemon::link::keys::load_keys(&cfg).expect("keys");
    let seal = keys.take_seal_keys().expect("seal keys");
    let chain = ferry_daemon::link::keys::epoch_chain(&cfg, &keys);
    let mut sender =
        ferry_protocol::Sender::new(ferry_daemon::link::keys::sender_config(&cfg), seal, chain)
            .expect("sender");
    let digest = |data: &[u8]| {
        let mut d = ferry_suites::intl::IntlLink.new_digest();
        d.update(data);
        d.finish()
    };
    let member = |seq: u64, body: &[u8]| BundleMember {
        meta: PackageMeta {
            id: PackageId([seq as u8; 16]),
            channel: "e2e".into(),
            size: body.len() as u64,
            digest: digest(body),
            file_name: format!("m{seq}.txt"),
            content_type: "text/plain".into(),
            sender_identity: "CN=forger".into(),
            created_unix_ms: 1,
            inspection: None,
        },
        seq,
        first_seq: None,
    };
    let now = ferry_protocol::Millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64,
    );
    let wrap = |bytes: &[u8], last: u64| PackageMeta {
        id: PackageId([0xb0 + last as u8; 16]),
        channel: "e2e".into(),
        size: bytes.len() as u64,
        digest: digest(bytes),
        file_name: format!("bundle-{last}"),
        content_type: BUNDLE_CONTENT_TYPE.into(),
        sender_identity: "ferryd".into(),
        created_unix_ms: now.0,
        inspection: None,
    };
    // Signed for 1..=3, but its table names 1, 2 and 9.
    let bodies = [b"one".to_vec(), b"two".to_vec(), b"nine".to_vec()];
    let forged = bundle::encode(&[
        (member(1, &bodies[0]), &bodies[0]),
        (member(2, &bodies[1]), &bodies[1]),
        (member(9, &bodies[2]), &bodies[2]),
    ])
    .expect("encode");
    sender
        .enqueue_bundle(now, 1, 3, wrap(&forged, 3))
        .expect("forged bundle");
    // Then a correct one for 4..=5.
    let good_bodies = [b"four".to_vec(), b"five".to_vec()];
    let good = bundle::encode(&[
        (member(4, &good_bodies[0]), &good_bodies[0]),
        (member(5, &good_bodies[1]), &good_bodies[1]),
    ])
    .expect("encode");
    sender
        .enqueue_bundle(now, 4, 5, wrap(&good, 5))
        .expect("good bundle");
    let payloads = [(3u64, forged), (5u64, good)];
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut buf = vec![0u8; sender.max_datagram_len()];
    let mut t = now;
    // Until both bundles' sends are done (heartbeats go on for ever).
    while sender.queued() > 0 {
        match sender.poll_transmit(t, &mut buf).expect("transmit") {
            Transmit::Datagram(n) => {
                sock.send_to(&buf[..n], listen).expect("send");
            }
            Transmit::NeedPayload { seq, offset, len } => {
                let (_, p) = payloads.iter().find(|(s, _)| *s == seq).expect("payload");
                let o = offset as usize;
                sender
                    .provide_payload(seq, offset, &p[o..o + len])
                    .expect("provide");
            }
            Transmit::Idle => {
                std::thread::sleep(Duration::from_millis(20));
                t = t.plus(20);
            }
        }
    }
    wait_for(
        Duration::from_secs(30),
        "the correct bundle delivered",
        || outbox_files(&tb.outbox).len() == 2,
    );
    assert_eq!(outbox_files(&tb.outbox), vec!["m4.txt", "m5.txt"]);
    // The status file is written once a second.
    wait_for(Duration::from_secs(15), "the refusal in the status", || {
        status(&tb.egress_config)
            .is_some_and(|s| s["bundles_refused"] == 1 && s["bundles_received"] == 1)
    });
    let st = status(&tb.egress_config).expect("status");
    assert_eq!(st["bundles_refused"].as_u64(), Some(1), "{st}");
    assert_eq!(st["bundles_received"].as_u64(), Some(1), "{st}");
    // (Seq 0 was never used: the receiver may report it too, and the book
    // merges touching ranges.)
    assert!(
        st["gaps"].as_array().is_some_and(|g| g.iter().any(|r| {
            r[0].as_u64().is_some_and(|a| a <= 1) && r[1].as_u64().is_some_and(|b| b >= 3)
        })),
        "the refused bundle's numbers are a gap: {st}"
    );
    assert!(
        st["alarms"].as_array().is_some_and(|a| a
            .iter()
            .any(|m| m.as_str().is_some_and(|m| m.contains("refused whole")))),
        "{st}"
    );
    egress.stop();
    let failed = audit_records(&audit, "package.failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("member") && r.contains("sequence number 9, expected 3")),
        "{failed:?}"
    );
    let gaps = audit_records(&audit, "link.gap");
    assert!(
        gaps.iter()
            .any(|g| g["details"]["first"] == "1" && g["details"]["last"] == "3"),
        "{gaps:?}"
    );
}

/// `bundle_linger_ms`: a short bundle at the end of the queue waits for
/// more packages, up to the linger and no longer. With a 3 s linger, a
/// package queued alone is joined by one spooled after it was queued; a
/// package with no partner still goes once the linger is over. The
/// control, linger 0, sends the first package alone at once.
#[test]
fn a_short_bundle_waits_for_partners_up_to_its_linger_and_no_longer() {
    for (linger_ms, together) in [(3000u64, true), (0, false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let tb = testbed(dir.path(), |_| {});
        link_keys(
            &tb.ingress_config,
            &format!("bundle_max_packages = 8\nbundle_linger_ms = {linger_ms}"),
        );
        let _egress = Daemon::start(&tb.egress_config);
        let _ingress = Daemon::start(&tb.ingress_config);
        let spool = |name: &str, seed: u64| {
            ferry_daemon::testkit::spool_file(&tb.spool, name, &content(seed, SIZE))
                .expect("spool");
        };
        spool("first.csv", 1);
        wait_for(Duration::from_secs(30), "the first file queued", || {
            counter(&tb.ingress_config, "taken") >= 1
        });
        std::thread::sleep(Duration::from_millis(200));
        spool("second.csv", 2);
        wait_for(Duration::from_secs(60), "both delivered", || {
            sidecars(&tb.outbox).len() >= 2
        });
        let seen = sidecars(&tb.outbox);
        let bundle_of = |name: &str| seen[name].1.clone();
        if together {
            assert!(
                bundle_of("first.csv").is_some()
                    && bundle_of("first.csv") == bundle_of("second.csv"),
                "linger {linger_ms} ms: not bundled together: {seen:?}"
            );
            // No partner comes: it goes alone once the linger is over.
            spool("third.csv", 3);
            wait_for(Duration::from_secs(60), "the lone file delivered", || {
                sidecars(&tb.outbox).contains_key("third.csv")
            });
            assert_eq!(sidecars(&tb.outbox)["third.csv"].1, None, "alone");
        } else {
            assert_eq!(
                bundle_of("first.csv"),
                None,
                "linger 0: the first file waited for a partner: {seen:?}"
            );
        }
    }
}

/// The linger ends as soon as enough packages are queued to fill the
/// bundle: with the longest linger (10 s) and bundles of two, a package
/// queued alone waits, and the moment a second one is queued both go
/// together, long before the linger is over. Without the early end they
/// would wait out the ten seconds.
#[test]
fn a_lingering_bundle_goes_as_soon_as_it_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    link_keys(
        &tb.ingress_config,
        "bundle_max_packages = 2\nbundle_linger_ms = 10000",
    );
    let _egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    let spool = |name: &str, seed: u64| {
        ferry_daemon::testkit::spool_file(&tb.spool, name, &content(seed, SIZE)).expect("spool");
    };
    spool("first.csv", 1);
    wait_for(Duration::from_secs(30), "the first file queued", || {
        counter(&tb.ingress_config, "taken") >= 1
    });
    let lingering_since = std::time::Instant::now();
    // Lingering: not sent while alone.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sidecars(&tb.outbox).is_empty(),
        "sent before its linger or a partner"
    );
    spool("second.csv", 2);
    wait_for(Duration::from_secs(30), "both delivered", || {
        sidecars(&tb.outbox).len() >= 2
    });
    let waited = lingering_since.elapsed();
    assert!(
        waited < Duration::from_secs(9),
        "the full bundle waited out its linger ({waited:?})"
    );
    let seen = sidecars(&tb.outbox);
    assert!(
        seen["first.csv"].1.is_some() && seen["first.csv"].1 == seen["second.csv"].1,
        "not one bundle: {seen:?}"
    );
}

/// Bundles being gathered hold at most an eighth of `max_buffer_bytes`
/// in memory together; one past that is gathered in its staging file and
/// read back to be taken apart. Attack: a 7.2 MB bundle against a 6 MiB
/// bound (`max_buffer_bytes` 48 MiB). Every member must still arrive whole,
/// in that one bundle, and nothing be left in staging.
#[test]
fn a_bundle_past_the_memory_bound_is_gathered_on_disk_and_delivered_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |o| o.max_buffer_bytes = 48 << 20);
    link_keys(
        &tb.ingress_config,
        "bundle_max_bytes = 8388608\nbundle_linger_ms = 3000",
    );
    let egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    let files: BTreeMap<String, Vec<u8>> = (0..12u64)
        .map(|i| (format!("m{i:02}.bin"), content(900 + i, 600_000)))
        .collect();
    for (name, data) in &files {
        ferry_daemon::testkit::spool_file(&tb.spool, name, data).expect("spool");
    }
    wait_for(Duration::from_secs(120), "all twelve delivered", || {
        sidecars(&tb.outbox).len() >= files.len()
    });
    let seen = sidecars(&tb.outbox);
    for (name, data) in &files {
        let got = std::fs::read(tb.outbox.join(name)).expect("delivered file");
        assert!(got == *data, "{name}: not bit-exact");
    }
    let bundles: std::collections::BTreeSet<_> = seen.values().map(|(_, b)| b.clone()).collect();
    assert_eq!(bundles.len(), 1, "not one bundle: {seen:?}");
    assert!(bundles.iter().all(Option::is_some), "not bundled: {seen:?}");
    wait_for(Duration::from_secs(10), "the status counted it", || {
        counter(&tb.egress_config, "bundles_staged_on_disk") >= 1
    });
    let staging = tb.outbox.join(".staging");
    let left: Vec<_> = std::fs::read_dir(&staging)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in staging: {left:?}");
    drop(egress);
}
