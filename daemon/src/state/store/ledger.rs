//! The egress side's delivery ledger (`ledger`) and the replay window that
//! goes with it (in `blobs`). A ledger entry and the window that accepts it
//! are written in one transaction, so after a crash both are there or
//! neither.

use crate::state::store::error::StoreError;
use crate::state::store::tables::{
    PackageIdBytes, StateStore, BLOBS, COUNTERS, LEDGER, LEDGER_AGE, LEDGER_AGES_FILLED_KEY,
    LEDGER_PRUNED_BELOW_KEY, REPLAY_KEY,
};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// One package in the egress delivery ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Sequence number it arrived under.
    pub seq: u64,
    /// How far delivery got.
    pub state: LedgerState,
}

/// How far the delivery of a package got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerState {
    /// Verified and staged; the rename into the outbox may not have
    /// happened. Finished at start-up after a crash.
    Delivering {
        /// Staging name in the outbox's staging directory.
        staging: String,
        /// File name the package asked for.
        final_name: String,
    },
    /// Verified, durable in `OUTBOX/.forward/`, and waiting for (or
    /// between attempts at) its downstream HTTPS endpoint.
    Forwarding {
        /// The endpoint (`https://…`) the channel's policy named when the
        /// package arrived.
        url: String,
        /// File name the package asked for (sent in `X-Ferry-File-Name`).
        file_name: String,
        /// Attempts that failed so far.
        attempts: u32,
        /// The last failure, for the status.
        #[serde(default)]
        last_error: Option<String>,
        /// Set when the endpoint refused the package outright (a 4xx
        /// other than 408/425/429): not retried until an operator says so.
        #[serde(default)]
        parked: Option<String>,
        /// When it was queued for the endpoint, ms since the Unix epoch.
        since_unix_ms: u64,
    },
    /// In the outbox, or accepted by the downstream endpoint.
    Delivered {
        /// When, ms since the Unix epoch.
        unix_ms: u64,
        /// The file name it got (after collision handling).
        name: String,
    },
}

impl StateStore {
    /// The persisted replay window, if one was saved.
    pub fn load_replay(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let blobs = tx.open_table(BLOBS).map_err(|e| self.db_err(e))?;
        let found = blobs.get(REPLAY_KEY).map_err(|e| self.db_err(e))?;
        Ok(found.map(|v| v.value().to_vec()))
    }

    /// Persists the replay window.
    pub fn save_replay(&self, window: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut blobs = tx.open_table(BLOBS).map_err(|e| self.db_err(e))?;
            blobs
                .insert(REPLAY_KEY, window)
                .map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// Records that `id` is about to be renamed into the outbox, together
    /// with the replay window that accepts it, in one transaction: after a
    /// crash either both are there (finish the delivery) or neither (the
    /// package is received again). Refuses an id the ledger already holds.
    /// `created_unix_ms` is the package's creation time (its manifest's),
    /// by which the entry is pruned ([`StateStore::prune_ledger`]).
    pub fn begin_delivery(
        &self,
        id: PackageIdBytes,
        entry: &LedgerEntry,
        created_unix_ms: u64,
        replay_window: &[u8],
    ) -> Result<(), StoreError> {
        self.begin_deliveries(&[(id, entry, created_unix_ms)], replay_window)
    }

    /// [`StateStore::begin_delivery`] for a batch, in one transaction:
    /// all of them are recorded or none.
    pub fn begin_deliveries(
        &self,
        entries: &[(PackageIdBytes, &LedgerEntry, u64)],
        replay_window: &[u8],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut ledger = tx.open_table(LEDGER).map_err(|e| self.db_err(e))?;
            let mut ages = tx.open_table(LEDGER_AGE).map_err(|e| self.db_err(e))?;
            for (id, entry, created) in entries {
                let json = self.encode("ledger entry", *entry)?;
                if ledger.get(id).map_err(|e| self.db_err(e))?.is_some() {
                    // Dropping `tx` without commit aborts it: nothing changes.
                    return Err(StoreError::AlreadyInLedger {
                        id: hex::encode(id),
                    });
                }
                ledger
                    .insert(id, json.as_str())
                    .map_err(|e| self.db_err(e))?;
                ages.insert(&age_key(*created, id), ())
                    .map_err(|e| self.db_err(e))?;
            }
            let mut blobs = tx.open_table(BLOBS).map_err(|e| self.db_err(e))?;
            blobs
                .insert(REPLAY_KEY, replay_window)
                .map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// Marks `id` delivered under `name`, keeping its sequence number.
    pub fn finish_delivery(
        &self,
        id: PackageIdBytes,
        name: &str,
        unix_ms: u64,
    ) -> Result<(), StoreError> {
        self.finish_deliveries(&[(id, name.to_owned())], unix_ms)
    }

    /// [`StateStore::finish_delivery`] for a batch, in one transaction.
    pub fn finish_deliveries(
        &self,
        done: &[(PackageIdBytes, String)],
        unix_ms: u64,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut ledger = tx.open_table(LEDGER).map_err(|e| self.db_err(e))?;
            for (id, name) in done {
                let seq = match ledger.get(id).map_err(|e| self.db_err(e))? {
                    Some(v) => self.decode::<LedgerEntry>(ledger_what(id), v.value())?.seq,
                    None => {
                        return Err(StoreError::NotInLedger {
                            id: hex::encode(id),
                        })
                    }
                };
                let entry = LedgerEntry {
                    seq,
                    state: LedgerState::Delivered {
                        unix_ms,
                        name: name.clone(),
                    },
                };
                let json = self.encode("ledger entry", &entry)?;
                ledger
                    .insert(id, json.as_str())
                    .map_err(|e| self.db_err(e))?;
            }
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// The ledger entry of `id`.
    pub fn ledger_get(&self, id: PackageIdBytes) -> Result<Option<LedgerEntry>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let ledger = tx.open_table(LEDGER).map_err(|e| self.db_err(e))?;
        let found = ledger.get(&id).map_err(|e| self.db_err(e))?;
        match found {
            Some(v) => Ok(Some(self.decode(ledger_what(&id), v.value())?)),
            None => Ok(None),
        }
    }

    /// Which of `ids` the ledger holds (in any state), in one read: the
    /// egress writer's duplicate check for a batch of arrivals, which
    /// needs no entry decoded.
    pub fn ledger_holds(&self, ids: &[PackageIdBytes]) -> Result<Vec<bool>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let ledger = tx.open_table(LEDGER).map_err(|e| self.db_err(e))?;
        ids.iter()
            .map(|id| Ok(ledger.get(id).map_err(|e| self.db_err(e))?.is_some()))
            .collect()
    }

    /// Forgets `id` (a delivery that failed after `begin_delivery`, so a
    /// resend may deliver it). Returns whether it was there.
    pub fn ledger_remove(&self, id: PackageIdBytes) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let existed = {
            let mut ledger = tx.open_table(LEDGER).map_err(|e| self.db_err(e))?;
            let removed = ledger.remove(&id).map_err(|e| self.db_err(e))?;
            removed.is_some()
        };
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(existed)
    }

    /// Deliveries a crash interrupted, for recovery at start-up.
    pub fn list_delivering(&self) -> Result<Vec<(PackageIdBytes, LedgerEntry)>, StoreError> {
        self.list_ledger(|s| matches!(s, LedgerState::Delivering { .. }))
    }

    /// Packages waiting for their downstream endpoint, in sequence order.
    pub fn list_forwarding(&self) -> Result<Vec<(PackageIdBytes, LedgerEntry)>, StoreError> {
        self.list_ledger(|s| matches!(s, LedgerState::Forwarding { .. }))
    }

    /// Replaces the ledger entry of a package still being forwarded (its
    /// attempts, last error, parking). Refuses an id that is not
    /// forwarding any more, so a late update cannot undo a delivery.
    pub fn update_forwarding(
        &self,
        id: PackageIdBytes,
        entry: &LedgerEntry,
    ) -> Result<(), StoreError> {
        let json = self.encode("ledger entry", entry)?;
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut ledger = tx.open_table(LEDGER).map_err(|e| self.db_err(e))?;
            let forwarding = match ledger.get(&id).map_err(|e| self.db_err(e))? {
                Some(v) => matches!(
                    self.decode::<LedgerEntry>(ledger_what(&id), v.value())?
                        .state,
                    LedgerState::Forwarding { .. }
                ),
                None => false,
            };
            if !forwarding {
                return Err(StoreError::NotForwarding {
                    id: hex::encode(id),
                });
            }
            ledger
                .insert(&id, json.as_str())
                .map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// Forgets delivered packages created before `below_unix_ms`, oldest
    /// first, from `from` (the start: `None`) on, at most `max_rows` age
    /// rows in this transaction; entries still delivering or forwarding
    /// stay. [`LedgerPrune::next`] says where the next call goes on.
    /// Records `below_unix_ms` as the pruned horizon
    /// ([`StateStore::ledger_pruned_below`]) in the same transaction, never
    /// lowering it.
    pub fn prune_ledger(
        &self,
        below_unix_ms: u64,
        from: Option<LedgerCursor>,
        max_rows: usize,
    ) -> Result<LedgerPrune, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let mut out = LedgerPrune::default();
        {
            let mut ledger = tx.open_table(LEDGER).map_err(|e| self.db_err(e))?;
            let mut ages = tx.open_table(LEDGER_AGE).map_err(|e| self.db_err(e))?;
            let start = from.map_or([0; 24], |c| c.0);
            let end = age_key(below_unix_ms, &[0; 16]);
            let mut due = Vec::new();
            if start < end {
                for row in ages
                    .range::<&[u8; 24]>(&start..&end)
                    .map_err(|e| self.db_err(e))?
                {
                    let (k, _) = row.map_err(|e| self.db_err(e))?;
                    if due.len() == max_rows {
                        out.next = Some(LedgerCursor(*k.value()));
                        break;
                    }
                    due.push(*k.value());
                }
            }
            for key in &due {
                let mut id = [0u8; 16];
                id.copy_from_slice(&key[8..]);
                let delivered = match ledger.get(&id).map_err(|e| self.db_err(e))? {
                    None => None,
                    Some(v) => Some(matches!(
                        self.decode::<LedgerEntry>(ledger_what(&id), v.value())?
                            .state,
                        LedgerState::Delivered { .. }
                    )),
                };
                match delivered {
                    // Still on its way (a crash to recover, an endpoint
                    // down): kept, and its age row with it.
                    Some(false) => {
                        out.in_flight += 1;
                        continue;
                    }
                    Some(true) => {
                        ledger.remove(&id).map_err(|e| self.db_err(e))?;
                        out.removed += 1;
                    }
                    None => {}
                }
                ages.remove(key).map_err(|e| self.db_err(e))?;
            }
            let mut counters = tx.open_table(COUNTERS).map_err(|e| self.db_err(e))?;
            let before = counters
                .get(LEDGER_PRUNED_BELOW_KEY)
                .map_err(|e| self.db_err(e))?
                .map_or(0, |v| v.value());
            if below_unix_ms > before {
                counters
                    .insert(LEDGER_PRUNED_BELOW_KEY, below_unix_ms)
                    .map_err(|e| self.db_err(e))?;
            }
        }
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(out)
    }

    /// Packages created before this (ms since the Unix epoch) may have been
    /// pruned from the ledger; 0 if nothing ever was.
    pub fn ledger_pruned_below(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let counters = tx.open_table(COUNTERS).map_err(|e| self.db_err(e))?;
        Ok(counters
            .get(LEDGER_PRUNED_BELOW_KEY)
            .map_err(|e| self.db_err(e))?
            .map_or(0, |v| v.value()))
    }

    /// Gives every ledger entry written before `ledger_age` existed an age
    /// row, once. Their creation time is not known; `now_unix_ms` stands
    /// for it, which is later than the real one, so they are pruned late,
    /// never early.
    pub(super) fn fill_ledger_ages(&self, now_unix_ms: u64) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let filled = {
            let mut counters = tx.open_table(COUNTERS).map_err(|e| self.db_err(e))?;
            if counters
                .get(LEDGER_AGES_FILLED_KEY)
                .map_err(|e| self.db_err(e))?
                .is_some()
            {
                return Ok(());
            }
            let ledger = tx.open_table(LEDGER).map_err(|e| self.db_err(e))?;
            let mut ages = tx.open_table(LEDGER_AGE).map_err(|e| self.db_err(e))?;
            let mut n = 0u64;
            for row in ledger.iter().map_err(|e| self.db_err(e))? {
                let (k, _) = row.map_err(|e| self.db_err(e))?;
                ages.insert(&age_key(now_unix_ms, k.value()), ())
                    .map_err(|e| self.db_err(e))?;
                n += 1;
            }
            counters
                .insert(LEDGER_AGES_FILLED_KEY, 1)
                .map_err(|e| self.db_err(e))?;
            n
        };
        tx.commit().map_err(|e| self.db_err(e))?;
        if filled > 0 {
            tracing::info!(
                packages = filled,
                "state store: delivery ledger entries of an earlier version given an age (now), from which they are pruned"
            );
        }
        Ok(())
    }

    fn list_ledger(
        &self,
        keep: impl Fn(&LedgerState) -> bool,
    ) -> Result<Vec<(PackageIdBytes, LedgerEntry)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let ledger = tx.open_table(LEDGER).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in ledger.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = row.map_err(|e| self.db_err(e))?;
            let id = *k.value();
            let entry: LedgerEntry = self.decode(ledger_what(&id), v.value())?;
            if keep(&entry.state) {
                out.push((id, entry));
            }
        }
        out.sort_by_key(|(_, e)| e.seq);
        Ok(out)
    }
}

/// What one [`StateStore::prune_ledger`] call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LedgerPrune {
    /// Delivered entries forgotten.
    pub removed: u64,
    /// Entries old enough but still delivering or forwarding: kept.
    pub in_flight: u64,
    /// More rows were due than this call took: where the next call goes
    /// on (past the entries kept, so a long run of them cannot stall it).
    pub next: Option<LedgerCursor>,
}

/// Where a pruning round stopped, for its next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerCursor([u8; 24]);

/// A `ledger_age` key: creation time (big-endian), then the id.
fn age_key(created_unix_ms: u64, id: &PackageIdBytes) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&created_unix_ms.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

fn ledger_what(id: &PackageIdBytes) -> String {
    format!("ledger/{}", hex::encode(id))
}
