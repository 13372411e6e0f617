//! YARA rules inside an inspection, under a profile with `yara = { … }`:
//! the site's rules files, compiled once when the policy is loaded (a rule
//! that does not compile fails the load at FILE:LINE:COL of the `.yar`
//! file), then run on the package as a whole and on every archive member
//! at every level, at the same hook points as the malware scan. A match is
//! reported by the rule's name and tags, never by what it matched.
//!
//! Why each stream is held in memory rather than streamed: a YARA
//! condition may look anywhere in its data (`filesize`, `uint32(0)`,
//! `$a at 100`), so the scanner needs the whole stream at once. Each
//! stream is buffered up to `max_scan_bytes` and scanned when it ends; a
//! longer one is refused (never passed unscanned). The package's own
//! buffer is freed before the archive walk starts; a member's is freed as
//! soon as it is scanned, when its last byte is read, so a zip inside a
//! zip (spooled whole before its members are read) holds one buffer at a
//! time, and a tar inside a gzip one per open level: at most
//! `max_scan_bytes × (archives.max_depth + 1)` in all.

use crate::error::GuardError;
use crate::inspect::{Ctx, Halt};
use crate::profile::ListSource;
use crate::report::{Action, FindingKind, YaraMatch, YaraRulesFile, YaraScan, YaraStatus};
use crate::source::RandomRead;
use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Default `yara.timeout_s`: how long one stream's scan may run.
pub const DEFAULT_YARA_TIMEOUT_S: u64 = 5;
/// Limits of `yara.timeout_s` (seconds). The engine checks its clock once
/// a second, so a scan stops between `timeout_s − 1` and `timeout_s`
/// seconds after it started: 1 second could stop a scan at once, hence
/// the floor of 2.
pub const YARA_TIMEOUT_S_RANGE: (u64, u64) = (2, 60);
/// Default `yara.max_scan_bytes` (64 MiB).
pub const DEFAULT_YARA_MAX_SCAN_BYTES: u64 = 64 * 1024 * 1024;
/// Largest `yara.max_scan_bytes` (1 GiB): each stream is held in memory.
pub const YARA_MAX_SCAN_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Most files in `yara.rules`.
pub const YARA_RULES_FILES_MAX: usize = 64;
/// Matches the scanner keeps per pattern and stream. Bounds the memory a
/// package full of a short pattern can make the scanner use; a rule
/// counting more occurrences than this (`#a > 20000`) never matches.
pub const YARA_MAX_MATCHES_PER_PATTERN: usize = 10_000;

/// First allocation of a member's buffer.
const GROW_MIN_BYTES: usize = 64 * 1024;

/// `yara = { … }`, compiled.
#[derive(Clone)]
pub struct YaraRules {
    rules: Arc<yara_x::Rules>,
    files: Vec<YaraRulesFile>,
    action: Action,
    timeout: Duration,
    max_scan_bytes: u64,
}

impl std::fmt::Debug for YaraRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YaraRules")
            .field("files", &self.files)
            .field("action", &self.action)
            .field("timeout", &self.timeout)
            .field("max_scan_bytes", &self.max_scan_bytes)
            .finish_non_exhaustive()
    }
}

impl YaraRules {
    /// The rules files, each with its SHA-256 and number of rules.
    pub fn files(&self) -> &[YaraRulesFile] {
        &self.files
    }

    /// Rules in all files.
    pub fn rule_count(&self) -> usize {
        self.files.iter().map(|f| f.rules).sum()
    }

    /// What a match does: `reject` (default) or `review`.
    pub fn action(&self) -> Action {
        self.action
    }

    /// How long one stream's scan may run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The longest stream scanned; a longer one is refused.
    pub fn max_scan_bytes(&self) -> u64 {
        self.max_scan_bytes
    }

    fn scanner(&self) -> yara_x::Scanner<'_> {
        let mut s = yara_x::Scanner::new(&self.rules);
        s.set_timeout(self.timeout)
            .max_matches_per_pattern(YARA_MAX_MATCHES_PER_PATTERN);
        s
    }
}

/// `yara = { … }` as written in the profile.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct YaraSettings {
    rules: Option<Vec<String>>,
    action: Option<Action>,
    timeout_s: Option<u64>,
    max_scan_bytes: Option<u64>,
}

/// Checks the settings, reads every rules file through `files` and
/// compiles them, one YARA namespace per file (named by the file's stem,
/// so two files may hold rules of the same name). `include` is refused in
/// rules: every file the guard reads is named in the policy, digested in
/// the report and readable in the sandbox.
pub(crate) fn compile(
    profile: &str,
    s: YaraSettings,
    files: &dyn ListSource,
) -> Result<YaraRules, GuardError> {
    let bad = |message: String| GuardError::Settings {
        profile: profile.to_string(),
        message,
    };
    let paths = s.rules.unwrap_or_default();
    if paths.is_empty() {
        return Err(bad(
            "yara.rules: name at least one rules file, e.g. rules = [\"/etc/ferry/yara/import.yar\"]"
                .into(),
        ));
    }
    if paths.len() > YARA_RULES_FILES_MAX {
        return Err(bad(format!(
            "yara.rules: more than {YARA_RULES_FILES_MAX} files; merge some"
        )));
    }
    let action = match s.action.unwrap_or(Action::Reject) {
        Action::Mask => {
            return Err(bad(
                "yara.action: a match cannot be masked; use \"reject\" or \"review\"".into(),
            ))
        }
        a => a,
    };
    let (lo, hi) = YARA_TIMEOUT_S_RANGE;
    let timeout_s = s.timeout_s.unwrap_or(DEFAULT_YARA_TIMEOUT_S);
    if !(lo..=hi).contains(&timeout_s) {
        return Err(bad(format!(
            "yara.timeout_s must be between {lo} and {hi} (seconds)"
        )));
    }
    let max_scan_bytes = s.max_scan_bytes.unwrap_or(DEFAULT_YARA_MAX_SCAN_BYTES);
    if !(1..=YARA_MAX_SCAN_BYTES_MAX).contains(&max_scan_bytes) {
        return Err(bad(format!(
            "yara.max_scan_bytes must be between 1 and {YARA_MAX_SCAN_BYTES_MAX} (bytes)"
        )));
    }
    let mut compiler = yara_x::Compiler::new();
    compiler.enable_includes(false);
    let mut namespaces = HashSet::new();
    let mut out = Vec::new();
    for p in &paths {
        let path = PathBuf::from(p);
        if !path.is_absolute() {
            return Err(bad(format!("yara.rules: `{p}` is not an absolute path")));
        }
        let namespace = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if !namespaces.insert(namespace.clone()) {
            return Err(bad(format!(
                "yara.rules: two rules files are named `{namespace}`; rules are reported as FILE-NAME:RULE, so rename one"
            )));
        }
        let bytes = files
            .read_list(&path)
            .map_err(|source| GuardError::RulesUnreadable {
                profile: profile.to_string(),
                path: path.clone(),
                source,
            })?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            rules_invalid(
                &path,
                valid,
                valid.len()..valid.len(),
                "not UTF-8 text; save the rules file as UTF-8".into(),
            )
        })?;
        compiler.new_namespace(&namespace);
        let origin = path.display().to_string();
        if let Err(e) = compiler.add_source(yara_x::SourceCode::from(text).with_origin(origin)) {
            return Err(compile_error(&path, text, &e));
        }
        out.push(YaraRulesFile {
            path: path.display().to_string(),
            sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)),
            rules: 0,
        });
    }
    let rules = compiler.build();
    for r in rules.iter() {
        let ns = r.namespace();
        if let Some(f) = out
            .iter_mut()
            .find(|f| Path::new(&f.path).file_stem().and_then(|s| s.to_str()) == Some(ns))
        {
            f.rules += 1;
        }
    }
    Ok(YaraRules {
        rules: Arc::new(rules),
        files: out,
        action,
        timeout: Duration::from_secs(timeout_s),
        max_scan_bytes,
    })
}

/// A compile error at its place in the rules file (the first label of
/// the engine's report: where the engine points its caret).
fn compile_error(path: &Path, text: &str, e: &yara_x::errors::CompileError) -> GuardError {
    let mut labels = e.labels();
    let (span, label) = match labels.next() {
        Some(l) => (l.span().range(), l.text().to_string()),
        None => (0..0, String::new()),
    };
    let mut message = format!("YARA {}: {}", e.code(), e.title());
    if !label.is_empty() && label != e.title() {
        message.push_str(&format!(": {label}"));
    }
    rules_invalid(path, text, span, message)
}

fn rules_invalid(
    path: &Path,
    text: &str,
    span: std::ops::Range<usize>,
    message: String,
) -> GuardError {
    let at = ferry_common::located::locate(text, span, &[]);
    GuardError::RulesInvalid {
        path: path.to_path_buf(),
        line: at.line,
        column: at.column,
        excerpt: at.excerpt,
        message,
    }
}

/// How the scan of one stream ended.
pub(crate) enum Outcome {
    /// No rule matched.
    Clean,
    /// These rules matched: `namespace:identifier` and tags.
    Matched(Vec<(String, Vec<String>)>),
    /// The scan ran past `timeout_s`.
    Timeout,
    /// The stream is longer than `max_scan_bytes`: not scanned.
    TooLarge(u64),
    /// The engine failed, or the buffer could not be had.
    Failed(String),
}

fn scan(scanner: &mut yara_x::Scanner<'_>, data: &[u8]) -> Outcome {
    match scanner.scan(data) {
        Ok(results) => {
            let matched: Vec<(String, Vec<String>)> = results
                .matching_rules()
                .map(|r| {
                    (
                        format!("{}:{}", r.namespace(), r.identifier()),
                        r.tags().map(|t| t.identifier().to_string()).collect(),
                    )
                })
                .collect();
            if matched.is_empty() {
                Outcome::Clean
            } else {
                Outcome::Matched(matched)
            }
        }
        Err(yara_x::ScanError::Timeout) => Outcome::Timeout,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// A reader that keeps what it reads (up to `max_scan_bytes`) and scans
/// it with the profile's rules when its source ends; the buffer is freed
/// then. Like the malware tee, it never disturbs the reading.
pub(crate) struct YaraTee<'r, 'y> {
    inner: &'r mut dyn Read,
    scanner: Option<yara_x::Scanner<'y>>,
    limit: u64,
    buf: Vec<u8>,
    bytes: u64,
    outcome: Option<Outcome>,
}

impl<'r, 'y> YaraTee<'r, 'y> {
    fn new(rules: &'y YaraRules, scanner: yara_x::Scanner<'y>, inner: &'r mut dyn Read) -> Self {
        YaraTee {
            inner,
            scanner: Some(scanner),
            limit: rules.max_scan_bytes,
            buf: Vec::new(),
            bytes: 0,
            outcome: None,
        }
    }

    /// The outcome, the bytes read, and the scanner for the next stream.
    fn finish(self) -> (Outcome, u64, Option<yara_x::Scanner<'y>>) {
        let outcome = self.outcome.unwrap_or_else(|| {
            Outcome::Failed("the member was not read to its end, so it was not scanned".into())
        });
        (outcome, self.bytes, self.scanner)
    }
}

impl Read for YaraTee<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        if n == 0 {
            if !out.is_empty() && self.outcome.is_none() {
                let data = std::mem::take(&mut self.buf);
                self.outcome = Some(if self.bytes > self.limit {
                    Outcome::TooLarge(self.bytes)
                } else {
                    match &mut self.scanner {
                        Some(s) => scan(s, &data),
                        None => Outcome::Failed("no scanner".into()),
                    }
                });
            }
            return Ok(0);
        }
        self.bytes += n as u64;
        if self.bytes <= self.limit && self.outcome.is_none() {
            // Grown by doubling, but never past the limit: the buffer's
            // capacity, not only its length, stays within max_scan_bytes.
            let len = self.buf.len();
            let want = (self.buf.capacity() * 2)
                .max(len + n)
                .max(GROW_MIN_BYTES)
                .min(usize::try_from(self.limit).unwrap_or(usize::MAX));
            if self.buf.capacity() < len + n
                && self.buf.try_reserve_exact(want.max(len + n) - len).is_err()
            {
                self.outcome = Some(Outcome::Failed(format!(
                    "no memory for a {} byte buffer",
                    self.bytes
                )));
                self.buf = Vec::new();
            } else {
                self.buf.extend_from_slice(&out[..n]);
            }
        } else if !self.buf.is_empty() {
            // Over the limit: refused at the end, and nothing more kept.
            self.buf = Vec::new();
        }
        Ok(n)
    }
}

impl<'a> Ctx<'a> {
    /// The report's YARA section before anything was scanned.
    fn yara_begin(&mut self, rules: &YaraRules) {
        if self.yara.is_none() {
            self.yara = Some(YaraScan {
                files: rules.files.clone(),
                rules: rules.rule_count(),
                status: YaraStatus::Clean,
                streams: 0,
                bytes: 0,
                matches: Vec::new(),
                error: None,
            });
        }
    }

    /// Scans the whole package as given: `Ok(())` to go on,
    /// `Err(Halt::Rejected)` when it is refused (a match under `reject`,
    /// a timeout, too large).
    pub(crate) fn yara_package(
        &mut self,
        rules: &'a YaraRules,
        src: &dyn RandomRead,
    ) -> Result<(), Halt> {
        self.yara_begin(rules);
        let size = src.size();
        if size > rules.max_scan_bytes {
            return self.yara_outcome(rules, Outcome::TooLarge(size), 0);
        }
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        let mut data = Vec::new();
        if data.try_reserve_exact(len).is_err() {
            let o = Outcome::Failed(format!("no memory for a {size} byte buffer"));
            return self.yara_outcome(rules, o, 0);
        }
        data.resize(len, 0);
        let mut got = 0;
        while got < data.len() {
            let n = src.read_at(&mut data[got..], got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        data.truncate(got);
        let mut scanner = self.yara_scanner.take().unwrap_or_else(|| rules.scanner());
        let outcome = scan(&mut scanner, &data);
        if !matches!(outcome, Outcome::Clean) {
            // A refused or held package is still named by its SHA-256 in
            // the report and the audit record.
            let digest = ring::digest::digest(&ring::digest::SHA256, &data);
            self.read_whole(got as u64, hex::encode(digest.as_ref()));
        }
        drop(data);
        self.yara_scanner = Some(scanner);
        self.yara_outcome(rules, outcome, got as u64)
    }

    /// Inspects one archive member through `inner` (the malware scan or
    /// the inspection proper) while keeping its bytes, then scans them; a
    /// member the inspection did not read to its end is read to its end.
    pub(crate) fn yara_member(
        &mut self,
        rules: &'a YaraRules,
        r: &mut dyn Read,
        inner: impl FnOnce(&mut Self, &mut dyn Read) -> Result<(), Halt>,
    ) -> Result<(), Halt> {
        self.yara_begin(rules);
        let scanner = self.yara_scanner.take().unwrap_or_else(|| rules.scanner());
        let mut tee = YaraTee::new(rules, scanner, r);
        inner(self, &mut tee)?;
        crate::source::drain(&mut tee)?;
        let (outcome, bytes, scanner) = tee.finish();
        if self.yara_scanner.is_none() {
            self.yara_scanner = scanner;
        }
        self.yara_outcome(rules, outcome, bytes)
    }

    /// Records the outcome of one stream.
    fn yara_outcome(
        &mut self,
        rules: &YaraRules,
        outcome: Outcome,
        bytes: u64,
    ) -> Result<(), Halt> {
        let location = self.location(None, None, None);
        let files = rules
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(y) = &mut self.yara {
            y.bytes += bytes;
            if matches!(outcome, Outcome::Clean | Outcome::Matched(_)) {
                y.streams += 1;
            }
        }
        let (status, why) = match outcome {
            Outcome::Clean => return Ok(()),
            Outcome::Matched(hits) => {
                let mut taken = rules.action;
                for (rule, _) in &hits {
                    taken = self.finding(
                        FindingKind::Yara,
                        "yara_rule",
                        location.clone(),
                        None,
                        Some(rule.clone()),
                        rules.action,
                    );
                }
                let names: Vec<&str> = hits.iter().map(|(r, _)| r.as_str()).collect();
                let r = format!(
                    "{}YARA rule{} matched: {} (yara.action = \"{}\")",
                    self.where_(),
                    if names.len() == 1 { "" } else { "s" },
                    names.join(", "),
                    taken.as_str()
                );
                self.add_reason(r);
                if let Some(y) = &mut self.yara {
                    if y.status < YaraStatus::Matched {
                        y.status = YaraStatus::Matched;
                    }
                    y.matches
                        .extend(hits.into_iter().map(|(rule, tags)| YaraMatch {
                            member: location.member.clone(),
                            rule,
                            tags,
                        }));
                }
                return match taken {
                    Action::Reject => Err(Halt::Rejected),
                    _ => Ok(()),
                };
            }
            Outcome::Timeout => (
                YaraStatus::Timeout,
                format!(
                    "the YARA scan (rules {files}) ran longer than yara.timeout_s ({} s) and was stopped: not scanned, so not passed",
                    rules.timeout.as_secs()
                ),
            ),
            Outcome::TooLarge(n) => (
                YaraStatus::Unscannable,
                format!(
                    "{n} bytes, more than yara.max_scan_bytes ({}): not scanned for YARA rules, so not passed",
                    rules.max_scan_bytes
                ),
            ),
            Outcome::Failed(e) => (
                YaraStatus::Unscannable,
                format!("the YARA scan (rules {files}) failed ({e}): not scanned, so not passed"),
            ),
        };
        let detector = match status {
            YaraStatus::Timeout => "yara_timeout",
            _ => "yara_unscannable",
        };
        self.finding(
            FindingKind::Yara,
            detector,
            location,
            None,
            None,
            Action::Reject,
        );
        if let Some(y) = &mut self.yara {
            y.status = y.status.max(status);
            if y.error.is_none() {
                y.error = Some(why.clone());
            }
        }
        Err(self.reject(why))
    }
}
