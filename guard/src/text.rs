//! Plain UTF-8 text: validated and scanned in blocks cut where no token
//! can straddle the cut; the dirty-word matcher carries its state from
//! block to block, so a marking split across blocks or lines is found.

use crate::inspect::{Ctx, Halt};
use crate::scan::{cut_point, ContentScan, SegMap};
use std::io::{self, Read};

/// Bytes read and scanned at a time.
pub(crate) const BLOCK_BYTES: usize = 256 * 1024;

pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Fills `buf[*len..]` from `r`; sets `eof` at the end.
pub(crate) fn fill(
    r: &mut dyn Read,
    buf: &mut [u8],
    len: &mut usize,
    eof: &mut bool,
) -> io::Result<()> {
    while *len < buf.len() && !*eof {
        match r.read(&mut buf[*len..]) {
            Ok(0) => *eof = true,
            Ok(n) => *len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) fn count_lines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

/// Checks that `seg` is UTF-8 text without NUL bytes; `Err` is the reason.
pub(crate) fn check_text(seg: &[u8], base: u64) -> Result<(), String> {
    if let Err(at) = crate::scan::validate_utf8(seg) {
        return Err(format!(
            "not UTF-8 text: invalid byte at offset {} (convert the file to UTF-8)",
            base + at as u64
        ));
    }
    if let Some(z) = memchr::memchr(0, seg) {
        return Err(format!(
            "a NUL byte at offset {}: binary data, not text",
            base + z as u64
        ));
    }
    Ok(())
}

pub(crate) fn inspect(ctx: &mut Ctx<'_>, r: &mut dyn Read) -> Result<(), Halt> {
    let mut scan = ContentScan::new(ctx.profile, false);
    let holdback = ctx
        .profile
        .dirty_words()
        .map_or(0, |d| d.words.max_span_bytes());
    let mut buf = vec![0u8; BLOCK_BYTES];
    let mut len = 0usize;
    let mut base = 0u64;
    let mut line = 1u64;
    let mut eof = false;
    let mut first = true;
    loop {
        fill(r, &mut buf, &mut len, &mut eof)?;
        if len == 0 {
            break;
        }
        let mut cut = if eof { len } else { cut_point(&buf[..len]) };
        if cut == 0 {
            cut = len;
        }
        let seg = &buf[..cut];
        check_text(seg, base).map_err(|r| ctx.reject(r))?;
        let skip = if first && seg.starts_with(BOM) { 3 } else { 0 };
        first = false;
        if scan.is_active() {
            scan.scan(&seg[skip..], &SegMap::Linear(base + skip as u64));
            if !scan.word_hits.is_empty() || !scan.pii_hits.is_empty() {
                let masked = ctx.record_hits(
                    &scan,
                    &seg[skip..],
                    &SegMap::Linear(base + skip as u64),
                    &mut |off| {
                        let i = usize::try_from(off.saturating_sub(base))
                            .unwrap_or(0)
                            .min(seg.len());
                        (Some(line + count_lines(&seg[..i])), None)
                    },
                )?;
                for m in masked {
                    ctx.edit(m.start, m.end, m.op)?;
                }
            }
        }
        line += count_lines(seg);
        base += cut as u64;
        buf.copy_within(cut..len, 0);
        len -= cut;
        ctx.flush_to(base.saturating_sub(holdback))?;
        if eof && len == 0 {
            break;
        }
    }
    Ok(())
}
