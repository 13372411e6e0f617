//! Running the daemon: the audit trail, key and certificate expiry, the
//! metrics endpoint, and the hardening plan ferryd applies at start.

pub mod audit_trail;
pub mod expiry;
pub mod hardening_plan;
pub mod metrics;
