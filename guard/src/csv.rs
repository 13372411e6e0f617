//! CSV (RFC 4180, comma-separated, first line the header): every record
//! must have the header's number of fields; quoting must be well formed.
//! Geodata rules apply to the coordinate columns and forbidden columns the
//! profile names; dirty words and personal data are searched in every
//! field. Masking edits fields in place and drops forbidden columns.

use crate::emit::Op;
use crate::geo::{in_bbox, Decimal};
use crate::inspect::{Ctx, Halt};
use crate::profile::GeoRules;
use crate::report::{Action, FindingKind};
use crate::rules::ColumnAction;
use crate::scan::{ContentScan, SegMap};
use crate::tabular::{self, Applied, Tally};
use crate::text::{check_text, count_lines, fill, BLOCK_BYTES, BOM};
use std::borrow::Cow;
use std::io::Read;

/// Longest record (one line, or several for quoted line breaks).
pub const RECORD_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Most columns.
pub const COLUMNS_MAX: usize = 10_000;
/// Most count cells of a table under small-cell suppression (the whole
/// table's counts are held to find the complementary cells).
pub const SUPPRESSION_CELLS_MAX: usize = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct Field {
    /// The field as written, quotes included.
    s: usize,
    e: usize,
    /// Its content (inside quotes).
    cs: usize,
    ce: usize,
}

enum Parsed {
    Record { end: usize, newlines: u64 },
    Incomplete,
    Bad(&'static str),
}

const fn stop_table() -> [bool; 256] {
    let mut t = [false; 256];
    t[b',' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'"' as usize] = true;
    t
}
static STOP: [bool; 256] = stop_table();

/// Parses the record starting at `b[p]`.
fn parse_record(b: &[u8], p: usize, eof: bool, fields: &mut Vec<Field>) -> Parsed {
    let n = b.len();
    fields.clear();
    let mut newlines = 0u64;
    let mut i = p;
    loop {
        if i < n && b[i] == b'"' {
            let mut j = i + 1;
            let close = loop {
                match memchr::memchr(b'"', &b[j..]) {
                    None => {
                        return if eof {
                            Parsed::Bad("a quoted field is not closed (truncated file?)")
                        } else {
                            Parsed::Incomplete
                        }
                    }
                    Some(k) => {
                        let q = j + k;
                        if q + 1 < n && b[q + 1] == b'"' {
                            j = q + 2;
                            continue;
                        }
                        if q + 1 == n && !eof {
                            return Parsed::Incomplete;
                        }
                        break q;
                    }
                }
            };
            newlines += count_lines(&b[i + 1..close]);
            fields.push(Field {
                s: i,
                e: close + 1,
                cs: i + 1,
                ce: close,
            });
            i = close + 1;
        } else {
            let mut j = i;
            while j < n && !STOP[usize::from(b[j])] {
                j += 1;
            }
            if j < n && b[j] == b'"' {
                return Parsed::Bad(
                    "a quote inside an unquoted field (quote the whole field and double the quote)",
                );
            }
            if j == n && !eof {
                return Parsed::Incomplete;
            }
            let mut ce = j;
            if ce > i && b[ce - 1] == b'\r' && (j == n || b[j] == b'\n') {
                ce -= 1;
            }
            fields.push(Field {
                s: i,
                e: ce,
                cs: i,
                ce,
            });
            i = j;
        }
        if fields.len() > COLUMNS_MAX {
            return Parsed::Bad("more than 10000 columns");
        }
        if i >= n {
            return if eof {
                Parsed::Record { end: n, newlines }
            } else {
                Parsed::Incomplete
            };
        }
        match b[i] {
            b',' => i += 1,
            b'\n' => {
                return Parsed::Record {
                    end: i + 1,
                    newlines: newlines + 1,
                }
            }
            b'\r' if i + 1 < n && b[i + 1] == b'\n' => {
                return Parsed::Record {
                    end: i + 2,
                    newlines: newlines + 1,
                }
            }
            b'\r' if i + 1 == n && !eof => return Parsed::Incomplete,
            _ => return Parsed::Bad("text after the closing quote of a field"),
        }
    }
}

/// What the header says about the columns.
struct Columns {
    names: Vec<String>,
    /// Column names that held a finding: shown as "column N".
    hidden: Vec<bool>,
    /// (column, pair, is longitude).
    coords: Vec<(usize, usize, bool)>,
    pairs: usize,
    /// Forbidden columns and columns of `drop` rules.
    drop: Vec<bool>,
    any_drop: bool,
    /// Column rules, by column.
    rules: Vec<Option<ColumnAction>>,
    /// What each column's rule did, for the de-identification record.
    tallies: Vec<Tally>,
    /// Small-cell suppression of this table, when it has count columns.
    counts: Option<Counts>,
}

/// The count cells of a statistical table, held to the end of the file.
struct Counts {
    /// Count columns (and the total column), in header order.
    cols: Vec<usize>,
    /// Position of the total column in `cols`.
    total_col: Option<usize>,
    k: u64,
    marker: String,
    /// Row-major values and their byte ranges in the package.
    cells: Vec<Option<u64>>,
    spans: Vec<(u64, u64)>,
    rows: usize,
    total_row: Option<usize>,
    target: String,
}

impl Columns {
    /// The column in the de-identification record: by name, or by
    /// number (`column #3`) where the name held a finding.
    fn target(&self, col: usize) -> String {
        column_target(&self.names, &self.hidden, col)
    }

    fn label(&self, col: usize) -> String {
        match self.names.get(col) {
            Some(n)
                if !n.is_empty()
                    && n.len() <= 64
                    && !self.hidden.get(col).copied().unwrap_or(false) =>
            {
                n.clone()
            }
            _ => format!("column {}", col + 1),
        }
    }
}

/// See [`Columns::target`].
fn column_target(names: &[String], hidden: &[bool], col: usize) -> String {
    match (names.get(col), hidden.get(col)) {
        (Some(n), Some(false)) if !n.is_empty() && n.len() <= 64 => format!("column {n}"),
        _ => format!("column #{}", col + 1),
    }
}

/// [`content_text`] without a copy where the field needs no unquoting
/// (the common case: column rules read every field they cover).
fn field_text<'b>(b: &'b [u8], f: &Field) -> Cow<'b, str> {
    match std::str::from_utf8(&b[f.cs..f.ce]) {
        Ok(s) if !s.contains("\"\"") => Cow::Borrowed(s.trim_start_matches('\u{FEFF}').trim()),
        _ => Cow::Owned(content_text(b, f)),
    }
}

fn content_text(b: &[u8], f: &Field) -> String {
    let raw = String::from_utf8_lossy(&b[f.cs..f.ce]);
    raw.replace("\"\"", "\"")
        .trim_start_matches('\u{FEFF}')
        .trim()
        .to_string()
}

pub(crate) fn inspect(ctx: &mut Ctx<'_>, r: &mut dyn Read) -> Result<(), Halt> {
    let geo = ctx.profile.geodata().cloned();
    let mut scan = ContentScan::new(ctx.profile, true);
    // Quoted fields that span lines are also read as running text (see
    // `multiline_fields`).
    let mut flow = ContentScan::new(ctx.profile, false);
    let mut buf = vec![0u8; BLOCK_BYTES];
    let mut len = 0usize;
    let mut eof = false;
    let mut base = 0u64;
    let mut line = 1u64;
    let mut fields = Vec::with_capacity(64);
    let mut cols: Option<Columns> = None;
    let mut records: Vec<(usize, u64)> = Vec::new();
    let mut blank_since: Option<u64> = None;
    let mut first_block = true;
    // Byte ranges of this block's fields that a column rule replaces:
    // detector hits inside them are moot (the rule writes the value).
    let mut covered: Vec<(u64, u64)> = Vec::new();
    loop {
        fill(r, &mut buf, &mut len, &mut eof)?;
        if len == 0 {
            break;
        }
        records.clear();
        covered.clear();
        let mut p = 0;
        while p < len {
            match parse_record(&buf[..len], p, eof, &mut fields) {
                Parsed::Incomplete => break,
                Parsed::Bad(msg) => return Err(ctx.reject(format!("line {line}: {msg}"))),
                Parsed::Record { end, newlines } => {
                    let blank = fields.len() == 1 && fields[0].s == fields[0].e;
                    match &mut cols {
                        None => {
                            if blank {
                                return Err(
                                    ctx.reject("the first line (the header) is empty".into())
                                );
                            }
                            cols =
                                Some(header(ctx, &buf[..len], &fields, geo.as_ref(), line, base)?);
                            record_edits(
                                ctx,
                                &buf[..len],
                                &fields,
                                base,
                                cols.as_mut(),
                                None,
                                line,
                                None,
                            )?;
                        }
                        Some(c) => {
                            let c = &mut *c;
                            if blank {
                                blank_since.get_or_insert(line);
                            } else {
                                if let Some(b) = blank_since {
                                    return Err(ctx.reject(format!(
                                        "line {b}: a blank line inside the data"
                                    )));
                                }
                                if fields.len() != c.names.len() {
                                    return Err(ctx.reject(format!(
                                        "line {line}: {} fields, but the header has {} (ragged rows)",
                                        fields.len(),
                                        c.names.len()
                                    )));
                                }
                                record_edits(
                                    ctx,
                                    &buf[..len],
                                    &fields,
                                    base,
                                    Some(c),
                                    geo.as_ref(),
                                    line,
                                    Some(&mut covered),
                                )?;
                            }
                        }
                    }
                    records.push((p, line));
                    line += newlines;
                    p = end;
                }
            }
        }
        if p == 0 && !eof {
            if buf.len() >= RECORD_MAX_BYTES {
                return Err(ctx.reject(format!(
                    "line {line}: a record longer than {RECORD_MAX_BYTES} bytes"
                )));
            }
            let grown = (buf.len() * 2).min(RECORD_MAX_BYTES);
            buf.resize(grown, 0);
            continue;
        }
        let seg = &buf[..p];
        check_text(seg, base).map_err(|r| ctx.reject(r))?;
        let skip = if first_block && seg.starts_with(BOM) {
            3
        } else {
            0
        };
        first_block = false;
        if scan.is_active() {
            scan.reset();
            scan.scan(&seg[skip..], &SegMap::Linear(base + skip as u64));
            if !covered.is_empty() {
                let at = base + skip as u64;
                scan.word_hits.retain(|h| !in_ranges(&covered, h.start));
                scan.pii_hits
                    .retain(|h| !in_ranges(&covered, at + h.start as u64));
            }
            if !scan.word_hits.is_empty() || !scan.pii_hits.is_empty() {
                let c = cols.as_ref();
                let mut scratch = Vec::new();
                let mut locate = |off: u64| -> (Option<u64>, Option<String>) {
                    let i = usize::try_from(off.saturating_sub(base))
                        .unwrap_or(0)
                        .min(seg.len());
                    let k = records.partition_point(|&(s, _)| s <= i).saturating_sub(1);
                    let Some(&(rs, rl)) = records.get(k) else {
                        return (None, None);
                    };
                    let l = rl + count_lines(&seg[rs..i]);
                    let _ = parse_record(seg, rs, true, &mut scratch);
                    let col = scratch.iter().position(|f| f.s <= i && i <= f.e);
                    (Some(l), col.and_then(|col| c.map(|c| c.label(col))))
                };
                let masked = ctx.record_hits(
                    &scan,
                    &seg[skip..],
                    &SegMap::Linear(base + skip as u64),
                    &mut locate,
                )?;
                for m in masked {
                    ctx.edit(m.start, m.end, m.op)?;
                }
            }
            multiline_fields(
                ctx,
                &mut flow,
                seg,
                skip,
                base,
                &records,
                cols.as_ref(),
                &covered,
            )?;
        }
        base += p as u64;
        buf.copy_within(p..len, 0);
        len -= p;
        // Suppression decides at the end of the table which cells go:
        // nothing is written before that.
        if cols.as_ref().is_none_or(|c| c.counts.is_none()) {
            ctx.flush_to(base)?;
        }
        if eof && len == 0 {
            break;
        }
    }
    let Some(c) = cols else {
        return Err(ctx.reject("empty CSV: there is no header line".into()));
    };
    for (k, action) in c.rules.iter().enumerate() {
        if let (Some(a), Some(t)) = (action, c.tallies.get(k)) {
            if *a != ColumnAction::Drop {
                t.record(ctx, *a, &c.target(k));
            }
        }
    }
    if let Some(counts) = c.counts {
        suppress(ctx, counts)?;
        ctx.flush_to(base)?;
    }
    Ok(())
}

/// Is `at` inside one of the sorted, disjoint `ranges`?
fn in_ranges(ranges: &[(u64, u64)], at: u64) -> bool {
    let i = ranges.partition_point(|r| r.0 <= at);
    i > 0 && at < ranges[i - 1].1
}

/// A value written as one CSV field: quoted when it must be.
fn csv_field(v: &str) -> Vec<u8> {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\"")).into_bytes()
    } else {
        v.as_bytes().to_vec()
    }
}

/// Small-cell suppression at the end of the table: the suppressed cells
/// become the marker.
fn suppress(ctx: &mut Ctx<'_>, t: Counts) -> Result<(), Halt> {
    if t.rows == 0 {
        return Ok(());
    }
    let table = crate::deid::CountTable {
        rows: t.rows,
        cols: t.cols.len(),
        cells: t.cells,
        total_row: t.total_row,
        total_col: t.total_col,
    };
    let out = match crate::deid::suppress(&table, t.k) {
        Ok(o) => o,
        Err(crate::deid::SuppressError::TooManyUnknowns { suppressed, max }) => {
            return Err(ctx.reject(format!(
                "small-cell suppression: more than {max} cells would be suppressed ({suppressed} so far), too many to check that no total recovers one; aggregate the table further"
            )))
        }
        Err(crate::deid::SuppressError::CannotProtect { row, col }) => {
            return Err(ctx.reject(format!(
                "small-cell suppression: the cell at data row {}, count column {} cannot be protected (its line has no other cell to suppress); aggregate the table further",
                row + 1,
                col + 1
            )))
        }
    };
    if out.primary + out.complementary == 0 {
        return Ok(());
    }
    ctx.transforming(|| format!("suppression of {}", t.target))?;
    let rule = format!("k = {}", t.k);
    ctx.applied(
        "suppress",
        t.target.clone(),
        format!("{rule}, below k"),
        out.primary,
        None,
    );
    if out.complementary > 0 {
        ctx.applied(
            "suppress",
            t.target,
            format!("{rule}, complementary"),
            out.complementary,
            None,
        );
    }
    for (i, gone) in out.cells.iter().enumerate() {
        if *gone {
            if let Some(&(s, e)) = t.spans.get(i) {
                ctx.edit(s, e, Op::Replace(t.marker.as_bytes().to_vec()))?;
            }
        }
    }
    Ok(())
}

/// A count: digits, with `,` grouping allowed.
fn count_value(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || v.starts_with(',') || v.ends_with(',') {
        return None;
    }
    let digits: String = v.chars().filter(|&c| c != ',').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads the header: names, coordinate and forbidden columns.
fn header(
    ctx: &mut Ctx<'_>,
    b: &[u8],
    fields: &[Field],
    geo: Option<&GeoRules>,
    line: u64,
    base: u64,
) -> Result<Columns, Halt> {
    let names: Vec<String> = fields.iter().map(|f| content_text(b, f)).collect();
    let mut c = Columns {
        hidden: vec![false; names.len()],
        coords: Vec::new(),
        pairs: 0,
        drop: vec![false; names.len()],
        any_drop: false,
        rules: vec![None; names.len()],
        tallies: vec![Tally::default(); names.len()],
        counts: None,
        names,
    };
    // A header name with a finding of its own is not shown in locations.
    let mut probe = ContentScan::new(ctx.profile, true);
    if probe.is_active() {
        for (i, f) in fields.iter().enumerate() {
            probe.reset();
            if std::str::from_utf8(&b[f.cs..f.ce]).is_ok() {
                probe.scan(&b[f.cs..f.ce], &SegMap::Linear(0));
                c.hidden[i] = !probe.word_hits.is_empty() || !probe.pii_hits.is_empty();
            }
        }
    }
    if let Some(g) = geo {
        geodata_columns(ctx, fields, g, line, base, &mut c);
    }
    table_rules(ctx, geo, &mut c)?;
    if c.any_drop && c.drop.iter().all(|&d| d) {
        return Err(ctx.reject(
            "every column is a forbidden attribute or dropped: nothing would be left after masking"
                .into(),
        ));
    }
    Ok(c)
}

/// Coordinate and forbidden columns.
fn geodata_columns(
    ctx: &mut Ctx<'_>,
    fields: &[Field],
    g: &GeoRules,
    line: u64,
    base: u64,
    c: &mut Columns,
) {
    for (i, name) in c.names.iter().enumerate() {
        if let Some((pair, lon)) = g.coordinate_role(name) {
            c.coords.push((i, pair, lon));
            c.pairs = c.pairs.max(pair + 1);
        }
    }
    for (i, f) in fields.iter().enumerate() {
        if g.is_forbidden(&c.names[i]) {
            let loc = ctx.location(Some(line), Some(c.label(i)), Some(base + f.s as u64));
            let taken = ctx.finding(
                FindingKind::Geodata,
                "forbidden_attribute",
                loc,
                None,
                None,
                g.action,
            );
            if taken == Action::Mask {
                c.drop[i] = true;
                c.any_drop = true;
            }
        }
    }
}

/// `columns`, `require_rules` and `suppression` for this header.
fn table_rules(ctx: &mut Ctx<'_>, geo: Option<&GeoRules>, c: &mut Columns) -> Result<(), Halt> {
    let t = ctx.profile.tables();
    if t.is_empty() {
        return Ok(());
    }
    let mut count_cols = Vec::new();
    let mut total_col = None;
    for i in 0..c.names.len() {
        let name = c.names[i].clone();
        let rule = t.rule_for(&name).map(|r| r.action);
        let is_total = t.is_total_column(&name);
        let counted = t.is_count(&name) || is_total;
        if counted {
            if rule.is_some_and(|a| a.replaces()) {
                return Err(ctx.reject(format!(
                    "{} is a count column of the suppression rules and also named by a [[columns]] rule that changes it; name it in one of them",
                    c.target(i)
                )));
            }
            if is_total && total_col.is_none() {
                total_col = Some(count_cols.len());
            }
            count_cols.push(i);
        }
        let geo_named =
            geo.is_some_and(|g| g.is_forbidden(&name) || g.coordinate_role(&name).is_some());
        match rule {
            Some(ColumnAction::Drop) => {
                if !c.drop[i] {
                    ctx.transforming(|| format!("drop of {}", c.target(i)))?;
                    c.drop[i] = true;
                    c.any_drop = true;
                }
                c.rules[i] = Some(ColumnAction::Drop);
                ctx.applied("drop", c.target(i), String::new(), 1, None);
            }
            Some(a) => c.rules[i] = Some(a),
            None if t.require_rules && !counted && !geo_named && !c.drop[i] => {
                return Err(ctx.reject(format!(
                    "{} has no rule, and profile `{}` requires one for every column (require_rules = true): name it in a [[columns]] rule (keep, drop, mask, pseudonymize or generalize)",
                    c.target(i),
                    ctx.profile.name()
                )));
            }
            None => {}
        }
    }
    if let (Some(s), false) = (&t.suppression, count_cols.is_empty()) {
        let target = format!(
            "columns {}",
            count_cols
                .iter()
                .map(|&i| c.label(i))
                .collect::<Vec<_>>()
                .join(", ")
        );
        c.counts = Some(Counts {
            cols: count_cols,
            total_col,
            k: s.k,
            marker: s.marker.clone(),
            cells: Vec::new(),
            spans: Vec::new(),
            rows: 0,
            total_row: None,
            target,
        });
    }
    Ok(())
}

/// RFC 4180: a line break inside a quoted field is part of the field, not
/// the end of a record. The record scan lets a line break end a match (so
/// a marking cannot be assembled across two records); here every quoted
/// field holding a line break is read once more as running text with its
/// line breaks dropped, so a marking or a number split inside one field
/// (`"机<LF>密"`, `"138<LF>1234 5678"`) is found as in text, JSON and XML.
/// Only matches that span a line break are kept: the others were found
/// by the record scan already.
#[allow(clippy::too_many_arguments)]
fn multiline_fields(
    ctx: &mut Ctx<'_>,
    flow: &mut ContentScan<'_>,
    seg: &[u8],
    skip: usize,
    base: u64,
    records: &[(usize, u64)],
    cols: Option<&Columns>,
    covered: &[(u64, u64)],
) -> Result<(), Halt> {
    if !flow.is_active() || memchr::memchr(b'"', seg).is_none() {
        return Ok(());
    }
    let mut fields = Vec::new();
    let mut joined = Vec::new();
    let mut map: Vec<u64> = Vec::new();
    for &(rs, line) in records {
        let rs = rs.max(skip);
        if !matches!(
            parse_record(seg, rs, true, &mut fields),
            Parsed::Record { .. }
        ) {
            continue;
        }
        for (col, f) in fields.iter().enumerate() {
            let content = &seg[f.cs..f.ce];
            if memchr::memchr2(b'\n', b'\r', content).is_none()
                || in_ranges(covered, base + f.s as u64)
            {
                continue;
            }
            joined.clear();
            map.clear();
            for (i, &b) in content.iter().enumerate() {
                if b != b'\n' && b != b'\r' {
                    joined.push(b);
                    map.push(base + (f.cs + i) as u64);
                }
            }
            map.push(base + f.ce as u64);
            flow.reset();
            flow.scan(&joined, &SegMap::Table(&map));
            let spans = |a: u64, z: u64| {
                let a = usize::try_from(a.saturating_sub(base))
                    .unwrap_or(0)
                    .min(seg.len());
                let z = usize::try_from(z.saturating_sub(base))
                    .unwrap_or(0)
                    .min(seg.len());
                a < z && memchr::memchr2(b'\n', b'\r', &seg[a..z]).is_some()
            };
            flow.word_hits.retain(|h| spans(h.start, h.end));
            let table = SegMap::Table(&map);
            flow.pii_hits
                .retain(|h| spans(table.raw(h.start), table.raw(h.end)));
            if flow.word_hits.is_empty() && flow.pii_hits.is_empty() {
                continue;
            }
            let label = cols.map(|c| c.label(col));
            let content_start = f.cs;
            let masked = ctx.record_hits(flow, &joined, &table, &mut |off: u64| {
                let i = usize::try_from(off.saturating_sub(base))
                    .unwrap_or(0)
                    .clamp(content_start, seg.len());
                (Some(line + count_lines(&seg[rs..i])), label.clone())
            })?;
            for m in masked {
                ctx.edit(m.start, m.end, m.op)?;
            }
        }
    }
    Ok(())
}

/// Geodata checks of one record, its column rules and count cells, and
/// the edits for dropped columns. `covered`: `None` for the header, else
/// where the byte ranges of fields a rule replaces go.
#[allow(clippy::too_many_arguments)]
fn record_edits(
    ctx: &mut Ctx<'_>,
    b: &[u8],
    fields: &[Field],
    base: u64,
    cols: Option<&mut Columns>,
    geo: Option<&GeoRules>,
    line: u64,
    covered: Option<&mut Vec<(u64, u64)>>,
) -> Result<(), Halt> {
    let Some(c) = cols else { return Ok(()) };
    if let Some(g) = geo {
        if !c.coords.is_empty() {
            coordinates(ctx, b, fields, base, c, g, line)?;
        }
    }
    if let Some(covered) = covered {
        column_rules(ctx, b, fields, base, c, covered)?;
        if c.counts.is_some() {
            count_cells(ctx, b, fields, base, c, line)?;
        }
    }
    let c = &*c;
    if c.any_drop {
        // A single column left, empty in this record: quote it, or the
        // record would become a blank line.
        let mut kept = fields
            .iter()
            .enumerate()
            .filter(|(k, _)| !c.drop.get(*k).copied().unwrap_or(false));
        if let (Some((_, f)), None) = (kept.next(), kept.next()) {
            if f.s == f.e {
                ctx.edit(
                    base + f.s as u64,
                    base + f.s as u64,
                    Op::Replace(b"\"\"".to_vec()),
                )?;
            }
        }
        let mut kept_before = false;
        for (k, f) in fields.iter().enumerate() {
            if !c.drop.get(k).copied().unwrap_or(false) {
                kept_before = true;
                continue;
            }
            let (s, e) = if kept_before {
                (f.s - 1, f.e)
            } else if let Some(next) = fields.get(k + 1) {
                (f.s, next.s)
            } else {
                (f.s, f.e)
            };
            ctx.edit(base + s as u64, base + e as u64, Op::Replace(Vec::new()))?;
        }
    }
    Ok(())
}

/// The column rules of one data record.
fn column_rules(
    ctx: &mut Ctx<'_>,
    b: &[u8],
    fields: &[Field],
    base: u64,
    c: &mut Columns,
    covered: &mut Vec<(u64, u64)>,
) -> Result<(), Halt> {
    for (k, f) in fields.iter().enumerate() {
        let Some(&Some(action)) = c.rules.get(k) else {
            continue;
        };
        if action == ColumnAction::Drop {
            // Removed with the column: what it holds is not released, so
            // detector hits inside it are not findings.
            covered.push((base + f.s as u64, base + f.e as u64));
            continue;
        }
        if c.drop.get(k).copied().unwrap_or(false) {
            continue;
        }
        let text = field_text(b, f);
        let (names, hidden) = (&c.names, &c.hidden);
        // The column's name in a refusal, made only then.
        let target = || column_target(names, hidden, k);
        let Some(tally) = c.tallies.get_mut(k) else {
            continue;
        };
        if let Applied::Replace(r) = tabular::apply(ctx, action, &text, &target, tally)? {
            ctx.edit(
                base + f.s as u64,
                base + f.e as u64,
                Op::Replace(csv_field(&r)),
            )?;
        }
        if action.replaces() {
            covered.push((base + f.s as u64, base + f.e as u64));
        }
    }
    Ok(())
}

/// Holds the count cells of one data record for suppression.
fn count_cells(
    ctx: &mut Ctx<'_>,
    b: &[u8],
    fields: &[Field],
    base: u64,
    c: &mut Columns,
    line: u64,
) -> Result<(), Halt> {
    let t = ctx.profile.tables();
    let Some(counts) = c.counts.as_mut() else {
        return Ok(());
    };
    let is_total = fields
        .iter()
        .enumerate()
        .filter(|(k, _)| !counts.cols.contains(k))
        .any(|(_, f)| t.is_total_label(&field_text(b, f)));
    if is_total {
        if counts.total_row.is_some() {
            return Err(ctx.reject(format!(
                "line {line}: a second totals row (subtotals): small-cell suppression cannot tell which cells each total covers; send the table without subtotals"
            )));
        }
        counts.total_row = Some(counts.rows);
    }
    if counts.cells.len() + counts.cols.len() > SUPPRESSION_CELLS_MAX {
        return Err(ctx.reject(format!(
            "line {line}: more than {SUPPRESSION_CELLS_MAX} count cells under small-cell suppression; split the table"
        )));
    }
    for &k in &counts.cols {
        let (v, span) = match fields.get(k) {
            Some(f) => (
                count_value(&field_text(b, f)),
                (base + f.s as u64, base + f.e as u64),
            ),
            None => (None, (0, 0)),
        };
        counts.cells.push(v);
        counts.spans.push(span);
    }
    counts.rows += 1;
    Ok(())
}

fn coordinates(
    ctx: &mut Ctx<'_>,
    b: &[u8],
    fields: &[Field],
    base: u64,
    c: &Columns,
    g: &GeoRules,
    line: u64,
) -> Result<(), Halt> {
    const PAIRS_MAX: usize = 8;
    let mut lon = [None::<f64>; PAIRS_MAX];
    let mut lat = [None::<f64>; PAIRS_MAX];
    for &(col, pair, is_lon) in &c.coords {
        let Some(f) = fields.get(col) else { continue };
        if c.drop.get(col).copied().unwrap_or(false) {
            continue;
        }
        let raw = &b[f.cs..f.ce];
        let start = raw.iter().take_while(|x| x.is_ascii_whitespace()).count();
        let end = raw.len()
            - raw
                .iter()
                .rev()
                .take_while(|x| x.is_ascii_whitespace())
                .count();
        if start >= end {
            continue;
        }
        let v = &raw[start..end];
        let (vs, ve) = (base + (f.cs + start) as u64, base + (f.cs + end) as u64);
        let loc = |ctx: &Ctx<'_>| {
            if ctx.listing() {
                ctx.location(Some(line), Some(c.label(col)), Some(vs))
            } else {
                Default::default()
            }
        };
        // A value in a coordinate column is a coordinate in degrees, or it
        // is a format finding: not a number, or a number no longitude
        // (±180) or latitude (±90) can be. An out-of-range number is more
        // likely something else in the wrong column (a phone number, an
        // identity number), which masking by its own rule would otherwise
        // turn into a non-number here, found again on re-inspection.
        let limit = if is_lon { 180.0 } else { 90.0 };
        let degrees = crate::geo::quick(v).filter(|(_, x)| x.abs() <= limit);
        let Some((places, x)) = degrees else {
            let l = loc(ctx);
            let taken = ctx.finding(
                FindingKind::Geodata,
                "coordinate_format",
                l,
                Some(v),
                None,
                g.action,
            );
            if taken == Action::Mask {
                ctx.edit(vs, ve, Op::Replace(Vec::new()))?;
            }
            continue;
        };
        if pair < PAIRS_MAX {
            if is_lon {
                lon[pair] = Some(x);
            } else {
                lat[pair] = Some(x);
            }
        }
        if let Some(max) = g.max_decimal_places {
            if places > max {
                let l = loc(ctx);
                let taken = ctx.finding(
                    FindingKind::Geodata,
                    "precision",
                    l,
                    Some(v),
                    None,
                    g.action,
                );
                if taken == Action::Mask {
                    if let Some(d) = Decimal::parse(v) {
                        ctx.edit(vs, ve, Op::Replace(d.rounded(max).into_bytes()))?;
                    }
                }
            }
        }
    }
    if let Some(bb) = &g.bbox {
        for pair in 0..c.pairs.min(PAIRS_MAX) {
            if let (Some(x), Some(y)) = (lon[pair], lat[pair]) {
                if !in_bbox(x, y, bb) {
                    let col = c.coords.iter().find(|t| t.1 == pair).map_or(0, |t| t.0);
                    let at = fields.get(col).map(|f| base + f.s as u64);
                    let l = ctx.location(Some(line), Some(c.label(col)), at);
                    let value = format!("{x},{y}");
                    bbox_finding(ctx, l, value.as_bytes(), g.action);
                }
            }
        }
    }
    Ok(())
}

/// A point outside the allowed area: masking cannot move it, so `mask`
/// becomes `reject`.
pub(crate) fn bbox_finding(
    ctx: &mut Ctx<'_>,
    loc: crate::report::Location,
    value: &[u8],
    action: Action,
) {
    let action = if action == Action::Mask {
        ctx.add_reason(
            "geodata (bbox): a point outside the allowed bbox cannot be masked; clip the data or use action = \"review\"".into(),
        );
        Action::Reject
    } else {
        action
    };
    ctx.finding(FindingKind::Geodata, "bbox", loc, Some(value), None, action);
}
