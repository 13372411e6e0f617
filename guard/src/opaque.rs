//! PDF and images: identified and checked for a complete structure
//! (truncated files and data appended after the end are refused), but not
//! looked into. Under a profile that asks for dirty-word or personal-data
//! checks such content is held for review, since the guard cannot vouch
//! for what it shows.

use crate::inspect::{Ctx, Halt};
use crate::report::{Action, FindingKind};
use crate::sniff::Kind;
use crate::source::read_full;
use std::io::Read;

/// Bytes at the end of a PDF searched for `%%EOF`.
const PDF_TAIL_BYTES: usize = 1024;
/// Longest PNG chunk (the PNG limit).
const PNG_CHUNK_MAX: u32 = 0x7FFF_FFFF;

pub(crate) fn inspect(ctx: &mut Ctx<'_>, r: &mut dyn Read, kind: Kind) -> Result<(), Halt> {
    let problem = match kind {
        Kind::Png => png(r)?,
        _ => {
            let (head, tail, size) = read_through(r)?;
            check(kind, &head, &tail, size)
        }
    };
    if let Some(p) = problem {
        return Err(ctx.reject(p));
    }
    uninspectable(ctx, kind);
    Ok(())
}

/// Under a profile that asks for content checks, content the guard cannot
/// look into is held for a reviewer.
pub(crate) fn uninspectable(ctx: &mut Ctx<'_>, kind: Kind) {
    if ctx.profile.inspects_content() {
        let (detector, what) = match kind {
            Kind::Pdf => ("pdf", "a PDF"),
            Kind::Png => ("png", "a PNG image"),
            Kind::Jpeg => ("jpeg", "a JPEG image"),
            Kind::Gif => ("gif", "a GIF image"),
            _ => ("tiff", "a TIFF image"),
        };
        let loc = ctx.location(None, None, None);
        ctx.finding(
            FindingKind::Uninspectable,
            detector,
            loc,
            None,
            None,
            Action::Review,
        );
        ctx.add_reason(format!(
            "the content of {what} cannot be searched for dirty words or personal data: a reviewer must look at it"
        ));
    }
}

/// Reads everything; returns the first 64 bytes, the last
/// [`PDF_TAIL_BYTES`] and the size.
fn read_through(r: &mut dyn Read) -> Result<(Vec<u8>, Vec<u8>, u64), Halt> {
    let mut head = Vec::with_capacity(64);
    let mut tail: Vec<u8> = Vec::with_capacity(2 * PDF_TAIL_BYTES);
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = read_full(r, &mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if head.len() < 64 {
            let k = (64 - head.len()).min(n);
            head.extend_from_slice(&chunk[..k]);
        }
        tail.extend_from_slice(&chunk[n.saturating_sub(PDF_TAIL_BYTES)..]);
        if tail.len() > PDF_TAIL_BYTES {
            tail.drain(..tail.len() - PDF_TAIL_BYTES);
        }
        size += n as u64;
    }
    Ok((head, tail, size))
}

fn check(kind: Kind, head: &[u8], tail: &[u8], size: u64) -> Option<String> {
    match kind {
        Kind::Pdf => {
            let version_ok = head.len() >= 8
                && head[5].is_ascii_digit()
                && head[6] == b'.'
                && head[7].is_ascii_digit();
            if !version_ok {
                return Some("not a PDF: the header has no version".into());
            }
            if memchr::memmem::find(tail, b"%%EOF").is_none() {
                return Some(
                    "truncated PDF, or data appended after it: no %%EOF near the end".into(),
                );
            }
            None
        }
        Kind::Jpeg => (!tail.ends_with(b"\xFF\xD9")).then(|| {
            "truncated JPEG, or data appended after it: it does not end with the EOI marker".into()
        }),
        Kind::Gif => (size < 14 || tail.last() != Some(&0x3B)).then(|| {
            "truncated GIF, or data appended after it: it does not end with the trailer".into()
        }),
        Kind::Tiff => {
            if head.len() < 8 {
                return Some("truncated TIFF: no header".into());
            }
            let off = if head[0] == b'I' {
                u32::from_le_bytes([head[4], head[5], head[6], head[7]])
            } else {
                u32::from_be_bytes([head[4], head[5], head[6], head[7]])
            };
            (off < 8 || u64::from(off) >= size)
                .then(|| "truncated TIFF: the first directory lies outside the file".into())
        }
        _ => None,
    }
}

/// Walks the PNG chunks with their CRCs: IHDR first, IEND last.
fn png(r: &mut dyn Read) -> Result<Option<String>, Halt> {
    let mut sig = [0u8; 8];
    if read_full(r, &mut sig)? < 8 {
        return Ok(Some("truncated PNG: no signature".into()));
    }
    let mut first = true;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut hdr = [0u8; 8];
        if read_full(r, &mut hdr)? < 8 {
            return Ok(Some("truncated PNG: it ends before the IEND chunk".into()));
        }
        let len = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let ty = [hdr[4], hdr[5], hdr[6], hdr[7]];
        if len > PNG_CHUNK_MAX || !ty.iter().all(u8::is_ascii_alphabetic) {
            return Ok(Some("corrupt PNG: a chunk header is invalid".into()));
        }
        if first && &ty != b"IHDR" {
            return Ok(Some("corrupt PNG: the first chunk is not IHDR".into()));
        }
        first = false;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&ty);
        let mut left = len as usize;
        while left > 0 {
            let k = left.min(buf.len());
            if read_full(r, &mut buf[..k])? < k {
                return Ok(Some("truncated PNG: a chunk ends early".into()));
            }
            crc.update(&buf[..k]);
            left -= k;
        }
        let mut c = [0u8; 4];
        if read_full(r, &mut c)? < 4 {
            return Ok(Some("truncated PNG: a chunk ends early".into()));
        }
        if u32::from_be_bytes(c) != crc.finalize() {
            return Ok(Some("corrupt PNG: a chunk checksum does not match".into()));
        }
        if &ty == b"IEND" {
            return Ok(None);
        }
    }
}
