//! JSON and GeoJSON (RFC 8259, one value per document), parsed as a
//! stream with an explicit stack: nesting, string and number sizes are
//! bounded, so a 10 000-deep or endless document costs bounded memory.
//!
//! Strings (keys too) are decoded — `\u79D8\u5BC6` is `秘密` — and searched
//! for dirty words and personal data. GeoJSON positions (arrays under
//! `coordinates`) and members named like the profile's coordinate columns
//! are checked for precision and the bbox; members with forbidden names are
//! dropped (mask) or reported, at any depth. Masked strings are rewritten
//! in place; a masked number becomes a string.

use crate::csv::bbox_finding;
use crate::emit::Op;
use crate::geo::Decimal;
use crate::inspect::{Ctx, Halt, Masked};
use crate::profile::GeoRules;
use crate::report::{Action, FindingKind};
use crate::rules::ColumnAction;
use crate::scan::{ContentScan, SegMap};
use crate::source::Peek;
use crate::tabular::{self, Applied, Tally};
use crate::text::BOM;
use std::collections::BTreeMap;
use std::io::Read;

/// Deepest nesting of arrays and objects.
pub const DEPTH_MAX: usize = 128;
/// Longest string (after decoding).
pub const STRING_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Longest number.
const NUMBER_MAX_BYTES: usize = 1024;
/// Longest member name kept for locations.
const KEY_SHOWN_MAX: usize = 64;
/// Write the masked output at least this often (bytes of input).
const FLUSH_EVERY: u64 = 256 * 1024;

const GEOJSON_TYPES: &[&str] = &[
    "FeatureCollection",
    "Feature",
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctn {
    Obj,
    Arr,
}

struct Frame {
    ctn: Ctn,
    /// Elements (arrays) or members (objects) completed.
    count: u64,
    key: String,
    key_hidden: bool,
    /// Inside `coordinates` (positions) or `bbox` (precision only).
    coords: bool,
    bbox: bool,
    /// The value of the current member is `coordinates` / `bbox`.
    next_coords: bool,
    next_bbox: bool,
    /// The current member names a coordinate column: (pair, is lon).
    next_column: Option<(usize, bool)>,
    /// The current member is named by a column rule (not `drop`).
    next_rule: Option<ColumnAction>,
    /// Members kept (not dropped), the last comma, and whether the comma
    /// after a dropped first member must go too.
    kept: u64,
    last_comma: Option<u64>,
    delete_next_comma: bool,
    /// Position arrays: the longitude waiting for its latitude.
    pos_lon: Option<f64>,
    /// Objects: coordinate columns seen, by pair.
    col_lon: Option<f64>,
    col_lat: Option<f64>,
    start: u64,
    line: u64,
}

impl Frame {
    fn new(ctn: Ctn, start: u64, line: u64) -> Frame {
        Frame {
            ctn,
            count: 0,
            key: String::new(),
            key_hidden: false,
            coords: false,
            bbox: false,
            next_coords: false,
            next_bbox: false,
            next_column: None,
            next_rule: None,
            kept: 0,
            last_comma: None,
            delete_next_comma: false,
            pos_lon: None,
            col_lon: None,
            col_lat: None,
            start,
            line,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    ArrFirst,
    ObjFirst,
    ObjKey,
    After,
}

/// A member being dropped: where its deletion starts and the depth of
/// its object.
struct Drop {
    start: u64,
    depth: usize,
}

struct Parser<'c, 'a, 'p> {
    ctx: &'c mut Ctx<'a>,
    geo: Option<GeoRules>,
    scan: ContentScan<'p>,
    stack: Vec<Frame>,
    drop: Option<Drop>,
    sbuf: Vec<u8>,
    smap: Vec<u64>,
    nbuf: Vec<u8>,
    is_geo: bool,
    /// The top-level member being read is `type`.
    top_type: bool,
    last_flush: u64,
    /// What each member's column rule did, by member name (`*` for a
    /// name that held a finding), for the de-identification record.
    tallies: BTreeMap<String, (ColumnAction, Tally)>,
}

/// Inspects a JSON document; `Ok(true)` when it is GeoJSON (a top-level
/// object whose `type` is a GeoJSON type).
pub(crate) fn inspect(ctx: &mut Ctx<'_>, r: &mut dyn Read) -> Result<bool, Halt> {
    let profile = ctx.profile;
    let mut rd = Peek::new(r);
    // A UTF-8 byte order mark is tolerated.
    let mut bom = [0u8; 3];
    let mut k = 0;
    while k < 3 {
        match rd.peek()? {
            Some(c) if c == BOM[k] => {
                bom[k] = c;
                rd.bump();
                k += 1;
            }
            _ => break,
        }
    }
    if k != 0 && k != 3 {
        return Err(ctx.reject("not UTF-8 text at offset 0".into()));
    }
    let geo = profile.geodata().cloned();
    let mut p = Parser {
        ctx,
        geo,
        scan: ContentScan::new(profile, false),
        stack: Vec::new(),
        drop: None,
        sbuf: Vec::new(),
        smap: Vec::new(),
        nbuf: Vec::new(),
        is_geo: false,
        top_type: false,
        last_flush: 0,
        tallies: BTreeMap::new(),
    };
    p.run(&mut rd)?;
    for (name, (action, tally)) in std::mem::take(&mut p.tallies) {
        tally.record(p.ctx, action, &format!("member {name}"));
    }
    Ok(p.is_geo)
}

impl Parser<'_, '_, '_> {
    fn fail(&mut self, rd: &Peek<'_>, what: &str) -> Halt {
        self.ctx.reject(format!(
            "invalid JSON at line {}, offset {}: {what}",
            rd.line,
            rd.offset()
        ))
    }

    fn run(&mut self, rd: &mut Peek<'_>) -> Result<(), Halt> {
        let mut state = Expect::Value;
        loop {
            rd.skip_ws()?;
            match state {
                Expect::Value | Expect::ArrFirst => {
                    let Some(c) = rd.peek()? else {
                        return Err(self.fail(rd, "the document ends early (truncated?)"));
                    };
                    if state == Expect::ArrFirst && c == b']' {
                        rd.bump();
                        self.close(rd)?;
                        state = Expect::After;
                        continue;
                    }
                    let start = rd.offset();
                    match c {
                        b'{' | b'[' => {
                            if self.stack.len() >= DEPTH_MAX {
                                return Err(self.ctx.reject(format!(
                                    "JSON nested deeper than {DEPTH_MAX} levels at line {}",
                                    rd.line
                                )));
                            }
                            rd.bump();
                            self.top_type = false;
                            let ctn = if c == b'{' { Ctn::Obj } else { Ctn::Arr };
                            if self.drop.is_none() {
                                if let Some(a) = self.stack.last().and_then(|f| f.next_rule) {
                                    if a.replaces() {
                                        let target = self.rule_target();
                                        return Err(self.ctx.reject(format!(
                                            "{} of {target}: the value is an object or an array; only drop applies to nested values",
                                            a.technique()
                                        )));
                                    }
                                }
                            }
                            let mut f = Frame::new(ctn, start, rd.line);
                            if let Some(parent) = self.stack.last() {
                                if ctn == Ctn::Arr {
                                    let inherit = parent.ctn == Ctn::Arr && parent.coords;
                                    f.coords = parent.next_coords || inherit;
                                    f.bbox = parent.next_bbox || (inherit && parent.bbox);
                                }
                            }
                            self.stack.push(f);
                            state = if ctn == Ctn::Obj {
                                Expect::ObjFirst
                            } else {
                                Expect::ArrFirst
                            };
                        }
                        b'"' => {
                            self.string(rd, false)?;
                            self.value_done(rd)?;
                            state = Expect::After;
                        }
                        b'-' | b'0'..=b'9' => {
                            self.number(rd)?;
                            self.value_done(rd)?;
                            state = Expect::After;
                        }
                        b't' | b'f' | b'n' => {
                            let word: &[u8] = match c {
                                b't' => b"true",
                                b'f' => b"false",
                                _ => b"null",
                            };
                            for &w in word {
                                if rd.peek()? != Some(w) {
                                    return Err(self.fail(rd, "not a JSON value"));
                                }
                                rd.bump();
                            }
                            self.top_type = false;
                            self.value_done(rd)?;
                            state = Expect::After;
                        }
                        _ => return Err(self.fail(rd, "not a JSON value")),
                    }
                }
                Expect::After => {
                    let Some(top) = self.stack.last() else {
                        return match rd.peek()? {
                            None => Ok(()),
                            Some(_) => Err(self.fail(
                                rd,
                                "data after the JSON value (one value per document; JSON Lines is not supported)",
                            )),
                        };
                    };
                    let ctn = top.ctn;
                    let Some(c) = rd.peek()? else {
                        return Err(self.fail(rd, "the document ends early (truncated?)"));
                    };
                    match (ctn, c) {
                        (Ctn::Obj, b',') => {
                            let at = rd.offset();
                            rd.bump();
                            let del = self.stack.last_mut().is_some_and(|f| {
                                f.last_comma = Some(at);
                                std::mem::take(&mut f.delete_next_comma)
                            });
                            if del {
                                self.ctx.edit(at, at + 1, Op::Replace(Vec::new()))?;
                            }
                            state = Expect::ObjKey;
                        }
                        (Ctn::Arr, b',') => {
                            rd.bump();
                            state = Expect::Value;
                        }
                        (Ctn::Obj, b'}') | (Ctn::Arr, b']') => {
                            rd.bump();
                            self.close(rd)?;
                        }
                        _ => {
                            return Err(self.fail(rd, "expected `,` or the end of the object/array"))
                        }
                    }
                }
                Expect::ObjFirst | Expect::ObjKey => {
                    let c = rd.peek()?;
                    if state == Expect::ObjFirst && c == Some(b'}') {
                        rd.bump();
                        self.close(rd)?;
                        state = Expect::After;
                        continue;
                    }
                    if c != Some(b'"') {
                        return Err(self.fail(rd, "expected a member name in double quotes"));
                    }
                    let key_start = rd.offset();
                    self.string(rd, true)?;
                    self.member_name(key_start)?;
                    rd.skip_ws()?;
                    if rd.peek()? != Some(b':') {
                        return Err(self.fail(rd, "expected `:` after a member name"));
                    }
                    rd.bump();
                    state = Expect::Value;
                }
            }
        }
    }

    /// An array or object closed (its last byte consumed).
    fn close(&mut self, rd: &mut Peek<'_>) -> Result<(), Halt> {
        let Some(f) = self.stack.pop() else {
            return Ok(());
        };
        if f.ctn == Ctn::Obj && self.drop.is_none() {
            if let (Some(x), Some(y), Some(g)) = (f.col_lon, f.col_lat, &self.geo) {
                if g.bbox.is_some_and(|bb| !crate::geo::in_bbox(x, y, &bb)) {
                    let (action, field) = (g.action, Some(self.pointer_of(&f)));
                    let loc = self.ctx.location(Some(f.line), field, Some(f.start));
                    bbox_finding(self.ctx, loc, format!("{x},{y}").as_bytes(), action);
                }
            }
        }
        self.top_type = false;
        self.value_done(rd)
    }

    /// The JSON pointer of a closed frame (for object-level findings).
    fn pointer_of(&self, _f: &Frame) -> String {
        let p = self.pointer();
        if p.is_empty() {
            "/".into()
        } else {
            p
        }
    }

    /// The JSON pointer of the value being read.
    fn pointer(&self) -> String {
        let mut s = String::new();
        for f in &self.stack {
            s.push('/');
            match f.ctn {
                Ctn::Arr => s.push_str(&f.count.to_string()),
                Ctn::Obj if f.key_hidden => s.push('*'),
                Ctn::Obj => s.push_str(&f.key.replace('~', "~0").replace('/', "~1")),
            }
        }
        s
    }

    /// A value ended at the reader's position.
    fn value_done(&mut self, rd: &mut Peek<'_>) -> Result<(), Halt> {
        let end = rd.offset();
        let depth = self.stack.len();
        if let Some(d) = &self.drop {
            if d.depth == depth {
                let start = d.start;
                self.drop = None;
                self.ctx.edit(start, end, Op::Replace(Vec::new()))?;
            }
        }
        if let Some(f) = self.stack.last_mut() {
            f.count += 1;
            f.next_coords = false;
            f.next_bbox = false;
            f.next_column = None;
            f.next_rule = None;
        }
        if end - self.last_flush >= FLUSH_EVERY {
            let safe = self.drop.as_ref().map_or(end, |d| d.start.min(end));
            self.ctx.flush_to(safe)?;
            self.last_flush = end;
        }
        Ok(())
    }

    /// A member name was read into `sbuf`: forbidden names, coordinate
    /// columns, GeoJSON markers.
    fn member_name(&mut self, key_start: u64) -> Result<(), Halt> {
        let key = String::from_utf8_lossy(&self.sbuf).into_owned();
        let depth = self.stack.len();
        self.top_type = depth == 1 && key == "type";
        let dropping = self.drop.is_some();
        let mut drop_now = false;
        if let (Some(g), false) = (&self.geo, dropping) {
            if g.is_forbidden(&key) {
                let action = g.action;
                let field = Some(self.pointer_with(&key));
                let line = self.stack.last().map(|f| f.line);
                let loc = self.ctx.location(line, field, Some(key_start));
                let taken = self.ctx.finding(
                    FindingKind::Geodata,
                    "forbidden_attribute",
                    loc,
                    None,
                    None,
                    action,
                );
                drop_now = taken == Action::Mask;
            }
        }
        let column = self.geo.as_ref().and_then(|g| g.coordinate_role(&key));
        let mut rule = None;
        if !dropping && !self.ctx.profile.tables().is_empty() {
            let geo_named =
                column.is_some() || self.geo.as_ref().is_some_and(|g| g.is_forbidden(&key));
            match self.ctx.profile.tables().rule_for(&key).map(|r| r.action) {
                Some(ColumnAction::Drop) => {
                    let target = format!("member {}", shown(&key));
                    if !drop_now {
                        self.ctx.transforming(|| format!("drop of {target}"))?;
                        drop_now = true;
                    }
                    self.ctx.applied("drop", target, String::new(), 1, None);
                }
                Some(a) => rule = Some(a),
                None if self.ctx.profile.tables().require_rules
                    && self.in_record()
                    && !geo_named
                    && !drop_now =>
                {
                    let field = self.pointer_with(&key);
                    return Err(self.ctx.reject(format!(
                        "member {field} has no rule, and profile `{}` requires one for every member of a record (require_rules = true): name it in a [[columns]] rule (keep, drop, mask, pseudonymize or generalize)",
                        self.ctx.profile.name()
                    )));
                }
                None => {}
            }
        }
        let Some(f) = self.stack.last_mut() else {
            return Ok(());
        };
        f.key = key.chars().take(KEY_SHOWN_MAX).collect();
        f.next_coords = key == "coordinates";
        f.next_bbox = key == "bbox";
        f.next_column = column;
        f.next_rule = rule;
        if drop_now {
            let start = if f.kept > 0 {
                f.last_comma.unwrap_or(key_start)
            } else {
                f.delete_next_comma = true;
                key_start
            };
            self.drop = Some(Drop { start, depth });
        } else if !dropping {
            f.kept += 1;
        }
        Ok(())
    }

    /// Is the object being read a record of a table: an element of the
    /// top-level array, or the `properties` of a GeoJSON feature?
    fn in_record(&self) -> bool {
        let n = self.stack.len();
        if n < 2 || self.stack[n - 1].ctn != Ctn::Obj {
            return false;
        }
        let parent = &self.stack[n - 2];
        (n == 2 && parent.ctn == Ctn::Arr) || (parent.ctn == Ctn::Obj && parent.key == "properties")
    }

    /// The member a column rule applies to, in the de-identification
    /// record: by name, not by position, so a rule's values add up.
    fn rule_target(&self) -> String {
        match self.stack.last() {
            Some(f) if f.key_hidden => "member *".into(),
            Some(f) => format!("member {}", f.key),
            None => "member".into(),
        }
    }

    /// Applies the current member's column rule (not `drop`) to a scalar
    /// written at `start..end`; `Ok(true)` when the rule replaces it (so
    /// detectors have nothing left to look at).
    fn column_rule(
        &mut self,
        text: &str,
        start: u64,
        end: u64,
        string: bool,
    ) -> Result<bool, Halt> {
        let Some(a) = self.stack.last().and_then(|f| f.next_rule) else {
            return Ok(false);
        };
        // Tallies are kept by member name, looked up without a copy (this
        // runs for every value a rule covers); one rule per name (the first
        // that matches it), so the action kept with the tally is this one.
        let name = match self.stack.last() {
            Some(f) if f.key_hidden => "*",
            Some(f) => f.key.as_str(),
            None => "",
        };
        if !self.tallies.contains_key(name) {
            self.tallies.insert(name.to_string(), (a, Tally::default()));
        }
        let Some(entry) = self.tallies.get_mut(name) else {
            return Ok(false);
        };
        let shown = || format!("member {name}");
        if let Applied::Replace(r) = tabular::apply(self.ctx, a, text, &shown, &mut entry.1)? {
            let out = if string {
                escape(r.as_bytes())
            } else if valid_number(r.as_bytes()) {
                r.into_bytes()
            } else {
                let mut q = Vec::with_capacity(r.len() + 2);
                q.push(b'"');
                q.extend_from_slice(&escape(r.as_bytes()));
                q.push(b'"');
                q
            };
            self.ctx.edit(start, end, Op::Replace(out))?;
        }
        Ok(a.replaces())
    }

    fn pointer_with(&self, key: &str) -> String {
        let mut p = String::new();
        for (i, f) in self.stack.iter().enumerate() {
            p.push('/');
            match f.ctn {
                Ctn::Arr => p.push_str(&f.count.to_string()),
                Ctn::Obj if i + 1 == self.stack.len() => {
                    let k: String = key.chars().take(KEY_SHOWN_MAX).collect();
                    p.push_str(&k.replace('~', "~0").replace('/', "~1"));
                }
                Ctn::Obj if f.key_hidden => p.push('*'),
                Ctn::Obj => p.push_str(&f.key.replace('~', "~0").replace('/', "~1")),
            }
        }
        p
    }

    /// Reads a string (the reader is at its opening quote) into `sbuf`,
    /// with `smap` when it has escapes; scans it.
    fn string(&mut self, rd: &mut Peek<'_>, is_key: bool) -> Result<(), Halt> {
        rd.bump();
        let line = rd.line;
        let cs = rd.offset();
        self.sbuf.clear();
        self.smap.clear();
        let mut escaped = false;
        loop {
            let Some(c) = rd.peek()? else {
                return Err(self.fail(rd, "a string is not closed (truncated?)"));
            };
            if self.sbuf.len() > STRING_MAX_BYTES {
                return Err(self.fail(rd, "a string longer than 16 MiB"));
            }
            match c {
                b'"' => break,
                b'\\' => {
                    let at = rd.offset();
                    rd.bump();
                    if !escaped {
                        escaped = true;
                        self.smap
                            .extend((0..self.sbuf.len() as u64).map(|i| cs + i));
                    }
                    let ch = match rd.peek()? {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            rd.bump();
                            let hi = self.hex4(rd)?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if rd.peek()? != Some(b'\\') {
                                    return Err(self.fail(rd, "a lone surrogate in a \\u escape"));
                                }
                                rd.bump();
                                if rd.peek()? != Some(b'u') {
                                    return Err(self.fail(rd, "a lone surrogate in a \\u escape"));
                                }
                                rd.bump();
                                let lo = self.hex4(rd)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.fail(rd, "a lone surrogate in a \\u escape"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            let Some(ch) = char::from_u32(cp) else {
                                return Err(self.fail(rd, "a lone surrogate in a \\u escape"));
                            };
                            let mut enc = [0u8; 4];
                            for &b in ch.encode_utf8(&mut enc).as_bytes() {
                                self.sbuf.push(b);
                                self.smap.push(at);
                            }
                            continue;
                        }
                        _ => return Err(self.fail(rd, "an invalid escape in a string")),
                    };
                    rd.bump();
                    self.sbuf.push(ch as u8);
                    self.smap.push(at);
                }
                0x00..=0x1F => {
                    return Err(self.fail(rd, "a control character inside a string (escape it)"))
                }
                _ => {
                    if escaped {
                        self.smap.push(rd.offset());
                    }
                    self.sbuf.push(c);
                    rd.bump();
                }
            }
        }
        let ce = rd.offset();
        rd.bump();
        if let Err(at) = crate::scan::validate_utf8(&self.sbuf) {
            let off = if escaped {
                self.smap.get(at).copied().unwrap_or(cs)
            } else {
                cs + at as u64
            };
            return Err(self.ctx.reject(format!(
                "not UTF-8 text: invalid byte at offset {off} (convert the file to UTF-8)"
            )));
        }
        if escaped {
            self.smap.push(ce);
        }
        if !is_key
            && self.top_type
            && GEOJSON_TYPES
                .iter()
                .any(|t| t.as_bytes() == self.sbuf.as_slice())
        {
            self.is_geo = true;
        }
        if !is_key {
            self.top_type = false;
        }
        if self.drop.is_some() {
            return Ok(());
        }
        if !is_key {
            let text = String::from_utf8_lossy(&self.sbuf).into_owned();
            if self.column_rule(&text, cs, ce, true)? {
                return Ok(());
            }
        }
        // A coordinate column written as a string.
        if !is_key {
            if let Some((pair, lon)) = self.stack.last().and_then(|f| f.next_column) {
                if let Some(d) = Decimal::parse(self.sbuf.trim_ascii()) {
                    let text = self.sbuf.clone();
                    let rounded = self.coordinate(&d, &text, pair, lon, false, cs, line)?;
                    if let Some(r) = rounded {
                        if !escaped {
                            self.ctx.edit(cs, ce, Op::Replace(r.into_bytes()))?;
                        }
                    }
                }
            }
        }
        self.scan_string(cs, ce, escaped, is_key, line)
    }

    fn hex4(&mut self, rd: &mut Peek<'_>) -> Result<u32, Halt> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match rd.peek()? {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.fail(rd, "an invalid \\u escape")),
            };
            v = v * 16 + u32::from(d);
            rd.bump();
        }
        Ok(v)
    }

    fn scan_string(
        &mut self,
        cs: u64,
        ce: u64,
        escaped: bool,
        is_key: bool,
        line: u64,
    ) -> Result<(), Halt> {
        if !self.scan.is_active() {
            return Ok(());
        }
        self.scan.reset();
        let map = if escaped {
            SegMap::Table(&self.smap)
        } else {
            SegMap::Linear(cs)
        };
        self.scan.scan(&self.sbuf, &map);
        if self.scan.word_hits.is_empty() && self.scan.pii_hits.is_empty() {
            return Ok(());
        }
        let field = if is_key {
            if let Some(f) = self.stack.last_mut() {
                f.key_hidden = true;
            }
            self.pointer_with("*")
        } else {
            self.pointer()
        };
        let masked = self
            .ctx
            .record_hits(&self.scan, &self.sbuf, &map, &mut |_| {
                (Some(line), Some(field.clone()))
            })?;
        if masked.is_empty() {
            return Ok(());
        }
        if !escaped {
            for m in masked {
                self.ctx.edit(m.start, m.end, m.op)?;
            }
            return Ok(());
        }
        // Escaped string: mask the decoded text and write it back escaped.
        let out = mask_decoded(&self.sbuf, &self.smap, masked);
        self.ctx.edit(cs, ce, Op::Replace(escape(&out)))
    }

    fn number(&mut self, rd: &mut Peek<'_>) -> Result<(), Halt> {
        let start = rd.offset();
        let line = rd.line;
        self.nbuf.clear();
        while let Some(c) = rd.peek()? {
            if !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                break;
            }
            if self.nbuf.len() >= NUMBER_MAX_BYTES {
                return Err(self.fail(rd, "a number longer than 1024 characters"));
            }
            self.nbuf.push(c);
            rd.bump();
        }
        let end = rd.offset();
        if !valid_number(&self.nbuf) {
            return Err(self.fail(rd, "an invalid number"));
        }
        self.top_type = false;
        if self.drop.is_some() {
            return Ok(());
        }
        let text = self.nbuf.clone();
        if self.column_rule(&String::from_utf8_lossy(&text), start, end, false)? {
            return Ok(());
        }
        let mut replaced = false;
        // Personal data written as a number (a phone number, a card).
        if self.scan.is_active() {
            self.scan.reset();
            self.scan.scan(&text, &SegMap::Linear(start));
            self.scan.word_hits.clear();
            if !self.scan.pii_hits.is_empty() {
                let field = self.pointer();
                let masked =
                    self.ctx
                        .record_hits(&self.scan, &text, &SegMap::Linear(start), &mut |_| {
                            (Some(line), Some(field.clone()))
                        })?;
                if !masked.is_empty() {
                    let out = mask_decoded(&text, &[], masked_linear(masked, start));
                    let mut q = Vec::with_capacity(out.len() + 2);
                    q.push(b'"');
                    q.extend_from_slice(&out);
                    q.push(b'"');
                    self.ctx.edit(start, end, Op::Replace(q))?;
                    replaced = true;
                }
            }
        }
        // Coordinates.
        let Some(f) = self.stack.last() else {
            return Ok(());
        };
        let role = if f.ctn == Ctn::Arr && f.coords {
            if f.bbox {
                Some(None)
            } else {
                match f.count {
                    0 => Some(Some((usize::MAX, true))),
                    1 => Some(Some((usize::MAX, false))),
                    _ => None,
                }
            }
        } else {
            f.next_column.map(Some)
        };
        let Some(role) = role else { return Ok(()) };
        let Some(d) = Decimal::parse(&text) else {
            return Ok(());
        };
        let rounded = match role {
            None => self.precision(&d, &text, start, line)?,
            Some((pair, lon)) => self.coordinate(&d, &text, pair, lon, true, start, line)?,
        };
        if let (Some(r), false) = (rounded, replaced) {
            self.ctx.edit(start, end, Op::Replace(r.into_bytes()))?;
        }
        Ok(())
    }

    /// Precision check; `Some(rounded)` when it must be masked.
    fn precision(
        &mut self,
        d: &Decimal,
        text: &[u8],
        at: u64,
        line: u64,
    ) -> Result<Option<String>, Halt> {
        let Some(g) = &self.geo else { return Ok(None) };
        let (Some(max), action) = (g.max_decimal_places, g.action) else {
            return Ok(None);
        };
        if d.places() <= max {
            return Ok(None);
        }
        let loc = self
            .ctx
            .location(Some(line), Some(self.pointer()), Some(at));
        let taken = self.ctx.finding(
            FindingKind::Geodata,
            "precision",
            loc,
            Some(text),
            None,
            action,
        );
        Ok((taken == Action::Mask).then(|| d.rounded(max)))
    }

    /// A longitude or latitude: precision, and the bbox once both of a
    /// position (`pair == usize::MAX`) or of an object's columns are known.
    #[allow(clippy::too_many_arguments)]
    fn coordinate(
        &mut self,
        d: &Decimal,
        text: &[u8],
        pair: usize,
        lon: bool,
        _number: bool,
        at: u64,
        line: u64,
    ) -> Result<Option<String>, Halt> {
        let rounded = self.precision(d, text, at, line)?;
        let x = d.to_f64();
        let Some(g) = &self.geo else {
            return Ok(rounded);
        };
        let (bbox, action) = (g.bbox, g.action);
        let pointer = self.pointer();
        let Some(f) = self.stack.last_mut() else {
            return Ok(rounded);
        };
        if pair == usize::MAX {
            if lon {
                f.pos_lon = Some(x);
            } else if let (Some(lon), Some(bb)) = (f.pos_lon.take(), bbox) {
                if !crate::geo::in_bbox(lon, x, &bb) {
                    let loc = self.ctx.location(Some(line), Some(pointer), Some(at));
                    bbox_finding(self.ctx, loc, format!("{lon},{x}").as_bytes(), action);
                }
            }
        } else if pair == 0 {
            // Only the first pair of columns is checked against the bbox
            // inside JSON objects.
            if lon {
                f.col_lon = Some(x);
            } else {
                f.col_lat = Some(x);
            }
        }
        Ok(rounded)
    }
}

/// Masks hits given in the original's offsets, for text mapped by `map`
/// (empty: the text starts at the first hit's base and is unescaped).
fn mask_decoded(text: &[u8], map: &[u64], masked: Vec<Masked>) -> Vec<u8> {
    let to_index = |off: u64| -> usize {
        if map.is_empty() {
            usize::try_from(off).unwrap_or(text.len()).min(text.len())
        } else {
            map.partition_point(|&m| m < off).min(text.len())
        }
    };
    let mut spans: Vec<(usize, usize, Op)> = masked
        .into_iter()
        .map(|m| (to_index(m.start), to_index(m.end), m.op))
        .collect();
    spans.sort_by_key(|s| s.0);
    // Overlaps become one star mask.
    let mut merged: Vec<(usize, usize, Op)> = Vec::new();
    for (s, e, op) in spans {
        if let Some(last) = merged.last_mut() {
            if s < last.1 {
                last.1 = last.1.max(e);
                last.2 = Op::Star;
                continue;
            }
        }
        merged.push((s, e, op));
    }
    let mut out = Vec::with_capacity(text.len());
    let mut pos = 0;
    for (s, e, op) in merged {
        if s < pos || e < s {
            continue;
        }
        out.extend_from_slice(&text[pos..s]);
        match op {
            Op::Replace(r) => out.extend_from_slice(&r),
            Op::Star => out.extend_from_slice(&crate::emit::star(&text[s..e])),
        }
        pos = e;
    }
    out.extend_from_slice(&text[pos..]);
    out
}

/// Makes masked spans relative to a text starting at `base`.
fn masked_linear(masked: Vec<Masked>, base: u64) -> Vec<Masked> {
    masked
        .into_iter()
        .map(|m| Masked {
            start: m.start - base.min(m.start),
            end: m.end - base.min(m.end),
            op: m.op,
        })
        .collect()
}

/// JSON string content for `s` (valid UTF-8).
/// A member name as shown in the de-identification record.
fn shown(key: &str) -> String {
    key.chars().take(KEY_SHOWN_MAX).collect()
}

fn escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 8);
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x00..=0x1F => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn valid_number(n: &[u8]) -> bool {
    let mut i = 0;
    if n.get(i) == Some(&b'-') {
        i += 1;
    }
    match n.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while n.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return false,
    }
    if n.get(i) == Some(&b'.') {
        i += 1;
        let s = i;
        while n.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    if matches!(n.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(n.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let s = i;
        while n.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    i == n.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_escapes() {
        for ok in ["0", "-0", "12", "1.5", "1e5", "-1.25E-3", "116.39741234"] {
            assert!(valid_number(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "-", "01", "1.", ".5", "1e", "+1", "1.2.3", "--1"] {
            assert!(!valid_number(bad.as_bytes()), "{bad}");
        }
        assert_eq!(escape("a\"b\\c\n".as_bytes()), b"a\\\"b\\\\c\\u000a");
    }
}
