//! `ferryctl policy …`: check, explain, test, sign, verify, keygen. The
//! daemon's binary wires [`PolicyCommand`] in as a subcommand and calls
//! [`run`]; everything here writes to the writer it is given, so tests can
//! read what an administrator would see.

use crate::decide::{Counter, Period, Usage, UsageScope};
use crate::{Decision, NoUsage, Request, San, Subject, Verdict};
use clap::{Args, Subcommand};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `ferryctl policy` subcommands.
// Parsed once per command line: the size of the `Explain` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file (and its includes): exit 0 when valid, 1 when not.
    Check {
        /// The policy file.
        file: PathBuf,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show how the policy decides one package, rule by rule.
    Explain {
        /// The policy file.
        file: PathBuf,
        /// Who pushes.
        #[command(flatten)]
        identity: IdentityArgs,
        /// Channel name.
        #[arg(long)]
        channel: String,
        /// File name of the package.
        #[arg(long)]
        name: String,
        /// Declared content type.
        #[arg(long = "type", default_value = "application/octet-stream")]
        content_type: String,
        /// Package size in bytes.
        #[arg(long)]
        size: u64,
        /// When (RFC 3339, e.g. 2026-11-28T23:30:00+08:00); default now.
        #[arg(long)]
        at: Option<String>,
        /// Print the decision as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run expected-verdict cases against a policy; non-zero exit on failure.
    Test {
        /// The policy file.
        file: PathBuf,
        /// The cases file (TOML, `[[case]]` tables).
        cases: PathBuf,
    },
    /// Sign a policy with a security-administrator key: writes FILE.sig.
    Sign {
        /// The policy file.
        file: PathBuf,
        /// The signing key (from `keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Verify FILE.sig against trusted public keys.
    Verify {
        /// The policy file.
        file: PathBuf,
        /// Trusted public key files (repeatable).
        #[arg(long = "pubkey", required = true)]
        pubkey: Vec<PathBuf>,
        /// Signature file; default FILE.sig.
        #[arg(long)]
        sig: Option<PathBuf>,
    },
    /// Create a security-administrator signing key (0600) and OUT.pub.
    Keygen {
        /// Where to write the signing key.
        out: PathBuf,
    },
}

/// Identity fields for `explain`.
#[derive(Debug, Clone, Default, Args)]
pub struct IdentityArgs {
    /// Subject as RFC 4514 (e.g. "CN=stats,O=Land Registry").
    #[arg(long)]
    pub subject: Option<String>,
    /// Common name.
    #[arg(long)]
    pub cn: Option<String>,
    /// Role (from the urn:ferry:role SAN).
    #[arg(long)]
    pub role: Option<String>,
    /// Organizational unit (repeatable).
    #[arg(long)]
    pub ou: Vec<String>,
    /// SAN as dns:…, uri:…, email:… or ip:… (repeatable).
    #[arg(long)]
    pub san: Vec<String>,
    /// Certificate SHA-256 fingerprint.
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// A spool collection's local identity.
    #[arg(long)]
    pub spool: Option<String>,
    /// Any of the above as KEY=VALUE (repeatable).
    #[arg(long = "identity", value_name = "KEY=VALUE")]
    pub identity: Vec<String>,
}

/// Why a command could not run (as opposed to a policy being invalid,
/// which is a normal exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An argument is malformed.
    #[error("{0}")]
    Usage(String),
    /// Writing output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// Signing or verification failed.
    #[error(transparent)]
    Sign(#[from] crate::SignError),
    /// The cases file is unreadable or malformed.
    #[error("{path}: {message}")]
    Cases {
        /// The cases file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Runs a command, printing to stdout.
pub fn run(cmd: PolicyCommand) -> Result<ExitCode, CliError> {
    run_with(cmd, &crate::PolicyFilesOnly)
}

/// Runs a command, printing to stdout; `check` also loads what the policy
/// references through `referenced` (`ferryctl` passes the daemon's
/// loader, so the check reads what `ferryd` will read).
pub fn run_with(
    cmd: PolicyCommand,
    referenced: &dyn crate::Referenced,
) -> Result<ExitCode, CliError> {
    let mut out = std::io::stdout().lock();
    run_to_with(cmd, &mut out, referenced).map(ExitCode::from)
}

/// Runs a command, printing to `out`; returns the exit status.
pub fn run_to(cmd: PolicyCommand, out: &mut dyn Write) -> Result<u8, CliError> {
    run_to_with(cmd, out, &crate::PolicyFilesOnly)
}

/// [`run_to`] with the daemon's loader for what the policy references.
pub fn run_to_with(
    cmd: PolicyCommand,
    out: &mut dyn Write,
    referenced: &dyn crate::Referenced,
) -> Result<u8, CliError> {
    match cmd {
        PolicyCommand::Check { file, strict, json } => {
            let report = crate::check_with(&file, strict, referenced);
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(io_json)?
                )?;
            } else {
                write!(out, "{}", report.render())?;
            }
            Ok(if report.valid { 0 } else { 1 })
        }
        PolicyCommand::Explain {
            file,
            identity,
            channel,
            name,
            content_type,
            size,
            at,
            json,
        } => {
            let policy = match crate::load(&file) {
                Ok((p, _)) => p,
                Err(e) => {
                    writeln!(out, "{e}")?;
                    return Ok(1);
                }
            };
            let at = match at {
                Some(s) => parse_time(&s)?,
                None => OffsetDateTime::now_utc(),
            };
            let req = Request {
                identity: subject_from_args(&identity)?,
                channel,
                file_name: name,
                content_type,
                size_bytes: size,
                at,
            };
            let d = policy.explain(&req, &NoUsage);
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&d).map_err(io_json)?
                )?;
            } else {
                write!(out, "{}", render_decision(&req, &d))?;
            }
            Ok(match d.verdict {
                Verdict::Allow => 0,
                Verdict::Hold => 3,
                Verdict::Deny => 2,
            })
        }
        PolicyCommand::Test { file, cases } => run_cases(&file, &cases, out),
        PolicyCommand::Sign { file, key } => {
            let sig = crate::sign::sign(&file, &key)?;
            writeln!(out, "signed: {}", sig.display())?;
            Ok(0)
        }
        PolicyCommand::Verify { file, pubkey, sig } => {
            let keys = pubkey
                .iter()
                .map(|p| crate::PublicKey::read(p))
                .collect::<Result<Vec<_>, _>>()?;
            let sig = sig.unwrap_or_else(|| crate::sign::signature_path(&file));
            match crate::sign::verify(&file, &sig, &keys) {
                Ok(v) => {
                    writeln!(
                        out,
                        "signature valid: key {} signed policy sha256 {}",
                        v.key_id, v.policy_hash
                    )?;
                    Ok(0)
                }
                Err(e) => {
                    writeln!(out, "signature INVALID: {e}")?;
                    Ok(1)
                }
            }
        }
        PolicyCommand::Keygen { out: path } => {
            let (key, public) = crate::sign::keygen(&path)?;
            writeln!(
                out,
                "signing key: {} (mode 0600; keep it with the security administrator, off the appliance)\npublic key:  {} (install on the appliance as a trusted policy key)",
                key.display(),
                public.display()
            )?;
            Ok(0)
        }
    }
}

fn io_json(e: serde_json::Error) -> std::io::Error {
    std::io::Error::other(e)
}

fn parse_time(s: &str) -> Result<OffsetDateTime, CliError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
        CliError::Usage(format!(
            "`{s}` is not an RFC 3339 time ({e}); write e.g. 2026-11-28T23:30:00+08:00"
        ))
    })
}

fn subject_from_args(a: &IdentityArgs) -> Result<Subject, CliError> {
    let mut a = a.clone();
    for kv in std::mem::take(&mut a.identity) {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("--identity `{kv}`: write KEY=VALUE, e.g. cn=stats"))
        })?;
        let v = v.to_string();
        match k {
            "subject" => a.subject = Some(v),
            "cn" => a.cn = Some(v),
            "role" => a.role = Some(v),
            "ou" => a.ou.push(v),
            "san" => a.san.push(v),
            "fingerprint" => a.fingerprint = Some(v),
            "spool" => a.spool = Some(v),
            other => {
                return Err(CliError::Usage(format!(
                    "--identity: unknown key `{other}`; use subject, cn, role, ou, san, fingerprint or spool"
                )))
            }
        }
    }
    if let Some(s) = &a.spool {
        return Ok(Subject::spool(s));
    }
    let san = a
        .san
        .iter()
        .map(|s| San::parse(s).map_err(CliError::Usage))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Subject {
        subject: a.subject.unwrap_or_default(),
        common_name: a.cn,
        org_units: a.ou,
        san,
        fingerprint_sha256: a
            .fingerprint
            .map(|f| crate::model::normalize_fingerprint(&f)),
        role: a.role,
        spool: None,
    })
}

/// The text `explain` prints.
pub fn render_decision(req: &Request, d: &Decision) -> String {
    let mut s = format!(
        "request: {} → channel `{}`, `{}` ({}, {} bytes) at {}\n",
        req.identity.label(),
        req.channel,
        req.file_name,
        req.content_type,
        req.size_bytes,
        ferry_common::rfc3339::format(req.at)
    );
    s.push_str("trace:\n");
    for t in &d.trace {
        let outcome = serde_json::to_value(t.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        s.push_str(&format!(
            "  {:<24} {:<15} {}\n",
            t.rule_id.as_deref().unwrap_or("(channel)"),
            outcome,
            t.detail
        ));
    }
    let verdict = match d.verdict {
        Verdict::Allow => "ALLOW",
        Verdict::Deny => "DENY",
        Verdict::Hold => "HOLD",
    };
    s.push_str(&format!(
        "verdict: {verdict}{}\n",
        d.rule_id
            .as_ref()
            .map_or(String::new(), |r| format!(" (rule `{r}`)"))
    ));
    for r in &d.reasons {
        s.push_str(&format!("  - {r}\n"));
    }
    if d.verdict == Verdict::Allow {
        if let Some(p) = &d.profile {
            s.push_str(&format!("content profile: {p}\n"));
        }
        if let Some(a) = &d.approval {
            s.push_str(&format!(
                "approval: {} distinct reviewer(s) with role {}; expires after {} s\n",
                a.reviewers,
                a.roles.join(" or "),
                a.expires_after_s
            ));
        }
    }
    s.push_str(&format!("policy sha256: {}\n", d.policy_hash));
    s
}

// --- policy tests ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    identity: CaseIdentity,
    channel: String,
    file_name: String,
    #[serde(default = "default_type")]
    content_type: String,
    size_bytes: u64,
    at: String,
    expect: String,
    rule: Option<String>,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    usage: Vec<CaseUsage>,
}

fn default_type() -> String {
    "application/octet-stream".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CaseIdentity {
    subject: Option<String>,
    cn: Option<String>,
    role: Option<String>,
    #[serde(default)]
    ou: Vec<String>,
    #[serde(default)]
    san: Vec<String>,
    fingerprint: Option<String>,
    spool: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseUsage {
    scope: String,
    name: String,
    period: String,
    #[serde(default)]
    packages: u64,
    #[serde(default)]
    bytes: u64,
}

struct TableUsage(HashMap<(String, String, &'static str), Counter>);

impl Usage for TableUsage {
    fn counter(&self, scope: UsageScope<'_>, period: Period) -> Counter {
        let (kind, name) = match scope {
            UsageScope::Identity(n) => ("identity", n),
            UsageScope::Channel(n) => ("channel", n),
        };
        let p = match period {
            Period::Minute => "minute",
            Period::Day => "day",
        };
        self.0
            .get(&(kind.to_string(), name.to_string(), p))
            .copied()
            .unwrap_or_default()
    }
}

/// A `policy test` cases file is a few hundred cases at most.
const CASES_MAX_BYTES: u64 = 4 << 20;

fn run_cases(file: &Path, cases: &Path, out: &mut dyn Write) -> Result<u8, CliError> {
    let policy = match crate::load(file) {
        Ok((p, _)) => p,
        Err(e) => {
            writeln!(out, "{e}")?;
            return Ok(1);
        }
    };
    let cases_err = |message: String| CliError::Cases {
        path: cases.display().to_string(),
        message,
    };
    let bytes =
        crate::files::read_regular(cases, CASES_MAX_BYTES).map_err(|e| cases_err(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| cases_err("not UTF-8 text".into()))?;
    let parsed: CasesFile =
        toml_edit::de::from_str(&text).map_err(|e| cases_err(e.to_string().trim().to_string()))?;
    if parsed.case.is_empty() {
        return Err(cases_err("no [[case]] tables".into()));
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for c in &parsed.case {
        let ident = IdentityArgs {
            subject: c.identity.subject.clone(),
            cn: c.identity.cn.clone(),
            role: c.identity.role.clone(),
            ou: c.identity.ou.clone(),
            san: c.identity.san.clone(),
            fingerprint: c.identity.fingerprint.clone(),
            spool: c.identity.spool.clone(),
            identity: Vec::new(),
        };
        let at = parse_time(&c.at).map_err(|e| cases_err(format!("case `{}`: {e}", c.name)))?;
        let mut usage = HashMap::new();
        for u in &c.usage {
            let period = match u.period.as_str() {
                "minute" => "minute",
                "day" => "day",
                other => {
                    return Err(cases_err(format!(
                        "case `{}`: usage period `{other}` must be \"minute\" or \"day\"",
                        c.name
                    )))
                }
            };
            usage.insert(
                (u.scope.clone(), u.name.clone(), period),
                Counter {
                    packages: u.packages,
                    bytes: u.bytes,
                    resets_at: None,
                },
            );
        }
        let req = Request {
            identity: subject_from_args(&ident)
                .map_err(|e| cases_err(format!("case `{}`: {e}", c.name)))?,
            channel: c.channel.clone(),
            file_name: c.file_name.clone(),
            content_type: c.content_type.clone(),
            size_bytes: c.size_bytes,
            at,
        };
        let d = policy.decide(&req, &TableUsage(usage));
        let got = match d.verdict {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Hold => "hold",
        };
        let mut problems = Vec::new();
        if got != c.expect {
            problems.push(format!("expected {}, got {got}", c.expect));
        }
        if let Some(r) = &c.rule {
            if d.rule_id.as_deref() != Some(r.as_str()) {
                problems.push(format!(
                    "expected rule `{r}`, got {}",
                    d.rule_id
                        .as_deref()
                        .map_or("no rule".to_string(), |x| format!("`{x}`"))
                ));
            }
        }
        let kinds: Vec<String> = d
            .reasons
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .filter_map(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
            .collect();
        for want in &c.reasons {
            if !kinds.contains(want) {
                problems.push(format!(
                    "expected a `{want}` reason, got [{}]",
                    kinds.join(", ")
                ));
            }
        }
        if problems.is_empty() {
            passed += 1;
            writeln!(out, "ok   {}", c.name)?;
        } else {
            failed += 1;
            writeln!(out, "FAIL {}: {}", c.name, problems.join("; "))?;
            for r in &d.reasons {
                writeln!(out, "       - {r}")?;
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(u8::from(failed > 0))
}
