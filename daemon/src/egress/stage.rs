//! Staging in the receive thread: each package's verified plaintext goes
//! straight into its `OUTBOX/.staging` file as the receiver emits it, so
//! the receive thread never waits for the writer thread (an fsync, a
//! re-inspection, a ledger transaction) while datagrams arrive. Only a
//! completed package's staging file and manifest cross to the writer.
//!
//! These writes land in the page cache: the kernel's disk-backed buffer,
//! bounded by the disk, not by this process's memory. Durability is the
//! writer's job (it syncs before recording a delivery).

use crate::admin::protocol::SharedStatus;
use crate::egress::status::alarm;
use crate::state::outbox::{Outbox, Staging};
use std::collections::HashMap;

/// A package being staged.
pub(crate) struct Staged {
    /// `None` once staging failed (the outbox alarm says why): the
    /// package's completion is then refused, never delivered in part.
    pub(crate) staging: Option<Staging>,
    /// The send whose data is staged.
    pub(crate) attempt: u8,
}

/// The staging files of the packages in flight.
pub(crate) struct Stager {
    outbox: Outbox,
    staged: HashMap<u64, Staged>,
}

impl Stager {
    pub(crate) fn new(outbox: Outbox) -> Stager {
        Stager {
            outbox,
            staged: HashMap::new(),
        }
    }

    /// A verified manifest: (re)starts the package's staging file.
    pub(crate) fn start(&mut self, status: &SharedStatus, seq: u64, attempt: u8) {
        if let Some(old) = self.staged.remove(&seq) {
            if let Some(st) = old.staging {
                self.outbox.abort(st);
            }
        }
        let staging = match self.outbox.begin(&format!("{seq}-{attempt}")) {
            Ok(s) => Some(s),
            Err(e) => {
                alarm(status, &format!("outbox: {e}"));
                None
            }
        };
        self.staged.insert(seq, Staged { staging, attempt });
    }

    /// Verified plaintext, in order.
    pub(crate) fn data(&mut self, status: &SharedStatus, seq: u64, data: &[u8]) {
        let Some(s) = self.staged.get_mut(&seq) else {
            return;
        };
        let Some(st) = s.staging.as_mut() else {
            return;
        };
        if let Err(e) = st.write_all(data) {
            // Nothing partial stays: the staging file goes, and this send
            // of the package is lost (a redundant send or an operator
            // resend brings it once space returns).
            alarm(status, &format!("outbox: {e}"));
            if let Some(st) = s.staging.take() {
                self.outbox.abort(st);
            }
        }
    }

    /// A failed send: its staging file goes.
    pub(crate) fn failed(&mut self, seq: u64) {
        if let Some(Staged {
            staging: Some(st), ..
        }) = self.staged.remove(&seq)
        {
            self.outbox.abort(st);
        }
    }

    /// A completed package: its staging, handed to the writer.
    pub(crate) fn take(&mut self, seq: u64) -> Option<Staged> {
        self.staged.remove(&seq)
    }
}
