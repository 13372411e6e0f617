//! Replay protection: which sequence numbers the receiver has accepted.
//!
//! A package is accepted at most once per link. Sequence numbers increase at
//! the sender; the receiver remembers the highest accepted one and a bitmap
//! of the `WINDOW` numbers below it, so packages completing slightly out of
//! order (a redundant send of an older package, a large package finishing
//! after small ones) are still accepted, and anything older than the window
//! is refused. The daemon persists [`ReplayWindow::to_bytes`] with every
//! delivery, so a restart never re-accepts a package.

/// Sequence numbers remembered below the highest accepted one.
pub const WINDOW: u64 = 65_536;
const WORDS: usize = (WINDOW / 64) as usize;
const ENCODED_LEN: usize = 1 + 8 + WORDS * 8;

/// What the window says about a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqStatus {
    /// Not seen: may be accepted.
    Fresh,
    /// Already accepted.
    Accepted,
    /// Older than the window: refused, it can no longer be checked.
    TooOld,
}

/// The accepted-sequence window of one link.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    top: Option<u64>,
    bits: Vec<u64>,
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .finish()
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new()
    }
}

/// A persisted window could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replay window state is corrupt ({0}); restore the state directory from backup — starting empty would re-accept old packages")]
pub struct ReplayStateError(&'static str);

impl ReplayWindow {
    /// An empty window: nothing accepted yet.
    pub fn new() -> ReplayWindow {
        ReplayWindow {
            top: None,
            bits: vec![0; WORDS],
        }
    }

    /// Highest accepted sequence number.
    pub fn top(&self) -> Option<u64> {
        self.top
    }

    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Status of `seq`.
    pub fn check(&self, seq: u64) -> SeqStatus {
        match self.top {
            None => SeqStatus::Fresh,
            Some(top) if seq > top => SeqStatus::Fresh,
            Some(top) if top - seq >= WINDOW => SeqStatus::TooOld,
            Some(_) => {
                let (w, m) = Self::bit(seq);
                if self.bits[w] & m != 0 {
                    SeqStatus::Accepted
                } else {
                    SeqStatus::Fresh
                }
            }
        }
    }

    /// Records `seq` as accepted. Returns false (and changes nothing) when
    /// it was not fresh.
    pub fn accept(&mut self, seq: u64) -> bool {
        if self.check(seq) != SeqStatus::Fresh {
            return false;
        }
        match self.top {
            Some(top) if seq <= top => {}
            Some(top) => {
                // Slide: clear the bits of the numbers skipped over, which
                // now stand for sequence numbers not seen yet.
                let gap = seq - top;
                if gap >= WINDOW {
                    self.bits.iter_mut().for_each(|w| *w = 0);
                } else {
                    for s in top + 1..=seq {
                        let (w, m) = Self::bit(s);
                        self.bits[w] &= !m;
                    }
                }
                self.top = Some(seq);
            }
            None => {
                self.top = Some(seq);
            }
        }
        let (w, m) = Self::bit(seq);
        self.bits[w] |= m;
        true
    }

    /// Fixed-size encoding for persistence.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ENCODED_LEN);
        v.push(u8::from(self.top.is_some()));
        v.extend_from_slice(&self.top.unwrap_or(0).to_be_bytes());
        for w in &self.bits {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    /// Reads [`Self::to_bytes`] back.
    pub fn from_bytes(b: &[u8]) -> Result<ReplayWindow, ReplayStateError> {
        if b.len() != ENCODED_LEN {
            return Err(ReplayStateError("wrong length"));
        }
        let mut top = [0u8; 8];
        top.copy_from_slice(&b[1..9]);
        let top = match b[0] {
            0 => None,
            1 => Some(u64::from_be_bytes(top)),
            _ => return Err(ReplayStateError("bad flag")),
        };
        let bits = b[9..]
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                u64::from_be_bytes(a)
            })
            .collect();
        Ok(ReplayWindow { top, bits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn basic() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(5));
        assert!(!w.accept(5));
        assert_eq!(w.check(4), SeqStatus::Fresh);
        assert!(w.accept(4));
        assert!(w.accept(WINDOW + 10));
        assert_eq!(w.check(5), SeqStatus::TooOld);
        assert_eq!(w.check(11), SeqStatus::Fresh);
        assert_eq!(w.check(WINDOW + 10), SeqStatus::Accepted);
        let back = ReplayWindow::from_bytes(&w.to_bytes()).expect("decodes");
        assert_eq!(back, w);
        assert!(ReplayWindow::from_bytes(&[0; 3]).is_err());
    }

    proptest! {
        // Against a set: a sequence is accepted exactly once while it is in
        // the window, and never when older than the window.
        #[test]
        fn matches_model(seqs in proptest::collection::vec(0u64..200_000, 1..400)) {
            let mut w = ReplayWindow::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut top: Option<u64> = None;
            for s in seqs {
                let expect_fresh = !seen.contains(&s) && top.is_none_or(|t| s > t || t - s < WINDOW);
                prop_assert_eq!(w.accept(s), expect_fresh);
                if expect_fresh {
                    seen.insert(s);
                    top = Some(top.map_or(s, |t| t.max(s)));
                }
            }
        }
    }
}
