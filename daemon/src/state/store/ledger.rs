//! The egress side's delivery ledger (`ledger`) and the replay window that
//! goes with it (in `blobs`). A ledger entry and the window that accepts it
//! are written in one transaction, so after a crash both are there or
//! neither.

use crate::state::store::error::StoreError;
use crate::state::store::tables::{PackageIdBytes, StateStore, BLOBS, LEDGER, REPLAY_KEY};
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
    pub fn begin_delivery(
        &self,
        id: PackageIdBytes,
        entry: &LedgerEntry,
        replay_window: &[u8],
    ) -> Result<(), StoreError> {
        self.begin_deliveries(&[(id, entry)], replay_window)
    }

    /// [`StateStore::begin_delivery`] for a batch, in one transaction:
    /// all of them are recorded or none.
    pub fn begin_deliveries(
        &self,
        entries: &[(PackageIdBytes, &LedgerEntry)],
        replay_window: &[u8],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut ledger = tx.open_table(LEDGER).map_err(|e| self.db_err(e))?;
            for (id, entry) in entries {
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

fn ledger_what(id: &PackageIdBytes) -> String {
    format!("ledger/{}", hex::encode(id))
}
