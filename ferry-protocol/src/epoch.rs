//! The forward-evolving epoch secret.
//!
//! Both sides derive the same chain `E(0) → E(1) → …` with the suite's
//! one-way ratchet, on a schedule both know (origin and length), so forward
//! secrecy needs no back channel: once `E(e)` is erased, traffic of epoch
//! `e` cannot be decrypted or forged even by someone who later takes the
//! host. A side keeps the current epoch plus `grace` past epochs (packages
//! in flight across a boundary, clocks slightly apart) and erases the rest.

use crate::suite::{DatagramMac, LinkCrypto, Secret32};
use crate::Millis;
use std::collections::VecDeque;

/// When epochs start and how long they last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSchedule {
    /// Start of epoch 0, seconds since the Unix epoch.
    pub origin_unix_s: u64,
    /// Length of one epoch in seconds (at least 1).
    pub length_s: u64,
}

impl EpochSchedule {
    /// The epoch in force at `now` (0 before the origin; saturates at u32::MAX).
    pub fn epoch_at(&self, now: Millis) -> u32 {
        let secs = now.0 / 1000;
        let since = secs.saturating_sub(self.origin_unix_s);
        let e = since / self.length_s.max(1);
        u32::try_from(e).unwrap_or(u32::MAX)
    }
}

struct Entry {
    epoch: u32,
    secret: Secret32,
    mac: Box<dyn DatagramMac>,
}

/// The epoch secrets one side holds right now.
pub struct EpochChain {
    entries: VecDeque<Entry>,
    // The next epoch's keys, derived once so that a receiver can verify a
    // sender whose clock is slightly ahead without re-deriving per datagram.
    // Only one epoch ahead: datagrams claim an epoch before they are
    // authenticated, and a claim further ahead must cost a forger's target
    // nothing.
    lookahead: Option<Entry>,
    grace: u32,
}

impl std::fmt::Debug for EpochChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochChain")
            .field(
                "epochs",
                &self.entries.iter().map(|e| e.epoch).collect::<Vec<_>>(),
            )
            .field("grace", &self.grace)
            .finish()
    }
}

impl EpochChain {
    /// A chain whose oldest held epoch is `epoch` with `secret`.
    pub fn new(link: &dyn LinkCrypto, epoch: u32, secret: Secret32, grace: u32) -> EpochChain {
        let mac = link.datagram_mac(&secret);
        let mut entries = VecDeque::new();
        entries.push_back(Entry { epoch, secret, mac });
        EpochChain {
            entries,
            lookahead: None,
            grace,
        }
    }

    /// The newest epoch held.
    pub fn current(&self) -> u32 {
        self.entries.back().map(|e| e.epoch).unwrap_or(0)
    }

    /// The oldest epoch held and its secret: what to persist, since every
    /// newer epoch derives from it.
    pub fn oldest(&self) -> Option<(u32, &Secret32)> {
        self.entries.front().map(|e| (e.epoch, &e.secret))
    }

    /// Ratchets forward to `target` (no-op if already there or past), then
    /// erases epochs older than `target - grace`.
    pub fn advance_to(&mut self, link: &dyn LinkCrypto, target: u32) {
        while self.current() < target {
            let Some(last) = self.entries.back() else {
                return;
            };
            let epoch = last.epoch + 1;
            let entry = match self.lookahead.take() {
                Some(e) if e.epoch == epoch => e,
                _ => {
                    let secret = link.ratchet(&last.secret);
                    let mac = link.datagram_mac(&secret);
                    Entry { epoch, secret, mac }
                }
            };
            self.entries.push_back(entry);
            self.erase_old();
        }
    }

    fn erase_old(&mut self) {
        let floor = self.current().saturating_sub(self.grace);
        while self.entries.len() > 1 && self.entries.front().is_some_and(|e| e.epoch < floor) {
            // Dropping the entry zeroizes its secret.
            self.entries.pop_front();
        }
    }

    /// Derives (once) the keys of the epoch after the current one, so that
    /// [`Self::mac`] can answer for it.
    pub fn prepare_lookahead(&mut self, link: &dyn LinkCrypto) {
        let Some(last) = self.entries.back() else {
            return;
        };
        let epoch = last.epoch + 1;
        if self.lookahead.as_ref().is_some_and(|l| l.epoch == epoch) {
            return;
        }
        let secret = link.ratchet(&last.secret);
        let mac = link.datagram_mac(&secret);
        self.lookahead = Some(Entry { epoch, secret, mac });
    }

    /// Secret of epoch `e`, if still held.
    pub fn secret(&self, e: u32) -> Option<&Secret32> {
        self.entries
            .iter()
            .find(|x| x.epoch == e)
            .map(|x| &x.secret)
    }

    /// Datagram MAC of epoch `e`, if still held.
    pub fn mac(&self, e: u32) -> Option<&dyn DatagramMac> {
        self.entries
            .iter()
            .chain(self.lookahead.iter())
            .find(|x| x.epoch == e)
            .map(|x| x.mac.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule() {
        let s = EpochSchedule {
            origin_unix_s: 1000,
            length_s: 60,
        };
        assert_eq!(s.epoch_at(Millis(0)), 0);
        assert_eq!(s.epoch_at(Millis(1_059_999)), 0);
        assert_eq!(s.epoch_at(Millis(1_060_000)), 1);
    }
}
