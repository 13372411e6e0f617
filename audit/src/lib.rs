//! ferry's tamper-evident audit log and the audit officer's tools.
//!
//! This crate owns the audit trail: append-only, hash-chained segment files
//! with group commit, seals under a forward-evolving HMAC key, signed
//! checkpoints for an outside copy, and the verifier and query tools the
//! audit officer uses. It never stores secrets or payload contents in a
//! record (ids and hashes only), and it never rewrites or deletes a record
//! except whole expired segments under retention, which it records.
#![forbid(unsafe_code)]

pub mod cli;
pub mod error;
pub mod forward;
pub mod index;
pub mod keys;
pub mod query;
pub mod record;
pub mod segment;
pub mod time_fmt;
pub mod verify;
pub mod writer;

pub use error::AuditError;
pub use keys::{Checkpoint, VerifyKey};
pub use query::{query, trace, Filter};
pub use record::{Actor, AuditRecord, EventKind, Outcome, Role, StoredRecord};
pub use verify::{verify, Finding, TamperKind, VerifyReport};
pub use writer::{archive_segment, init, AuditLog, AuditOptions, CheckpointSink, Health, Seq};
