//! The daemon's side of the audit log: one place that opens the log named
//! in `[audit]`, appends what the daemon decides and does, and answers
//! whether packages may still be accepted (fail-secure: a filling disk
//! stops intake while the log can still record why).
//!
//! An append returns only once its record is on stable storage, and a
//! package is accepted only if its records were written: nothing is done
//! that the log does not show.

use crate::config::Config;
use crate::DaemonError;
pub use ferry_audit::{Actor, AuditRecord, EventKind, Outcome, Role};
use std::path::Path;

/// The audit log, or nothing when `[audit]` is not configured.
pub struct AuditTrail {
    log: Option<ferry_audit::AuditLog>,
    /// When retention last ran.
    last_retention: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How often expired segments are looked for.
const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

impl AuditTrail {
    /// Opens the log of `[audit] dir` (made by `ferryctl audit init`).
    pub fn open(cfg: &Config) -> Result<AuditTrail, DaemonError> {
        let Some(a) = &cfg.audit else {
            return Ok(AuditTrail::disabled());
        };
        let opts = ferry_audit::AuditOptions {
            min_free_bytes_accept: a.min_free_bytes_accept,
            checkpoint_sink: Some(std::sync::Arc::new(|cp: &ferry_audit::Checkpoint| {
                // The checkpoint leaves the log's own files: an outside copy
                // (journald/syslog via the service's stderr) to detect
                // truncation and deletion against.
                tracing::info!(target: "ferry_audit_checkpoint", "{}", cp.to_syslog("ferryd"));
            })),
            ..ferry_audit::AuditOptions::default()
        };
        let log = ferry_audit::AuditLog::open(&a.dir, opts).map_err(|e| {
            DaemonError::AuditLog(format!(
                "audit log {}: {e}; an auditor creates it with `ferryctl audit init --dir {}`",
                a.dir.display(),
                a.dir.display()
            ))
        })?;
        Ok(AuditTrail {
            log: Some(log),
            last_retention: std::sync::Mutex::new(None),
        })
    }

    /// No audit log (tests and the demo without `[audit]`).
    pub fn disabled() -> AuditTrail {
        AuditTrail {
            log: None,
            last_retention: std::sync::Mutex::new(None),
        }
    }

    /// Deletes whole segments past the retention period (180 days by
    /// default), at most once an hour; the log records what it removed.
    pub fn tick(&self) {
        let Some(log) = &self.log else { return };
        let Ok(mut last) = self.last_retention.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < RETENTION_INTERVAL) {
            return;
        }
        *last = Some(std::time::Instant::now());
        let now_ms = crate::now_millis().0 as i64;
        match log.apply_retention(now_ms) {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(segments = ?removed, "audit retention removed expired segments");
            }
            Ok(_) => {}
            Err(e) => tracing::error!("audit retention failed: {e}"),
        }
    }

    /// Appends `record` and waits until it is durable.
    pub fn record(&self, record: AuditRecord) -> Result<(), DaemonError> {
        self.append(record, true)
    }

    /// Appends `record` without waiting for the disk. It becomes durable
    /// with the next flush of the log: the one that records what came of
    /// the same request (a package queued, a refusal), anyone else's, or
    /// the seal timer's within `seal_interval`. For a record that must
    /// come before another on disk but need not be waited for alone: the
    /// log is one sequence, so the later record's flush covers it.
    pub fn record_pending(&self, record: AuditRecord) -> Result<(), DaemonError> {
        self.append(record, false)
    }

    fn append(&self, record: AuditRecord, wait: bool) -> Result<(), DaemonError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let appended = if wait {
            log.append(record)
        } else {
            log.append_nowait(record)
        };
        appended
            .map(|_| ())
            .map_err(|e| DaemonError::AuditLog(format!("audit log append failed: {e}")))
    }

    /// Appends and logs a failure instead of returning it (for records of
    /// things already done, such as a delivery).
    pub fn note(&self, record: AuditRecord) {
        if let Err(e) = self.record(record) {
            tracing::error!("{e}");
        }
    }

    /// Records several events with one wait for the disk (the log's
    /// group commit); failures are logged, as with [`AuditTrail::note`].
    pub fn note_all(&self, records: Vec<AuditRecord>) {
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.record_all(records) {
            tracing::error!("{e}");
        }
    }

    /// Records several events with one wait for the disk; an error if any
    /// of them may not be on disk.
    pub fn record_all(&self, records: Vec<AuditRecord>) -> Result<(), DaemonError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let failed = |e: ferry_audit::AuditError| {
            DaemonError::AuditLog(format!("audit log append failed: {e}"))
        };
        for r in records {
            log.append_nowait(r).map_err(failed)?;
        }
        log.flush().map_err(failed)
    }

    /// `Ok` while packages may be accepted; otherwise why not.
    pub fn accepting(&self) -> Result<(), String> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let h = log.health_cached();
        if h.accepting_packages {
            Ok(())
        } else if h.failed {
            Err("the audit log failed; no package is accepted until it is repaired".into())
        } else {
            Err(format!(
                "the audit log's disk has {} bytes free, below the {} bytes kept for auditing; no package is accepted",
                h.free_bytes, h.accept_floor_bytes
            ))
        }
    }

    /// Where the log lives, if configured.
    pub fn dir(&self) -> Option<&Path> {
        self.log.as_ref().map(|l| l.dir())
    }

    /// Seals what is pending and closes the log.
    pub fn close(self) {
        if let Some(log) = self.log {
            if let Err(e) = log.close() {
                tracing::error!("closing the audit log: {e}");
            }
        }
    }
}

/// The actor for a client certificate identity.
pub fn actor_of(identity: &ferry_certs::Identity) -> Actor {
    let role = match identity.role.as_deref() {
        Some("sysadmin") => Role::SystemAdmin,
        Some("secadmin") => Role::SecurityAdmin,
        Some("auditor") => Role::Auditor,
        Some("reviewer") => Role::Approver,
        _ => Role::Sender,
    };
    Actor::new(
        format!(
            "{} (sha256:{})",
            identity.subject,
            identity
                .fingerprint_sha256
                .chars()
                .take(16)
                .collect::<String>()
        ),
        role,
    )
}
