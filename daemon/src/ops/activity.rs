//! The service log's activity summary: one line a minute instead of one
//! per package.
//!
//! Why: a package's success (accepted, sent, delivered, a duplicate
//! suppressed) is already an audit record, chained and queryable
//! (`ferryctl audit`). As a service-log line too, at thousands of
//! packages a second, it cost a few per cent of the CPU of the small-
//! package path, and under systemd it would run into journald's default
//! rate limit (10,000 messages per 30 s per service), which then drops
//! the service's lines, warnings and errors included. So those lines are
//! at `debug` under the target [`PACKAGE_TARGET`], and this module writes
//! the totals at `info` under [`ACTIVITY_TARGET`] once a minute, when
//! something happened, and once more at a clean stop. Refusals, holds
//! and failures keep their own `info`/`warn` lines.

use crate::admin::protocol::{self, SharedStatus, Status};
use std::time::{Duration, Instant};

/// The target of the per-package success lines (`debug`):
/// `RUST_LOG=info,ferry::package=debug` shows them.
pub(crate) const PACKAGE_TARGET: &str = "ferry::package";

/// The target of the minute's summary (`info`).
pub(crate) const ACTIVITY_TARGET: &str = "ferry::activity";

/// How often the summary is written while packages move.
pub(crate) const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// The status's running totals the summary reports the change of.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) accepted: u64,
    pub(crate) accepted_bytes: u64,
    pub(crate) sent: u64,
    pub(crate) bundles_sent: u64,
    pub(crate) resent: u64,
    pub(crate) delivered: u64,
    pub(crate) delivered_bytes: u64,
    pub(crate) duplicates: u64,
    pub(crate) failed: u64,
    pub(crate) refused: u64,
}

impl Totals {
    fn of(s: &Status) -> Totals {
        let (accepted, accepted_bytes) = s.channels.values().fold((0u64, 0u64), |(n, b), c| {
            (
                n.saturating_add(c.accepted),
                b.saturating_add(c.accepted_bytes),
            )
        });
        Totals {
            accepted,
            accepted_bytes,
            sent: s.sent,
            bundles_sent: s.bundles_sent,
            resent: s.resent,
            delivered: s.delivered,
            delivered_bytes: s.delivered_bytes,
            duplicates: s.duplicates_suppressed,
            failed: s.failed,
            refused: s.rejected,
        }
    }

    /// What changed since `earlier` (a counter never goes down; if one
    /// did, the change is counted as 0 rather than wrapping).
    fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            accepted: self.accepted.saturating_sub(earlier.accepted),
            accepted_bytes: self.accepted_bytes.saturating_sub(earlier.accepted_bytes),
            sent: self.sent.saturating_sub(earlier.sent),
            bundles_sent: self.bundles_sent.saturating_sub(earlier.bundles_sent),
            resent: self.resent.saturating_sub(earlier.resent),
            delivered: self.delivered.saturating_sub(earlier.delivered),
            delivered_bytes: self.delivered_bytes.saturating_sub(earlier.delivered_bytes),
            duplicates: self.duplicates.saturating_sub(earlier.duplicates),
            failed: self.failed.saturating_sub(earlier.failed),
            refused: self.refused.saturating_sub(earlier.refused),
        }
    }
}

/// Keeps the totals of the last summary and writes the next one when due.
pub(crate) struct Activity {
    last: Totals,
    since: Instant,
}

impl Activity {
    /// Starts from the status's totals now: what happened before (for
    /// example recovery at start-up) is not reported as the first
    /// minute's.
    pub(crate) fn new(status: &SharedStatus, now: Instant) -> Activity {
        Activity {
            last: protocol::read(status, Totals::of),
            since: now,
        }
    }

    /// Called once a second: writes the summary when a minute has passed
    /// and something changed.
    pub(crate) fn tick(&mut self, status: &SharedStatus, now: Instant) {
        if let Some((seconds, d)) = self.due(&protocol::read(status, Totals::of), now, false) {
            log(status, seconds, &d);
        }
    }

    /// At a clean stop: what happened since the last summary, however
    /// short the time.
    pub(crate) fn finish(mut self, status: &SharedStatus, now: Instant) {
        if let Some((seconds, d)) = self.due(&protocol::read(status, Totals::of), now, true) {
            log(status, seconds, &d);
        }
    }

    /// The seconds and the change to report, if a summary is due: a minute
    /// passed (or `stopping`) and some total moved. The window restarts
    /// either way once a minute passed.
    fn due(&mut self, now_totals: &Totals, now: Instant, stopping: bool) -> Option<(f64, Totals)> {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < SUMMARY_INTERVAL && !stopping {
            return None;
        }
        let d = now_totals.since(&self.last);
        self.last = *now_totals;
        self.since = now;
        (d != Totals::default()).then_some((elapsed.as_secs_f64(), d))
    }
}

fn log(status: &SharedStatus, seconds: f64, d: &Totals) {
    let (role, queued) = protocol::read(status, |s| (s.role.clone(), s.queued));
    // Tenths of a second: the summary at a stop may cover less than one.
    let seconds = (seconds * 10.0).round() / 10.0;
    if role == "egress" {
        tracing::info!(
            target: ACTIVITY_TARGET,
            seconds,
            delivered = d.delivered,
            delivered_bytes = d.delivered_bytes,
            duplicates_suppressed = d.duplicates,
            failed = d.failed,
            refused = d.refused,
            "activity"
        );
    } else {
        tracing::info!(
            target: ACTIVITY_TARGET,
            seconds,
            accepted = d.accepted,
            accepted_bytes = d.accepted_bytes,
            sent = d.sent,
            bundles_sent = d.bundles_sent,
            resent = d.resent,
            refused = d.refused,
            queued,
            "activity"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn status(delivered: u64, refused: u64) -> SharedStatus {
        Arc::new(Mutex::new(Status {
            role: "egress".into(),
            delivered,
            delivered_bytes: delivered * 1024,
            rejected: refused,
            ..Status::default()
        }))
    }

    #[test]
    fn a_summary_is_due_once_a_minute_with_what_changed_and_never_for_nothing() {
        let t0 = Instant::now();
        let st = status(5, 0);
        let mut a = Activity::new(&st, t0);
        let now = |s: &SharedStatus| protocol::read(s, Totals::of);
        protocol::update(&st, |s| {
            s.delivered = 12;
            s.rejected = 1;
        });
        // Before the minute: nothing, and the change is kept for later.
        assert_eq!(a.due(&now(&st), t0 + Duration::from_secs(59), false), None);
        let (secs, d) = a
            .due(&now(&st), t0 + Duration::from_secs(61), false)
            .expect("a minute passed and packages moved");
        assert_eq!(secs, 61.0);
        assert_eq!((d.delivered, d.refused), (7, 1), "{d:?}");
        // The next minute, nothing moved: no line.
        assert_eq!(a.due(&now(&st), t0 + Duration::from_secs(125), false), None);
        // A stop reports what moved since, however short the time.
        protocol::update(&st, |s| s.delivered = 13);
        let (secs, d) = a
            .due(&now(&st), t0 + Duration::from_secs(127), true)
            .expect("the stop reports the last package");
        assert_eq!((secs, d.delivered, d.refused), (2.0, 1, 0));
        // What happened before `new` is not the first minute's.
        let b = Activity::new(&st, t0);
        assert_eq!(b.last.delivered, 13);
    }

    #[test]
    fn accepted_packages_are_the_sum_over_channels() {
        let mut s = Status::default();
        s.channels.entry("a".into()).or_default().accepted = 2;
        s.channels.entry("b".into()).or_default().accepted = 3;
        s.channels.entry("b".into()).or_default().accepted_bytes = 30;
        let t = Totals::of(&s);
        assert_eq!((t.accepted, t.accepted_bytes), (5, 30));
    }
}
