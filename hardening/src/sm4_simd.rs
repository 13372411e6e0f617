//! SM4 (GB/T 32907) in counter mode on the AES instructions, for the GM
//! suite's payload: OpenSSL 3.0's SM4 is a table-driven C loop (about
//! 128 MB/s on one core of the reference machine), and a GM link moves each
//! byte through SM4 once on each side, so with both sides on one 2-core
//! host the link could never pass about 0.5 x that figure.
//!
//! The technique is the one the Linux kernel's `sm4-aesni-avx` and GmSSL
//! use (after Saarinen's `sm4ni`): SM4's S-box and AES's S-box are both an
//! inversion in GF(2^8) between affine maps, so `S_sm4(x) =
//! A2(S_aes(A1 x ^ c1)) ^ c2`. `AESENCLAST` computes `S_aes` on 16 bytes at once (its
//! ShiftRows is undone by a byte shuffle before it), and each affine map
//! is two 16-entry nibble look-ups with `PSHUFB`. Four blocks run side by
//! side, one 32-bit word of each block per vector lane. Nothing indexes
//! memory by secret data, so unlike OpenSSL's tables this is constant time.
//!
//! Why it lives here: `hardening` is the one crate allowed `unsafe`, and
//! the single `unsafe` is the call into the code compiled for AES-NI and
//! SSSE3 after the CPU was seen to have them ([`Sm4Ctr::new`] returns
//! `None` otherwise, and the suite uses OpenSSL's SM4-CTR instead). The
//! intrinsics themselves are safe inside that code (no pointers: blocks go
//! in and out through `u32`/`u64` lanes).
//!
//! It is checked against OpenSSL's SM4 and the standard's vectors in the
//! GM suite's tests (`ferry-suites`), where both implementations are at
//! hand; its own tests pin the standard's example.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// SM4 key length.
pub const KEY_LEN: usize = 16;
/// SM4 block length.
pub const BLOCK_LEN: usize = 16;

/// SM4 round keys under one key, for counter-mode keystream. Only made
/// when the CPU has AES-NI and SSSE3. Wiped on drop.
pub struct Sm4Ctr {
    rk: [u32; 32],
    /// The widest path this CPU runs.
    path: Path,
}

/// Which code runs the keystream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Four blocks per 128-bit vector (AES-NI, SSSE3).
    Narrow,
    /// Eight blocks per 256-bit vector (AVX2 too), the S-box's AESENCLAST
    /// on each half.
    Avx2,
    /// Eight blocks per 256-bit vector with VAES's 256-bit AESENCLAST.
    Vaes,
}

impl Drop for Sm4Ctr {
    fn drop(&mut self) {
        // Volatile writes so the wipe is not optimised away as a dead store.
        for k in self.rk.iter_mut() {
            // SAFETY: `k` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(k, 0) };
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Sm4Ctr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm4Ctr(<round keys redacted>)")
    }
}

/// Whether this CPU runs [`Sm4Ctr`].
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("ssse3")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Sm4Ctr {
    /// The round keys of `key`, or `None` when the CPU lacks AES-NI or
    /// SSSE3 (the caller falls back to another SM4).
    pub fn new(key: &[u8; KEY_LEN]) -> Option<Sm4Ctr> {
        if !available() {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `available()` just saw AES-NI and SSSE3 on this CPU,
            // the only target features `expand_key` is compiled for.
            let path = if !std::arch::is_x86_feature_detected!("avx2") {
                Path::Narrow
            } else if std::arch::is_x86_feature_detected!("vaes") {
                Path::Vaes
            } else {
                Path::Avx2
            };
            Some(Sm4Ctr {
                rk: unsafe { expand_key(key) },
                path,
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = key;
            None
        }
    }

    /// XORs `data` with the SM4-CTR keystream starting at counter block
    /// `counter` (a big-endian 128-bit integer incremented by one per
    /// block, as OpenSSL's CTR mode does).
    pub fn apply_keystream(&self, counter: &[u8; BLOCK_LEN], data: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        {
            let counter = u128::from_be_bytes(*counter);
            match self.path {
                // SAFETY: `Vaes` is chosen only when `new` saw VAES and
                // AVX2 besides AES-NI and SSSE3, the target features of
                // `vaes::ctr`.
                Path::Vaes => unsafe { vaes::ctr(&self.rk, counter, data) },
                // SAFETY: `Avx2` is chosen only when `new` saw AVX2
                // besides AES-NI and SSSE3, the target features of
                // `avx2::ctr`.
                Path::Avx2 => unsafe { avx2::ctr(&self.rk, counter, data) },
                // SAFETY: an `Sm4Ctr` exists only when `new` saw AES-NI
                // and SSSE3, the target features of `ctr`.
                Path::Narrow => unsafe { ctr(&self.rk, counter, data) },
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (counter, data);
            unreachable!("Sm4Ctr::new returns None off x86_64");
        }
    }

    /// SM4 of one block.
    pub fn encrypt_block(&self, block: &[u8; BLOCK_LEN]) -> [u8; BLOCK_LEN] {
        let mut out = [0u8; BLOCK_LEN];
        self.apply_keystream(block, &mut out);
        out
    }
}

/// SM4's system parameter FK.
const FK: [u32; 4] = [0xa3b1_bac6, 0x56aa_3350, 0x677d_9197, 0xb270_22dc];

/// The fixed parameter CK_i: byte j of CK_i is (4i + j) * 7 mod 256.
const fn ck(i: usize) -> u32 {
    let mut v = 0u32;
    let mut j = 0;
    while j < 4 {
        v = (v << 8) | (((4 * i + j) * 7) % 256) as u32;
        j += 1;
    }
    v
}

#[cfg(target_arch = "x86_64")]
mod consts {
    /// Bytes of the nibble tables and shuffles, in memory order (byte 0
    /// first), as `_mm_setr_epi8` takes them.
    pub(super) type Bytes = [i8; 16];

    const fn bytes(lo: u64, hi: u64) -> Bytes {
        let mut out = [0i8; 16];
        let mut i = 0;
        while i < 8 {
            out[i] = (lo >> (8 * i)) as u8 as i8;
            out[i + 8] = (hi >> (8 * i)) as u8 as i8;
            i += 1;
        }
        out
    }

    /// The affine map into AES's field, on the low and the high nibble.
    pub(super) const PRE_LO: Bytes = bytes(0x9197_E2E4_7472_0701, 0xC7C1_B4B2_2224_5157);
    pub(super) const PRE_HI: Bytes = bytes(0xE240_AB09_EB49_A200, 0xF052_B91B_F95B_B012);
    /// The affine map back (it absorbs the 0x0f round key of AESENCLAST).
    pub(super) const POST_LO: Bytes = bytes(0x5B67_F2CE_A19D_0834, 0xEDD1_4478_172B_BE82);
    pub(super) const POST_HI: Bytes = bytes(0xAE72_01DD_73AF_DC00, 0x11CD_BE62_CC10_63BF);
    /// Inverse ShiftRows, undoing the ShiftRows inside AESENCLAST.
    pub(super) const INV_SHIFT_ROWS: Bytes = bytes(0x0B0E_0104_070A_0D00, 0x0306_090C_0F02_0508);
    /// Rotations left by 8, 16, 24 bits of each little-endian 32-bit lane.
    pub(super) const ROL8: Bytes = bytes(0x0605_0407_0201_0003, 0x0E0D_0C0F_0A09_080B);
    pub(super) const ROL16: Bytes = bytes(0x0504_0706_0100_0302, 0x0D0C_0F0E_0908_0B0A);
    pub(super) const ROL24: Bytes = bytes(0x0407_0605_0003_0201, 0x0C0F_0E0D_080B_0A09);
    /// Byte order reversed within each 32-bit lane.
    pub(super) const BSWAP32: Bytes = bytes(0x0405_0607_0001_0203, 0x0C0D_0E0F_0809_0A0B);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,ssse3")]
fn load(b: consts::Bytes) -> __m128i {
    _mm_setr_epi8(
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15],
    )
}

/// The S-box on every byte of `x`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,ssse3")]
fn sbox(x: __m128i) -> __m128i {
    let nibble = _mm_set1_epi8(0x0f);
    let lo = _mm_shuffle_epi8(load(consts::PRE_LO), _mm_and_si128(x, nibble));
    let hi = _mm_shuffle_epi8(
        load(consts::PRE_HI),
        _mm_and_si128(_mm_srli_epi64(x, 4), nibble),
    );
    let x = _mm_shuffle_epi8(_mm_xor_si128(lo, hi), load(consts::INV_SHIFT_ROWS));
    let x = _mm_aesenclast_si128(x, nibble);
    let lo = _mm_shuffle_epi8(load(consts::POST_LO), _mm_andnot_si128(x, nibble));
    let hi = _mm_shuffle_epi8(
        load(consts::POST_HI),
        _mm_and_si128(_mm_srli_epi64(x, 4), nibble),
    );
    _mm_xor_si128(lo, hi)
}

/// `tau` on a scalar word (the key schedule's S-box step).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,ssse3")]
fn tau(w: u32) -> u32 {
    _mm_cvtsi128_si32(sbox(_mm_set1_epi32(w as i32))) as u32
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,ssse3")]
fn expand_key(key: &[u8; KEY_LEN]) -> [u32; 32] {
    let mut k = [0u32; 4];
    for (i, w) in k.iter_mut().enumerate() {
        *w = u32::from_be_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]])
            ^ FK[i];
    }
    let mut rk = [0u32; 32];
    for (i, r) in rk.iter_mut().enumerate() {
        let b = tau(k[1] ^ k[2] ^ k[3] ^ ck(i));
        let next = k[0] ^ b ^ b.rotate_left(13) ^ b.rotate_left(23);
        *r = next;
        k = [k[1], k[2], k[3], next];
    }
    k = [0; 4];
    std::hint::black_box(&k);
    rk
}

/// SM4 on `N` groups of four blocks, each group given as its four words
/// (`w[g][j]` holds word `j` of the group's blocks 0..4 in lanes 0..4);
/// returns the output words the same way. One round's S-box and linear map
/// form a chain of about twenty dependent instructions, so a single group
/// leaves the CPU mostly waiting; the groups are independent and are
/// interleaved round by round to fill those waits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,ssse3")]
fn encrypt<const N: usize>(rk: &[u32; 32], w: [[__m128i; 4]; N]) -> [[__m128i; 4]; N] {
    let (rol8, rol16, rol24) = (load(consts::ROL8), load(consts::ROL16), load(consts::ROL24));
    let mut t = w;
    for &k in rk {
        let k = _mm_set1_epi32(k as i32);
        for g in t.iter_mut() {
            let x = _mm_xor_si128(_mm_xor_si128(g[1], g[2]), _mm_xor_si128(g[3], k));
            let x = sbox(x);
            // L(B) = B ^ rol(B,2) ^ rol(B,10) ^ rol(B,18) ^ rol(B,24), with
            // rol(B,2) ^ rol(B,10) ^ rol(B,18) = rol(B ^ rol(B,8) ^ rol(B,16), 2).
            let y = _mm_xor_si128(
                x,
                _mm_xor_si128(_mm_shuffle_epi8(x, rol8), _mm_shuffle_epi8(x, rol16)),
            );
            let y = _mm_xor_si128(_mm_slli_epi32(y, 2), _mm_srli_epi32(y, 30));
            let l = _mm_xor_si128(_mm_xor_si128(x, y), _mm_shuffle_epi8(x, rol24));
            *g = [g[1], g[2], g[3], _mm_xor_si128(g[0], l)];
        }
    }
    // The output is (X35, X34, X33, X32): the words in reverse order.
    for g in t.iter_mut() {
        *g = [g[3], g[2], g[1], g[0]];
    }
    t
}

/// Lane `i` (0..4) of four 32-bit lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,ssse3")]
fn lanes(x: __m128i) -> [u32; 4] {
    let lo = _mm_cvtsi128_si64(x) as u64;
    let hi = _mm_cvtsi128_si64(_mm_unpackhi_epi64(x, x)) as u64;
    [lo as u32, (lo >> 32) as u32, hi as u32, (hi >> 32) as u32]
}

/// Groups of four blocks interleaved per step of the long path: enough to
/// cover the round's latency, few enough for the 16 vector registers.
const GROUPS: usize = 4;

/// Keystream of `N` groups of four counter blocks from `counter` on,
/// XORed into `data` (at most `N * 64` bytes; a shorter tail takes the
/// front of the keystream).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,ssse3")]
fn xor_groups<const N: usize>(rk: &[u32; 32], counter: u128, data: &mut [u8]) {
    let mut w = [[_mm_setzero_si128(); 4]; N];
    for (g, words) in w.iter_mut().enumerate() {
        let c = |b: usize| counter.wrapping_add((4 * g + b) as u128);
        let c = [c(0), c(1), c(2), c(3)];
        for (j, word) in words.iter_mut().enumerate() {
            let lane = |b: usize| (c[b] >> (96 - 32 * j)) as u32 as i32;
            *word = _mm_setr_epi32(lane(0), lane(1), lane(2), lane(3));
        }
    }
    let out = encrypt(rk, w);
    for (g, words) in out.iter().enumerate() {
        let words = [
            lanes(words[0]),
            lanes(words[1]),
            lanes(words[2]),
            lanes(words[3]),
        ];
        for b in 0..4 {
            for (j, word) in words.iter().enumerate() {
                let at = (4 * g + b) * BLOCK_LEN + 4 * j;
                if at >= data.len() {
                    return;
                }
                let ks = word[b].to_be_bytes();
                for (d, k) in data[at..].iter_mut().zip(ks) {
                    *d ^= k;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,ssse3")]
fn ctr(rk: &[u32; 32], mut counter: u128, data: &mut [u8]) {
    const LONG: usize = GROUPS * 4 * BLOCK_LEN;
    let mut chunks = data.chunks_exact_mut(LONG);
    for chunk in &mut chunks {
        xor_groups::<GROUPS>(rk, counter, chunk);
        counter = counter.wrapping_add((GROUPS * 4) as u128);
    }
    for tail in chunks.into_remainder().chunks_mut(4 * BLOCK_LEN) {
        xor_groups::<1>(rk, counter, tail);
        counter = counter.wrapping_add(4);
    }
}

/// The same on 256-bit vectors (AVX2): eight blocks per group, one
/// block per 32-bit lane; the byte shuffles work within each 128-bit half,
/// so the tables are the 128-bit ones repeated.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,ssse3,avx2")]
fn wide(b: consts::Bytes) -> __m256i {
    _mm256_broadcastsi128_si256(load(b))
}

/// AESENCLAST with the key `0x0f..` on each 128-bit half, without VAES: an
/// extract and an insert around two 128-bit instructions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,ssse3,avx2")]
fn aes_last_halves(x: __m256i) -> __m256i {
    let key = _mm_set1_epi8(0x0f);
    _mm256_set_m128i(
        _mm_aesenclast_si128(_mm256_extracti128_si256::<1>(x), key),
        _mm_aesenclast_si128(_mm256_castsi256_si128(x), key),
    )
}

/// The same in one 256-bit instruction (VAES).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,ssse3,avx2,vaes")]
fn aes_last_vaes(x: __m256i) -> __m256i {
    _mm256_aesenclast_epi128(x, _mm256_set1_epi8(0x0f))
}

/// Groups of eight blocks interleaved per step of the wide path.
const WIDE_GROUPS: usize = 2;

/// The eight-block path, compiled twice: for AVX2 (the S-box's AESENCLAST
/// on each half) and for AVX2 with VAES (one instruction). The two must be
/// separate functions, each compiled for its own target features, so the
/// VAES instruction can never run on a CPU without it.
#[cfg(target_arch = "x86_64")]
macro_rules! wide_path {
    ($module:ident, $features:literal, $aes_last:ident) => {
        mod $module {
            use super::*;

            #[target_feature(enable = $features)]
            fn sbox(x: __m256i) -> __m256i {
                let nibble = _mm256_set1_epi8(0x0f);
                let lo = _mm256_shuffle_epi8(wide(consts::PRE_LO), _mm256_and_si256(x, nibble));
                let hi = _mm256_shuffle_epi8(
                    wide(consts::PRE_HI),
                    _mm256_and_si256(_mm256_srli_epi64(x, 4), nibble),
                );
                let x = _mm256_shuffle_epi8(_mm256_xor_si256(lo, hi), wide(consts::INV_SHIFT_ROWS));
                let x = $aes_last(x);
                let lo = _mm256_shuffle_epi8(wide(consts::POST_LO), _mm256_andnot_si256(x, nibble));
                let hi = _mm256_shuffle_epi8(
                    wide(consts::POST_HI),
                    _mm256_and_si256(_mm256_srli_epi64(x, 4), nibble),
                );
                _mm256_xor_si256(lo, hi)
            }

            /// [`super::encrypt`] on eight-block groups.
            #[target_feature(enable = $features)]
            fn encrypt<const N: usize>(rk: &[u32; 32], w: [[__m256i; 4]; N]) -> [[__m256i; 4]; N] {
                let (rol8, rol16, rol24) =
                    (wide(consts::ROL8), wide(consts::ROL16), wide(consts::ROL24));
                let mut t = w;
                for &k in rk {
                    let k = _mm256_set1_epi32(k as i32);
                    for g in t.iter_mut() {
                        let x = _mm256_xor_si256(
                            _mm256_xor_si256(g[1], g[2]),
                            _mm256_xor_si256(g[3], k),
                        );
                        let x = sbox(x);
                        let y = _mm256_xor_si256(
                            x,
                            _mm256_xor_si256(
                                _mm256_shuffle_epi8(x, rol8),
                                _mm256_shuffle_epi8(x, rol16),
                            ),
                        );
                        let y = _mm256_xor_si256(_mm256_slli_epi32(y, 2), _mm256_srli_epi32(y, 30));
                        let l =
                            _mm256_xor_si256(_mm256_xor_si256(x, y), _mm256_shuffle_epi8(x, rol24));
                        *g = [g[1], g[2], g[3], _mm256_xor_si256(g[0], l)];
                    }
                }
                for g in t.iter_mut() {
                    *g = [g[3], g[2], g[1], g[0]];
                }
                t
            }

            /// The keystream of one group in block order: four vectors of
            /// two blocks each (blocks 0-1, 2-3, 4-5, 6-7), bytes as they
            /// XOR into the data. The words come out one word per lane;
            /// a 4x4 transpose in each half gathers each block's words,
            /// and a byte swap per word turns them big-endian.
            #[target_feature(enable = $features)]
            fn block_order(w: [__m256i; 4]) -> [__m256i; 4] {
                let t0 = _mm256_unpacklo_epi32(w[0], w[1]);
                let t1 = _mm256_unpackhi_epi32(w[0], w[1]);
                let t2 = _mm256_unpacklo_epi32(w[2], w[3]);
                let t3 = _mm256_unpackhi_epi32(w[2], w[3]);
                let swap = wide(consts::BSWAP32);
                // Halves: blocks (0, 4), (1, 5), (2, 6), (3, 7).
                let b04 = _mm256_shuffle_epi8(_mm256_unpacklo_epi64(t0, t2), swap);
                let b15 = _mm256_shuffle_epi8(_mm256_unpackhi_epi64(t0, t2), swap);
                let b26 = _mm256_shuffle_epi8(_mm256_unpacklo_epi64(t1, t3), swap);
                let b37 = _mm256_shuffle_epi8(_mm256_unpackhi_epi64(t1, t3), swap);
                [
                    _mm256_permute2x128_si256::<0x20>(b04, b15),
                    _mm256_permute2x128_si256::<0x20>(b26, b37),
                    _mm256_permute2x128_si256::<0x31>(b04, b15),
                    _mm256_permute2x128_si256::<0x31>(b26, b37),
                ]
            }

            /// XORs 32 keystream bytes into `data` (the front of them when
            /// `data` is shorter), eight bytes at a time.
            #[target_feature(enable = $features)]
            fn xor32(ks: __m256i, data: &mut [u8]) {
                let k = [
                    _mm256_extract_epi64::<0>(ks) as u64,
                    _mm256_extract_epi64::<1>(ks) as u64,
                    _mm256_extract_epi64::<2>(ks) as u64,
                    _mm256_extract_epi64::<3>(ks) as u64,
                ];
                let mut words = data.chunks_exact_mut(8);
                for (d, k) in (&mut words).zip(k) {
                    let mut v = [0u8; 8];
                    v.copy_from_slice(d);
                    d.copy_from_slice(&(u64::from_le_bytes(v) ^ k).to_le_bytes());
                }
                let rest = words.into_remainder();
                if !rest.is_empty() {
                    let k = k[(data.len() / 8).min(3)].to_le_bytes();
                    let done = data.len() - data.len() % 8;
                    for (d, k) in data[done..].iter_mut().zip(k) {
                        *d ^= k;
                    }
                }
            }

            /// [`super::xor_groups`] on eight-block groups.
            #[target_feature(enable = $features)]
            fn xor_groups<const N: usize>(rk: &[u32; 32], counter: u128, data: &mut [u8]) {
                let mut w = [[_mm256_setzero_si256(); 4]; N];
                let low = counter as u32;
                if low.checked_add((8 * N - 1) as u32).is_some() {
                    // No carry out of the low word in these blocks (all but
                    // one call in 2^32 / 8N): the three high words are the
                    // same in every block, and the low word counts up.
                    let same = |j: u32| _mm256_set1_epi32((counter >> (96 - 32 * j)) as u32 as i32);
                    let steps = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                    for (g, words) in w.iter_mut().enumerate() {
                        let base = _mm256_set1_epi32(low.wrapping_add(8 * g as u32) as i32);
                        *words = [same(0), same(1), same(2), _mm256_add_epi32(base, steps)];
                    }
                    let out = encrypt(rk, w);
                    return xor_out(&out, data);
                }
                for (g, words) in w.iter_mut().enumerate() {
                    let c = |b: usize| counter.wrapping_add((8 * g + b) as u128);
                    let c = [c(0), c(1), c(2), c(3), c(4), c(5), c(6), c(7)];
                    for (j, word) in words.iter_mut().enumerate() {
                        let lane = |b: usize| (c[b] >> (96 - 32 * j)) as u32 as i32;
                        *word = _mm256_setr_epi32(
                            lane(0),
                            lane(1),
                            lane(2),
                            lane(3),
                            lane(4),
                            lane(5),
                            lane(6),
                            lane(7),
                        );
                    }
                }
                let out = encrypt(rk, w);
                xor_out(&out, data);
            }

            /// XORs the keystream of `N` encrypted groups into `data`.
            #[target_feature(enable = $features)]
            fn xor_out<const N: usize>(out: &[[__m256i; 4]; N], data: &mut [u8]) {
                for (g, words) in out.iter().enumerate() {
                    for (i, ks) in block_order(*words).into_iter().enumerate() {
                        let at = (8 * g + 2 * i) * BLOCK_LEN;
                        if at >= data.len() {
                            return;
                        }
                        let end = (at + 2 * BLOCK_LEN).min(data.len());
                        xor32(ks, &mut data[at..end]);
                    }
                }
            }

            #[target_feature(enable = $features)]
            pub(super) fn ctr(rk: &[u32; 32], mut counter: u128, data: &mut [u8]) {
                const LONG: usize = WIDE_GROUPS * 8 * BLOCK_LEN;
                let mut chunks = data.chunks_exact_mut(LONG);
                for chunk in &mut chunks {
                    xor_groups::<WIDE_GROUPS>(rk, counter, chunk);
                    counter = counter.wrapping_add((WIDE_GROUPS * 8) as u128);
                }
                for tail in chunks.into_remainder().chunks_mut(8 * BLOCK_LEN) {
                    xor_groups::<1>(rk, counter, tail);
                    counter = counter.wrapping_add(8);
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
wide_path!(avx2, "aes,ssse3,avx2", aes_last_halves);
#[cfg(target_arch = "x86_64")]
wide_path!(vaes, "aes,ssse3,avx2,vaes", aes_last_vaes);

#[cfg(test)]
mod tests {
    use super::*;

    fn hex16(s: &str) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }

    #[test]
    fn gbt32907_example_1() {
        if !available() {
            eprintln!("no AES-NI/SSSE3: SIMD SM4 not checked");
            return;
        }
        let key = hex16("0123456789abcdeffedcba9876543210");
        let sm4 = Sm4Ctr::new(&key).expect("available");
        assert_eq!(
            sm4.encrypt_block(&key),
            hex16("681edf34d206965e86b3e94f536e4246")
        );
    }

    #[test]
    fn gbt32907_example_2_one_million_encryptions() {
        if !available() {
            return;
        }
        let key = hex16("0123456789abcdeffedcba9876543210");
        let sm4 = Sm4Ctr::new(&key).expect("available");
        let mut block = key;
        for _ in 0..1_000_000 {
            block = sm4.encrypt_block(&block);
        }
        assert_eq!(block, hex16("595298c7c6fd271f0402f804c33d3f66"));
    }

    #[test]
    fn the_wide_and_the_narrow_paths_agree() {
        let Some(mut sm4) = Sm4Ctr::new(&[9u8; 16]) else {
            return;
        };
        let paths = match sm4.path {
            Path::Narrow => {
                eprintln!("no AVX2: the wide paths are not checked here");
                return;
            }
            Path::Avx2 => {
                eprintln!("no VAES: the VAES path is not checked here");
                vec![Path::Avx2]
            }
            Path::Vaes => vec![Path::Avx2, Path::Vaes],
        };
        for len in [
            0usize, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 127, 128, 129, 255, 256, 257, 1000,
            4103,
        ] {
            // Starts that wrap the whole counter, carry out of the low word
            // inside a group, at a group's edge, and never.
            for start in [
                u128::MAX - 5,
                (7u128 << 64) | 0xffff_fffd,
                (7u128 << 64) | 0xffff_fff0,
                0x0102_0304_0506_0708_090a_0b0c_0000_0001,
            ] {
                let start = start.to_be_bytes();
                let mut narrow = vec![0x5au8; len];
                sm4.path = Path::Narrow;
                sm4.apply_keystream(&start, &mut narrow);
                for &p in &paths {
                    let mut wide = vec![0x5au8; len];
                    sm4.path = p;
                    sm4.apply_keystream(&start, &mut wide);
                    assert_eq!(wide, narrow, "{p:?} len {len} start {start:02x?}");
                }
            }
        }
    }

    #[test]
    fn keystream_is_the_encrypted_counter_blocks_across_groups_and_tails() {
        if !available() {
            return;
        }
        let sm4 = Sm4Ctr::new(&[7u8; 16]).expect("available");
        let start = u128::MAX - 2; // wraps inside the first group
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 200, 255, 256, 257, 1000] {
            let mut data = vec![0u8; len];
            sm4.apply_keystream(&start.to_be_bytes(), &mut data);
            for (i, chunk) in data.chunks(16).enumerate() {
                let block = sm4.encrypt_block(&start.wrapping_add(i as u128).to_be_bytes());
                assert_eq!(chunk, &block[..chunk.len()], "len {len} block {i}");
            }
        }
    }
}
