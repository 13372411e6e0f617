//! A client for ClamAV's scanning daemon, `clamd`, over its local Unix
//! socket: the one piece of the guard that talks to another process.
//!
//! Why clamd and not a library: the engine and its signature database are
//! maintained by ClamAV and updated without rebuilding ferry, and a crash
//! or a hang in the engine's parsers stays in clamd's process. The price is
//! that the engine may be down, slow or wrong, so every answer is checked
//! strictly and every wait is bounded: anything but a well-formed
//! `stream: OK` is *not* a pass ([`ClamdError`] says what to do instead).
//!
//! The protocol (clamd(8)): commands are sent with the `z` prefix and end
//! in NUL, replies end in NUL. `zINSTREAM` takes the data as chunks, each
//! preceded by its length as 4 bytes big-endian, ended by a zero-length
//! chunk; clamd answers `stream: OK`, `stream: NAME FOUND` or `… ERROR`
//! (`INSTREAM size limit exceeded. ERROR` once the stream passes its
//! `StreamMaxLength`, after which it closes the connection). `zVERSION`
//! answers `ClamAV 1.4.3/27000/Thu Dec  4 09:00:00 2026` (engine, daily
//! database version, its build time) or only `ClamAV 1.4.3` when no
//! official database is loaded. `zRELOAD` answers `RELOADING`: a later
//! signature import channel verifies a database file, puts it into
//! clamd's database directory and calls [`Clamd::reload`].

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest reply accepted from clamd. A verdict is one short line per
/// signature; anything longer is not a clamd answer.
pub const REPLY_MAX_BYTES: usize = 4096;
/// Largest chunk sent in one `INSTREAM` frame. clamd accepts any chunk up
/// to its `StreamMaxLength`; 64 KiB keeps the guard's buffer small.
pub const CHUNK_MAX_BYTES: usize = 64 * 1024;
/// Longest signature name kept in a report (ClamAV's own names are well
/// under 200 characters).
pub const SIGNATURE_MAX_CHARS: usize = 256;
/// Default `malware.timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default `malware.max_stream_bytes`: clamd's default `StreamMaxLength`
/// (25 MiB). The two must be raised together.
pub const DEFAULT_MAX_STREAM_BYTES: u64 = 25 * 1024 * 1024;
/// Default `malware.socket`: Debian's `LocalSocket`.
pub const DEFAULT_SOCKET: &str = "/run/clamav/clamd.ctl";

/// Why a scan gave no verdict. None of these is a pass: the caller holds
/// or refuses the package (`malware.on_unavailable`), except for
/// [`ClamdError::StreamLimit`] and [`ClamdError::TooLarge`], which are
/// about the package, not the engine (see [`ClamdError::is_about_package`]).
#[derive(Debug, thiserror::Error)]
pub enum ClamdError {
    /// The socket could not be connected to.
    #[error("clamd is not reachable at {}: {source}; start clamd (Debian: `systemctl start clamav-daemon`) and check `malware.socket` and that ferry's user may connect to the socket (group `clamav`)", socket.display())]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// clamd took longer than `timeout_ms` to accept data or to answer.
    #[error("clamd at {} did not {what} within {timeout_ms} ms (malware.timeout_ms); check clamd's load and log, or raise timeout_ms", socket.display())]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// `accept the connection`, `take the data` or `answer`.
        what: &'static str,
        /// The limit.
        timeout_ms: u64,
    },
    /// The connection broke.
    #[error("the connection to clamd at {} broke: {source}; see clamd's log (a restart or a crash?)", socket.display())]
    Io {
        /// The socket.
        socket: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// clamd refused the stream as longer than its `StreamMaxLength`.
    #[error("clamd refused the data as longer than its StreamMaxLength; raise StreamMaxLength in clamd.conf and malware.max_stream_bytes together (they must agree)")]
    StreamLimit,
    /// The data is longer than `malware.max_stream_bytes`: not sent.
    #[error("{bytes} bytes or more to scan, more than malware.max_stream_bytes ({limit}); raise it together with StreamMaxLength in clamd.conf, or send smaller files")]
    TooLarge {
        /// Bytes seen so far.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// clamd answered with an error of its own.
    #[error("clamd reported an error: {message}; see clamd's log")]
    Engine {
        /// clamd's message (printable ASCII, bounded).
        message: String,
    },
    /// clamd's answer is not one the protocol allows.
    #[error("clamd's answer is not understood ({reply:?}); is {} a clamd socket?", socket.display())]
    Reply {
        /// The socket.
        socket: PathBuf,
        /// The answer (printable ASCII, bounded).
        reply: String,
    },
}

impl ClamdError {
    /// True when the package itself cannot be scanned under the configured
    /// limits (retrying will not help); false when the engine failed.
    pub fn is_about_package(&self) -> bool {
        matches!(self, ClamdError::StreamLimit | ClamdError::TooLarge { .. })
    }
}

/// What clamd said about one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// No signature matched.
    Clean,
    /// These signatures matched (at least one; several with clamd's
    /// `AllMatchScan`).
    Found(Vec<String>),
}

/// The engine's and its database's versions, from `VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineVersion {
    /// `ClamAV 1.4.3`.
    pub engine: String,
    /// The daily database's version, when an official database is loaded.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub database_version: Option<u64>,
    /// Its build time as clamd gives it (`Thu Dec  4 09:00:00 2026`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub database_date: Option<String>,
    /// The same as seconds since the Unix epoch (clamd prints its local
    /// time; read as UTC, off by at most a day's fraction).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub database_unix_s: Option<i64>,
}

impl EngineVersion {
    /// Whole days from the database's build time to `now_unix_s`; `None`
    /// when the age is unknown (no official database loaded).
    pub fn database_age_days(&self, now_unix_s: i64) -> Option<u64> {
        let built = self.database_unix_s?;
        Some(u64::try_from(now_unix_s.saturating_sub(built)).unwrap_or(0) / 86_400)
    }

    /// One line: `ClamAV 1.4.3, database 27000 (Thu Dec  4 09:00:00 2026)`.
    pub fn describe(&self) -> String {
        match (&self.database_version, &self.database_date) {
            (Some(v), Some(d)) => format!("{}, database {v} ({d})", self.engine),
            (Some(v), None) => format!("{}, database {v}", self.engine),
            _ => format!(
                "{}, no official database (custom signatures only)",
                self.engine
            ),
        }
    }
}

/// A clamd at a Unix socket, with the limits of one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clamd {
    socket: PathBuf,
    timeout: Duration,
    max_stream_bytes: u64,
}

impl Clamd {
    /// A client of the clamd listening at `socket`. `timeout` bounds the
    /// connect, each write of data, and the wait for the answer after the
    /// last byte; `max_stream_bytes` is clamd's `StreamMaxLength`.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration, max_stream_bytes: u64) -> Clamd {
        Clamd {
            socket: socket.into(),
            timeout,
            max_stream_bytes,
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// clamd's `StreamMaxLength` as configured in the profile.
    pub fn max_stream_bytes(&self) -> u64 {
        self.max_stream_bytes
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn connect(&self) -> Result<UnixStream, ClamdError> {
        let err = |source| ClamdError::Connect {
            socket: self.socket.clone(),
            source,
        };
        // A full accept queue would block a plain connect(2) without
        // bound; socket2 connects non-blocking and waits at most `timeout`.
        let addr = socket2::SockAddr::unix(&self.socket).map_err(err)?;
        let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
            .map_err(err)?;
        sock.connect_timeout(&addr, self.timeout).map_err(|e| {
            if e.kind() == io::ErrorKind::TimedOut {
                ClamdError::Timeout {
                    socket: self.socket.clone(),
                    what: "accept the connection",
                    timeout_ms: self.timeout_ms(),
                }
            } else {
                err(e)
            }
        })?;
        let stream = UnixStream::from(std::os::fd::OwnedFd::from(sock));
        stream
            .set_write_timeout(Some(self.timeout))
            .and_then(|()| stream.set_read_timeout(Some(self.timeout)))
            .map_err(err)?;
        Ok(stream)
    }

    fn io_err(&self, what: &'static str, e: io::Error) -> ClamdError {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            ClamdError::Timeout {
                socket: self.socket.clone(),
                what,
                timeout_ms: self.timeout_ms(),
            }
        } else {
            ClamdError::Io {
                socket: self.socket.clone(),
                source: e,
            }
        }
    }

    /// Sends a one-word command and returns the NUL-terminated reply.
    fn command(&self, cmd: &[u8]) -> Result<String, ClamdError> {
        let mut s = self.connect()?;
        s.write_all(cmd)
            .map_err(|e| self.io_err("take the data", e))?;
        let reply = read_reply(&mut s, Instant::now() + self.timeout)
            .map_err(|e| self.io_err("answer", e))?;
        let one = single(&reply).ok_or_else(|| self.bad_reply(&reply))?;
        Ok(one.to_owned())
    }

    fn closed(&self) -> ClamdError {
        ClamdError::Io {
            socket: self.socket.clone(),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "clamd closed the connection without an answer",
            ),
        }
    }

    fn bad_reply(&self, reply: &[u8]) -> ClamdError {
        if reply.is_empty() {
            return self.closed();
        }
        ClamdError::Reply {
            socket: self.socket.clone(),
            reply: printable(reply),
        }
    }

    /// `VERSION`: the engine and its database.
    pub fn version(&self) -> Result<EngineVersion, ClamdError> {
        let r = self.command(b"zVERSION\0")?;
        parse_version(&r).ok_or_else(|| self.bad_reply(r.as_bytes()))
    }

    /// `RELOAD`: clamd reads its database directory again (in the
    /// background; it goes on scanning with the old database meanwhile).
    /// For the signature import channel, after a database file was
    /// verified and put in place.
    pub fn reload(&self) -> Result<(), ClamdError> {
        let r = self.command(b"zRELOAD\0")?;
        if r == "RELOADING" {
            Ok(())
        } else {
            Err(self.bad_reply(r.as_bytes()))
        }
    }

    /// Starts a stream scan: feed it with [`Scan::write`], end it with
    /// [`Scan::finish`].
    pub fn start(&self) -> Result<Scan<'_>, ClamdError> {
        let mut s = self.connect()?;
        s.write_all(b"zINSTREAM\0")
            .map_err(|e| self.io_err("take the data", e))?;
        Ok(Scan {
            clamd: self,
            stream: s,
            sent: 0,
            pending: Vec::with_capacity(CHUNK_MAX_BYTES),
        })
    }

    /// Scans everything `r` gives, to its end.
    pub fn scan_reader(&self, r: &mut dyn Read) -> Result<Detection, ClamdError> {
        let mut scan = self.start()?;
        let mut buf = vec![0u8; CHUNK_MAX_BYTES];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ClamdError::Io {
                        socket: self.socket.clone(),
                        source: io::Error::new(e.kind(), format!("reading the data: {e}")),
                    })
                }
            };
            scan.write(&buf[..n])?;
        }
        scan.finish()
    }
}

/// One `INSTREAM` scan in progress. Data is gathered into chunks of
/// [`CHUNK_MAX_BYTES`]: callers write whatever their parser read (often a
/// few KiB), and a frame per read would cost a system call each.
pub struct Scan<'c> {
    clamd: &'c Clamd,
    stream: UnixStream,
    sent: u64,
    pending: Vec<u8>,
}

impl Scan<'_> {
    /// Bytes taken so far (sent or about to be).
    pub fn bytes(&self) -> u64 {
        self.sent + self.pending.len() as u64
    }

    /// Takes `data` for the stream. Refuses, before sending it, data that
    /// would make the stream longer than `max_stream_bytes`.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), ClamdError> {
        let total = self.bytes().saturating_add(data.len() as u64);
        if total > self.clamd.max_stream_bytes {
            return Err(ClamdError::TooLarge {
                bytes: total,
                limit: self.clamd.max_stream_bytes,
            });
        }
        while !data.is_empty() {
            let room = CHUNK_MAX_BYTES - self.pending.len();
            let (now, rest) = data.split_at(room.min(data.len()));
            self.pending.extend_from_slice(now);
            data = rest;
            if self.pending.len() == CHUNK_MAX_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Sends the gathered data as one chunk.
    fn flush(&mut self) -> Result<(), ClamdError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // At most CHUNK_MAX_BYTES, which fits in u32.
        let len = u32::try_from(self.pending.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes();
        let sent = self
            .stream
            .write_all(&len)
            .and_then(|()| self.stream.write_all(&self.pending));
        if let Err(e) = sent {
            return Err(self.after_write_error(e));
        }
        self.sent += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// clamd stops reading and closes once a stream passes its
    /// `StreamMaxLength`, after saying so: a failed write reads that
    /// answer, if there is one, to name the cause.
    fn after_write_error(&mut self, e: io::Error) -> ClamdError {
        let deadline = Instant::now() + self.clamd.timeout.min(Duration::from_secs(1));
        if let Ok(reply) = read_reply(&mut self.stream, deadline) {
            if let Some(err) = self.classify(&reply).err() {
                if !matches!(err, ClamdError::Reply { .. }) {
                    return err;
                }
            }
        }
        self.clamd.io_err("take the data", e)
    }

    /// Ends the stream and waits for the verdict.
    pub fn finish(mut self) -> Result<Detection, ClamdError> {
        self.flush()?;
        if let Err(e) = self.stream.write_all(&0u32.to_be_bytes()) {
            return Err(self.after_write_error(e));
        }
        let reply = read_reply(&mut self.stream, Instant::now() + self.clamd.timeout)
            .map_err(|e| self.clamd.io_err("answer", e))?;
        self.classify(&reply)
    }

    fn classify(&self, reply: &[u8]) -> Result<Detection, ClamdError> {
        if reply.is_empty() {
            return Err(self.clamd.closed());
        }
        parse_scan_reply(reply).map_err(|kind| match kind {
            ReplyError::StreamLimit => ClamdError::StreamLimit,
            ReplyError::Engine(message) => ClamdError::Engine { message },
            ReplyError::Malformed => self.clamd.bad_reply(reply),
        })
    }
}

/// Reads until clamd closes the connection or the reply is complete,
/// at most [`REPLY_MAX_BYTES`], by `deadline`. A reply that does not end
/// in NUL is truncated and refused by the parsers.
fn read_reply(s: &mut UnixStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        // The deadline is for the whole reply: a server trickling one
        // byte at a time cannot stretch it.
        s.set_read_timeout(Some(left))?;
        let n = match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // clamd may reset a connection it gave up on after answering.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !out.is_empty() => {
                return Ok(out)
            }
            Err(e) => return Err(e),
        };
        out.extend_from_slice(&buf[..n]);
        if out.len() > REPLY_MAX_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a reply longer than {REPLY_MAX_BYTES} bytes"),
            ));
        }
    }
}

/// Parses a complete `INSTREAM` reply as read from the socket (NUL
/// terminators included): what [`Scan::finish`] does with the bytes, for
/// fuzzing and for callers with a transport of their own. Only the exact
/// `stream: OK\0` is [`Detection::Clean`].
pub fn parse_instream_reply(reply: &[u8]) -> Result<Detection, ClamdError> {
    match parse_scan_reply(reply) {
        Ok(d) => Ok(d),
        Err(ReplyError::StreamLimit) => Err(ClamdError::StreamLimit),
        Err(ReplyError::Engine(message)) => Err(ClamdError::Engine { message }),
        Err(ReplyError::Malformed) => Err(ClamdError::Reply {
            socket: PathBuf::new(),
            reply: printable(reply),
        }),
    }
}

/// Parses a complete `VERSION` reply as read from the socket (one message
/// ending in NUL); `None` when it is not one.
pub fn parse_version_reply(reply: &[u8]) -> Option<EngineVersion> {
    parse_version(single(reply)?)
}

/// The one NUL-terminated message of a reply.
fn single(reply: &[u8]) -> Option<&str> {
    let body = reply.strip_suffix(b"\0")?;
    if body.is_empty() || body.contains(&0) {
        return None;
    }
    let s = std::str::from_utf8(body).ok()?;
    s.bytes().all(|b| (0x20..0x7F).contains(&b)).then_some(s)
}

/// Bounded, printable rendering of bytes from clamd (for an error).
fn printable(b: &[u8]) -> String {
    let mut s: String = b
        .iter()
        .take(200)
        .map(|&c| {
            if (0x20..0x7F).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect();
    if b.len() > 200 {
        s.push('…');
    }
    s
}

#[derive(Debug, PartialEq, Eq)]
enum ReplyError {
    StreamLimit,
    Engine(String),
    Malformed,
}

/// Parses an `INSTREAM` reply: one or more NUL-terminated messages, each
/// `stream: NAME FOUND`, or exactly one `stream: OK`, or an error.
fn parse_scan_reply(reply: &[u8]) -> Result<Detection, ReplyError> {
    let Some(body) = reply.strip_suffix(b"\0") else {
        return Err(ReplyError::Malformed);
    };
    let mut found = Vec::new();
    for (i, msg) in body.split(|&b| b == 0).enumerate() {
        let Some(msg) = std::str::from_utf8(msg)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| (0x20..0x7F).contains(&b)))
        else {
            return Err(ReplyError::Malformed);
        };
        if msg == "INSTREAM size limit exceeded. ERROR" {
            return Err(ReplyError::StreamLimit);
        }
        if let Some(e) = msg.strip_suffix(" ERROR") {
            return Err(ReplyError::Engine(printable(e.as_bytes())));
        }
        let Some(rest) = msg.strip_prefix("stream: ") else {
            return Err(ReplyError::Malformed);
        };
        if rest == "OK" {
            // OK only alone: "OK" after a FOUND is not an answer clamd gives.
            if i == 0 && !body.contains(&0) {
                return Ok(Detection::Clean);
            }
            return Err(ReplyError::Malformed);
        }
        let Some(name) = rest.strip_suffix(" FOUND") else {
            return Err(ReplyError::Malformed);
        };
        if name.is_empty()
            || name.chars().count() > SIGNATURE_MAX_CHARS
            || name.contains(' ')
            || name.contains(':')
        {
            return Err(ReplyError::Malformed);
        }
        found.push(name.to_owned());
    }
    if found.is_empty() {
        return Err(ReplyError::Malformed);
    }
    Ok(Detection::Found(found))
}

/// Parses `ClamAV 1.4.3` or `ClamAV 1.4.3/27000/Thu Dec  4 09:00:00 2026`.
fn parse_version(r: &str) -> Option<EngineVersion> {
    let mut parts = r.split('/');
    let engine = parts.next()?;
    let version = engine.strip_prefix("ClamAV ")?;
    if version.is_empty()
        || !version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-~+".contains(&b))
    {
        return None;
    }
    let db = parts.next();
    let date = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let (database_version, database_date, database_unix_s) = match (db, date) {
        (None, None) => (None, None, None),
        (Some(v), Some(d)) => {
            let v: u64 = v.parse().ok()?;
            let unix = parse_ctime(d);
            (Some(v), Some(d.to_owned()), unix)
        }
        _ => return None,
    };
    Some(EngineVersion {
        engine: engine.to_owned(),
        database_version,
        database_date,
        database_unix_s,
    })
}

/// `Thu Dec  4 09:00:00 2026` (ctime(3)) as seconds since the Unix epoch.
fn parse_ctime(s: &str) -> Option<i64> {
    let f: Vec<&str> = s.split_ascii_whitespace().collect();
    let [_, mon, day, hms, year] = f.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = i64::try_from(MONTHS.iter().position(|x| x == mon)?).ok()? + 1;
    let d: i64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let y: i64 = year.parse().ok().filter(|y| (1970..=9999).contains(y))?;
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    if t.next().is_some() || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn scan_replies_are_parsed_strictly() {
        assert_eq!(parse_scan_reply(b"stream: OK\0"), Ok(Detection::Clean));
        assert_eq!(
            parse_scan_reply(b"stream: Eicar-Test-Signature FOUND\0"),
            Ok(Detection::Found(vec!["Eicar-Test-Signature".into()]))
        );
        assert_eq!(
            parse_scan_reply(b"stream: A.UNOFFICIAL FOUND\0stream: B FOUND\0"),
            Ok(Detection::Found(vec!["A.UNOFFICIAL".into(), "B".into()]))
        );
        assert_eq!(
            parse_scan_reply(b"INSTREAM size limit exceeded. ERROR\0"),
            Err(ReplyError::StreamLimit)
        );
        assert_eq!(
            parse_scan_reply(b"stream: Can't allocate memory ERROR\0"),
            Err(ReplyError::Engine("stream: Can't allocate memory".into()))
        );
        for bad in [
            &b"stream: OK"[..],          // no NUL: truncated
            b"",                         // nothing
            b"\0",                       // empty message
            b"stream: OK\0stream: OK\0", // two verdicts
            b"stream: X FOUND\0stream: OK\0",
            b"stream:  FOUND\0",    // no name
            b"stream: a b FOUND\0", // a space in a name
            b"OK\0",
            b"stream: ok\0",
            b"UNKNOWN COMMAND\0",
            b"stream: OK\n\0",
            b"stream: \xFF FOUND\0",
        ] {
            assert_eq!(parse_scan_reply(bad), Err(ReplyError::Malformed), "{bad:?}");
        }
        let long = format!("stream: {} FOUND\0", "A".repeat(SIGNATURE_MAX_CHARS + 1));
        assert_eq!(
            parse_scan_reply(long.as_bytes()),
            Err(ReplyError::Malformed)
        );
    }

    proptest::proptest! {
        /// Any bytes from the socket: no panic, and only the one exact
        /// reply is a pass.
        #[test]
        fn only_stream_ok_is_clean(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if parse_scan_reply(&b) == Ok(Detection::Clean) {
                proptest::prop_assert_eq!(&b[..], &b"stream: OK\0"[..]);
            }
            let _ = parse_version(&String::from_utf8_lossy(&b));
            let _ = single(&b);
        }

        /// Replies built from the protocol's pieces: still only the exact
        /// one passes.
        #[test]
        fn near_misses_are_not_clean(parts in proptest::collection::vec(
            proptest::sample::select(vec!["stream: ", "OK", " FOUND", "\0", " ERROR", "X", " ", ":"]), 0..8)) {
            let b = parts.concat().into_bytes();
            if parse_scan_reply(&b) == Ok(Detection::Clean) {
                proptest::prop_assert_eq!(&b[..], &b"stream: OK\0"[..]);
            }
        }
    }

    #[test]
    fn versions_and_database_age() {
        let v = parse_version("ClamAV 1.4.3/27000/Thu Dec  4 09:00:00 2026").unwrap();
        assert_eq!(v.engine, "ClamAV 1.4.3");
        assert_eq!(v.database_version, Some(27000));
        // 2026-12-04T09:00:00Z
        assert_eq!(v.database_unix_s, Some(1_796_374_800));
        assert_eq!(v.database_age_days(1_796_374_800 + 8 * 86_400 + 5), Some(8));
        assert_eq!(v.database_age_days(0), Some(0));
        let bare = parse_version("ClamAV 1.4.3").unwrap();
        assert_eq!(bare.database_version, None);
        assert_eq!(bare.database_age_days(1_796_374_800), None);
        for bad in [
            "",
            "ClamAV",
            "ClamAV ",
            "clamav 1.0",
            "ClamAV 1.4.3/x/Thu Dec  4 09:00:00 2026",
            "ClamAV 1.4.3/27000",
            "ClamAV 1.4.3/1/2/3",
            "ClamAV 1 2",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
        assert_eq!(parse_ctime("Thu Jan  1 00:00:00 1970"), Some(0));
        assert_eq!(parse_ctime("Sat Feb 29 12:00:00 2020"), Some(1_582_977_600));
        assert_eq!(parse_ctime("Thu Foo  1 00:00:00 1970"), None);
        assert_eq!(parse_ctime("Thu Jan  1 25:00:00 1970"), None);
    }

    /// A server on a temporary socket that runs `serve` on each
    /// connection, in a thread.
    fn server(serve: fn(UnixStream)) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                std::thread::spawn(move || serve(c));
            }
        });
        (dir, path)
    }

    /// Reads an INSTREAM command and its chunks; returns the data.
    fn read_instream(c: &mut UnixStream) -> Vec<u8> {
        let mut cmd = [0u8; 10];
        c.read_exact(&mut cmd).unwrap();
        assert_eq!(&cmd, b"zINSTREAM\0");
        let mut data = Vec::new();
        loop {
            let mut len = [0u8; 4];
            c.read_exact(&mut len).unwrap();
            let n = u32::from_be_bytes(len) as usize;
            if n == 0 {
                return data;
            }
            let mut chunk = vec![0u8; n];
            c.read_exact(&mut chunk).unwrap();
            data.extend_from_slice(&chunk);
        }
    }

    #[test]
    fn chunks_are_framed_and_the_verdict_read() {
        let (_d, path) = server(|mut c| {
            let data = read_instream(&mut c);
            let reply: &[u8] = if data.windows(3).any(|w| w == b"bad") {
                b"stream: Test.Bad FOUND\0"
            } else {
                b"stream: OK\0"
            };
            c.write_all(reply).unwrap();
        });
        let clamd = Clamd::new(&path, Duration::from_secs(5), 1 << 20);
        let mut big = vec![b'x'; CHUNK_MAX_BYTES * 2 + 17];
        assert_eq!(clamd.scan_reader(&mut &big[..]).unwrap(), Detection::Clean);
        big.extend_from_slice(b"bad");
        assert_eq!(
            clamd.scan_reader(&mut &big[..]).unwrap(),
            Detection::Found(vec!["Test.Bad".into()])
        );
        // Over max_stream_bytes: refused before sending, never a pass.
        let small = Clamd::new(&path, Duration::from_secs(5), 100);
        let e = small.scan_reader(&mut &big[..]).unwrap_err();
        assert!(matches!(e, ClamdError::TooLarge { .. }), "{e}");
        assert!(e.is_about_package());
    }

    #[test]
    fn a_reply_that_never_comes_times_out() {
        let (_d, path) = server(|mut c| {
            let _ = read_instream(&mut c);
            // Hold the connection open and say nothing.
            std::thread::sleep(Duration::from_secs(30));
            drop(c);
        });
        let clamd = Clamd::new(&path, Duration::from_millis(300), 1 << 20);
        let t = Instant::now();
        let e = clamd.scan_reader(&mut &b"data"[..]).unwrap_err();
        assert!(
            matches!(e, ClamdError::Timeout { what: "answer", .. }),
            "{e}"
        );
        assert!(!e.is_about_package());
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_trickled_reply_cannot_stretch_the_deadline() {
        let (_d, path) = server(|mut c| {
            let _ = read_instream(&mut c);
            for b in b"stream: OK" {
                if c.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.write_all(b"\0");
        });
        let clamd = Clamd::new(&path, Duration::from_millis(400), 1 << 20);
        let e = clamd.scan_reader(&mut &b"data"[..]).unwrap_err();
        assert!(matches!(e, ClamdError::Timeout { .. }), "{e}");
    }

    #[test]
    fn oversized_garbled_and_closed_replies_are_errors() {
        let (_d, path) = server(|mut c| {
            let _ = read_instream(&mut c);
            let _ = c.write_all(&vec![b'A'; REPLY_MAX_BYTES + 10]);
        });
        let clamd = Clamd::new(&path, Duration::from_secs(5), 1 << 20);
        assert!(matches!(
            clamd.scan_reader(&mut &b"d"[..]).unwrap_err(),
            ClamdError::Io { .. }
        ));
        let (_d2, path2) = server(|mut c| {
            let _ = read_instream(&mut c);
            // Closed without a word.
        });
        let clamd = Clamd::new(&path2, Duration::from_secs(5), 1 << 20);
        let e = clamd.scan_reader(&mut &b"d"[..]).unwrap_err();
        assert!(e.to_string().contains("without an answer"), "{e}");
        let (_d3, path3) = server(|mut c| {
            let _ = read_instream(&mut c);
            let _ = c.write_all(b"stream: OK");
        });
        let clamd = Clamd::new(&path3, Duration::from_secs(5), 1 << 20);
        assert!(matches!(
            clamd.scan_reader(&mut &b"d"[..]).unwrap_err(),
            ClamdError::Reply { .. }
        ));
    }

    #[test]
    fn an_engine_that_dies_mid_stream_is_an_error() {
        let (_d, path) = server(|mut c| {
            let mut cmd = [0u8; 10];
            let _ = c.read_exact(&mut cmd);
            let mut first = [0u8; 1024];
            let _ = c.read_exact(&mut first);
            // Gone, without a word, in the middle of the data.
        });
        let clamd = Clamd::new(&path, Duration::from_secs(5), 64 << 20);
        let data = vec![b'x'; 8 << 20];
        let e = clamd.scan_reader(&mut &data[..]).unwrap_err();
        assert!(matches!(e, ClamdError::Io { .. }), "{e}");
        assert!(!e.is_about_package());
    }

    #[test]
    fn a_missing_socket_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let clamd = Clamd::new(dir.path().join("none.sock"), Duration::from_secs(1), 1);
        let e = clamd.version().unwrap_err();
        assert!(matches!(e, ClamdError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("start clamd"), "{e}");
    }

    #[test]
    fn version_and_reload_commands() {
        let (_d, path) = server(|mut c| {
            let mut cmd = Vec::new();
            let mut b = [0u8; 1];
            while c.read_exact(&mut b).is_ok() && b[0] != 0 {
                cmd.push(b[0]);
            }
            let reply: &[u8] = match &cmd[..] {
                b"zVERSION" => b"ClamAV 1.4.3/27000/Thu Dec  4 09:00:00 2026\0",
                b"zRELOAD" => b"RELOADING\0",
                _ => b"UNKNOWN COMMAND\0",
            };
            let _ = c.write_all(reply);
        });
        let clamd = Clamd::new(&path, Duration::from_secs(5), 1);
        assert_eq!(clamd.version().unwrap().database_version, Some(27000));
        clamd.reload().unwrap();
    }
}
