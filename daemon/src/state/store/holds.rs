//! Packages held out of the sequence order (`held`): for approval, until a
//! time window opens, or while their channel is stopped.

use crate::state::store::error::StoreError;
use crate::state::store::tables::{PackageIdBytes, StateStore, HELD};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// A package held out of the sequence order: for approval (the two-person
/// rule), until its channel's time window opens, or because its channel is
/// stopped. See [`HeldPackage::kind`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldPackage {
    /// The stored copy of the payload.
    pub path: String,
    /// Package description (JSON text), as in the queue.
    pub meta_json: String,
    /// Payload size.
    pub bytes: u64,
    /// When it was held, ms since the Unix epoch.
    pub held_unix_ms: u64,
    /// When it expires unapproved, ms since the Unix epoch.
    pub expires_unix_ms: u64,
    /// `[approval.NAME]` that applies.
    pub requirement: String,
    /// Distinct reviewers needed.
    pub reviewers_needed: u8,
    /// Roles a reviewer must hold (any of them).
    pub roles: Vec<String>,
    /// Whether the submitter may approve its own package.
    pub allow_submitter: bool,
    /// Why it is held (the policy's approval; guard findings to review).
    pub reasons: Vec<String>,
    /// Approvals so far.
    pub approvals: Vec<ApprovalMark>,
    /// Held because its channel is stopped (not for reviewers): released
    /// when the system administrator starts the channel again.
    #[serde(default)]
    pub channel_stopped: bool,
    /// Not to be sent before this time (ms since the Unix epoch): the
    /// opening of the time window that was closed when it was accepted.
    /// Once its approvals (if any) are complete, such a package waits for
    /// its window, and only ferryd releases it. Absent in records written
    /// before window holds existed.
    #[serde(default)]
    pub window_until_unix_ms: Option<u64>,
    /// Who pushed it, as the policy saw them, to decide again at release.
    /// Absent for packages moved out of the queue (they keep the decision
    /// they were queued under) and in older records.
    #[serde(default)]
    pub subject: Option<ferry_policy::Subject>,
}

/// Why a package is held, which says who may release it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    /// Reviewers approve or reject it; it expires unapproved.
    Approval,
    /// Approved (or needing no approval), waiting for its channel's time
    /// window; ferryd queues it once the window is open.
    Window {
        /// When it may go at the earliest, ms since the Unix epoch.
        until_unix_ms: u64,
    },
    /// Its channel is stopped; `ferryctl channel start` queues it.
    ChannelStopped,
}

impl HoldKind {
    /// The name the status, the ingest API and `approvals list` use.
    pub fn state(&self) -> &'static str {
        match self {
            HoldKind::Approval => "awaiting_approval",
            HoldKind::Window { .. } => "awaiting_window",
            HoldKind::ChannelStopped => "channel_stopped",
        }
    }
}

impl HeldPackage {
    /// The package description as JSON (`Null` if unreadable).
    pub fn meta(&self) -> serde_json::Value {
        serde_json::from_str(&self.meta_json).unwrap_or(serde_json::Value::Null)
    }

    /// Why it is held: a stopped channel first (nothing leaves a stopped
    /// channel), then missing approvals, then a closed window.
    pub fn kind(&self) -> HoldKind {
        if self.channel_stopped {
            return HoldKind::ChannelStopped;
        }
        match self.window_until_unix_ms {
            Some(until_unix_ms) if self.approvals.len() >= usize::from(self.reviewers_needed) => {
                HoldKind::Window { until_unix_ms }
            }
            _ => HoldKind::Approval,
        }
    }
}

/// One reviewer's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalMark {
    /// Who (`unix:NAME (uid N)`).
    pub by: String,
    /// The uid the kernel saw (`u32::MAX` for a certificate).
    pub uid: u32,
    /// Who, one string per person (`person:ID`; `uid:N` or
    /// `cert:FINGERPRINT` in marks made before persons were counted); absent
    /// in marks written before the admin API existed (then `uid:N`).
    #[serde(default)]
    pub principal: Option<String>,
    /// When, ms since the Unix epoch.
    pub unix_ms: u64,
    /// What the reviewer wrote.
    pub reason: String,
}

impl StateStore {
    // ---- ingress: packages held for approval ---------------------------

    /// Stores (or replaces) a held package.
    pub fn hold_put(&self, id: PackageIdBytes, held: &HeldPackage) -> Result<(), StoreError> {
        let json = self.encode("held record", held)?;
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut t = tx.open_table(HELD).map_err(|e| self.db_err(e))?;
            t.insert(&id, json.as_str()).map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// The held package `id`.
    pub fn hold_get(&self, id: PackageIdBytes) -> Result<Option<HeldPackage>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let t = tx.open_table(HELD).map_err(|e| self.db_err(e))?;
        let found = t.get(&id).map_err(|e| self.db_err(e))?;
        match found {
            Some(v) => Ok(Some(self.decode(held_what(&id), v.value())?)),
            None => Ok(None),
        }
    }

    /// Every held package, oldest first.
    pub fn hold_list(&self) -> Result<Vec<(PackageIdBytes, HeldPackage)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let t = tx.open_table(HELD).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = row.map_err(|e| self.db_err(e))?;
            let id = *k.value();
            out.push((id, self.decode::<HeldPackage>(held_what(&id), v.value())?));
        }
        out.sort_by_key(|(_, h)| h.held_unix_ms);
        Ok(out)
    }

    /// Removes a held package's record; returns it if it was there.
    pub fn hold_remove(&self, id: PackageIdBytes) -> Result<Option<HeldPackage>, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let old = {
            let mut t = tx.open_table(HELD).map_err(|e| self.db_err(e))?;
            let old = t.remove(&id).map_err(|e| self.db_err(e))?;
            match old {
                Some(v) => Some(self.decode::<HeldPackage>(held_what(&id), v.value())?),
                None => None,
            }
        };
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(old)
    }
}

fn held_what(id: &PackageIdBytes) -> String {
    format!("held/{}", hex::encode(id))
}
