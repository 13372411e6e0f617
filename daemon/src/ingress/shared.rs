//! What the ingress threads (intake, ingest API, control, send loop) share,
//! and what admission decided for a package: a leaf under the wiring so
//! every ingress room can use it without importing the wiring.

use crate::admin::protocol::SharedStatus;
use crate::config::Config;
use crate::ops::audit_trail::AuditTrail;
use crate::state::store::StateStore;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Serializes sequence-number reservation with the queue write, so that
/// packages enter the queue in sequence order whichever thread adds them.
pub(crate) type QueueLock = Arc<Mutex<()>>;

/// What the ingress threads (intake, ingest API, control, send loop) share.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    /// Sealing keys are moved into the sender; this keeps the KEK for the
    /// epoch state and the suite for digests.
    pub(crate) keys: ferry_keys::LinkKeys,
    /// Hourly key and certificate expiry check.
    pub(crate) expiry: Mutex<crate::ops::expiry::ExpiryWatch>,
    pub(crate) store: Arc<StateStore>,
    pub(crate) queue_dir: PathBuf,
    pub(crate) status: SharedStatus,
    pub(crate) lock: QueueLock,
    pub(crate) shutdown: Arc<AtomicBool>,
    /// The policy in force, when `[policy]` is configured.
    pub(crate) policy: Option<crate::inspection::policy_gate::PolicyGate>,
    /// Set by SIGHUP: reload the policy.
    pub(crate) reload: Arc<AtomicBool>,
    /// The audit log (or none).
    pub(crate) audit: AuditTrail,
    /// Serializes approvals, rejections and expiries of held packages.
    pub(crate) approvals_lock: Mutex<()>,
    /// Until when (ms since the Unix epoch) the spool intake waits, after
    /// a package was held because the malware engine could not scan it.
    pub(crate) scan_hold_until_ms: std::sync::atomic::AtomicU64,
    /// Channels the system administrator stopped (persisted in the store).
    pub(crate) stopped: std::sync::RwLock<BTreeMap<String, crate::state::store::StoppedChannel>>,
    /// Wakes an idle send loop when a package is queued.
    pub(crate) send_wake: Wake,
}

/// A wake-up call from the threads that queue packages to the send loop,
/// which otherwise idles in steps of up to 20 ms: a package queued on an
/// idle link starts at once instead of after half a step on average.
///
/// It also counts the packages queued, so a send loop holding back a
/// short bundle (`bundle_linger_ms`) knows when enough have come to fill
/// it without reading the queue on every wake.
#[derive(Default)]
pub(crate) struct Wake {
    pending: Mutex<bool>,
    cv: Condvar,
    queued: std::sync::atomic::AtomicU64,
}

impl Wake {
    /// `n` packages were queued: counted, and the waiter woken.
    pub(crate) fn queued(&self, n: u64) {
        self.queued
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        self.notify();
    }

    /// Packages queued since start (through [`Wake::queued`]).
    pub(crate) fn queued_total(&self) -> u64 {
        self.queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Wakes the waiter, or the next wait if none waits now.
    pub(crate) fn notify(&self) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *p = true;
        self.cv.notify_one();
    }

    /// Waits for a [`Wake::notify`] (one since the last wait counts) or
    /// `timeout`; says whether it was woken.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (mut p, _) = self
            .cv
            .wait_timeout_while(p, timeout, |pending| !*pending)
            .unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notify_wakes_the_wait_once_even_when_it_came_first() {
        let w = Arc::new(Wake::default());
        assert!(!w.wait(Duration::from_millis(1)), "woken without a notify");
        w.notify();
        assert!(
            w.wait(Duration::from_secs(60)),
            "the earlier notify was lost"
        );
        assert!(!w.wait(Duration::from_millis(1)), "one notify woke twice");
        let waiter = {
            let w = w.clone();
            std::thread::spawn(move || w.wait(Duration::from_secs(60)))
        };
        w.notify();
        assert!(
            waiter.join().unwrap_or(false),
            "the waiting thread was not woken"
        );
    }
}

impl Shared {
    /// The stop record of `channel`, if it is stopped.
    pub(crate) fn stopped(&self, channel: &str) -> Option<crate::state::store::StoppedChannel> {
        match self.stopped.read() {
            Ok(m) => m.get(channel).cloned(),
            Err(p) => p.into_inner().get(channel).cloned(),
        }
    }
}

/// Where an admitted package went.
pub(crate) enum Admitted {
    /// Into the send queue under this sequence number.
    Queued(u64),
    /// Held for approval until this time (ms since the Unix epoch).
    Held(u64),
    /// Held until its channel's window opens at this time (ms since the
    /// Unix epoch).
    AwaitingWindow(u64),
}

/// What the policy granted an accepted package besides "allowed".
#[derive(Default)]
pub(crate) struct Grant {
    /// Held for these approvals first.
    pub(crate) approval: Option<ferry_policy::ApprovalRequirement>,
    /// A window was closed: not sent before it opens (ms since the Unix
    /// epoch).
    pub(crate) window_until_unix_ms: Option<u64>,
    /// The sender as the policy saw it, kept with a held package to decide
    /// again at release.
    pub(crate) subject: Option<ferry_policy::Subject>,
}
