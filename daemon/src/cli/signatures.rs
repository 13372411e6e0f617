//! `ferryctl signatures apply`: ClamAV signatures brought in over the
//! link (`[signatures]` in the egress configuration).
//!
//! A classified network has no route to ClamAV's mirrors: its signatures
//! come the way everything else does, as ferry packages. Packages of the
//! configured channel are delivered into the outbox like any other (the
//! manifest's signature, the policy and the delivery ledger already vouch
//! for where they come from and that they arrive once). This command,
//! run on the egress host beside clamd (by a systemd path unit or timer,
//! or `--watch`), takes each one out of the outbox, checks it, puts it
//! into clamd's database directory and has clamd reload. It runs outside
//! `ferryd` because the checks run ClamAV's own tools, and `ferryd` runs
//! no program (its seccomp filter has no `execve`).
//!
//! 1. the name: a plain file name with a ClamAV database extension;
//! 2. a `.cvd`/`.cld`/`.cud` container: its 512-byte header read (version,
//!    build time), the body's MD5 against the header (`.cvd`, `.cud`), the
//!    digital signature checked by `sigtool --info` (`.cvd`; a `.cud` is
//!    unsigned and taken only with `allow_unsigned`), and a version newer
//!    than the one in place (a replayed old package cannot roll the
//!    database back);
//! 3. a test load: `clamscan` loads the file on its own and scans a small
//!    file with it, so a database clamd would fail on never reaches its
//!    directory;
//! 4. in place atomically: a temporary file in the database directory,
//!    fsync'd, renamed over the old one, the directory fsync'd.
//!
//! What became of each file is sent to the egress `ferryd` first
//! (`signatures.applied` or `signatures.refused` in its audit log, its
//! counters, and an alarm for a refusal); a file is used only once its
//! record is written, so nothing is applied unaudited. The file and its
//! sidecar then move to `OUTBOX/.signatures/applied/` or `refused/`; after
//! a round that applied something, clamd gets one `RELOAD`.
//!
//! The state is the outbox itself: a file still there (with a sidecar
//! naming the channel) has not been dealt with, so a run that stops at any
//! step is finished by the next one.

use crate::admin::protocol::{self, Request, SharedStatus};
use crate::config::{self, SignaturesSection};
use crate::ops::audit_trail::{Actor, AuditRecord, AuditTrail, EventKind, Outcome};
use crate::state::outbox::SIDECAR_SUFFIX;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The database file extensions ClamAV loads from its directory and this
/// channel accepts.
pub const EXTENSIONS: &[&str] = &[
    "cvd", "cld", "cud", "hdb", "hsb", "hdu", "hsu", "mdb", "msb", "mdu", "msu", "ndb", "ndu",
    "ldb", "ldu", "cdb", "cbc", "idb", "fp", "sfp", "ign", "ign2", "pdb", "gdb", "wdb", "ftm",
    "crb", "info",
];

/// Largest signature file taken (the official `main.cvd` is ~ 170 MB).
const MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// How often `--watch` looks at the outbox.
const POLL: Duration = Duration::from_secs(2);
/// The prefix of the daemon's alarms about signatures.
pub(crate) const ALARM: &str = "signatures:";

/// `ferryctl signatures …`.
#[derive(clap::Subcommand)]
pub enum SignaturesCmd {
    /// Verify the ClamAV signature packages waiting in the egress outbox
    /// ([signatures] channel), put the good ones into clamd's database
    /// directory and have clamd reload; refuse the others (audited and
    /// alarmed through ferryd). Exit 0: nothing refused; 1: something was
    /// refused; 2: could not run.
    Apply {
        /// The egress daemon's configuration file (with [signatures]).
        #[arg(long, short)]
        config: PathBuf,
        /// Keep looking every 2 seconds instead of one pass.
        #[arg(long)]
        watch: bool,
    },
}

/// Runs `ferryctl signatures`; exit 2 when it could not run.
pub fn run(cmd: SignaturesCmd) -> anyhow::Result<std::process::ExitCode> {
    match apply(cmd) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("ferryctl: {e:#}");
            Ok(std::process::ExitCode::from(2))
        }
    }
}

fn apply(cmd: SignaturesCmd) -> anyhow::Result<std::process::ExitCode> {
    let SignaturesCmd::Apply { config, watch } = cmd;
    let cfg = config::load(&config)?;
    let Some(sig) = cfg.signatures.clone() else {
        anyhow::bail!(
            "{} has no [signatures] section: add one naming the channel, clamd's database_dir and socket (docs/operations.md, \"Bringing ClamAV signatures in\")",
            config.display()
        );
    };
    let outbox_dir = cfg
        .paths
        .outbox_dir
        .clone()
        .ok_or_else(|| anyhow::anyhow!("{} has no paths.outbox_dir", config.display()))?;
    let work = outbox_dir.join(".signatures");
    for d in ["applied", "refused", "probe"] {
        let p = work.join(d);
        std::fs::create_dir_all(&p)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?;
    }
    let applier = Applier {
        cfg: sig,
        outbox_dir,
        work,
        socket: cfg.control_socket(),
    };
    loop {
        let round = applier.round()?;
        for line in &round.lines {
            println!("{line}");
        }
        if !watch {
            return Ok(if round.refused > 0 {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            });
        }
        std::thread::sleep(POLL);
    }
}

struct Applier {
    cfg: SignaturesSection,
    outbox_dir: PathBuf,
    /// `OUTBOX/.signatures`.
    work: PathBuf,
    /// The egress ferryd's control socket.
    socket: PathBuf,
}

/// What a checked file is.
#[derive(Debug)]
pub(crate) struct Checked {
    /// The container's version (`.cvd`, `.cld`, `.cud`).
    pub(crate) version: Option<u64>,
    /// Its build time (seconds since the epoch), from the header.
    pub(crate) built_unix_s: Option<u64>,
    pub(crate) sha256: String,
}

/// One pass over the outbox.
#[derive(Default)]
struct Round {
    lines: Vec<String>,
    refused: usize,
}

impl Applier {
    /// Deals with every signature package waiting in the outbox, then has
    /// clamd reload if anything was applied.
    fn round(&self) -> anyhow::Result<Round> {
        let dir = std::fs::read_dir(&self.outbox_dir)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", self.outbox_dir.display()))?;
        // Each delivered file with its sidecar, of this channel only.
        let mut waiting: Vec<(u64, String, serde_json::Value)> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter_map(|name| {
                let file = name.strip_suffix(SIDECAR_SUFFIX)?.to_owned();
                let sidecar = self.sidecar(&name)?;
                if sidecar["channel"].as_str() != Some(self.cfg.channel.as_str()) {
                    return None;
                }
                let seq = sidecar["seq"].as_u64().unwrap_or(u64::MAX);
                Some((seq, file, sidecar))
            })
            .collect();
        // In the order they were sent, not by name: two databases of one
        // name wait as `daily.cud` and `daily.1.cud`, and the older must
        // go first or the newer would be refused as a rollback.
        waiting.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut round = Round::default();
        let mut applied = 0;
        for (_, file, sidecar) in waiting {
            match self.one(&file, &sidecar)? {
                Ok(line) => {
                    applied += 1;
                    round.lines.push(line);
                }
                Err(line) => {
                    round.refused += 1;
                    round.lines.push(line);
                }
            }
        }
        if applied > 0 {
            let clamd = ferry_guard::Clamd::new(&self.cfg.socket, Duration::from_secs(30), 1 << 20);
            clamd.reload().map_err(|e| {
                anyhow::anyhow!(
                    "the new signatures are in {} but clamd at {} did not take the reload: {e}; restart clamd",
                    self.cfg.database_dir.display(),
                    self.cfg.socket.display()
                )
            })?;
            round.lines.push(format!(
                "clamd at {} reloads its database",
                self.cfg.socket.display()
            ));
        }
        Ok(round)
    }

    fn sidecar(&self, name: &str) -> Option<serde_json::Value> {
        let text = std::fs::read(self.outbox_dir.join(name)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// One delivered file: checked, recorded by ferryd, then applied or
    /// moved aside. `Ok(line)` when applied, `Err(line)` when refused; an
    /// error when ferryd could not record it (nothing was done then).
    ///
    /// `file` is the name it was delivered under in the outbox; it is
    /// installed under the name it was sent with (the sidecar's
    /// `file_name`), which differs when an earlier file of the same name
    /// was still waiting (`daily.1.cud` for the second `daily.cud`).
    fn one(
        &self,
        file: &str,
        sidecar: &serde_json::Value,
    ) -> anyhow::Result<Result<String, String>> {
        let id = sidecar["package_id"].as_str().unwrap_or("").to_owned();
        let path = self.outbox_dir.join(file);
        let name = sidecar["file_name"].as_str().unwrap_or(file).to_owned();
        let outcome = check(&self.cfg, &name, &path, &self.work.join("probe"));
        let record = |outcome: &Result<Checked, String>| {
            let (kind, result) = match outcome {
                Ok(_) => (EventKind::SignaturesApplied, Outcome::Success),
                Err(_) => (EventKind::SignaturesRefused, Outcome::Failure),
            };
            let mut r = AuditRecord::new(kind, Actor::system(), result)
                .package(id.clone())
                .channel(self.cfg.channel.clone())
                .detail("file", name.clone())
                .detail("database_dir", self.cfg.database_dir.display().to_string());
            if name != file {
                r = r.detail("delivered_as", file.to_owned());
            }
            match outcome {
                Ok(c) => {
                    r = r.detail("sha256", c.sha256.clone());
                    if let Some(v) = c.version {
                        r = r.detail("version", v.to_string());
                    }
                    if let Some(t) = c.built_unix_s {
                        r = r.detail("built_unix_s", t.to_string());
                    }
                }
                Err(why) => r = r.detail("reason", why.clone()),
            }
            r
        };
        // Installed only once ferryd has the record: nothing unaudited.
        let outcome = match outcome {
            Ok(c) => {
                self.tell(record(&Ok(Checked {
                    version: c.version,
                    built_unix_s: c.built_unix_s,
                    sha256: c.sha256.clone(),
                })))?;
                match install(&self.cfg.database_dir, &name, &path) {
                    Ok(()) => Ok(c),
                    Err(why) => {
                        let failed = Err(why);
                        self.tell(record(&failed))?;
                        failed
                    }
                }
            }
            Err(why) => {
                let refused = Err(why);
                self.tell(record(&refused))?;
                refused
            }
        };
        let place = if outcome.is_ok() {
            "applied"
        } else {
            "refused"
        };
        let dest = self.work.join(place);
        for (from, to) in [
            (file.to_owned(), format!("{id}-{file}")),
            (
                format!("{file}.ferry.json"),
                format!("{id}-{file}.ferry.json"),
            ),
        ] {
            let (from, to) = (self.outbox_dir.join(&from), dest.join(&to));
            if let Err(e) = std::fs::rename(&from, &to) {
                anyhow::bail!("could not move {} to {}: {e}", from.display(), to.display());
            }
        }
        Ok(match outcome {
            Ok(c) => Ok(format!(
                "applied  {name} (package {id}{}, sha256 {})",
                c.version
                    .map(|v| format!(", version {v}"))
                    .unwrap_or_default(),
                c.sha256
            )),
            Err(why) => Err(format!("REFUSED  {name} (package {id}): {why}")),
        })
    }

    /// Sends a record to the egress ferryd; an error when it is not
    /// written.
    fn tell(&self, record: AuditRecord) -> anyhow::Result<()> {
        let v = crate::admin::socket::request(&self.socket, &Request::SignaturesNote { record })
            .map_err(|e| {
                anyhow::anyhow!(
                    "the egress ferryd did not take the record ({e}); nothing was applied: start it and run this again"
                )
            })?;
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            anyhow::bail!("the egress ferryd refused the record: {e}; nothing was applied");
        }
        Ok(())
    }
}

/// `ferryd`'s side of `SignaturesNote`: the record goes into the audit
/// log; the counters and the alarm follow it.
pub fn note(
    audit: &AuditTrail,
    status: &SharedStatus,
    actor: ferry_audit::Actor,
    mut record: AuditRecord,
) -> serde_json::Value {
    record.actor = actor;
    let refused = match record.event {
        EventKind::SignaturesApplied => false,
        EventKind::SignaturesRefused => true,
        _ => {
            return serde_json::json!({ "error": "only signatures.applied and signatures.refused records are accepted here" })
        }
    };
    let file = record.details.get("file").cloned().unwrap_or_default();
    let why = record.details.get("reason").cloned().unwrap_or_default();
    let package = record.package.clone().unwrap_or_default();
    if let Err(e) = audit.record(record) {
        return serde_json::json!({ "error": e.to_string() });
    }
    protocol::update(status, |s| {
        s.alarms.retain(|a| !a.starts_with(ALARM));
        if refused {
            s.signatures_refused += 1;
            s.alarms.push(format!(
                "{ALARM} {file} (package {package}) refused: {why}; clamd keeps its old database. Send a good file again (docs/operations.md, \"Bringing ClamAV signatures in\")"
            ));
        } else {
            s.signatures_applied += 1;
        }
    });
    if !refused {
        // The database's version and age in `status` follow the reload.
        crate::inspection::malware::recheck_soon();
    }
    serde_json::json!({ "recorded": true })
}

/// The checks of one file, before anything of it is used.
pub(crate) fn check(
    cfg: &SignaturesSection,
    name: &str,
    path: &Path,
    probe_dir: &Path,
) -> Result<Checked, String> {
    check_name(name)?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_BYTES {
        return Err(format!("larger than {} MiB", MAX_BYTES >> 20));
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let (sha256, md5_body, head) = digests(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut checked = Checked {
        version: None,
        built_unix_s: None,
        sha256,
    };
    if matches!(ext.as_str(), "cvd" | "cld" | "cud") {
        let h = Header::parse(&head)?;
        if ext != "cld" && h.md5 != md5_body {
            return Err(
                "its body does not match the MD5 in its header: the file is damaged or was changed"
                    .into(),
            );
        }
        match ext.as_str() {
            "cvd" => sigtool_verifies(&cfg.sigtool, path)?,
            "cud" if !cfg.allow_unsigned => {
                return Err("an unsigned database (.cud); set allow_unsigned = true in [signatures] to take a site's own builds".into())
            }
            _ => {}
        }
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
        if let Some(old) = in_place_version(&cfg.database_dir, stem) {
            if h.version <= old {
                return Err(format!(
                    "version {} is not newer than version {old} in place (an old package sent again cannot roll the database back)",
                    h.version
                ));
            }
        }
        checked.version = Some(h.version);
        checked.built_unix_s = h.built_unix_s;
    }
    test_load(&cfg.clamscan, path, name, probe_dir)?;
    Ok(checked)
}

/// A plain file name with a database extension.
fn check_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !plain {
        return Err(
            "not a plain database file name (letters, digits, '.', '_', '-'; no leading dot)"
                .into(),
        );
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if !EXTENSIONS.contains(&ext.as_str()) {
        return Err(format!(
            "`.{ext}` is not a ClamAV database extension this channel takes ({})",
            EXTENSIONS.join(", ")
        ));
    }
    Ok(())
}

/// SHA-256 of the whole file, MD5 of everything after the first 512 bytes
/// (a container's body), and those first 512 bytes.
fn digests(path: &Path) -> std::io::Result<(String, String, Vec<u8>)> {
    use md5::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut md5 = md5::Md5::new();
    let mut head = Vec::with_capacity(512);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        sha.update(chunk);
        let take = (512 - head.len()).min(chunk.len());
        head.extend_from_slice(&chunk[..take]);
        md5.update(&chunk[take..]);
    }
    Ok((
        hex::encode(sha.finish().as_ref()),
        hex::encode(md5.finalize()),
        head,
    ))
}

/// A `.cvd`/`.cld`/`.cud` header:
/// `ClamAV-VDB:TIME:VERSION:SIGS:FLEVEL:MD5:DSIG:BUILDER:STIME`.
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) version: u64,
    pub(crate) md5: String,
    pub(crate) built_unix_s: Option<u64>,
}

impl Header {
    pub(crate) fn parse(head: &[u8]) -> Result<Header, String> {
        let bad = || "not a ClamAV database container: its 512-byte header is malformed".to_owned();
        if head.len() < 512 || !head.starts_with(b"ClamAV-VDB:") {
            return Err(bad());
        }
        let text = std::str::from_utf8(&head[..512]).map_err(|_| bad())?;
        let fields: Vec<&str> = text.trim_end_matches([' ', '\0']).split(':').collect();
        if fields.len() < 8 {
            return Err(bad());
        }
        let version = fields[2].parse().map_err(|_| bad())?;
        Ok(Header {
            version,
            md5: fields[5].to_ascii_lowercase(),
            built_unix_s: fields.get(8).and_then(|t| t.trim().parse().ok()),
        })
    }
}

/// The version of the container of the same name already in the database
/// directory (any of `.cvd`, `.cld`, `.cud`: freshclam turns one into
/// another).
fn in_place_version(dir: &Path, stem: &str) -> Option<u64> {
    ["cvd", "cld", "cud"]
        .iter()
        .filter_map(|ext| {
            let mut f = std::fs::File::open(dir.join(format!("{stem}.{ext}"))).ok()?;
            let mut head = vec![0u8; 512];
            f.read_exact(&mut head).ok()?;
            Header::parse(&head).ok().map(|h| h.version)
        })
        .max()
}

/// `sigtool --info` checks a `.cvd`'s digital signature against ClamAV's
/// key built into it.
fn sigtool_verifies(sigtool: &Path, path: &Path) -> Result<(), String> {
    let out = Command::new(sigtool)
        .arg(format!("--info={}", path.display()))
        .output()
        .map_err(|e| {
            format!(
                "`{}` could not be run to check the digital signature: {e}",
                sigtool.display()
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.lines().any(|l| l.trim() == "Verification OK.") {
        Ok(())
    } else {
        Err("its digital signature does not verify (sigtool --info)".into())
    }
}

/// `clamscan` loads the file alone and scans a small file with it: a file
/// the engine cannot load is refused here, not found broken by clamd.
fn test_load(clamscan: &Path, path: &Path, name: &str, probe_dir: &Path) -> Result<(), String> {
    // clamscan tells database types by extension: the probe keeps it.
    let db = probe_dir.join(name);
    let probe = probe_dir.join("probe.txt");
    let copy = || -> std::io::Result<()> {
        std::fs::copy(path, &db)?;
        std::fs::File::create(&probe)?.write_all(b"ferry signature probe\n")
    };
    copy().map_err(|e| format!("cannot prepare the test load: {e}"))?;
    let out = Command::new(clamscan)
        .arg("--no-summary")
        .arg("--stdout")
        .arg(format!("--database={}", db.display()))
        .arg(&probe)
        .output();
    let _ = std::fs::remove_file(&db);
    let out = out.map_err(|e| {
        format!(
            "`{}` could not be run for the test load: {e}",
            clamscan.display()
        )
    })?;
    // 0: clean, 1: found (the probe matched a signature: loaded all the
    // same); 2: an error, such as a database it cannot load.
    match out.status.code() {
        Some(0 | 1) => Ok(()),
        _ => {
            let err = String::from_utf8_lossy(&out.stderr);
            let first = err
                .lines()
                .find(|l| l.contains("Error") || l.contains("ERROR"))
                .or_else(|| err.lines().next())
                .unwrap_or("no message");
            Err(format!("clamscan could not load it ({})", first.trim()))
        }
    }
}

/// Puts the file into the database directory atomically.
fn install(dir: &Path, name: &str, from: &Path) -> Result<(), String> {
    let tmp = dir.join(format!(".{name}.ferry-tmp"));
    let fail = |what: &str, e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        format!("could not {what} in {}: {e}", dir.display())
    };
    std::fs::copy(from, &tmp).map_err(|e| fail("write it", e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| fail("sync it", e))?;
    std::fs::rename(&tmp, dir.join(name)).map_err(|e| fail("rename it", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("sync the directory", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_and_known() {
        for ok in [
            "daily.cvd",
            "custom.hdb",
            "site_rules.ndb",
            "main.cld",
            "x.ign2",
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "../daily.cvd",
            "a/b.hdb",
            ".hidden.hdb",
            "evil.sh",
            "clamd.conf",
            "rules.yar",
            "",
            "x.hdb\n",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers_are_read_and_malformed_ones_named() {
        let mut h = b"ClamAV-VDB:26 Oct 2026 00-41 +0000:27001:4:213:A782B0841106BEFB71A60CACF6D93080:X:ferry:1792975279".to_vec();
        h.resize(512, b' ');
        let p = Header::parse(&h).expect("valid");
        assert_eq!(p.version, 27001);
        assert_eq!(p.md5, "a782b0841106befb71a60cacf6d93080");
        assert_eq!(p.built_unix_s, Some(1792975279));
        assert!(Header::parse(&h[..100]).is_err());
        let mut bad = h.clone();
        bad[..6].copy_from_slice(b"NotCla");
        assert!(Header::parse(&bad).is_err());
        let mut nover = b"ClamAV-VDB:x:notanumber:4:213:a:X:ferry:1".to_vec();
        nover.resize(512, 0);
        assert!(Header::parse(&nover).is_err());
    }
}
