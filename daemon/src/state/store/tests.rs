//! The store's tests: each table's round trips, and the promises that
//! span tables (one transaction, reopen keeps everything).

use crate::state::store::tables::{BLOBS, LEDGER, REPLAY_KEY};
use crate::state::store::*;

fn pkg(seq: u64, state: QueueState) -> QueuedPackage {
    QueuedPackage {
        seq,
        path: format!("/q/{seq}"),
        meta_json: format!("{{\"seq\":{seq}}}"),
        inline: false,
        state,
        bytes: 100 + seq,
        enqueued_unix_ms: 1_700_000_000_000 + seq,
    }
}

fn id(n: u8) -> PackageIdBytes {
    [n; 16]
}

fn delivering(seq: u64) -> LedgerEntry {
    LedgerEntry {
        seq,
        state: LedgerState::Delivering {
            staging: format!("{seq}-0"),
            final_name: "a.csv".into(),
        },
    }
}

#[test]
fn store_is_shared_between_threads() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<StateStore>();
}

#[test]
fn queue_round_trip_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open(&dir.path().join("ferry.redb")).unwrap();
    s.enqueue(id(3), &pkg(30, QueueState::Queued)).unwrap();
    s.enqueue(id(1), &pkg(10, QueueState::Queued)).unwrap();
    s.enqueue(id(2), &pkg(20, QueueState::Sending)).unwrap();
    assert_eq!(s.get(id(1)).unwrap(), Some(pkg(10, QueueState::Queued)));
    assert_eq!(s.get(id(9)).unwrap(), None);
    let all: Vec<u64> = s.list(None).unwrap().iter().map(|(_, p)| p.seq).collect();
    assert_eq!(all, vec![10, 20, 30]);
    let queued: Vec<_> = s.list(Some(QueueState::Queued)).unwrap();
    assert_eq!(
        queued,
        vec![
            (id(1), pkg(10, QueueState::Queued)),
            (id(3), pkg(30, QueueState::Queued))
        ]
    );

    let sent = QueueState::Sent {
        times: 2,
        last_unix_ms: 5,
    };
    s.set_state(id(2), sent).unwrap();
    assert_eq!(s.get(id(2)).unwrap().unwrap().state, sent);
    let any_sent = QueueState::Sent {
        times: 0,
        last_unix_ms: 0,
    };
    assert_eq!(
        s.list(Some(any_sent)).unwrap(),
        vec![(id(2), pkg(20, sent))]
    );
    assert!(s.list(Some(QueueState::Sending)).unwrap().is_empty());

    let range: Vec<u64> = s
        .find_by_seq_range(15, 30)
        .unwrap()
        .iter()
        .map(|(_, p)| p.seq)
        .collect();
    assert_eq!(range, vec![20, 30]);
    assert!(s.find_by_seq_range(31, 40).unwrap().is_empty());
    assert!(s.find_by_seq_range(30, 10).unwrap().is_empty());

    assert_eq!(s.remove(id(1)).unwrap(), Some(pkg(10, QueueState::Queued)));
    assert_eq!(s.remove(id(1)).unwrap(), None);
    assert_eq!(s.queue_len().unwrap(), 2);
    assert!(s.find_by_seq_range(10, 10).unwrap().is_empty());
    assert!(matches!(
        s.set_state(id(1), QueueState::Queued),
        Err(StoreError::NotQueued { .. })
    ));
}

#[test]
fn next_queued_reads_only_what_it_returns_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open(&dir.path().join("ferry.redb")).unwrap();
    for n in 1..=9u8 {
        let state = if n % 3 == 0 {
            QueueState::Sending
        } else {
            QueueState::Queued
        };
        s.enqueue(id(n), &pkg(u64::from(n) * 10, state)).unwrap();
    }
    let seqs = |v: Vec<(PackageIdBytes, QueuedPackage)>| -> Vec<u64> {
        v.into_iter().map(|(_, p)| p.seq).collect()
    };
    assert_eq!(seqs(s.next_queued(0, 3).unwrap()), vec![10, 20, 40]);
    assert_eq!(seqs(s.next_queued(41, 3).unwrap()), vec![50, 70, 80]);
    assert_eq!(seqs(s.next_queued(81, 3).unwrap()), Vec::<u64>::new());
    assert!(s.next_queued(0, 0).unwrap().is_empty());
    assert_eq!(s.count_queued().unwrap(), 6);
    assert_eq!(s.count_queued_from(41).unwrap(), 3);
    assert_eq!(s.count_queued_from(91).unwrap(), 0);
}

#[test]
fn requeue_under_a_new_seq_moves_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open(&dir.path().join("ferry.redb")).unwrap();
    s.enqueue(
        id(1),
        &pkg(
            1,
            QueueState::Sent {
                times: 1,
                last_unix_ms: 1,
            },
        ),
    )
    .unwrap();
    s.enqueue(id(2), &pkg(2, QueueState::Queued)).unwrap();
    s.enqueue(id(1), &pkg(3, QueueState::Queued)).unwrap();
    let order: Vec<_> = s
        .list(None)
        .unwrap()
        .iter()
        .map(|(i, p)| (i[0], p.seq))
        .collect();
    assert_eq!(order, vec![(2, 2), (1, 3)]);
    assert!(s.find_by_seq_range(1, 1).unwrap().is_empty());
    // A sequence number belongs to one package only.
    assert!(matches!(
        s.enqueue(id(4), &pkg(2, QueueState::Queued)),
        Err(StoreError::SeqTaken { seq: 2, .. })
    ));
}

#[test]
fn state_changes_leave_the_record_and_are_refused_whole_for_a_wrong_package() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    let sent = QueueState::Sent {
        times: 3,
        last_unix_ms: 77,
    };
    let change = |n: u8, seq: u64, state: QueueState| StateChange {
        id: id(n),
        seq,
        state,
    };
    {
        let s = StateStore::open(&path).unwrap();
        s.enqueue(id(1), &pkg(10, QueueState::Queued)).unwrap();
        s.enqueue(id(2), &pkg(20, QueueState::Queued)).unwrap();
        s.set_states(&[
            change(1, 10, QueueState::Sending),
            change(2, 20, QueueState::Sending),
        ])
        .unwrap();
        s.set_states(&[change(1, 10, sent)]).unwrap();
        // One change names package 1 under package 2's number: the whole
        // batch is refused, the valid change in it included.
        assert!(matches!(
            s.set_states(&[change(2, 20, sent), change(1, 20, QueueState::Queued)]),
            Err(StoreError::NotQueued { .. })
        ));
        assert!(matches!(
            s.set_states(&[change(3, 30, sent)]),
            Err(StoreError::NotQueued { .. })
        ));
    }
    // Across a reopen, every reader sees the changed state with the
    // record as queued.
    let s = StateStore::open(&path).unwrap();
    assert_eq!(s.get(id(1)).unwrap(), Some(pkg(10, sent)));
    assert_eq!(s.get(id(2)).unwrap(), Some(pkg(20, QueueState::Sending)));
    assert_eq!(
        s.list(Some(QueueState::Sending)).unwrap(),
        vec![(id(2), pkg(20, QueueState::Sending))]
    );
    assert_eq!(
        s.find_by_seq_range(10, 10).unwrap(),
        vec![(id(1), pkg(10, sent))]
    );
    assert!(s.next_queued(0, 10).unwrap().is_empty());
    assert_eq!(s.count_queued().unwrap(), 0);
    // Queued again (a requeue writes the record): the record's state
    // holds, not the earlier change.
    s.enqueue(id(1), &pkg(11, QueueState::Queued)).unwrap();
    assert_eq!(s.get(id(1)).unwrap(), Some(pkg(11, QueueState::Queued)));
    assert_eq!(
        s.next_queued(0, 10).unwrap(),
        vec![(id(1), pkg(11, QueueState::Queued))]
    );
    // Removed, then queued afresh: no state change survives the removal.
    assert_eq!(s.remove(id(2)).unwrap(), Some(pkg(20, QueueState::Sending)));
    s.enqueue(id(2), &pkg(21, QueueState::Queued)).unwrap();
    assert_eq!(s.get(id(2)).unwrap(), Some(pkg(21, QueueState::Queued)));
}

#[test]
fn queue_rows_follow_every_change_and_a_store_without_them_gets_them_at_open() {
    use crate::state::store::tables::{LEGACY_QUEUE_BY_SEQ, QUEUE_STATE};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    let sent = QueueState::Sent {
        times: 2,
        last_unix_ms: 9,
    };
    let row = |n: u8, seq: u64, state: QueueState| QueueRow {
        seq,
        id: id(n),
        state,
        bytes: 100 + seq,
        enqueued_unix_ms: 1_700_000_000_000 + seq,
    };
    let expected = vec![
        row(1, 10, sent),
        row(2, 20, QueueState::Sending),
        row(3, 30, QueueState::Queued),
    ];
    {
        let s = StateStore::open(&path).unwrap();
        for n in 1..=4u8 {
            s.enqueue(id(n), &pkg(u64::from(n) * 10, QueueState::Queued))
                .unwrap();
        }
        s.set_state(id(1), sent).unwrap();
        s.set_state(id(2), QueueState::Sending).unwrap();
        s.remove(id(4)).unwrap();
        assert_eq!(s.queue_rows(0, usize::MAX).unwrap(), expected);
        assert_eq!(s.queue_rows(11, 1).unwrap(), vec![expected[1]]);
        assert_eq!(s.queue_rows(20, 1).unwrap(), vec![expected[1]]);
        assert_eq!(s.queue_rows(21, 1).unwrap(), vec![expected[2]]);
        assert!(s.queue_rows(31, 10).unwrap().is_empty());
        // What a store written before the rows existed looks like: each
        // record names its current state, the sequence index too, and no
        // rows.
        s.enqueue(id(1), &pkg(10, sent)).unwrap();
        s.enqueue(id(2), &pkg(20, QueueState::Sending)).unwrap();
        let tx = s.db.begin_write().unwrap();
        tx.delete_table(QUEUE_STATE).unwrap();
        {
            let mut index = tx.open_table(LEGACY_QUEUE_BY_SEQ).unwrap();
            index.insert(10, (id(1), 2)).unwrap();
            index.insert(20, (id(2), 1)).unwrap();
            index.insert(30, (id(3), 0)).unwrap();
        }
        tx.commit().unwrap();
    }
    let tables = |s: &StateStore| -> Vec<String> {
        use redb::TableHandle;
        let tx = s.db.begin_read().unwrap();
        let names = tx.list_tables().unwrap();
        names.map(|t| t.name().to_owned()).collect()
    };
    let s = StateStore::open(&path).unwrap();
    assert_eq!(s.queue_rows(0, usize::MAX).unwrap(), expected);
    assert_eq!(s.get(id(1)).unwrap(), Some(pkg(10, sent)));
    // The index the rows replaced is gone; the rows list the queue.
    assert!(!tables(&s).contains(&"queue_by_seq".to_owned()));
    assert!(tables(&s).contains(&"queue_state".to_owned()));
    assert_eq!(
        s.list(Some(QueueState::Sending)).unwrap(),
        vec![(id(2), pkg(20, QueueState::Sending))]
    );
    assert_eq!(s.count_queued().unwrap(), 1);
    // And the rows keep working from there.
    s.set_state(id(3), QueueState::Sending).unwrap();
    assert_eq!(
        s.queue_rows(30, 1).unwrap(),
        vec![row(3, 30, QueueState::Sending)]
    );
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    {
        let s = StateStore::open(&path).unwrap();
        assert_eq!(s.reserve_seqs(5).unwrap(), 0);
        s.enqueue(id(1), &pkg(4, QueueState::Sending)).unwrap();
        s.save_replay(b"window-1").unwrap();
        s.begin_delivery(id(7), &delivering(9), 0, b"window-2")
            .unwrap();
        s.begin_delivery(id(8), &delivering(10), 0, b"window-3")
            .unwrap();
        s.finish_delivery(id(8), "b.csv", 42).unwrap();
    }
    let s = StateStore::open(&path).unwrap();
    assert_eq!(s.next_seq().unwrap(), 5);
    assert_eq!(s.get(id(1)).unwrap(), Some(pkg(4, QueueState::Sending)));
    assert_eq!(s.list(Some(QueueState::Sending)).unwrap().len(), 1);
    assert_eq!(s.load_replay().unwrap().as_deref(), Some(&b"window-3"[..]));
    assert_eq!(s.list_delivering().unwrap(), vec![(id(7), delivering(9))]);
    assert_eq!(
        s.ledger_get(id(8)).unwrap(),
        Some(LedgerEntry {
            seq: 10,
            state: LedgerState::Delivered {
                unix_ms: 42,
                name: "b.csv".into()
            }
        })
    );
}

#[test]
fn reserve_seqs_is_monotonic_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    let mut last = None;
    for round in 0..3 {
        let s = StateStore::open(&path).unwrap();
        for n in 1..=4 {
            let first = s.reserve_seqs(n).unwrap();
            if let Some((prev_first, prev_n)) = last {
                assert_eq!(first, prev_first + prev_n, "round {round}");
            }
            last = Some((first, n));
        }
    }
    assert_eq!(last, Some((26, 4)));
    let s = StateStore::open(&path).unwrap();
    assert_eq!(s.reserve_seqs(0).unwrap(), 30);
    assert_eq!(s.next_seq().unwrap(), 30);
}

#[test]
fn reserve_seqs_refuses_to_wrap() {
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open(&dir.path().join("ferry.redb")).unwrap();
    s.reserve_seqs(u64::MAX - 1).unwrap();
    assert!(matches!(
        s.reserve_seqs(2),
        Err(StoreError::SeqExhausted { .. })
    ));
    assert_eq!(s.reserve_seqs(1).unwrap(), u64::MAX - 1);
}

#[test]
fn begin_delivery_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open(&dir.path().join("ferry.redb")).unwrap();
    assert_eq!(s.load_replay().unwrap(), None);

    // A reader that started before the commit sees neither write; one
    // after sees both.
    let before = s.db.begin_read().unwrap();
    s.begin_delivery(id(1), &delivering(1), 0, b"after-1")
        .unwrap();
    {
        let ledger = before.open_table(LEDGER).unwrap();
        let blobs = before.open_table(BLOBS).unwrap();
        assert!(ledger.get(&id(1)).unwrap().is_none());
        assert!(blobs.get(REPLAY_KEY).unwrap().is_none());
    }
    assert_eq!(s.ledger_get(id(1)).unwrap(), Some(delivering(1)));
    assert_eq!(s.load_replay().unwrap().as_deref(), Some(&b"after-1"[..]));

    // A refused begin changes nothing, not even the replay window.
    assert!(matches!(
        s.begin_delivery(id(1), &delivering(2), 0, b"after-2"),
        Err(StoreError::AlreadyInLedger { .. })
    ));
    assert_eq!(s.ledger_get(id(1)).unwrap(), Some(delivering(1)));
    assert_eq!(s.load_replay().unwrap().as_deref(), Some(&b"after-1"[..]));

    // Undoing a failed delivery lets a resend begin again.
    assert!(s.ledger_remove(id(1)).unwrap());
    assert!(!s.ledger_remove(id(1)).unwrap());
    s.begin_delivery(id(1), &delivering(2), 0, b"after-2")
        .unwrap();
    assert_eq!(s.load_replay().unwrap().as_deref(), Some(&b"after-2"[..]));
}

#[test]
fn finish_without_begin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open(&dir.path().join("ferry.redb")).unwrap();
    assert!(matches!(
        s.finish_delivery(id(5), "x", 1),
        Err(StoreError::NotInLedger { .. })
    ));
    assert_eq!(s.ledger_get(id(5)).unwrap(), None);
}

#[test]
fn a_second_open_of_the_same_file_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    let _first = StateStore::open(&path).unwrap();
    let e = StateStore::open(&path).unwrap_err();
    assert!(e.to_string().contains("another ferryd"), "{e}");
}

#[test]
fn pruning_forgets_old_deliveries_only_and_keeps_its_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    let s = StateStore::open(&path).unwrap();
    assert_eq!(s.ledger_pruned_below().unwrap(), 0);
    // Created at 10, 20, 30, 40 (ms): 1 and 3 delivered, 2 still
    // delivering, 4 delivered but young; 5 was undone (its row remains).
    for (n, created) in [(1u8, 10u64), (2, 20), (3, 30), (4, 40), (5, 15)] {
        s.begin_delivery(id(n), &delivering(u64::from(n)), created, b"w")
            .unwrap();
    }
    for n in [1u8, 3, 4] {
        s.finish_delivery(id(n), "x", 99).unwrap();
    }
    assert!(s.ledger_remove(id(5)).unwrap());
    // Slices of two rows: the first stops after 1 and 5, the next goes on
    // past 2 (kept: in flight) and removes 3; 4 is past the horizon.
    let p = s.prune_ledger(35, None, 2).unwrap();
    assert_eq!((p.removed, p.in_flight), (1, 0), "{p:?}");
    assert!(p.next.is_some());
    let q = s.prune_ledger(35, p.next, 2).unwrap();
    assert_eq!((q.removed, q.in_flight, q.next), (1, 1, None), "{q:?}");
    assert_eq!(s.ledger_get(id(1)).unwrap(), None);
    assert_eq!(s.ledger_get(id(3)).unwrap(), None);
    assert!(s.ledger_get(id(2)).unwrap().is_some(), "in flight: kept");
    assert!(s.ledger_get(id(4)).unwrap().is_some(), "young: kept");
    // The next round meets only the one in flight; the horizon never
    // goes down, and survives a reopen.
    let r = s.prune_ledger(20, None, 100).unwrap();
    assert_eq!((r.removed, r.in_flight), (0, 0), "{r:?}");
    let r = s.prune_ledger(36, None, 100).unwrap();
    assert_eq!((r.removed, r.in_flight), (0, 1), "{r:?}");
    drop(s);
    let s = StateStore::open(&path).unwrap();
    assert_eq!(s.ledger_pruned_below().unwrap(), 36);
    s.finish_delivery(id(2), "y", 100).unwrap();
    let r = s.prune_ledger(50, None, 100).unwrap();
    assert_eq!((r.removed, r.in_flight), (2, 0), "2 and 4: {r:?}");
}

#[test]
fn ledger_entries_of_an_earlier_version_get_an_age_of_now_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    {
        let s = StateStore::open(&path).unwrap();
        s.begin_delivery(id(1), &delivering(1), 5, b"w").unwrap();
        s.finish_delivery(id(1), "x", 6).unwrap();
        // Make it look written before `ledger_age` existed.
        let tx = s.db.begin_write().unwrap();
        tx.delete_table(crate::state::store::tables::LEDGER_AGE)
            .unwrap();
        {
            let mut c = tx
                .open_table(crate::state::store::tables::COUNTERS)
                .unwrap();
            c.remove(crate::state::store::tables::LEDGER_AGES_FILLED_KEY)
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let s = StateStore::open(&path).unwrap();
    let now = crate::now_millis().0;
    // Not pruned by its real age (5 ms)…
    let p = s
        .prune_ledger(now.saturating_sub(60_000), None, 100)
        .unwrap();
    assert_eq!(p.removed, 0, "{p:?}");
    assert!(s.ledger_get(id(1)).unwrap().is_some());
    // …but by the age it was given when the store was opened.
    let p = s.prune_ledger(now + 60_000, None, 100).unwrap();
    assert_eq!(p.removed, 1, "{p:?}");
}

#[test]
fn retention_totals_follow_every_queue_change_and_the_front_is_due_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    let s = StateStore::open(&path).unwrap();
    // Sent at 1000 + seq: in sequence order, as the send loop sends.
    let sent = |seq: u64| QueueState::Sent {
        times: 1,
        last_unix_ms: 1000 + seq,
    };
    let change = |n: u8, state: QueueState| StateChange {
        id: id(n),
        seq: u64::from(n) * 10,
        state,
    };
    for n in 1..=5u8 {
        s.enqueue(id(n), &pkg(u64::from(n) * 10, QueueState::Queued))
            .unwrap();
    }
    assert_eq!(s.retained(), (0, 0));
    let sending: Vec<_> = (1..=5u8).map(|n| change(n, QueueState::Sending)).collect();
    s.set_states(&sending).unwrap();
    assert_eq!(s.retained(), (0, 0));
    let done: Vec<_> = (1..=5u8)
        .map(|n| change(n, sent(u64::from(n) * 10)))
        .collect();
    s.set_states(&done).unwrap();
    // Bytes are 100 + seq: 110 + 120 + 130 + 140 + 150.
    assert_eq!(s.retained(), (5, 650));
    // Sent again: counted once.
    s.set_state(id(1), sent(10)).unwrap();
    assert_eq!(s.retained(), (5, 650));
    // A resend queues id(2) again under a new number: not retained now.
    s.enqueue(id(2), &pkg(60, QueueState::Queued)).unwrap();
    assert_eq!(s.retained(), (4, 530));
    s.remove(id(3)).unwrap();
    assert_eq!(s.retained(), (3, 400));
    // A failed transaction counts nothing: a state change for a package
    // queued under another number is refused whole.
    assert!(s
        .set_states(&[change(4, sent(45)), change(2, sent(61))])
        .is_err());
    assert_eq!(s.retained(), (3, 400));
    // Reopening counts the same.
    drop(s);
    let s = StateStore::open(&path).unwrap();
    assert_eq!(s.retained(), (3, 400));
    let seqs = |due: Vec<Retired>| due.iter().map(|r| r.seq).collect::<Vec<_>>();
    // Young and within the bytes: nothing.
    assert!(s.retention_due(0, u64::MAX, 10).unwrap().is_empty());
    // By age: last sent before 1045.
    assert_eq!(
        s.retention_due(1045, u64::MAX, 10).unwrap(),
        vec![
            Retired {
                seq: 10,
                id: id(1),
                path: Some("/q/10".into())
            },
            Retired {
                seq: 40,
                id: id(4),
                path: Some("/q/40".into())
            },
        ]
    );
    // By bytes, from the front until at most 200 are left: 400 - 110 =
    // 290, then 290 - 140 = 150.
    assert_eq!(seqs(s.retention_due(0, 200, 10).unwrap()), vec![10, 40]);
    assert_eq!(seqs(s.retention_due(0, 0, 1).unwrap()), vec![10]);
    // The package queued again (seq 60) is not sent: passed over, and a
    // backlog at the front is read at most four times the limit.
    assert_eq!(
        seqs(s.retention_due(u64::MAX, 0, 10).unwrap()),
        vec![10, 40, 50]
    );
    // A resend between the look and the removal keeps its package.
    let due = s.retention_due(0, 0, 10).unwrap();
    assert_eq!(seqs(due.clone()), vec![10, 40, 50]);
    s.enqueue(id(1), &pkg(70, QueueState::Queued)).unwrap();
    assert_eq!(s.remove_retained(&due).unwrap(), 2);
    assert_eq!(s.get(id(1)).unwrap().map(|p| p.seq), Some(70));
    assert_eq!(s.get(id(4)).unwrap(), None);
    assert_eq!(s.get(id(5)).unwrap(), None);
    assert_eq!(s.retained(), (0, 0));
    let left: Vec<u64> = s
        .queue_rows(0, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(left, vec![60, 70]);
    // Removing the same slice again removes and counts nothing.
    assert_eq!(s.remove_retained(&due).unwrap(), 0);
    assert_eq!(s.retained(), (0, 0));
}

#[test]
fn a_backlog_at_the_front_bounds_a_retention_look() {
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open(&dir.path().join("ferry.redb")).unwrap();
    // Ten packages not sent yet, then one sent (a resend sent ahead of
    // them cannot happen; a corrupt or hand-edited order can).
    for n in 1..=10u8 {
        s.enqueue(id(n), &pkg(u64::from(n), QueueState::Queued))
            .unwrap();
    }
    let sent = QueueState::Sent {
        times: 1,
        last_unix_ms: 1,
    };
    s.enqueue(id(11), &pkg(11, sent)).unwrap();
    assert_eq!(s.retained(), (1, 111));
    // Limit 2: at most 8 unsent rows read, the sent one is not reached.
    assert!(s.retention_due(u64::MAX, 0, 2).unwrap().is_empty());
    // Limit 3: 12 rows may be read.
    assert_eq!(s.retention_due(u64::MAX, 0, 3).unwrap().len(), 1);
}

#[test]
fn a_body_kept_in_the_store_follows_its_package_through_resend_retention_and_removal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    let inline = |seq| QueuedPackage {
        inline: true,
        ..pkg(seq, QueueState::Queued)
    };
    {
        let s = StateStore::open(&path).unwrap();
        let mut two = [(id(1), inline(0)), (id(2), pkg(0, QueueState::Queued))];
        s.enqueue_fresh_with_bodies(&mut two, &[Some(b"one".as_slice()), None])
            .unwrap();
        let (a, b) = (two[0].1.seq, two[1].1.seq);
        assert_eq!(
            s.queued_bodies(&[a, b]).unwrap(),
            vec![Some(b"one".to_vec()), None]
        );
        // A package kept in the store without its body is refused whole.
        let mut lone = [(id(3), inline(0))];
        assert!(matches!(
            s.enqueue_fresh(&mut lone),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(s.get(id(3)).unwrap(), None);
        // State changes leave the body; a resend under a new number moves it.
        s.set_states(&[StateChange {
            id: id(1),
            seq: a,
            state: QueueState::Sending,
        }])
        .unwrap();
        let mut again = [(id(1), s.get(id(1)).unwrap().unwrap())];
        again[0].1.state = QueueState::Queued;
        s.enqueue_fresh(&mut again).unwrap();
        let moved = again[0].1.seq;
        assert_ne!(moved, a);
        assert_eq!(
            s.queued_bodies(&[a, moved]).unwrap(),
            vec![None, Some(b"one".to_vec())]
        );
    }
    // Durable with its record; retention takes it with the record.
    let s = StateStore::open(&path).unwrap();
    let q = s.get(id(1)).unwrap().unwrap();
    assert!(q.inline);
    assert_eq!(
        s.queued_bodies(&[q.seq]).unwrap(),
        vec![Some(b"one".to_vec())]
    );
    let sent = QueueState::Sent {
        times: 1,
        last_unix_ms: 5,
    };
    s.set_states(&[
        StateChange {
            id: id(1),
            seq: q.seq,
            state: sent,
        },
        StateChange {
            id: id(2),
            seq: 1,
            state: sent,
        },
    ])
    .unwrap();
    let due = s.retention_due(10, u64::MAX, 10).unwrap();
    let paths: Vec<_> = due.iter().map(|r| (r.id, r.path.clone())).collect();
    assert_eq!(paths, vec![(id(2), Some("/q/0".to_owned())), (id(1), None)]);
    assert_eq!(s.remove_retained(&due).unwrap(), 2);
    assert_eq!(s.queued_bodies(&[q.seq]).unwrap(), vec![None]);
    // And removal takes it too.
    let mut one = [(id(4), inline(0))];
    s.enqueue_fresh_with_bodies(&mut one, &[Some(b"four".as_slice())])
        .unwrap();
    s.remove(id(4)).unwrap();
    assert_eq!(s.queued_bodies(&[one[0].1.seq]).unwrap(), vec![None]);
}
