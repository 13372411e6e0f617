//! Cutting macros out of an OOXML document (`disarm = "strip"`): the VBA
//! project parts go, with the relationships that point at them, their
//! content-type entries, and the "macro-enabled" main content type (a
//! `.docm` body becomes a `.docx` body). Nothing else of the document
//! changes: every other member's compressed bytes are copied as they were.
//!
//! The archive is rewritten as edits on the original bytes (the guard's
//! masked-copy mechanism): a removed member's local entry is deleted, a
//! changed `.rels` or `[Content_Types].xml` entry is replaced by a new
//! local header and deflated data, and the central directory and its end
//! record are replaced by new ones with the moved offsets. The zip handler
//! has already checked that members follow each other from offset 0 to
//! the central directory, so offsets move by exactly what is cut.
//!
//! What it does not strip: ActiveX controls and OLE objects (the document
//! body points at them; cutting the parts would leave it broken) stay
//! under `office.action`, as before.

use super::zip::Record;
use super::ReadSeek;
use crate::emit::Op;
use crate::inspect::{Ctx, Halt};
use std::collections::BTreeSet;
use std::io::{Read, SeekFrom, Write};

/// Largest `.rels` or `[Content_Types].xml` part rewritten (they are a
/// few KiB; a larger one is refused rather than held in memory).
const PART_MAX: u64 = 4 * 1024 * 1024;
/// Largest document body rewritten (to cut out references to a removed
/// object) or read for DDE fields; it is held in memory.
const BODY_MAX: u64 = 64 * 1024 * 1024;

/// The main content types of macro-enabled documents and what they are
/// without macros.
const MACRO_FREE: &[(&str, &str)] = &[
    (
        "application/vnd.ms-word.document.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
    ),
    (
        "application/vnd.ms-word.template.macroEnabledTemplate.main+xml",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
    ),
    (
        "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
    ),
    (
        "application/vnd.ms-excel.template.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml",
    ),
    (
        "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
    ),
    (
        "application/vnd.ms-powerpoint.slideshow.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml",
    ),
    (
        "application/vnd.ms-powerpoint.template.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
    ),
];

/// Rewrites the package's office document without `parts` (the macro
/// parts the member loop found). A structure the rewrite cannot handle
/// rejects the package, saying why.
pub(crate) fn rewrite(
    ctx: &mut Ctx<'_>,
    f: &mut dyn ReadSeek,
    records: &[Record],
    parts: &[String],
    cd_off: u64,
    size: u64,
) -> Result<(), Halt> {
    let refuse = |ctx: &mut Ctx<'_>, why: &str| {
        ctx.reject(format!(
            "the active content of this office document cannot be stripped: {why}"
        ))
    };
    if records.iter().any(|r| r.zip64) || size > u64::from(u32::MAX) {
        return Err(refuse(ctx, "it is a zip64 archive (over 4 GiB)"));
    }
    let mut removed: BTreeSet<String> = parts.iter().cloned().collect();
    // The relationships of a removed part go with it.
    for p in parts {
        let (dir, base) = p.rsplit_once('/').unwrap_or(("", p.as_str()));
        let rels = if dir.is_empty() {
            format!("_rels/{base}.rels")
        } else {
            format!("{dir}/_rels/{base}.rels")
        };
        removed.insert(rels);
    }
    // New contents of the parts that mention what is removed.
    let mut changed: Vec<(usize, Vec<u8>)> = Vec::new();
    // Relationship ids dropped, by the part that holds them.
    let mut dropped: Vec<(String, BTreeSet<String>)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if removed.contains(&r.name) {
            continue;
        }
        let lower = r.name.to_ascii_lowercase();
        let is_rels = lower.ends_with(".rels");
        if !is_rels && r.name != "[Content_Types].xml" {
            continue;
        }
        if r.usize_ > PART_MAX {
            return Err(refuse(ctx, &format!("{} is larger than 4 MiB", r.name)));
        }
        let Some(text) = read_part(f, r)? else {
            return Err(refuse(ctx, &format!("{} is not UTF-8", r.name)));
        };
        let new = if is_rels {
            let (new, ids) = drop_relationships(&r.name, &text, &removed);
            if let (Some(source), false) = (source_of(&r.name), ids.is_empty()) {
                dropped.push((source, ids));
            }
            new
        } else {
            content_types(&text, &removed)
        };
        if new != text {
            changed.push((i, new.into_bytes()));
        }
    }
    // The body parts that point at a removed object or control by id.
    for (source, ids) in dropped {
        if removed.contains(&source) {
            continue;
        }
        let Some(i) = records.iter().position(|r| r.name == source) else {
            continue;
        };
        let r = &records[i];
        if r.usize_ > BODY_MAX {
            return Err(refuse(
                ctx,
                &format!("{} is larger than {} MiB", r.name, BODY_MAX >> 20),
            ));
        }
        let Some(text) = read_limited(f, r, BODY_MAX)? else {
            return Err(refuse(ctx, &format!("{} is not UTF-8", r.name)));
        };
        let Some(new) = drop_references(&text, &ids) else {
            return Err(refuse(
                ctx,
                &format!(
                    "{} refers to a removed part from an element the guard does not remove",
                    r.name
                ),
            ));
        };
        if new != text {
            changed.push((i, new.into_bytes()));
        }
    }
    // The edits, in order of position: members, then the directory.
    let mut cd = Vec::new();
    let mut kept = 0u16;
    let mut out_pos = 0u64;
    for (i, r) in records.iter().enumerate() {
        if removed.contains(&r.name) {
            ctx.edit(r.local_off, r.entry_end, Op::Replace(Vec::new()))?;
            continue;
        }
        let Ok(new_off) = u32::try_from(out_pos) else {
            return Err(refuse(ctx, "offsets beyond 4 GiB"));
        };
        let mut h = r.cd_header.clone();
        put32(&mut h, 42, new_off);
        if let Some((_, text)) = changed.iter().find(|(j, _)| *j == i) {
            let entry = local_entry(r, text, &mut h)?;
            out_pos += entry.len() as u64;
            ctx.edit(r.local_off, r.entry_end, Op::Replace(entry))?;
        } else {
            out_pos += r.entry_end - r.local_off;
        }
        cd.extend_from_slice(&h);
        kept += 1;
    }
    let (Ok(cd_start), Ok(cd_len)) = (u32::try_from(out_pos), u32::try_from(cd.len())) else {
        return Err(refuse(ctx, "offsets beyond 4 GiB"));
    };
    let mut eocd = Vec::with_capacity(22);
    eocd.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    eocd.extend_from_slice(&[0, 0, 0, 0]);
    eocd.extend_from_slice(&kept.to_le_bytes());
    eocd.extend_from_slice(&kept.to_le_bytes());
    eocd.extend_from_slice(&cd_len.to_le_bytes());
    eocd.extend_from_slice(&cd_start.to_le_bytes());
    eocd.extend_from_slice(&[0, 0]);
    cd.extend_from_slice(&eocd);
    ctx.edit(cd_off, size, Op::Replace(cd))?;
    Ok(())
}

/// Relationships that reach outside the document when it opens: a remote
/// template (`attachedTemplate`), a linked OLE object, frame, image or
/// data source (`TargetMode="External"` on anything but a hyperlink,
/// which only a click follows). Under `disarm` each one refuses the
/// package: cutting it would leave the body pointing at nothing, so it is
/// not stripped. The report names the relationship's type and part, never
/// its target.
pub(crate) fn external_links(
    ctx: &mut Ctx<'_>,
    f: &mut dyn ReadSeek,
    records: &[Record],
) -> Result<(), Halt> {
    for r in records {
        if !r.name.to_ascii_lowercase().ends_with(".rels") {
            continue;
        }
        if r.usize_ > PART_MAX {
            return Err(ctx.reject(format!(
                "{}: a relationships part larger than 4 MiB",
                r.name
            )));
        }
        let Some(text) = read_part(f, r)? else {
            return Err(ctx.reject(format!(
                "{}: a relationships part that is not UTF-8",
                r.name
            )));
        };
        for (_, _, tag) in elements(&text, "Relationship") {
            if attr(tag, "TargetMode") != Some("External") {
                continue;
            }
            let ty = attr(tag, "Type").unwrap_or("");
            let kind = ty.rsplit('/').next().unwrap_or("");
            if kind == "hyperlink" {
                continue;
            }
            let mut loc = ctx.location(None, Some(format!("relationship {kind}")), None);
            let member = match loc.member.take() {
                Some(outer) => format!("{outer}!{}", r.name),
                None => r.name.clone(),
            };
            loc.member = Some(member.clone());
            ctx.finding(
                crate::report::FindingKind::Disarm,
                "office_external",
                loc,
                None,
                None,
                crate::report::Action::Reject,
            );
            ctx.add_reason(format!(
                "member {member}: an external relationship of type `{kind}` (a remote template, linked object or data source fetched when the document opens); the guard does not strip these: remove the link and send the document again"
            ));
        }
    }
    Ok(())
}

/// DDE (dynamic data exchange) in an office document: a Word field whose
/// instruction is `DDE` or `DDEAUTO` (it starts a program, with arguments,
/// when the document opens or its fields update), an Excel DDE link
/// (`ddeLink` in an external-link part) or a cell formula with a DDE
/// reference (`cmd|'/c …'!A0`). Under `disarm` each one refuses the
/// package (either mode): a field is part of the text, so it is not cut
/// out. The report names the part and the kind, never the command.
pub(crate) fn dde(ctx: &mut Ctx<'_>, f: &mut dyn ReadSeek, records: &[Record]) -> Result<(), Halt> {
    for r in records {
        let lower = r.name.to_ascii_lowercase();
        if !lower.ends_with(".xml") {
            continue;
        }
        let found = if lower.starts_with("word/") {
            if r.usize_ > BODY_MAX {
                return Err(ctx.reject(format!(
                    "{}: a document part larger than {} MiB cannot be checked for DDE fields",
                    r.name,
                    BODY_MAX >> 20
                )));
            }
            let Some(text) = read_limited(f, r, BODY_MAX)? else {
                return Err(ctx.reject(format!("{}: a document part that is not UTF-8", r.name)));
            };
            word_dde(&text)
        } else if lower.starts_with("xl/externallinks/") {
            let Some(text) = read_part(f, r)? else {
                return Err(ctx.reject(format!(
                    "{}: an external-link part that is not UTF-8",
                    r.name
                )));
            };
            let link = start_tags(&text).any(|(local, _)| local == "ddeLink");
            link.then_some("an Excel DDE link")
        } else if lower.starts_with("xl/worksheets/") {
            f.seek(SeekFrom::Start(r.data_start))?;
            let take = Read::take(&mut *f, r.csize);
            let hit = if r.method == 8 {
                formula_dde(&mut flate2::read::DeflateDecoder::new(take))?
            } else {
                formula_dde(&mut { take })?
            };
            hit.then_some("a cell formula with a DDE reference")
        } else {
            None
        };
        let Some(what) = found else { continue };
        let mut loc = ctx.location(None, Some("DDE".into()), None);
        let member = match loc.member.take() {
            Some(outer) => format!("{outer}!{}", r.name),
            None => r.name.clone(),
        };
        loc.member = Some(member.clone());
        ctx.finding(
            crate::report::FindingKind::Disarm,
            "office_dde",
            loc,
            None,
            None,
            crate::report::Action::Reject,
        );
        ctx.add_reason(format!(
            "member {member}: {what} (DDE starts a program or fetches data when the document opens or updates); the guard does not strip fields: remove it and send the document again"
        ));
    }
    Ok(())
}

/// The kind of the first DDE field in a Word part's XML, if any: complex
/// fields (`w:fldChar` begin … `w:instrText` … separate/end, the
/// instruction split over any number of runs, nested fields each on its
/// own) and simple ones (`w:fldSimple w:instr`).
fn word_dde(text: &str) -> Option<&'static str> {
    let is_dde = |instr: &str| {
        let first = instr
            .trim_start_matches(|c: char| c.is_whitespace() || c == '"')
            .split(|c: char| c.is_whitespace() || c == '"' || c == '\\')
            .next()
            .unwrap_or("");
        first.eq_ignore_ascii_case("DDE") || first.eq_ignore_ascii_case("DDEAUTO")
    };
    // Instructions of the open fields; `None` once a field's instruction
    // ended (at `separate`) and was checked.
    let mut open: Vec<Option<String>> = Vec::new();
    let mut at = 0;
    while let Some(i) = text[at..].find('<') {
        let start = at + i;
        let Some(gt) = text[start..].find('>') else {
            break;
        };
        let tag = &text[start..start + gt + 1];
        at = start + gt + 1;
        // The instruction of a field that just ended, if any.
        let done = match local_name(tag) {
            "fldChar" => match attr_suffix(tag, "fldCharType") {
                Some("begin") => {
                    open.push(Some(String::new()));
                    None
                }
                Some("separate") => open.last_mut().and_then(Option::take),
                Some("end") => open.pop().flatten(),
                _ => None,
            },
            "instrText" if !tag.ends_with("/>") => {
                let end = text[at..].find('<').map_or(text.len(), |j| at + j);
                let piece = unescape(&text[at..end]);
                match open.last_mut() {
                    Some(Some(buf)) => {
                        buf.push_str(&piece);
                        None
                    }
                    _ => Some(piece),
                }
            }
            "fldSimple" => attr_suffix(tag, "instr").map(unescape),
            _ => None,
        };
        if done.is_some_and(|s| is_dde(&s)) {
            return Some("a DDE field");
        }
    }
    // A field left open at the end of the part.
    open.into_iter()
        .flatten()
        .any(|s| is_dde(&s))
        .then_some("a DDE field")
}

/// Does a worksheet hold a formula with a DDE reference (`app|topic!item`:
/// a `|` outside string literals and quoted names)? Read as a stream, any
/// size: only the formula being read is held.
fn formula_dde(r: &mut dyn Read) -> std::io::Result<bool> {
    let dde = |f: &[u8]| {
        let mut quote = None;
        for &b in f {
            match (quote, b) {
                (None, b'"' | b'\'') => quote = Some(b),
                (Some(q), _) if b == q => quote = None,
                (None, b'|') => return true,
                _ => {}
            }
        }
        false
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut tag: Vec<u8> = Vec::new();
    let mut in_tag = false;
    let mut formula: Option<Vec<u8>> = None;
    loop {
        let n = crate::source::read_full(r, &mut buf)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if in_tag {
                if b == b'>' {
                    in_tag = false;
                    let name = tag.split(|c| c.is_ascii_whitespace()).next().unwrap_or(&[]);
                    let local = name.rsplit(|&c| c == b':').next().unwrap_or(name);
                    if local == b"f" && tag.last() != Some(&b'/') {
                        formula = Some(Vec::new());
                    }
                } else if tag.len() < 256 {
                    tag.push(b);
                }
            } else if b == b'<' {
                if formula.take().is_some_and(|f| dde(&f)) {
                    return Ok(true);
                }
                in_tag = true;
                tag.clear();
            } else if let Some(f) = formula.as_mut() {
                // Excel's formulas are at most 8,192 characters.
                if f.len() < 64 * 1024 {
                    f.push(b);
                }
            }
        }
    }
    Ok(false)
}

/// Every start tag of `text` with its local name (prefix dropped).
fn start_tags(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut at = 0;
    std::iter::from_fn(move || loop {
        let start = at + text[at..].find('<')?;
        let end = start + text[start..].find('>')? + 1;
        at = end;
        let tag = &text[start..end];
        if !tag.starts_with("</") && !tag.starts_with("<?") && !tag.starts_with("<!") {
            return Some((local_name(tag), tag));
        }
    })
}

/// The local name of the element a tag opens (`<w:instrText …>` →
/// `instrText`).
fn local_name(tag: &str) -> &str {
    let name = tag
        .trim_start_matches('<')
        .split(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .next()
        .unwrap_or("");
    name.rsplit(':').next().unwrap_or(name)
}

/// The value of the attribute whose local name is `local`, any prefix.
fn attr_suffix<'t>(tag: &'t str, local: &str) -> Option<&'t str> {
    let mut rest = tag;
    while let Some(i) = rest.find(local) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + local.len()..].trim_start();
        if before.is_some_and(|c| c.is_whitespace() || c == ':') && after.starts_with('=') {
            let v = after[1..].trim_start();
            let q = v.chars().next()?;
            if q == '"' || q == '\'' {
                let end = v[1..].find(q)?;
                return Some(&v[1..1 + end]);
            }
            return None;
        }
        rest = &rest[i + local.len()..];
    }
    None
}

/// XML character data with its entity and character references replaced.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(semi) = tail.find(';').filter(|&j| j <= 12) else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let name = &tail[1..semi];
        let c = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => name
                .strip_prefix("#x")
                .or_else(|| name.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// A member's content as text (`None` when it is not UTF-8).
fn read_part(f: &mut dyn ReadSeek, r: &Record) -> Result<Option<String>, Halt> {
    read_limited(f, r, PART_MAX)
}

/// At most `max` bytes of a member's content, as text.
fn read_limited(f: &mut dyn ReadSeek, r: &Record, max: u64) -> Result<Option<String>, Halt> {
    f.seek(SeekFrom::Start(r.data_start))?;
    let take = Read::take(&mut *f, r.csize);
    let mut data = Vec::new();
    if r.method == 8 {
        flate2::read::DeflateDecoder::new(take)
            .take(max)
            .read_to_end(&mut data)?;
    } else {
        take.take(max).read_to_end(&mut data)?;
    }
    Ok(String::from_utf8(data).ok())
}

/// A new local entry for `r` holding `text` (deflated), with its central
/// directory header `h` updated to match.
fn local_entry(r: &Record, text: &[u8], h: &mut [u8]) -> Result<Vec<u8>, Halt> {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(text)?;
    let data = z.finish()?;
    let crc = crc32fast::hash(text);
    let too_big = || std::io::Error::other("a rewritten part over 4 GiB");
    let csize = u32::try_from(data.len()).map_err(|_| too_big())?;
    let usize_ = u32::try_from(text.len()).map_err(|_| too_big())?;
    let name = r.name.as_bytes();
    let name_len = u16::try_from(name.len()).map_err(|_| too_big())?;
    // No data descriptor: the sizes are known.
    let flags = u16::from_le_bytes([h[8], h[9]]) & !0x0008;
    h[8..10].copy_from_slice(&flags.to_le_bytes());
    h[10..12].copy_from_slice(&8u16.to_le_bytes());
    put32(h, 16, crc);
    put32(h, 20, csize);
    put32(h, 24, usize_);
    let mut e = Vec::with_capacity(30 + name.len() + data.len());
    e.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    e.extend_from_slice(&20u16.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&8u16.to_le_bytes());
    // Modification time and date, as the directory has them.
    e.extend_from_slice(&h[12..16]);
    e.extend_from_slice(&crc.to_le_bytes());
    e.extend_from_slice(&csize.to_le_bytes());
    e.extend_from_slice(&usize_.to_le_bytes());
    e.extend_from_slice(&name_len.to_le_bytes());
    e.extend_from_slice(&0u16.to_le_bytes());
    e.extend_from_slice(name);
    e.extend_from_slice(&data);
    Ok(e)
}

/// The value of attribute `name` in the start tag `tag` (`<X a="v" …/>`).
fn attr<'t>(tag: &'t str, name: &str) -> Option<&'t str> {
    let mut rest = tag;
    while let Some(i) = rest.find(name) {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + name.len()..];
        let after_trim = after.trim_start();
        if before.is_some_and(char::is_whitespace) && after_trim.starts_with('=') {
            let v = after_trim[1..].trim_start();
            let q = v.chars().next()?;
            if q == '"' || q == '\'' {
                let end = v[1..].find(q)?;
                return Some(&v[1..1 + end]);
            }
            return None;
        }
        rest = &rest[i + name.len()..];
    }
    None
}

/// Every element `<elem …/>` or `<elem …>…</elem>` of `text`, as byte
/// ranges, with its start tag.
fn elements<'t>(text: &'t str, elem: &str) -> Vec<(usize, usize, &'t str)> {
    let open = format!("<{elem}");
    let close = format!("</{elem}>");
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = text[at..].find(&open) {
        let start = at + i;
        let next = text[start + open.len()..].chars().next();
        if !next.is_some_and(|c| c.is_whitespace() || c == '/' || c == '>') {
            at = start + open.len();
            continue;
        }
        let Some(gt) = text[start..].find('>') else {
            break;
        };
        let tag_end = start + gt + 1;
        let tag = &text[start..tag_end];
        let end = if tag.ends_with("/>") {
            tag_end
        } else {
            match text[tag_end..].find(&close) {
                Some(j) => tag_end + j + close.len(),
                None => break,
            }
        };
        out.push((start, end, tag));
        at = end;
    }
    out
}

/// `text` without the elements `keep` says no to.
fn without(text: &str, elems: &[(usize, usize, &str)], keep: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e, tag) in elems {
        if !keep(tag) {
            out.push_str(&text[at..*s]);
            at = *e;
        }
    }
    out.push_str(&text[at..]);
    out
}

/// The part a relationship of `rels` (a `.rels` part's path) points at:
/// the source part's folder joined with the target, `..` resolved.
fn resolve(rels: &str, target: &str) -> String {
    let base = match rels.rsplit_once("_rels/") {
        Some((dir, _)) => dir.trim_end_matches('/'),
        None => "",
    };
    let mut parts: Vec<&str> = if target.starts_with('/') || base.is_empty() {
        Vec::new()
    } else {
        base.split('/').collect()
    };
    for seg in target.trim_start_matches('/').split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// A `.rels` part without the relationships to removed parts, and the
/// ids of those relationships.
fn drop_relationships(
    rels: &str,
    text: &str,
    removed: &BTreeSet<String>,
) -> (String, BTreeSet<String>) {
    let elems = elements(text, "Relationship");
    let goes = |tag: &str| {
        let external = attr(tag, "TargetMode").is_some_and(|m| m == "External");
        !external && attr(tag, "Target").is_some_and(|t| removed.contains(&resolve(rels, t)))
    };
    let ids = elems
        .iter()
        .filter(|(_, _, tag)| goes(tag))
        .filter_map(|(_, _, tag)| attr(tag, "Id").map(str::to_owned))
        .collect();
    (without(text, &elems, |tag| !goes(tag)), ids)
}

/// The part whose relationships a `.rels` part holds
/// (`word/_rels/document.xml.rels` → `word/document.xml`).
fn source_of(rels: &str) -> Option<String> {
    let (dir, base) = rels.rsplit_once("_rels/")?;
    Some(format!("{dir}{}", base.strip_suffix(".rels")?))
}

/// Elements of a document body that point at an embedded object or a
/// control by relationship id: Word's `o:OLEObject` (inside `w:object`,
/// whose VML shape with the object's preview picture stays, so the page
/// shows the picture where the object was) and `w:control`.
const REFERRING: &[&str] = &["OLEObject", "control"];

/// `text` without the [`REFERRING`] elements whose relationship id is one
/// of `ids`, whatever their namespace prefix; `None` when something else
/// in it still names one of the ids (cutting the part would break it).
fn drop_references(text: &str, ids: &BTreeSet<String>) -> Option<String> {
    let mut cut = Vec::new();
    let mut at = 0;
    while let Some(i) = text[at..].find('<') {
        let start = at + i;
        let name_end = text[start + 1..]
            .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
            .map_or(text.len(), |j| start + 1 + j);
        let qname = &text[start + 1..name_end];
        let local = qname.rsplit(':').next().unwrap_or(qname);
        at = name_end;
        if !REFERRING.contains(&local) {
            continue;
        }
        let tag_end = start + text[start..].find('>')? + 1;
        let tag = &text[start..tag_end];
        let points_at_removed = ids.iter().any(|id| {
            [format!(":id=\"{id}\""), format!(":id='{id}'")]
                .iter()
                .any(|a| tag.contains(a.as_str()))
        });
        if !points_at_removed {
            continue;
        }
        let end = if tag.ends_with("/>") {
            tag_end
        } else {
            let close = format!("</{qname}>");
            tag_end + text[tag_end..].find(&close)? + close.len()
        };
        cut.push((start, end));
        at = end;
    }
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for (s, e) in cut {
        out.push_str(&text[from..s]);
        from = e;
    }
    out.push_str(&text[from..]);
    let dangling = ids
        .iter()
        .any(|id| out.contains(&format!("=\"{id}\"")) || out.contains(&format!("='{id}'")));
    (!dangling).then_some(out)
}

/// `[Content_Types].xml` without the removed parts' overrides and the VBA
/// project's default, and with macro-free main content types.
fn content_types(text: &str, removed: &BTreeSet<String>) -> String {
    let overrides = elements(text, "Override");
    let text = without(text, &overrides, |tag| {
        !attr(tag, "PartName").is_some_and(|p| removed.contains(p.trim_start_matches('/')))
    });
    let defaults = elements(&text, "Default");
    let mut text = without(&text, &defaults, |tag| {
        !attr(tag, "ContentType").is_some_and(|c| c.starts_with("application/vnd.ms-office.vba"))
    });
    for (from, to) in MACRO_FREE {
        text = text.replace(from, to);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dde_fields_are_found_however_they_are_split_or_escaped() {
        let split = r#"<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText xml:space="preserve"> DD</w:instrText></w:r><w:r><w:instrText>EAUTO c:\\windows\\system32\\cmd.exe "/k calc"</w:instrText></w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>x</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>"#;
        assert_eq!(word_dde(split), Some("a DDE field"));
        let escaped = r#"<w:fldSimple w:instr=" &#68;&#x44;E cmd &quot;/c calc&quot;"><w:r><w:t>1</w:t></w:r></w:fldSimple>"#;
        assert_eq!(word_dde(escaped), Some("a DDE field"));
        let lower = r#"<w:fldChar w:fldCharType="begin"/><w:instrText>ddeauto x</w:instrText><w:fldChar w:fldCharType="end"/>"#;
        assert_eq!(word_dde(lower), Some("a DDE field"));
        // Nested: a DDE field inside another field's instruction.
        let nested = r#"<w:fldChar w:fldCharType="begin"/><w:instrText>QUOTE </w:instrText><w:fldChar w:fldCharType="begin"/><w:instrText>DDE cmd x</w:instrText><w:fldChar w:fldCharType="end"/><w:fldChar w:fldCharType="end"/>"#;
        assert_eq!(word_dde(nested), Some("a DDE field"));
        // Ordinary fields and the word in text are not DDE.
        let ordinary = r#"<w:fldChar w:fldCharType="begin"/><w:instrText> PAGE \* MERGEFORMAT</w:instrText><w:fldChar w:fldCharType="end"/><w:t>DDEAUTO is a Word field</w:t><w:fldSimple w:instr="HYPERLINK &quot;https://x&quot;"/>"#;
        assert_eq!(word_dde(ordinary), None);
        let sheet = |f: &str| {
            let x = format!("<worksheet><sheetData><row><c r=\"A1\"><f>{f}</f><v>0</v></c></row></sheetData></worksheet>");
            formula_dde(&mut x.as_bytes()).expect("in memory")
        };
        assert!(sheet("cmd|' /C calc'!A0"));
        assert!(sheet(
            "SUM(1)+msexcel|'\\..\\..\\windows\\system32\\cmd.exe /c calc'!''"
        ));
        assert!(!sheet("SUM(A1:A9)"));
        assert!(!sheet("CONCAT(\"a|b\",'x|y'!A1)"));
    }

    #[test]
    fn references_to_a_removed_object_go_with_it_and_the_picture_stays() {
        let body = r#"<w:p><w:r><w:object w:dxaOrig="1"><v:shape id="s1"><v:imagedata r:id="rId4"/></v:shape><o:OLEObject Type="Embed" ProgID="Package" ShapeID="s1" r:id="rId5"/></w:object></w:r><w:r><w:object><v:shape id="s2"><v:imagedata r:id="rId6"/></v:shape><w:control r:id="rId7" w:name="CommandButton1" w:shapeid="s2"></w:control></w:object></w:r><w:hyperlink r:id="rId8"/></w:p>"#;
        let ids: BTreeSet<String> = ["rId5".to_string(), "rId7".to_string()].into();
        let out = drop_references(body, &ids).expect("every reference removable");
        assert!(
            !out.contains("OLEObject") && !out.contains("w:control"),
            "{out}"
        );
        for kept in [
            "rId4",
            "rId6",
            "rId8",
            "<w:object w:dxaOrig=\"1\"><v:shape id=\"s1\">",
        ] {
            assert!(out.contains(kept), "{kept} in {out}");
        }
        // Another prefix for the same namespace is the same element.
        let other = body.replace("o:OLEObject", "office:OLEObject");
        assert!(!drop_references(&other, &ids)
            .expect("removable")
            .contains("OLEObject"));
        // An element the guard does not remove still names the id: the
        // document would break, so the strip is refused.
        let linked = r#"<w:p><w:object><o:OLEObject r:id="rId5"/></w:object><w:hyperlink r:id="rId5"/></w:p>"#;
        assert!(drop_references(linked, &ids).is_none());
        // Nothing to remove: unchanged.
        let none: BTreeSet<String> = ["rId99".to_string()].into();
        assert_eq!(drop_references(body, &none).as_deref(), Some(body));
    }

    #[test]
    fn relationships_to_removed_parts_go_and_others_stay() {
        let rels = r#"<?xml version="1.0"?><Relationships xmlns="x"><Relationship Id="rId1" Type="t/styles" Target="styles.xml"/><Relationship Id="rId2" Type="t/vbaProject" Target="vbaProject.bin"/><Relationship Id="rId3" Type="t/hyperlink" Target="https://example.org/vbaProject.bin" TargetMode="External"/></Relationships>"#;
        let removed: BTreeSet<String> = ["word/vbaProject.bin".to_string()].into();
        let (out, ids) = drop_relationships("word/_rels/document.xml.rels", rels, &removed);
        assert!(out.contains("rId1") && out.contains("rId3"), "{out}");
        assert!(!out.contains("rId2"), "{out}");
        assert_eq!(ids, ["rId2".to_string()].into());
        assert_eq!(
            source_of("word/_rels/document.xml.rels").as_deref(),
            Some("word/document.xml")
        );
        assert_eq!(source_of("_rels/.rels").as_deref(), Some(""));
        assert_eq!(
            resolve("word/_rels/document.xml.rels", "../customXml/item1.xml"),
            "customXml/item1.xml"
        );
        assert_eq!(
            resolve("_rels/.rels", "word/document.xml"),
            "word/document.xml"
        );
        assert_eq!(
            resolve("word/_rels/document.xml.rels", "/word/vbaProject.bin"),
            "word/vbaProject.bin"
        );
    }

    #[test]
    fn content_types_lose_the_vba_project_and_the_macro_enabled_body() {
        let ct = r#"<Types xmlns="x"><Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.ms-word.document.macroEnabled.main+xml"/><Override PartName="/word/vbaData.xml" ContentType="application/vnd.ms-word.vbaData+xml"/></Types>"#;
        let removed: BTreeSet<String> = ["word/vbaData.xml".to_string()].into();
        let out = content_types(ct, &removed);
        assert!(!out.contains("vba"), "{out}");
        assert!(!out.contains("macroEnabled"), "{out}");
        assert!(out.contains(r#"<Default Extension="xml" ContentType="application/xml"/>"#));
        assert!(out.contains("wordprocessingml.document.main+xml"), "{out}");
    }
}
