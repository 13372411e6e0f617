//! Forward error correction: the sealed payload cut into blocks of source
//! symbols, each block extended with repair symbols.
//!
//! With no back channel, loss can only be repaired from what was sent. The
//! code is Reed-Solomon over GF(2^16) (`reed-solomon-simd`): systematic and
//! MDS, so any `k` of a block's `k + r` symbols rebuild it exactly (decode at
//! K + 0). The choice against RaptorQ is recorded, with the benchmark, in
//! `docs/ferry-protocol.md`. Blocks are large (1024 source symbols by
//! default) because the probability that random loss exceeds a block's
//! repair budget falls steeply with block size at a fixed overhead.

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// Every block gets at least this many repair symbols, so that small
/// packages (one or two symbols) survive the loss of a datagram or two.
pub const MIN_REPAIR_SYMBOLS: u16 = 2;

/// FEC failures. A block that cannot be decoded fails its package only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FecError {
    /// The codec refused the geometry (too many symbols in total).
    #[error("FEC geometry not supported: k={k}, r={r}, symbol={symbol} bytes")]
    Geometry {
        /// Source symbols.
        k: u16,
        /// Repair symbols.
        r: u16,
        /// Symbol size.
        symbol: usize,
    },
    /// The codec failed on input that passed our own checks.
    #[error("FEC codec error: {0}")]
    Codec(String),
}

/// Repair symbols for a block of `k` source symbols at `overhead_percent`.
pub fn repair_symbols(k: u16, overhead_percent: f64) -> u16 {
    let want = (f64::from(k) * overhead_percent / 100.0).ceil();
    let want = if want.is_finite() && want > 0.0 {
        want.min(f64::from(crate::wire::MAX_REPAIR_SYMBOLS)) as u16
    } else {
        0
    };
    want.max(MIN_REPAIR_SYMBOLS)
}

/// True when the codec supports `k` source and `r` repair symbols.
pub fn supported(k: u16, r: u16) -> bool {
    ReedSolomonEncoder::supports(usize::from(k), usize::from(r))
}

/// How a sealed payload of `sealed_len` bytes is cut into blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Ciphertext bytes.
    pub sealed_len: u64,
    /// Bytes per symbol.
    pub symbol_size: usize,
    /// Source symbols per full block.
    pub block_symbols: u16,
}

impl Geometry {
    fn block_bytes(&self) -> u64 {
        self.symbol_size as u64 * u64::from(self.block_symbols)
    }

    /// Number of blocks (at least one).
    pub fn blocks(&self) -> u64 {
        self.sealed_len.div_ceil(self.block_bytes().max(1)).max(1)
    }

    /// Byte offset and length of block `i` within the sealed payload.
    pub fn block_span(&self, i: u64) -> (u64, usize) {
        let start = i.saturating_mul(self.block_bytes());
        let len = self
            .sealed_len
            .saturating_sub(start)
            .min(self.block_bytes());
        // `len` is at most block_bytes, which is below 2^31.
        (start, len as usize)
    }

    /// Source symbols of block `i`.
    pub fn k_of(&self, i: u64) -> u16 {
        let (_, len) = self.block_span(i);
        let k = len.div_ceil(self.symbol_size.max(1)).max(1);
        u16::try_from(k).unwrap_or(u16::MAX)
    }
}

/// Produces repair symbols; reuses its working memory between blocks.
pub struct BlockEncoder {
    inner: Option<ReedSolomonEncoder>,
}

impl Default for BlockEncoder {
    fn default() -> Self {
        BlockEncoder::new()
    }
}

impl BlockEncoder {
    /// A fresh encoder.
    pub fn new() -> BlockEncoder {
        BlockEncoder { inner: None }
    }

    /// Encodes `source` (exactly `k * symbol` bytes, zero-padded by the
    /// caller) and writes `r` repair symbols back to back into `repair`.
    pub fn encode(
        &mut self,
        source: &[u8],
        k: u16,
        r: u16,
        symbol: usize,
        repair: &mut Vec<u8>,
    ) -> Result<(), FecError> {
        let geo = FecError::Geometry { k, r, symbol };
        if source.len() != usize::from(k) * symbol || !supported(k, r) {
            return Err(geo);
        }
        let (ku, ru) = (usize::from(k), usize::from(r));
        let enc = match self.inner.as_mut() {
            Some(e) => {
                e.reset(ku, ru, symbol)
                    .map_err(|e| FecError::Codec(e.to_string()))?;
                e
            }
            None => self.inner.insert(
                ReedSolomonEncoder::new(ku, ru, symbol)
                    .map_err(|e| FecError::Codec(e.to_string()))?,
            ),
        };
        for s in source.chunks_exact(symbol) {
            enc.add_original_shard(s)
                .map_err(|e| FecError::Codec(e.to_string()))?;
        }
        let out = enc.encode().map_err(|e| FecError::Codec(e.to_string()))?;
        repair.clear();
        repair.reserve(ru * symbol);
        for s in out.recovery_iter() {
            repair.extend_from_slice(s);
        }
        Ok(())
    }
}

/// Collects the symbols of one block until it can be rebuilt. Memory grows
/// only with symbols actually received (each already authenticated).
pub struct BlockDecoder {
    k: u16,
    r: u16,
    symbol: usize,
    seen: Vec<u64>,
    shards: Vec<(u16, Vec<u8>)>,
}

impl BlockDecoder {
    /// A decoder for a block of `k` source and `r` repair symbols.
    pub fn new(k: u16, r: u16, symbol: usize) -> BlockDecoder {
        let total = usize::from(k) + usize::from(r);
        BlockDecoder {
            k,
            r,
            symbol,
            seen: vec![0; total.div_ceil(64)],
            shards: Vec::new(),
        }
    }

    /// Geometry this decoder was made for.
    pub fn shape(&self) -> (u16, u16, usize) {
        (self.k, self.r, self.symbol)
    }

    /// Bytes of symbol data held.
    pub fn bytes_held(&self) -> usize {
        self.shards.len() * self.symbol
    }

    /// Adds symbol `index`; returns false for a duplicate or a symbol of the
    /// wrong size (both ignored).
    pub fn add(&mut self, index: u16, data: &[u8]) -> bool {
        let i = usize::from(index);
        if data.len() != self.symbol || i >= usize::from(self.k) + usize::from(self.r) {
            return false;
        }
        let (w, m) = (i / 64, 1u64 << (i % 64));
        if self.seen[w] & m != 0 {
            return false;
        }
        self.seen[w] |= m;
        self.shards.push((index, data.to_vec()));
        true
    }

    /// True when some source symbol is missing, so rebuilding needs repair
    /// symbols.
    pub fn needs_repair(&self) -> bool {
        self.shards.iter().filter(|(i, _)| *i < self.k).count() < usize::from(self.k)
    }

    /// True once `k` distinct symbols are held.
    pub fn ready(&self) -> bool {
        self.shards.len() >= usize::from(self.k)
    }

    /// Rebuilds the block's `k * symbol` source bytes.
    pub fn decode(mut self, scratch: &mut Option<ReedSolomonDecoder>) -> Result<Vec<u8>, FecError> {
        let (k, r, symbol) = (usize::from(self.k), usize::from(self.r), self.symbol);
        let mut out = vec![0u8; k * symbol];
        let mut have = vec![false; k];
        for (i, d) in &self.shards {
            let i = usize::from(*i);
            if i < k {
                out[i * symbol..(i + 1) * symbol].copy_from_slice(d);
                have[i] = true;
            }
        }
        if have.iter().all(|h| *h) {
            // Every source symbol arrived: nothing to solve.
            return Ok(out);
        }
        let dec = match scratch.as_mut() {
            Some(d) => {
                d.reset(k, r, symbol)
                    .map_err(|e| FecError::Codec(e.to_string()))?;
                d
            }
            None => scratch.insert(
                ReedSolomonDecoder::new(k, r, symbol)
                    .map_err(|e| FecError::Codec(e.to_string()))?,
            ),
        };
        // Keep only k symbols: more would be wasted work for an MDS code.
        self.shards.truncate(k);
        for (i, d) in &self.shards {
            let i = usize::from(*i);
            let res = if i < k {
                dec.add_original_shard(i, d)
            } else {
                dec.add_recovery_shard(i - k, d)
            };
            res.map_err(|e| FecError::Codec(e.to_string()))?;
        }
        let restored = dec.decode().map_err(|e| FecError::Codec(e.to_string()))?;
        for (i, d) in restored.restored_original_iter() {
            out[i * symbol..(i + 1) * symbol].copy_from_slice(d);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(k: u16, symbol: usize) -> Vec<u8> {
        (0..usize::from(k) * symbol)
            .map(|i| (i * 31 % 251) as u8)
            .collect()
    }

    #[test]
    fn geometry() {
        let g = Geometry {
            sealed_len: 10_000,
            symbol_size: 1000,
            block_symbols: 4,
        };
        assert_eq!(g.blocks(), 3);
        assert_eq!(g.block_span(2), (8000, 2000));
        assert_eq!(g.k_of(2), 2);
        assert_eq!(g.k_of(0), 4);
        let tiny = Geometry {
            sealed_len: 16,
            symbol_size: 1424,
            block_symbols: 1024,
        };
        assert_eq!((tiny.blocks(), tiny.k_of(0)), (1, 1));
    }

    #[test]
    fn repair_counts() {
        assert_eq!(repair_symbols(1, 10.0), MIN_REPAIR_SYMBOLS);
        assert_eq!(repair_symbols(1024, 10.0), 103);
        assert_eq!(repair_symbols(100, 0.0), MIN_REPAIR_SYMBOLS);
    }

    #[test]
    fn decodes_from_any_k_symbols() {
        let (k, r, s) = (50u16, 10u16, 64usize);
        let src = block(k, s);
        let mut rep = Vec::new();
        BlockEncoder::new()
            .encode(&src, k, r, s, &mut rep)
            .expect("encodes");
        // Drop the first r source symbols; use all repair symbols.
        let mut d = BlockDecoder::new(k, r, s);
        for i in r..k {
            let i = usize::from(i);
            assert!(d.add(i as u16, &src[i * s..(i + 1) * s]));
        }
        assert!(!d.ready());
        for j in 0..r {
            let j = usize::from(j);
            d.add(k + j as u16, &rep[j * s..(j + 1) * s]);
        }
        assert!(d.ready());
        let mut scratch = None;
        assert_eq!(d.decode(&mut scratch).expect("decodes"), src);
    }

    #[test]
    fn duplicates_and_wrong_sizes_ignored() {
        let mut d = BlockDecoder::new(2, 2, 4);
        assert!(d.add(0, &[1, 2, 3, 4]));
        assert!(!d.add(0, &[1, 2, 3, 4]));
        assert!(!d.add(1, &[1, 2]));
        assert!(!d.add(9, &[1, 2, 3, 4]));
        assert!(!d.ready());
    }
}
