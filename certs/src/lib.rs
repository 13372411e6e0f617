//! Certificates and identities for mTLS (placeholder: being written).
#![forbid(unsafe_code)]
