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
            "the macros of this office document cannot be stripped: {why}"
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
            drop_relationships(&r.name, &text, &removed)
        } else {
            content_types(&text, &removed)
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

fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// A member's content as text (`None` when it is not UTF-8).
fn read_part(f: &mut dyn ReadSeek, r: &Record) -> Result<Option<String>, Halt> {
    f.seek(SeekFrom::Start(r.data_start))?;
    let take = Read::take(&mut *f, r.csize);
    let mut data = Vec::new();
    if r.method == 8 {
        flate2::read::DeflateDecoder::new(take)
            .take(PART_MAX)
            .read_to_end(&mut data)?;
    } else {
        take.take(PART_MAX).read_to_end(&mut data)?;
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

/// A `.rels` part without the relationships to removed parts.
fn drop_relationships(rels: &str, text: &str, removed: &BTreeSet<String>) -> String {
    let elems = elements(text, "Relationship");
    without(text, &elems, |tag| {
        let external = attr(tag, "TargetMode").is_some_and(|m| m == "External");
        external || !attr(tag, "Target").is_some_and(|t| removed.contains(&resolve(rels, t)))
    })
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
    fn relationships_to_removed_parts_go_and_others_stay() {
        let rels = r#"<?xml version="1.0"?><Relationships xmlns="x"><Relationship Id="rId1" Type="t/styles" Target="styles.xml"/><Relationship Id="rId2" Type="t/vbaProject" Target="vbaProject.bin"/><Relationship Id="rId3" Type="t/hyperlink" Target="https://example.org/vbaProject.bin" TargetMode="External"/></Relationships>"#;
        let removed: BTreeSet<String> = ["word/vbaProject.bin".to_string()].into();
        let out = drop_relationships("word/_rels/document.xml.rels", rels, &removed);
        assert!(out.contains("rId1") && out.contains("rId3"), "{out}");
        assert!(!out.contains("rId2"), "{out}");
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
