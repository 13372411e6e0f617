//! The loss budget: how much loss the link is promised to absorb, and how
//! each package is cut, protected and ordered on the wire to honour it.
//!
//! A one-way link has no second chance, so loss tolerance is a contract
//! rather than a by-product of defaults. The budget names a loss rate `p`
//! and a burst length `b`. It covers three loss processes, all losing a
//! fraction of at most `p` of the datagrams:
//!
//! - **random**: every datagram is lost independently with probability `p`;
//! - **bursty**: every position starts, with probability `p / b`, a burst
//!   that loses it and the `b − 1` datagrams after it;
//! - **mixed**: half of each (random `p / 2`, bursts starting at `p / 2b`).
//!
//! For every package the sender derives the repair symbols of each block
//! and the number of manifest copies so that, under each process, the
//! probability of losing the package is below [`TARGET_PACKAGE_LOSS`]:
//! half of the target for the manifest (all copies lost), half shared by
//! the blocks (more than `r` of a block's `k + r` symbols lost). The
//! probabilities are computed exactly for the wire order the sender uses
//! (a dynamic programme over the burst state), not estimated.
//!
//! Bursts are why the order matters. Blocks are sent in groups of at least
//! `b + 1`, round robin (symbol 0 of every block of the group, then symbol
//! 1, …), so two symbols of one block are at least `b` datagrams apart and a
//! burst costs each block at most one symbol: then a block's losses are
//! independent with probability at most `p` each, and a binomial tail
//! bounds them. A package too small to be cut into `b + 1` blocks of
//! [`MIN_SPLIT_BLOCK_SYMBOLS`] is sent as it is, and its repair covers whole
//! bursts, as the dynamic programme requires.

use crate::fec;
use crate::wire;
use std::collections::HashMap;

/// Highest probability of losing a package that the budget allows, for
/// any package size within the budget's loss.
pub const TARGET_PACKAGE_LOSS: f64 = 1e-6;
/// A package is split into `burst + 1` blocks for interleaving only if
/// each block keeps at least this many source symbols; smaller blocks need
/// proportionally more repair than one block sent as it is.
pub const MIN_SPLIT_BLOCK_SYMBOLS: u64 = 64;
/// Most manifest copies a send carries.
pub const MAX_MANIFEST_COPIES: u16 = 64;
/// Highest loss rate a budget may name.
pub const MAX_BUDGET_LOSS: f64 = 0.20;
/// Longest burst a budget may name: the sender holds two interleaving
/// groups (the one being sent, the next one assembled ahead) of up to
/// `2 · (burst + 1)` blocks each in memory.
pub const MAX_BUDGET_BURST: u16 = 32;
/// Data datagrams before the second manifest copy when no budget is set
/// (the fixed schedule of protocol version 1's first sender).
pub const LEGACY_SECOND_MANIFEST_AFTER: u64 = 32;

/// The loss the link is promised to absorb.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossBudget {
    /// Fraction of datagrams lost, `0 < loss ≤ 0.20`.
    pub loss: f64,
    /// Longest run of consecutive datagrams lost, `1..=32` (1: no bursts).
    pub burst: u16,
}

impl Default for LossBudget {
    fn default() -> Self {
        LossBudget::DEFAULT
    }
}

/// One loss process a budget is checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossProcess {
    /// Probability that a datagram outside a burst is lost on its own.
    pub random: f64,
    /// Probability that a burst starts at a given datagram.
    pub burst_start: f64,
    /// Datagrams a burst loses, counting the one it starts at.
    pub burst: u16,
}

impl LossBudget {
    /// The shipped budget: 5 % loss, bursts of 8 datagrams.
    pub const DEFAULT: LossBudget = LossBudget {
        loss: 0.05,
        burst: 8,
    };

    /// Checks the ranges; the message says what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.loss > 0.0 && self.loss <= MAX_BUDGET_LOSS) {
            return Err(format!(
                "loss budget {} % must be above 0 and at most {} %",
                self.loss * 100.0,
                MAX_BUDGET_LOSS * 100.0
            ));
        }
        if !(1..=MAX_BUDGET_BURST).contains(&self.burst) {
            return Err(format!(
                "burst of {} datagrams must be within 1..={MAX_BUDGET_BURST}",
                self.burst
            ));
        }
        Ok(())
    }

    /// The processes the budget covers (random, bursty, mixed). With a
    /// burst of 1 all three are the random process.
    pub fn processes(&self) -> [LossProcess; 3] {
        let (p, b) = (self.loss, self.burst.max(1));
        if b == 1 {
            let random = LossProcess {
                random: p,
                burst_start: 0.0,
                burst: 1,
            };
            return [random; 3];
        }
        let bf = f64::from(b);
        [
            LossProcess {
                random: p,
                burst_start: 0.0,
                burst: b,
            },
            LossProcess {
                random: 0.0,
                burst_start: p / bf,
                burst: b,
            },
            LossProcess {
                random: p / 2.0,
                burst_start: p / (2.0 * bf),
                burst: b,
            },
        ]
    }
}

/// Probability that more than `allowed` of `n` datagrams are lost, the
/// datagrams being `spacing` positions apart on the wire (1: back to back),
/// under `process`. Exact: a dynamic programme over how many more
/// positions the bursts already started still cover, and how many of the
/// `n` were lost.
pub fn loss_exceeds(n: u32, allowed: u32, spacing: u32, process: &LossProcess) -> f64 {
    if allowed >= n {
        return 0.0;
    }
    let mut dp = BurstDp::new(process, allowed as usize + 1);
    for i in 0..n {
        dp.observe(if i == 0 { 0 } else { spacing.max(1) });
    }
    dp.mass_above(allowed as usize)
}

/// P(Binomial(n, p) > allowed), summed in log space from the first term
/// (the terms fall once past the mean, and `allowed` is there whenever the
/// answer is small).
pub fn binomial_tail(n: u32, allowed: u32, p: f64) -> f64 {
    if allowed >= n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let x0 = allowed + 1;
    // ln C(n, x0) + x0 ln p + (n − x0) ln(1 − p)
    let mut ln_term = 0.0;
    for i in 1..=x0 {
        ln_term += f64::from(n - x0 + i).ln() - f64::from(i).ln();
    }
    ln_term += f64::from(x0) * p.ln() + f64::from(n - x0) * (1.0 - p).ln();
    let ratio = p / (1.0 - p);
    let mut term = ln_term.exp();
    let mut sum = 0.0;
    let mut x = x0;
    loop {
        sum += term;
        if x == n {
            break;
        }
        term *= f64::from(n - x) / f64::from(x + 1) * ratio;
        x += 1;
        if term < sum * 1e-18 && f64::from(x) > f64::from(n) * p {
            break;
        }
    }
    sum.min(1.0)
}

/// The state of the dynamic programme: for each "positions still covered
/// by a burst" value `0..=b` and each loss count `0..cap` (the last column
/// holds every count at or above `cap − 1`... see [`BurstDp::new`]), the
/// probability of being there.
struct BurstDp {
    b: usize,
    q: f64,
    random: f64,
    cols: usize,
    /// `cover * cols + lost`.
    p: Vec<f64>,
    scratch: Vec<f64>,
}

impl BurstDp {
    /// `cols` loss counts are tracked exactly (0..cols−1); mass that would
    /// go beyond stays in the last column, which only ever counts as
    /// failure (conservative).
    fn new(process: &LossProcess, cols: usize) -> BurstDp {
        let b = if process.burst_start > 0.0 {
            usize::from(process.burst.max(1))
        } else {
            0
        };
        let cols = cols + 1;
        let mut p = vec![0.0; (b + 1) * cols];
        p[0] = 1.0;
        let mut dp = BurstDp {
            b,
            q: process.burst_start,
            random: process.random,
            cols,
            scratch: vec![0.0; p.len()],
            p,
        };
        // Bursts started before the first datagram may cover it: run the
        // burst state to its stationary distribution (it depends on the
        // last `b` positions only).
        for _ in 0..b {
            dp.step();
        }
        dp
    }

    /// One wire position passes: a burst may start at the next position.
    fn step(&mut self) {
        if self.b == 0 {
            return;
        }
        let (b, cols, q) = (self.b, self.cols, self.q);
        self.scratch.iter_mut().for_each(|v| *v = 0.0);
        for cover in 0..=b {
            let next = cover.saturating_sub(1);
            for lost in 0..cols {
                let v = self.p[cover * cols + lost];
                if v == 0.0 {
                    continue;
                }
                self.scratch[next * cols + lost] += v * (1.0 - q);
                self.scratch[b * cols + lost] += v * q;
            }
        }
        std::mem::swap(&mut self.p, &mut self.scratch);
    }

    /// Moves `advance` positions on and observes one of the counted
    /// datagrams there.
    fn observe(&mut self, advance: u32) {
        for _ in 0..advance {
            self.step();
        }
        let cols = self.cols;
        for cover in 0..=self.b {
            let lose = if cover > 0 { 1.0 } else { self.random };
            let row = &mut self.p[cover * cols..(cover + 1) * cols];
            // From the top down so each value moves one column at most.
            let top = row[cols - 1] + row[cols - 2] * lose;
            for lost in (1..cols - 1).rev() {
                row[lost] = row[lost] * (1.0 - lose) + row[lost - 1] * lose;
            }
            row[0] *= 1.0 - lose;
            row[cols - 1] = top;
        }
    }

    /// Adds a loss-count column (so counts up to the new limit stay exact
    /// from now on; what already overflowed stays counted as overflow).
    fn widen(&mut self) {
        let old = self.cols;
        let cols = old + 1;
        let mut p = vec![0.0; (self.b + 1) * cols];
        for cover in 0..=self.b {
            let src = &self.p[cover * old..(cover + 1) * old];
            let dst = &mut p[cover * cols..(cover + 1) * cols];
            dst[..old - 1].copy_from_slice(&src[..old - 1]);
            dst[cols - 1] = src[old - 1];
        }
        self.scratch = vec![0.0; p.len()];
        self.p = p;
        self.cols = cols;
    }

    /// Probability that more than `allowed` were lost.
    fn mass_above(&self, allowed: usize) -> f64 {
        let mut s = 0.0;
        for cover in 0..=self.b {
            let row = &self.p[cover * self.cols..(cover + 1) * self.cols];
            s += row[(allowed + 1).min(self.cols - 1)..].iter().sum::<f64>();
        }
        s.min(1.0)
    }
}

/// Loss counts tracked exactly beyond the repair being tried. What goes
/// beyond counts as a lost block for good, so the margin must make that
/// mass negligible: with `k/4` more, it is over ten standard deviations
/// above the mean for every budget up to 20 %.
fn dp_headroom(k: u16) -> usize {
    64 + usize::from(k) / 4
}

/// The fewest repair symbols (at least `floor`) for a block of `k` whose
/// symbols are `spacing` apart, so that losing it has probability below
/// `target` under `process`; with the probability reached.
fn min_repair_dp(
    k: u16,
    spacing: u32,
    target: f64,
    process: &LossProcess,
    floor: u16,
) -> Option<(u16, f64)> {
    let headroom = dp_headroom(k);
    let mut dp = BurstDp::new(process, usize::from(floor) + headroom);
    for i in 0..u32::from(k) {
        dp.observe(if i == 0 { 0 } else { spacing.max(1) });
    }
    let mut r: u16 = 0;
    loop {
        if r >= floor {
            let fail = dp.mass_above(usize::from(r));
            if fail < target {
                return Some((r, fail));
            }
        }
        if r >= wire::MAX_REPAIR_SYMBOLS || !fec::supported(k, r + 1) {
            return None;
        }
        r += 1;
        while dp.cols < usize::from(r) + headroom {
            dp.widen();
        }
        dp.observe(spacing.max(1));
    }
}

/// [`min_repair_dp`] for independent losses at rate `p`.
fn min_repair_binomial(k: u16, p: f64, target: f64, floor: u16) -> Option<(u16, f64)> {
    let tail = |r: u16| binomial_tail(u32::from(k) + u32::from(r), u32::from(r), p);
    // Exponential search, then bisection: the tail falls as r grows.
    let mut hi = floor.max(1);
    while tail(hi) >= target {
        if hi >= wire::MAX_REPAIR_SYMBOLS {
            return None;
        }
        hi = hi.saturating_mul(2).min(wire::MAX_REPAIR_SYMBOLS);
    }
    let mut lo = floor;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if tail(mid) < target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    if !fec::supported(k, hi) {
        return None;
    }
    Some((hi, tail(hi)))
}

/// Why no plan meets the budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No repair count the FEC code supports meets the target.
    #[error("the loss budget cannot be met for a block of {k} source symbols: lower the budget's loss rate or burst, or block_symbols")]
    Unreachable {
        /// Source symbols of the block.
        k: u16,
    },
}

/// How one package is cut, protected and ordered. Derived from the budget
/// (or the fixed repair percentage without one) and the sealed length.
#[derive(Debug, Clone, PartialEq)]
pub struct SendPlan {
    /// Source symbols per full block (the manifest's `block_symbols`).
    pub block_symbols: u16,
    /// Blocks of the package.
    pub blocks: u64,
    /// Source symbols of the last block.
    pub k_last: u16,
    /// Repair symbols of every block but the last.
    pub repair_full: u16,
    /// Repair symbols of the last block.
    pub repair_last: u16,
    /// Interleaving groups; group `i` holds blocks
    /// `i·blocks/groups .. (i+1)·blocks/groups`.
    pub groups: u64,
    /// Fewest datagrams between two symbols of one block (1: back to back).
    pub spacing: u32,
    /// Data datagrams of one send.
    pub data_datagrams: u64,
    /// Manifest copies of one send, the trailer included (at least 2).
    pub manifest_copies: u16,
    /// Upper bound on the probability of losing the package within the
    /// budget (0 without a budget: nothing is promised).
    pub loss_bound: f64,
}

impl SendPlan {
    /// Repair symbols of block `i`.
    pub fn repair_of(&self, block: u64) -> u16 {
        if block + 1 >= self.blocks {
            self.repair_last
        } else {
            self.repair_full
        }
    }

    /// Blocks of group `g`: first and one past the last.
    pub fn group_span(&self, g: u64) -> (u64, u64) {
        let at =
            |i: u64| (u128::from(i) * u128::from(self.blocks) / u128::from(self.groups)) as u64;
        (at(g), at(g + 1))
    }

    /// The data datagram index (0-based, within one send) before which
    /// manifest copy `j` is sent, for the copies other than the trailer
    /// (`j < manifest_copies − 1`); copy 0 leads the send.
    pub fn copy_before(&self, j: u16) -> u64 {
        if self.loss_bound == 0.0 && self.manifest_copies <= 3 {
            // No budget: the fixed schedule (leading copy, a second one
            // after 32 data datagrams when the send is longer).
            return if j == 0 {
                0
            } else {
                LEGACY_SECOND_MANIFEST_AFTER
            };
        }
        let gaps = u64::from(self.manifest_copies.max(2) - 1);
        (u128::from(self.data_datagrams) * u128::from(j) / u128::from(gaps)) as u64
    }

    /// Datagrams of one send (data and manifest copies).
    pub fn datagrams(&self) -> u64 {
        self.data_datagrams + u64::from(self.manifest_copies)
    }
}

/// Derives send plans; remembers the repair counts it has searched.
#[derive(Debug, Clone)]
pub struct Planner {
    budget: Option<LossBudget>,
    floor_percent: f64,
    symbol_size: usize,
    block_symbols: u16,
    /// (k, spacing, blocks rounded up to a power of two) → (r, P(block lost)).
    repair: HashMap<(u16, u32, u32), (u16, f64)>,
    /// (data datagrams, burst-relevant) → (copies, P(all lost)).
    copies: HashMap<u64, (u16, f64)>,
}

impl Planner {
    /// A planner for a link: `budget` (None: fixed repair only),
    /// `floor_percent` (repair per block is never below this share of its
    /// source symbols), symbol size and largest block.
    pub fn new(
        budget: Option<LossBudget>,
        floor_percent: f64,
        symbol_size: usize,
        block_symbols: u16,
    ) -> Planner {
        Planner {
            budget,
            floor_percent,
            symbol_size: symbol_size.max(2),
            block_symbols: block_symbols.max(1),
            repair: HashMap::new(),
            copies: HashMap::new(),
        }
    }

    /// The budget, if one is set.
    pub fn budget(&self) -> Option<LossBudget> {
        self.budget
    }

    /// The plan for a package of `sealed_len` sealed bytes.
    pub fn plan(&mut self, sealed_len: u64) -> Result<SendPlan, PlanError> {
        let s = self.symbol_size as u64;
        let symbols = sealed_len.div_ceil(s).max(1);
        let Some(budget) = self.budget else {
            return Ok(self.fixed_plan(sealed_len));
        };
        let burst = u64::from(budget.burst.max(1));
        let depth = if burst > 1 { burst + 1 } else { 1 };
        let mut block_symbols = u64::from(self.block_symbols);
        if depth > 1 && symbols >= depth * MIN_SPLIT_BLOCK_SYMBOLS {
            block_symbols = block_symbols.min(symbols.div_ceil(depth));
        }
        let block_symbols = u16::try_from(block_symbols).unwrap_or(self.block_symbols);
        let g = fec::Geometry {
            sealed_len,
            symbol_size: self.symbol_size,
            block_symbols,
        };
        let blocks = g.blocks();
        let k_last = g.k_of(blocks - 1);
        let k_full = if blocks > 1 { block_symbols } else { k_last };
        let groups = (blocks / depth).max(1);
        let smallest_group = blocks / groups;
        let last_group = blocks - (groups - 1) * blocks / groups;
        // Once the short last block has sent everything, the rest of its
        // group is one block narrower.
        let narrowest = if k_last < k_full {
            smallest_group.min(last_group - 1)
        } else {
            smallest_group
        };
        let spacing = u32::try_from(narrowest.max(1)).unwrap_or(u32::MAX);
        let share = blocks.next_power_of_two();
        let (repair_full, p_full) = if blocks > 1 {
            self.repair_for(budget, k_full, spacing, share)?
        } else {
            (0, 0.0)
        };
        let (repair_last, p_last) = self.repair_for(budget, k_last, spacing, share)?;
        let data_datagrams = (blocks - 1) * (u64::from(k_full) + u64::from(repair_full))
            + u64::from(k_last)
            + u64::from(repair_last);
        let (manifest_copies, p_manifest) = self.copies_for(budget, data_datagrams);
        let loss_bound = p_manifest + (blocks - 1) as f64 * p_full + p_last;
        Ok(SendPlan {
            block_symbols,
            blocks,
            k_last,
            repair_full,
            repair_last,
            groups,
            spacing,
            data_datagrams,
            manifest_copies,
            loss_bound,
        })
    }

    fn fixed_plan(&self, sealed_len: u64) -> SendPlan {
        let g = fec::Geometry {
            sealed_len,
            symbol_size: self.symbol_size,
            block_symbols: self.block_symbols,
        };
        let blocks = g.blocks();
        let k_last = g.k_of(blocks - 1);
        let repair_full = fec::repair_symbols(self.block_symbols, self.floor_percent);
        let repair_last = fec::repair_symbols(k_last, self.floor_percent);
        let data_datagrams = (blocks - 1)
            * (u64::from(self.block_symbols) + u64::from(repair_full))
            + u64::from(k_last)
            + u64::from(repair_last);
        let second = data_datagrams > LEGACY_SECOND_MANIFEST_AFTER;
        SendPlan {
            block_symbols: self.block_symbols,
            blocks,
            k_last,
            repair_full,
            repair_last,
            groups: blocks,
            spacing: 1,
            data_datagrams,
            manifest_copies: if second { 3 } else { 2 },
            loss_bound: 0.0,
        }
    }

    /// Repair for a block of `k` among `share` (a power of two at least the
    /// package's block count): each block gets `TARGET / 2 / share`.
    fn repair_for(
        &mut self,
        budget: LossBudget,
        k: u16,
        spacing: u32,
        share: u64,
    ) -> Result<(u16, f64), PlanError> {
        let spacing = spacing.min(u32::from(budget.burst));
        let key = (k, spacing, share.trailing_zeros());
        if let Some(found) = self.repair.get(&key) {
            return Ok(*found);
        }
        let target = TARGET_PACKAGE_LOSS / 2.0 / share as f64;
        let floor = fec::repair_symbols(k, self.floor_percent);
        let mut worst: Option<(u16, f64)> = None;
        if spacing >= u32::from(budget.burst) || budget.burst == 1 {
            // Symbols of the block are a burst apart or more: under every
            // process each is lost independently, with probability at most
            // the budget's rate.
            worst = min_repair_binomial(k, budget.loss, target, floor);
        } else {
            for process in budget.processes() {
                let found = if process.burst_start == 0.0 {
                    min_repair_binomial(k, process.random, target, floor)
                } else {
                    min_repair_dp(k, spacing, target, &process, floor)
                };
                let Some((r, p)) = found else {
                    worst = None;
                    break;
                };
                worst = Some(match worst {
                    Some((wr, wp)) if wr > r => (wr, wp),
                    Some((wr, wp)) if wr == r => (r, p.max(wp)),
                    _ => (r, p),
                });
            }
        }
        let Some(found) = worst else {
            return Err(PlanError::Unreachable { k });
        };
        // The other processes' probability at the chosen r is below their
        // own target too (more repair never hurts), but report the true
        // worst for the bound.
        let found = (found.0, self.block_loss(budget, k, found.0, spacing));
        self.repair.insert(key, found);
        Ok(found)
    }

    /// P(block of `k` with `r` repair lost), worst over the processes.
    fn block_loss(&self, budget: LossBudget, k: u16, r: u16, spacing: u32) -> f64 {
        let n = u32::from(k) + u32::from(r);
        if spacing >= u32::from(budget.burst) || budget.burst == 1 {
            return binomial_tail(n, u32::from(r), budget.loss);
        }
        budget
            .processes()
            .iter()
            .map(|p| loss_exceeds(n, u32::from(r), spacing, p))
            .fold(0.0, f64::max)
    }

    /// Manifest copies for a send of `data` data datagrams, spread evenly
    /// from the first datagram to the trailer: the fewest with P(all lost)
    /// below half the target.
    fn copies_for(&mut self, budget: LossBudget, data: u64) -> (u16, f64) {
        if let Some(found) = self.copies.get(&data) {
            return *found;
        }
        let target = TARGET_PACKAGE_LOSS / 2.0;
        let mut best = (MAX_MANIFEST_COPIES, 1.0);
        for c in 2..=MAX_MANIFEST_COPIES {
            // Between copy j and j+1 lie at least floor(data / (c−1)) data
            // datagrams.
            let gap = data / u64::from(c - 1);
            let spacing = u32::try_from(gap + 1).unwrap_or(u32::MAX);
            let p = budget
                .processes()
                .iter()
                .map(|proc| {
                    if spacing >= u32::from(budget.burst) || proc.burst_start == 0.0 {
                        budget.loss.max(proc.random).powi(i32::from(c))
                    } else {
                        loss_exceeds(u32::from(c), u32::from(c) - 1, spacing, proc)
                    }
                })
                .fold(0.0, f64::max);
            best = (c, p);
            if p < target {
                break;
            }
        }
        if self.copies.len() < 4096 {
            self.copies.insert(data, best);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(p: f64) -> LossProcess {
        LossProcess {
            random: p,
            burst_start: 0.0,
            burst: 1,
        }
    }

    #[test]
    fn binomial_tail_matches_direct_sums() {
        // P(Bin(3, 0.5) > 1) = 4/8.
        assert!((binomial_tail(3, 1, 0.5) - 0.5).abs() < 1e-12);
        // P(Bin(5, 0.1) > 4) = 1e-5.
        assert!((binomial_tail(5, 4, 0.1) - 1e-5).abs() < 1e-15);
        assert_eq!(binomial_tail(5, 5, 0.1), 0.0);
    }

    #[test]
    fn dp_without_bursts_is_the_binomial() {
        for (n, a) in [(10u32, 2u32), (40, 5), (200, 20)] {
            let dp = loss_exceeds(n, a, 1, &random(0.05));
            let bin = binomial_tail(n, a, 0.05);
            assert!(
                (dp - bin).abs() <= bin * 1e-9 + 1e-300,
                "{n} {a}: {dp} vs {bin}"
            );
        }
    }

    #[test]
    fn dp_counts_bursts_exactly_on_small_cases() {
        // Bursts of 2 starting with probability q; two datagrams back to
        // back are both lost iff a burst starts at the first one or at the
        // position before it, or one starts at each... Count directly:
        // positions -1, 0, 1; datagram at 0 lost iff start at -1 or 0;
        // at 1 lost iff start at 0 or 1.
        let q: f64 = 0.1;
        let proc = LossProcess {
            random: 0.0,
            burst_start: q,
            burst: 2,
        };
        // P(both lost) = P(s0) + P(!s0)·P(s-1)·P(s1).
        let want = q + (1.0 - q) * q * q;
        let got = loss_exceeds(2, 1, 1, &proc);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // Two apart: independent, each lost with 1 − (1−q)².
        let each = 1.0 - (1.0 - q) * (1.0 - q);
        let got = loss_exceeds(2, 1, 2, &proc);
        assert!(
            (got - each * each).abs() < 1e-12,
            "{got} vs {}",
            each * each
        );
    }

    #[test]
    fn every_size_stays_below_the_target() {
        let mut planner = Planner::new(Some(LossBudget::DEFAULT), 0.0, 1424, 1024);
        for size in [
            1u64,
            300,
            1424,
            20_000,
            65_536,
            300_000,
            819_000,
            1 << 20,
            10 << 20,
            1 << 30,
            1 << 40,
        ] {
            let plan = planner.plan(size).expect("plan");
            assert!(
                plan.loss_bound < TARGET_PACKAGE_LOSS && plan.loss_bound > 0.0,
                "{size}: {plan:?}"
            );
            assert!(plan.manifest_copies >= 2);
            if plan.blocks > u64::from(LossBudget::DEFAULT.burst) {
                assert!(plan.spacing >= 8, "{size}: {plan:?}");
            }
        }
    }

    #[test]
    fn without_a_budget_the_fixed_percentage_applies() {
        let mut planner = Planner::new(None, 10.0, 1424, 1024);
        let plan = planner.plan(3 << 20).expect("plan");
        assert_eq!((plan.blocks, plan.repair_full, plan.spacing), (3, 103, 1));
        assert_eq!(plan.manifest_copies, 3);
        assert_eq!(plan.copy_before(1), 32);
    }

    #[test]
    fn budgets_out_of_range_are_refused() {
        for (loss, burst) in [(0.0, 8), (0.3, 8), (0.05, 0), (0.05, 33), (f64::NAN, 8)] {
            assert!(
                LossBudget { loss, burst }.validate().is_err(),
                "{loss} {burst}"
            );
        }
        assert!(LossBudget::DEFAULT.validate().is_ok());
    }
}
