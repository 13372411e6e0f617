//! `ferryctl inspect`: runs a policy's content profile on a file, so a
//! security administrator can try a profile before a channel uses it.
//! Exit status: 0 pass or masked, 1 review or reject, 2 when the command
//! cannot run (usage, policy, profile or I/O errors).

use clap::Args;
use ferry_guard::{Guard, Report, Verdict};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `ferryctl inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// The policy file (its includes are followed).
    #[arg(long)]
    pub policy: PathBuf,
    /// The content profile to apply (`[profile.NAME]`).
    #[arg(long)]
    pub profile: String,
    /// The file to inspect.
    pub input: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The declared content type (default: none, the extension decides).
    #[arg(long = "content-type", value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Write the masked package here when the verdict is `masked`.
    #[arg(long, value_name = "MASKED")]
    pub out: Option<PathBuf>,
    /// The name the sender declared (default: the input's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Show the de-identification record as a table: which technique was
    /// applied to which column or detector, how many values, the key
    /// epoch of pseudonyms (never a value).
    #[arg(long)]
    pub explain: bool,
    /// The channel the package would travel on: pseudonyms are stable per
    /// channel, so give it to see the pseudonyms ferryd would write.
    #[arg(long, default_value = "")]
    pub channel: String,
    /// The pseudonym key directory (`ferryctl keys pseudonym rotate`),
    /// for profiles with `pseudonymize` column rules.
    #[arg(long, value_name = "DIR")]
    pub pseudonym_keys: Option<PathBuf>,
}

/// Exit status when the command could not run.
const EXIT_CANNOT_RUN: u8 = 2;

/// Runs the command, printing to stdout and errors to stderr.
pub fn run(args: &InspectArgs) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match run_to(args, &mut out) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ferryctl inspect: {e}");
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}

/// Runs the command, printing the report to `out`; returns the exit
/// status, or why the command could not run (exit status 2).
pub fn run_to(args: &InspectArgs, out: &mut dyn Write) -> Result<u8, String> {
    let (policy, _warnings) = ferry_policy::load(&args.policy).map_err(|e| e.to_string())?;
    let Some(p) = policy.profile(&args.profile) else {
        let known: Vec<&str> = policy.profiles().iter().map(|p| p.name.as_str()).collect();
        return Err(format!(
            "the policy has no [profile.{}]; its profiles: {}",
            args.profile,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    };
    let profile = crate::inspection::content::compile_profile(p).map_err(|e| e.to_string())?;
    let mut guard = Guard::new(profile);
    if let Some(dir) = &args.pseudonym_keys {
        let key = ferry_keys::pseudonym::load_current(dir).map_err(|e| e.to_string())?;
        guard = guard.with_pseudonym_key(key.epoch(), key.secret());
    }
    // A FIFO, device or directory given as the input is refused at once
    // (the guard would block reading a FIFO), by the one helper every
    // operator-named file goes through.
    ferry_policy::files::open_regular(&args.input)
        .map_err(|e| format!("{}: cannot inspect: {e}", args.input.display()))?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{}: not a file name", args.input.display()))?,
    };
    // Without --out the masked package goes to a scratch directory that
    // is removed afterwards.
    let scratch;
    let target = match &args.out {
        Some(o) => o.clone(),
        None => {
            scratch = tempfile::tempdir()
                .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
            scratch.path().join("masked")
        }
    };
    let content_type = args.content_type.as_deref().unwrap_or("");
    let report = guard
        .inspect_for(&args.channel, &args.input, &name, content_type, &target)
        .map_err(|e| e.to_string())?;
    let written = (report.verdict == Verdict::Masked && args.out.is_some()).then_some(&target);
    let shown = if args.json {
        serde_json::to_string_pretty(&report)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string())?
    } else {
        let mut text = render(&report, written);
        if args.explain {
            text.push_str(&explain(&report));
        }
        text
    };
    out.write_all(shown.as_bytes())
        .map_err(|e| format!("cannot write output: {e}"))?;
    Ok(if report.may_pass() { 0 } else { 1 })
}

/// The de-identification record as a table.
fn explain(r: &Report) -> String {
    let mut s = String::from("de-identification:\n");
    if r.deidentification.is_empty() {
        s.push_str("  (no technique applied)\n");
        return s;
    }
    let rows: Vec<[String; 5]> = r
        .deidentification
        .iter()
        .map(|d| {
            [
                d.technique.clone(),
                d.target.clone(),
                d.rule.clone(),
                d.values.to_string(),
                d.key_epoch.map_or(String::new(), |e| e.to_string()),
            ]
        })
        .collect();
    let head = [
        "technique",
        "column / detector",
        "rule",
        "values",
        "key epoch",
    ];
    let mut width = head.map(display_width);
    for row in &rows {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(display_width(c));
        }
    }
    let line = |cells: [&str; 5]| {
        let mut l = String::from(" ");
        for (c, w) in cells.iter().zip(width) {
            l.push(' ');
            l.push_str(c);
            l.push_str(&" ".repeat(w - display_width(c) + 1));
        }
        l.trim_end().to_string() + "\n"
    };
    s.push_str(&line(head));
    for row in &rows {
        s.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    s
}

/// Columns a terminal gives `s`: Chinese characters (and the other wide
/// scripts from U+2E80 on) take two, so the table's columns line up.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            if ('\u{2E80}'..='\u{FFEF}').contains(&c) {
                2
            } else {
                1
            }
        })
        .sum()
}

fn render(r: &Report, written: Option<&PathBuf>) -> String {
    let mut s = String::new();
    s.push_str(&format!("verdict: {}\n", r.verdict.as_str()));
    s.push_str(&format!(
        "profile: {}   type: {} (declared {})\n",
        r.profile,
        r.detected_type.as_deref().unwrap_or("unknown"),
        if r.declared_type.is_empty() {
            "none"
        } else {
            &r.declared_type
        }
    ));
    s.push_str(&format!(
        "read: {} bytes   expanded: {} bytes   members: {}\n",
        r.bytes_read, r.bytes_expanded, r.members
    ));
    if let Some(m) = &r.malware {
        let engine = match (&m.engine_version, &m.database_version) {
            (Some(e), Some(v)) => format!("{e}, database {v}"),
            (Some(e), None) => format!("{e}, custom signatures only"),
            _ => m.engine.clone(),
        };
        s.push_str(&format!(
            "malware: {} ({} streams, {} bytes scanned by {engine})\n",
            m.status.as_str(),
            m.streams,
            m.bytes
        ));
        for d in &m.detections {
            s.push_str(&format!(
                "  signature {} in {}\n",
                d.signature,
                d.member.as_deref().unwrap_or("the package")
            ));
        }
        if let Some(e) = &m.error {
            let then = if m.hold {
                "held for another try"
            } else {
                "refused"
            };
            s.push_str(&format!("  no verdict ({then}): {e}\n"));
        }
    }
    if let Some(y) = &r.yara {
        s.push_str(&format!(
            "yara: {} ({} streams, {} bytes scanned with {} rules)\n",
            y.status.as_str(),
            y.streams,
            y.bytes,
            y.rules
        ));
        for f in &y.files {
            s.push_str(&format!(
                "  rules {} ({} rules, sha256 {})\n",
                f.path, f.rules, f.sha256
            ));
        }
        for m in &y.matches {
            let tags = if m.tags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", m.tags.join(", "))
            };
            s.push_str(&format!(
                "  rule {}{tags} matched in {}\n",
                m.rule,
                m.member.as_deref().unwrap_or("the package")
            ));
        }
        if let Some(e) = &y.error {
            s.push_str(&format!("  no verdict (refused): {e}\n"));
        }
    }
    if let Some(d) = &r.digest_before {
        s.push_str(&format!("sha256 before: {d}\n"));
    }
    if let Some(d) = &r.digest_after {
        s.push_str(&format!("sha256 after:  {d}\n"));
    }
    if !r.reasons.is_empty() {
        s.push_str("reasons:\n");
        for x in &r.reasons {
            s.push_str(&format!("  - {x}\n"));
        }
    }
    if !r.findings.is_empty() {
        s.push_str(&format!(
            "findings ({} listed of {}):\n",
            r.findings.len(),
            r.findings_total
        ));
        for f in &r.findings {
            let l = &f.location;
            let mut at = Vec::new();
            if let Some(m) = &l.member {
                at.push(format!("member {m}"));
            }
            if let Some(x) = l.line {
                at.push(format!("line {x}"));
            }
            if let Some(x) = &l.field {
                at.push(format!("field {x}"));
            }
            if let Some(x) = l.byte_offset {
                at.push(format!("offset {x}"));
            }
            let extra = match (&f.pattern, &f.value_hash) {
                (Some(p), _) if f.kind == ferry_guard::FindingKind::Malware => {
                    format!("  signature {p}")
                }
                (Some(p), _) if f.kind == ferry_guard::FindingKind::Yara => {
                    format!("  rule {p}")
                }
                (Some(p), _) => format!("  list {p}"),
                (None, Some(h)) => format!("  hash {}", &h[..h.len().min(16)]),
                _ => String::new(),
            };
            s.push_str(&format!(
                "  {:<7} {:<14} {:<20} {}{}\n",
                f.action.as_str(),
                f.kind.as_str(),
                f.detector,
                at.join(", "),
                extra
            ));
        }
    }
    if let Some(w) = written {
        s.push_str(&format!("masked package written to {}\n", w.display()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, InspectArgs) {
        let dir = tempfile::tempdir().unwrap();
        let words = dir.path().join("words.txt");
        std::fs::write(&words, "秘密\n").unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                r#"
[channel.in]
direction = "import"
link = "import-1"
profile = "p"

[profile.p]
allowed_types = ["text/csv"]
dirty_words = {{ lists = ["{}"], action = "reject" }}
pii = {{ action = "mask", mask = {{ mobile = {{ keep_prefix = 3, keep_suffix = 4 }} }} }}
"#,
                words.display()
            ),
        )
        .unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, "name,phone\nzhang,13812345678\n").unwrap();
        let args = InspectArgs {
            policy,
            profile: "p".into(),
            input,
            json: false,
            content_type: None,
            out: Some(dir.path().join("masked.csv")),
            name: None,
            explain: false,
            channel: String::new(),
            pseudonym_keys: None,
        };
        (dir, args)
    }

    #[test]
    fn masks_rejects_and_refuses() {
        let (dir, mut args) = setup();
        let mut out = Vec::new();
        assert_eq!(run_to(&args, &mut out), Ok(0));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("verdict: masked\n"), "{text}");
        assert!(text.contains("mask    personal_data  mobile"), "{text}");
        assert!(!text.contains("13812345678"), "{text}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("masked.csv")).unwrap(),
            "name,phone\nzhang,138****5678\n"
        );

        std::fs::write(&args.input, "name,note\nzhang,秘 密\n").unwrap();
        args.json = true;
        let mut out = Vec::new();
        assert_eq!(run_to(&args, &mut out), Ok(1));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["verdict"], "reject");

        args.profile = "q".into();
        let e = run_to(&args, &mut Vec::new()).unwrap_err();
        assert!(e.contains("no [profile.q]; its profiles: p"), "{e}");
        args.policy = dir.path().join("missing.toml");
        assert!(run_to(&args, &mut Vec::new()).is_err());
    }

    /// Promise: `--explain` shows what was done to which column, how often
    /// and under which key epoch, and no value.
    #[test]
    fn explain_shows_the_deidentification_record() {
        let (dir, mut args) = setup();
        let policy = std::fs::read_to_string(&args.policy).unwrap().replace(
            "[profile.p]\n",
            "[profile.p]\ncolumns = [{ match = [\"name\"], action = \"pseudonymize\" }, { match = [\"phone\"], action = \"keep\" }]\n",
        );
        std::fs::write(&args.policy, policy).unwrap();
        args.explain = true;
        args.channel = "in".into();
        // Without a key: refused, and the reason says how to get one.
        let mut out = Vec::new();
        assert_eq!(run_to(&args, &mut out), Ok(1));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("no pseudonym key"), "{text}");
        let keys = dir.path().join("keys");
        ferry_keys::pseudonym::rotate(&keys).unwrap();
        args.pseudonym_keys = Some(keys);
        let mut out = Vec::new();
        assert_eq!(run_to(&args, &mut out), Ok(0));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("de-identification:"), "{text}");
        let row = |technique: &str, column: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(technique) && l.contains(column))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_else(|| panic!("no {technique} row for {column}: {text}"))
        };
        assert_eq!(
            row("pseudonymize", "column name"),
            ["pseudonymize", "column", "name", "1", "1"]
        );
        assert_eq!(
            row("mask", "detector mobile"),
            ["mask", "detector", "mobile", "keep", "3", "first,", "4", "last", "1"]
        );
        assert_eq!(
            row("keep", "column phone"),
            ["keep", "column", "phone", "1"]
        );
        assert!(
            !text.contains("zhang") && !text.contains("13812345678"),
            "{text}"
        );
        let masked = std::fs::read_to_string(dir.path().join("masked.csv")).unwrap();
        assert!(masked.starts_with("name,phone\np1-"), "{masked}");
        assert!(masked.ends_with(",138****5678\n"), "{masked}");
    }
}
