//! Group commit of uploads accepted over HTTPS.
//!
//! A `202` promises the package survives a crash, so each one used to cost
//! its own fsync of the body, of the queue directory, a redb commit and an
//! audit flush before the answer. Concurrent requests now hand their
//! finished uploads to one committer thread, which admits everything that
//! is waiting together: the renames into the queue directory, one
//! `syncfs(2)` for all bodies and names (none when there are none), one
//! redb transaction queueing all of them under consecutive sequence
//! numbers, and one audit flush. A small body, kept in memory by its
//! request, goes into that transaction with its record instead of a file
//! (written as a file only for a package held for approval or a window).
//! Each request is answered only after all of that; a failure answers
//! every request of the batch with an error and leaves none of it queued.

use crate::ingress::admission::Upload;
use crate::ingress::shared::Admitted;
use crate::ingress::shared::Grant;
use crate::ingress::shared::Shared;
use crate::ops::audit_trail::Actor;
use crate::DaemonError;
use std::path::PathBuf;
use std::sync::Arc;

/// Most uploads admitted together.
const MAX_BATCH: usize = 256;

/// A finished upload to make durable and admit, and where to answer.
pub(crate) struct Job {
    /// The body, written (not yet synced) under the queue directory, or
    /// nothing there if `body` holds it.
    pub(crate) staged: PathBuf,
    /// A small body kept in memory: queued in the state store with its
    /// record (or, for a held package, written under its queue name).
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) upload: Upload,
    pub(crate) actor: Actor,
    pub(crate) grant: Grant,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<Admitted, DaemonError>>,
}

/// Where the ingest API sends finished uploads.
pub(crate) type Committer = tokio::sync::mpsc::Sender<Job>;

/// Starts the committer thread. It ends when every [`Committer`] is
/// dropped, after answering what it was given.
pub(crate) fn spawn(
    s: Arc<Shared>,
    capacity: usize,
) -> Result<(Committer, std::thread::JoinHandle<()>), DaemonError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(capacity.max(1));
    let join = std::thread::Builder::new()
        .name("ferry-accept".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut jobs = vec![first];
                while jobs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                commit(&s, jobs);
            }
        })
        .map_err(DaemonError::thread_start("accept"))?;
    Ok((tx, join))
}

/// How an upload file (or a small body's queue file) is created: new,
/// readable by ferryd alone. Here, in the leaf, because both the request
/// handlers and the committer open such files.
pub(crate) fn upload_options() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true).mode(0o600);
    o
}

/// Writes `bytes` to a new file at `path`, readable by ferryd alone (not
/// synced: the batch's one sync does that). A failed write leaves no file.
pub(crate) fn write_new(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = upload_options().open(path)?;
    f.write_all(bytes).inspect_err(|_| {
        let _ = std::fs::remove_file(path);
    })
}

/// Admits a batch: every job is answered.
fn commit(s: &Shared, jobs: Vec<Job>) {
    // Held packages (approvals, closed windows) are rare and kept as
    // files (reviewers preview them, a window may hold them for days).
    let (plain, held): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .partition(|j| j.grant.approval.is_none() && j.grant.window_until_unix_ms.is_none());
    let mut placed_files = false;
    let mut held_placed = Vec::with_capacity(held.len());
    for mut j in held {
        let dest = s.queue_dir.join(j.upload.id.to_hex());
        match place(&mut j, &dest) {
            Ok(()) => {
                placed_files = true;
                held_placed.push((j, dest));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&j.staged);
                let _ = j.reply.send(Err(DaemonError::io(&dest)(e)));
            }
        }
    }
    // A plain package's small body is kept in the store, durable with
    // its queue record (no file); a larger one was written as it came
    // and is renamed into the queue directory.
    let mut plain_placed = Vec::with_capacity(plain.len());
    for j in plain {
        let dest = s.queue_dir.join(j.upload.id.to_hex());
        if j.body.is_some() {
            plain_placed.push((j, dest));
            continue;
        }
        match std::fs::rename(&j.staged, &dest) {
            Ok(()) => {
                placed_files = true;
                plain_placed.push((j, dest));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&j.staged);
                let _ = j.reply.send(Err(DaemonError::io(&dest)(e)));
            }
        }
    }
    // One sync makes every body and every rename of the batch durable
    // (none when every body is kept in the store).
    if placed_files {
        if let Err(e) = crate::ingress::admission::sync_filesystem(&s.queue_dir) {
            let why = e.to_string();
            for (j, dest) in held_placed.into_iter().chain(plain_placed) {
                if j.body.is_none() {
                    let _ = std::fs::remove_file(&dest);
                }
                let _ = j.reply.send(Err(DaemonError::GroupCommit(why.clone())));
            }
            return;
        }
    }
    for (j, dest) in held_placed {
        let meta = crate::ingress::admission::meta_of(j.upload);
        let r = crate::ingress::admission::admit(s, &meta, &dest, j.grant, j.actor);
        if r.is_err() {
            let _ = std::fs::remove_file(&dest);
        }
        let _ = j.reply.send(r);
    }
    if !plain_placed.is_empty() {
        queue_all(s, plain_placed);
    }
}

/// Puts a held package's body at `dest`: written from memory, or its
/// upload file renamed.
fn place(j: &mut Job, dest: &std::path::Path) -> std::io::Result<()> {
    match j.body.take() {
        Some(bytes) => write_new(dest, &bytes),
        None => std::fs::rename(&j.staged, dest),
    }
}

/// Queues packages under consecutive sequence numbers in one transaction
/// (with the bodies kept in the store) and records them with one audit
/// flush; if the log cannot take the records, none of them stays queued
/// (nothing is sent that the audit log does not show).
fn queue_all(s: &Shared, jobs: Vec<(Job, PathBuf)>) {
    let mut items: Vec<_> = jobs
        .into_iter()
        .map(|(j, dest)| {
            let meta = crate::ingress::admission::meta_of(j.upload);
            (meta, dest, j.actor, j.reply, j.body)
        })
        .collect();
    let mut records: Vec<_> = items
        .iter()
        .map(|(meta, dest, _, _, body)| {
            let mut q = crate::ingress::queue::queued_record(meta, dest);
            q.inline = body.is_some();
            (meta.id.0, q)
        })
        .collect();
    type Reply = tokio::sync::oneshot::Sender<Result<Admitted, DaemonError>>;
    type Item = (
        ferry_protocol::PackageMeta,
        PathBuf,
        Actor,
        Reply,
        Option<Vec<u8>>,
    );
    let fail = |items: Vec<Item>, why: String| {
        for (_, dest, _, reply, body) in items {
            if body.is_none() {
                let _ = std::fs::remove_file(&dest);
            }
            let _ = reply.send(Err(DaemonError::GroupCommit(why.clone())));
        }
    };
    let queued = match s.lock.lock() {
        Ok(_guard) => {
            let bodies: Vec<Option<&[u8]>> = items
                .iter()
                .map(|(_, _, _, _, body)| body.as_deref())
                .collect();
            s.store.enqueue_fresh_with_bodies(&mut records, &bodies)
        }
        Err(_) => {
            fail(items, DaemonError::Poisoned.to_string());
            return;
        }
    };
    if let Err(e) = queued {
        fail(items, e.to_string());
        return;
    }
    let audit: Vec<_> = items
        .iter_mut()
        .zip(&records)
        .map(|((meta, _, actor, _, _), (_, q))| {
            crate::ingress::admission::pushed_record(meta, &Admitted::Queued(q.seq), actor.clone())
        })
        .collect();
    if let Err(e) = s.audit.record_all(audit) {
        if let Ok(_guard) = s.lock.lock() {
            for (id, _) in &records {
                if let Err(e) = s.store.remove(*id) {
                    tracing::error!(error = %e, package = %hex::encode(id), "could not take a package out of the queue after the audit log failed");
                }
            }
        }
        fail(items, e.to_string());
        return;
    }
    for ((meta, _, _, reply, _), (_, q)) in items.into_iter().zip(&records) {
        crate::ingress::admission::count_accepted(s, &meta);
        let _ = reply.send(Ok(Admitted::Queued(q.seq)));
    }
    // After the answers: the woken send loop would compete with them for
    // the cores.
    s.send_wake.queued(records.len() as u64);
}
