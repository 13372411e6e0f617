//! XML: checked for well-formedness as a stream (one root, balanced and
//! matching tags, quoted attributes), with every DTD refused: a
//! `<!DOCTYPE` and any entity reference other than the five predefined
//! ones and character references reject the document, so entity expansion
//! attacks and external entities cannot happen. Text, attribute values,
//! comments, CDATA and processing instructions are decoded and searched for
//! dirty words and personal data. XML is never rewritten.

use crate::inspect::{Ctx, Halt};
use crate::scan::{cut_point, ContentScan, SegMap};
use crate::source::Peek;
use std::io::Read;

/// Deepest element nesting.
pub const DEPTH_MAX: usize = 256;
/// Longest element or attribute name.
const NAME_MAX_BYTES: usize = 1024;
/// Text is scanned in pieces of about this size.
const PIECE_BYTES: usize = 256 * 1024;
/// Longest processing instruction.
const PI_MAX_BYTES: usize = 64 * 1024;
/// Most attributes on one element.
const ATTRS_MAX: usize = 1024;

struct Xml<'c, 'a, 'p> {
    ctx: &'c mut Ctx<'a>,
    scan: ContentScan<'p>,
    stack: Vec<String>,
    /// Per open element: its name holds a finding, so paths show `*`.
    hidden: Vec<bool>,
    text: Vec<u8>,
    map: Vec<u64>,
    text_line: u64,
    /// Where the text belongs, for locations.
    text_field: Option<String>,
    /// An office document part: character data is joined across elements
    /// up to the end of a paragraph (or cell), because word processors
    /// split one word into runs (`<w:t>机</w:t>…<w:t>密</w:t>`).
    office: bool,
    para: Vec<u8>,
    para_map: Vec<u64>,
    para_line: u64,
    para_field: Option<String>,
    para_open: bool,
}

/// Elements (local names) that end a paragraph, a cell or a shared string
/// in OOXML and ODF: joined text is scanned at their end.
const PARA_ENDS: &[&str] = &[
    "p",
    "h",
    "si",
    "is",
    "c",
    "tc",
    "txBody",
    "table-cell",
    "list-item",
    "body",
    "sheetData",
];

fn ends_paragraph(name: &str) -> bool {
    let local = name.rsplit(':').next().unwrap_or(name);
    PARA_ENDS.contains(&local)
}

pub(crate) fn inspect(ctx: &mut Ctx<'_>, r: &mut dyn Read) -> Result<(), Halt> {
    let profile = ctx.profile;
    let office = ctx.office;
    let mut rd = Peek::new(r);
    for &b in crate::text::BOM {
        if rd.peek()? == Some(b) {
            rd.bump();
        } else {
            break;
        }
    }
    let mut x = Xml {
        ctx,
        scan: ContentScan::new(profile, false),
        stack: Vec::new(),
        hidden: Vec::new(),
        text: Vec::new(),
        map: Vec::new(),
        text_line: 1,
        text_field: None,
        office,
        para: Vec::new(),
        para_map: Vec::new(),
        para_line: 1,
        para_field: None,
        para_open: false,
    };
    x.run(&mut rd)
}

fn name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':' || c >= 0x80
}

fn name_char(c: u8) -> bool {
    name_start(c) || c.is_ascii_digit() || c == b'-' || c == b'.'
}

impl Xml<'_, '_, '_> {
    fn fail(&mut self, rd: &Peek<'_>, what: &str) -> Halt {
        self.ctx.reject(format!(
            "invalid XML at line {}, offset {}: {what}",
            rd.line,
            rd.offset()
        ))
    }

    fn path(&self) -> String {
        let mut p = String::new();
        for (i, n) in self.stack.iter().enumerate() {
            p.push('/');
            if self.hidden.get(i).copied().unwrap_or(false) {
                p.push('*');
            } else {
                p.push_str(n);
            }
        }
        if p.is_empty() {
            p.push('/');
        }
        p
    }

    fn run(&mut self, rd: &mut Peek<'_>) -> Result<(), Halt> {
        let mut seen_root = false;
        let mut first = true;
        loop {
            let Some(c) = rd.peek()? else {
                if !self.stack.is_empty() {
                    return Err(self.fail(rd, "the document ends inside an element (truncated?)"));
                }
                if !seen_root {
                    return Err(self.fail(rd, "there is no root element"));
                }
                return self.flush_para(rd);
            };
            if c != b'<' {
                if self.stack.is_empty() {
                    if c.is_ascii_whitespace() {
                        if c == b'\n' {
                            rd.line += 1;
                        }
                        rd.bump();
                        first = false;
                        continue;
                    }
                    return Err(self.fail(rd, "text outside the root element"));
                }
                self.char_data(rd)?;
                continue;
            }
            let at_start = first;
            first = false;
            rd.bump();
            match rd.peek()? {
                Some(b'?') => {
                    rd.bump();
                    self.pi(rd, at_start)?;
                }
                Some(b'!') => {
                    rd.bump();
                    self.bang(rd)?;
                }
                Some(b'/') => {
                    rd.bump();
                    let name = self.name(rd)?;
                    rd.skip_ws()?;
                    if rd.peek()? != Some(b'>') {
                        return Err(self.fail(rd, "expected `>` to end the end tag"));
                    }
                    rd.bump();
                    self.hidden.pop();
                    match self.stack.pop() {
                        Some(open) if open == name => {
                            if self.office && ends_paragraph(&name) {
                                self.flush_para(rd)?;
                            }
                        }
                        Some(_) => {
                            // Names are package text: never quoted.
                            return Err(
                                self.fail(rd, "an end tag does not match the open element's name")
                            );
                        }
                        None => return Err(self.fail(rd, "an end tag without a start tag")),
                    }
                }
                Some(_) => {
                    if self.stack.is_empty() && seen_root {
                        return Err(self.fail(rd, "more than one root element"));
                    }
                    seen_root = true;
                    self.start_tag(rd)?;
                }
                None => return Err(self.fail(rd, "the document ends inside a tag (truncated?)")),
            }
        }
    }

    fn name(&mut self, rd: &mut Peek<'_>) -> Result<String, Halt> {
        let mut n = Vec::new();
        match rd.peek()? {
            Some(c) if name_start(c) => {}
            _ => return Err(self.fail(rd, "expected a name")),
        }
        while let Some(c) = rd.peek()? {
            if !name_char(c) {
                break;
            }
            if n.len() >= NAME_MAX_BYTES {
                return Err(self.fail(rd, "a name longer than 1024 bytes"));
            }
            n.push(c);
            rd.bump();
        }
        String::from_utf8(n).map_err(|_| self.fail(rd, "a name that is not UTF-8"))
    }

    /// Element and attribute names are content too: searched like text
    /// (as JSON keys and CSV headers are). `Ok(true)` when the name holds
    /// a finding (paths then show `*` instead of it).
    fn scan_name(&mut self, name: &str, at: u64, line: u64, field: String) -> Result<bool, Halt> {
        if !self.scan.is_active() {
            return Ok(false);
        }
        self.scan.reset();
        self.scan.scan(name.as_bytes(), &SegMap::Linear(at));
        if self.scan.word_hits.is_empty() && self.scan.pii_hits.is_empty() {
            return Ok(false);
        }
        self.ctx.record_hits(
            &self.scan,
            name.as_bytes(),
            &SegMap::Linear(at),
            &mut |_| (Some(line), Some(field.clone())),
        )?;
        self.scan.reset();
        Ok(true)
    }

    fn start_tag(&mut self, rd: &mut Peek<'_>) -> Result<(), Halt> {
        let at = rd.offset();
        let name = self.name(rd)?;
        if self.stack.len() >= DEPTH_MAX {
            return Err(self.ctx.reject(format!(
                "XML nested deeper than {DEPTH_MAX} elements at line {}",
                rd.line
            )));
        }
        let field = format!("{}/* (element name)", self.path().trim_end_matches('/'));
        let hidden = self.scan_name(&name, at, rd.line, field)?;
        self.stack.push(name);
        self.hidden.push(hidden);
        let mut attrs = 0;
        loop {
            rd.skip_ws()?;
            match rd.peek()? {
                Some(b'>') => {
                    rd.bump();
                    return Ok(());
                }
                Some(b'/') => {
                    rd.bump();
                    if rd.peek()? != Some(b'>') {
                        return Err(self.fail(rd, "expected `>` after `/`"));
                    }
                    rd.bump();
                    self.stack.pop();
                    self.hidden.pop();
                    return Ok(());
                }
                Some(_) => {
                    attrs += 1;
                    if attrs > ATTRS_MAX {
                        return Err(self.fail(rd, "more than 1024 attributes"));
                    }
                    let an_at = rd.offset();
                    let an = self.name(rd)?;
                    let field = format!("{}/@* (attribute name)", self.path());
                    let an_hidden = self.scan_name(&an, an_at, rd.line, field)?;
                    let an = if an_hidden { "*".to_string() } else { an };
                    rd.skip_ws()?;
                    if rd.peek()? != Some(b'=') {
                        return Err(self.fail(rd, "expected `=` after an attribute name"));
                    }
                    rd.bump();
                    rd.skip_ws()?;
                    let q = match rd.peek()? {
                        Some(q @ (b'"' | b'\'')) => q,
                        _ => return Err(self.fail(rd, "an attribute value must be quoted")),
                    };
                    rd.bump();
                    self.begin_text(rd.line, Some(format!("{}/@{an}", self.path())));
                    loop {
                        match rd.peek()? {
                            None => {
                                return Err(
                                    self.fail(rd, "the document ends inside an attribute value")
                                )
                            }
                            Some(c) if c == q => {
                                rd.bump();
                                break;
                            }
                            Some(b'<') => {
                                return Err(self.fail(rd, "`<` inside an attribute value"))
                            }
                            Some(b'&') => self.reference(rd)?,
                            Some(c) => {
                                self.push_raw(rd, c)?;
                            }
                        }
                    }
                    self.end_text(rd)?;
                }
                None => return Err(self.fail(rd, "the document ends inside a tag (truncated?)")),
            }
        }
    }

    /// `<!…`: comments, CDATA; a DOCTYPE (or anything else) is refused.
    fn bang(&mut self, rd: &mut Peek<'_>) -> Result<(), Halt> {
        let mut word = Vec::new();
        while word.len() < 8 {
            match rd.peek()? {
                Some(c) if c != b'>' && !c.is_ascii_whitespace() => {
                    word.push(c);
                    rd.bump();
                    if word == b"--" || word == b"[CDATA[" {
                        break;
                    }
                }
                _ => break,
            }
        }
        if word == b"--" {
            self.begin_text(rd.line, Some(format!("{} (comment)", self.path())));
            self.until(rd, b"-->", usize::MAX)?;
            return self.end_text(rd);
        }
        if word == b"[CDATA[" {
            if self.stack.is_empty() {
                return Err(self.fail(rd, "CDATA outside the root element"));
            }
            self.begin_text(rd.line, Some(self.path()));
            self.until(rd, b"]]>", usize::MAX)?;
            return self.end_text(rd);
        }
        if word.eq_ignore_ascii_case(b"DOCTYPE") {
            return Err(self.ctx.reject(format!(
                "XML with a DTD (<!DOCTYPE at line {}): DTDs and entity declarations are refused; remove the DOCTYPE",
                rd.line
            )));
        }
        Err(self.fail(rd, "markup declarations (<!…>) are refused"))
    }

    /// `<?…?>`. The XML declaration must come first and say UTF-8.
    fn pi(&mut self, rd: &mut Peek<'_>, at_start: bool) -> Result<(), Halt> {
        let target = self.name(rd)?;
        if target.eq_ignore_ascii_case("xml") {
            if !at_start {
                return Err(self.fail(rd, "the XML declaration is not at the start"));
            }
            self.begin_text(rd.line, None);
            self.until(rd, b"?>", PI_MAX_BYTES)?;
            let decl = String::from_utf8_lossy(&self.text).to_ascii_lowercase();
            self.text.clear();
            self.map.clear();
            if let Some(i) = decl.find("encoding") {
                let rest = &decl[i + 8..];
                let v: String = rest
                    .trim_start_matches([' ', '=', '"', '\''])
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                if v != "utf-8" && v != "utf8" {
                    return Err(self.ctx.reject(format!(
                        "XML declared as encoding `{v}`: only UTF-8 is accepted"
                    )));
                }
            }
            return Ok(());
        }
        self.begin_text(
            rd.line,
            Some(format!("{} (processing instruction)", self.path())),
        );
        self.until(rd, b"?>", PI_MAX_BYTES)?;
        self.end_text(rd)
    }

    /// Reads raw text up to and including `end`, as text to scan.
    fn until(&mut self, rd: &mut Peek<'_>, end: &[u8], max: usize) -> Result<(), Halt> {
        // Bytes read that may be the start of `end`, with their offsets.
        let mut pending: Vec<(u8, u64)> = Vec::with_capacity(end.len());
        let mut total = 0usize;
        loop {
            let Some(c) = rd.peek()? else {
                return Err(self.fail(rd, "the document ends inside markup (truncated?)"));
            };
            total += 1;
            if total > max {
                return Err(self.fail(rd, "a processing instruction longer than 64 KiB"));
            }
            if c == b'\n' {
                rd.line += 1;
            }
            pending.push((c, rd.offset()));
            rd.bump();
            while !(pending.len() <= end.len() && pending.iter().zip(end).all(|(p, e)| p.0 == *e)) {
                let (b, o) = pending.remove(0);
                self.push_at(rd, b, o)?;
            }
            if pending.len() == end.len() {
                return Ok(());
            }
        }
    }

    /// Swaps the paragraph buffer in as the text being collected.
    fn swap_para(&mut self) {
        std::mem::swap(&mut self.text, &mut self.para);
        std::mem::swap(&mut self.map, &mut self.para_map);
        std::mem::swap(&mut self.text_line, &mut self.para_line);
        std::mem::swap(&mut self.text_field, &mut self.para_field);
    }

    /// Scans the joined text of an office paragraph.
    fn flush_para(&mut self, rd: &Peek<'_>) -> Result<(), Halt> {
        if !self.para_open {
            return Ok(());
        }
        self.para_open = false;
        self.swap_para();
        self.scan.reset();
        let res = self.flush_text(rd, true);
        self.swap_para();
        self.para.clear();
        self.para_map.clear();
        res
    }

    /// Character data between tags, with references decoded.
    fn char_data(&mut self, rd: &mut Peek<'_>) -> Result<(), Halt> {
        if self.office {
            if !self.para_open {
                self.para_open = true;
                self.para.clear();
                self.para_map.clear();
                self.para_line = rd.line;
                self.para_field = Some(self.path());
            }
            self.swap_para();
            let mut res = Ok(());
            while let Some(c) = match rd.peek() {
                Ok(c) => c,
                Err(e) => {
                    res = Err(Halt::from(e));
                    None
                }
            } {
                let r = match c {
                    b'<' => break,
                    b'&' => self.reference(rd),
                    _ => self.push_raw(rd, c),
                };
                if let Err(e) = r {
                    res = Err(e);
                    break;
                }
            }
            self.swap_para();
            return res;
        }
        self.begin_text(rd.line, Some(self.path()));
        while let Some(c) = rd.peek()? {
            match c {
                b'<' => break,
                b'&' => self.reference(rd)?,
                _ => self.push_raw(rd, c)?,
            }
        }
        self.end_text(rd)
    }

    fn begin_text(&mut self, line: u64, field: Option<String>) {
        self.text.clear();
        self.map.clear();
        self.text_line = line;
        self.text_field = field;
        self.scan.reset();
    }

    fn push_raw(&mut self, rd: &mut Peek<'_>, c: u8) -> Result<(), Halt> {
        if c == b'\n' {
            rd.line += 1;
        }
        let off = rd.offset();
        rd.bump();
        self.push_at(rd, c, off)
    }

    fn push_at(&mut self, rd: &Peek<'_>, c: u8, off: u64) -> Result<(), Halt> {
        if c == 0 {
            return Err(self.fail(rd, "a NUL byte"));
        }
        self.text.push(c);
        self.map.push(off);
        if self.text.len() >= PIECE_BYTES {
            self.flush_text(rd, false)?;
        }
        Ok(())
    }

    /// `&…;`: the five predefined entities and character references only.
    fn reference(&mut self, rd: &mut Peek<'_>) -> Result<(), Halt> {
        let at = rd.offset();
        rd.bump();
        let mut r = Vec::new();
        loop {
            match rd.peek()? {
                Some(b';') => {
                    rd.bump();
                    break;
                }
                Some(c)
                    if r.len() < 32
                        && (c.is_ascii_alphanumeric()
                            || c == b'#'
                            || c == b'_'
                            || c == b'-'
                            || c == b'.'
                            || c == b':') =>
                {
                    r.push(c);
                    rd.bump();
                }
                _ => return Err(self.fail(rd, "a bare `&` (write &amp;)")),
            }
        }
        let ch = match r.as_slice() {
            b"lt" => '<',
            b"gt" => '>',
            b"amp" => '&',
            b"quot" => '"',
            b"apos" => '\'',
            [b'#', b'x', hex @ ..] | [b'#', b'X', hex @ ..] => std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32)
                .ok_or_else(|| self.fail(rd, "an invalid character reference"))?,
            [b'#', dec @ ..] => std::str::from_utf8(dec)
                .ok()
                .and_then(|h| h.parse::<u32>().ok())
                .and_then(char::from_u32)
                .ok_or_else(|| self.fail(rd, "an invalid character reference"))?,
            _ => {
                // The entity's name is package text: not quoted.
                return Err(self.ctx.reject(format!(
                    "XML entity reference at line {}: entities other than the five predefined ones need a DTD, which is refused",
                    rd.line
                )));
            }
        };
        if ch == '\0' {
            return Err(self.fail(rd, "a NUL character reference"));
        }
        let mut enc = [0u8; 4];
        for &b in ch.encode_utf8(&mut enc).as_bytes() {
            self.text.push(b);
            self.map.push(at);
        }
        Ok(())
    }

    fn end_text(&mut self, rd: &mut Peek<'_>) -> Result<(), Halt> {
        self.flush_text(rd, true)
    }

    /// Scans the collected text; unless `all`, keeps a tail that may hold
    /// a token cut in half.
    fn flush_text(&mut self, rd: &Peek<'_>, all: bool) -> Result<(), Halt> {
        let cut = if all {
            self.text.len()
        } else {
            match cut_point(&self.text) {
                0 => self.text.len(),
                c => c,
            }
        };
        let seg = &self.text[..cut];
        if let Err(e) = std::str::from_utf8(seg) {
            let off = self
                .map
                .get(e.valid_up_to())
                .copied()
                .unwrap_or(rd.offset());
            return Err(self.ctx.reject(format!(
                "not UTF-8 text: invalid byte at offset {off} (convert the file to UTF-8)"
            )));
        }
        if self.scan.is_active() && !seg.is_empty() {
            let mut map = self.map[..cut].to_vec();
            map.push(self.map.get(cut).copied().unwrap_or(rd.offset()));
            self.scan.scan(seg, &SegMap::Table(&map));
            if !self.scan.word_hits.is_empty() || !self.scan.pii_hits.is_empty() {
                let line = self.text_line;
                let field = self.text_field.clone();
                let text = &self.text[..cut];
                let _ =
                    self.ctx
                        .record_hits(&self.scan, text, &SegMap::Table(&map), &mut |_| {
                            (Some(line), field.clone())
                        })?;
            }
        }
        self.text.drain(..cut);
        self.map.drain(..cut);
        Ok(())
    }
}
