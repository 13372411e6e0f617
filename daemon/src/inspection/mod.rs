//! What both sides check about a package's content: the policy verdict and
//! the content inspection (type, guard) it rests on.

pub(crate) mod content;
pub mod malware;
pub mod policy_gate;
