//! HTTPS for the daemon: the one TLS server the ingest API and the admin
//! API both run on.

pub(crate) mod server;
