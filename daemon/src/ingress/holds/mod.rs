//! Packages accepted but held out of the sequence order: awaiting the
//! reviewers' approval, or waiting for the policy's time window to open.

pub mod approvals;
pub mod window_holds;
