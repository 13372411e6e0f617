//! `ferryctl push`: the client of the HTTPS ingest API, for intranet systems
//! and administrators. Files are streamed from disk (never held whole in
//! memory) over one mTLS connection kept alive from file to file, and each
//! carries its digest so the server proves it stored exactly what was read
//! here.
//!
//! The digest travels in the `X-Ferry-Digest` header, and HTTP/1 headers go
//! before the body, so each file is read twice: once to digest it, once to
//! send it. A file that changes between the two reads is refused by the
//! server (digest mismatch) instead of being delivered half old, half new;
//! the cost is a second read, usually from the page cache.
//!
//! [`IngestClient`] is also what `ferryctl bench e2e` pushes with, so the
//! benchmark measures the client an operator uses.

use crate::http::client::{
    check_channel, guess_content_type, Answer, Endpoint, IngestClient, Payload, PushError, Upload,
    CHUNK_BYTES, DEFAULT_RETRY_AFTER_S, MAX_RETRY_AFTER_S,
};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit code: every file was accepted (and, with `--wait`, sent).
pub const EXIT_OK: u8 = 0;
/// Exit code: at least one file was refused (400/403/404/413), could not be
/// read, or was rejected after acceptance. Pushing it again will not help.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: bad command line or unusable certificate/key/CA files;
/// nothing was pushed.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the server could not be reached or the TLS handshake failed
/// (untrusted server certificate, client certificate refused).
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code (`EX_TEMPFAIL`): every failure was temporary (408, 429, 503,
/// a stalled request, or `--wait` ran out of time); push the failed files
/// again later.
pub const EXIT_TEMPORARY: u8 = 75;

/// Smaller files finish before a progress bar would be readable.
const PROGRESS_MIN_BYTES: u64 = 4 << 20;
/// How often the progress bar is redrawn.
const PROGRESS_REDRAW: Duration = Duration::from_millis(200);
/// First and longest interval between state polls with `--wait`.
const WAIT_POLL_FIRST: Duration = Duration::from_millis(200);
const WAIT_POLL_MAX: Duration = Duration::from_secs(2);

/// Arguments of `ferryctl push`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Exit codes: 0 every file accepted (with --wait: sent); 1 a file was refused \
(400/403/404/413), unreadable, or rejected; 2 bad arguments or certificate \
files; 3 server unreachable or TLS failed; 75 only temporary failures \
(408/429/503, a stalled request, --wait timed out): push again later.")]
pub struct PushArgs {
    /// The ingress side's ingest API: `https://HOST:PORT` (its `[ingest]
    /// listen` address, with a name or address its certificate carries).
    #[arg(long)]
    pub url: String,
    /// Channel to push on, as the policy names it.
    #[arg(long)]
    pub channel: String,
    /// Client certificate (PEM) issued by the site CA (`ferryctl certs
    /// issue-client`).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM, mode 0600).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// CA certificate(s) (PEM) that issued the ingest server's certificate.
    #[arg(long)]
    pub cacert: PathBuf,
    /// Content type to declare (default: guessed from the extension,
    /// else application/octet-stream).
    #[arg(long)]
    pub content_type: Option<String>,
    /// File name to send instead of the file's base name (one FILE only).
    #[arg(long)]
    pub name: Option<String>,
    /// Print one JSON object per file (with the server's answer) on stdout.
    #[arg(long)]
    pub json: bool,
    /// After acceptance, poll each package's state until it is sent or
    /// rejected (or --wait-timeout passes).
    #[arg(long)]
    pub wait: bool,
    /// Seconds --wait waits in all.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub wait_timeout: u64,
    /// On 429 or 503, wait as `Retry-After` says and push again, up to N
    /// times per file.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retry: u32,
    /// Give up on a request after this many seconds without progress.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub timeout: u64,
    /// Digest sent in X-Ferry-Digest: the link suite's (sha256 on an intl
    /// link, sm3 on a GM link), or none.
    #[arg(long, value_enum, default_value_t = DigestChoice::Sha256)]
    pub digest: DigestChoice,
    /// Progress bar on stderr for files of 4 MiB and more: when stderr is a
    /// terminal (auto), always, or never.
    #[arg(long, value_enum, default_value_t = ProgressChoice::Auto)]
    pub progress: ProgressChoice,
    /// Files to push, one package each.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// The digest algorithm of `X-Ferry-Digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DigestChoice {
    /// SHA-256 (intl suite).
    Sha256,
    /// SM3 (GM suite).
    Sm3,
    /// Send no digest.
    None,
}

/// When to draw a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressChoice {
    /// When stderr is a terminal.
    Auto,
    /// Always (also into a file or pipe).
    Always,
    /// Never.
    Never,
}

/// The size of `path` and `ALGO=HEX` of its content, read to its end;
/// `counter` follows the bytes read. A file whose size changes meanwhile
/// is refused: it is still being written.
fn digest_file(
    path: &Path,
    choice: DigestChoice,
    counter: &AtomicU64,
) -> Result<(u64, Option<String>), PushError> {
    let io = |source| PushError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let before = f.metadata().map_err(io)?.len();
    let (algo, mut d): (&str, Box<dyn ferry_protocol::suite::PayloadDigest>) = match choice {
        DigestChoice::None => return Ok((before, None)),
        DigestChoice::Sha256 => (
            "sha256",
            ferry_protocol::suite::LinkCrypto::new_digest(&ferry_suites::intl::IntlLink),
        ),
        DigestChoice::Sm3 => (
            "sm3",
            ferry_protocol::suite::LinkCrypto::new_digest(&ferry_suites::gm::GmLink),
        ),
    };
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        d.update(&buf[..n]);
        size += n as u64;
        counter.store(size, Ordering::Relaxed);
    }
    if size != before {
        return Err(PushError::FileChanged {
            path: path.to_path_buf(),
            before,
            after: size,
        });
    }
    Ok((size, Some(format!("{algo}={}", hex::encode(d.finish())))))
}

/// A one-line progress bar on stderr, redrawn from a counter.
struct ProgressBar {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressBar {
    fn start(
        on: bool,
        label: &'static str,
        name: &str,
        total: u64,
        done: Arc<AtomicU64>,
    ) -> ProgressBar {
        if !on {
            return ProgressBar { task: None };
        }
        let name: String = name.chars().take(32).collect();
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let mut tick = tokio::time::interval(PROGRESS_REDRAW);
            loop {
                tick.tick().await;
                let d = done.load(Ordering::Relaxed).min(total);
                let frac = if total == 0 {
                    1.0
                } else {
                    d as f64 / total as f64
                };
                let width = 30usize;
                let filled = ((frac * width as f64) as usize).min(width);
                let rate = d as f64 / t0.elapsed().as_secs_f64().max(0.001);
                let line = format!(
                    "\r{label} {name} [{}{}] {:>3}% {} / {} {}/s   ",
                    "#".repeat(filled),
                    " ".repeat(width - filled),
                    (frac * 100.0) as u32,
                    human_bytes(d as f64),
                    human_bytes(total as f64),
                    human_bytes(rate),
                );
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(line.as_bytes());
                let _ = err.flush();
            }
        });
        ProgressBar { task: Some(task) }
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{:width$}\r", "", width = 100);
            let _ = err.flush();
        }
    }
}

fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One policy reason from a 403/429 answer, in words (the server sends
/// them as tagged JSON objects).
pub fn describe_reason(r: &serde_json::Value) -> String {
    let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
    match r.get("kind").and_then(|k| k.as_str()) {
        Some("forbidden-by-rule") => {
            format!("forbidden by rule `{}` ({})", s("rule_id"), s("defined_at"))
        }
        Some("no-rule-allows") => format!(
            "no rule allows {} to push on channel `{}`",
            s("identity"),
            s("channel")
        ),
        Some("unknown-identity") => {
            format!("{} matches no [identity.NAME] in the policy", s("identity"))
        }
        Some("rule-did-not-apply") => {
            format!("rule `{}` does not apply: {}", s("rule_id"), s("why"))
        }
        Some("invalid-file-name") => format!("invalid file name: {}", s("why")),
        Some("unknown-channel") => format!("unknown channel `{}`", s("channel")),
        Some("window-closed") => format!(
            "outside the channel's time window(s); next opening {}",
            r.get("opens_at")
                .and_then(|v| v.as_str())
                .unwrap_or("not known")
        ),
        Some("quota-exceeded") => {
            let n = |k: &str| r.get(k).map(|v| v.to_string()).unwrap_or_default();
            let mut t = format!(
                "quota exceeded: {} {}_per_{} = {}, used {}",
                r.get("scope").map(|v| v.to_string()).unwrap_or_default(),
                s("measure"),
                s("period"),
                n("limit"),
                n("used"),
            );
            match r.get("retry_after_s").and_then(|v| v.as_u64()) {
                Some(secs) => t.push_str(&format!("; retry after {secs} s")),
                None => t.push_str("; this package alone exceeds the limit"),
            }
            t
        }
        Some(other) => format!("{other}: {r}"),
        None => r.as_str().map_or_else(|| r.to_string(), str::to_owned),
    }
}

/// How a file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Accepted,
    Temporary,
    Unreachable,
    Refused,
}

struct FileReport {
    file: PathBuf,
    name: Option<String>,
    size: Option<u64>,
    content_type: Option<String>,
    digest: Option<String>,
    answer: Option<Answer>,
    error: Option<String>,
    attempts: u32,
    outcome: Outcome,
    state: Option<serde_json::Value>,
}

impl FileReport {
    fn new(file: &Path) -> FileReport {
        FileReport {
            file: file.to_path_buf(),
            name: None,
            size: None,
            content_type: None,
            digest: None,
            answer: None,
            error: None,
            attempts: 0,
            outcome: Outcome::Refused,
            state: None,
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.file.display().to_string(),
            "name": self.name,
            "size": self.size,
            "content_type": self.content_type,
            "digest": self.digest,
            "accepted": self.answer.as_ref().is_some_and(|a| a.status == 202),
            "status": self.answer.as_ref().map(|a| a.status),
            "answer": self.answer.as_ref().map(|a| &a.body),
            "retry_after_s": self.answer.as_ref().and_then(|a| a.retry_after_s),
            "attempts": self.attempts,
            "error": self.error,
            "state": self.state,
        })
    }
}

/// Runs `ferryctl push`; prints its own messages and returns the exit code.
pub fn run(args: &PushArgs) -> u8 {
    let setup = || -> Result<(IngestClient, tokio::runtime::Runtime), PushError> {
        if args.name.is_some() && args.files.len() != 1 {
            return Err(PushError::Usage(
                "--name renames one file: give exactly one FILE with it".into(),
            ));
        }
        if let Some(t) = &args.content_type {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                return Err(PushError::Usage(format!(
                    "--content-type `{t}`: use an ASCII media type such as text/csv"
                )));
            }
        }
        check_channel(&args.channel)?;
        let endpoint = Endpoint::parse(&args.url)?;
        let cert_key = match (&args.cert, &args.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        let client = IngestClient::new(endpoint, &args.cacert, cert_key)?
            .idle_timeout(Duration::from_secs(args.timeout.max(1)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PushError::Runtime)?;
        Ok((client, rt))
    };
    let (mut client, rt) = match setup() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ferryctl push: {e}");
            return EXIT_USAGE;
        }
    };
    let show_progress = match args.progress {
        ProgressChoice::Always => true,
        ProgressChoice::Never => false,
        ProgressChoice::Auto => std::io::stderr().is_terminal(),
    };
    rt.block_on(async {
        let mut reports: Vec<FileReport> = Vec::new();
        let mut stop: Option<String> = None;
        for file in &args.files {
            let mut r = FileReport::new(file);
            match &stop {
                Some(why) => {
                    r.error = Some(format!("not attempted: {why}"));
                    r.outcome = Outcome::Unreachable;
                }
                None => {
                    push_one(args, &mut client, file, &mut r, show_progress).await;
                    if r.outcome == Outcome::Unreachable {
                        stop = r.error.clone();
                    }
                }
            }
            if !args.wait {
                print_report(args, &r);
            }
            reports.push(r);
        }
        if args.wait {
            wait_for_states(args, &mut client, &mut reports).await;
            for r in &reports {
                print_report(args, r);
            }
        }
        let worst = reports
            .iter()
            .map(|r| r.outcome)
            .max()
            .unwrap_or(Outcome::Accepted);
        match worst {
            Outcome::Accepted => EXIT_OK,
            Outcome::Temporary => EXIT_TEMPORARY,
            Outcome::Unreachable => EXIT_UNREACHABLE,
            Outcome::Refused => EXIT_REFUSED,
        }
    })
}

async fn push_one(
    args: &PushArgs,
    client: &mut IngestClient,
    file: &Path,
    r: &mut FileReport,
    show_progress: bool,
) {
    let name = match &args.name {
        Some(n) => n.clone(),
        None => match file.file_name().and_then(|n| n.to_str()) {
            Some(n) => n.to_owned(),
            None => {
                r.error = Some(format!(
                    "{}: the file name is not UTF-8; give --name",
                    file.display()
                ));
                return;
            }
        },
    };
    let content_type = args
        .content_type
        .clone()
        .unwrap_or_else(|| guess_content_type(&name).to_owned());
    r.name = Some(name.clone());
    r.content_type = Some(content_type.clone());

    let meta = match std::fs::metadata(file) {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            r.error = Some(format!("{}: not a regular file", file.display()));
            return;
        }
        Err(e) => {
            r.error = Some(format!("{}: {e}", file.display()));
            return;
        }
    };
    let big = show_progress && meta.len() >= PROGRESS_MIN_BYTES;
    let counter = Arc::new(AtomicU64::new(0));
    let digested = {
        let _bar = ProgressBar::start(big, "digesting", &name, meta.len(), counter.clone());
        let (path, choice, counter) = (file.to_path_buf(), args.digest, counter.clone());
        tokio::task::spawn_blocking(move || digest_file(&path, choice, &counter)).await
    };
    let (len, digest) = match digested {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            r.error = Some(e.to_string());
            return;
        }
        Err(e) => {
            r.error = Some(format!("{}: digesting failed: {e}", file.display()));
            return;
        }
    };
    r.size = Some(len);
    r.digest = digest.clone();
    let upload = Upload {
        file_name: name.clone(),
        content_type,
        digest,
        payload: Payload::File {
            path: file.to_path_buf(),
            len,
        },
    };
    loop {
        r.attempts += 1;
        let result = {
            let _bar = ProgressBar::start(big, "sending", &name, len, counter.clone());
            client
                .push(&args.channel, &upload, Some(counter.clone()))
                .await
        };
        match result {
            Err(e) => {
                r.outcome = if e.is_unreachable() {
                    Outcome::Unreachable
                } else if matches!(e, PushError::Timeout { .. } | PushError::Interrupted { .. }) {
                    Outcome::Temporary
                } else {
                    Outcome::Refused
                };
                r.error = Some(e.to_string());
                return;
            }
            Ok(a) => {
                let status = a.status;
                let retry_after = a.retry_after_s;
                r.answer = Some(a);
                r.outcome = match status {
                    202 => Outcome::Accepted,
                    408 | 429 | 503 => Outcome::Temporary,
                    _ => Outcome::Refused,
                };
                if r.outcome != Outcome::Temporary || r.attempts > args.retry {
                    return;
                }
                let secs = retry_after.unwrap_or(DEFAULT_RETRY_AFTER_S).max(1);
                if secs > MAX_RETRY_AFTER_S {
                    return;
                }
                if !args.json {
                    eprintln!(
                        "ferryctl push: {name}: {} ({status}); retrying in {secs} s (retry {} of {})",
                        short_status(status),
                        r.attempts,
                        args.retry
                    );
                }
                tokio::time::sleep(Duration::from_secs(secs)).await;
            }
        }
    }
}

/// Polls the state of every accepted package until each is sent or
/// rejected, or `--wait-timeout` passes.
async fn wait_for_states(args: &PushArgs, client: &mut IngestClient, reports: &mut [FileReport]) {
    let deadline = Instant::now() + Duration::from_secs(args.wait_timeout);
    let mut interval = WAIT_POLL_FIRST;
    loop {
        let mut pending = 0;
        for r in reports.iter_mut() {
            if r.outcome != Outcome::Accepted || is_final(r.state.as_ref()) {
                continue;
            }
            let Some(id) = r
                .answer
                .as_ref()
                .and_then(|a| a.package_id())
                .map(str::to_owned)
            else {
                continue;
            };
            match client.state(&id).await {
                Ok(a) if a.status == 200 => r.state = Some(a.body),
                // Accepted, then gone: an approval was refused or ran
                // out (the ingress side deletes such packages).
                Ok(a) if a.status == 404 => {
                    r.state = Some(serde_json::json!({ "state": "rejected", "answer": a.body }));
                }
                Ok(a) => {
                    r.state = Some(serde_json::json!({ "status": a.status, "answer": a.body }));
                }
                Err(e) => r.state = Some(serde_json::json!({ "error": e.to_string() })),
            }
            match r
                .state
                .as_ref()
                .and_then(|s| s.get("state"))
                .and_then(|s| s.as_str())
            {
                Some("sent") => {}
                Some("rejected") => {
                    r.outcome = Outcome::Refused;
                    r.error = Some(
                        "rejected after acceptance: the ingress side no longer holds it (an approval was refused or expired, or it is past retention); see the audit log"
                            .into(),
                    );
                }
                _ => pending += 1,
            }
        }
        if pending == 0 {
            return;
        }
        if Instant::now() >= deadline {
            for r in reports.iter_mut() {
                if r.outcome == Outcome::Accepted && !is_final(r.state.as_ref()) {
                    let last = r
                        .state
                        .as_ref()
                        .and_then(|s| s.get("state"))
                        .and_then(|s| s.as_str())
                        .unwrap_or("unknown");
                    r.outcome = Outcome::Temporary;
                    r.error = Some(format!(
                        "accepted, but still `{last}` after --wait-timeout {} s; ask again with GET /v1/packages/ID",
                        args.wait_timeout
                    ));
                }
            }
            return;
        }
        tokio::time::sleep(interval.min(deadline.saturating_duration_since(Instant::now()))).await;
        interval = (interval * 2).min(WAIT_POLL_MAX);
    }
}

fn is_final(state: Option<&serde_json::Value>) -> bool {
    matches!(
        state.and_then(|s| s.get("state")).and_then(|s| s.as_str()),
        Some("sent") | Some("rejected")
    )
}

fn short_status(status: u16) -> &'static str {
    match status {
        202 => "accepted",
        400 => "bad request",
        403 => "refused by policy",
        404 => "not found",
        408 => "request timed out at the server",
        413 => "too large",
        429 => "rate or quota reached",
        503 => "service unavailable",
        _ => "unexpected answer",
    }
}

fn print_report(args: &PushArgs, r: &FileReport) {
    if args.json {
        println!("{}", r.json());
        return;
    }
    let label = r
        .name
        .clone()
        .unwrap_or_else(|| r.file.display().to_string());
    let Some(a) = &r.answer else {
        eprintln!(
            "ferryctl push: {label}: {}",
            r.error.as_deref().unwrap_or("failed")
        );
        return;
    };
    let message = a
        .body
        .get("error")
        .and_then(|e| e.as_str())
        .map(str::to_owned)
        .or_else(|| {
            a.body
                .get("raw")
                .and_then(|e| e.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    if a.status == 202 {
        let id = a.package_id().unwrap_or("?");
        let size = r.size.map(|s| format!(", {s} bytes")).unwrap_or_default();
        let held = match a.body.get("state").and_then(|s| s.as_str()) {
            Some("awaiting_approval") => ", held for the channel's approvals".to_owned(),
            Some("awaiting_window") => format!(
                ", held until the channel's time window opens ({})",
                a.body
                    .get("hold_until")
                    .and_then(|t| t.as_str())
                    .unwrap_or("time unknown")
            ),
            _ => String::new(),
        };
        println!("{label}: accepted (202) as package {id}{size}{held}");
        if let Some(state) = &r.state {
            match state.get("state").and_then(|s| s.as_str()) {
                Some("sent") => println!(
                    "{label}: sent ({} time{})",
                    state
                        .get("sent_times")
                        .and_then(|t| t.as_u64())
                        .unwrap_or(1),
                    if state.get("sent_times").and_then(|t| t.as_u64()) == Some(1) {
                        ""
                    } else {
                        "s"
                    }
                ),
                Some(s) => match &r.error {
                    Some(e) => eprintln!("ferryctl push: {label}: {e}"),
                    None => eprintln!("ferryctl push: {label}: {s}"),
                },
                None => eprintln!(
                    "ferryctl push: {label}: state unknown ({state}){}",
                    r.error
                        .as_deref()
                        .map(|e| format!("; {e}"))
                        .unwrap_or_default()
                ),
            }
        }
        return;
    }
    let mut text = format!(
        "ferryctl push: {label}: {} ({}): {message}",
        short_status(a.status),
        a.status
    );
    if let Some(reasons) = a.body.get("reasons").and_then(|r| r.as_array()) {
        for reason in reasons {
            text.push_str("\n  - ");
            text.push_str(&describe_reason(reason));
        }
    }
    if let Some(rule) = a.body.get("rule_id").and_then(|r| r.as_str()) {
        text.push_str(&format!("\n  (deciding rule: {rule})"));
    }
    match a.status {
        429 | 503 => match a.retry_after_s {
            Some(s) => text.push_str(&format!(
                "\n  the server says: retry after {s} s{}",
                if args.retry == 0 {
                    " (--retry N does so)"
                } else {
                    ""
                }
            )),
            None => text.push_str("\n  push again later"),
        },
        413 => text.push_str(
            "\n  the package is over the server's or the policy's size limit; split it or ask the security administrator",
        ),
        400 if message.contains("digest mismatch") => text.push_str(
            "\n  the bytes the server received differ from those digested here: did the file change while it was sent?",
        ),
        400 if message.contains("digests with") => {
            text.push_str("\n  choose the link's digest with --digest sha256|sm3")
        }
        _ => {}
    }
    eprintln!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_like_the_policy_tool() {
        let r = serde_json::json!({"kind": "forbidden-by-rule", "rule_id": "R-no-exe", "defined_at": "policy.toml:12"});
        assert_eq!(
            describe_reason(&r),
            "forbidden by rule `R-no-exe` (policy.toml:12)"
        );
        let r = serde_json::json!({"kind": "something-new", "x": 1});
        assert!(describe_reason(&r).starts_with("something-new"));
    }

    #[test]
    fn a_file_is_digested_to_its_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.bin");
        std::fs::write(&p, b"abc").expect("write");
        let c = AtomicU64::new(0);
        let (n, d) = digest_file(&p, DigestChoice::Sha256, &c).expect("digest");
        assert_eq!(n, 3);
        assert_eq!(
            d.as_deref(),
            Some("sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            digest_file(&p, DigestChoice::None, &c).expect("len").1,
            None
        );
    }
}
