//! `ferryctl` subcommands, one file each. A command calls the library;
//! nothing in the daemon's runtime calls a command.

pub mod approvals;
pub mod audit;
pub mod bench;
pub mod certs;
pub mod daemon;
pub mod demo;
pub mod inspect;
pub mod keys;
pub mod push;
pub mod selfcheck;
pub mod signatures;
pub mod systemd_dropin;
