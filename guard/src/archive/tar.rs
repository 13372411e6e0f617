//! Tar archives (ustar, GNU long names, pax headers) read as a stream.
//! Header checksums are verified; links, devices, sparse and multi-volume
//! members are refused; metadata entries (long names, pax headers) are
//! bounded before they are read; padding and the space after the end
//! marker must be zero, so nothing uninspected rides along.

use super::{check_name, who, Names};
use crate::inspect::{Ctx, Halt};
use crate::source::{drain, read_full, Metered};
use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

/// Longest GNU long name.
const LONG_NAME_MAX: u64 = 4096;
/// Longest pax header.
const PAX_MAX: u64 = 64 * 1024;

fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        // Base-256 (GNU): big-endian, first byte's top bit set.
        if field[0] == 0xFF {
            return None;
        }
        let mut v: u64 = u64::from(field[0] & 0x7F);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let mut v: u64 = 0;
    let mut any = false;
    for &b in field {
        match b {
            b' ' if !any => continue,
            b'0'..=b'7' => {
                v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
                any = true;
            }
            b' ' | 0 => break,
            _ => return None,
        }
    }
    Some(v)
}

fn cstr(b: &[u8]) -> &[u8] {
    match memchr::memchr(0, b) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// Reads a metadata entry's data and its padding.
fn read_meta(r: &mut dyn Read, size: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut data = vec![0u8; size as usize];
    if (read_full(r, &mut data)? as u64) < size {
        return Ok(None);
    }
    let pad = ((512 - size % 512) % 512) as usize;
    let mut p = vec![0u8; pad];
    if read_full(r, &mut p)? < pad {
        return Ok(None);
    }
    Ok(Some(data))
}

/// `path` and `size` from pax records `LEN key=value\n`.
fn pax(data: &[u8]) -> Option<(Option<Vec<u8>>, Option<u64>)> {
    let mut path = None;
    let mut size = None;
    let mut rest = data;
    while !rest.is_empty() {
        let sp = memchr::memchr(b' ', rest)?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return None;
        }
        let rec = &rest[sp + 1..len - 1];
        let eq = memchr::memchr(b'=', rec)?;
        let (k, v) = (&rec[..eq], &rec[eq + 1..]);
        match k {
            b"path" => path = Some(v.to_vec()),
            b"size" => size = Some(std::str::from_utf8(v).ok()?.parse().ok()?),
            _ => {}
        }
        rest = &rest[len..];
    }
    Some((path, size))
}

/// Inspects a tar stream at nesting level `depth` (its members are at
/// `depth + 1`).
pub(crate) fn inspect(ctx: &mut Ctx<'_>, r: &mut dyn Read, depth: u32) -> Result<(), Halt> {
    let rej = |ctx: &mut Ctx<'_>, m: String| ctx.reject(format!("tar: {m}"));
    let max_ratio = ctx.profile.archives.max_ratio;
    let mut names = Names::default();
    let mut long_name: Option<Vec<u8>> = None;
    let mut pax_path: Option<Vec<u8>> = None;
    let mut pax_size: Option<u64> = None;
    let mut index = 0u64;
    loop {
        let mut hdr = [0u8; 512];
        let n = read_full(r, &mut hdr)?;
        if n == 0 {
            return Err(rej(ctx, "truncated: no end-of-archive marker".into()));
        }
        if n < 512 {
            return Err(rej(ctx, "truncated: a header is cut off".into()));
        }
        if hdr.iter().all(|&b| b == 0) {
            // The end: everything after must be zero padding.
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let k = read_full(r, &mut buf)?;
                if k == 0 {
                    return Ok(());
                }
                if buf[..k].iter().any(|&b| b != 0) {
                    return Err(rej(
                        ctx,
                        "data after the end-of-archive marker would not be inspected".into(),
                    ));
                }
            }
        }
        let stored = octal(&hdr[148..156]);
        let mut unsigned: u64 = 0;
        let mut signed: i64 = 0;
        for (i, &b) in hdr.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += u64::from(b);
            signed += i64::from(b as i8);
        }
        if stored.is_none()
            || (stored != Some(unsigned) && stored.map(|s| s as i64) != Some(signed))
        {
            return Err(rej(
                ctx,
                "a header checksum does not match (corrupt, or not a tar archive)".into(),
            ));
        }
        let Some(mut size) = octal(&hdr[124..136]) else {
            return Err(rej(ctx, "a header with an invalid size".into()));
        };
        let typeflag = hdr[156];
        match typeflag {
            b'x' | b'g' | b'L' => {
                let max = if typeflag == b'L' {
                    LONG_NAME_MAX
                } else {
                    PAX_MAX
                };
                if size > max {
                    return Err(rej(
                        ctx,
                        format!("a metadata entry larger than {max} bytes"),
                    ));
                }
                let Some(data) = read_meta(r, size)? else {
                    return Err(rej(ctx, "truncated: a metadata entry is cut off".into()));
                };
                match typeflag {
                    b'L' => long_name = Some(cstr(&data).to_vec()),
                    b'x' => {
                        let Some((p, s)) = pax(&data) else {
                            return Err(rej(ctx, "a malformed pax header".into()));
                        };
                        pax_path = p;
                        pax_size = s;
                    }
                    _ => {}
                }
                continue;
            }
            _ => {}
        }
        let name = if let Some(p) = pax_path.take() {
            p
        } else if let Some(l) = long_name.take() {
            l
        } else {
            let base = cstr(&hdr[0..100]);
            let prefix = if &hdr[257..262] == b"ustar" {
                cstr(&hdr[345..500])
            } else {
                &[]
            };
            if prefix.is_empty() {
                base.to_vec()
            } else {
                [prefix, b"/", base].concat()
            }
        };
        if let Some(s) = pax_size.take() {
            size = s;
        }
        // Every entry (directories too) counts, 0-based, so `member #N`
        // is the N-th entry `tar tvf` lists.
        let this = index;
        index += 1;
        let who = who(this);
        match typeflag {
            b'0' | 0 | b'7' | b'5' => {}
            b'1' | b'2' | b'K' => return Err(rej(ctx, format!("{who}: a hard or symbolic link"))),
            b'3' | b'4' | b'6' => return Err(rej(ctx, format!("{who}: a device or FIFO"))),
            b'S' => return Err(rej(ctx, format!("{who}: a sparse file"))),
            b'M' | b'V' | b'N' => {
                return Err(rej(
                    ctx,
                    format!("{who}: multi-volume and volume entries are not supported"),
                ))
            }
            t => {
                return Err(rej(
                    ctx,
                    format!("{who}: unknown entry type {:?}", char::from(t)),
                ))
            }
        }
        let name = check_name(&name, this).map_err(|m| rej(ctx, m))?;
        names.insert(&name, this).map_err(|m| rej(ctx, m))?;
        if typeflag == b'5' {
            if size != 0 {
                return Err(rej(ctx, format!("{who}: a directory with data")));
            }
            let m = ctx.budget.members.get() + 1;
            ctx.budget.members.set(m);
            continue;
        }
        let take = Read::take(&mut *r, size);
        let what = format!("tar {who}");
        let mut m = Metered::new(
            take,
            ctx.budget.clone(),
            Rc::new(Cell::new(size)),
            max_ratio,
            what,
        );
        ctx.member(&mut m, &name, this, depth + 1, true)?;
        drain(&mut m)?;
        if m.get_mut().limit() != 0 {
            return Err(rej(ctx, format!("{who}: truncated: the data ends early")));
        }
        let pad = ((512 - size % 512) % 512) as usize;
        let mut p = [0u8; 512];
        if read_full(r, &mut p[..pad])? < pad {
            return Err(rej(ctx, "truncated: padding is cut off".into()));
        }
        if p[..pad].iter().any(|&b| b != 0) {
            return Err(rej(
                ctx,
                format!("{who}: data hidden in the padding after it"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_headers() {
        assert_eq!(octal(b"0000644\0"), Some(0o644));
        assert_eq!(octal(b"   12 \0"), Some(0o12));
        assert_eq!(octal(b"\x80\0\0\0\0\0\0\0\0\0\x01\0"), Some(256));
        assert_eq!(octal(b"89"), None);
        assert_eq!(
            pax(b"16 path=a/b.csv\n"),
            Some((Some(b"a/b.csv".to_vec()), None))
        );
        assert_eq!(pax(b"99 path=x\n"), None);
    }
}
