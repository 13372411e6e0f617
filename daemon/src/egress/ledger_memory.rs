//! How long the delivery ledger remembers a delivered package, and what
//! that costs a package older than its memory.
//!
//! The ledger keeps one entry per delivered package id so that a second
//! copy (a redundant send, a self-healing re-send, an operator's resend)
//! is suppressed. Kept forever, it grows by about 200 bytes a package
//! without bound, and so do the start-up scans over it. Every copy comes
//! from the ingress side's retained packages (`[retention] max_age_s`, 7
//! days by default), so an entry far older than that protects nothing:
//! entries of packages created more than `ledger_max_age_s` ago (30 days by
//! default) are pruned, a bounded slice at a time between the writer's
//! batches.
//!
//! What keeps "once only" exact whatever the settings and clocks: pruning
//! raises a horizon (persisted with the prune), and the writer refuses an
//! unknown package created before it, instead of delivering what may be a
//! second copy. Both compare the manifest's creation time with this host's
//! clock, in the writer's thread, so no copy slips between a prune and the
//! check that would have caught it.

use crate::admin::protocol::{self, SharedStatus};
use crate::egress::status::alarm;
use crate::state::store::{LedgerCursor, StateStore, StoreError};
use std::time::{Duration, Instant};

/// Age rows one pruning transaction takes: a slice short enough not to
/// hold up deliveries (the writer takes a batch between two slices).
const PRUNE_ROWS: usize = 4096;

/// The prefix of the alarm a failed prune raises (cleared by the next
/// prune that works).
const PRUNE_ALARM: &str = "delivery ledger:";

pub(crate) struct LedgerMemory {
    /// `ledger_max_age_s` in ms; 0 = forever.
    max_age_ms: u64,
    /// Packages created before this (ms) may have been pruned: refused.
    pruned_below: u64,
    /// When the current or last round started.
    last_round: Option<Instant>,
    /// The horizon of the round in progress, and where it goes on.
    round: Option<(u64, Option<LedgerCursor>)>,
    /// The newest creation time of a package recorded since start: a
    /// round's horizon never passes it less `max_age`, so a clock set
    /// ahead on this host alone cannot make current packages look old.
    newest_created: Option<u64>,
}

impl LedgerMemory {
    /// Reads the horizon an earlier run pruned to: it holds even when
    /// pruning is now off (`max_age_s` 0), since those entries are gone.
    pub(crate) fn open(store: &StateStore, max_age_s: u64) -> Result<LedgerMemory, StoreError> {
        let pruned_below = store.ledger_pruned_below()?;
        Ok(LedgerMemory {
            max_age_ms: max_age_s.saturating_mul(1000),
            pruned_below,
            last_round: None,
            round: None,
            newest_created: None,
        })
    }

    /// A package created at `created_unix_ms` was recorded in the ledger
    /// (delivered, or waiting for its downstream endpoint).
    pub(crate) fn recorded(&mut self, created_unix_ms: u64) {
        self.newest_created = Some(
            self.newest_created
                .map_or(created_unix_ms, |n| n.max(created_unix_ms)),
        );
    }

    /// Whether a package created at `created_unix_ms` and not in the
    /// ledger may be one whose entry was pruned: such a package is refused.
    pub(crate) fn forgotten(&self, created_unix_ms: u64) -> bool {
        created_unix_ms < self.pruned_below
    }

    /// The horizon, for the refusal's reason.
    pub(crate) fn pruned_below(&self) -> u64 {
        self.pruned_below
    }

    /// Time between two rounds: an eighth of the memory, between 1 s and
    /// 10 minutes (so a package is refused at most that much earlier or
    /// later than `max_age_s` says, and a short test setting is seen soon).
    fn interval(&self) -> Duration {
        Duration::from_millis(self.max_age_ms / 8)
            .clamp(Duration::from_secs(1), Duration::from_secs(600))
    }

    /// How long the writer may wait for packages before the next step is
    /// due: none while a round is under way.
    pub(crate) fn wait(&self, now: Instant) -> Duration {
        if self.max_age_ms == 0 {
            return Duration::from_secs(3600);
        }
        if self.round.is_some() {
            return Duration::ZERO;
        }
        match self.last_round {
            None => Duration::ZERO,
            Some(t) => self
                .interval()
                .saturating_sub(now.saturating_duration_since(t)),
        }
    }

    /// One slice of pruning when one is due: starts a round (horizon: the
    /// earlier of now and the newest recorded package's creation, less
    /// `max_age_s`) or goes on with the current one.
    pub(crate) fn step(
        &mut self,
        store: &StateStore,
        status: &SharedStatus,
        now: Instant,
        now_unix_ms: u64,
    ) {
        if self.max_age_ms == 0 {
            return;
        }
        let (below, from) = match self.round {
            Some(r) => r,
            None => {
                if self
                    .last_round
                    .is_some_and(|t| now.saturating_duration_since(t) < self.interval())
                {
                    return;
                }
                self.last_round = Some(now);
                // Nothing recorded since start: no creation time to
                // check this host's clock against; wait for one.
                let Some(newest) = self.newest_created else {
                    return;
                };
                (
                    now_unix_ms.min(newest).saturating_sub(self.max_age_ms),
                    None,
                )
            }
        };
        match store.prune_ledger(below, from, PRUNE_ROWS) {
            Ok(p) => {
                self.pruned_below = self.pruned_below.max(below);
                self.round = p.next.map(|c| (below, Some(c)));
                if p.removed > 0 {
                    protocol::update(status, |s| s.ledger_pruned += p.removed);
                    tracing::info!(
                        removed = p.removed,
                        kept_in_flight = p.in_flight,
                        created_before_unix_ms = below,
                        "delivery ledger pruned"
                    );
                }
                protocol::update(status, |s| s.alarms.retain(|a| !a.starts_with(PRUNE_ALARM)));
            }
            Err(e) => {
                // Not pruned: the ledger only grows until the next round.
                self.round = None;
                alarm(
                    status,
                    &format!(
                        "{PRUNE_ALARM} pruning failed: {e}; it is tried again in {} s",
                        self.interval().as_secs()
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_due_at_start_then_once_an_interval_and_never_when_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::open(&dir.path().join("s.redb")).expect("store");
        let status = SharedStatus::default();
        let t0 = Instant::now();
        let mut m = LedgerMemory::open(&store, 16).expect("open");
        assert_eq!(m.interval(), Duration::from_secs(2));
        assert_eq!(m.wait(t0), Duration::ZERO, "the first round is due at once");
        // Nothing recorded yet: no horizon.
        m.step(&store, &status, t0, 100_000);
        assert_eq!(m.pruned_below(), 0);
        m.last_round = None;
        // This host's clock ahead of the newest package: the package's
        // time bounds the horizon.
        m.recorded(100_000);
        m.step(&store, &status, t0, 900_000);
        assert_eq!(m.pruned_below(), 100_000 - 16_000);
        assert!(m.forgotten(83_999) && !m.forgotten(84_000));
        assert_eq!(
            m.wait(t0 + Duration::from_millis(500)),
            Duration::from_millis(1500)
        );
        // Not due yet: the horizon does not move.
        m.step(&store, &status, t0 + Duration::from_secs(1), 200_000);
        assert_eq!(m.pruned_below(), 84_000);
        m.recorded(250_000);
        m.step(&store, &status, t0 + Duration::from_secs(2), 200_000);
        assert_eq!(m.pruned_below(), 184_000, "now, earlier than the newest");
        // The horizon is persisted, and holds with pruning off.
        let off = LedgerMemory::open(&store, 0).expect("open");
        assert!(off.forgotten(183_999) && !off.forgotten(184_000));
        assert_eq!(off.wait(t0), Duration::from_secs(3600));
    }
}
