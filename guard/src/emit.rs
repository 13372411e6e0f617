//! Writing the masked package while the inspection streams: edits (byte
//! ranges of the original with their replacement) are registered as
//! findings are made and applied when the inspection says nothing before
//! a position can change any more. Nothing is written until the first
//! edit, so a clean package costs no writes; then the untouched prefix is
//! copied from the package by offset.

use crate::scan::decode_char;
use crate::source::RandomRead;
use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

/// Longest range a star mask may cover (merged overlapping matches).
const STAR_MAX_BYTES: u64 = 1024 * 1024;

/// What replaces a range of the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// These bytes (empty: delete the range).
    Replace(Vec<u8>),
    /// Every character becomes `*`, except white space, `,` and `"`, so
    /// records and quoting stay intact.
    Star,
}

/// Where the masked package goes.
pub(crate) enum Target {
    /// A temporary file in this directory (renamed by the caller).
    Dir(PathBuf),
    /// Memory.
    Memory,
}

/// The written masked package.
pub(crate) enum Sink {
    File(BufWriter<tempfile::NamedTempFile>),
    Memory(Vec<u8>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Memory(v) => v.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Memory(_) => Ok(()),
        }
    }
}

#[derive(Debug)]
pub(crate) enum EmitError {
    /// Writing the masked package failed.
    Output(io::Error),
    /// Reading the package failed.
    Input(io::Error),
    /// An edit came for bytes already written: a defect of a format
    /// handler. The package is rejected rather than passed half-masked.
    Order,
}

pub(crate) struct Emitter<'s> {
    src: &'s dyn RandomRead,
    target: Target,
    sink: Option<Sink>,
    /// Original bytes before this offset are written (or replaced).
    pos: u64,
    /// Non-overlapping edits (start, end, op), sorted by start.
    pending: VecDeque<(u64, u64, Op)>,
    digest: ring::digest::Context,
    /// A window of the original, read in large chunks: edits are often a
    /// few bytes apart, and one read per gap would cost a system call each.
    window: Vec<u8>,
    window_start: u64,
}

impl<'s> Emitter<'s> {
    pub(crate) fn new(src: &'s dyn RandomRead, target: Target) -> Emitter<'s> {
        Emitter {
            src,
            target,
            sink: None,
            pos: 0,
            pending: VecDeque::new(),
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            window: Vec::new(),
            window_start: 0,
        }
    }

    fn open(&mut self) -> Result<(), EmitError> {
        if self.sink.is_some() {
            return Ok(());
        }
        self.sink = Some(match &self.target {
            Target::Memory => Sink::Memory(Vec::new()),
            Target::Dir(d) => {
                let f = tempfile::Builder::new()
                    .prefix(".ferry-masked-")
                    .tempfile_in(d)
                    .map_err(EmitError::Output)?;
                Sink::File(BufWriter::with_capacity(256 * 1024, f))
            }
        });
        Ok(())
    }

    /// Registers an edit of `start..end`. Overlapping edits merge: a
    /// deletion that covers the other stays a deletion, anything else
    /// becomes a star mask over both. Edits in order of position cost
    /// O(1); others a search.
    pub(crate) fn edit(&mut self, start: u64, end: u64, op: Op) -> Result<(), EmitError> {
        if end < start || (end == start && op == Op::Star) {
            return Ok(());
        }
        self.open()?;
        if start < self.pos {
            return Err(EmitError::Order);
        }
        match self.pending.back() {
            None => {
                self.pending.push_back((start, end, op));
                return Ok(());
            }
            Some(&(_, last_end, _)) if start >= last_end && end > start => {
                self.pending.push_back((start, end, op));
                return Ok(());
            }
            _ => {}
        }
        // Entries that end after `start` and begin before `end` overlap.
        let lo = self
            .pending
            .partition_point(|e| e.1 <= start && e.0 < start);
        let mut hi = lo;
        while hi < self.pending.len()
            && (self.pending[hi].0 < end || (end == start && self.pending[hi].0 == start))
        {
            hi += 1;
        }
        let (mut s, mut e, mut op) = (start, end, op);
        let del = |o: &Op| matches!(o, Op::Replace(r) if r.is_empty());
        for (k, pe, pop) in self.pending.drain(lo..hi) {
            op = if del(&op) && s <= k && pe <= e {
                op
            } else if del(&pop) && k <= s && e <= pe {
                pop
            } else {
                Op::Star
            };
            s = s.min(k);
            e = e.max(pe);
        }
        self.pending.insert(lo, (s, e, op));
        Ok(())
    }

    /// Writes everything before `upto` whose edits are complete.
    pub(crate) fn flush_to(&mut self, upto: u64) -> Result<(), EmitError> {
        if self.sink.is_none() {
            return Ok(());
        }
        while let Some(&(s, e, _)) = self.pending.front() {
            if e > upto {
                break;
            }
            let Some((_, _, op)) = self.pending.pop_front() else {
                break;
            };
            self.copy(s)?;
            self.apply(s, e, &op)?;
            self.pos = e;
        }
        let lim = self.pending.front().map_or(upto, |&(s, _, _)| s.min(upto));
        self.copy(lim)
    }

    /// Makes the window hold the original from `at`; false at the end.
    fn fill_window(&mut self, at: u64) -> Result<bool, EmitError> {
        const CHUNK: usize = 256 * 1024;
        let end = self.window_start + self.window.len() as u64;
        if at >= self.window_start && at < end {
            return Ok(true);
        }
        self.window.resize(CHUNK, 0);
        let mut got = 0;
        while got < CHUNK {
            let n = self
                .src
                .read_at(&mut self.window[got..], at + got as u64)
                .map_err(EmitError::Input)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        self.window.truncate(got);
        self.window_start = at;
        Ok(got > 0)
    }

    /// Copies original bytes from `pos` to `to` (or the end).
    fn copy(&mut self, to: u64) -> Result<(), EmitError> {
        while self.pos < to {
            if !self.fill_window(self.pos)? {
                break;
            }
            let from = (self.pos - self.window_start) as usize;
            let lim = usize::try_from(to - self.window_start)
                .unwrap_or(usize::MAX)
                .min(self.window.len());
            let Some(sink) = &mut self.sink else {
                return Ok(());
            };
            let bytes = &self.window[from..lim];
            sink.write_all(bytes).map_err(EmitError::Output)?;
            self.digest.update(bytes);
            self.pos += bytes.len() as u64;
        }
        Ok(())
    }

    /// The original bytes `s..e` (at most [`STAR_MAX_BYTES`]).
    fn original(&mut self, s: u64, e: u64) -> Result<Vec<u8>, EmitError> {
        let mut out = Vec::with_capacity((e - s) as usize);
        let mut at = s;
        while at < e {
            if !self.fill_window(at)? {
                break;
            }
            let from = (at - self.window_start) as usize;
            let lim = usize::try_from(e - self.window_start)
                .unwrap_or(usize::MAX)
                .min(self.window.len());
            out.extend_from_slice(&self.window[from..lim]);
            at += (lim - from) as u64;
        }
        Ok(out)
    }

    fn apply(&mut self, s: u64, e: u64, op: &Op) -> Result<(), EmitError> {
        let starred;
        let out: &[u8] = match op {
            Op::Replace(r) => r,
            Op::Star => {
                if e - s > STAR_MAX_BYTES {
                    return Err(EmitError::Order);
                }
                starred = star(&self.original(s, e)?);
                &starred
            }
        };
        if let Some(sink) = &mut self.sink {
            sink.write_all(out).map_err(EmitError::Output)?;
            self.digest.update(out);
        }
        Ok(())
    }

    /// Writes the rest and returns the masked package and its SHA-256, or
    /// `None` if nothing was edited.
    pub(crate) fn finish(mut self) -> Result<Option<(Sink, String)>, EmitError> {
        if self.sink.is_none() {
            return Ok(None);
        }
        self.flush_to(u64::MAX)?;
        let Some(mut sink) = self.sink.take() else {
            return Ok(None);
        };
        sink.flush().map_err(EmitError::Output)?;
        Ok(Some((sink, hex::encode(self.digest.finish().as_ref()))))
    }
}

/// Star mask of raw bytes: one `*` per character, white space, `,` and
/// `"` kept.
pub(crate) fn star(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b.is_ascii_whitespace() || b == b',' || b == b'"' {
            out.push(b);
            i += 1;
            continue;
        }
        let len = decode_char(raw, i).map_or(1, |(_, l)| l);
        out.push(b'*');
        i += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &[u8], edits: &[(u64, u64, Op)], flushes: &[u64]) -> Vec<u8> {
        let mut em = Emitter::new(&src, Target::Memory);
        for (s, e, op) in edits {
            em.edit(*s, *e, op.clone()).unwrap();
        }
        for f in flushes {
            em.flush_to(*f).unwrap();
        }
        match em.finish().unwrap() {
            Some((Sink::Memory(v), _)) => v,
            _ => panic!("no output"),
        }
    }

    #[test]
    fn applies_and_merges_edits() {
        let src = b"name,phone\nzhang,13812345678\n";
        let out = run(src, &[(17, 28, Op::Replace(b"138****5678".to_vec()))], &[5]);
        assert_eq!(out, b"name,phone\nzhang,138****5678\n");
        let out = run(
            src,
            &[(11, 16, Op::Star), (4, 10, Op::Replace(vec![]))],
            &[],
        );
        assert_eq!(out, b"name\n*****,13812345678\n");
        // Overlapping: merged into one star mask.
        let out = run(
            src,
            &[(17, 25, Op::Star), (20, 28, Op::Replace(b"x".to_vec()))],
            &[],
        );
        assert_eq!(out, b"name,phone\nzhang,***********\n");
        let s: &[u8] = &src[..];
        let mut em = Emitter::new(&s, Target::Memory);
        em.edit(17, 18, Op::Star).unwrap();
        em.flush_to(20).unwrap();
        assert!(matches!(em.edit(12, 13, Op::Star), Err(EmitError::Order)));
        assert!(Emitter::new(&s, Target::Memory).finish().unwrap().is_none());
    }
}
