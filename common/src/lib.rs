//! Small jobs that several ferry crates need, each done once here so that
//! the copies cannot drift apart (they had: three file writers with three
//! different crash guarantees, two did-you-mean searches, five time
//! formatters). This crate is a leaf: it depends on no other ferry crate,
//! so any crate may use it without an import cycle. It must never grow
//! domain logic; a helper belongs here only if two crates need it.
#![forbid(unsafe_code, unused_must_use)]
#![deny(missing_docs, unreachable_pub)]

pub mod did_you_mean;
pub mod durable;
pub mod located;
pub mod private_file;
pub mod rfc3339;
