//! Zip archives (stored and deflate, zip64), read from the central
//! directory with each member checked against its local header. The
//! member count is checked against the limit before the directory is read;
//! members must follow each other without gaps or overlaps from offset 0
//! to the central directory (overlapping members are how the densest zip
//! bombs work; gaps and comments could hide uninspected data); encrypted,
//! linked and multi-disk archives are refused.

use super::{check_name, who, Names, ReadSeek};
use crate::inspect::{Ctx, Halt};
use crate::profile::Disarm;
use crate::source::{content_problem, drain, Metered};
use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read, SeekFrom};
use std::rc::Rc;

const EOCD_SIG: u32 = 0x0605_4b50;
const Z64_LOCATOR_SIG: u32 = 0x0706_4b50;
const Z64_EOCD_SIG: u32 = 0x0606_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const LFH_SIG: u32 = 0x0403_4b50;
const DD_SIG: u32 = 0x0807_4b50;

fn u16le(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |x| u16::from_le_bytes([x[0], x[1]]))
}
fn u32le(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}
fn u64le(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |x| {
        u64::from_le_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]])
    })
}

fn read_at(f: &mut dyn ReadSeek, at: u64, buf: &mut [u8]) -> io::Result<()> {
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(buf)
}

/// Inspects the zip archive `f` of `size` bytes at nesting level `depth`
/// (0: the package); its members are at `depth + 1`.
pub(crate) fn inspect(
    ctx: &mut Ctx<'_>,
    f: &mut dyn ReadSeek,
    size: u64,
    depth: u32,
) -> Result<(), Halt> {
    let rej = |ctx: &mut Ctx<'_>, m: String| ctx.reject(format!("zip: {m}"));
    if size < 22 {
        return Err(rej(
            ctx,
            "truncated: shorter than an end-of-central-directory record".into(),
        ));
    }
    let tail_len = size.min(22 + 65_535);
    let mut tail = vec![0u8; tail_len as usize];
    read_at(f, size - tail_len, &mut tail)?;
    let mut found = None;
    for i in (0..=tail.len() - 22).rev() {
        if u32le(&tail, i) == EOCD_SIG && u16le(&tail, i + 20) as usize == tail.len() - i - 22 {
            found = Some(i);
            break;
        }
    }
    let Some(i) = found else {
        return Err(rej(
            ctx,
            "no end-of-central-directory record at the end (truncated, data appended, or not a zip)".into(),
        ));
    };
    let e = &tail[i..];
    let eocd_pos = size - tail_len + i as u64;
    if u16le(e, 20) != 0 {
        return Err(rej(
            ctx,
            "the archive has a comment, which would not be inspected; remove it".into(),
        ));
    }
    let (mut disk, mut cd_disk) = (u32::from(u16le(e, 4)), u32::from(u16le(e, 6)));
    let (mut n_disk, mut n) = (u64::from(u16le(e, 8)), u64::from(u16le(e, 10)));
    let (mut cd_size, mut cd_off) = (u64::from(u32le(e, 12)), u64::from(u32le(e, 16)));
    let mut cd_end = eocd_pos;
    if n == 0xFFFF || n_disk == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_off == 0xFFFF_FFFF {
        if eocd_pos < 20 {
            return Err(rej(ctx, "a zip64 archive without its locator".into()));
        }
        let mut loc = [0u8; 20];
        read_at(f, eocd_pos - 20, &mut loc)?;
        if u32le(&loc, 0) != Z64_LOCATOR_SIG {
            return Err(rej(ctx, "a zip64 archive without its locator".into()));
        }
        let z64_off = u64le(&loc, 8);
        let mut z = [0u8; 56];
        if beyond(z64_off.checked_add(56), eocd_pos - 20) {
            return Err(rej(
                ctx,
                "the zip64 end record lies outside the archive".into(),
            ));
        }
        read_at(f, z64_off, &mut z)?;
        let rec_len = u64le(&z, 4);
        if u32le(&z, 0) != Z64_EOCD_SIG
            || z64_off.checked_add(12).and_then(|x| x.checked_add(rec_len)) != Some(eocd_pos - 20)
        {
            return Err(rej(ctx, "a damaged zip64 end record".into()));
        }
        disk = u32le(&z, 16);
        cd_disk = u32le(&z, 20);
        n_disk = u64le(&z, 24);
        n = u64le(&z, 32);
        cd_size = u64le(&z, 40);
        cd_off = u64le(&z, 48);
        cd_end = z64_off;
    }
    if disk != 0 || cd_disk != 0 || n_disk != n {
        return Err(rej(
            ctx,
            "split (multi-disk) archives are not supported".into(),
        ));
    }
    let limits = &ctx.profile.archives;
    let (max_members, max_ratio) = (limits.max_members, limits.max_ratio);
    if ctx.budget.members.get().saturating_add(n) > max_members {
        return Err(ctx.reject(format!(
            "zip: {n} members, more than max_members ({max_members})"
        )));
    }
    if cd_off.checked_add(cd_size) != Some(cd_end) {
        return Err(rej(
            ctx,
            "data between the central directory and its end record (damaged, or data hidden there)"
                .into(),
        ));
    }
    // An office document (OOXML: `[Content_Types].xml`; ODF: `mimetype`
    // first) is recognised by its structure, whatever it is called, so
    // that its parts are typed by office rules (`.rels` is XML, macros and
    // embedded binaries are reported).
    let office = is_office(f, cd_off, cd_end, n)?;
    let saved = ctx.office;
    ctx.office = office;
    // `disarm = "strip"` on an office document that is the package itself:
    // its macros can be cut out (the archive is rewritten), so the member
    // loop keeps what the rewrite needs.
    let strip = office && depth == 0 && ctx.profile.disarm == Some(Disarm::Strip);
    // Under any `disarm`, the relationships of an office document are read
    // again after the member loop for links that reach out when it opens.
    let links = office && ctx.profile.disarm.is_some();
    let saved_strip = std::mem::replace(&mut ctx.office_strip, strip || links);
    let res = members(ctx, f, cd_off, cd_end, n, depth, max_ratio);
    ctx.office_strip = saved_strip;
    ctx.office = saved;
    let records = res?;
    if links {
        super::ooxml::external_links(ctx, f, &records)?;
        super::ooxml::dde(ctx, f, &records)?;
    }
    if strip && !ctx.strip_parts.is_empty() && !ctx.rejected() {
        let parts = std::mem::take(&mut ctx.strip_parts);
        super::ooxml::rewrite(ctx, f, &records, &parts, cd_off, size)?;
    }
    Ok(())
}

/// A member as the rewrite of a stripped office document needs it.
pub(crate) struct Record {
    pub name: String,
    /// Its local header's offset, and the end of its data (and data
    /// descriptor).
    pub local_off: u64,
    pub entry_end: u64,
    /// Where its (compressed) data starts.
    pub data_start: u64,
    pub method: u16,
    pub csize: u64,
    pub usize_: u64,
    pub zip64: bool,
    /// Its central directory header: the 46 fixed bytes, name and extra.
    pub cd_header: Vec<u8>,
}

/// Reads the central directory's names only: is this an office document?
/// Anything malformed says no (the member loop then refuses it).
fn is_office(f: &mut dyn ReadSeek, cd_off: u64, cd_end: u64, n: u64) -> Result<bool, Halt> {
    let mut pos = cd_off;
    for index in 0..n {
        let mut h = [0u8; 46];
        if beyond(pos.checked_add(46), cd_end) {
            return Ok(false);
        }
        read_at(f, pos, &mut h)?;
        if u32le(&h, 0) != CDH_SIG {
            return Ok(false);
        }
        let name_len = usize::from(u16le(&h, 28));
        let var_len = (name_len + usize::from(u16le(&h, 30)) + usize::from(u16le(&h, 32))) as u64;
        if beyond((pos + 46).checked_add(var_len), cd_end) {
            return Ok(false);
        }
        let mut name = vec![0u8; name_len];
        f.read_exact(&mut name)?;
        if name == b"[Content_Types].xml" || (index == 0 && name == b"mimetype") {
            return Ok(true);
        }
        pos += 46 + var_len;
    }
    Ok(false)
}

fn members(
    ctx: &mut Ctx<'_>,
    f: &mut dyn ReadSeek,
    cd_off: u64,
    cd_end: u64,
    n: u64,
    depth: u32,
    max_ratio: u64,
) -> Result<Vec<Record>, Halt> {
    let rej = |ctx: &mut Ctx<'_>, m: String| ctx.reject(format!("zip: {m}"));
    let mut records = Vec::new();
    let mut names = Names::default();
    let mut cd_pos = cd_off;
    let mut expect_local = 0u64;
    for index in 0..n {
        let mut h = [0u8; 46];
        if beyond(cd_pos.checked_add(46), cd_end) {
            return Err(rej(ctx, "the central directory ends early".into()));
        }
        read_at(f, cd_pos, &mut h)?;
        if u32le(&h, 0) != CDH_SIG {
            return Err(rej(ctx, "a damaged central directory".into()));
        }
        let made_by = u16le(&h, 4);
        let flags = u16le(&h, 8);
        let method = u16le(&h, 10);
        let crc = u32le(&h, 16);
        let mut csize = u64::from(u32le(&h, 20));
        let mut usize_ = u64::from(u32le(&h, 24));
        let name_len = usize::from(u16le(&h, 28));
        let extra_len = usize::from(u16le(&h, 30));
        let comment_len = usize::from(u16le(&h, 32));
        let ext_attr = u32le(&h, 38);
        let mut local_off = u64::from(u32le(&h, 42));
        let var_len = (name_len + extra_len + comment_len) as u64;
        if beyond((cd_pos + 46).checked_add(var_len), cd_end) {
            return Err(rej(ctx, "the central directory ends early".into()));
        }
        let mut var = vec![0u8; name_len + extra_len];
        f.read_exact(&mut var)?;
        cd_pos += 46 + var_len;
        let name_bytes = var[..name_len].to_vec();
        let extra = &var[name_len..];
        let name = check_name(&name_bytes, index).map_err(|m| rej(ctx, m))?;
        let who = who(index);
        if comment_len > 0 {
            return Err(rej(
                ctx,
                format!("{who}: a member comment, which would not be inspected; remove it"),
            ));
        }
        // Zip64 extended information.
        let mut zip64 = false;
        if usize_ == 0xFFFF_FFFF || csize == 0xFFFF_FFFF || local_off == 0xFFFF_FFFF {
            zip64 = true;
            let mut p = 0;
            let mut data: Option<&[u8]> = None;
            while p + 4 <= extra.len() {
                let id = u16le(extra, p);
                let len = usize::from(u16le(extra, p + 2));
                let Some(d) = extra.get(p + 4..p + 4 + len) else {
                    break;
                };
                if id == 1 {
                    data = Some(d);
                    break;
                }
                p += 4 + len;
            }
            let Some(d) = data else {
                return Err(rej(
                    ctx,
                    format!("{who}: zip64 sizes without a zip64 field"),
                ));
            };
            let mut q = 0;
            for v in [&mut usize_, &mut csize, &mut local_off] {
                if *v == 0xFFFF_FFFF {
                    if q + 8 > d.len() {
                        return Err(rej(ctx, format!("{who}: a short zip64 field")));
                    }
                    *v = u64le(d, q);
                    q += 8;
                }
            }
        }
        if flags & 0x0001 != 0 || flags & 0x0040 != 0 {
            return Err(rej(
                ctx,
                format!("{who}: encrypted members cannot be inspected"),
            ));
        }
        if method != 0 && method != 8 {
            return Err(rej(
                ctx,
                format!(
                    "{who}: compression method {method} is not supported (only stored and deflate)"
                ),
            ));
        }
        names.insert(&name, index).map_err(|m| rej(ctx, m))?;
        if made_by >> 8 == 3 {
            match (ext_attr >> 16) & 0o170_000 {
                0 | 0o100_000 | 0o040_000 => {}
                0o120_000 => return Err(rej(ctx, format!("{who}: a symbolic link"))),
                _ => return Err(rej(ctx, format!("{who}: a device, FIFO or socket"))),
            }
        }
        if local_off != expect_local {
            return Err(rej(ctx, format!(
                "{who}: members are not stored one after another from the start (overlapping members are a zip-bomb technique; gaps would hide data)"
            )));
        }
        // The local header must say the same.
        let mut l = [0u8; 30];
        if beyond(local_off.checked_add(30), cd_off) {
            return Err(rej(
                ctx,
                format!("{who}: the local header lies outside the archive"),
            ));
        }
        read_at(f, local_off, &mut l)?;
        let l_name_len = usize::from(u16le(&l, 26));
        let l_extra_len = usize::from(u16le(&l, 28));
        let mut l_name = vec![0u8; l_name_len];
        f.read_exact(&mut l_name)?;
        let descriptor = flags & 0x0008 != 0;
        let sizes_ok = descriptor
            || zip64
            || (u32le(&l, 14) == crc
                && u64::from(u32le(&l, 18)) == csize
                && u64::from(u32le(&l, 22)) == usize_);
        if u32le(&l, 0) != LFH_SIG
            || l_name != name_bytes
            || u16le(&l, 8) != method
            || (u16le(&l, 6) & 0x0008 != 0) != descriptor
            || !sizes_ok
        {
            return Err(rej(
                ctx,
                format!(
                "{who}: the local header disagrees with the central directory (a tampered archive)"
            ),
            ));
        }
        let data_start = local_off + 30 + (l_name_len + l_extra_len) as u64;
        let Some(data_end) = data_start.checked_add(csize) else {
            return Err(rej(ctx, format!("{who}: sizes out of range")));
        };
        if data_end > cd_off {
            return Err(rej(
                ctx,
                format!("{who}: its data runs into the central directory"),
            ));
        }
        if name.ends_with('/') {
            if usize_ != 0 || csize > 2 {
                return Err(rej(ctx, format!("{who}: a directory with data")));
            }
            let m = ctx.budget.members.get() + 1;
            ctx.budget.members.set(m);
        } else {
            f.seek(SeekFrom::Start(data_start))?;
            let take = Read::take(&mut *f, csize);
            let compressed = Rc::new(Cell::new(csize));
            let what = format!("zip {who}");
            if method == 0 {
                if csize != usize_ {
                    return Err(rej(
                        ctx,
                        format!("{who}: a stored member whose sizes differ"),
                    ));
                }
                let checked = CrcCheck::new(take, crc, usize_, what.clone());
                let mut m = Metered::new(checked, ctx.budget.clone(), compressed, max_ratio, what);
                ctx.member(&mut m, &name, index, depth + 1, true)?;
                drain(&mut m)?;
            } else {
                let dec =
                    flate2::bufread::DeflateDecoder::new(BufReader::with_capacity(64 * 1024, take));
                let checked = CrcCheck::new(dec, crc, usize_, what.clone());
                let mut m = Metered::new(checked, ctx.budget.clone(), compressed, max_ratio, what);
                ctx.member(&mut m, &name, index, depth + 1, true)?;
                drain(&mut m)?;
                let mut br = m.into_inner().inner.into_inner();
                let left_in_buffer = br.fill_buf().map(|b| b.len()).unwrap_or(0);
                if left_in_buffer != 0 || br.get_ref().limit() != 0 {
                    return Err(rej(
                        ctx,
                        format!(
                            "{who}: compressed data continues after the end of the deflate stream"
                        ),
                    ));
                }
            }
        }
        expect_local = data_end;
        if descriptor {
            let mut d = [0u8; 24];
            let avail = cd_off.saturating_sub(data_end).min(24) as usize;
            read_at(f, data_end, &mut d[..avail])?;
            let (sig, off) = if u32le(&d, 0) == DD_SIG {
                (4, 4)
            } else {
                (0, 0)
            };
            let len = off + if zip64 { 20 } else { 12 };
            let ok = len <= avail
                && u32le(&d, off) == crc
                && if zip64 {
                    u64le(&d, off + 4) == csize && u64le(&d, off + 12) == usize_
                } else {
                    u64::from(u32le(&d, off + 4)) == csize
                        && u64::from(u32le(&d, off + 8)) == usize_
                };
            if !ok {
                return Err(rej(
                    ctx,
                    format!("{who}: a data descriptor that disagrees with the central directory"),
                ));
            }
            let _ = sig;
            expect_local += len as u64;
        }
        if ctx.office_strip {
            let mut cd_header = h.to_vec();
            cd_header.extend_from_slice(&var);
            records.push(Record {
                name: name.clone(),
                local_off,
                entry_end: expect_local,
                data_start,
                method,
                csize,
                usize_,
                zip64,
                cd_header,
            });
        }
    }
    if cd_pos != cd_end {
        return Err(rej(
            ctx,
            "the central directory holds more than its members".into(),
        ));
    }
    if expect_local != cd_off {
        return Err(rej(
            ctx,
            "data between the last member and the central directory would not be inspected".into(),
        ));
    }
    Ok(records)
}

/// Overflowed, or beyond `limit`.
fn beyond(v: Option<u64>, limit: u64) -> bool {
    v.is_none_or(|v| v > limit)
}

/// Checks a member's CRC-32 and size when its data ends.
struct CrcCheck<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    n: u64,
    crc: u32,
    len: u64,
    what: String,
}

impl<R: Read> CrcCheck<R> {
    fn new(inner: R, crc: u32, len: u64, what: String) -> CrcCheck<R> {
        CrcCheck {
            inner,
            hasher: crc32fast::Hasher::new(),
            n: 0,
            crc,
            len,
            what,
        }
    }
}

impl<R: Read> Read for CrcCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            if self.n != self.len || self.hasher.clone().finalize() != self.crc {
                return Err(content_problem(format!(
                    "{}: its size or CRC does not match the directory (corrupt, truncated or tampered)",
                    self.what
                )));
            }
            return Ok(0);
        }
        self.n += n as u64;
        if self.n > self.len {
            return Err(content_problem(format!(
                "{}: larger than the directory says",
                self.what
            )));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
