//! The GM crypto suite (SM2, SM3, SM4) through the system OpenSSL.
//! Placeholder: being written.
