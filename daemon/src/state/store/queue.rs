//! The ingress queue: the sequence counter (`counters`), the packages by id
//! (`queue`), and each package's row by sequence (`queue_state`: its id,
//! state, size and age), which is also the sequence index. They change
//! together in one transaction when a package is queued or requeued; a
//! state change writes only the row. A small body may be kept with them
//! (`queue_body`) instead of in a file.

use crate::state::store::error::StoreError;
use crate::state::store::retained::{follow_row, RetainedDelta, SENT_TAG};
use crate::state::store::tables::{
    PackageIdBytes, QueueStateRow, StateStore, COUNTERS, LEGACY_QUEUE_BY_SEQ, NEXT_SEQ_KEY, QUEUE,
    QUEUE_BODY, QUEUE_STATE,
};
use redb::{ReadableTable, ReadableTableMetadata, TableHandle};
use serde::{Deserialize, Serialize};

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
            QueueState::Sent { .. } => SENT_TAG,
        }
    }

    /// The state's part of a `queue_state` row: tag, sends, last send.
    fn parts(&self) -> (u8, u32, u64) {
        match *self {
            QueueState::Sent {
                times,
                last_unix_ms,
            } => (self.tag(), times, last_unix_ms),
            _ => (self.tag(), 0, 0),
        }
    }

    fn from_parts(tag: u8, times: u32, last_unix_ms: u64) -> Option<QueueState> {
        match tag {
            0 => Some(QueueState::Queued),
            1 => Some(QueueState::Sending),
            SENT_TAG => Some(QueueState::Sent {
                times,
                last_unix_ms,
            }),
            _ => None,
        }
    }
}

/// One state change of a queued package, named by id and by the sequence
/// number it is queued under (checked against that number's row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    /// The package.
    pub id: PackageIdBytes,
    /// Its sequence number.
    pub seq: u64,
    /// Its new state.
    pub state: QueueState,
}

/// What the queue knows of a package without reading its record: for the
/// loops that visit every sent package (self-healing re-sends, retention),
/// whose cost must not be the decoding of every retained description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRow {
    /// Its sequence number.
    pub seq: u64,
    /// The package.
    pub id: PackageIdBytes,
    /// Where it is in its life.
    pub state: QueueState,
    /// Payload size.
    pub bytes: u64,
    /// When it entered the queue, ms since the Unix epoch.
    pub enqueued_unix_ms: u64,
}

fn row_of(id: PackageIdBytes, pkg: &QueuedPackage) -> QueueStateRow {
    let (tag, times, last) = pkg.state.parts();
    (tag, times, last, pkg.bytes, pkg.enqueued_unix_ms, id)
}

/// The queue's tables, open in one write transaction. `queue_state` rows
/// are written through [`QueueTables::put_row`] and
/// [`QueueTables::drop_row`] only, which count what changes in the
/// retained totals; [`StateStore::write_queue`] adds that once the
/// transaction committed.
struct QueueTables<'t> {
    queue: redb::Table<'t, &'static [u8; 16], &'static str>,
    bodies: redb::Table<'t, u64, &'static [u8]>,
    states: redb::Table<'t, u64, QueueStateRow>,
    delta: RetainedDelta,
}

impl QueueTables<'_> {
    fn put_row(&mut self, seq: u64, row: QueueStateRow) -> Result<(), redb::StorageError> {
        let old = self.states.insert(seq, row)?.map(|v| v.value());
        follow_row(&mut self.delta, old, Some(row));
        Ok(())
    }

    fn drop_row(&mut self, seq: u64) -> Result<(), redb::StorageError> {
        let old = self.states.remove(seq)?.map(|v| v.value());
        follow_row(&mut self.delta, old, None);
        Ok(())
    }
}

/// A retained package retention is deleting ([`StateStore::retention_due`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    /// Its sequence number.
    pub seq: u64,
    /// The package.
    pub id: PackageIdBytes,
    /// Its retained copy, to delete; `None` for a body kept in the store,
    /// which goes with its record.
    pub path: Option<String>,
}

/// One package in the ingress queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedPackage {
    /// Sequence number it is (or was last) sent under.
    pub seq: u64,
    /// The queued copy of the payload: its file in the queue directory,
    /// or, for a body kept in the store (`inline`), where that file would
    /// be (the name it is written under when the package is held).
    pub path: String,
    /// The payload is kept in the store (`queue_body`, under `seq`), not in
    /// the file at `path`: a small body pushed over HTTPS, which then
    /// costs no file of its own (created, synced, read, deleted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline: bool,
    /// Package description (JSON text), opaque to the store.
    pub meta_json: String,
    /// Where it is in its life.
    pub state: QueueState,
    /// Payload size.
    pub bytes: u64,
    /// When it entered the queue, ms since the Unix epoch.
    pub enqueued_unix_ms: u64,
}

impl StateStore {
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
        self.enqueue_all(&[(id, pkg.clone())])
    }

    /// [`StateStore::enqueue`] for several packages, in one transaction.
    pub fn enqueue_all(&self, pkgs: &[(PackageIdBytes, QueuedPackage)]) -> Result<(), StoreError> {
        self.write_queue(|_, t| {
            for (id, pkg) in pkgs {
                self.put_queued(t, *id, pkg, None)?;
            }
            Ok(())
        })
    }

    /// Queues new packages under fresh consecutive sequence numbers, in
    /// one transaction with the counter: all of them or none, and no
    /// number handed out twice. Sets each `seq`.
    pub fn enqueue_fresh(
        &self,
        pkgs: &mut [(PackageIdBytes, QueuedPackage)],
    ) -> Result<(), StoreError> {
        self.enqueue_fresh_with_bodies(pkgs, &[])
    }

    /// [`StateStore::enqueue_fresh`] with the bodies of the packages kept
    /// in the store (`inline`), by position in `pkgs`: each is durable
    /// with its package's record, in the same transaction.
    pub fn enqueue_fresh_with_bodies(
        &self,
        pkgs: &mut [(PackageIdBytes, QueuedPackage)],
        bodies: &[Option<&[u8]>],
    ) -> Result<(), StoreError> {
        self.write_queue(|tx, t| {
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
            for (i, (seq, (id, pkg))) in (first..).zip(pkgs.iter_mut()).enumerate() {
                pkg.seq = seq;
                self.put_queued(t, *id, pkg, bodies.get(i).copied().flatten())?;
            }
            Ok(())
        })
    }

    /// Runs `f` on the queue's tables in one write transaction and
    /// commits, then adds what it changed to the retained totals; nothing
    /// is committed (or counted) if `f` fails. The one way queue rows are
    /// written, so the totals cannot be forgotten. `f` may open other
    /// tables than the queue's.
    fn write_queue<R>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction, &mut QueueTables<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let (out, delta) = {
            let mut t = QueueTables {
                queue: tx.open_table(QUEUE).map_err(|e| self.db_err(e))?,
                bodies: tx.open_table(QUEUE_BODY).map_err(|e| self.db_err(e))?,
                states: tx.open_table(QUEUE_STATE).map_err(|e| self.db_err(e))?,
                delta: RetainedDelta::default(),
            };
            let out = f(&tx, &mut t)?;
            (out, t.delta)
        };
        tx.commit().map_err(|e| self.db_err(e))?;
        self.add_retained(delta);
        Ok(out)
    }

    /// Writes the record of `id` and its row; its state is the one `pkg`
    /// names. An `inline` package's body is `body`, or else the body the
    /// record it replaces kept (a resend under a new number moves it).
    fn put_queued(
        &self,
        t: &mut QueueTables<'_>,
        id: PackageIdBytes,
        pkg: &QueuedPackage,
        body: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let json = self.encode("queue record", pkg)?;
        {
            if let Some(other) = t
                .states
                .get(pkg.seq)
                .map_err(|e| self.db_err(e))?
                .map(|v| v.value().5)
            {
                if other != id {
                    return Err(StoreError::SeqTaken {
                        seq: pkg.seq,
                        other: hex::encode(other),
                    });
                }
            }
            // The record replaced, if any (a resend): its row goes. Read
            // from the insert, so a fresh package costs one lookup.
            let old = match t
                .queue
                .insert(&id, json.as_str())
                .map_err(|e| self.db_err(e))?
            {
                Some(v) => Some(self.decode::<QueuedPackage>(queue_what(&id), v.value())?),
                None => None,
            };
            let mut carried = None;
            if let Some(old) = old {
                if old.inline {
                    carried = t
                        .bodies
                        .remove(old.seq)
                        .map_err(|e| self.db_err(e))?
                        .map(|v| v.value().to_vec());
                }
                t.drop_row(old.seq).map_err(|e| self.db_err(e))?;
            }
            if pkg.inline {
                let Some(body) = body.or(carried.as_deref()) else {
                    return Err(
                        self.corrupt(queue_what(&id), "queued as kept in the store, with no body")
                    );
                };
                t.bodies.insert(pkg.seq, body).map_err(|e| self.db_err(e))?;
            }
            t.put_row(pkg.seq, row_of(id, pkg))
                .map_err(|e| self.db_err(e))?;
        }
        Ok(())
    }

    /// The queue record of `id`.
    pub fn get(&self, id: PackageIdBytes) -> Result<Option<QueuedPackage>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let queue = tx.open_table(QUEUE).map_err(|e| self.db_err(e))?;
        let states = tx.open_table(QUEUE_STATE).map_err(|e| self.db_err(e))?;
        let found = queue.get(&id).map_err(|e| self.db_err(e))?;
        match found {
            Some(v) => Ok(Some(self.current(&states, &id, v.value())?)),
            None => Ok(None),
        }
    }

    /// A record decoded, in its current state.
    fn current(
        &self,
        states: &impl ReadableTable<u64, QueueStateRow>,
        id: &PackageIdBytes,
        record: &str,
    ) -> Result<QueuedPackage, StoreError> {
        let mut pkg: QueuedPackage = self.decode(queue_what(id), record)?;
        if let Some(row) = states.get(pkg.seq).map_err(|e| self.db_err(e))? {
            pkg.state = self.state_of(pkg.seq, row.value())?;
        }
        Ok(pkg)
    }

    fn state_of(
        &self,
        seq: u64,
        (tag, times, last, ..): QueueStateRow,
    ) -> Result<QueueState, StoreError> {
        QueueState::from_parts(tag, times, last).ok_or_else(|| {
            self.corrupt(
                format!("queue_state/{seq}"),
                format!("unknown state tag {tag}"),
            )
        })
    }

    /// Brings a store written by an earlier version up to date, at open:
    /// every queued package without a row (written before `queue_state`
    /// existed) gets it from its record, and the sequence index that the
    /// rows replaced is deleted. One transaction, and none at all when
    /// there is nothing to do (every open but the first after an upgrade).
    pub(super) fn fill_queue_rows(&self) -> Result<(), StoreError> {
        let (legacy, rows, records) = {
            let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
            let legacy = tx
                .list_tables()
                .map_err(|e| self.db_err(e))?
                .any(|t| t.name() == LEGACY_QUEUE_BY_SEQ.name());
            let rows = tx.open_table(QUEUE_STATE).map_err(|e| self.db_err(e))?;
            let records = tx.open_table(QUEUE).map_err(|e| self.db_err(e))?;
            let rows = rows.len().map_err(|e| self.db_err(e))?;
            (legacy, rows, records.len().map_err(|e| self.db_err(e))?)
        };
        if !legacy && rows >= records {
            return Ok(());
        }
        let filled = self.write_queue(|tx, t| {
            let mut missing = Vec::new();
            if rows < records {
                for entry in t.queue.iter().map_err(|e| self.db_err(e))? {
                    let (id, v) = entry.map_err(|e| self.db_err(e))?;
                    let id = *id.value();
                    // Such a store's records name their current state.
                    let pkg: QueuedPackage = self.decode(queue_what(&id), v.value())?;
                    if t.states.get(pkg.seq).map_err(|e| self.db_err(e))?.is_none() {
                        missing.push((id, pkg));
                    }
                }
            }
            for (id, pkg) in &missing {
                t.put_row(pkg.seq, row_of(*id, pkg))
                    .map_err(|e| self.db_err(e))?;
            }
            tx.delete_table(LEGACY_QUEUE_BY_SEQ)
                .map_err(|e| self.db_err(e))?;
            Ok(missing.len())
        })?;
        if filled > 0 {
            tracing::info!(
                packages = filled,
                "state store: queue rows written for packages queued by an earlier version"
            );
        }
        Ok(())
    }

    /// The rows of queued packages from sequence number `first` on, at most
    /// `limit`, in order: no record is read.
    pub fn queue_rows(&self, first: u64, limit: usize) -> Result<Vec<QueueRow>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let states = tx.open_table(QUEUE_STATE).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for entry in states.range(first..).map_err(|e| self.db_err(e))? {
            let (seq, row) = entry.map_err(|e| self.db_err(e))?;
            let (seq, row) = (seq.value(), row.value());
            out.push(QueueRow {
                seq,
                id: row.5,
                state: self.state_of(seq, row)?,
                bytes: row.3,
                enqueued_unix_ms: row.4,
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Changes the state of a queued package.
    pub fn set_state(&self, id: PackageIdBytes, state: QueueState) -> Result<(), StoreError> {
        let Some(pkg) = self.get(id)? else {
            return Err(StoreError::NotQueued {
                id: hex::encode(id),
            });
        };
        self.set_states(&[StateChange {
            id,
            seq: pkg.seq,
            state,
        }])
    }

    /// State changes of several packages, in one transaction. Only the
    /// rows are written: the records, which carry each package's
    /// description, stay as they were queued.
    pub fn set_states(&self, changes: &[StateChange]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write_queue(|_, t| {
            for c in changes {
                let old = t
                    .states
                    .get(c.seq)
                    .map_err(|e| self.db_err(e))?
                    .map(|v| v.value());
                // Every queued package has its row (open fills them): a
                // number without one, or with another package's, is not
                // this package's.
                let Some((_, _, _, bytes, enqueued, id)) = old.filter(|row| row.5 == c.id) else {
                    return Err(StoreError::NotQueued {
                        id: hex::encode(c.id),
                    });
                };
                let (tag, times, last) = c.state.parts();
                t.put_row(c.seq, (tag, times, last, bytes, enqueued, id))
                    .map_err(|e| self.db_err(e))?;
            }
            Ok(())
        })
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
        let states = tx.open_table(QUEUE_STATE).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in states.range(first..=last).map_err(|e| self.db_err(e))? {
            let (seq, v) = row.map_err(|e| self.db_err(e))?;
            let (seq, row) = (seq.value(), v.value());
            if tag.is_some_and(|want| want != row.0) {
                continue;
            }
            let id = row.5;
            let Some(rec) = queue.get(&id).map_err(|e| self.db_err(e))? else {
                return Err(self.corrupt(
                    format!("queue_state/{seq}"),
                    "names a package that is not queued",
                ));
            };
            let mut pkg: QueuedPackage = self.decode(queue_what(&id), rec.value())?;
            pkg.state = self.state_of(seq, row)?;
            out.push((id, pkg));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Number of packages waiting to be sent (read from the rows only;
    /// nothing is decoded).
    pub fn count_queued(&self) -> Result<u64, StoreError> {
        self.count_queued_from(0)
    }

    /// [`StateStore::count_queued`] among sequence numbers from `first`
    /// on: for a caller that knows none below is waiting (the send loop,
    /// past what it handed over), so that the count reads the backlog, not
    /// every retained package.
    pub fn count_queued_from(&self, first: u64) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let states = tx.open_table(QUEUE_STATE).map_err(|e| self.db_err(e))?;
        let want = QueueState::Queued.tag();
        let mut n = 0u64;
        for row in states.range(first..).map_err(|e| self.db_err(e))? {
            let (_, v) = row.map_err(|e| self.db_err(e))?;
            if v.value().0 == want {
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
        self.write_queue(|_, t| {
            let old = match t.queue.remove(&id).map_err(|e| self.db_err(e))? {
                Some(v) => Some(self.current(&t.states, &id, v.value())?),
                None => None,
            };
            if let Some(old) = &old {
                if old.inline {
                    t.bodies.remove(old.seq).map_err(|e| self.db_err(e))?;
                }
                t.drop_row(old.seq).map_err(|e| self.db_err(e))?;
            }
            Ok(old)
        })
    }

    /// The bodies kept in the store under `seqs`, in one read; `None`
    /// where there is none (not kept in the store, or gone with its
    /// package).
    pub fn queued_bodies(&self, seqs: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let bodies = tx.open_table(QUEUE_BODY).map_err(|e| self.db_err(e))?;
        seqs.iter()
            .map(|seq| {
                Ok(bodies
                    .get(seq)
                    .map_err(|e| self.db_err(e))?
                    .map(|v| v.value().to_vec()))
            })
            .collect()
    }

    // ---- ingress: retention ----------------------------------------------

    /// The retained packages that retention must delete, at most `limit`,
    /// in sequence order (the order they were sent in): those last sent
    /// before `sent_before_unix_ms`, then as many as bring the retained
    /// bytes down to `max_bytes`. Reads from the front of the queue and
    /// stops at the first package that may stay, or after `limit` × 4
    /// rows that are not sent yet (a backlog at the front, which nothing
    /// retained follows): when nothing is due, one row.
    pub fn retention_due(
        &self,
        sent_before_unix_ms: u64,
        max_bytes: u64,
        limit: usize,
    ) -> Result<Vec<Retired>, StoreError> {
        let (_, mut bytes) = self.retained();
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let states = tx.open_table(QUEUE_STATE).map_err(|e| self.db_err(e))?;
        let queue = tx.open_table(QUEUE).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        let mut unsent = 0usize;
        for entry in states.iter().map_err(|e| self.db_err(e))? {
            if out.len() >= limit || unsent >= limit.saturating_mul(4) {
                break;
            }
            let (seq, row) = entry.map_err(|e| self.db_err(e))?;
            let (seq, (tag, _, last_sent, size, _, id)) = (seq.value(), row.value());
            if tag != SENT_TAG {
                unsent += 1;
                continue;
            }
            // Sent in sequence order: once one may stay, so may the rest
            // (sent later, and the bytes only went down). A package sent
            // again under a new number moved to the back with its new
            // send time.
            if last_sent >= sent_before_unix_ms && bytes <= max_bytes {
                break;
            }
            bytes = bytes.saturating_sub(size);
            let path = match queue.get(&id).map_err(|e| self.db_err(e))? {
                Some(v) => {
                    let q = self.decode::<QueuedPackage>(queue_what(&id), v.value())?;
                    (!q.inline).then_some(q.path)
                }
                None => {
                    return Err(self.corrupt(
                        format!("queue_state/{seq}"),
                        "names a package that is not queued",
                    ))
                }
            };
            out.push(Retired { seq, id, path });
        }
        Ok(out)
    }

    /// Removes what [`StateStore::retention_due`] returned from the queue,
    /// in one transaction; a package queued again meanwhile (a resend gave
    /// it a new sequence number) stays. Returns how many were removed.
    pub fn remove_retained(&self, retired: &[Retired]) -> Result<usize, StoreError> {
        self.write_queue(|_, t| {
            let mut removed = 0;
            for r in retired {
                let row = t.states.get(r.seq).map_err(|e| self.db_err(e))?;
                if !row.is_some_and(|v| v.value().0 == SENT_TAG && v.value().5 == r.id) {
                    continue;
                }
                t.queue.remove(&r.id).map_err(|e| self.db_err(e))?;
                t.bodies.remove(r.seq).map_err(|e| self.db_err(e))?;
                t.drop_row(r.seq).map_err(|e| self.db_err(e))?;
                removed += 1;
            }
            Ok(removed)
        })
    }
}

fn queue_what(id: &PackageIdBytes) -> String {
    format!("queue/{}", hex::encode(id))
}
