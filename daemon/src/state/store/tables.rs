//! The store's leaf: the redb tables, the [`StateStore`] handle and the
//! helpers every table's methods share (error mapping, JSON records). The
//! other files of `state/store` add methods to [`StateStore`] per table.

use crate::state::store::error::StoreError;
use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Package id as stored (the protocol's 16-byte id).
pub type PackageIdBytes = [u8; 16];

pub(super) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
pub(super) const QUEUE: TableDefinition<&[u8; 16], &str> = TableDefinition::new("queue");
/// Written by earlier versions: seq → (package id, state tag), the
/// sequence index that `queue_state` (which holds both) replaced. Deleted
/// at open (`fill_queue_rows`).
pub(super) const LEGACY_QUEUE_BY_SEQ: TableDefinition<u64, ([u8; 16], u8)> =
    TableDefinition::new("queue_by_seq");
/// seq → a queued package's row: (state tag, sends, last send ms, bytes,
/// queued at ms, package id). One per queued package, written with its
/// record: the sequence index. A state change (two per package sent)
/// rewrites only the row, not the package description in the record, and
/// the loops that visit every sent package (self-healing re-sends,
/// retention) read rows, which are small, fixed-size and in sequence
/// order, never the records. Stores written before this table existed get
/// their rows at open.
pub(super) const QUEUE_STATE: TableDefinition<u64, QueueStateRow> =
    TableDefinition::new("queue_state");
/// A `queue_state` row: state tag, sends, last send (ms), bytes, queued at
/// (ms), package id.
pub(super) type QueueStateRow = (u8, u32, u64, u64, u64, [u8; 16]);
/// seq → the payload of a queued package kept in the store instead of a
/// file of the queue directory (`QueuedPackage::inline`): a small body
/// pushed over HTTPS. Written, moved (a resend's new number) and deleted
/// in the transactions that write its row, so a body is durable exactly
/// when its package is queued, and gone with it.
pub(super) const QUEUE_BODY: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_body");
pub(super) const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
pub(super) const LEDGER: TableDefinition<&[u8; 16], &str> = TableDefinition::new("ledger");
/// Egress: every ledger entry by age, so that pruning reads only what it
/// deletes: the key is the package's creation time (ms, big-endian, so
/// rows sort by it) followed by its id. A row whose entry is gone (a
/// delivery undone) is dropped when pruning reaches it.
pub(super) const LEDGER_AGE: TableDefinition<&[u8; 24], ()> = TableDefinition::new("ledger_age");
/// Ingress packages held (for approval, a closed window or a stopped
/// channel): outside the sequence order, so a held package never leaves a
/// gap on the egress side.
pub(super) const HELD: TableDefinition<&[u8; 16], &str> = TableDefinition::new("held");

/// The memory the store may use to cache its pages. redb's default is
/// 1 GiB, which a store holding retained bodies (`queue_body`, up to
/// `[retention] max_bytes`) or a large delivery ledger would fill over
/// time: the daemons' memory must be bounded by their configuration. The
/// hot pages (the queue's front, bodies sent within milliseconds of being
/// queued, the ledger's recent entries) fit in far less.
const CACHE_BYTES: usize = 64 << 20;

pub(super) const NEXT_SEQ_KEY: &str = "next_seq";
pub(super) const REPLAY_KEY: &str = "replay_window";
pub(super) const STOPPED_KEY: &str = "stopped_channels";
/// In `counters`: set once every ledger entry has its `ledger_age` row.
pub(super) const LEDGER_AGES_FILLED_KEY: &str = "ledger_ages_filled";
/// In `counters`: entries of packages created before this (ms) may have
/// been pruned from the ledger.
pub(super) const LEDGER_PRUNED_BELOW_KEY: &str = "ledger_pruned_below_ms";

/// The daemon's durable state; one per state directory. Safe to share
/// between threads (redb serializes writers).
#[derive(Debug)]
pub struct StateStore {
    pub(super) db: Database,
    pub(super) path: PathBuf,
    /// Ingress: packages retained for resends (sent) and their bytes:
    /// counted at open, then changed by each committed transaction
    /// (`retained.rs`). In memory: one process holds the database.
    pub(super) retained: std::sync::Mutex<(u64, u64)>,
}

impl StateStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<StateStore, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
        let store = StateStore {
            db,
            path: path.to_path_buf(),
            retained: Default::default(),
        };
        // Creating every table up front lets readers open them without a
        // "table does not exist" case.
        let tx = store.db.begin_write().map_err(|e| store.db_err(e))?;
        {
            tx.open_table(COUNTERS).map_err(|e| store.db_err(e))?;
            tx.open_table(QUEUE).map_err(|e| store.db_err(e))?;
            tx.open_table(QUEUE_STATE).map_err(|e| store.db_err(e))?;
            tx.open_table(QUEUE_BODY).map_err(|e| store.db_err(e))?;
            tx.open_table(BLOBS).map_err(|e| store.db_err(e))?;
            tx.open_table(LEDGER).map_err(|e| store.db_err(e))?;
            tx.open_table(LEDGER_AGE).map_err(|e| store.db_err(e))?;
            tx.open_table(HELD).map_err(|e| store.db_err(e))?;
        }
        tx.commit().map_err(|e| store.db_err(e))?;
        store.fill_queue_rows()?;
        store.count_retained()?;
        store.fill_ledger_ages(crate::now_millis().0)?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn db_err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    pub(super) fn corrupt(&self, what: String, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
            detail: detail.to_string(),
        }
    }

    pub(super) fn encode<T: Serialize>(&self, what: &str, v: &T) -> Result<String, StoreError> {
        serde_json::to_string(v).map_err(|e| self.corrupt(what.to_string(), e))
    }

    pub(super) fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        what: String,
        text: &str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|e| self.corrupt(what, e))
    }
}
