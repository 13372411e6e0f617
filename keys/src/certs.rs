//! Certificates and identities for mTLS. Placeholder: being written.
