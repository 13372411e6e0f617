//! The egress side's open gaps, as durable state: sequence numbers the
//! sender finished with that were never delivered here.
//!
//! The protocol receiver reports a gap once; this book keeps it (in the
//! state store, so a restart or a crash does not forget it) until a package
//! fills it — arriving late under its own sequence number, or resent under
//! a new one whose signed manifest names it (`first_seq`) — or until an
//! administrator acknowledges, audited, that it will never come. While any
//! gap is open the status lists it, a gauge counts its sequence numbers
//! and an alarm says what to resend.

use crate::state::store::{StateStore, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Key of the book in the state store.
const GAPS_KEY: &str = "egress_gaps";
/// Key of the newest heartbeat's sender time in the state store.
const HEARTBEAT_KEY: &str = "egress_newest_heartbeat_ms";
/// Most ranges kept. Beyond it the two closest ranges are merged: the book
/// may then over-report (name delivered numbers between them), never
/// under-report; a resend of a delivered package is suppressed by the
/// ledger and still closes its number.
pub const MAX_GAP_RANGES: usize = 4096;
/// Prefix of the alarm an open gap raises.
pub const GAP_ALARM_PREFIX: &str = "link gap:";

/// One open range of missing sequence numbers (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// First missing.
    pub first: u64,
    /// Last missing (inclusive).
    pub last: u64,
    /// When it was first reported, ms since the Unix epoch.
    pub opened_unix_ms: u64,
}

/// The open gaps, by first sequence number; ranges never overlap.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapBook {
    ranges: BTreeMap<u64, Gap>,
}

impl GapBook {
    /// The book as last saved (empty on a fresh store).
    pub fn load(store: &StateStore) -> Result<GapBook, StoreError> {
        let Some(bytes) = store.blob_get(GAPS_KEY)? else {
            return Ok(GapBook::default());
        };
        // A book that does not parse is not silently emptied: the caller
        // refuses to start, naming the store.
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: store.path().to_path_buf(),
            what: GAPS_KEY.into(),
            detail: e.to_string(),
        })
    }

    /// Saves the book (one transaction).
    pub fn save(&self, store: &StateStore) -> Result<(), StoreError> {
        let json = serde_json::to_vec(self).map_err(|e| StoreError::Corrupt {
            path: store.path().to_path_buf(),
            what: GAPS_KEY.into(),
            detail: e.to_string(),
        })?;
        store.blob_put(GAPS_KEY, &json)
    }

    /// Adds `first..=last`; returns how many numbers were not open before
    /// (a gap reported again after a restart adds nothing).
    pub fn open(&mut self, first: u64, last: u64, now_unix_ms: u64) -> u64 {
        if last < first {
            return 0;
        }
        let mut lo = first;
        let mut hi = last;
        let mut opened = now_unix_ms;
        let mut already = 0u64;
        // Absorb every range that overlaps or touches the new one.
        let touching: Vec<u64> = self
            .ranges
            .range(..=last.saturating_add(1))
            .filter(|(_, g)| g.last.saturating_add(1) >= first)
            .map(|(k, _)| *k)
            .collect();
        for k in touching {
            if let Some(g) = self.ranges.remove(&k) {
                let (a, b) = (g.first.max(first), g.last.min(last));
                if a <= b {
                    already += b - a + 1;
                }
                lo = lo.min(g.first);
                hi = hi.max(g.last);
                opened = opened.min(g.opened_unix_ms);
            }
        }
        self.ranges.insert(
            lo,
            Gap {
                first: lo,
                last: hi,
                opened_unix_ms: opened,
            },
        );
        self.bound();
        (last - first + 1) - already
    }

    /// Closes one number (its package was delivered). Returns whether it
    /// was open.
    pub fn close(&mut self, seq: u64) -> bool {
        let Some((&k, &g)) = self.ranges.range(..=seq).next_back() else {
            return false;
        };
        if g.last < seq {
            return false;
        }
        self.ranges.remove(&k);
        if g.first < seq {
            self.ranges.insert(g.first, Gap { last: seq - 1, ..g });
        }
        if seq < g.last {
            self.ranges.insert(
                seq + 1,
                Gap {
                    first: seq + 1,
                    ..g
                },
            );
        }
        true
    }

    /// Removes `first..=last` (acknowledged as never coming); returns how
    /// many open numbers that removed.
    pub fn acknowledge(&mut self, first: u64, last: u64) -> u64 {
        if last < first {
            return 0;
        }
        let before = self.seqs_open();
        let touched: Vec<Gap> = self
            .ranges
            .range(..=last)
            .filter(|(_, g)| g.last >= first)
            .map(|(_, g)| *g)
            .collect();
        for g in touched {
            self.ranges.remove(&g.first);
            if g.first < first {
                self.ranges.insert(
                    g.first,
                    Gap {
                        last: first - 1,
                        ..g
                    },
                );
            }
            if last < g.last {
                self.ranges.insert(
                    last + 1,
                    Gap {
                        first: last + 1,
                        ..g
                    },
                );
            }
        }
        before - self.seqs_open()
    }

    /// Sequence numbers open.
    pub fn seqs_open(&self) -> u64 {
        self.ranges.values().map(|g| g.last - g.first + 1).sum()
    }

    /// The open ranges, oldest sequence numbers first.
    pub fn ranges(&self) -> impl Iterator<Item = &Gap> {
        self.ranges.values()
    }

    /// Whether nothing is open.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The operator-facing alarm while gaps are open.
    pub fn alarm(&self) -> Option<String> {
        let first = self.ranges.values().next()?;
        Some(format!(
            "{GAP_ALARM_PREFIX} {} sequence number(s) in {} range(s) never delivered, oldest {}..{}: resend them from the ingress side (`ferryctl resend --config INGRESS.toml --seq {}..{}`), or, if they will never come, acknowledge them on this side (`ferryctl gaps ack --config EGRESS.toml {}..{} --reason TEXT`, audited)",
            self.seqs_open(),
            self.ranges.len(),
            first.first,
            first.last,
            first.first,
            first.last,
            first.first,
            first.last,
        ))
    }

    fn bound(&mut self) {
        while self.ranges.len() > MAX_GAP_RANGES {
            // Merge the two neighbours with the fewest numbers between them.
            let gs: Vec<Gap> = self.ranges.values().copied().collect();
            let Some(i) = (0..gs.len() - 1).min_by_key(|i| gs[i + 1].first - gs[*i].last) else {
                return;
            };
            self.ranges.remove(&gs[i + 1].first);
            self.ranges.insert(
                gs[i].first,
                Gap {
                    first: gs[i].first,
                    last: gs[i + 1].last,
                    opened_unix_ms: gs[i].opened_unix_ms.min(gs[i + 1].opened_unix_ms),
                },
            );
        }
    }
}

/// The sender time of the newest fresh heartbeat, as saved.
pub fn load_newest_heartbeat(store: &StateStore) -> Result<Option<u64>, StoreError> {
    Ok(store.blob_get(HEARTBEAT_KEY)?.and_then(|b| {
        let a: [u8; 8] = b.as_slice().try_into().ok()?;
        Some(u64::from_be_bytes(a))
    }))
}

/// Saves the sender time of the newest fresh heartbeat, so that after a
/// restart a captured heartbeat is not fresh again.
pub fn save_newest_heartbeat(store: &StateStore, sender_time_ms: u64) -> Result<(), StoreError> {
    store.blob_put(HEARTBEAT_KEY, &sender_time_ms.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(b: &GapBook) -> Vec<(u64, u64)> {
        b.ranges().map(|g| (g.first, g.last)).collect()
    }

    #[test]
    fn open_merges_and_counts_only_new_numbers() {
        let mut b = GapBook::default();
        assert_eq!(b.open(5, 9, 1), 5);
        assert_eq!(b.open(7, 12, 2), 3, "reported again after a restart");
        assert_eq!(b.open(13, 13, 3), 1, "touching ranges merge");
        assert_eq!(seqs(&b), vec![(5, 13)]);
        assert_eq!(b.ranges().next().map(|g| g.opened_unix_ms), Some(1));
        assert_eq!(b.open(9, 3, 4), 0, "an empty range opens nothing");
    }

    #[test]
    fn close_splits_and_acknowledge_removes() {
        let mut b = GapBook::default();
        b.open(10, 20, 1);
        assert!(b.close(15));
        assert!(!b.close(15));
        assert!(!b.close(30));
        assert_eq!(seqs(&b), vec![(10, 14), (16, 20)]);
        assert!(b.close(10) && b.close(20));
        assert_eq!(seqs(&b), vec![(11, 14), (16, 19)]);
        assert_eq!(b.acknowledge(13, 17), 4);
        assert_eq!(seqs(&b), vec![(11, 12), (18, 19)]);
        assert_eq!(b.seqs_open(), 4);
        assert!(b.alarm().is_some_and(|a| a.contains("11..12")));
        b.acknowledge(0, u64::MAX);
        assert!(b.is_empty() && b.alarm().is_none());
    }

    #[test]
    fn the_book_is_bounded_and_never_under_reports() {
        let mut b = GapBook::default();
        for i in 0..(MAX_GAP_RANGES as u64 + 10) {
            b.open(i * 3, i * 3, 0);
        }
        assert!(b.ranges().count() <= MAX_GAP_RANGES);
        for i in 0..(MAX_GAP_RANGES as u64 + 10) {
            let s = i * 3;
            assert!(b.ranges().any(|g| g.first <= s && s <= g.last), "{s} lost");
        }
    }

    #[test]
    fn survives_a_reopen_of_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ferry.redb");
        {
            let store = StateStore::open(&path).expect("store");
            let mut b = GapBook::default();
            b.open(3, 4, 9);
            b.save(&store).expect("save");
            save_newest_heartbeat(&store, 77).expect("save");
        }
        let store = StateStore::open(&path).expect("store");
        assert_eq!(seqs(&GapBook::load(&store).expect("load")), vec![(3, 4)]);
        assert_eq!(load_newest_heartbeat(&store).expect("load"), Some(77));
    }
}
