//! A spool file between the spool and the queue: the note that keeps it
//! from being lost when `ferryd` dies while taking it.
//!
//! Taking a spool file moves it into the queue directory under its new
//! package id, then digests, inspects and queues it. Until the queue (or
//! a hold) has a record of it, nothing but that move says where it went:
//! killed in between, `ferryd` would leave it in the queue directory under
//! a bare id, gone from the spool and never sent. So `take` first writes
//! `QUEUE/<id>.taking` naming the spool file, and removes it once the
//! package is recorded. On any other way out of `take` (an error, a put
//! back, a refusal), and at the next start for a note a crash left, the
//! file goes back into the spool under its name (a free one if the name
//! was taken meanwhile) to be taken again — unless a record owns it.

use crate::state::store::StateStore;
use crate::DaemonError;
use std::path::{Path, PathBuf};

/// Suffix of the note beside a file being taken.
pub(crate) const TAKING_SUFFIX: &str = ".taking";

/// A spool file being taken into the queue directory as `dest`.
pub(crate) struct Taking<'a> {
    store: &'a StateStore,
    id: [u8; 16],
    note: PathBuf,
    dest: PathBuf,
    spool_path: PathBuf,
    /// Recorded in the queue or a hold: nothing to put back.
    taken: bool,
}

impl<'a> Taking<'a> {
    /// Writes the note for moving `spool_path` to `dest` (id `id`); call it
    /// before the move. Not synced: it guards against a process that dies,
    /// which loses nothing written before; after a power loss the move
    /// itself may not have happened either.
    pub(crate) fn begin(
        store: &'a StateStore,
        id: [u8; 16],
        dest: &Path,
        spool_path: &Path,
    ) -> Result<Taking<'a>, DaemonError> {
        let note = note_path(dest);
        let body = serde_json::json!({ "spool_path": spool_path.to_string_lossy() });
        std::fs::write(&note, body.to_string()).map_err(DaemonError::io(&note))?;
        Ok(Taking {
            store,
            id,
            note,
            dest: dest.to_path_buf(),
            spool_path: spool_path.to_path_buf(),
            taken: false,
        })
    }

    /// The package is recorded (queued or held): the note goes.
    pub(crate) fn taken(mut self) {
        self.taken = true;
    }
}

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        if !self.taken {
            if let Some(back) = settle(self.store, self.id, &self.dest, &self.spool_path) {
                tracing::warn!(file = %back.display(), "not taken after all; back in the spool, to be taken again");
            }
        }
        let _ = std::fs::remove_file(&self.note);
    }
}

fn note_path(dest: &Path) -> PathBuf {
    let mut n = dest.as_os_str().to_owned();
    n.push(TAKING_SUFFIX);
    PathBuf::from(n)
}

/// Puts `dest` back as `spool_path` unless a queue or hold record owns it
/// (then it was taken) or it is gone (queued elsewhere, set aside, or put
/// back already). Returns where it went, if it moved.
fn settle(store: &StateStore, id: [u8; 16], dest: &Path, spool_path: &Path) -> Option<PathBuf> {
    if !dest.exists() {
        return None;
    }
    // Owned by a record, or a store that cannot be read (moving a file a
    // record may own could send it twice): the file stays where it is.
    let free = matches!(store.get(id), Ok(None)) && matches!(store.hold_get(id), Ok(None));
    if !free {
        return None;
    }
    if same_bytes(dest, spool_path) {
        // Taken by copy across filesystems and died before removing the
        // original: the spool still has it.
        let _ = std::fs::remove_file(dest);
        return None;
    }
    let dir = spool_path.parent()?;
    let name = spool_path.file_name()?.to_string_lossy().into_owned();
    let back = crate::ingress::spool::free_name(dir, &name);
    match std::fs::rename(dest, &back) {
        Ok(()) => Some(back),
        Err(e) => {
            tracing::error!(file = %dest.display(), to = %back.display(), error = %e, "a spool file that was being taken could not be put back into the spool; move it back by hand");
            None
        }
    }
}

/// Whether two files hold the same bytes (false when either is missing).
fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    if ma.len() != mb.len() {
        return false;
    }
    let (Ok(fa), Ok(fb)) = (std::fs::File::open(a), std::fs::File::open(b)) else {
        return false;
    };
    let (mut ra, mut rb) = (
        std::io::BufReader::with_capacity(1 << 16, fa),
        std::io::BufReader::with_capacity(1 << 16, fb),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = match ra.read(&mut ba) {
            Ok(n) => n,
            Err(_) => return false,
        };
        if n == 0 {
            return true;
        }
        if rb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// At start, before the intake runs: every note a crash left. Each file
/// no record owns goes back into the spool; returns how many did.
pub(crate) fn recover(store: &StateStore, queue_dir: &Path) -> Result<usize, DaemonError> {
    let mut back = 0;
    let entries = std::fs::read_dir(queue_dir).map_err(DaemonError::io(queue_dir))?;
    for entry in entries.flatten() {
        let note = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id_hex) = name.strip_suffix(TAKING_SUFFIX) else {
            continue;
        };
        let spool_path = std::fs::read(&note)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["spool_path"].as_str().map(PathBuf::from));
        let id = hex::decode(id_hex)
            .ok()
            .and_then(|v| <[u8; 16]>::try_from(v).ok());
        if let (Some(spool_path), Some(id)) = (spool_path, id) {
            if let Some(to) = settle(store, id, &queue_dir.join(id_hex), &spool_path) {
                tracing::warn!(file = %to.display(), package = id_hex, "a spool file being taken when ferryd stopped is back in the spool, to be taken again");
                back += 1;
            }
        } else {
            tracing::error!(note = %note.display(), "unreadable note of a spool file being taken; the file (if any) is left in the queue directory under its package id");
        }
        let _ = std::fs::remove_file(&note);
    }
    Ok(back)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store::{QueueState, QueuedPackage};

    struct Dirs {
        _t: tempfile::TempDir,
        store: StateStore,
        queue: PathBuf,
        spool: PathBuf,
    }

    fn dirs() -> Dirs {
        let t = tempfile::tempdir().expect("tempdir");
        let (queue, spool) = (t.path().join("queue"), t.path().join("spool"));
        std::fs::create_dir_all(&queue).expect("mkdir");
        std::fs::create_dir_all(&spool).expect("mkdir");
        let store = StateStore::open(&t.path().join("ferry.redb")).expect("store");
        Dirs {
            _t: t,
            store,
            queue,
            spool,
        }
    }

    /// What `take` does up to the moment `ferryd` is killed: the note, then
    /// the move. Returns the queue path.
    fn interrupted_take(d: &Dirs, id: [u8; 16], name: &str, body: &[u8]) -> PathBuf {
        let spool_path = d.spool.join(name);
        std::fs::write(&spool_path, body).expect("spool file");
        let dest = d.queue.join(hex::encode(id));
        let t = Taking::begin(&d.store, id, &dest, &spool_path).expect("note");
        std::fs::rename(&spool_path, &dest).expect("move");
        // Killed: no drop runs.
        std::mem::forget(t);
        dest
    }

    #[test]
    fn a_file_a_crash_left_half_taken_goes_back_into_the_spool_under_its_name() {
        let d = dirs();
        let dest = interrupted_take(&d, [1; 16], "parcels.csv", b"a,b\n");
        assert!(!d.spool.join("parcels.csv").exists());
        assert_eq!(recover(&d.store, &d.queue).expect("recover"), 1);
        assert_eq!(
            std::fs::read(d.spool.join("parcels.csv")).expect("back"),
            b"a,b\n"
        );
        assert!(!dest.exists());
        assert_eq!(
            std::fs::read_dir(&d.queue).expect("queue").count(),
            0,
            "the note is gone too"
        );
    }

    #[test]
    fn a_file_a_record_owns_stays_and_a_name_taken_meanwhile_is_kept() {
        let d = dirs();
        // Recorded in the queue before the crash: it was taken.
        let owned = interrupted_take(&d, [2; 16], "owned.csv", b"x");
        let mut rec = [(
            [2u8; 16],
            QueuedPackage {
                seq: 0,
                path: owned.to_string_lossy().into_owned(),
                meta_json: "{}".into(),
                inline: false,
                state: QueueState::Queued,
                bytes: 1,
                enqueued_unix_ms: 0,
            },
        )];
        d.store.enqueue_fresh(&mut rec).expect("enqueue");
        // Not recorded, and a new file of the same name was spooled since.
        let _ = interrupted_take(&d, [3; 16], "report.csv", b"old");
        std::fs::write(d.spool.join("report.csv"), b"new").expect("new file");
        assert_eq!(recover(&d.store, &d.queue).expect("recover"), 1);
        assert!(owned.exists(), "a recorded package's file is left alone");
        assert!(!d.spool.join("owned.csv").exists());
        assert_eq!(
            std::fs::read(d.spool.join("report.csv")).expect("new"),
            b"new"
        );
        assert_eq!(
            std::fs::read(d.spool.join("report.1.csv")).expect("old, renamed"),
            b"old"
        );
    }

    #[test]
    fn a_copy_whose_original_is_still_in_the_spool_is_dropped() {
        let d = dirs();
        // Taken by copy (another filesystem), killed before the original
        // was removed.
        let spool_path = d.spool.join("big.bin");
        std::fs::write(&spool_path, b"same bytes").expect("spool");
        let dest = d.queue.join(hex::encode([4u8; 16]));
        std::mem::forget(Taking::begin(&d.store, [4; 16], &dest, &spool_path).expect("note"));
        std::fs::copy(&spool_path, &dest).expect("copy");
        assert_eq!(recover(&d.store, &d.queue).expect("recover"), 0);
        assert!(!dest.exists());
        assert_eq!(std::fs::read(&spool_path).expect("original"), b"same bytes");
        assert_eq!(std::fs::read_dir(&d.spool).expect("spool").count(), 1);
    }

    #[test]
    fn a_take_that_ends_without_a_record_puts_the_file_back_at_once() {
        let d = dirs();
        let spool_path = d.spool.join("late.csv");
        std::fs::write(&spool_path, b"z").expect("spool");
        let dest = d.queue.join(hex::encode([5u8; 16]));
        {
            let _t = Taking::begin(&d.store, [5; 16], &dest, &spool_path).expect("note");
            std::fs::rename(&spool_path, &dest).expect("move");
            // An error here: `take` returns early.
        }
        assert_eq!(std::fs::read(&spool_path).expect("back"), b"z");
        assert_eq!(std::fs::read_dir(&d.queue).expect("queue").count(), 0);
        // And once recorded, `taken` keeps it where it is.
        let t = Taking::begin(&d.store, [6; 16], &dest, &spool_path).expect("note");
        std::fs::rename(&spool_path, &dest).expect("move");
        t.taken();
        assert!(dest.exists() && !spool_path.exists());
    }
}
