//! Why the guard could not give a verdict at all. Bad *content* is never an
//! error: it is a [`Report`](crate::Report) with verdict `reject` and a
//! reason. These errors mean the profile or the machine is at fault, and
//! the caller must not deliver the package.

use std::io;
use std::path::PathBuf;

/// A profile that cannot be compiled, or an I/O failure of the machine.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The profile table has a key or value the guard does not accept.
    /// `ferryctl policy check` catches these before the policy is loaded;
    /// seeing this means the guard and the policy crate disagree.
    #[error("[profile.{profile}]: {message}")]
    Settings {
        /// The profile name.
        profile: String,
        /// What is wrong, in the administrator's terms.
        message: String,
    },
    /// A dirty-word list could not be read.
    #[error("[profile.{profile}]: cannot read dirty-word list {}: {source}; check the path in `dirty_words.lists` and that ferry may read it", path.display())]
    ListUnreadable {
        /// The profile name.
        profile: String,
        /// The list file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A line of a dirty-word list is not acceptable.
    #[error("{}:{line}: {message}", path.display())]
    ListInvalid {
        /// The list file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A YARA rules file could not be read.
    #[error("[profile.{profile}]: cannot read YARA rules file {}: {source}; check the path in `yara.rules` and that ferry may read it", path.display())]
    RulesUnreadable {
        /// The profile name.
        profile: String,
        /// The rules file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A YARA rules file does not compile.
    #[error("{}:{line}:{column}: {message}; fix the rule (see docs/guard.md, YARA rules)", path.display())]
    RulesInvalid {
        /// The rules file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The rules file's line with a caret line under the error.
        excerpt: String,
        /// The engine's error.
        message: String,
    },
    /// The dirty-word lists are too large to compile into one automaton.
    #[error("[profile.{profile}]: the dirty-word lists are too large ({message}); split them across profiles or shorten them")]
    ListTooLarge {
        /// The profile name.
        profile: String,
        /// What limit was hit.
        message: String,
    },
    /// The package could not be read (not: its content is bad).
    #[error("{}: cannot read the package: {source}", path.display())]
    Input {
        /// The package file (`<memory>` for in-memory inspection).
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The masked package could not be written.
    #[error("{}: cannot write the masked package: {source}; check free space and permissions of its directory", path.display())]
    Output {
        /// Where the masked package was to be written.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A scratch file for a nested zip archive could not be created.
    #[error("cannot create a scratch file in {}: {source}; check free space and permissions", dir.display())]
    Scratch {
        /// The scratch directory.
        dir: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}
