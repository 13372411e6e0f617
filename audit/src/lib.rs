//! ferry's tamper-evident audit log (placeholder: the audit issue fills it).
#![forbid(unsafe_code)]
