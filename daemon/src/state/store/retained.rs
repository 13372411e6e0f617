//! The ingress retention totals: how many sent packages are kept for
//! resends and how many bytes they hold. Counted once at open, then moved
//! by what each committed transaction changed (`queue.rs` passes every
//! `queue_state` row it replaces or removes, and every row it writes,
//! through [`follow_row`]), so the send loop's look at retention and the
//! status read two numbers instead of every row: at the default bound
//! (1 GiB of 1 KiB packages) that was a million rows and a 50 MB list
//! every 10 s. Kept in memory, not in a table, so that marking a batch
//! sent (the hot path) writes nothing more than before.

use crate::state::store::error::StoreError;
use crate::state::store::tables::{QueueStateRow, StateStore, QUEUE_STATE};
use redb::ReadableTable;

/// The `queue_state` tag of a sent (retained) package.
pub(super) const SENT_TAG: u8 = 2;

/// What one transaction changed in the totals; added to them once it has
/// committed ([`StateStore::add_retained`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct RetainedDelta {
    count: i64,
    bytes: i128,
}

/// Counts one `queue_state` change: `old` is the row replaced or removed,
/// `new` the row written.
pub(super) fn follow_row(
    delta: &mut RetainedDelta,
    old: Option<QueueStateRow>,
    new: Option<QueueStateRow>,
) {
    if let Some(row) = old.filter(|r| r.0 == SENT_TAG) {
        delta.count -= 1;
        delta.bytes -= i128::from(row.3);
    }
    if let Some(row) = new.filter(|r| r.0 == SENT_TAG) {
        delta.count += 1;
        delta.bytes += i128::from(row.3);
    }
}

/// Applies `d` to `(count, bytes)`, never below zero.
fn add((count, bytes): (u64, u64), d: RetainedDelta) -> (u64, u64) {
    let count = i128::from(count) + i128::from(d.count);
    let bytes = i128::from(bytes) + d.bytes;
    let clamp = |v: i128| u64::try_from(v.max(0)).unwrap_or(u64::MAX);
    (clamp(count), clamp(bytes))
}

impl StateStore {
    /// Packages retained for resends and their bytes, as of the last
    /// commit.
    pub fn retained(&self) -> (u64, u64) {
        // Two numbers, whole after every update: a panic elsewhere while
        // the lock was held leaves nothing half-written to refuse.
        *self.retained.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds what a committed transaction changed to the totals.
    pub(super) fn add_retained(&self, d: RetainedDelta) {
        if d == RetainedDelta::default() {
            return;
        }
        let mut t = self.retained.lock().unwrap_or_else(|e| e.into_inner());
        *t = add(*t, d);
    }

    /// At open: counts the sent packages and their bytes (one read of
    /// every row, once per start).
    pub(super) fn count_retained(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let states = tx.open_table(QUEUE_STATE).map_err(|e| self.db_err(e))?;
        let mut delta = RetainedDelta::default();
        for entry in states.iter().map_err(|e| self.db_err(e))? {
            let (_, row) = entry.map_err(|e| self.db_err(e))?;
            follow_row(&mut delta, None, Some(row.value()));
        }
        *self.retained.lock().unwrap_or_else(|e| e.into_inner()) = add((0, 0), delta);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sent_rows_count_and_totals_never_go_below_zero() {
        let row = |tag: u8, bytes: u64| (tag, 1, 2, bytes, 3, [0u8; 16]);
        let mut d = RetainedDelta::default();
        follow_row(&mut d, Some(row(0, 7)), Some(row(1, 7)));
        assert_eq!(d, RetainedDelta::default());
        follow_row(&mut d, Some(row(1, 7)), Some(row(SENT_TAG, 7)));
        follow_row(&mut d, Some(row(SENT_TAG, 7)), Some(row(SENT_TAG, 7)));
        assert_eq!(add((0, 0), d), (1, 7));
        follow_row(&mut d, Some(row(SENT_TAG, 7)), None);
        follow_row(&mut d, Some(row(SENT_TAG, 100)), None);
        follow_row(&mut d, Some(row(SENT_TAG, 100)), None);
        assert_eq!(add((2, 50), d), (0, 0));
        assert_eq!(add((5, 250), d), (3, 50));
    }
}
