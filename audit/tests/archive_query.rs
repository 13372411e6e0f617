//! Archived (gzip) segments, retention, torn tails, and query correctness
//! against a brute-force scan.

use ferry_audit::query::{query, Filter};
use ferry_audit::segment::list_segments;
use ferry_audit::{
    init, verify, Actor, AuditLog, AuditOptions, AuditRecord, EventKind, Outcome, Role,
};
use rand::{Rng, SeedableRng};

fn opts(compress: bool) -> AuditOptions {
    AuditOptions {
        max_segment_bytes: 8192,
        seal_every_records: 16,
        compress_archived: compress,
        min_free_bytes_accept: 0,
        min_free_bytes_audit: 0,
        background: false,
        ..AuditOptions::default()
    }
}

#[test]
fn archived_segments_verify_and_retention_is_recorded() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let vk = init(&dir, &t.path().join("vk")).unwrap();
    let log = AuditLog::open(&dir, opts(true)).unwrap();
    for i in 0..300u64 {
        log.append(
            AuditRecord::new(
                EventKind::PackageDelivered,
                Actor::system(),
                Outcome::Success,
            )
            .package(format!("p{i}")),
        )
        .unwrap();
    }
    log.wait_archivers();
    let segs = list_segments(&dir).unwrap();
    assert!(segs.len() > 4);
    assert!(segs[..segs.len() - 1].iter().all(|s| s.compressed));
    assert!(!segs[segs.len() - 1].compressed);
    assert!(verify(&dir, &vk, Some(&dir.join("checkpoints.jsonl")))
        .unwrap()
        .intact());

    // Retention: pretend 200 days passed; every non-active segment expires.
    let deleted = log
        .apply_retention(ferry_audit::time_fmt::now_ms() + 200 * 86_400_000)
        .unwrap();
    assert_eq!(deleted.len(), segs.len() - 1);
    log.close().unwrap();
    let rep = verify(&dir, &vk, Some(&dir.join("checkpoints.jsonl"))).unwrap();
    assert!(rep.intact(), "{rep}");
    assert_eq!(
        rep.retention_deleted_through,
        Some(deleted[deleted.len() - 1])
    );
    let ret = query(
        &dir,
        &Filter {
            event: Some(EventKind::AuditRetention),
            ..Filter::default()
        },
    )
    .unwrap();
    assert_eq!(ret.len(), 1);
}

#[test]
fn torn_tail_is_truncated_and_recorded() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let vk = init(&dir, &t.path().join("vk")).unwrap();
    let log = AuditLog::open(&dir, opts(false)).unwrap();
    for _ in 0..10 {
        log.append(AuditRecord::new(
            EventKind::DaemonStart,
            Actor::system(),
            Outcome::Success,
        ))
        .unwrap();
    }
    drop(log);
    // Half a frame at the end, as a crash mid-write leaves it.
    let segs = list_segments(&dir).unwrap();
    let p = &segs.last().unwrap().path;
    let mut data = std::fs::read(p).unwrap();
    data.extend_from_slice(&[0xFA, 1, 11, 0, 0]);
    std::fs::write(p, &data).unwrap();
    assert_eq!(verify(&dir, &vk, None).unwrap().torn_tail_bytes, 5);
    let log = AuditLog::open(&dir, opts(false)).unwrap();
    log.close().unwrap();
    let rep = verify(&dir, &vk, None).unwrap();
    assert!(rep.intact() && rep.torn_tail_bytes == 0, "{rep}");
    let rec = query(
        &dir,
        &Filter {
            event: Some(EventKind::AuditRecovered),
            ..Filter::default()
        },
    )
    .unwrap();
    assert_eq!(rec.len(), 1);

    // Garbage in the middle (not a torn tail) is refused by the writer.
    let segs = list_segments(&dir).unwrap();
    let p = &segs.last().unwrap().path;
    let mut data = std::fs::read(p).unwrap();
    data[200] ^= 0xFF;
    std::fs::write(p, &data).unwrap();
    assert!(AuditLog::open(&dir, opts(false)).is_err());
}

#[test]
fn query_matches_brute_force() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    init(&dir, &t.path().join("vk")).unwrap();
    let log = AuditLog::open(&dir, opts(true)).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let events = [
        EventKind::PackagePushed,
        EventKind::PolicyDecided,
        EventKind::PackageSent,
    ];
    let mut all = Vec::new();
    for _ in 0..400 {
        let r = AuditRecord::new(
            events[rng.gen_range(0..3)],
            Actor::new(format!("a{}", rng.gen_range(0..4)), Role::Sender),
            if rng.gen_bool(0.8) {
                Outcome::Allowed
            } else {
                Outcome::Refused
            },
        )
        .package(format!("p{}", rng.gen_range(0..50)))
        .channel(format!("c{}", rng.gen_range(0..3)));
        all.push(r.clone());
        log.append(r).unwrap();
    }
    log.close().unwrap();
    let stored = query(&dir, &Filter::default()).unwrap();
    assert_eq!(stored.len(), all.len());
    for _ in 0..50 {
        let f = Filter {
            actor: rng
                .gen_bool(0.5)
                .then(|| format!("a{}", rng.gen_range(0..4))),
            channel: rng
                .gen_bool(0.5)
                .then(|| format!("c{}", rng.gen_range(0..3))),
            package: rng
                .gen_bool(0.5)
                .then(|| format!("p{}", rng.gen_range(0..50))),
            event: rng.gen_bool(0.5).then(|| events[rng.gen_range(0..3)]),
            outcome: rng.gen_bool(0.3).then_some(Outcome::Refused),
            ..Filter::default()
        };
        let got: Vec<u64> = query(&dir, &f).unwrap().iter().map(|r| r.seq).collect();
        let want: Vec<u64> = stored
            .iter()
            .filter(|r| f.matches(r))
            .map(|r| r.seq)
            .collect();
        let brute: Vec<u64> = all
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                f.actor.as_ref().is_none_or(|a| &r.actor.id == a)
                    && f.channel
                        .as_ref()
                        .is_none_or(|c| r.channel.as_ref() == Some(c))
                    && f.package
                        .as_ref()
                        .is_none_or(|p| r.package.as_ref() == Some(p))
                    && f.event.is_none_or(|e| r.event == e)
                    && f.outcome.is_none_or(|o| r.outcome == o)
            })
            .map(|(i, _)| i as u64 + 1)
            .collect();
        assert_eq!(got, want);
        assert_eq!(got, brute);
    }
}

#[test]
fn corrupted_or_stale_index_is_rebuilt() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    init(&dir, &t.path().join("vk")).unwrap();
    let log = AuditLog::open(&dir, opts(true)).unwrap();
    for i in 0..200u64 {
        log.append(
            AuditRecord::new(EventKind::PackageSent, Actor::system(), Outcome::Success)
                .package(format!("p{}", i % 10)),
        )
        .unwrap();
    }
    let f = Filter {
        package: Some("p3".into()),
        ..Filter::default()
    };
    let want: Vec<u64> = (0..200u64).filter(|i| i % 10 == 3).map(|i| i + 1).collect();
    let seqs = |v: Vec<ferry_audit::StoredRecord>| v.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(seqs(query(&dir, &f).unwrap()), want);
    // New records are caught up.
    log.append(
        AuditRecord::new(EventKind::PackageSent, Actor::system(), Outcome::Success).package("p3"),
    )
    .unwrap();
    log.close().unwrap();
    let mut want2 = want.clone();
    want2.push(201);
    assert_eq!(seqs(query(&dir, &f).unwrap()), want2);
    // Garbage index file: rebuilt.
    std::fs::write(dir.join("index.redb"), b"not a redb file at all").unwrap();
    assert_eq!(seqs(query(&dir, &f).unwrap()), want2);
    // Missing index: rebuilt.
    std::fs::remove_file(dir.join("index.redb")).unwrap();
    assert_eq!(seqs(query(&dir, &f).unwrap()), want2);
    assert_eq!(
        seqs(ferry_audit::query::query_scan(&dir, &f).unwrap()),
        want2
    );
}
