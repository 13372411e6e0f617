//! Process hardening for `ferryd`: privilege drop, no core dumps, Landlock,
//! seccomp. The only crate allowed `unsafe`, each use with a `// SAFETY:`
//! line.
//!
//! Not built yet: the hardening issue fills this crate.

pub mod memory;
