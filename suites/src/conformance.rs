//! What every suite must do, written once and run against each suite's keys
//! by the `#[test]`s in `intl::tests` and `gm::tests`, which add only what
//! is particular to their algorithms.

use ferry_protocol::suite::{CryptoError, OpenKeys, PayloadCipher, SealKeys, Secret32, SuiteId};
use proptest::test_runner::TestCaseError;
use proptest::{prop_assert_eq, sample};

use crate::keyring::{OpeningKeys, SealingKeys, SuiteAlgorithms};

/// Both sides' keys of one link and an epoch secret.
pub(crate) struct Fixture<S: SuiteAlgorithms> {
    pub(crate) seal: SealingKeys<S>,
    pub(crate) open: OpeningKeys<S>,
    pub(crate) epoch: Secret32,
}

impl<S: SuiteAlgorithms> Fixture<S> {
    /// A fresh package: (sealing cipher, opening cipher, key transport).
    pub(crate) fn package(
        &self,
        context: &[u8],
    ) -> (Box<dyn PayloadCipher>, Box<dyn PayloadCipher>, Vec<u8>) {
        let (sealer, eph) = self
            .seal
            .new_package(&self.epoch, context)
            .expect("new package");
        let opener = self
            .open
            .open_package(self.open.recipient_key_id(), &self.epoch, &eph, context)
            .expect("open package");
        (sealer, opener, eph)
    }

    /// (sealing cipher, opening cipher, `plain` sealed as chunk 3, not last).
    pub(crate) fn sealed_chunk(
        &self,
        plain: &[u8],
    ) -> (Box<dyn PayloadCipher>, Box<dyn PayloadCipher>, Vec<u8>) {
        let (sealer, opener, _) = self.package(b"pkg-ctx");
        let mut buf = plain.to_vec();
        sealer.seal_chunk(3, false, &mut buf).expect("seal");
        (sealer, opener, buf)
    }
}

/// Chunks of every awkward size seal and open as first, middle and last
/// chunk, with `overhead` bytes added; `check_ephemeral` sees each key
/// transport.
pub(crate) fn seal_open_round_trip_over_chunk_sizes<S: SuiteAlgorithms>(
    f: &Fixture<S>,
    overhead: usize,
    check_ephemeral: impl Fn(&[u8]),
) {
    for size in [0usize, 1, 15, 16, 17, 1000, 65536] {
        let (sealer, opener, eph) = f.package(b"ctx");
        check_ephemeral(&eph);
        assert_eq!(sealer.overhead(), overhead);
        let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        for (index, last) in [(0u64, false), (1, false), (2, true)] {
            let mut buf = plain.clone();
            sealer.seal_chunk(index, last, &mut buf).expect("seal");
            assert_eq!(buf.len(), size + overhead);
            // A short ciphertext can equal its plaintext by chance
            // (1 in 256 for one byte); from 16 bytes on it cannot.
            if size >= 16 {
                assert_ne!(&buf[..size], &plain[..]);
            }
            opener.open_chunk(index, last, &mut buf).expect("open");
            assert_eq!(buf, plain);
        }
    }
}

/// Two packages under the same epoch and context get different keys.
pub(crate) fn packages_get_fresh_keys<S: SuiteAlgorithms>(f: &Fixture<S>) {
    let (a, eph_a) = f.seal.new_package(&f.epoch, b"ctx").expect("package a");
    let (b, eph_b) = f.seal.new_package(&f.epoch, b"ctx").expect("package b");
    assert_ne!(eph_a, eph_b);
    let (mut ca, mut cb) = (vec![0u8; 32], vec![0u8; 32]);
    a.seal_chunk(0, true, &mut ca).expect("seal a");
    b.seal_chunk(0, true, &mut cb).expect("seal b");
    assert_ne!(ca, cb);
}

/// A chunk presented with the wrong last flag or at another index does not
/// open: a stream cut short or reordered is detected. Returns the package's
/// ciphers and the sealed chunk 3 for the suite's own checks.
pub(crate) fn wrong_last_flag_or_index_is_bad_chunk<S: SuiteAlgorithms>(
    f: &Fixture<S>,
) -> (Box<dyn PayloadCipher>, Box<dyn PayloadCipher>, Vec<u8>) {
    let (sealer, opener, sealed) = f.sealed_chunk(b"not the last chunk");
    // A stream cut after this chunk would present it as last.
    let mut buf = sealed.clone();
    assert_eq!(
        opener.open_chunk(3, true, &mut buf),
        Err(CryptoError::BadChunk { chunk: 3 })
    );
    for index in [0, 2, 4, u64::MAX] {
        let mut buf = sealed.clone();
        assert_eq!(
            opener.open_chunk(index, false, &mut buf),
            Err(CryptoError::BadChunk { chunk: index })
        );
    }
    (sealer, opener, sealed)
}

/// The right recipient key with the wrong epoch secret or package context
/// derives a key that does not open the chunk.
pub(crate) fn wrong_epoch_or_context_cannot_open<S: SuiteAlgorithms>(f: &Fixture<S>) {
    let (sealer, eph) = f.seal.new_package(&f.epoch, b"ctx").expect("new package");
    let mut sealed = b"for this epoch and package only".to_vec();
    sealer.seal_chunk(0, true, &mut sealed).expect("seal");
    let recipient = f.open.recipient_key_id();
    for (epoch, ctx) in [(Secret32([8; 32]), &b"ctx"[..]), (f.epoch.clone(), b"ctx2")] {
        let opener = f
            .open
            .open_package(recipient, &epoch, &eph, ctx)
            .expect("derives some key");
        let mut buf = sealed.clone();
        assert_eq!(
            opener.open_chunk(0, true, &mut buf),
            Err(CryptoError::BadChunk { chunk: 0 })
        );
    }
}

/// A manifest signature verifies under the sender's key id and fails for a
/// changed message, a cut signature and an unknown key id. Returns the
/// signature for the suite's own checks.
pub(crate) fn signature_round_trip_and_failures<S: SuiteAlgorithms>(f: &Fixture<S>) -> Vec<u8> {
    let msg = b"canonical manifest bytes";
    let sig = f.seal.sign(msg).expect("sign");
    let sender = f.seal.signing_key_id();
    assert_eq!(f.open.sender_key_id(), sender);
    f.open.verify(sender, msg, &sig).expect("verifies");
    assert_eq!(
        f.open.verify(sender, b"canonical manifest byteZ", &sig),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(
        f.open.verify(sender, msg, &sig[..sig.len() - 1]),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(
        f.open.verify("sig-2", msg, &sig),
        Err(CryptoError::UnknownKey("sig-2".to_owned()))
    );
    sig
}

/// The ratchet is deterministic and never returns to an earlier secret.
pub(crate) fn ratchet_is_one_way_and_deterministic<S: SuiteAlgorithms>(link: S, suite: SuiteId) {
    let e0 = Secret32([1; 32]);
    let e1 = link.ratchet(&e0);
    assert_eq!(e1, link.ratchet(&e0));
    assert_ne!(e1, e0);
    let e2 = link.ratchet(&e1);
    assert_ne!(e2, e1);
    assert_ne!(e2, e0);
    assert_eq!(link.suite(), suite);
}

/// The datagram tag of a 1424-byte datagram under epoch secret `[3; 32]`
/// verifies, and a flipped bit in the message or the tag, a tag of another
/// length or another epoch's key fails. Returns the message and the tag.
pub(crate) fn datagram_mac_verifies_and_rejects<S: SuiteAlgorithms>(
    link: S,
) -> (Vec<u8>, [u8; 16]) {
    let mac = link.datagram_mac(&Secret32([3; 32]));
    let msg = vec![0xabu8; 1424];
    let tag = mac.tag(&msg);
    assert!(mac.verify(&msg, &tag));
    let mut flipped = msg.clone();
    flipped[700] ^= 0x80;
    assert!(!mac.verify(&flipped, &tag));
    let mut bad_tag = tag;
    bad_tag[15] ^= 0x01;
    assert!(!mac.verify(&msg, &bad_tag));
    assert!(!mac.verify(&msg, &tag[..15]));
    assert!(!mac.verify(&msg, &[]));
    let mut long = tag.to_vec();
    long.push(0);
    assert!(!mac.verify(&msg, &long));
    let other_epoch = link.datagram_mac(&Secret32([4; 32]));
    assert!(!other_epoch.verify(&msg, &tag));
    (msg, tag)
}

/// `Debug` of both key sets names every key id (and never a key: what must
/// not appear is particular to each suite's key types). Returns both.
pub(crate) fn debug_shows_ids<S: SuiteAlgorithms>(f: &Fixture<S>) -> (String, String) {
    let seal = format!("{:?}", f.seal);
    let open = format!("{:?}", f.open);
    let (sender, recipient) = (f.seal.signing_key_id(), f.seal.recipient_key_id());
    assert!(seal.contains(sender) && seal.contains(recipient), "{seal}");
    assert!(open.contains(sender) && open.contains(recipient), "{open}");
    (seal, open)
}

/// The body of each suite's property test: any chunk round-trips and any
/// single flipped bit of the sealed chunk is `BadChunk`.
pub(crate) fn any_chunk_round_trips_and_any_bit_flip_fails<S: SuiteAlgorithms>(
    f: &Fixture<S>,
    plain: &[u8],
    index: u64,
    last: bool,
    flip: sample::Index,
    bit: u8,
) -> Result<(), TestCaseError> {
    let (sealer, opener, _) = f.package(b"ctx");
    let mut sealed = plain.to_vec();
    sealer.seal_chunk(index, last, &mut sealed).expect("seal");
    let mut buf = sealed.clone();
    opener.open_chunk(index, last, &mut buf).expect("open");
    prop_assert_eq!(&buf[..], plain);
    let mut buf = sealed;
    let pos = flip.index(buf.len());
    buf[pos] ^= 1 << bit;
    prop_assert_eq!(
        opener.open_chunk(index, last, &mut buf),
        Err(CryptoError::BadChunk { chunk: index })
    );
    Ok(())
}
