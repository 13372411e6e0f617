//! Process hardening for `ferryd`: privilege drop, no core dumps, Landlock,
//! seccomp. The only crate allowed `unsafe`, each use with a `// SAFETY:`
//! line.
//!
//! Built so far: the baseline every `ferryd` applies at start ([`process`])
//! and locked, non-dumpable pages for secrets ([`memory`]). Not built yet:
//! privilege drop, Landlock, seccomp and `selfcheck` (the hardening issue).

pub mod memory;
pub mod process;
