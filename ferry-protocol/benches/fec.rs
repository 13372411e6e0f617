//! The FEC choice, measured at the protocol's real shape: 1424-byte symbols
//! (MTU 1500), blocks of K = 1024 (the default) and K = 256 source symbols,
//! 10 % repair. Reed-Solomon over GF(2^16) goes through the crate's own
//! `fec::{BlockEncoder, BlockDecoder}`; RaptorQ (RFC 6330) is the `raptorq`
//! crate's block API with the same K. Decoding "with loss" drops 5 % of the
//! source symbols and makes up for them with exactly as many repair
//! symbols, so both decoders see K symbols (RaptorQ's reception overhead
//! is zero here; the set of dropped symbols is fixed and checked to decode).
//! Throughput counts source bytes (K × 1424) per second.
//! `docs/ferry-protocol.md` records the medians and the choice.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferry_protocol::fec::{self, BlockDecoder, BlockEncoder};
use ferry_protocol::wire;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{RngCore, SeedableRng};
use raptorq::{
    EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder,
    SourceBlockEncoder,
};
use reed_solomon_simd::ReedSolomonDecoder;
use std::hint::black_box;

/// The protocol's path MTU for this measurement.
const MTU: usize = 1500;
/// Repair overhead, percent of K (the sender's default).
const REPAIR_PERCENT: f64 = 10.0;
/// Source symbols lost per block in the decode-with-loss case, percent of K.
const LOSS_PERCENT: usize = 5;
/// Block sizes measured: the default and a small block.
const BLOCK_SYMBOLS: [u16; 2] = [1024, 256];
/// Seed of the block contents and of the set of lost symbols.
const SEED: u64 = 0x00fe_2217;

/// One block's worth of test material, shared by both codecs.
struct Shape {
    k: u16,
    r: u16,
    symbol: usize,
    data: Vec<u8>,
    /// Indices of the source symbols lost in the decode-with-loss case.
    lost: Vec<usize>,
}

impl Shape {
    fn new(k: u16) -> Shape {
        let symbol = wire::symbol_size(MTU);
        let r = fec::repair_symbols(k, REPAIR_PERCENT);
        let mut rng = StdRng::seed_from_u64(SEED ^ u64::from(k));
        let mut data = vec![0u8; usize::from(k) * symbol];
        rng.fill_bytes(&mut data);
        let n_lost = (usize::from(k) * LOSS_PERCENT).div_ceil(100);
        assert!(n_lost <= usize::from(r), "loss within the repair budget");
        let mut lost = sample(&mut rng, usize::from(k), n_lost).into_vec();
        lost.sort_unstable();
        Shape {
            k,
            r,
            symbol,
            data,
            lost,
        }
    }

    fn bytes(&self) -> u64 {
        self.data.len() as u64
    }

    fn source(&self, i: usize) -> &[u8] {
        &self.data[i * self.symbol..(i + 1) * self.symbol]
    }
}

fn reed_solomon(c: &mut Criterion, shape: &Shape) {
    let (k, r, s) = (shape.k, shape.r, shape.symbol);
    let mut group = c.benchmark_group(format!("fec_rs16/k{k}"));
    group.sample_size(10);
    group.throughput(Throughput::Bytes(shape.bytes()));

    let mut encoder = BlockEncoder::new();
    let mut repair = Vec::new();
    encoder
        .encode(&shape.data, k, r, s, &mut repair)
        .expect("encodes");
    group.bench_function("encode", |b| {
        b.iter(|| {
            encoder
                .encode(black_box(&shape.data), k, r, s, &mut repair)
                .expect("encodes")
        })
    });

    // Exactly K symbols: the surviving source symbols, then as many repair
    // symbols as were lost. Adding them is part of the measured work (the
    // receiver copies every authenticated symbol into its block decoder).
    let feed = |with_loss: bool| -> BlockDecoder {
        let mut d = BlockDecoder::new(k, r, s);
        let mut lost = shape.lost.iter().peekable();
        for i in 0..usize::from(k) {
            if with_loss && lost.peek() == Some(&&i) {
                lost.next();
                continue;
            }
            d.add(i as u16, shape.source(i));
        }
        if with_loss {
            for j in 0..shape.lost.len() {
                d.add(k + j as u16, &repair[j * s..(j + 1) * s]);
            }
        }
        assert!(d.ready());
        d
    };
    let mut scratch: Option<ReedSolomonDecoder> = None;
    assert!(feed(true).decode(&mut scratch).expect("decodes") == shape.data);
    group.bench_function("decode_5pct_loss", |b| {
        b.iter(|| feed(true).decode(&mut scratch).expect("decodes"))
    });
    group.bench_function("decode_no_loss", |b| {
        b.iter(|| feed(false).decode(&mut scratch).expect("decodes"))
    });
    group.finish();
}

fn raptorq(c: &mut Criterion, shape: &Shape) {
    let (k, r, s) = (shape.k, shape.r, shape.symbol);
    // The crate's defaults at this size: one source block, no sub-blocks,
    // symbols of exactly 1424 bytes, so K is the same as for Reed-Solomon.
    let config = ObjectTransmissionInformation::with_defaults(shape.bytes(), s as u16);
    assert_eq!(
        (
            config.source_blocks(),
            config.sub_blocks(),
            config.symbol_size()
        ),
        (1, 1, s as u16),
        "raptorq picked a different geometry"
    );
    let mut group = c.benchmark_group(format!("fec_raptorq/k{k}"));
    group.sample_size(10);
    group.throughput(Throughput::Bytes(shape.bytes()));

    // The block encoder caches its encoding plan per K (as a long-running
    // sender would), so this is the steady-state cost per block.
    group.bench_function("encode", |b| {
        b.iter(|| {
            SourceBlockEncoder::new(0, &config, black_box(&shape.data))
                .repair_packets(0, u32::from(r))
        })
    });
    // The one-call object API, which rebuilds the plan every time.
    group.bench_function("encode_object_api", |b| {
        b.iter(|| {
            raptorq::Encoder::with_defaults(black_box(&shape.data), s as u16)
                .get_encoded_packets(u32::from(r))
        })
    });

    let repair = SourceBlockEncoder::new(0, &config, &shape.data).repair_packets(0, u32::from(r));
    let packets = |with_loss: bool| -> Vec<EncodingPacket> {
        let mut out = Vec::with_capacity(usize::from(k));
        let mut lost = shape.lost.iter().peekable();
        for i in 0..usize::from(k) {
            if with_loss && lost.peek() == Some(&&i) {
                lost.next();
                continue;
            }
            out.push(EncodingPacket::new(
                PayloadId::new(0, i as u32),
                shape.source(i).to_vec(),
            ));
        }
        if with_loss {
            out.extend(repair.iter().take(shape.lost.len()).cloned());
        }
        out
    };
    let decode =
        |p: Vec<EncodingPacket>| SourceBlockDecoder::new(0, &config, shape.bytes()).decode(p);
    assert!(
        decode(packets(true)).as_deref() == Some(&shape.data[..]),
        "raptorq must decode this loss pattern from exactly K symbols"
    );
    // Building the packets (owned buffers, as raptorq's API wants) is setup,
    // not measured.
    group.bench_function("decode_5pct_loss", |b| {
        b.iter_batched(|| packets(true), decode, BatchSize::LargeInput)
    });
    group.bench_function("decode_no_loss", |b| {
        b.iter_batched(|| packets(false), decode, BatchSize::LargeInput)
    });
    group.finish();
}

fn codecs(c: &mut Criterion) {
    for k in BLOCK_SYMBOLS {
        let shape = Shape::new(k);
        reed_solomon(c, &shape);
        raptorq(c, &shape);
    }
}

criterion_group!(benches, codecs);
criterion_main!(benches);
