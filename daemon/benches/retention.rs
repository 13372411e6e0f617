//! Retention on a queue of 1,000,000 retained packages (the default bound,
//! 1 GiB, of 1 KiB packages; `FERRY_BENCH_RETAINED` sets another count):
//!
//!   cargo bench -p ferry-daemon --bench retention
//!
//! - `look`: what the send loop does every second when nothing is due
//!   (the front of the queue and the retained totals);
//! - `every row`: what it did every 10 s before (every row read, the sent
//!   ones sorted by age);
//! - `queue 64`: a batch of 64 packages queued, marked sending, then sent
//!   (the send loop's two state changes, which now count the totals);
//! - printed first: deleting 100,000 due packages in slices of 256 (one
//!   transaction each), packages per second; then 10,000 the way it was
//!   done before (a read and a transaction per package).

use criterion::{black_box, Criterion};
use ferry_daemon::state::store::{QueueState, QueuedPackage, StateChange, StateStore};
use std::time::Instant;

const T0: u64 = 1_700_000_000_000;

fn id(n: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id
}

/// Sent in sequence order, a millisecond apart.
fn sent(seq: u64) -> QueueState {
    QueueState::Sent {
        times: 1,
        last_unix_ms: T0 + seq,
    }
}

fn package(seq: u64, state: QueueState) -> QueuedPackage {
    QueuedPackage {
        seq,
        path: format!("/var/lib/ferry/state/queue/{}", hex::encode(id(seq))),
        meta_json: format!(
            "{{\"file_name\":\"report-{seq}.csv\",\"channel\":\"reports\",\"size\":1024,\"first_seq\":{seq}}}"
        ),
        inline: false,
        state,
        bytes: 1024,
        enqueued_unix_ms: T0 + seq,
    }
}

fn fill(s: &StateStore, from: u64, to: u64, state: impl Fn(u64) -> QueueState) {
    let mut seq = from;
    while seq < to {
        let end = (seq + 10_000).min(to);
        let batch: Vec<_> = (seq..end).map(|n| (id(n), package(n, state(n)))).collect();
        s.enqueue_all(&batch).expect("enqueue");
        seq = end;
    }
}

fn main() {
    let n: u64 = std::env::var("FERRY_BENCH_RETAINED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = StateStore::open(&dir.path().join("ferry.redb")).expect("store");
    let t = Instant::now();
    fill(&s, 0, n, sent);
    eprintln!(
        "{n} retained packages queued in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Deleting 100,000 due packages (the oldest), as the send loop does:
    // a slice found, then removed in one transaction.
    let doomed = 100_000.min(n / 2);
    let t = Instant::now();
    let mut removed = 0;
    while removed < doomed {
        let due = s.retention_due(T0 + doomed, u64::MAX, 256).expect("due");
        if due.is_empty() {
            break;
        }
        removed += s.remove_retained(&due).expect("remove") as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "retention: {removed} due packages deleted from the store in {secs:.2} s: {:.0} packages/s",
        removed as f64 / secs
    );
    fill(&s, 0, doomed, sent);
    // The same as before: a record read and a transaction per package (a
    // tenth as many, it is slow).
    let t = Instant::now();
    for n in 0..doomed / 10 {
        black_box(s.get(id(n)).expect("get"));
        s.remove(id(n)).expect("remove");
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "before: {} packages removed one transaction each in {secs:.2} s: {:.0} packages/s",
        doomed / 10,
        (doomed / 10) as f64 / secs
    );
    fill(&s, 0, doomed / 10, sent);

    let mut c = Criterion::default().sample_size(10).configure_from_args();
    c.bench_function("retention/look, nothing due", |b| {
        b.iter(|| black_box(s.retention_due(0, u64::MAX, 256).expect("look")))
    });
    c.bench_function("retention/every row (before)", |b| {
        b.iter(|| {
            let mut rows: Vec<_> = s
                .queue_rows(0, usize::MAX)
                .expect("rows")
                .into_iter()
                .filter(|r| matches!(r.state, QueueState::Sent { .. }))
                .collect();
            rows.sort_by_key(|r| r.enqueued_unix_ms);
            black_box(rows.iter().map(|r| r.bytes).sum::<u64>())
        })
    });
    let mut next = n;
    c.bench_function("retention/queue 64, mark them sending, then sent", |b| {
        b.iter(|| {
            fill(&s, next, next + 64, |_| QueueState::Queued);
            let change = |state| {
                (next..next + 64)
                    .map(|n| StateChange {
                        id: id(n),
                        seq: n,
                        state,
                    })
                    .collect::<Vec<_>>()
            };
            s.set_states(&change(QueueState::Sending)).expect("sending");
            s.set_states(&change(sent(next))).expect("sent");
            next += 64;
        })
    });
    c.final_summary();
}
