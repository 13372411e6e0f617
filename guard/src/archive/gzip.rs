//! Gzip streams (RFC 1952), concatenated members read as one stream, each
//! member's CRC-32 and length checked. Gzip is a wrapper, not a
//! container: its content is inspected at the same nesting level, named
//! after the package without `.gz` (`.tgz` → `.tar`).

use crate::inspect::{Ctx, Halt};
use crate::source::{content_problem, Counting, Metered};
use flate2::bufread::DeflateDecoder;
use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

/// Longest file name or comment field in a gzip header.
const FIELD_MAX: usize = 1024;

/// The name the content of `name` is inspected under.
fn inner_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".tgz") {
        format!("{}.tar", &name[..name.len() - 4])
    } else if lower.ends_with(".gz") {
        name[..name.len() - 3].to_string()
    } else {
        name.to_string()
    }
}

/// Inspects the gzip stream `r` (`compressed`: its size, or `u64::MAX`
/// when unknown) found at nesting level `depth` under `name`.
pub(crate) fn inspect(
    ctx: &mut Ctx<'_>,
    r: &mut dyn Read,
    compressed: u64,
    name: &str,
    depth: u32,
) -> Result<(), Halt> {
    let counter = Rc::new(Cell::new(0u64));
    let ratio_base = if compressed == u64::MAX {
        counter.clone()
    } else {
        Rc::new(Cell::new(compressed))
    };
    let counting = Counting {
        inner: r,
        count: counter,
    };
    let stream = GzStream {
        state: Some(St::Header(BufReader::with_capacity(64 * 1024, counting))),
        crc: crc32fast::Hasher::new(),
        size: 0,
    };
    let max_ratio = ctx.profile.archives.max_ratio;
    let mut m = Metered::new(
        stream,
        ctx.budget.clone(),
        ratio_base,
        max_ratio,
        "gzip".into(),
    );
    let inner = inner_name(name);
    let base = inner.rsplit('/').next().unwrap_or(&inner).to_string();
    ctx.member(&mut m, &base, 0, depth, false)
}

enum St<R> {
    Header(R),
    Body(DeflateDecoder<R>),
    Done(R),
}

struct GzStream<R> {
    state: Option<St<R>>,
    crc: crc32fast::Hasher,
    size: u32,
}

fn byte(r: &mut dyn BufRead) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn header<R: BufRead>(r: &mut R) -> io::Result<()> {
    let mut h = [0u8; 10];
    let n = crate::source::read_full(r, &mut h[..2])?;
    if n < 2 || h[0] != 0x1F || h[1] != 0x8B {
        return Err(content_problem(
            "gzip: data after the compressed stream is not a gzip member",
        ));
    }
    r.read_exact(&mut h[2..])?;
    if h[2] != 8 {
        return Err(content_problem("gzip: unknown compression method"));
    }
    let flg = h[3];
    if flg & 0xE0 != 0 {
        return Err(content_problem("gzip: reserved header flags are set"));
    }
    if flg & 0x04 != 0 {
        let xlen = usize::from(byte(r)?) | (usize::from(byte(r)?) << 8);
        let mut x = vec![0u8; xlen];
        r.read_exact(&mut x)?;
    }
    for (bit, what) in [(0x08, "file name"), (0x10, "comment")] {
        if flg & bit != 0 {
            let mut n = 0;
            while byte(r)? != 0 {
                n += 1;
                if n > FIELD_MAX {
                    return Err(content_problem(format!(
                        "gzip: a header {what} longer than {FIELD_MAX} bytes"
                    )));
                }
            }
            if bit == 0x10 && n > 0 {
                return Err(content_problem(
                    "gzip: the header has a comment, which would not be inspected; remove it",
                ));
            }
        }
    }
    if flg & 0x02 != 0 {
        let mut c = [0u8; 2];
        r.read_exact(&mut c)?;
    }
    Ok(())
}

impl<R: BufRead> Read for GzStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state.take() {
                None => return Err(content_problem("gzip: the stream failed earlier")),
                Some(St::Done(r)) => {
                    self.state = Some(St::Done(r));
                    return Ok(0);
                }
                Some(St::Header(mut r)) => {
                    header(&mut r)?;
                    self.crc = crc32fast::Hasher::new();
                    self.size = 0;
                    self.state = Some(St::Body(DeflateDecoder::new(r)));
                }
                Some(St::Body(mut d)) => {
                    if buf.is_empty() {
                        self.state = Some(St::Body(d));
                        return Ok(0);
                    }
                    let n = d.read(buf)?;
                    if n > 0 {
                        self.crc.update(&buf[..n]);
                        self.size = self.size.wrapping_add(n as u32);
                        self.state = Some(St::Body(d));
                        return Ok(n);
                    }
                    let mut r = d.into_inner();
                    let mut t = [0u8; 8];
                    r.read_exact(&mut t)?;
                    let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                    let isize = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
                    if crc != self.crc.clone().finalize() || isize != self.size {
                        return Err(content_problem(
                            "gzip: the CRC or length in the trailer does not match (corrupt or truncated)",
                        ));
                    }
                    if r.fill_buf()?.is_empty() {
                        self.state = Some(St::Done(r));
                        return Ok(0);
                    }
                    self.state = Some(St::Header(r));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_names() {
        assert_eq!(inner_name("a.csv.gz"), "a.csv");
        assert_eq!(inner_name("b.TGZ"), "b.tar");
        assert_eq!(inner_name("c.tar.gz"), "c.tar");
    }
}
