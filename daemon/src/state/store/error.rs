//! Why the state store failed: one error for every table, each variant
//! naming the database file and saying what to do.

use std::path::PathBuf;

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
