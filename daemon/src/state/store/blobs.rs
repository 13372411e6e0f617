//! Small named records in the `blobs` table: the stopped channels, and the
//! egress side's link state (open gaps, the newest heartbeat) that
//! `state/gaps.rs` keeps there.

use crate::state::store::error::StoreError;
use crate::state::store::tables::{StateStore, BLOBS, STOPPED_KEY};
use serde::{Deserialize, Serialize};

/// A channel the system administrator stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoppedChannel {
    /// Who (`unix:NAME (uid N)`).
    pub by: String,
    /// Why.
    pub reason: String,
    /// Since when, ms since the Unix epoch.
    pub since_unix_ms: u64,
}

impl StateStore {
    /// Channels stopped by the system administrator.
    pub fn stopped_channels(
        &self,
    ) -> Result<std::collections::BTreeMap<String, StoppedChannel>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let blobs = tx.open_table(BLOBS).map_err(|e| self.db_err(e))?;
        let found = blobs.get(STOPPED_KEY).map_err(|e| self.db_err(e))?;
        match found {
            None => Ok(Default::default()),
            Some(v) => {
                let text = String::from_utf8_lossy(v.value()).into_owned();
                self.decode(STOPPED_KEY.to_owned(), &text)
            }
        }
    }

    /// Replaces the set of stopped channels.
    pub fn set_stopped_channels(
        &self,
        m: &std::collections::BTreeMap<String, StoppedChannel>,
    ) -> Result<(), StoreError> {
        let json = self.encode(STOPPED_KEY, m)?;
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut blobs = tx.open_table(BLOBS).map_err(|e| self.db_err(e))?;
            blobs
                .insert(STOPPED_KEY, json.as_bytes())
                .map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// A small named record of the egress side's link state (open gaps,
    /// the newest heartbeat seen), as saved by [`StateStore::blob_put`].
    pub fn blob_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let blobs = tx.open_table(BLOBS).map_err(|e| self.db_err(e))?;
        let found = blobs.get(key).map_err(|e| self.db_err(e))?;
        Ok(found.map(|v| v.value().to_vec()))
    }

    /// Replaces the named record `key` (one fsync'd transaction).
    pub fn blob_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut blobs = tx.open_table(BLOBS).map_err(|e| self.db_err(e))?;
            blobs.insert(key, value).map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }
}
