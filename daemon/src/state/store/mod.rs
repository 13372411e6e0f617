//! Durable daemon state in redb: the ingress sequence counter and queue, the
//! egress replay window and delivery ledger.
//!
//! The appliance promises to lose nothing and deliver nothing twice across
//! crashes, so every change is one fsync'd redb commit
//! (`Durability::Immediate`, redb's default), and the changes that must not
//! be separated (a ledger entry and the replay window it implies) share one
//! transaction.
//!
//! One file per table or group of tables that change together:
//! `tables.rs` (the tables and the [`StateStore`] handle: the leaf),
//! `queue.rs` (ingress sequence counter and queue), `retained.rs` (the
//! totals of the sent packages kept for resends), `holds.rs` (held
//! packages), `ledger.rs` (egress ledger and replay window), `blobs.rs`
//! (stopped channels, link state), `error.rs`.

mod blobs;
mod error;
mod holds;
mod ledger;
mod queue;
mod retained;
mod tables;
#[cfg(test)]
mod tests;

pub use crate::state::store::blobs::StoppedChannel;
pub use crate::state::store::error::StoreError;
pub use crate::state::store::holds::{ApprovalMark, HeldPackage, HoldKind};
pub use crate::state::store::ledger::{LedgerCursor, LedgerEntry, LedgerPrune, LedgerState};
pub use crate::state::store::queue::{QueueRow, QueueState, QueuedPackage, Retired, StateChange};
pub use crate::state::store::tables::{PackageIdBytes, StateStore};
