//! Running the daemon: the audit trail, key and certificate expiry, the
//! metrics endpoint, and the hardening plan ferryd applies at start.

pub(crate) mod activity;
pub(crate) mod audit_trail;
pub(crate) mod expiry;
pub mod hardening_plan;
pub(crate) mod metrics;
