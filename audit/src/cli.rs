//! `ferryctl audit …`: the audit officer's commands. Every use is itself
//! recorded as an `audit.read` record with the caller's identity; a use
//! that cannot be recorded is refused.

use crate::error::AuditError;
use crate::query::{self, Filter};
use crate::record::{Actor, AuditRecord, EventKind, Outcome, Role};
use crate::{AuditLog, AuditOptions, VerifyKey};
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Default log directory: where the Debian package and the examples put it
/// (`[audit] dir`), so the auditor's tools find the log without `--dir`.
pub const DEFAULT_DIR: &str = "/var/log/ferry/audit";

/// The audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Create a new log and write the auditor's verify key (take it off the host).
    Init {
        /// Log directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Where to write the verify key (must not exist).
        #[arg(long)]
        verify_key_out: PathBuf,
    },
    /// Check the whole log. Exit 0 intact, 1 tampered, 2 could not run
    /// (files missing, bad key, I/O), 3 refused (`--via` without the
    /// auditor role; nothing is printed).
    Verify {
        /// Log directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The verify key written by `init`.
        #[arg(long)]
        key: PathBuf,
        /// An outside copy of the checkpoints (JSON lines or syslog lines),
        /// checked in addition to the directory's own checkpoints.jsonl.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// Select records.
    Query(QueryArgs),
    /// Export records.
    Export {
        /// Filters.
        #[command(flatten)]
        q: QueryArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
    /// Show the last records, and with -f keep following.
    Tail {
        /// Log directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// How many of the last records to show first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing new records.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// A package's whole story, in order.
    Trace {
        /// Log directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The package id.
        package: String,
    },
}

/// Filters shared by query and export.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Log directory.
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// From (2026-11-28, RFC 3339, or an age such as 2h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Until (same forms).
    #[arg(long)]
    pub until: Option<String>,
    /// Actor id.
    #[arg(long)]
    pub actor: Option<String>,
    /// Channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Package id.
    #[arg(long)]
    pub package: Option<String>,
    /// Event (e.g. package.pushed).
    #[arg(long)]
    pub event: Option<String>,
    /// Outcome (success, failure, allowed, refused).
    #[arg(long)]
    pub outcome: Option<String>,
    /// JSON lines instead of a table.
    #[arg(long, conflicts_with = "table")]
    pub json: bool,
    /// A table (the default).
    #[arg(long)]
    pub table: bool,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// RFC 5424 lines.
    Syslog,
    /// CSV with a header line.
    Csv,
}

impl QueryArgs {
    fn filter(&self) -> Result<Filter, AuditError> {
        let now = crate::time_fmt::now_ms();
        Ok(Filter {
            since_ms: self
                .since
                .as_deref()
                .map(|s| crate::time_fmt::parse_time_arg(s, now))
                .transpose()?,
            until_ms: self
                .until
                .as_deref()
                .map(|s| crate::time_fmt::parse_time_arg(s, now))
                .transpose()?,
            actor: self.actor.clone(),
            channel: self.channel.clone(),
            package: self.package.clone(),
            event: self
                .event
                .as_deref()
                .map(|e| {
                    EventKind::parse(e)
                        .ok_or_else(|| AuditError::Usage(format!("unknown event {e:?}")))
                })
                .transpose()?,
            outcome: self
                .outcome
                .as_deref()
                .map(|o| {
                    Outcome::parse(o)
                        .ok_or_else(|| AuditError::Usage(format!("unknown outcome {o:?}")))
                })
                .transpose()?,
            after_seq: None,
        })
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("since", &self.since),
            ("until", &self.until),
            ("actor", &self.actor),
            ("channel", &self.channel),
            ("package", &self.package),
            ("event", &self.event),
            ("outcome", &self.outcome),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        parts.join(" ")
    }
}

/// Records a use of the audit tool. The default recorder opens the log
/// directly; when ferryd holds the writer lock, `ferryctl` passes a recorder
/// that hands the record to ferryd instead.
pub type Recorder<'a> = &'a dyn Fn(&Path, AuditRecord) -> Result<(), AuditError>;

/// Appends through a short-lived writer (works when ferryd is not running).
pub fn record_directly(dir: &Path, record: AuditRecord) -> Result<(), AuditError> {
    let log = AuditLog::open(
        dir,
        AuditOptions {
            background: false,
            ..AuditOptions::default()
        },
    )?;
    log.append(record)?;
    log.close()
}

/// Runs a command; `actor` is the unix user of the audit officer.
pub fn run(cmd: AuditCommand, actor: &str) -> Result<ExitCode, AuditError> {
    run_with(cmd, actor, &record_directly)
}

fn audited(
    recorder: Recorder<'_>,
    dir: &Path,
    actor: &str,
    what: &str,
    args: String,
) -> Result<(), AuditError> {
    let r = AuditRecord::new(
        EventKind::AuditRead,
        Actor::new(actor, Role::Auditor),
        Outcome::Success,
    )
    .detail("command", what)
    .detail("args", args);
    recorder(dir, r).map_err(|e| match e {
        // A refusal stays a refusal: the caller must see nothing.
        AuditError::Refused(why) => AuditError::Refused(why),
        e => AuditError::NotAudited(e.to_string()),
    })
}

/// Says on stderr (stdout stays one record per line) how many of the
/// records shown no seal covers yet.
fn note_unsealed(recs: &[crate::record::StoredRecord], sealed: u64) {
    let n = recs.iter().filter(|r| r.seq > sealed).count();
    if n > 0 {
        eprintln!(
            "note: {n} of these records (after seq {sealed}) are not covered by a seal yet; `verify` vouches for them only once sealed"
        );
    }
}

/// Runs a command with a given recorder for the `audit.read` record.
pub fn run_with(
    cmd: AuditCommand,
    actor: &str,
    recorder: Recorder<'_>,
) -> Result<ExitCode, AuditError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let w = |e: std::io::Error| AuditError::io("writing to", "stdout", e);
    match cmd {
        AuditCommand::Init {
            dir,
            verify_key_out,
        } => {
            let vk = crate::init(&dir, &verify_key_out)?;
            let log = AuditLog::open(&dir, AuditOptions::default())?;
            log.append(
                AuditRecord::new(
                    EventKind::AuditInit,
                    Actor::new(actor, Role::Auditor),
                    Outcome::Success,
                )
                .detail("log_id", hex::encode(vk.log_id)),
            )?;
            log.close()?;
            writeln!(
                out,
                "audit log created in {}\nverify key written to {} — move it off this host (offline media); \
                 whoever holds it can forge seals, the host no longer can.",
                dir.display(),
                verify_key_out.display()
            )
            .map_err(w)?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            dir,
            key,
            checkpoints,
        } => {
            let vk = VerifyKey::read(&key)?;
            let rep = crate::verify(&dir, &vk, checkpoints.as_deref())?;
            // Recorded before anything is shown, as every other command:
            // a caller the recorder refuses learns nothing of the result.
            let recorded = audited(
                recorder,
                &dir,
                actor,
                "verify",
                format!("intact={}", rep.intact()),
            );
            // A damaged log refuses new records, yet the finding must still
            // reach the officer: report it, and say the use went unrecorded.
            match recorded {
                Ok(()) => {}
                Err(e @ AuditError::Refused(_)) => return Err(e),
                Err(e) if !rep.intact() => eprintln!("warning: {e}"),
                Err(e) => return Err(e),
            }
            write!(out, "{rep}").map_err(w)?;
            Ok(if rep.intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        AuditCommand::Query(q) => {
            let f = q.filter()?;
            audited(recorder, &q.dir, actor, "query", q.describe())?;
            let recs = query::query(&q.dir, &f)?;
            let sealed = query::sealed_through(&q.dir)?;
            for r in &recs {
                let line = if q.json {
                    query::to_json_marked(r, r.seq <= sealed)
                } else {
                    query::to_table_row_marked(r, r.seq <= sealed)
                };
                writeln!(out, "{line}").map_err(w)?;
            }
            note_unsealed(&recs, sealed);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export { q, format } => {
            let f = q.filter()?;
            audited(
                recorder,
                &q.dir,
                actor,
                "export",
                format!("{format:?} {}", q.describe()),
            )?;
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default();
            if format == ExportFormat::Csv {
                writeln!(out, "{}", query::CSV_HEADER).map_err(w)?;
            }
            let mut err = None;
            query::scan(&q.dir, &f, |r| {
                let line = match format {
                    ExportFormat::Jsonl => query::to_json(&r),
                    ExportFormat::Syslog => query::to_syslog(&r, &host),
                    ExportFormat::Csv => query::to_csv(&r),
                };
                match writeln!(out, "{line}") {
                    Ok(()) => true,
                    Err(e) => {
                        err = Some(e);
                        false
                    }
                }
            })?;
            if let Some(e) = err {
                return Err(w(e));
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Trace { dir, package } => {
            audited(recorder, &dir, actor, "trace", format!("package={package}"))?;
            let recs = query::trace(&dir, &package)?;
            let sealed = query::sealed_through(&dir)?;
            for r in &recs {
                writeln!(out, "{}", query::to_table_row_marked(r, r.seq <= sealed)).map_err(w)?;
            }
            note_unsealed(&recs, sealed);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Tail { dir, lines, follow } => {
            audited(
                recorder,
                &dir,
                actor,
                "tail",
                format!("n={lines} follow={follow}"),
            )?;
            let all = query::query(&dir, &Filter::default())?;
            let start = all.len().saturating_sub(lines);
            let mut last = 0;
            let sealed = query::sealed_through(&dir)?;
            for r in &all[start..] {
                writeln!(out, "{}", query::to_table_row_marked(r, r.seq <= sealed)).map_err(w)?;
            }
            if let Some(r) = all.last() {
                last = r.seq;
            }
            drop(all);
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            loop {
                out.flush().map_err(w)?;
                std::thread::sleep(Duration::from_millis(500));
                let f = Filter {
                    after_seq: Some(last),
                    ..Filter::default()
                };
                let recs = query::query(&dir, &f)?;
                // New records are usually not sealed yet when first shown.
                let sealed = query::sealed_through(&dir)?;
                for r in recs {
                    last = r.seq;
                    writeln!(out, "{}", query::to_table_row_marked(&r, r.seq <= sealed))
                        .map_err(w)?;
                }
            }
        }
    }
}
