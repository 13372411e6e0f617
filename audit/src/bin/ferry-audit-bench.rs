//! Prints the audit log's figures: append throughput with group commit (64
//! and 4096 records per fdatasync, and 8 threads calling `append`), verify
//! throughput, and query latency by package id.
//!
//! `cargo run --release -p ferry-audit --bin ferry-audit-bench -- --records N [--dir D]`

use ferry_audit::query::{query, Filter};
use ferry_audit::{
    init, verify, Actor, AuditLog, AuditOptions, AuditRecord, EventKind, Outcome, Role,
};
use std::time::Instant;

fn rec(i: u64) -> AuditRecord {
    AuditRecord::new(
        EventKind::PackageSent,
        Actor::new(format!("CN=sender-{}", i % 50), Role::Sender),
        Outcome::Success,
    )
    .package(format!("pkg-{:012}", i / 8))
    .channel(format!("channel-{}", i % 7))
    .rule("r-17")
    .detail(
        "sha256",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut records: u64 = 1_000_000;
    let mut base: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--records" => records = args.next().ok_or("--records N")?.parse()?,
            "--dir" => base = Some(args.next().ok_or("--dir D")?.into()),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let tmp = tempfile::tempdir_in(base.unwrap_or_else(std::env::temp_dir))?;
    let opts = AuditOptions {
        min_free_bytes_accept: 0,
        min_free_bytes_audit: 0,
        compress_archived: false,
        ..AuditOptions::default()
    };

    // Append with group commit: N records encoded, then one fdatasync.
    for batch in [64u64, 4096] {
        let mut rates = Vec::new();
        for run in 0..3 {
            let dir = tmp.path().join(format!("append-{batch}-{run}"));
            init(&dir, &tmp.path().join(format!("vk-{batch}-{run}")))?;
            let log = AuditLog::open(&dir, opts.clone())?;
            let n = 200_000u64;
            let t = Instant::now();
            for i in 0..n {
                log.append_nowait(rec(i))?;
                if (i + 1) % batch == 0 {
                    log.flush()?;
                }
            }
            log.flush()?;
            rates.push(n as f64 / t.elapsed().as_secs_f64());
            log.close()?;
        }
        println!(
            "append, {batch} records per fdatasync: {:.0} records/s (median of 3)",
            median(rates)
        );
    }
    {
        let dir = tmp.path().join("append-threads");
        init(&dir, &tmp.path().join("vk-threads"))?;
        let log = std::sync::Arc::new(AuditLog::open(&dir, opts.clone())?);
        let t = Instant::now();
        let per = 10_000u64;
        let hs: Vec<_> = (0..8)
            .map(|k| {
                let log = log.clone();
                std::thread::spawn(move || -> Result<(), ferry_audit::AuditError> {
                    for i in 0..per {
                        log.append(rec(k * per + i))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().map_err(|_| "thread panicked")??;
        }
        println!(
            "append, 8 threads each waiting for its fdatasync: {:.0} records/s",
            (8 * per) as f64 / t.elapsed().as_secs_f64()
        );
    }

    // A large log for verify and query.
    let dir = tmp.path().join("large");
    let vk = init(&dir, &tmp.path().join("vk-large"))?;
    let t = Instant::now();
    {
        let log = AuditLog::open(&dir, opts.clone())?;
        for i in 0..records {
            log.append_nowait(rec(i))?;
            if (i + 1) % 4096 == 0 {
                log.flush()?;
            }
        }
        log.close()?;
    }
    println!(
        "wrote {records} records in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let rep = verify(&dir, &vk, Some(&dir.join("checkpoints.jsonl")))?;
        if !rep.intact() {
            return Err(format!("bench log does not verify: {rep}").into());
        }
        rates.push(rep.records as f64 / t.elapsed().as_secs_f64());
    }
    println!("verify: {:.0} records/s (median of 3)", median(rates));
    let t = Instant::now();
    ferry_audit::index::PackageIndex::open(&dir)?;
    println!(
        "package index built from scratch in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for (name, indexed) in [("redb index", true), ("full scan", false)] {
        let mut lat = Vec::new();
        for k in 0..5u64 {
            let pkg = format!("pkg-{:012}", (records / 8) * k / 5 + 3);
            let f = Filter {
                package: Some(pkg),
                ..Filter::default()
            };
            let t = Instant::now();
            let r = if indexed {
                query(&dir, &f)?
            } else {
                ferry_audit::query::query_scan(&dir, &f)?
            };
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            if r.len() != 8 {
                return Err(format!("query found {} records, expected 8", r.len()).into());
            }
        }
        println!(
            "query by package id on {records} records ({name}): {:.1} ms (median of 5)",
            median(lat)
        );
    }
    Ok(())
}
