//! The GM suite's hot paths next to the intl suite's, and the raw OpenSSL
//! primitives they are built on, so the cost of the chunk AEAD over bare
//! SM4 can be read off directly:
//! `cargo bench -p ferry-suites --bench suite`.
//!
//! - `chunk_64KiB/{gm,intl}_{seal,open}`: one payload chunk (GM format 2:
//!   SM4-GCM).
//! - `datagram_1424B/{gm,intl}_tag`: the per-datagram MAC (GM: GHASH, then
//!   one SM4 block).
//! - `digest_1MiB/{sm3,sha256}`: payload digest.
//! - `primitives_64KiB/{sm4_ctr,hmac_sm3}`: bare SM4-CTR (the bound of the
//!   GM chunk), and format 1's HMAC-SM3 for comparison.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferry_protocol::suite::{LinkCrypto, OpenKeys, PayloadCipher, SealKeys, Secret32};
use ferry_suites::gm::{self, GmLink, GmOpenKeys, GmSealKeys, DEFAULT_DISTINGUISHING_ID};
use ferry_suites::intl::{self, IntlLink, IntlOpenKeys, IntlSealKeys};
use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use std::hint::black_box;
use std::time::Duration;

/// Payload chunk size measured (the sender's default chunk).
const CHUNK_BYTES: usize = 64 * 1024;
/// Datagram size measured (a 1500-byte MTU less headers).
const DATAGRAM_BYTES: usize = 1424;
/// Plaintext size measured for the digest.
const DIGEST_BYTES: usize = 1024 * 1024;

fn gm_ciphers() -> (Box<dyn PayloadCipher>, Box<dyn PayloadCipher>) {
    let (sig_private, sig_public) = gm::generate_sm2().expect("sig");
    let (enc_private, enc_public) = gm::generate_sm2().expect("enc");
    let seal = GmSealKeys::new(
        "s".into(),
        &sig_private,
        "r".into(),
        &enc_public,
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("seal keys");
    let open = GmOpenKeys::new(
        vec![("s".into(), sig_public)],
        vec![("r".into(), enc_private)],
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("open keys");
    let epoch = Secret32([7; 32]);
    let (sealer, eph) = seal.new_package(&epoch, b"bench").expect("package");
    let opener = open
        .open_package("r", &epoch, &eph, b"bench")
        .expect("open");
    (sealer, opener)
}

fn intl_ciphers() -> (Box<dyn PayloadCipher>, Box<dyn PayloadCipher>) {
    let (seed, signing_pub) = intl::generate_signing_key().expect("signing key");
    let (agreement, agreement_pub) = intl::generate_agreement_key().expect("agreement key");
    let seal = IntlSealKeys::new(&seed, "s".into(), agreement_pub, "r".into()).expect("seal");
    let open = IntlOpenKeys::new(&agreement, "r".into(), signing_pub, "s".into()).expect("open");
    let epoch = Secret32([7; 32]);
    let (sealer, eph) = seal.new_package(&epoch, b"bench").expect("package");
    let opener = open
        .open_package("r", &epoch, &eph, b"bench")
        .expect("open");
    (sealer, opener)
}

fn chunks(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunk_64KiB");
    group.throughput(Throughput::Bytes(CHUNK_BYTES as u64));
    for (name, (sealer, opener)) in [("gm", gm_ciphers()), ("intl", intl_ciphers())] {
        let plain = vec![0xa5u8; CHUNK_BYTES];
        // Re-sealing one buffer keeps allocation, copying and cold caches
        // out of the measurement; the contents do not change the speed.
        let mut buf = Vec::with_capacity(CHUNK_BYTES + sealer.overhead());
        buf.extend_from_slice(&plain);
        group.bench_function(format!("{name}_seal"), |b| {
            b.iter(|| {
                buf.truncate(CHUNK_BYTES);
                sealer
                    .seal_chunk(1, false, black_box(&mut buf))
                    .expect("seal")
            })
        });
        let mut sealed = plain.clone();
        sealer.seal_chunk(1, false, &mut sealed).expect("seal");
        let mut check = sealed.clone();
        opener.open_chunk(1, false, &mut check).expect("opens");
        assert_eq!(check, plain);
        group.bench_function(format!("{name}_open"), |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |buf| opener.open_chunk(1, false, black_box(buf)).expect("open"),
                // One fresh copy per iteration, so it stays in cache like
                // the sealing buffer does.
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn datagram_mac(c: &mut Criterion) {
    let mut group = c.benchmark_group("datagram_1424B");
    group.throughput(Throughput::Bytes(DATAGRAM_BYTES as u64));
    let msg = vec![0x3cu8; DATAGRAM_BYTES];
    let epoch = Secret32([3; 32]);
    let links: [(&str, &dyn LinkCrypto); 2] = [("gm", &GmLink), ("intl", &IntlLink)];
    for (name, link) in links {
        let mac = link.datagram_mac(&epoch);
        group.bench_function(format!("{name}_tag"), |b| {
            b.iter(|| mac.tag(black_box(&msg)))
        });
        let tag = mac.tag(&msg);
        group.bench_function(format!("{name}_verify"), |b| {
            b.iter(|| assert!(mac.verify(black_box(&msg), &tag)))
        });
    }
    group.finish();
}

fn digest(c: &mut Criterion) {
    let mut group = c.benchmark_group("digest_1MiB");
    group.throughput(Throughput::Bytes(DIGEST_BYTES as u64));
    let data = vec![0x5au8; DIGEST_BYTES];
    let links: [(&str, &dyn LinkCrypto); 2] = [("sm3", &GmLink), ("sha256", &IntlLink)];
    for (name, link) in links {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut d = link.new_digest();
                d.update(black_box(&data));
                d.finish()
            })
        });
    }
    group.finish();
}

/// A GM chunk's SM4 on its own: format 2's SM4-GCM seal can be no better
/// than SM4-CTR (its GHASH adds a few percent). HMAC-SM3, format 1's second
/// pass over every chunk and datagram, stays for comparison.
fn primitives(c: &mut Criterion) {
    let mut group = c.benchmark_group("primitives_64KiB");
    group.throughput(Throughput::Bytes(CHUNK_BYTES as u64));
    let cipher = Cipher::fetch(None, "SM4-CTR", None).expect("SM4-CTR");
    let mut buf = vec![0u8; CHUNK_BYTES];
    group.bench_function("sm4_ctr", |b| {
        b.iter(|| {
            let mut ctx = CipherCtx::new().expect("ctx");
            ctx.encrypt_init(Some(&cipher), Some(&[1u8; 16]), Some(&[0u8; 16]))
                .expect("init");
            ctx.cipher_update_inplace(black_box(&mut buf), CHUNK_BYTES)
                .expect("ctr")
        })
    });
    // What the GM suite runs when the CPU has AES-NI (and AVX2, VAES).
    if let Some(sm4) = ferry_hardening::sm4_simd::Sm4Ctr::new(&[1u8; 16]) {
        group.bench_function("sm4_ctr_simd", |b| {
            b.iter(|| sm4.apply_keystream(&[0u8; 16], black_box(&mut buf)))
        });
    }
    group.bench_function("hmac_sm3", |b| {
        b.iter(|| gm::hmac_sm3(&[2u8; 32], black_box(&buf)).expect("hmac"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = chunks, datagram_mac, digest, primitives
}
criterion_main!(benches);
