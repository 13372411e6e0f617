//! Throughput of the `intl` suite's hot paths: payload chunk sealing and
//! opening, the per-datagram MAC and the payload digest.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferry_protocol::suite::{LinkCrypto, OpenKeys, PayloadCipher, SealKeys, Secret32};
use ferry_suites::intl::{
    generate_agreement_key, generate_signing_key, IntlLink, IntlOpenKeys, IntlSealKeys,
};

/// Payload chunk size measured (a typical sender chunk).
const CHUNK_BYTES: usize = 64 * 1024;
/// Datagram size measured (fits a 1500-byte MTU with IPv6/UDP headers).
const DATAGRAM_BYTES: usize = 1424;
/// Plaintext size measured for the digest.
const DIGEST_BYTES: usize = 1024 * 1024;

/// A sealing and an opening cipher for the same package.
fn package_ciphers() -> (Box<dyn PayloadCipher>, Box<dyn PayloadCipher>) {
    let (signing_seed, signing_pub) = generate_signing_key().expect("signing key");
    let (agreement_secret, agreement_pub) = generate_agreement_key().expect("agreement key");
    let seal =
        IntlSealKeys::new(&signing_seed, "s".into(), agreement_pub, "r".into()).expect("seal keys");
    let open = IntlOpenKeys::new(&agreement_secret, "r".into(), signing_pub, "s".into())
        .expect("open keys");
    let epoch = Secret32([7; 32]);
    let (sealer, eph) = seal.new_package(&epoch, b"bench").expect("new package");
    let opener = open
        .open_package("r", &epoch, &eph, b"bench")
        .expect("open package");
    (sealer, opener)
}

fn payload(c: &mut Criterion) {
    let (sealer, opener) = package_ciphers();
    let mut group = c.benchmark_group("payload_aes256gcm");
    group.throughput(Throughput::Bytes(CHUNK_BYTES as u64));

    // Re-sealing the same buffer keeps allocation and copying out of the
    // measurement; the contents do not matter to the cipher's speed.
    let mut buf = Vec::with_capacity(CHUNK_BYTES + sealer.overhead());
    buf.resize(CHUNK_BYTES, 0xa5);
    group.bench_function("seal_chunk_64KiB", |b| {
        b.iter(|| {
            buf.truncate(CHUNK_BYTES);
            sealer
                .seal_chunk(1, false, std::hint::black_box(&mut buf))
                .expect("seal")
        })
    });

    let mut sealed = vec![0xa5; CHUNK_BYTES];
    sealer.seal_chunk(1, false, &mut sealed).expect("seal");
    let mut check = sealed.clone();
    opener
        .open_chunk(1, false, &mut check)
        .expect("bench opens a valid chunk");
    group.bench_function("open_chunk_64KiB", |b| {
        b.iter_batched_ref(
            || sealed.clone(),
            |buf| opener.open_chunk(1, false, buf).expect("open"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn datagram_mac(c: &mut Criterion) {
    let mac = IntlLink.datagram_mac(&Secret32([3; 32]));
    let datagram = vec![0x5a; DATAGRAM_BYTES];
    let tag = mac.tag(&datagram);
    assert!(mac.verify(&datagram, &tag), "bench verifies a valid tag");

    // Format 2 (GHASH then AES-256), and format 1's HMAC-SHA256 of the
    // same bytes for comparison.
    let mut group = c.benchmark_group("datagram_mac_intl");
    group.throughput(Throughput::Bytes(DATAGRAM_BYTES as u64));
    group.bench_function("tag_1424B", |b| {
        b.iter(|| mac.tag(std::hint::black_box(&datagram)))
    });
    group.bench_function("verify_1424B", |b| {
        b.iter(|| mac.verify(std::hint::black_box(&datagram), std::hint::black_box(&tag)))
    });
    let v1 = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[3; 32]);
    group.bench_function("format_1_hmac_sha256_1424B", |b| {
        b.iter(|| ring::hmac::sign(&v1, std::hint::black_box(&datagram)))
    });
    group.finish();
}

fn digest(c: &mut Criterion) {
    let link = IntlLink;
    let data = vec![0x3c; DIGEST_BYTES];
    let mut group = c.benchmark_group("digest_sha256");
    group.throughput(Throughput::Bytes(DIGEST_BYTES as u64));
    group.bench_function("1MiB", |b| {
        b.iter(|| {
            let mut d = link.new_digest();
            d.update(std::hint::black_box(&data));
            d.finish()
        })
    });
    group.finish();
}

criterion_group!(benches, payload, datagram_mac, digest);
criterion_main!(benches);
