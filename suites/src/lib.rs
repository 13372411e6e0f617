//! ferry's crypto suites, side by side: [`intl`] (Ed25519, X25519 +
//! HKDF-SHA256, AES-256-GCM on `ring` and `x25519-dalek`, GHASH-then-AES-256
//! datagram tags) and
//! [`gm`] (SM2, SM3, SM4 through the system OpenSSL 3).
//!
//! The key decision: the protocol owns the traits ([`ferry_protocol::suite`])
//! and this crate owns every algorithm, so `ferry-protocol` stays sans-IO and
//! free of crypto libraries, the way `grep-searcher` depends on the
//! `Matcher` trait while `grep-regex` and `grep-pcre2` implement it. Two
//! reasons: the protocol's state machines can be read (and fuzzed) without
//! any algorithm in view, and a third suite is one more file here, not a
//! change to the protocol. The suites share one crate rather than one crate
//! each because they share one shape: what each side holds, how keys are
//! picked by id during a rotation, and the single-block HKDF that derives
//! every epoch, datagram and pairing key, and one datagram tag (GHASH
//! enciphered by the suite's block cipher). That shape is written once in
//! [`keyring`], `kdf` and `ghash`; each suite file holds only its
//! algorithms.
//!
//! The GM suite sits behind the default feature `gm`, because it links the
//! system OpenSSL: the protocol's own tests, benches and the fuzz targets
//! use the intl suite alone (`default-features = false`) and never need it.
//!
//! This crate must never print or log key material: `Debug` shows key ids
//! only and no error carries secret bytes.
#![forbid(unsafe_code, unused_must_use)]
#![deny(missing_docs, unreachable_pub)]

#[cfg(test)]
mod conformance;
mod ghash;
#[cfg(feature = "gm")]
pub mod gm;
pub mod intl;
mod kdf;
pub mod keyring;

pub use keyring::{KeyRing, OpeningKeys, SealingKeys, SuiteAlgorithms};
