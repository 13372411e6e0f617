//! HTTPS for the daemon: the one TLS server the ingest API and the admin
//! API both run on, and the one client `ferryctl push` and the egress
//! forwarder both push with.

pub(crate) mod client;
pub(crate) mod server;
