//! ferry's policy language: channels, who may push what, windows, rates,
//! content profiles and approvals, with validation and decisions.
//!
//! Not built yet: the policy issue fills this crate. Until then the daemon
//! reads a small link configuration (`daemon::config`) and enforces no
//! authorization of its own; nothing here pretends otherwise.
#![forbid(unsafe_code)]
