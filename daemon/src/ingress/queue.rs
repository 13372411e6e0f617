//! The durable send queue: a package is in redb with its sequence number
//! before anything is sent.

use crate::ingress::shared::Shared;
use crate::state::meta::meta_to_json;
use crate::state::store::{QueueState, QueuedPackage, StateStore};
use crate::{now_millis, DaemonError};
use ferry_protocol::PackageMeta;
use std::path::Path;

/// Sub-directory of the state directory holding queued and retained files.
pub(crate) const QUEUE_DIR: &str = "queue";

/// Puts a package back in the queue under a fresh sequence number.
pub(crate) fn requeue(
    store: &StateStore,
    id: [u8; 16],
    q: QueuedPackage,
) -> Result<u64, DaemonError> {
    let seq = store.reserve_seqs(1)?;
    let q = with_first_seq(&q);
    store.enqueue(
        id,
        &QueuedPackage {
            seq,
            state: QueueState::Queued,
            ..q
        },
    )?;
    Ok(seq)
}

/// Key in a queued package's description: the sequence number it was first
/// given. Every path that gives a package a new sequence number (resend,
/// restart, hold) keeps it, and the manifest carries it, so the egress side
/// closes the gap the first number left when the package arrives.
pub(crate) const FIRST_SEQ_KEY: &str = "first_seq";

/// `q` with its first sequence number recorded (its current one, unless
/// one is recorded already).
pub(crate) fn with_first_seq(q: &QueuedPackage) -> QueuedPackage {
    let mut q = q.clone();
    if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_str(&q.meta_json) {
        if !m.contains_key(FIRST_SEQ_KEY) {
            m.insert(FIRST_SEQ_KEY.into(), q.seq.into());
            q.meta_json = serde_json::Value::Object(m).to_string();
        }
    }
    q
}

/// The first sequence number recorded by [`with_first_seq`], if any.
pub(crate) fn first_seq_of(meta: &serde_json::Value) -> Option<u64> {
    meta.get(FIRST_SEQ_KEY).and_then(|v| v.as_u64())
}

/// Queues a released package (approved, its channel started again, its
/// window open; see `ingress::holds::approvals`). `held_meta` is its held
/// description: a package that already had a sequence number keeps it as
/// its first (`first_seq`), so the egress side closes the gap the skipped
/// number left when the package arrives.
pub(crate) fn queue_package(
    s: &Shared,
    meta: &PackageMeta,
    path: &Path,
    held_meta: &serde_json::Value,
) -> Result<u64, DaemonError> {
    let mut record = queued_record(meta, path);
    if let Some(first) = first_seq_of(held_meta) {
        if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_str(&record.meta_json) {
            m.insert(FIRST_SEQ_KEY.into(), first.into());
            record.meta_json = serde_json::Value::Object(m).to_string();
        }
    }
    enqueue_one(s, meta, record)
}

pub(crate) fn queue(s: &Shared, meta: &PackageMeta, path: &Path) -> Result<u64, DaemonError> {
    enqueue_one(s, meta, queued_record(meta, path))
}

pub(crate) fn enqueue_one(
    s: &Shared,
    meta: &PackageMeta,
    record: QueuedPackage,
) -> Result<u64, DaemonError> {
    let _guard = s.lock.lock().map_err(|_| DaemonError::Poisoned)?;
    let mut one = [(meta.id.0, record)];
    s.store.enqueue_fresh(&mut one)?;
    s.send_wake.queued(1);
    Ok(one[0].1.seq)
}

/// The queue record of a new package (its `seq` is set when queued).
pub(crate) fn queued_record(meta: &PackageMeta, path: &Path) -> QueuedPackage {
    QueuedPackage {
        seq: 0,
        path: path.to_string_lossy().into_owned(),
        meta_json: meta_to_json(meta).to_string(),
        inline: false,
        state: QueueState::Queued,
        bytes: meta.size,
        enqueued_unix_ms: now_millis().0,
    }
}
