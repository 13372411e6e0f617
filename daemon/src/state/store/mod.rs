//! Durable daemon state in redb: the ingress sequence counter and queue, the
//! egress replay window and delivery ledger.
//!
//! The appliance promises to lose nothing and deliver nothing twice across
//! crashes, so every change is one fsync'd redb commit
//! (`Durability::Immediate`, redb's default), and the changes that must not
//! be separated (a ledger entry and the replay window it implies) share one
//! transaction.

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Package id as stored (the protocol's 16-byte id).
pub type PackageIdBytes = [u8; 16];

const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const QUEUE: TableDefinition<&[u8; 16], &str> = TableDefinition::new("queue");
/// seq → (package id, state tag): lists the queue in sequence order and by
/// state without decoding every record.
const QUEUE_BY_SEQ: TableDefinition<u64, ([u8; 16], u8)> = TableDefinition::new("queue_by_seq");
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
const LEDGER: TableDefinition<&[u8; 16], &str> = TableDefinition::new("ledger");
/// Ingress packages held (for approval, a closed window or a stopped
/// channel): outside the sequence order, so a held package never leaves a
/// gap on the egress side.
const HELD: TableDefinition<&[u8; 16], &str> = TableDefinition::new("held");

const NEXT_SEQ_KEY: &str = "next_seq";
const REPLAY_KEY: &str = "replay_window";
const STOPPED_KEY: &str = "stopped_channels";

/// Where a queued package is in its life on the ingress side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueState {
    /// Waiting to be sent.
    Queued,
    /// Handed to the protocol sender; a crash here means "send again".
    Sending,
    /// All sends done; kept for operator resends.
    Sent {
        /// Sends made (redundancy included).
        times: u32,
        /// When the last send finished, ms since the Unix epoch.
        last_unix_ms: u64,
    },
}

impl QueueState {
    fn tag(&self) -> u8 {
        match self {
            QueueState::Queued => 0,
            QueueState::Sending => 1,
            QueueState::Sent { .. } => 2,
        }
    }
}

/// One package in the ingress queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedPackage {
    /// Sequence number it is (or was last) sent under.
    pub seq: u64,
    /// The queued copy of the payload.
    pub path: String,
    /// Package description (JSON text), opaque to the store.
    pub meta_json: String,
    /// Where it is in its life.
    pub state: QueueState,
    /// Payload size.
    pub bytes: u64,
    /// When it entered the queue, ms since the Unix epoch.
    pub enqueued_unix_ms: u64,
}

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

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open the state store {}: {source}; if another ferryd uses this state_dir stop it first, otherwise check the file's permissions and the disk, or restore it from a backup", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        source: Box<redb::DatabaseError>,
    },
    /// A read or commit failed.
    #[error("state store {}: {source}; check the disk holding state_dir (free space, I/O errors in the kernel log) and restart ferryd", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// What redb said (boxed: redb's error is large and this is the
        /// rare path).
        source: Box<redb::Error>,
    },
    /// A record could not be decoded.
    #[error("state store {}: record {what} is unreadable ({detail}); the file is damaged or was written by an incompatible version: restore it from a backup", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which record.
        what: String,
        /// Decoder message.
        detail: String,
    },
    /// The sequence counter would wrap.
    #[error("state store {}: sequence numbers are exhausted; the link needs new keys and a fresh state store on both sides", path.display())]
    SeqExhausted {
        /// The database file.
        path: PathBuf,
    },
    /// A state change named a package that is not queued.
    #[error("package {id} is not in the ingress queue (it may have been pruned by [retention]); list the queue with `ferryctl status`")]
    NotQueued {
        /// Package id, hex.
        id: String,
    },
    /// Two packages would share a sequence number.
    #[error("sequence number {seq} already belongs to package {other}; this is a ferryd bug, please report it with the log")]
    SeqTaken {
        /// The contested number.
        seq: u64,
        /// The package holding it, hex.
        other: String,
    },
    /// A delivery was finished that was never begun.
    #[error("package {id} has no delivery ledger entry to finish; this is a ferryd bug, please report it with the log")]
    NotInLedger {
        /// Package id, hex.
        id: String,
    },
    /// A forwarding update for a package that is not waiting for its
    /// downstream endpoint (any more).
    #[error("package {id} is not waiting for a downstream endpoint (it was delivered, or never forwarded); nothing to change")]
    NotForwarding {
        /// Package id, hex.
        id: String,
    },
    /// A delivery was begun for a package the ledger already knows.
    #[error("package {id} is already in the delivery ledger; it is not delivered twice")]
    AlreadyInLedger {
        /// Package id, hex.
        id: String,
    },
}

/// The daemon's durable state; one per state directory. Safe to share
/// between threads (redb serializes writers).
#[derive(Debug)]
pub struct StateStore {
    db: Database,
    path: PathBuf,
}

impl StateStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<StateStore, StoreError> {
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let store = StateStore {
            db,
            path: path.to_path_buf(),
        };
        // Creating every table up front lets readers open them without a
        // "table does not exist" case.
        let tx = store.db.begin_write().map_err(|e| store.db_err(e))?;
        {
            tx.open_table(COUNTERS).map_err(|e| store.db_err(e))?;
            tx.open_table(QUEUE).map_err(|e| store.db_err(e))?;
            tx.open_table(QUEUE_BY_SEQ).map_err(|e| store.db_err(e))?;
            tx.open_table(BLOBS).map_err(|e| store.db_err(e))?;
            tx.open_table(LEDGER).map_err(|e| store.db_err(e))?;
            tx.open_table(HELD).map_err(|e| store.db_err(e))?;
        }
        tx.commit().map_err(|e| store.db_err(e))?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    fn corrupt(&self, what: String, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
            detail: detail.to_string(),
        }
    }

    fn encode<T: Serialize>(&self, what: &str, v: &T) -> Result<String, StoreError> {
        serde_json::to_string(v).map_err(|e| self.corrupt(what.to_string(), e))
    }

    fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        what: String,
        text: &str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|e| self.corrupt(what, e))
    }

    // ---- ingress: sequence numbers -------------------------------------

    /// The next sequence number `reserve_seqs` would hand out.
    pub fn next_seq(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let t = tx.open_table(COUNTERS).map_err(|e| self.db_err(e))?;
        Ok(t.get(NEXT_SEQ_KEY)
            .map_err(|e| self.db_err(e))?
            .map_or(0, |v| v.value()))
    }

    /// Reserves `n` consecutive sequence numbers and returns the first. The
    /// counter is committed before this returns, so a crash never hands out
    /// a number twice (numbers reserved but unused are simply skipped).
    pub fn reserve_seqs(&self, n: u64) -> Result<u64, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let first = {
            let mut t = tx.open_table(COUNTERS).map_err(|e| self.db_err(e))?;
            let first = t
                .get(NEXT_SEQ_KEY)
                .map_err(|e| self.db_err(e))?
                .map_or(0, |v| v.value());
            let next = first
                .checked_add(n)
                .ok_or_else(|| StoreError::SeqExhausted {
                    path: self.path.clone(),
                })?;
            t.insert(NEXT_SEQ_KEY, next).map_err(|e| self.db_err(e))?;
            first
        };
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(first)
    }

    // ---- ingress: queue -------------------------------------------------

    /// Inserts or replaces the queue record of `id`. Replacing with a new
    /// `seq` (a resend) moves it in the sequence order.
    pub fn enqueue(&self, id: PackageIdBytes, pkg: &QueuedPackage) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut queue = tx.open_table(QUEUE).map_err(|e| self.db_err(e))?;
            let mut by_seq = tx.open_table(QUEUE_BY_SEQ).map_err(|e| self.db_err(e))?;
            self.put_queued(&mut queue, &mut by_seq, id, pkg)?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// Queues new packages under fresh consecutive sequence numbers, in
    /// one transaction with the counter: all of them or none, and no
    /// number handed out twice. Sets each `seq`.
    pub fn enqueue_fresh(
        &self,
        pkgs: &mut [(PackageIdBytes, QueuedPackage)],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut counters = tx.open_table(COUNTERS).map_err(|e| self.db_err(e))?;
            let first = counters
                .get(NEXT_SEQ_KEY)
                .map_err(|e| self.db_err(e))?
                .map_or(0, |v| v.value());
            let next =
                first
                    .checked_add(pkgs.len() as u64)
                    .ok_or_else(|| StoreError::SeqExhausted {
                        path: self.path.clone(),
                    })?;
            counters
                .insert(NEXT_SEQ_KEY, next)
                .map_err(|e| self.db_err(e))?;
            let mut queue = tx.open_table(QUEUE).map_err(|e| self.db_err(e))?;
            let mut by_seq = tx.open_table(QUEUE_BY_SEQ).map_err(|e| self.db_err(e))?;
            for (seq, (id, pkg)) in (first..).zip(pkgs.iter_mut()) {
                pkg.seq = seq;
                self.put_queued(&mut queue, &mut by_seq, *id, pkg)?;
            }
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    fn put_queued(
        &self,
        queue: &mut redb::Table<&[u8; 16], &str>,
        by_seq: &mut redb::Table<u64, ([u8; 16], u8)>,
        id: PackageIdBytes,
        pkg: &QueuedPackage,
    ) -> Result<(), StoreError> {
        let json = self.encode("queue record", pkg)?;
        {
            if let Some((other, _)) = by_seq
                .get(pkg.seq)
                .map_err(|e| self.db_err(e))?
                .map(|v| v.value())
            {
                if other != id {
                    return Err(StoreError::SeqTaken {
                        seq: pkg.seq,
                        other: hex::encode(other),
                    });
                }
            }
            let old = match queue.get(&id).map_err(|e| self.db_err(e))? {
                Some(v) => Some(self.decode::<QueuedPackage>(queue_what(&id), v.value())?),
                None => None,
            };
            if let Some(old) = old {
                by_seq.remove(old.seq).map_err(|e| self.db_err(e))?;
            }
            queue
                .insert(&id, json.as_str())
                .map_err(|e| self.db_err(e))?;
            by_seq
                .insert(pkg.seq, (id, pkg.state.tag()))
                .map_err(|e| self.db_err(e))?;
        }
        Ok(())
    }

    /// The queue record of `id`.
    pub fn get(&self, id: PackageIdBytes) -> Result<Option<QueuedPackage>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let queue = tx.open_table(QUEUE).map_err(|e| self.db_err(e))?;
        let found = queue.get(&id).map_err(|e| self.db_err(e))?;
        match found {
            Some(v) => Ok(Some(self.decode(queue_what(&id), v.value())?)),
            None => Ok(None),
        }
    }

    /// Changes the state of a queued package.
    pub fn set_state(&self, id: PackageIdBytes, state: QueueState) -> Result<(), StoreError> {
        self.set_states(&[(id, state)])
    }

    /// [`StateStore::set_state`] for several packages, in one transaction.
    pub fn set_states(&self, changes: &[(PackageIdBytes, QueueState)]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut queue = tx.open_table(QUEUE).map_err(|e| self.db_err(e))?;
            let mut by_seq = tx.open_table(QUEUE_BY_SEQ).map_err(|e| self.db_err(e))?;
            for (id, state) in changes {
                let current = match queue.get(id).map_err(|e| self.db_err(e))? {
                    Some(v) => self.decode::<QueuedPackage>(queue_what(id), v.value())?,
                    None => {
                        return Err(StoreError::NotQueued {
                            id: hex::encode(id),
                        })
                    }
                };
                let updated = QueuedPackage {
                    state: *state,
                    ..current
                };
                let json = self.encode("queue record", &updated)?;
                queue
                    .insert(id, json.as_str())
                    .map_err(|e| self.db_err(e))?;
                by_seq
                    .insert(updated.seq, (*id, state.tag()))
                    .map_err(|e| self.db_err(e))?;
            }
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// Queued packages in sequence order; with `Some(state)`, only those in
    /// that state (compared by kind: any `Sent { .. }` matches `Sent`).
    pub fn list(
        &self,
        state: Option<QueueState>,
    ) -> Result<Vec<(PackageIdBytes, QueuedPackage)>, StoreError> {
        self.list_range(0, u64::MAX, state.map(|s| s.tag()))
    }

    /// Queued packages whose sequence number is in `first..=last`, in order.
    pub fn find_by_seq_range(
        &self,
        first: u64,
        last: u64,
    ) -> Result<Vec<(PackageIdBytes, QueuedPackage)>, StoreError> {
        self.list_range(first, last, None)
    }

    /// At most `limit` packages waiting to be sent, from sequence number
    /// `first` on, in order. Decodes only those it returns, so the send
    /// loop's cost does not grow with the backlog.
    pub fn next_queued(
        &self,
        first: u64,
        limit: usize,
    ) -> Result<Vec<(PackageIdBytes, QueuedPackage)>, StoreError> {
        self.list_range_limited(first, u64::MAX, Some(QueueState::Queued.tag()), limit)
    }

    fn list_range(
        &self,
        first: u64,
        last: u64,
        tag: Option<u8>,
    ) -> Result<Vec<(PackageIdBytes, QueuedPackage)>, StoreError> {
        self.list_range_limited(first, last, tag, usize::MAX)
    }

    fn list_range_limited(
        &self,
        first: u64,
        last: u64,
        tag: Option<u8>,
        limit: usize,
    ) -> Result<Vec<(PackageIdBytes, QueuedPackage)>, StoreError> {
        if first > last || limit == 0 {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let queue = tx.open_table(QUEUE).map_err(|e| self.db_err(e))?;
        let by_seq = tx.open_table(QUEUE_BY_SEQ).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in by_seq.range(first..=last).map_err(|e| self.db_err(e))? {
            let (seq, v) = row.map_err(|e| self.db_err(e))?;
            let (id, t) = v.value();
            if tag.is_some_and(|want| want != t) {
                continue;
            }
            let Some(rec) = queue.get(&id).map_err(|e| self.db_err(e))? else {
                return Err(self.corrupt(
                    format!("queue index seq {}", seq.value()),
                    "points at a package that is not queued",
                ));
            };
            out.push((id, self.decode(queue_what(&id), rec.value())?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Number of packages waiting to be sent (read from the sequence
    /// index only; nothing is decoded).
    pub fn count_queued(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let by_seq = tx.open_table(QUEUE_BY_SEQ).map_err(|e| self.db_err(e))?;
        let want = QueueState::Queued.tag();
        let mut n = 0u64;
        for row in by_seq.iter().map_err(|e| self.db_err(e))? {
            let (_, v) = row.map_err(|e| self.db_err(e))?;
            if v.value().1 == want {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Number of queued packages (all states).
    pub fn queue_len(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let queue = tx.open_table(QUEUE).map_err(|e| self.db_err(e))?;
        queue.len().map_err(|e| self.db_err(e))
    }

    /// Removes a package from the queue; returns its record if it was there.
    pub fn remove(&self, id: PackageIdBytes) -> Result<Option<QueuedPackage>, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let old = {
            let mut queue = tx.open_table(QUEUE).map_err(|e| self.db_err(e))?;
            let mut by_seq = tx.open_table(QUEUE_BY_SEQ).map_err(|e| self.db_err(e))?;
            let old = match queue.remove(&id).map_err(|e| self.db_err(e))? {
                Some(v) => Some(self.decode::<QueuedPackage>(queue_what(&id), v.value())?),
                None => None,
            };
            if let Some(old) = &old {
                by_seq.remove(old.seq).map_err(|e| self.db_err(e))?;
            }
            old
        };
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(old)
    }

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

    // ---- egress: replay window and ledger -------------------------------

    /// The persisted replay window, if one was saved.
    pub fn load_replay(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let blobs = tx.open_table(BLOBS).map_err(|e| self.db_err(e))?;
        let found = blobs.get(REPLAY_KEY).map_err(|e| self.db_err(e))?;
        Ok(found.map(|v| v.value().to_vec()))
    }

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

fn queue_what(id: &PackageIdBytes) -> String {
    format!("queue/{}", hex::encode(id))
}

fn held_what(id: &PackageIdBytes) -> String {
    format!("held/{}", hex::encode(id))
}

fn ledger_what(id: &PackageIdBytes) -> String {
    format!("ledger/{}", hex::encode(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(seq: u64, state: QueueState) -> QueuedPackage {
        QueuedPackage {
            seq,
            path: format!("/q/{seq}"),
            meta_json: format!("{{\"seq\":{seq}}}"),
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
    fn reopen_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        {
            let s = StateStore::open(&path).unwrap();
            assert_eq!(s.reserve_seqs(5).unwrap(), 0);
            s.enqueue(id(1), &pkg(4, QueueState::Sending)).unwrap();
            s.save_replay(b"window-1").unwrap();
            s.begin_delivery(id(7), &delivering(9), b"window-2")
                .unwrap();
            s.begin_delivery(id(8), &delivering(10), b"window-3")
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
        s.begin_delivery(id(1), &delivering(1), b"after-1").unwrap();
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
            s.begin_delivery(id(1), &delivering(2), b"after-2"),
            Err(StoreError::AlreadyInLedger { .. })
        ));
        assert_eq!(s.ledger_get(id(1)).unwrap(), Some(delivering(1)));
        assert_eq!(s.load_replay().unwrap().as_deref(), Some(&b"after-1"[..]));

        // Undoing a failed delivery lets a resend begin again.
        assert!(s.ledger_remove(id(1)).unwrap());
        assert!(!s.ledger_remove(id(1)).unwrap());
        s.begin_delivery(id(1), &delivering(2), b"after-2").unwrap();
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
}
