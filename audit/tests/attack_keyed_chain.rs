//! Adversarial suite, audit log (issue 14, F24): only the writer can extend
//! the log, and what no seal covers yet is bounded and marked.
//!
//! - A record appended after the last seal by someone without the writer
//!   key (v1 logs chained with keyless SHA-256, which anyone could
//!   recompute) is TAMPERED, never "unsealed tail 1".
//! - A whole keyless segment added after a keyed log (a downgrade) is
//!   TAMPERED.
//! - A series of crashes leaves at most one run's records unsealed: each
//!   open seals what the crash left, so restarts cannot postpone the seal.
//! - query/trace mark the records no seal covers yet.

mod common;

use ferry_audit::segment::{
    chain_hash, encode_frame, list_segments, segment_name, Chain, FrameKind, SegmentHeader,
};
use ferry_audit::{
    init, verify, Actor, AuditLog, AuditOptions, AuditRecord, EventKind, Outcome, TamperKind,
    VerifyKey,
};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn opts() -> AuditOptions {
    AuditOptions {
        seal_interval: Duration::from_secs(3600),
        ..common::test_options(64 * 1024, 1_000_000)
    }
}

fn rec(i: u64) -> AuditRecord {
    AuditRecord::new(
        EventKind::PackageDelivered,
        Actor::system(),
        Outcome::Success,
    )
    .package(format!("pkg-{i}"))
}

fn make_log(n: u64) -> (tempfile::TempDir, PathBuf, VerifyKey) {
    common::make_log_with(n, opts(), rec)
}

/// The last frame's hash and the next seq of the last segment.
fn end_of(path: &Path) -> ([u8; 32], u64) {
    let data = std::fs::read(path).unwrap();
    let h = SegmentHeader::decode(&data).unwrap();
    let mut off = ferry_audit::segment::HEADER_LEN;
    let mut head = h.chain_start();
    let mut next = h.first_seq;
    while let Ok(f) = ferry_audit::segment::parse_frame(&data, off) {
        head = *f.hash;
        if f.kind == FrameKind::Record {
            next = f.seq + 1;
        }
        off += f.len();
    }
    (head, next)
}

fn forged_payload() -> Vec<u8> {
    serde_json::to_vec(
        &AuditRecord::new(
            EventKind::PackageDelivered,
            Actor::system(),
            Outcome::Success,
        )
        .package("pkg-forged"),
    )
    .unwrap()
}

/// The attack: a record appended after the last seal with the chain
/// recomputed the way a v1 log allowed (plain SHA-256, no key). It is
/// TAMPERED at that record, not INTACT with "unsealed tail 1".
#[test]
fn record_appended_without_the_writer_key_is_tampered() {
    let (_t, dir, vk) = make_log(20);
    let seg = list_segments(&dir).unwrap().last().unwrap().path.clone();
    let (head, next) = end_of(&seg);
    let payload = forged_payload();
    // Without the writer key the attacker can only guess a chain: try the
    // keyless SHA-256 one and a keyed one under a key of their own.
    for chain in [
        Chain::Plain,
        Chain::Keyed(zeroize::Zeroizing::new([7u8; 32])),
    ] {
        let before = std::fs::read(&seg).unwrap();
        let mut frame = Vec::new();
        encode_frame(
            &mut frame,
            &chain,
            &head,
            FrameKind::Record,
            next,
            1,
            &payload,
        );
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&frame).unwrap();
        let rep = verify(&dir, &vk, None).unwrap();
        assert_eq!(
            rep.problem.as_ref().map(|p| (p.kind, p.seq)),
            Some((TamperKind::Modified, Some(next))),
            "forged record accepted with {chain:?}: {rep}"
        );
        assert!(rep.to_string().contains("writer key"), "{rep}");
        std::fs::write(&seg, before).unwrap();
    }
    // Control: the writer's own chain (what only the key holder can make)
    // verifies, reported as not yet sealed.
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        &vk.chain(),
        &head,
        FrameKind::Record,
        next,
        1,
        &payload,
    );
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&frame).unwrap();
    let rep = verify(&dir, &vk, None).unwrap();
    assert!(rep.intact(), "{rep}");
    assert_eq!(rep.unsealed_tail, 1);
    assert!(rep.keyed);
}

/// A downgrade: a new keyless (v1-format) segment added after the keyed
/// log, chained correctly with plain SHA-256.
#[test]
fn keyless_segment_appended_to_a_keyed_log_is_tampered() {
    let (_t, dir, vk) = make_log(20);
    let segs = list_segments(&dir).unwrap();
    let last = segs.last().unwrap();
    let (head, next) = end_of(&last.path);
    let h = SegmentHeader::decode(&std::fs::read(&last.path).unwrap()).unwrap();
    let nh = SegmentHeader {
        segment_no: last.no + 1,
        first_seq: next,
        created_ms: h.created_ms + 1,
        log_id: h.log_id,
        key_id: h.key_id,
        prev_head: head,
        keyed: false,
    };
    let mut data = nh.encode().to_vec();
    let start = nh.chain_start();
    let mut frame = Vec::new();
    let fh = encode_frame(
        &mut frame,
        &Chain::Plain,
        &start,
        FrameKind::Record,
        next,
        1,
        &forged_payload(),
    );
    assert_eq!(fh, chain_hash(&start, &frame[..frame.len() - 32]));
    data.extend_from_slice(&frame);
    std::fs::write(dir.join(segment_name(last.no + 1)), data).unwrap();
    let rep = verify(&dir, &vk, None).unwrap();
    assert_eq!(
        rep.problem.as_ref().map(|p| (p.kind, p.segment)),
        Some((TamperKind::Modified, Some(last.no + 1))),
        "{rep}"
    );
}

const CHILD_ENV: &str = "FERRY_AUDIT_CRASH_SERIES_DIR";
const PER_RUN: u64 = 25;

/// The child of the crash series: appends PER_RUN records (each durable),
/// says so, and waits to be killed, never sealing on its own.
#[test]
fn crash_series_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only runs when spawned by the parent test
    };
    let log = AuditLog::open(Path::new(&dir), opts()).unwrap();
    for i in 0..PER_RUN {
        log.append(rec(i)).unwrap();
    }
    println!("appended");
    std::io::stdout().flush().unwrap();
    // Killed with SIGKILL by the parent; bounded in case it is not.
    std::thread::sleep(Duration::from_secs(30));
    std::process::exit(3);
}

/// The issue saw 802 records unsealed after a series of crashes, because
/// each restart started the seal timer over. Now every open seals what the
/// crash left: after any number of kill -9s, at most the last run's records
/// are unsealed, and a restart seals them.
#[test]
fn crash_series_leaves_at_most_one_run_unsealed() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let vk = init(&dir, &t.path().join("verify.key")).unwrap();
    for round in 0..5 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_series_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let start = Instant::now();
        let mut done = false;
        for l in lines.by_ref() {
            if l.map(|l| l.contains("appended")).unwrap_or(false) {
                done = true;
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "child hung");
        }
        child.kill().unwrap(); // SIGKILL: no close, no seal
        let _ = child.wait();
        assert!(done, "round {round}: child did not append");
        let rep = verify(&dir, &vk, None).unwrap();
        assert!(rep.intact(), "round {round}: {rep}");
        assert!(
            rep.unsealed_tail <= PER_RUN,
            "round {round}: {} records unsealed after {} crashes (bound {PER_RUN})",
            rep.unsealed_tail,
            round + 1
        );
        assert!(
            rep.unsealed_tail > 0,
            "round {round}: the child sealed on its own?"
        );
    }
    // A restart seals them at once, before anything new is written.
    let log = AuditLog::open(&dir, opts()).unwrap();
    assert_eq!(log.health().unsealed_records, 0);
    drop(log);
    let rep = verify(&dir, &vk, None).unwrap();
    assert!(rep.intact() && rep.unsealed_tail == 0, "{rep}");
    assert_eq!(rep.records, 5 * PER_RUN);
}

/// query and trace mark the records that no seal covers yet, and only them.
#[test]
fn query_and_trace_mark_unsealed_records() {
    use ferry_audit::query::{
        query_scan, sealed_through, to_json_marked, to_table_row_marked, trace, Filter,
        UNSEALED_MARK,
    };
    let (_t, dir, _vk) = make_log(5);
    let log = AuditLog::open(&dir, opts()).unwrap();
    log.append(rec(100)).unwrap();
    log.append(rec(101)).unwrap();
    let sealed = sealed_through(&dir).unwrap();
    assert_eq!(sealed, 5);
    let all = query_scan(&dir, &Filter::default()).unwrap();
    assert_eq!(all.len(), 7);
    for r in &all {
        let row = to_table_row_marked(r, r.seq <= sealed);
        let json: serde_json::Value =
            serde_json::from_str(&to_json_marked(r, r.seq <= sealed)).unwrap();
        assert_eq!(row.contains(UNSEALED_MARK), r.seq > 5, "{row}");
        assert_eq!(json["sealed"], serde_json::json!(r.seq <= 5));
    }
    let tr = trace(&dir, "pkg-100").unwrap();
    assert_eq!(tr.len(), 1);
    assert!(tr[0].seq > sealed);
    log.seal_now().unwrap();
    assert_eq!(sealed_through(&dir).unwrap(), 7);
}
