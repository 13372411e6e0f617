//! The ferry one-way protocol, sans I/O.
//!
//! This crate owns the wire format (see `docs/ferry-protocol.md`), forward
//! error correction, manifest signing, payload sealing, the epoch ratchet,
//! replay protection and the sender and receiver state machines. It must
//! never open a socket, read a clock or touch a file: bytes and time are
//! passed in by the caller (the daemon, or a simulated link in tests), so
//! loss, reorder and attack tests are deterministic.
#![forbid(unsafe_code, unused_must_use)]
#![deny(missing_docs, unreachable_pub)]

pub mod budget;
pub mod bundle;
pub mod epoch;
pub mod fec;
pub mod manifest;
pub mod receiver;
pub mod replay;
pub mod sender;
pub mod suite;
pub mod wire;

pub use budget::{LossBudget, SendPlan};
pub use bundle::{BundleError, BundleMember};
pub use epoch::{EpochChain, EpochSchedule};
pub use manifest::{Inspection, InspectionVerdict, Manifest, PackageId, PackageMeta};
pub use receiver::{BlockStore, Event, Receiver, ReceiverConfig, ReceiverStats};
pub use replay::ReplayWindow;
pub use sender::{Sender, SenderConfig, SenderStats, Transmit};
pub use suite::{CryptoError, LinkCrypto, OpenKeys, SealKeys, Secret32, SuiteId};

/// Time as the caller sees it: milliseconds since the Unix epoch (UTC).
/// The protocol never reads a clock; the daemon passes wall-clock time, the
/// tests pass simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + ms`, saturating.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
    /// `self - earlier` in ms, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
