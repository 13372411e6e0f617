//! `ferryctl bench scan`: the content guard's throughput on a mixed corpus
//! (CSV, JSON, text, zip and tar.gz archives of them) under a profile with
//! `malware = { … }`, scanning with the clamd the profile names, against
//! the same profile without the scan. The corpus is generated, the same
//! bytes every time, so a figure can be reproduced; packages are inspected
//! one after another, as one ferryd inspection thread would.

use crate::DaemonError;
use ferry_guard::{Guard, Profile, Report, ScanStatus, Verdict};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Size of each generated file (archives: of their members, before
/// compression).
const FILE_BYTES: usize = 4 << 20;
/// Members per generated archive.
const ARCHIVE_MEMBERS: usize = 4;

/// Arguments of `ferryctl bench scan`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanArgs {
    /// The policy file (its includes are followed).
    #[arg(long)]
    pub policy: PathBuf,
    /// A content profile with `malware = { … }` that allows text/csv,
    /// application/json, text/plain and zip, tar and gzip archives.
    #[arg(long)]
    pub profile: String,
    /// Corpus size in bytes, on disk.
    #[arg(long, default_value_t = 256 << 20)]
    pub size: u64,
    /// Timed runs over the whole corpus; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Corpus directory, kept (default: a temporary directory, removed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Deterministic pseudo-random numbers (xorshift), for the corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const WORDS: &[&str] = &[
    "rainfall",
    "county",
    "survey",
    "river",
    "station",
    "monthly",
    "report",
    "average",
    "township",
    "reservoir",
    "level",
    "public",
    "dataset",
    "update",
    "season",
    "harvest",
];

fn csv(rng: &mut Rng, bytes: usize) -> Vec<u8> {
    let mut s = String::from("county,year,households,rain_mm,station\n");
    while s.len() < bytes {
        s.push_str(&format!(
            "{},{},{},{}.{},st-{}\n",
            WORDS[rng.below(WORDS.len() as u64) as usize],
            2000 + rng.below(26),
            rng.below(90_000),
            rng.below(900),
            rng.below(10),
            rng.below(500)
        ));
    }
    s.into_bytes()
}

fn json(rng: &mut Rng, bytes: usize) -> Vec<u8> {
    let mut s = String::from("{\"dataset\":\"rainfall\",\"rows\":[");
    let mut first = true;
    while s.len() < bytes {
        if !first {
            s.push(',');
        }
        first = false;
        s.push_str(&format!(
            "{{\"county\":\"{}\",\"year\":{},\"rain_mm\":{}.{}}}",
            WORDS[rng.below(WORDS.len() as u64) as usize],
            2000 + rng.below(26),
            rng.below(900),
            rng.below(10)
        ));
    }
    s.push_str("]}");
    s.into_bytes()
}

fn text(rng: &mut Rng, bytes: usize) -> Vec<u8> {
    let mut s = String::new();
    while s.len() < bytes {
        for _ in 0..12 {
            s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
            s.push(' ');
        }
        s.push_str("stayed near the seasonal mean.\n");
    }
    s.into_bytes()
}

/// A zip archive with stored members.
fn zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let mut h = crc32fast::Hasher::new();
        h.update(data);
        let crc = h.finalize();
        // Members are FILE_BYTES / ARCHIVE_MEMBERS: far below 4 GiB.
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let off = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let nlen = u16::try_from(name.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&nlen.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&len.to_le_bytes());
        central.extend_from_slice(&len.to_le_bytes());
        central.extend_from_slice(&nlen.to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&off.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_off = u32::try_from(out.len()).unwrap_or(u32::MAX);
    let cd_len = u32::try_from(central.len()).unwrap_or(u32::MAX);
    let n = u16::try_from(entries.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A gzip-compressed ustar archive of regular files.
fn tar_gz(entries: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let entries: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let tar = crate::testkit::ustar(&entries);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&tar)?;
    e.finish()
}

/// Writes the corpus into `dir` until it holds `size` bytes; returns the
/// files and their total size.
fn make_corpus(dir: &Path, size: u64) -> Result<(Vec<PathBuf>, u64), DaemonError> {
    std::fs::create_dir_all(dir).map_err(DaemonError::io(dir))?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut files = Vec::new();
    let mut total = 0u64;
    let part = FILE_BYTES / ARCHIVE_MEMBERS;
    let mut i = 0usize;
    while total < size {
        let (name, data) = match i % 5 {
            0 => (format!("{i:04}.csv"), csv(&mut rng, FILE_BYTES)),
            1 => (format!("{i:04}.json"), json(&mut rng, FILE_BYTES)),
            2 => (format!("{i:04}.txt"), text(&mut rng, FILE_BYTES)),
            3 => {
                let members = vec![
                    ("a.csv".to_owned(), csv(&mut rng, part)),
                    ("b.json".to_owned(), json(&mut rng, part)),
                    ("c.txt".to_owned(), text(&mut rng, part)),
                    ("d.csv".to_owned(), csv(&mut rng, part)),
                ];
                (format!("{i:04}.zip"), zip(&members))
            }
            _ => {
                let members = vec![
                    ("a.csv".to_owned(), csv(&mut rng, part)),
                    ("b.txt".to_owned(), text(&mut rng, part)),
                    ("c.json".to_owned(), json(&mut rng, part)),
                    ("d.txt".to_owned(), text(&mut rng, part)),
                ];
                let data = tar_gz(&members).map_err(DaemonError::io(dir))?;
                (format!("{i:04}.tar.gz"), data)
            }
        };
        let path = dir.join(&name);
        std::fs::write(&path, &data).map_err(DaemonError::io(&path))?;
        total += data.len() as u64;
        files.push(path);
        i += 1;
    }
    Ok((files, total))
}

/// What one pass over the corpus came to.
struct Pass {
    seconds: f64,
    /// Streams sent to the engine.
    streams: u64,
    /// Bytes sent to the engine.
    bytes: u64,
    /// The files that did not pass, with their reports.
    failed: Vec<(String, Report)>,
}

/// One timed pass over the corpus.
fn pass(guard: &Guard, files: &[PathBuf], scratch: &Path) -> Result<Pass, DaemonError> {
    let out = scratch.join("masked");
    let start = Instant::now();
    let (mut streams, mut bytes) = (0u64, 0u64);
    let mut failed = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let r = guard
            .inspect(f, &name, "", &out)
            .map_err(|e| DaemonError::Package {
                id: name.clone(),
                what: format!("content guard: {e}"),
            })?;
        if let Some(m) = &r.malware {
            streams += m.streams;
            bytes += m.bytes;
        }
        if r.verdict != Verdict::Pass {
            failed.push((name, r));
        }
    }
    Ok(Pass {
        seconds: start.elapsed().as_secs_f64(),
        streams,
        bytes,
        failed,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the bench and prints the figures.
pub fn scan(args: &ScanArgs) -> Result<(), DaemonError> {
    let (policy, _) =
        ferry_policy::load(&args.policy).map_err(|e| DaemonError::Policy(e.to_string()))?;
    let p = policy.profile(&args.profile).ok_or_else(|| {
        DaemonError::Policy(format!("the policy has no [profile.{}]", args.profile))
    })?;
    let with = crate::inspection::content::compile_profile(p)
        .map_err(|e| DaemonError::Policy(e.to_string()))?;
    let Some(rules) = with.malware().cloned() else {
        return Err(DaemonError::Policy(format!(
            "[profile.{}] has no malware = {{ … }}: nothing to measure",
            args.profile
        )));
    };
    let mut bare = p.settings.clone();
    if let Some(o) = bare.as_object_mut() {
        o.remove("malware");
    }
    let without = Profile::from_settings(&p.name, &bare, &ferry_guard::FsLists)
        .map_err(|e| DaemonError::Policy(e.to_string()))?;
    let version = rules
        .clamd()
        .version()
        .map_err(|e| DaemonError::Policy(e.to_string()))?;
    let tmp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().map_err(DaemonError::io(Path::new("temporary directory")))?;
            tmp.path().to_path_buf()
        }
    };
    let corpus = dir.join("corpus");
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).map_err(DaemonError::io(&scratch))?;
    let (files, total) = make_corpus(&corpus, args.size)?;
    let (g_with, g_without) = (Guard::new(with), Guard::new(without));
    // One untimed pass each warms the page cache and clamd.
    let Pass {
        streams,
        bytes: sent,
        failed,
        ..
    } = pass(&g_with, &files, &scratch)?;
    pass(&g_without, &files, &scratch)?;
    let runs = args.runs.max(1);
    let (mut t_with, mut t_without) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        t_with.push(pass(&g_with, &files, &scratch)?.seconds);
        t_without.push(pass(&g_without, &files, &scratch)?.seconds);
    }
    let mbps = |t: f64| total as f64 / t.max(1e-9) / 1e6;
    let (m_with, m_without) = (median(t_with.clone()), median(t_without.clone()));
    let not_clean: Vec<String> = failed
        .iter()
        .map(|(n, r)| {
            let why = match r.malware.as_ref().map(|m| m.status) {
                Some(ScanStatus::Clean) | None => r.reasons.join("; "),
                Some(s) => format!("malware {}", s.as_str()),
            };
            format!("{n}: {} ({why})", r.verdict.as_str())
        })
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "files": files.len(),
                "corpus_bytes": total,
                "engine": version.describe(),
                "socket": rules.clamd().socket().display().to_string(),
                "streams_per_pass": streams,
                "bytes_scanned_per_pass": sent,
                "runs": runs,
                "seconds_with_scan": t_with,
                "seconds_without_scan": t_without,
                "median_mb_per_s_with_scan": mbps(m_with),
                "median_mb_per_s_without_scan": mbps(m_without),
                "not_passed": not_clean,
            })
        );
    } else {
        println!(
            "corpus: {} files, {total} bytes (CSV, JSON, text, zip, tar.gz)",
            files.len()
        );
        println!(
            "engine: {} at {}",
            version.describe(),
            rules.clamd().socket().display()
        );
        println!(
            "per pass: {streams} streams, {sent} bytes sent to clamd (files and every member)"
        );
        println!(
            "with malware scan:    median {:.1} MB/s over {runs} runs ({})",
            mbps(m_with),
            t_with
                .iter()
                .map(|t| format!("{t:.2} s"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "without (same profile): median {:.1} MB/s over {runs} runs ({})",
            mbps(m_without),
            t_without
                .iter()
                .map(|t| format!("{t:.2} s"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for n in &not_clean {
            println!("NOT PASSED: {n}");
        }
    }
    Ok(())
}
