//! Running the daemon: the audit trail, expiry of held packages, and the
//! metrics endpoint.

pub mod audit_trail;
pub mod expiry;
pub mod metrics;
