//! `ferryd.toml`, read and checked once at start.

mod check;

pub use check::*;
