//! Errors of the audit crate. Each message names the file or thing at fault
//! and says what the operator can do about it.

use std::path::PathBuf;

/// Everything that can go wrong while writing, reading or verifying the log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file or directory of the log could not be read or written.
    #[error("audit log: {what} {path}: {source} (check that the file exists, its owner and mode, and free space)")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no audit log (no `log.meta`).
    #[error("{0}: no audit log here (run `ferryctl audit init --dir DIR` first)")]
    NotInitialized(PathBuf),
    /// `init` was asked to create a log where one already exists.
    #[error("{0}: an audit log already exists here; refusing to overwrite it")]
    AlreadyInitialized(PathBuf),
    /// Another process (normally ferryd) holds the writer lock.
    #[error("{0}: the audit log is open for writing by another process (ferryd?); only one writer at a time. To use the audit tools on a running ferryd's log, add --via /etc/ferry/ferryd.toml so the use is recorded through it")]
    Locked(PathBuf),
    /// A file of the log does not have the expected layout.
    #[error("{path}: {reason} (run `ferryctl audit verify` and keep the file for investigation)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The host's seal key file is missing or damaged: the log cannot be sealed.
    #[error("{path}: seal key unusable: {reason} (the log can still be verified; re-initialise a new log directory to keep auditing)")]
    SealKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The auditor's verify key file could not be used.
    #[error(
        "{path}: verify key unusable: {reason} (use the key file written by `ferryctl audit init`)"
    )]
    VerifyKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Free space fell below the floor at which the log still accepts records.
    #[error("{path}: only {free_bytes} bytes free, below the audit floor of {floor_bytes}; free space, then restart ferryd")]
    DiskFull {
        /// The log directory.
        path: PathBuf,
        /// Bytes available.
        free_bytes: u64,
        /// The configured floor.
        floor_bytes: u64,
    },
    /// An earlier write or sync failed; the writer refuses everything after it
    /// because it can no longer tell what reached the disk.
    #[error("audit log {0}: an earlier write failed; the writer is stopped (restart ferryd after fixing the cause)")]
    Poisoned(PathBuf),
    /// A record could not be encoded.
    #[error("audit record could not be encoded: {0}")]
    Encode(String),
    /// The redb index failed.
    #[error("audit index {path}: {reason} (delete the file; it is rebuilt from the segments)")]
    Index {
        /// The index file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A command-line argument is not valid.
    #[error("{0}")]
    Usage(String),
    /// Forwarding to syslog failed.
    #[error("forwarding to {target}: {source} (the cursor was kept; forwarding resumes from it)")]
    Forward {
        /// The destination.
        target: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A key file of the host does not belong to this log, or does not fit
    /// its state (another log's `seal.key`, or a key ahead of the log because
    /// the log's last seals were cut off).
    #[error("{path}: {reason}; the writer refuses to seal with it. Put back this log's own key file (or start a new log with `ferryctl audit init`), and run `ferryctl audit verify` on this log")]
    KeyMismatch {
        /// The key file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// A private key file that other users may read or change.
    #[error("{path}: mode {mode:04o} lets other users read or change this private key; refused. Run `chmod 600` on it, and treat the key as possibly copied")]
    KeyMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The use of the audit tool could not itself be audited, so it was refused.
    #[error("this use of the audit log could not be recorded ({0}); refused, as every audit-tool use must be audited")]
    NotAudited(String),
    /// The running ferryd refused to record this use of the audit tools
    /// (`--via`): the caller does not hold the auditor role there. Nothing
    /// of the log is shown.
    #[error("refused by ferryd: {0}; nothing of the log is shown. The audit tools with --via need the auditor role in [admin] (or an auditor certificate)")]
    Refused(String),
}

impl AuditError {
    /// Wraps an I/O error with the file it concerns.
    /// A failed durable write ([`ferry_common::durable`]), with its step.
    pub(crate) fn write(e: ferry_common::durable::WriteError) -> Self {
        use ferry_common::durable::WriteError as W;
        match e {
            W::Io { step, path, source } => AuditError::Io {
                what: step,
                path,
                source,
            },
            W::Exists { path } => AuditError::Io {
                what: "creating",
                path,
                source: std::io::ErrorKind::AlreadyExists.into(),
            },
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuditError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        AuditError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
