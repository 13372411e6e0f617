//! The package's bytes and the readers stacked on them: positional reads
//! (so the masking writer can copy from the package while the inspection
//! reads ahead), digests, and the meters that enforce archive limits.
//!
//! I/O errors are told apart by origin: a failure of the package's own
//! storage ([`SourceFailure`]) is the machine's problem and becomes a
//! [`GuardError`](crate::GuardError); anything else while decoding
//! (corrupt deflate data, a limit) is the content's problem and becomes a
//! rejection with a reason.

use std::cell::Cell;
use std::io::{self, Read, Seek, SeekFrom};
use std::rc::Rc;

/// Bytes readable at any offset.
pub(crate) trait RandomRead {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn size(&self) -> u64;
}

impl RandomRead for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match std::os::unix::fs::FileExt::read_at(self, buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r.map_err(source_failure),
            }
        }
    }
    fn size(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

impl RandomRead for &[u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(off) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(rest) = self.get(off..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
    fn size(&self) -> u64 {
        self.len() as u64
    }
}

/// A sequential, seekable reader over a [`RandomRead`], ending at `end`.
pub(crate) struct AtReader<'a> {
    src: &'a dyn RandomRead,
    pos: u64,
    end: u64,
}

impl<'a> AtReader<'a> {
    pub(crate) fn new(src: &'a dyn RandomRead, end: u64) -> AtReader<'a> {
        AtReader { src, pos: 0, end }
    }
}

impl Read for AtReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.src.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for AtReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.end.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(t) => {
                self.pos = t;
                Ok(t)
            }
            None => Err(content_problem("seek before the start of the data")),
        }
    }
}

/// An I/O failure of the package's storage (not of its content).
#[derive(Debug)]
pub(crate) struct SourceFailure(pub io::Error);

impl std::fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for SourceFailure {}

pub(crate) fn source_failure(e: io::Error) -> io::Error {
    io::Error::other(SourceFailure(e))
}

/// A content problem met inside a reader (a limit, a checksum).
#[derive(Debug)]
pub(crate) struct ContentProblem(pub String);

impl std::fmt::Display for ContentProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ContentProblem {}

pub(crate) fn content_problem(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, ContentProblem(msg.into()))
}

/// What an I/O error means for the verdict.
pub(crate) enum Blame {
    /// The machine: report a [`GuardError`](crate::GuardError).
    Machine(io::Error),
    /// The content: reject with this reason.
    Content(String),
}

pub(crate) fn blame(e: io::Error) -> Blame {
    if e.get_ref().is_some_and(|r| r.is::<SourceFailure>()) {
        return match e.into_inner().map(|r| r.downcast::<SourceFailure>()) {
            Some(Ok(s)) => Blame::Machine(s.0),
            _ => Blame::Machine(io::Error::other("read failed")),
        };
    }
    if let Some(p) = e.get_ref().and_then(|r| r.downcast_ref::<ContentProblem>()) {
        return Blame::Content(p.0.clone());
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => Blame::Content("truncated: the data ends early".into()),
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
            Blame::Content(format!("corrupt compressed data ({e})"))
        }
        _ => Blame::Machine(e),
    }
}

/// Archive limits shared by every level of one inspection.
pub(crate) struct Budget {
    /// Bytes still allowed out of decompression and archive members.
    pub expanded_left: Cell<u64>,
    pub expanded_limit: u64,
    /// Bytes produced so far.
    pub expanded: Cell<u64>,
    pub members: Cell<u64>,
}

/// Below this many bytes out of one stream, the compression ratio is not
/// held against it: small, very regular files compress extremely well.
pub const RATIO_FLOOR_BYTES: u64 = 1024 * 1024;

/// Counts the bytes coming out of an archive member or decompressor
/// against the expanded-bytes budget and, past [`RATIO_FLOOR_BYTES`],
/// against `max_ratio × compressed bytes` (a size known up front, or a
/// counter the compressed side advances).
pub(crate) struct Metered<R> {
    inner: R,
    budget: Rc<Budget>,
    produced: u64,
    compressed: Rc<Cell<u64>>,
    max_ratio: u64,
    what: String,
}

impl<R: Read> Metered<R> {
    pub(crate) fn new(
        inner: R,
        budget: Rc<Budget>,
        compressed: Rc<Cell<u64>>,
        max_ratio: u64,
        what: String,
    ) -> Metered<R> {
        Metered {
            inner,
            budget,
            produced: 0,
            compressed,
            max_ratio,
            what,
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let n64 = n as u64;
        let left = self.budget.expanded_left.get();
        if n64 > left {
            return Err(content_problem(format!(
                "{}: expands beyond max_expanded_bytes ({} bytes): an archive bomb, or raise the limit",
                self.what, self.budget.expanded_limit
            )));
        }
        self.budget.expanded_left.set(left - n64);
        self.budget.expanded.set(self.budget.expanded.get() + n64);
        self.produced += n64;
        let cap = self.compressed.get().max(1).saturating_mul(self.max_ratio);
        if self.produced > RATIO_FLOOR_BYTES && self.produced > cap {
            return Err(content_problem(format!(
                "{}: compression ratio above max_ratio ({}): an archive bomb, or raise the limit",
                self.what, self.max_ratio
            )));
        }
        Ok(n)
    }
}

/// Counts bytes read into a shared counter (the compressed side of a
/// decompressor).
pub(crate) struct Counting<R> {
    pub inner: R,
    pub count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Reads `head` first, then the rest of `inner`: lets a member be sniffed
/// and then read from its start without seeking.
pub(crate) struct Prefixed<'a> {
    head: &'a [u8],
    pos: usize,
    inner: &'a mut dyn Read,
}

impl<'a> Prefixed<'a> {
    pub(crate) fn new(head: &'a [u8], inner: &'a mut dyn Read) -> Prefixed<'a> {
        Prefixed {
            head,
            pos: 0,
            inner,
        }
    }
}

impl Read for Prefixed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.head.len() {
            let n = (self.head.len() - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// Hashes (SHA-256) and counts everything read through it.
pub(crate) struct Digesting<'a> {
    inner: &'a mut dyn Read,
    pub ctx: ring::digest::Context,
    pub count: u64,
}

impl<'a> Digesting<'a> {
    pub(crate) fn new(inner: &'a mut dyn Read) -> Digesting<'a> {
        Digesting {
            inner,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            count: 0,
        }
    }
}

impl Read for Digesting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Fills `buf` as far as the reader allows; returns the bytes read
/// (fewer than `buf.len()` only at the end).
pub(crate) fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads and discards the rest of `r`.
pub(crate) fn drain(r: &mut dyn Read) -> io::Result<u64> {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A byte-at-a-time reader with one byte of look-ahead, its offset and
/// line, for the JSON and XML parsers.
pub(crate) struct Peek<'r> {
    r: &'r mut dyn Read,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    base: u64,
    eof: bool,
    pub(crate) line: u64,
}

impl<'r> Peek<'r> {
    pub(crate) fn new(r: &'r mut dyn Read) -> Peek<'r> {
        Peek {
            r,
            buf: vec![0u8; 64 * 1024],
            pos: 0,
            len: 0,
            base: 0,
            eof: false,
            line: 1,
        }
    }

    pub(crate) fn peek(&mut self) -> io::Result<Option<u8>> {
        if self.pos == self.len {
            if self.eof {
                return Ok(None);
            }
            self.base += self.len as u64;
            self.pos = 0;
            self.len = 0;
            loop {
                match self.r.read(&mut self.buf) {
                    Ok(0) => {
                        self.eof = true;
                        return Ok(None);
                    }
                    Ok(n) => {
                        self.len = n;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Some(self.buf[self.pos]))
    }

    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub(crate) fn bump(&mut self) {
        self.pos += 1;
    }

    pub(crate) fn skip_ws(&mut self) -> io::Result<()> {
        while let Some(c) = self.peek()? {
            match c {
                b' ' | b'\t' | b'\r' => self.bump(),
                b'\n' => {
                    self.line += 1;
                    self.bump();
                }
                _ => break,
            }
        }
        Ok(())
    }
}

/// GBK/GB18030 text read as UTF-8, as a stream in bounded memory. Bytes
/// that are not GB18030 are a content problem (named, with the offset),
/// never replaced: a replacement character could hide a marking.
pub(crate) struct Gb18030Reader<'a> {
    inner: &'a mut dyn Read,
    dec: encoding_rs::Decoder,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    done: bool,
    consumed: u64,
}

impl<'a> Gb18030Reader<'a> {
    pub(crate) fn new(inner: &'a mut dyn Read) -> Gb18030Reader<'a> {
        Gb18030Reader {
            inner,
            dec: encoding_rs::GB18030.new_decoder_without_bom_handling(),
            buf: vec![0u8; 64 * 1024],
            start: 0,
            end: 0,
            eof: false,
            done: false,
            consumed: 0,
        }
    }
}

impl Read for Gb18030Reader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // A UTF-8 character is at most 4 bytes: decode into a scratch
        // buffer when the caller's is smaller.
        if out.len() < 4 {
            let mut tmp = [0u8; 4];
            let n = self.read(&mut tmp)?;
            let k = n.min(out.len());
            out[..k].copy_from_slice(&tmp[..k]);
            return Ok(k);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            if self.start == self.end && !self.eof {
                let n = loop {
                    match self.inner.read(&mut self.buf) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                };
                self.start = 0;
                self.end = n;
                self.eof = n == 0;
            }
            let src = &self.buf[self.start..self.end];
            let (res, read, written) = self
                .dec
                .decode_to_utf8_without_replacement(src, out, self.eof);
            self.start += read;
            self.consumed += read as u64;
            match res {
                encoding_rs::DecoderResult::Malformed(_, _) => {
                    return Err(content_problem(format!(
                        "not GBK/GB18030 text: an invalid byte sequence before offset {}",
                        self.consumed
                    )))
                }
                encoding_rs::DecoderResult::InputEmpty => {
                    if self.eof {
                        self.done = true;
                    }
                }
                encoding_rs::DecoderResult::OutputFull => {}
            }
            if written > 0 {
                return Ok(written);
            }
        }
    }
}
