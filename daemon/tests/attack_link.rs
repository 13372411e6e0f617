//! The link and the egress side attacked the way a hostile wire and a
//! crash would: real `ferryd` processes, real UDP, `kill -9`.
//!
//! Promises pinned here (docs/ferry-protocol.md, docs/operations.md):
//! - a replayed heartbeat is counted, audited and alarmed as a replay and
//!   never makes the link look up, also after an egress restart;
//! - gaps are durable egress state: listed, counted and alarmed across
//!   restarts until a delivery fills them;
//! - a delivery finished by start-up recovery has exactly one
//!   `package.delivered` record;
//! - after an egress crash with the default `redundancy = 1` the link heals
//!   by itself (the ingress's bounded re-send), nothing delivered twice.

mod common;

use common::*;
use ferry_daemon::state::store::{LedgerEntry, LedgerState, StateStore};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A relay between the ingress (which sends to `from`) and the egress
/// (listening on `to`), keeping a copy of every datagram: the capture an
/// attacker on the wire would make.
struct Tap {
    stop: Arc<AtomicBool>,
    tape: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tap {
    fn start(from: SocketAddr, to: SocketAddr) -> Tap {
        let sock = UdpSocket::bind(from).expect("bind relay");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let tape = Arc::new(Mutex::new(Vec::new()));
        let (st, tp) = (stop.clone(), tape.clone());
        let thread = std::thread::spawn(move || {
            let out = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let _ = out.send_to(&buf[..n], to);
                    if let Ok(mut t) = tp.lock() {
                        t.push(buf[..n].to_vec());
                    }
                }
            }
        });
        Tap {
            stop,
            tape,
            thread: Some(thread),
        }
    }

    fn captured(&self) -> Vec<Vec<u8>> {
        self.tape.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Moves the egress side to a new port so that a [`Tap`] can sit on the
/// port the ingress side sends to. Returns (ingress target, egress port).
fn insert_tap_port(tb: &ferry_daemon::testkit::Testbed) -> (SocketAddr, SocketAddr) {
    let text = std::fs::read_to_string(&tb.egress_config).expect("config");
    let start = text.find("listen = [\"").expect("listen") + "listen = [\"".len();
    let end = start + text[start..].find('"').expect("end");
    let old: SocketAddr = text[start..end].parse().expect("addr");
    let new = ferry_daemon::testkit::free_udp_port().expect("port");
    std::fs::write(
        &tb.egress_config,
        text.replace(
            &format!("listen = [\"{old}\"]"),
            &format!("listen = [\"{new}\"]"),
        ),
    )
    .expect("config");
    (old, new)
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

fn alarms(v: &serde_json::Value) -> String {
    v["alarms"].to_string()
}

/// Promise: heartbeats captured earlier and replayed while the ingress is
/// down are counted as replays (status, metric source, alarm, audit) and
/// never make the link look up, also after the egress restarts.
#[test]
fn replayed_heartbeats_over_udp_are_not_life() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let audit = with_audit(dir.path(), &tb.egress_config, "egress");
    let (tap_port, egress_port) = insert_tap_port(&tb);
    let egress = Daemon::start_ready(&tb.egress_config);
    let tap = Tap::start(tap_port, egress_port);
    let ingress = Daemon::start(&tb.ingress_config);
    ferry_daemon::testkit::spool_file(&tb.spool, "a.bin", &content(1, 10_000)).expect("spool");
    wait_for(Duration::from_secs(30), "delivery and link up", || {
        outbox_files(&tb.outbox) == vec!["a.bin".to_string()]
            && status(&tb.egress_config).is_some_and(|v| v["link_up"] == true)
    });
    // A few heartbeats more on tape (200 ms apart in the testbed).
    let have = tap.captured().len();
    wait_for(Duration::from_secs(10), "more capture", || {
        tap.captured().len() >= have + 5
    });
    ingress.kill9();
    let tape = tap.captured();
    drop(tap);
    wait_for(Duration::from_secs(10), "link down", || {
        status(&tb.egress_config).is_some_and(|v| v["link_up"] == false)
    });
    let before = status(&tb.egress_config).expect("status");
    let replay = |times: usize| {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for _ in 0..times {
            for d in &tape {
                let _ = sock.send_to(d, egress_port);
            }
        }
    };
    replay(3);
    wait_for(Duration::from_secs(10), "replays counted", || {
        status(&tb.egress_config).is_some_and(|v| n(&v, "heartbeats_replayed") >= 3)
    });
    let after = status(&tb.egress_config).expect("status");
    assert_eq!(after["link_up"], false, "a replay made the link look up");
    assert_eq!(
        after["last_heartbeat_unix_ms"], before["last_heartbeat_unix_ms"],
        "a replay advanced the last-heartbeat time"
    );
    assert!(alarms(&after).contains("link replay:"), "{after}");
    assert_eq!(
        after["receiver"]["heartbeats"], before["receiver"]["heartbeats"],
        "a replay counted as a fresh heartbeat"
    );
    // Restart the egress: freshness is durable state, not memory.
    egress.kill9();
    let egress = Daemon::start_ready(&tb.egress_config);
    replay(1);
    wait_for(
        Duration::from_secs(10),
        "replays counted after restart",
        || status(&tb.egress_config).is_some_and(|v| n(&v, "heartbeats_replayed") >= 1),
    );
    let restarted = status(&tb.egress_config).expect("status");
    assert_eq!(
        restarted["link_up"], false,
        "replay after restart taken as life"
    );
    assert!(restarted["last_heartbeat_unix_ms"].is_null(), "{restarted}");
    egress.stop();
    let records = audit_records(&audit, "link.replay");
    assert!(!records.is_empty(), "replays not audited");
}

/// Adds `lines` to the `[link]` section of `config`.
fn spool_lost_in_flight(tb: &ferry_daemon::testkit::Testbed, files: &[(&str, Vec<u8>)]) {
    for (name, data) in files {
        ferry_daemon::testkit::spool_file(&tb.spool, name, data).expect("spool");
    }
}

/// Promise: packages lost in flight around an egress `kill -9` are gaps
/// that survive restarts (listed, counted, alarmed, audited) until a
/// resend delivers them, and then the gap closes.
#[test]
fn gaps_survive_egress_kill9_until_a_resend_fills_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Paced so the packages are surely in flight when the egress dies.
    let tb = testbed(dir.path(), |o| o.rate_bytes_per_s = 20_000_000);
    // This test is about what an operator sees and does: no self-healing.
    link_keys(&tb.ingress_config, "heal_resend_max_bytes_per_s = 0");
    let audit = with_audit(dir.path(), &tb.egress_config, "egress");
    let egress = Daemon::start_ready(&tb.egress_config);
    let ingress = Daemon::start(&tb.ingress_config);
    let files: Vec<(&str, Vec<u8>)> = (0..4)
        .map(|i| {
            (
                ["g0.bin", "g1.bin", "g2.bin", "g3.bin"][i],
                content(10 + i as u64, 8 << 20),
            )
        })
        .collect();
    spool_lost_in_flight(&tb, &files);
    wait_for(Duration::from_secs(30), "staging in progress", || {
        std::fs::read_dir(tb.outbox.join(".staging"))
            .map(|mut r| r.next().is_some())
            .unwrap_or(false)
    });
    egress.kill9();
    wait_for(Duration::from_secs(60), "all sent", || {
        status(&tb.ingress_config).is_some_and(|v| n(&v, "sent") == 4)
    });
    let egress = Daemon::start_ready(&tb.egress_config);
    wait_for(Duration::from_secs(30), "gaps reported", || {
        status(&tb.egress_config).is_some_and(|v| n(&v, "gap_seqs_open") > 0)
    });
    let delivered_before = outbox_files(&tb.outbox).len() as u64;
    let st = status(&tb.egress_config).expect("status");
    assert_eq!(n(&st, "gap_seqs_open") + delivered_before, 4, "{st}");
    assert!(alarms(&st).contains("link gap:"), "{st}");
    let gaps = st["gaps"].clone();
    // Without heartbeats nothing can report the gap again: what the status
    // shows after this restart comes from durable state alone.
    ingress.kill9();
    egress.kill9();
    let egress = Daemon::start_ready(&tb.egress_config);
    let st = status(&tb.egress_config).expect("status");
    assert_eq!(st["gaps"], gaps, "gaps forgotten across a restart: {st}");
    assert!(alarms(&st).contains("link gap:"), "{st}");
    // The operator resends what the gap report names.
    let _ingress = Daemon::start_ready(&tb.ingress_config);
    let (a, b) = (
        gaps[0][0].as_u64().expect("first"),
        gaps.as_array()
            .and_then(|g| g.last())
            .and_then(|g| g[1].as_u64())
            .expect("last"),
    );
    ctl_ok(&[
        "resend",
        "--config",
        path_str(&tb.ingress_config),
        "--seq",
        &format!("{a}..{b}"),
    ]);
    let open_before = n(&st, "gap_seqs_open");
    wait_for(Duration::from_secs(60), "resend delivered", || {
        outbox_files(&tb.outbox).len() == 4
            && status(&tb.egress_config).is_some_and(|v| n(&v, "gap_seqs_open") < open_before)
    });
    // A number the ingress reserved but never sent a package under (seen
    // under heavy parallel load) has nothing to resend: it stays open until
    // the system administrator acknowledges it — audited.
    let st = status(&tb.egress_config).expect("status");
    if let Some(rest) = st["gaps"].as_array().filter(|g| !g.is_empty()) {
        for g in rest.clone() {
            let range = format!("{}..{}", g[0], g[1]);
            ctl_ok(&[
                "gaps",
                "ack",
                "--config",
                path_str(&tb.egress_config),
                &range,
                "--reason",
                "no package was sent under it",
            ]);
        }
    }
    let st = status(&tb.egress_config).expect("status");
    assert_eq!(n(&st, "gap_seqs_open"), 0, "{st}");
    assert!(st["gaps"].as_array().is_some_and(|g| g.is_empty()), "{st}");
    assert!(!alarms(&st).contains("link gap:"), "{st}");
    for (name, data) in &files {
        assert!(
            std::fs::read(tb.outbox.join(name)).is_ok_and(|g| g == *data),
            "{name} not bit-exact"
        );
    }
    egress.stop();
    let opened = audit_records(&audit, "link.gap");
    assert!(
        opened.iter().any(|r| r.to_string().contains("opened"))
            && opened.iter().any(|r| r.to_string().contains("closed")),
        "gap opening and closing audited: {opened:?}"
    );
}

/// Promise: a delivery that start-up recovery finishes (the egress died
/// between its ledger record and the rename, or between the rename and the
/// ledger's "finished") has exactly one `package.delivered` record, naming
/// the file it was delivered as (a collision's `NAME.1.EXT` too).
#[test]
fn deliveries_finished_by_recovery_are_audited_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let audit = with_audit(dir.path(), &tb.egress_config, "egress");
    let state = tb.egress_config.with_file_name("state");
    std::fs::create_dir_all(&state).expect("state dir");
    // What a kill -9 leaves, made deterministically: one package staged
    // and recorded "delivering" (rename not done), one renamed already
    // but not recorded as finished.
    let (staged_id, renamed_id) = ([0x51u8; 16], [0x52u8; 16]);
    // Renamed under a collision suffix: `dup.bin` is another package's.
    let suffixed_id = [0x53u8; 16];
    {
        let outbox = ferry_daemon::state::outbox::Outbox::open(&tb.outbox).expect("outbox");
        let store = StateStore::open(&state.join("ferry.redb")).expect("store");
        let mut st = outbox.begin("7-0").expect("staging");
        st.write_all(b"staged before the crash").expect("write");
        st.sync().expect("sync");
        let side = serde_json::json!({
            "package_id": hex::encode(staged_id),
            "seq": 7,
            "channel": "stats",
            "size": 23,
        });
        outbox.write_sidecar(&mut st, &side).expect("sidecar");
        let window = ferry_protocol::ReplayWindow::new().to_bytes();
        let staging = st.name().to_owned();
        drop(st);
        store
            .begin_delivery(
                staged_id,
                &LedgerEntry {
                    seq: 7,
                    state: LedgerState::Delivering {
                        staging,
                        final_name: "staged.bin".into(),
                    },
                },
                ferry_daemon::now_millis().0,
                &window,
            )
            .expect("ledger");
        std::fs::write(tb.outbox.join("renamed.bin"), b"renamed before the crash").expect("file");
        store
            .begin_delivery(
                renamed_id,
                &LedgerEntry {
                    seq: 8,
                    state: LedgerState::Delivering {
                        staging: "8-0".into(),
                        final_name: "renamed.bin".into(),
                    },
                },
                ferry_daemon::now_millis().0,
                &window,
            )
            .expect("ledger");
        std::fs::write(tb.outbox.join("dup.bin"), b"another package").expect("file");
        std::fs::write(
            tb.outbox.join("dup.bin.ferry.json"),
            serde_json::json!({ "package_id": hex::encode([0x99u8; 16]) }).to_string(),
        )
        .expect("sidecar");
        std::fs::write(tb.outbox.join("dup.1.bin"), b"renamed as dup.1.bin").expect("file");
        std::fs::write(
            tb.outbox.join("dup.1.bin.ferry.json"),
            serde_json::json!({
                "package_id": hex::encode(suffixed_id),
                "seq": 9,
                "channel": "stats",
                "size": 20,
                "digest": "d1d2",
            })
            .to_string(),
        )
        .expect("sidecar");
        store
            .begin_delivery(
                suffixed_id,
                &LedgerEntry {
                    seq: 9,
                    state: LedgerState::Delivering {
                        staging: "9-0".into(),
                        final_name: "dup.bin".into(),
                    },
                },
                ferry_daemon::now_millis().0,
                &window,
            )
            .expect("ledger");
    }
    for _ in 0..2 {
        // The second start must not record them again.
        let egress = Daemon::start_ready(&tb.egress_config);
        egress.stop();
    }
    assert_eq!(
        outbox_files(&tb.outbox),
        vec!["dup.1.bin", "dup.bin", "renamed.bin", "staged.bin"]
    );
    let records = audit_records(&audit, "package.delivered");
    for id in [staged_id, renamed_id, suffixed_id] {
        let hex = hex::encode(id);
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.to_string().contains(&hex))
            .collect();
        assert_eq!(mine.len(), 1, "package {hex}: {records:?}");
        assert!(mine[0].to_string().contains("recovered_after_crash"));
    }
    // The suffixed one: its record and its ledger entry name the file it
    // is, with the size and digest its sidecar gives.
    let suffixed: Vec<_> = records
        .iter()
        .filter(|r| r.to_string().contains(&hex::encode(suffixed_id)))
        .collect();
    let text = suffixed[0].to_string();
    assert!(text.contains("outbox: dup.1.bin"), "{text}");
    assert!(text.contains("d1d2") && text.contains("stats"), "{text}");
    let store = StateStore::open(&state.join("ferry.redb")).expect("store");
    assert!(
        matches!(
            store.ledger_get(suffixed_id).expect("ledger"),
            Some(LedgerEntry { state: LedgerState::Delivered { ref name, .. }, .. }) if name == "dup.1.bin"
        ),
        "the ledger names the file delivered"
    );
}

/// Promise: with the default `redundancy = 1`, packages lost in flight
/// around an egress `kill -9` arrive without any operator action (the
/// ingress's bounded self-healing re-send), each delivered once, and the
/// gaps they left close by themselves.
#[test]
fn link_heals_by_itself_after_egress_kill9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |o| o.rate_bytes_per_s = 20_000_000);
    // Shorter than the default 15 s to keep the test quick; same mechanism.
    link_keys(&tb.ingress_config, "heal_resend_after_ms = 3000");
    let egress = Daemon::start_ready(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    let files: Vec<(&str, Vec<u8>)> = (0..4)
        .map(|i| {
            (
                ["h0.bin", "h1.bin", "h2.bin", "h3.bin"][i],
                content(20 + i as u64, 8 << 20),
            )
        })
        .collect();
    spool_lost_in_flight(&tb, &files);
    wait_for(Duration::from_secs(30), "staging in progress", || {
        std::fs::read_dir(tb.outbox.join(".staging"))
            .map(|mut r| r.next().is_some())
            .unwrap_or(false)
    });
    egress.kill9();
    let lost = 4 - outbox_files(&tb.outbox).len();
    assert!(lost > 0, "the crash lost nothing; the test proves nothing");
    let _egress = Daemon::start_ready(&tb.egress_config);
    wait_for(
        Duration::from_secs(90),
        "healed without an operator",
        || {
            outbox_files(&tb.outbox).len() == 4
                && status(&tb.egress_config).is_some_and(|v| n(&v, "gap_seqs_open") == 0)
        },
    );
    let names: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(outbox_files(&tb.outbox), names, "nothing delivered twice");
    for (name, data) in &files {
        assert!(
            std::fs::read(tb.outbox.join(name)).is_ok_and(|g| g == *data),
            "{name} not bit-exact"
        );
    }
    let ingress_status = status(&tb.ingress_config).expect("status");
    // Some of the undelivered packages were still to be sent after the
    // restart; at least the one in flight was healed.
    assert!(n(&ingress_status, "heal_resent") >= 1, "{ingress_status}");
}

/// Promise: the self-healing re-send's budget delays re-sends, it does not
/// cancel them. Six packages sent while the egress side is down, the first
/// larger than four seconds of the budget: every one is re-sent (the small
/// ones wait for the budget the first one spent) and delivered, none
/// skipped.
#[test]
fn heal_resends_over_the_budget_wait_for_it_instead_of_being_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |o| o.rate_bytes_per_s = 20_000_000);
    link_keys(
        &tb.ingress_config,
        "heal_resend_after_ms = 3000\nheal_resend_max_bytes_per_s = 2000000",
    );
    let ingress = Daemon::start(&tb.ingress_config);
    let mut files = vec![("big.bin".to_string(), content(40, 8 << 20))];
    for i in 0..5u64 {
        files.push((format!("small{i}.bin"), content(41 + i, 1 << 20)));
    }
    // The large one first (the lowest sequence number, so the first
    // re-send), then the small ones.
    for (i, (name, data)) in files.iter().enumerate() {
        ferry_daemon::testkit::spool_file(&tb.spool, name, data).expect("spool");
        if i == 0 {
            wait_for(Duration::from_secs(30), "the large one taken", || {
                status(&tb.ingress_config).is_some_and(|v| n(&v, "taken") >= 1)
            });
        }
    }
    // Every send goes to a link with nobody listening.
    wait_for(Duration::from_secs(60), "all six sent", || {
        status(&tb.ingress_config).is_some_and(|v| n(&v, "sent") == 6)
    });
    let _egress = Daemon::start_ready(&tb.egress_config);
    wait_for(Duration::from_secs(60), "all six healed", || {
        outbox_files(&tb.outbox).len() == 6
    });
    for (name, data) in &files {
        assert!(
            std::fs::read(tb.outbox.join(name)).is_ok_and(|g| g == *data),
            "{name} not bit-exact"
        );
    }
    let v = status(&tb.ingress_config).expect("status");
    assert_eq!((n(&v, "heal_resent"), n(&v, "heal_skipped")), (6, 0), "{v}");
    drop(ingress);
}
