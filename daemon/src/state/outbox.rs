//! Atomic delivery into the egress outbox.
//!
//! A downstream consumer watching the outbox must never see a partial file,
//! a file without its metadata, or a file that a crash could take back.
//! Packages are written into `OUTBOX/.staging/`, fsync'd, and renamed into
//! place (same filesystem, so the rename is atomic); the `.ferry.json`
//! sidecar is renamed first, so whoever sees a data file finds its
//! metadata. A full disk leaves nothing partial behind.

use ferry_common::durable::{self, Replace};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;

use super::direct_writer::DirectWriter;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Sub-directory of the outbox holding files being written.
pub const STAGING_DIR: &str = ".staging";
/// Sub-directory of the outbox holding packages verified and waiting for
/// their downstream HTTPS endpoint: `ID` (data) and `ID.ferry.json`.
pub const FORWARD_DIR: &str = ".forward";
/// Suffix of staged data files.
pub const PART_SUFFIX: &str = ".part";
/// Suffix of the metadata file next to each delivered file.
pub const SIDECAR_SUFFIX: &str = ".ferry.json";
/// Longest file name a single path component may have on Linux.
const NAME_MAX_BYTES: usize = 255;
/// Longest package file name accepted: the sidecar's suffix must still fit.
pub const MAX_FILE_NAME_BYTES: usize = NAME_MAX_BYTES - SIDECAR_SUFFIX.len();
/// Collision suffixes tried (`name.1.ext` ...) before giving up.
const MAX_COLLISION_SUFFIX: u32 = 100_000;
/// Free names in a row after which [`Outbox::find_delivered`] stops.
const FIND_FREE_NAMES: u32 = 64;
/// Every this many bytes handed to the kernel, a staging file's write-back
/// is started, so the fsync that delivers a large package finds most of it
/// on disk already (on a large-memory host the kernel would otherwise
/// leave the whole package dirty until that fsync).
const WRITEBACK_STEP_BYTES: u64 = 8 << 20;
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Why a delivery step failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// ENOSPC or EDQUOT.
    #[error("the outbox disk is full (or the quota is used up) writing {}: nothing partial was left; free space in the outbox filesystem and delivery resumes with the next package (resend the lost one from the ingress side)", path.display())]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// Any other file system error.
    #[error("outbox {}: {source}; check that the outbox directory exists, is writable by ferryd and is on a healthy disk", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The package's file name cannot be used as given.
    #[error("package file name {name:?} refused: {reason}; the sender must rename the file and send it again")]
    InvalidName {
        /// The name asked for (possibly shortened for display).
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Every collision suffix was taken.
    #[error("no free name for {name:?} in the outbox (tried up to .{MAX_COLLISION_SUFFIX}); move delivered files away")]
    NoFreeName {
        /// The name asked for.
        name: String,
    },
}

fn io_error(path: &Path, source: std::io::Error) -> OutboxError {
    match source.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => OutboxError::DiskFull {
            path: path.to_path_buf(),
        },
        _ => OutboxError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Checks a file name a package asked for. Refuses what could escape the
/// outbox, hide from a consumer, confuse a terminal, or collide with the
/// sidecar naming; returns the name to use.
pub fn sanitize_file_name(name: &str) -> Result<String, OutboxError> {
    let refuse = |reason| {
        Err(OutboxError::InvalidName {
            name: name.chars().take(80).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name == "." || name == ".." {
        return refuse("it names a directory");
    }
    if name.contains('\0') {
        return refuse("it contains a NUL byte");
    }
    if name.contains('/') {
        return refuse("it contains '/', which would leave the outbox");
    }
    if name.contains('\\') {
        return refuse("it contains '\\', a path separator for Windows consumers of the outbox");
    }
    if name.chars().any(char::is_control) {
        return refuse("it contains control characters");
    }
    if name.chars().any(is_bidi_control) {
        return refuse("it contains bidirectional text controls, which can disguise its extension");
    }
    if name.starts_with('.') {
        return refuse("it starts with '.', which hides it from consumers and the staging area");
    }
    if name.len() > MAX_FILE_NAME_BYTES {
        return refuse("it is longer than 244 bytes, leaving no room for the .ferry.json sidecar");
    }
    // Case-insensitively: on a case-insensitive share `X.FERRY.JSON` is
    // the sidecar of `X`.
    if name.len() >= SIDECAR_SUFFIX.len()
        && name.as_bytes()[name.len() - SIDECAR_SUFFIX.len()..]
            .eq_ignore_ascii_case(SIDECAR_SUFFIX.as_bytes())
    {
        return refuse("it ends with .ferry.json, the suffix reserved for metadata files");
    }
    Ok(name.to_string())
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `name` with `.n` before its extension (`report.1.pdf`, `README.1`),
/// shortened if needed so the result still fits.
fn with_suffix(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    let tag = format!(".{n}");
    let room = MAX_FILE_NAME_BYTES.saturating_sub(tag.len() + ext.len());
    let mut cut = stem.len().min(room);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tag}{ext}", &stem[..cut])
}

/// A package being written into the staging directory.
#[derive(Debug)]
pub struct Staging {
    name: String,
    path: PathBuf,
    /// Buffered, then `O_DIRECT` past 8 MiB (see [`DirectWriter`]).
    writer: DirectWriter,
    len: u64,
    /// Where the next write-back starts (everything before it was started).
    writeback_from: u64,
    /// Write-backs started (see [`WRITEBACK_STEP_BYTES`]).
    writebacks: u64,
}

impl Staging {
    /// The staging name given to [`Outbox::begin`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The staging file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `data`. On a full disk the staging file is removed at once
    /// (nothing partial stays) and `DiskFull` returned; the caller then
    /// drops or aborts this staging.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), OutboxError> {
        match self.writer.write_all(data) {
            Ok(()) => {
                self.len += data.len() as u64;
                self.start_writeback();
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Starts the write-back of the bytes the kernel holds, once they are
    /// a step's worth. A hint: if the kernel refuses it, [`Staging::sync`]
    /// still writes everything, so the refusal only costs time there.
    fn start_writeback(&mut self) {
        let in_kernel = self.len - self.writer.pending() as u64;
        if self.writer.is_direct() {
            // Direct writes reach the device as they are made.
            self.writeback_from = in_kernel;
            return;
        }
        if in_kernel - self.writeback_from < WRITEBACK_STEP_BYTES {
            return;
        }
        let len = in_kernel - self.writeback_from;
        match ferry_hardening::writeback::start_writeback(
            self.writer.get_ref(),
            self.writeback_from,
            len,
        ) {
            Ok(()) => self.writebacks += 1,
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "write-back hint refused")
            }
        }
        self.writeback_from = in_kernel;
    }

    /// Write-backs started so far.
    pub fn writebacks(&self) -> u64 {
        self.writebacks
    }

    /// Bytes written with `O_DIRECT` so far (none for a package under
    /// 8 MiB, or on a filesystem that refuses it).
    pub fn direct_bytes(&self) -> u64 {
        self.writer.direct_bytes()
    }

    /// Everything written so far, read back; the staging file is removed.
    fn read_back(mut self) -> Result<Vec<u8>, OutboxError> {
        if let Err(e) = self.writer.flush() {
            return Err(self.fail(e));
        }
        let bytes = std::fs::read(&self.path).map_err(|e| io_error(&self.path, e));
        let _ = std::fs::remove_file(&self.path);
        bytes
    }

    /// Makes everything written so far durable: file contents and its entry
    /// in the staging directory. Call it before recording the delivery in
    /// the ledger, so a crash after that record finds the complete file.
    pub fn sync(&mut self) -> Result<(), OutboxError> {
        if let Err(e) = self
            .writer
            .flush()
            .and_then(|()| self.writer.get_ref().sync_all())
        {
            return Err(self.fail(e));
        }
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    fn fail(&mut self, e: std::io::Error) -> OutboxError {
        let err = io_error(&self.path, e);
        if matches!(err, OutboxError::DiskFull { .. }) {
            let _ = std::fs::remove_file(&self.path);
        }
        err
    }
}

/// The egress outbox directory.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    staging: PathBuf,
    forward: PathBuf,
}

impl Outbox {
    /// Opens the outbox at `dir`, creating it and its staging directory
    /// (mode 0700) when missing.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        let staging = dir.join(STAGING_DIR);
        let forward = dir.join(FORWARD_DIR);
        for d in [&staging, &forward] {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(d)
                .map_err(|e| io_error(d, e))?;
            // A directory left readable by an older setup would let others
            // read packages before they are complete or released.
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| io_error(d, e))?;
        }
        Ok(Outbox {
            dir: dir.to_path_buf(),
            staging,
            forward,
        })
    }

    /// Moves a package [`Outbox::prepare`]d in staging into the forward
    /// area as `.forward/KEY` with its sidecar, durably. Call it before
    /// the ledger records the package as forwarding: a crash in between
    /// leaves files no ledger entry names, which [`Outbox::cleanup_forward`]
    /// removes at the next start (the package was not accepted yet, so a
    /// redundant send or a resend brings it again).
    ///
    /// The caller makes the move durable ([`Outbox::sync_filesystem`],
    /// once for a whole batch).
    pub fn park_for_forward(&self, staging: Staging, key: &str) -> Result<PathBuf, OutboxError> {
        let data = self.forward_data(key)?;
        let sidecar_tmp = self.staged_sidecar_path(&staging.name)?;
        let part = staging.path.clone();
        drop(staging);
        let moved = std::fs::rename(
            &sidecar_tmp,
            self.forward.join(format!("{key}{SIDECAR_SUFFIX}")),
        )
        .map_err(|e| io_error(&sidecar_tmp, e))
        .and_then(|()| std::fs::rename(&part, &data).map_err(|e| io_error(&part, e)));
        if let Err(e) = moved {
            for p in [
                part,
                sidecar_tmp,
                data.clone(),
                self.forward_sidecar_path(key)?,
            ] {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
        Ok(data)
    }

    /// The data file of a package waiting for its downstream endpoint.
    pub fn forward_data(&self, key: &str) -> Result<PathBuf, OutboxError> {
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(OutboxError::InvalidName {
                name: key.to_string(),
                reason: "not a package id",
            });
        }
        Ok(self.forward.join(key))
    }

    fn forward_sidecar_path(&self, key: &str) -> Result<PathBuf, OutboxError> {
        self.forward_data(key)?;
        Ok(self.forward.join(format!("{key}{SIDECAR_SUFFIX}")))
    }

    /// The sidecar of a package waiting for its downstream endpoint.
    pub fn forward_sidecar(&self, key: &str) -> Result<serde_json::Value, OutboxError> {
        let path = self.forward_sidecar_path(key)?;
        let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| OutboxError::Io {
            path,
            source: std::io::Error::other(e),
        })
    }

    /// Removes a forwarded package once its endpoint accepted it. A
    /// failure is only logged: the ledger already says delivered, and
    /// [`Outbox::cleanup_forward`] removes the leftover at the next start.
    pub fn forward_done(&self, key: &str) {
        let paths = [self.forward_data(key), self.forward_sidecar_path(key)];
        for p in paths.into_iter().flatten() {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), error = %e, "could not remove a forwarded package; it is removed at the next start");
                }
            }
        }
    }

    /// Removes from the forward area every file whose package id is not
    /// in `waiting` (leftovers of a crash or of a finished forward).
    /// Returns how many files were removed.
    pub fn cleanup_forward(
        &self,
        waiting: &std::collections::HashSet<String>,
    ) -> Result<usize, OutboxError> {
        let mut removed = 0;
        let entries = std::fs::read_dir(&self.forward).map_err(|e| io_error(&self.forward, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&self.forward, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name.strip_suffix(SIDECAR_SUFFIX).unwrap_or(&name);
            if waiting.contains(key) {
                continue;
            }
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path, e)),
            }
        }
        if removed > 0 {
            sync_dir(&self.forward)?;
        }
        Ok(removed)
    }

    /// The outbox directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The staging directory.
    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }

    fn part_path(&self, staging_name: &str) -> Result<PathBuf, OutboxError> {
        // Staging names come from the daemon, but they still become paths.
        if staging_name.is_empty()
            || staging_name.contains('/')
            || staging_name.contains('\0')
            || staging_name.starts_with('.')
        {
            return Err(OutboxError::InvalidName {
                name: staging_name.to_string(),
                reason: "not a plain staging name",
            });
        }
        Ok(self.staging.join(format!("{staging_name}{PART_SUFFIX}")))
    }

    /// Starts writing a package as `.staging/<staging_name>.part`
    /// (created or truncated, mode 0600).
    pub fn begin(&self, staging_name: &str) -> Result<Staging, OutboxError> {
        let path = self.part_path(staging_name)?;
        let fresh = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path);
        let file = match fresh {
            Ok(f) => f,
            // `mode` only applies to new files: a leftover (staging is
            // emptied at start, so rarely) is truncated and given it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let f = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .map_err(|e| io_error(&path, e))?;
                f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
                    .map_err(|e| io_error(&path, e))?;
                f
            }
            Err(e) => return Err(io_error(&path, e)),
        };
        Ok(Staging {
            name: staging_name.to_string(),
            path,
            writer: DirectWriter::new(file),
            len: 0,
            writeback_from: 0,
            writebacks: 0,
        })
    }

    /// Delivers a staged package as `file_name` (or `name.N.ext` when taken)
    /// with `sidecar` as `<final>.ferry.json`; returns the delivered path.
    /// On any error the staging file is removed: a package is delivered
    /// whole or not at all.
    ///
    /// A batch of one: [`Outbox::write_sidecar`], a sync,
    /// [`Outbox::place_batched`], a sync.
    pub fn commit(
        &self,
        mut staging: Staging,
        file_name: &str,
        sidecar: &serde_json::Value,
    ) -> Result<PathBuf, OutboxError> {
        if let Err(e) = self
            .write_sidecar(&mut staging, sidecar)
            .and_then(|()| self.sync_filesystem())
        {
            self.abort(staging);
            return Err(e);
        }
        let path = self.place_batched(staging, file_name)?;
        self.sync_filesystem()?;
        Ok(path)
    }

    /// Finishes a delivery a crash interrupted after the ledger recorded
    /// it: the staged file is made durable and renamed as [`Outbox::commit`]
    /// does. `Ok(None)` when there is no staged file (the rename had
    /// happened, or the file was never made durable).
    pub fn recover(
        &self,
        staging_name: &str,
        file_name: &str,
        sidecar: &serde_json::Value,
    ) -> Result<Option<PathBuf>, OutboxError> {
        let part = self.part_path(staging_name)?;
        let file = match OpenOptions::new().read(true).write(true).open(&part) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&part, e)),
        };
        file.sync_all().map_err(|e| io_error(&part, e))?;
        drop(file);
        let name = sanitize_file_name(file_name)?;
        let sidecar_tmp = self.staged_sidecar_path(staging_name)?;
        let result = write_durably(&sidecar_tmp, sidecar)
            .and_then(|()| self.rename_free(&part, &sidecar_tmp, &name, true))
            .and_then(|path| sync_dir(&self.dir).map(|()| path));
        if result.is_err() {
            let _ = std::fs::remove_file(&sidecar_tmp);
        }
        result.map(Some)
    }

    /// A staging file's bytes, read back into memory; the file is removed
    /// (for a bundle gathered on disk, to be taken apart).
    pub fn read_back(&self, staging: Staging) -> Result<Vec<u8>, OutboxError> {
        staging.read_back()
    }

    /// Removes a staged package. Failures are only logged: a leftover is
    /// removed by [`Outbox::cleanup_staging`] at the next start.
    pub fn abort(&self, staging: Staging) {
        let path = staging.path.clone();
        let sidecar = self.staged_sidecar_path(&staging.name).ok();
        drop(staging);
        for p in std::iter::once(path).chain(sidecar) {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), error = %e, "could not remove an aborted staging file; it is removed at the next start");
                }
            }
        }
    }

    /// Where the sidecar of a staged package waits: `.staging/<staging
    /// name>.ferry.json`. [`Outbox::commit`] writes it there before the
    /// renames, and [`Outbox::prepare`] earlier still.
    fn staged_sidecar_path(&self, staging_name: &str) -> Result<PathBuf, OutboxError> {
        self.part_path(staging_name)?;
        Ok(self.staging.join(format!("{staging_name}{SIDECAR_SUFFIX}")))
    }

    /// Makes a staged package ready to be recorded as delivering: its data
    /// and `sidecar` (written to `.staging/<staging name>.ferry.json`) are
    /// fsync'd, entries included. Call it before the ledger records the
    /// delivery, so that a crash after that record finds the complete file
    /// and its metadata ([`Outbox::staged_sidecar`], [`Outbox::recover`]).
    /// On a full disk both files are removed. `commit` moves the sidecar
    /// into place; `abort` removes it.
    pub fn prepare(
        &self,
        staging: &mut Staging,
        sidecar: &serde_json::Value,
    ) -> Result<(), OutboxError> {
        self.write_sidecar(staging, sidecar)?;
        self.sync_filesystem()
    }

    /// Writes the staged package's buffered data and its `sidecar` (as
    /// [`Outbox::prepare`] does) without syncing anything: for a batch,
    /// made durable by one [`Outbox::sync_filesystem`] before the ledger
    /// records it. On a full disk both files are removed.
    pub fn write_sidecar(
        &self,
        staging: &mut Staging,
        sidecar: &serde_json::Value,
    ) -> Result<(), OutboxError> {
        let path = self.staged_sidecar_path(&staging.name)?;
        staging.writer.flush().map_err(|e| staging.fail(e))?;
        write_json(&path, sidecar).inspect_err(|e| {
            let _ = std::fs::remove_file(&path);
            if matches!(e, OutboxError::DiskFull { .. }) {
                let _ = std::fs::remove_file(&staging.path);
            }
        })
    }

    /// Makes everything written to the outbox's file system so far
    /// durable: data, sidecars, renames and removals, of every package of
    /// a batch at once (`syncfs(2)`, which also reports write-back errors).
    pub fn sync_filesystem(&self) -> Result<(), OutboxError> {
        use std::os::fd::AsRawFd;
        let dir = File::open(&self.dir).map_err(|e| io_error(&self.dir, e))?;
        nix::unistd::syncfs(dir.as_raw_fd())
            .map_err(|e| io_error(&self.dir, std::io::Error::from(e)))
    }

    /// Renames a package whose data and sidecar [`Outbox::write_sidecar`]
    /// wrote, and whose ledger entry is durable, into the outbox under the
    /// first free name, without syncing (the batch syncs once). On error
    /// the staging files are removed.
    pub fn place_batched(&self, staging: Staging, file_name: &str) -> Result<PathBuf, OutboxError> {
        let part = staging.path.clone();
        let staging_name = staging.name.clone();
        drop(staging);
        let result = sanitize_file_name(file_name).and_then(|name| {
            let sidecar_tmp = self.staged_sidecar_path(&staging_name)?;
            self.rename_free(&part, &sidecar_tmp, &name, false)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
            if let Ok(p) = self.staged_sidecar_path(&staging_name) {
                let _ = std::fs::remove_file(p);
            }
        }
        result
    }

    /// Where a package whose staging file is gone (renamed before a crash)
    /// was delivered: the first of `file_name`'s names (`NAME`,
    /// `NAME.1.EXT`, …) whose data file is there and whose sidecar names
    /// `package_id`, with that sidecar. Names are taken in order, but a
    /// consumer removes what it took, so the look goes on past free names
    /// and stops after [`FIND_FREE_NAMES`] of them in a row. `None`: not
    /// found (the consumer took it already).
    pub fn find_delivered(
        &self,
        file_name: &str,
        package_id: &str,
    ) -> Option<(String, serde_json::Value)> {
        let name = sanitize_file_name(file_name).ok()?;
        let mut free = 0;
        for n in 0..=MAX_COLLISION_SUFFIX {
            let candidate = with_suffix(&name, n);
            let data = self.dir.join(&candidate);
            let sidecar = self.dir.join(format!("{candidate}{SIDECAR_SUFFIX}"));
            let Ok(bytes) = std::fs::read(&sidecar) else {
                if !data.exists() {
                    free += 1;
                    if free >= FIND_FREE_NAMES {
                        return None;
                    }
                }
                continue;
            };
            free = 0;
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            if v.get("package_id").and_then(|p| p.as_str()) == Some(package_id) && data.exists() {
                return Some((candidate, v));
            }
        }
        None
    }

    /// The sidecar [`Outbox::prepare`] left for `staging_name`, if it
    /// is there and readable.
    pub fn staged_sidecar(&self, staging_name: &str) -> Option<serde_json::Value> {
        let path = self.staged_sidecar_path(staging_name).ok()?;
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes everything in the staging directory. Call at start-up, after
    /// recovering the deliveries the ledger knows about; returns how many
    /// files were removed.
    pub fn cleanup_staging(&self) -> Result<usize, OutboxError> {
        let mut removed = 0;
        let entries = std::fs::read_dir(&self.staging).map_err(|e| io_error(&self.staging, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&self.staging, e))?;
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let r = if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match r {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path, e)),
            }
        }
        if removed > 0 {
            sync_dir(&self.staging)?;
        }
        Ok(removed)
    }

    /// Renames sidecar, then data, into the outbox under the first free
    /// name; the caller makes the renames durable.
    fn rename_free(
        &self,
        part: &Path,
        sidecar_tmp: &Path,
        name: &str,
        recovering: bool,
    ) -> Result<PathBuf, OutboxError> {
        for n in 0..=MAX_COLLISION_SUFFIX {
            let candidate = with_suffix(name, n);
            let data_path = self.dir.join(&candidate);
            let sidecar_path = self.dir.join(format!("{candidate}{SIDECAR_SUFFIX}"));
            if exists(&data_path)? {
                continue;
            }
            // A sidecar without its data file is what a crash between the
            // two renames leaves; recovery takes that name over, a normal
            // delivery leaves it alone (the rename refuses to replace it,
            // so no separate look first).
            if !rename_into(sidecar_tmp, &sidecar_path, !recovering)? {
                continue;
            }
            let placed = rename_into(part, &data_path, true).inspect_err(|_| {
                // No data file will follow: do not leave its metadata alone.
                let _ = std::fs::rename(&sidecar_path, sidecar_tmp);
            })?;
            if !placed {
                // Someone else created the data name in between: take our
                // sidecar back and try the next name.
                std::fs::rename(&sidecar_path, sidecar_tmp)
                    .map_err(|e| io_error(&sidecar_path, e))?;
                continue;
            }
            return Ok(data_path);
        }
        Err(OutboxError::NoFreeName {
            name: name.to_string(),
        })
    }
}

fn exists(path: &Path) -> Result<bool, OutboxError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Writes JSON into a 0600 file durably (the one durable write,
/// `ferry_common::durable`: temp file, fsync, rename, directory fsync).
fn write_durably(path: &Path, value: &serde_json::Value) -> Result<(), OutboxError> {
    let text = json_text(path, value)?;
    durable::write(path, &text, FILE_MODE, Replace::Atomically).map_err(|e| {
        let (at, source) = e.into_parts();
        io_error(&at, source)
    })
}

/// Writes JSON into a new 0600 file without an fsync: the group-commit
/// write, whose batch is made durable by one `syncfs` after all its files
/// (a durable write per file would undo the batching).
fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), OutboxError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    let text = json_text(path, value)?;
    file.write_all(&text).map_err(|e| io_error(path, e))
}

/// The sidecar's bytes: pretty JSON and a final newline.
fn json_text(path: &Path, value: &serde_json::Value) -> Result<Vec<u8>, OutboxError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| OutboxError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    Ok(text)
}

/// Renames `from` to `to`; with `no_replace`, refuses to overwrite and
/// returns false when `to` exists. Race-free where the kernel supports
/// RENAME_NOREPLACE, otherwise checked just before.
fn rename_into(from: &Path, to: &Path, no_replace: bool) -> Result<bool, OutboxError> {
    if no_replace {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            use nix::fcntl::{renameat2, RenameFlags};
            match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => return Ok(true),
                Err(nix::errno::Errno::EEXIST) => return Ok(false),
                // Filesystems without RENAME_NOREPLACE: check, then rename.
                Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOSYS) => {}
                Err(e) => return Err(io_error(to, std::io::Error::from(e))),
            }
        }
        if exists(to)? {
            return Ok(false);
        }
    }
    std::fs::rename(from, to).map_err(|e| io_error(to, e))?;
    Ok(true)
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    durable::sync_dir(dir).map_err(|e| io_error(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Visible names in the outbox (the staging directory excluded).
    fn visible(outbox: &Outbox) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(outbox.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != STAGING_DIR && n != FORWARD_DIR)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn parked_packages_wait_in_the_forward_area_and_orphans_go() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut s = o.begin("3-0").unwrap();
        s.write_all(b"payload").unwrap();
        let sidecar = json!({ "package_id": "ab", "file_name": "a.csv" });
        o.write_sidecar(&mut s, &sidecar).unwrap();
        let key = "00112233445566778899aabbccddeeff";
        let data = o.park_for_forward(s, key).unwrap();
        o.sync_filesystem().unwrap();
        assert_eq!(std::fs::read(&data).unwrap(), b"payload");
        assert_eq!(o.forward_sidecar(key).unwrap(), sidecar);
        assert!(visible(&o).is_empty(), "nothing reaches the outbox itself");
        assert!(staged(&o).is_empty(), "{:?}", staged(&o));
        let mode = std::fs::metadata(dir.path().join(FORWARD_DIR))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        // A crash before the ledger write leaves an orphan: it goes; a
        // package the ledger names stays.
        std::fs::write(dir.path().join(FORWARD_DIR).join("ffff"), b"x").unwrap();
        let waiting: std::collections::HashSet<String> = [key.to_owned()].into();
        assert_eq!(o.cleanup_forward(&waiting).unwrap(), 1);
        assert!(data.exists());
        o.forward_done(key);
        assert!(!data.exists());
        assert!(o.forward_sidecar(key).is_err());
        assert!(o.forward_data("../x").is_err(), "keys are package ids only");
    }

    fn staged(outbox: &Outbox) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(outbox.staging_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn outbox_and_staging_move_to_the_writer_thread() {
        fn is_send<T: Send>() {}
        is_send::<Outbox>();
        is_send::<Staging>();
    }

    #[test]
    fn open_creates_private_directories() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(&dir.path().join("outbox")).unwrap();
        assert_eq!(mode(o.dir()), 0o700);
        assert_eq!(mode(o.staging_dir()), 0o700);
        // Reopening an existing outbox is fine.
        Outbox::open(o.dir()).unwrap();
    }

    #[test]
    fn a_staging_file_is_private_new_or_left_over() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let fresh = o.begin("1-0").unwrap();
        assert_eq!(mode(fresh.path()), 0o600);
        drop(fresh);
        // A leftover under a staging name, readable by all and with old
        // bytes: truncated and made private like a new file.
        let left = o.staging_dir().join(format!("2-0{PART_SUFFIX}"));
        std::fs::write(&left, b"old bytes of someone else").unwrap();
        std::fs::set_permissions(&left, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut st = o.begin("2-0").unwrap();
        assert_eq!(st.path(), left.as_path());
        assert_eq!(mode(&left), 0o600);
        st.write_all(b"new").unwrap();
        let placed = o.commit(st, "n.txt", &json!({})).unwrap();
        assert_eq!(std::fs::read(placed).unwrap(), b"new");
    }

    #[test]
    fn a_large_staging_file_starts_its_write_back_then_goes_direct_and_stays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut s = o.begin("9-0").unwrap();
        // Odd-sized pieces, as decrypted chunks come: 20 MiB and a bit.
        let piece: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
        let pieces = (20 << 20) / piece.len() + 1;
        for _ in 0..pieces {
            s.write_all(&piece).unwrap();
        }
        // The first step starts once 8 MiB left the write buffer. Then the
        // file goes direct where the filesystem takes it (no more hints
        // needed); otherwise the second step starts at 16 MiB and the last
        // 4 MiB wait for the sync.
        if super::super::direct_writer::directory_takes_direct_io(dir.path()) {
            assert_eq!(s.writebacks(), 1);
            assert!(s.direct_bytes() >= 11 << 20, "{}", s.direct_bytes());
        } else {
            assert_eq!(s.writebacks(), 2);
            assert_eq!(s.direct_bytes(), 0);
        }
        let path = o.commit(s, "big.bin", &json!({ "seq": 9 })).unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), pieces * piece.len());
        assert!(got.chunks(piece.len()).all(|c| c == &piece[..]));
    }

    #[test]
    fn commit_makes_data_and_sidecar_visible() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut s = o.begin("7-0").unwrap();
        assert!(s.is_empty());
        s.write_all(b"x,y\n").unwrap();
        s.write_all(b"1,2\n").unwrap();
        assert_eq!(s.len(), 8);
        assert_eq!(s.name(), "7-0");
        let sidecar = json!({ "package_id": "ab", "seq": 7 });
        let path = o.commit(s, "a.csv", &sidecar).unwrap();
        assert_eq!(path, dir.path().join("a.csv"));
        assert_eq!(std::fs::read(&path).unwrap(), b"x,y\n1,2\n");
        let side: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("a.csv.ferry.json")).unwrap())
                .unwrap();
        assert_eq!(side, sidecar);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(visible(&o), vec!["a.csv", "a.csv.ferry.json"]);
        assert!(staged(&o).is_empty());
    }

    #[test]
    fn staging_is_never_visible_while_writing() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut s = o.begin("1-0").unwrap();
        for _ in 0..64 {
            s.write_all(&[7u8; 65536]).unwrap();
            assert!(visible(&o).is_empty());
        }
        s.sync().unwrap();
        assert!(visible(&o).is_empty());
        assert_eq!(staged(&o), vec!["1-0.part"]);
        assert_eq!(mode(s.path()), 0o600);
        let path = o.commit(s, "big.bin", &json!({})).unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().len(), 64 * 65536);
    }

    #[test]
    fn abort_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut s = o.begin("2-0").unwrap();
        s.write_all(b"secret").unwrap();
        o.abort(s);
        assert!(visible(&o).is_empty());
        assert!(staged(&o).is_empty());
    }

    #[test]
    fn name_collisions_get_a_number_before_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let deliver = |staging: &str, name: &str, data: &[u8]| {
            let mut s = o.begin(staging).unwrap();
            s.write_all(data).unwrap();
            o.commit(s, name, &json!({ "data": String::from_utf8_lossy(data) }))
                .unwrap()
        };
        assert_eq!(
            deliver("1", "report.pdf", b"one"),
            dir.path().join("report.pdf")
        );
        assert_eq!(
            deliver("2", "report.pdf", b"two"),
            dir.path().join("report.1.pdf")
        );
        assert_eq!(
            deliver("3", "report.pdf", b"three"),
            dir.path().join("report.2.pdf")
        );
        assert_eq!(deliver("4", "README", b"r1"), dir.path().join("README"));
        assert_eq!(deliver("5", "README", b"r2"), dir.path().join("README.1"));
        assert_eq!(
            std::fs::read(dir.path().join("report.1.pdf")).unwrap(),
            b"two"
        );
        let side: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("report.2.pdf.ferry.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(side["data"], "three");
        // A foreign file that only holds the sidecar name also counts as taken.
        std::fs::write(dir.path().join("x.txt.ferry.json"), b"{}").unwrap();
        assert_eq!(deliver("6", "x.txt", b"x"), dir.path().join("x.1.txt"));
        assert_eq!(
            std::fs::read(dir.path().join("x.txt.ferry.json")).unwrap(),
            b"{}"
        );
    }

    #[test]
    fn collision_suffix_keeps_long_names_within_limits() {
        let long = format!("{}.csv", "n".repeat(MAX_FILE_NAME_BYTES - 4));
        assert_eq!(sanitize_file_name(&long).unwrap(), long);
        let shifted = with_suffix(&long, 12);
        assert!(shifted.len() <= MAX_FILE_NAME_BYTES);
        assert!(shifted.ends_with(".12.csv"));
        let wide = "数".repeat(MAX_FILE_NAME_BYTES / 3);
        assert!(with_suffix(&wide, 3).len() <= MAX_FILE_NAME_BYTES);
    }

    #[test]
    fn sanitize_rejects_each_bad_class() {
        for bad in [
            "",
            ".",
            "..",
            "a\0b",
            "a/b",
            "/etc/passwd",
            "../x",
            "evil\u{202e}fdp.exe",
            "bell\u{7}",
            "line\nbreak",
            "tab\there",
            "del\u{7f}",
            ".hidden",
            "a.csv.ferry.json",
            "x.ferry.json",
            "X.FERRY.Json",
            "a\\b",
        ] {
            assert!(
                matches!(
                    sanitize_file_name(bad),
                    Err(OutboxError::InvalidName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        let too_long = "a".repeat(256);
        assert!(sanitize_file_name(&too_long).is_err());
        let just_fits = "a".repeat(MAX_FILE_NAME_BYTES);
        assert!(sanitize_file_name(&just_fits).is_ok());
        for good in ["a.csv", "x..y", "数据 2024.xlsx", "x-y_z.tar.gz", "README"] {
            assert_eq!(sanitize_file_name(good).unwrap(), good);
        }
    }

    #[test]
    fn a_delivered_package_is_found_by_its_sidecar_past_other_packages_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let put = |name: &str, id: Option<&str>| {
            std::fs::write(dir.path().join(name), b"data").unwrap();
            if let Some(id) = id {
                let side = json!({ "package_id": id, "size": 4 }).to_string();
                std::fs::write(dir.path().join(format!("{name}.ferry.json")), side).unwrap();
            }
        };
        // `r.bin` another package's, `r.1.bin` taken by the consumer (a
        // hole), `r.2.bin` a file without a sidecar, `r.3.bin` ours.
        put("r.bin", Some("aa"));
        put("r.2.bin", None);
        put("r.3.bin", Some("bb"));
        let (name, side) = o.find_delivered("r.bin", "bb").unwrap();
        assert_eq!(name, "r.3.bin");
        assert_eq!(side["size"], 4);
        // A sidecar whose data file is gone is not a delivery.
        std::fs::remove_file(dir.path().join("r.3.bin")).unwrap();
        assert_eq!(o.find_delivered("r.bin", "bb"), None);
        // Taken by the consumer, or never here: the look ends after the
        // free names, not at the 100,000th.
        assert_eq!(o.find_delivered("r.bin", "cc"), None);
        assert_eq!(o.find_delivered("../x", "aa"), None);
        put(&with_suffix("r.bin", 60), Some("dd"));
        assert_eq!(o.find_delivered("r.bin", "dd").unwrap().0, "r.60.bin");
        put(&with_suffix("r.bin", 200), Some("ee"));
        assert_eq!(o.find_delivered("r.bin", "ee"), None);
    }

    #[test]
    fn commit_with_a_bad_name_removes_the_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut s = o.begin("3-0").unwrap();
        s.write_all(b"data").unwrap();
        assert!(matches!(
            o.commit(s, "../escape", &json!({})),
            Err(OutboxError::InvalidName { .. })
        ));
        assert!(visible(&o).is_empty());
        assert!(staged(&o).is_empty());
        assert!(!dir.path().parent().unwrap().join("escape").exists());
    }

    #[test]
    fn recover_finishes_an_interrupted_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut s = o.begin("9-1").unwrap();
        s.write_all(b"payload").unwrap();
        s.sync().unwrap();
        drop(s); // the crash
        let o = Outbox::open(dir.path()).unwrap();
        let path = o.recover("9-1", "r.bin", &json!({ "seq": 9 })).unwrap();
        assert_eq!(path, Some(dir.path().join("r.bin")));
        assert_eq!(std::fs::read(dir.path().join("r.bin")).unwrap(), b"payload");
        assert!(dir.path().join("r.bin.ferry.json").exists());
        assert!(staged(&o).is_empty());
        // Nothing staged any more: nothing to do.
        assert_eq!(o.recover("9-1", "r.bin", &json!({})).unwrap(), None);
    }

    #[test]
    fn recover_takes_over_a_sidecar_left_between_the_renames() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut s = o.begin("4-0").unwrap();
        s.write_all(b"late").unwrap();
        s.sync().unwrap();
        drop(s);
        // The crash came after the sidecar rename, before the data rename.
        std::fs::write(dir.path().join("d.txt.ferry.json"), b"{\"old\":true}").unwrap();
        let path = o.recover("4-0", "d.txt", &json!({ "new": true })).unwrap();
        assert_eq!(path, Some(dir.path().join("d.txt")));
        assert_eq!(visible(&o), vec!["d.txt", "d.txt.ferry.json"]);
        let side: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("d.txt.ferry.json")).unwrap())
                .unwrap();
        assert_eq!(side, json!({ "new": true }));
    }

    #[test]
    fn prepared_package_survives_a_crash_and_commit_moves_its_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut s = o.begin("11-0").unwrap();
        s.write_all(b"abc").unwrap();
        let meta = json!({ "package_id": "cd", "size": 3 });
        o.prepare(&mut s, &meta).unwrap();
        assert_eq!(staged(&o), vec!["11-0.ferry.json", "11-0.part"]);
        drop(s); // the crash
        let o = Outbox::open(dir.path()).unwrap();
        let recovered = o.staged_sidecar("11-0").unwrap();
        assert_eq!(recovered, meta);
        o.recover("11-0", "c.txt", &recovered).unwrap();
        assert!(staged(&o).is_empty());
        assert_eq!(visible(&o), vec!["c.txt", "c.txt.ferry.json"]);
        assert_eq!(o.staged_sidecar("11-0"), None);

        // The normal path leaves nothing in staging either, and abort
        // removes a staged sidecar too.
        let mut s = o.begin("12-0").unwrap();
        o.prepare(&mut s, &meta).unwrap();
        o.commit(s, "e.txt", &meta).unwrap();
        assert!(staged(&o).is_empty());
        let mut s = o.begin("13-0").unwrap();
        o.prepare(&mut s, &meta).unwrap();
        o.abort(s);
        assert!(staged(&o).is_empty());
    }

    #[test]
    fn cleanup_staging_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut s = o.begin("5-0").unwrap();
        s.write_all(b"half").unwrap();
        drop(s);
        std::fs::write(o.staging_dir().join("5-0.ferry.json"), b"{}").unwrap();
        assert_eq!(o.cleanup_staging().unwrap(), 2);
        assert!(staged(&o).is_empty());
        assert_eq!(o.cleanup_staging().unwrap(), 0);
    }

    #[test]
    fn begin_truncates_a_leftover_and_refuses_path_like_names() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        std::fs::write(o.staging_dir().join("6-0.part"), b"stale bytes").unwrap();
        let mut s = o.begin("6-0").unwrap();
        s.write_all(b"new").unwrap();
        let path = o.commit(s, "n.txt", &json!({})).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"new");
        for bad in ["", "../x", "a/b", ".x"] {
            assert!(o.begin(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn disk_full_maps_to_disk_full_and_removes_the_staging_file() {
        let e = io_error(
            Path::new("/x"),
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(matches!(e, OutboxError::DiskFull { .. }));
        assert!(e.to_string().contains("disk is full"), "{e}");
        let e = io_error(
            Path::new("/x"),
            std::io::Error::from_raw_os_error(libc::EDQUOT),
        );
        assert!(matches!(e, OutboxError::DiskFull { .. }));
        let e = io_error(
            Path::new("/x"),
            std::io::Error::from_raw_os_error(libc::EIO),
        );
        assert!(matches!(e, OutboxError::Io { .. }));

        // /dev/full answers every write with ENOSPC: swap it in as the
        // staging file's writer.
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut s = o.begin("8-0").unwrap();
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        s.writer = DirectWriter::new(full);
        let e = s
            .write_all(&vec![0u8; super::super::direct_writer::BUFFER_BYTES + 64])
            .unwrap_err();
        assert!(matches!(e, OutboxError::DiskFull { .. }), "{e}");
        assert!(staged(&o).is_empty(), "nothing partial left");
        o.abort(s);
        assert!(visible(&o).is_empty());
    }
}
