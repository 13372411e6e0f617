//! `disarm` for PDF: what runs or reaches out when a PDF is opened —
//! JavaScript, actions that launch a program, open a URI, submit a form,
//! import data or open another file (wherever they hang: links, pages,
//! `/OpenAction`, `/AA`), embedded files, XFA forms and rich media. Found
//! with a maintained parser (`lopdf`: cross-reference and object streams,
//! filters, a bound on what a stream may inflate to), never by searching
//! the bytes: in a PDF a name can hide in a compressed object stream.
//!
//! Under `disarm = "strip"` the active parts are taken out of the object
//! graph (the keys that hold them removed, action dictionaries emptied,
//! embedded files' streams replaced by null) and the document is written
//! again by the parser; under `"refuse"` such a PDF is refused. A PDF the
//! parser cannot read, an encrypted one, or one larger than
//! [`PDF_DISARM_MAX`] is refused under `disarm`: what cannot be looked
//! into is not vouched for.

use crate::emit::Op;
use crate::inspect::{Ctx, Halt};
use crate::profile::Disarm;
use crate::report::{Action, FindingKind};
use crate::source::read_full;
use lopdf::{Dictionary, Document, Object};
use std::io::Read;

/// Largest PDF parsed for `disarm` (it is read into memory).
pub(crate) const PDF_DISARM_MAX: u64 = 64 * 1024 * 1024;
/// Most any stream may inflate to while the document is read.
const INFLATE_MAX: usize = 64 * 1024 * 1024;

/// Action types (`/S`) that run something or reach out.
const ACTIVE_ACTIONS: &[(&[u8], &str)] = &[
    (b"JavaScript", "pdf_javascript"),
    (b"Launch", "pdf_launch"),
    (b"URI", "pdf_uri"),
    (b"SubmitForm", "pdf_submit"),
    (b"ImportData", "pdf_import"),
    (b"GoToR", "pdf_remote_goto"),
    (b"GoToE", "pdf_remote_goto"),
    (b"RichMediaExecute", "pdf_richmedia"),
];

/// One active part found: its detector and where (`object N`, key).
struct Active {
    detector: &'static str,
    field: String,
}

pub(crate) fn inspect(ctx: &mut Ctx<'_>, r: &mut dyn Read, top: bool) -> Result<(), Halt> {
    let Some(mode) = ctx.profile.disarm else {
        return crate::opaque::inspect(ctx, r, crate::sniff::Kind::Pdf);
    };
    // Read it all, but no more than the bound.
    let mut data = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = read_full(r, &mut buf)?;
        if n == 0 {
            break;
        }
        if data.len() as u64 + n as u64 > PDF_DISARM_MAX {
            return Err(ctx.reject(format!(
                "a PDF larger than {} MiB cannot be checked for active content (disarm parses PDFs in memory); split it, or send it under a profile without disarm",
                PDF_DISARM_MAX >> 20
            )));
        }
        data.extend_from_slice(&buf[..n]);
    }
    let head_ok = data.len() >= 8
        && data.starts_with(b"%PDF-")
        && data[5].is_ascii_digit()
        && data[6] == b'.'
        && data[7].is_ascii_digit();
    if !head_ok {
        return Err(ctx.reject("not a PDF: the header has no version".into()));
    }
    let tail = &data[data.len().saturating_sub(1024)..];
    if memchr::memmem::find(tail, b"%%EOF").is_none() {
        return Err(
            ctx.reject("truncated PDF, or data appended after it: no %%EOF near the end".into())
        );
    }
    // The parser must not be able to take the guard down: a panic in it is
    // a PDF that cannot be read.
    let loaded = std::panic::catch_unwind(|| {
        Document::load_mem_with_options(
            &data,
            lopdf::LoadOptions::with_max_decompressed_size(INFLATE_MAX),
        )
    });
    let mut doc = match loaded {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            return Err(ctx.reject(format!(
                "a PDF the parser cannot read ({e}) cannot be checked for active content"
            )))
        }
        Err(_) => return Err(ctx.reject(
            "a PDF the parser cannot read (it failed inside) cannot be checked for active content"
                .into(),
        )),
    };
    if matches!(
        doc.xref_recovery,
        Some(lopdf::xref::XrefRecovery::Reconstructed)
    ) {
        return Err(ctx.reject(
            "a damaged PDF (its cross-reference data had to be rebuilt) cannot be vouched for: viewers may read it differently; save it again and resend".into(),
        ));
    }
    if doc.is_encrypted() {
        return Err(ctx.reject(
            "an encrypted PDF cannot be checked for active content; send it unencrypted".into(),
        ));
    }
    let found = strip(&mut doc);
    let action = mode.action();
    let mut stripped = false;
    for a in &found {
        let loc = ctx.location(None, Some(a.field.clone()), None);
        let taken = ctx.finding(FindingKind::Disarm, a.detector, loc, None, None, action);
        if taken == Action::Reject && mode == Disarm::Refuse {
            ctx.add_reason(format!(
                "the PDF holds active content ({}, {}), and the profile sets disarm = \"refuse\"",
                a.detector, a.field
            ));
        }
        stripped |= taken == Action::Mask;
    }
    ctx.stripped |= stripped && top;
    if stripped && top && !ctx.rejected() {
        let mut out = Vec::with_capacity(data.len());
        let saved =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.save_to(&mut out)));
        if !matches!(saved, Ok(Ok(()))) {
            return Err(
                ctx.reject("the PDF could not be written again without its active content".into())
            );
        }
        ctx.edit(0, data.len() as u64, Op::Replace(out))?;
    }
    crate::opaque::uninspectable(ctx, crate::sniff::Kind::Pdf);
    Ok(())
}

/// Finds every active part of `doc` and takes it out (the caller writes
/// the result only under `strip`).
fn strip(doc: &mut Document) -> Vec<Active> {
    let mut found = Vec::new();
    let mut embedded = Vec::new();
    for (id, obj) in doc.objects.iter_mut() {
        let at = format!("object {} {}", id.0, id.1);
        if let Object::Stream(s) = obj {
            if s.dict.get(b"Type").ok().and_then(name) == Some(b"EmbeddedFile".as_slice()) {
                found.push(Active {
                    detector: "pdf_embedded_file",
                    field: at.clone(),
                });
                embedded.push(*id);
                continue;
            }
        }
        walk(obj, &at, &mut found, 0);
    }
    for id in embedded {
        doc.objects.insert(id, Object::Null);
    }
    walk_dict(&mut doc.trailer, "trailer", &mut found, 0);
    found
}

/// Nesting beyond this is not walked further (direct objects nest only as
/// deep as the file is long; the parser bounds it, this bounds the walk).
const DEPTH_MAX: u32 = 64;

fn walk(obj: &mut Object, at: &str, found: &mut Vec<Active>, depth: u32) {
    if depth > DEPTH_MAX {
        return;
    }
    match obj {
        Object::Dictionary(d) => walk_dict(d, at, found, depth + 1),
        Object::Stream(s) => walk_dict(&mut s.dict, at, found, depth + 1),
        Object::Array(a) => {
            for o in a.iter_mut() {
                walk(o, at, found, depth + 1);
            }
        }
        _ => {}
    }
}

fn name(o: &Object) -> Option<&[u8]> {
    match o {
        Object::Name(n) => Some(n.as_slice()),
        _ => None,
    }
}

fn walk_dict(d: &mut Dictionary, at: &str, found: &mut Vec<Active>, depth: u32) {
    // An action dictionary that runs or reaches out: emptied, so whatever
    // points at it points at nothing a viewer acts on.
    if let Some(s) = d.get(b"S").ok().and_then(name) {
        if let Some((_, detector)) = ACTIVE_ACTIONS.iter().find(|(n, _)| *n == s) {
            found.push(Active {
                detector,
                field: format!("{at}: /S /{}", String::from_utf8_lossy(s)),
            });
            *d = Dictionary::new();
            return;
        }
    }
    for (key, detector) in [
        (&b"JS"[..], "pdf_javascript"),
        (b"JavaScript", "pdf_javascript"),
        (b"EmbeddedFiles", "pdf_embedded_file"),
        (b"EF", "pdf_embedded_file"),
        (b"XFA", "pdf_xfa"),
        (b"RichMediaContent", "pdf_richmedia"),
    ] {
        if d.remove(key).is_some() {
            found.push(Active {
                detector,
                field: format!("{at}: /{}", String::from_utf8_lossy(key)),
            });
        }
    }
    for (_, v) in d.iter_mut() {
        walk(v, at, found, depth + 1);
    }
}
