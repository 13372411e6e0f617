//! ferry's policy language: channels, who may push what, windows,
//! schedules, rates and quotas, content profiles and approvals — read from
//! the TOML file security administrators edit, checked with located errors,
//! compiled into an immutable [`Policy`] that answers "may identity I push
//! this package on channel C now?", and signed so that a system
//! administrator alone cannot change it.
//!
//! This crate does no I/O beyond reading policy, key and signature files:
//! the daemon owns usage counters, clocks, enforcement and reloads. It never
//! returns a partially loaded policy.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
mod compile;
mod decide;
mod diag;
/// The one regular-file-only reader (re-exported: callers name it `ferry_policy::files`).
pub use ferry_regular_file as files;
mod glob;
mod model;
pub mod sign;
mod when;

pub use compile::{
    ACTIONS, ARCHIVE_FORMATS, FILES_MAX, FILE_MAX_BYTES, INCLUDE_DEPTH_MAX, MASK_LIMITS,
    PII_DETECTORS, RULES_MAX, YARA_MAX_SCAN_BYTES_MAX, YARA_RULES_FILES_MAX, YARA_TIMEOUT_S_MAX,
    YARA_TIMEOUT_S_MIN,
};
pub use decide::{
    Charge, Counter, Decision, Measure, NoUsage, Period, Reason, Request, StepOutcome, TraceStep,
    Usage, UsageScope, Verdict, FILE_NAME_MAX_BYTES,
};
pub use diag::{Diagnostic, Place, Severity};
pub use model::{
    ApprovalRequirement, Channel, Destination, Direction, Limits, Policy, Profile, Retention, San,
    SpoolCollection, Subject, APPROVAL_EXPIRY_MAX_S, APPROVAL_EXPIRY_MIN_S, NAME_MAX_CHARS,
    REDUNDANCY_MAX, REVIEWERS_MAX, REVIEWER_ROLE,
};
pub use sign::{load_signed, PublicKey, SignError, SigningKey, Verified};
pub use when::{CronSchedule, Schedule, Window};

use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The main policy file could not be read.
    #[error("{}: cannot read the policy file: {source}; check the path and that ferry may read it", path.display())]
    Io {
        /// The policy file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The policy is invalid: every error (and warning) found, located.
    #[error("{}", render(diagnostics))]
    Invalid {
        /// Errors first as found, warnings too.
        diagnostics: Vec<Diagnostic>,
    },
    /// A signature was required and does not verify.
    #[error("policy signature: {0}")]
    Signature(#[from] SignError),
}

impl PolicyError {
    /// The located diagnostics, if the policy was read.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PolicyError::Invalid { diagnostics } => diagnostics,
            _ => &[],
        }
    }
}

fn render(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads and compiles the policy at `path`, following includes. `Ok`
/// carries the warnings; any error refuses the whole policy.
pub fn load(path: &Path) -> Result<(Policy, Vec<Diagnostic>), PolicyError> {
    let set = compile::read_files(path)?;
    compile::compile(&set).map_err(|diagnostics| PolicyError::Invalid { diagnostics })
}

/// Like [`load`], but warnings refuse the policy too (`--strict`).
pub fn load_strict(path: &Path) -> Result<Policy, PolicyError> {
    let (p, warnings) = load(path)?;
    if warnings.is_empty() {
        Ok(p)
    } else {
        Err(PolicyError::Invalid {
            diagnostics: strictify(warnings),
        })
    }
}

fn strictify(d: Vec<Diagnostic>) -> Vec<Diagnostic> {
    d.into_iter()
        .map(|mut d| {
            d.severity = Severity::Error;
            d
        })
        .collect()
}

/// Compiles policy text with no includes. `name` labels diagnostics. The
/// entry point for fuzzing: it must never panic, whatever `text` holds.
pub fn parse_str(text: &str, name: &str) -> Result<(Policy, Vec<Diagnostic>), PolicyError> {
    let set = compile::text_files(text, name);
    compile::compile(&set).map_err(|diagnostics| PolicyError::Invalid { diagnostics })
}

/// What `ferryctl policy check` reports.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The policy loads (and, under `--strict`, has no warnings).
    pub valid: bool,
    /// Whether warnings counted as errors.
    pub strict: bool,
    /// Number of errors.
    pub errors: usize,
    /// Number of warnings.
    pub warnings: usize,
    /// Every finding, located.
    pub diagnostics: Vec<Diagnostic>,
    /// The policy hash, when the files could be read.
    pub policy_sha256: Option<String>,
    /// Files read, main file first.
    pub files: Vec<String>,
}

impl CheckReport {
    /// Human-readable form: diagnostics, then a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&d.to_string());
            out.push('\n');
        }
        out.push_str(&format!(
            "{}: {} error(s), {} warning(s){}{}\n",
            if self.valid { "valid" } else { "invalid" },
            self.errors,
            self.warnings,
            if self.strict { " (strict)" } else { "" },
            self.policy_sha256
                .as_ref()
                .map_or(String::new(), |h| format!("; sha256 {h}")),
        ));
        out
    }
}

/// What a policy makes the daemon read beyond the policy's own files (the
/// dirty-word lists its content guard compiles). The daemon implements it
/// with the code it loads a policy with, so `ferryctl policy check` reads
/// what `ferryd` will read, through the same path, and a policy `ferryd`
/// would refuse fails the check, located; this crate cannot, as it does
/// not know the guard.
pub trait Referenced {
    /// Loads what `policy` references as the daemon would; one located
    /// diagnostic (severity [`Severity::Warning`], an error under
    /// `--strict`) per problem that would make the daemon refuse it.
    fn load_referenced(&self, policy: &Policy) -> Vec<Diagnostic>;
}

/// Checks the policy's own files only ([`check`]).
pub struct PolicyFilesOnly;

impl Referenced for PolicyFilesOnly {
    fn load_referenced(&self, _: &Policy) -> Vec<Diagnostic> {
        Vec::new()
    }
}

/// Checks the policy at `path`: every error and warning, JSON-serializable.
/// Only the policy's files are read; [`check_with`] also loads what the
/// daemon loads.
pub fn check(path: &Path, strict: bool) -> CheckReport {
    check_with(path, strict, &PolicyFilesOnly)
}

/// Like [`check`], then, when the policy compiles, loads what it
/// references through `referenced` (the daemon's loader).
pub fn check_with(path: &Path, strict: bool, referenced: &dyn Referenced) -> CheckReport {
    let set = match compile::read_files(path) {
        Ok(s) => s,
        Err(e) => {
            let d = Diagnostic {
                severity: Severity::Error,
                code: "unreadable",
                file: path.display().to_string(),
                line: 1,
                column: 1,
                message: e.to_string(),
                excerpt: String::new(),
            };
            return CheckReport {
                valid: false,
                strict,
                errors: 1,
                warnings: 0,
                diagnostics: vec![d],
                policy_sha256: None,
                files: vec![path.display().to_string()],
            };
        }
    };
    let hash = hex::encode(set.hash());
    let files = set.files.iter().map(|f| f.origin.clone()).collect();
    let mut diagnostics = match compile::compile(&set) {
        Ok((policy, mut w)) => {
            w.extend(referenced.load_referenced(&policy));
            w
        }
        Err(d) => d,
    };
    if strict {
        diagnostics = strictify(diagnostics);
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    CheckReport {
        valid: errors == 0,
        strict,
        errors,
        warnings: diagnostics.len() - errors,
        diagnostics,
        policy_sha256: Some(hash),
        files,
    }
}
