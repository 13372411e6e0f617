//! Process hardening of a running ferryd (placeholder: being written).
