//! De-identification by generalisation: values that would single a person
//! out (a birth date, an exact income, a street address, a count of 2 in a
//! statistical table) are replaced by a coarser value that still carries
//! the statistics. Every function here is pure and total: a value it cannot
//! read is `None` (or an error for tables), and the caller then suppresses
//! it rather than passing it on.
//!
//! The generalisers are idempotent (`f(f(x)) == f(x)`), so masking an
//! already masked package changes nothing.
//!
//! # Small-cell suppression ([`suppress`])
//!
//! A table of counts, optionally with a totals row and/or a totals column,
//! is published with some cells blanked so that no small count (`0 < v < k`)
//! can be read or computed back:
//!
//! - **Primary**: every cell holding a value `v` with `0 < v < k` is
//!   suppressed, totals included. Zeros are published: a zero count reveals
//!   no one.
//! - **Lines**: with a totals column, each row is a line: its members are
//!   the row's other cells that hold a value, its total the cell in the
//!   totals column. With a totals row, each column (the totals column too)
//!   is a line the same way. A line whose total is missing, or which has no
//!   member holding a value, gives no equation and is ignored.
//! - **Complementary**: a line with exactly one unknown (suppressed members
//!   plus its total if suppressed) lets a reader compute that cell, so one
//!   more of its cells is suppressed: the unsuppressed member with the
//!   smallest non-zero value (ties: first in row-major order), else an
//!   unsuppressed zero member, else the total. This repeats until no line
//!   has exactly one unknown.
//! - **Verification** (the guarantee; the line rule is only a heuristic):
//!   all lines together form a linear system (members sum to the total);
//!   with the published values substituted, exact Gaussian elimination over
//!   rationals decides whether any suppressed cell is uniquely determined.
//!   If one is, one more cell of a line containing it is suppressed (same
//!   choice, lines where it has the fewest unknowns first) and both steps
//!   repeat. When every line containing it is already fully suppressed, the
//!   cell is computed through a chain of other lines, so the cell comes from
//!   the nearest line joined to it through suppressed cells.
//! - The guarantee is against *exact* recovery by linear equations. A
//!   reader still learns bounds (two suppressed cells in a row whose total
//!   is 3 are each at most 3); suppression does not hide those.
//! - More than [`SUPPRESSED_MAX`] suppressed cells is refused
//!   ([`SuppressError::TooManyUnknowns`]) to bound the cost, and a
//!   determined cell with no line left to protect it is refused
//!   ([`SuppressError::CannotProtect`]): the caller withholds the table.

// ---------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------

/// How coarse a generalised date is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateGrain {
    /// `YYYY-MM`.
    Month,
    /// `YYYY`.
    Year,
}

/// A date as far as it was written: a year, perhaps a month (a day, if
/// present, has been validated and dropped: no grain keeps it).
struct WrittenDate {
    year: u32,
    month: Option<u32>,
}

/// `v` generalised to `grain`, or `None` if `v` is not a date in one of the
/// accepted forms (see the tests for the list). A date already coarser than
/// the grain (a bare year at `Month`) is returned at its own precision.
pub(crate) fn generalize_date(v: &str, grain: DateGrain) -> Option<String> {
    let date = parse_date(v.trim())?;
    Some(match (grain, date.month) {
        (DateGrain::Month, Some(month)) => format!("{:04}-{month:02}", date.year),
        _ => format!("{:04}", date.year),
    })
}

fn parse_date(s: &str) -> Option<WrittenDate> {
    if s.contains('年') {
        parse_cjk_date(s)
    } else {
        parse_numeric_date(s)
    }
}

/// `YYYY-MM-DD`, `YYYY/MM/DD`, `YYYY.MM.DD`, `YYYYMMDD` (each optionally
/// followed by a time), `YYYY-MM`, `YYYY/MM`, `YYYY`.
fn parse_numeric_date(s: &str) -> Option<WrittenDate> {
    match leading_digits(s) {
        8 => {
            let (year, month, day) = (number(&s[..4])?, number(&s[4..6])?, number(&s[6..8])?);
            full_date(year, month, day, &s[8..])
        }
        4 => {
            let year = number(&s[..4])?;
            let rest = &s[4..];
            let Some(sep) = rest.chars().next() else {
                return year_only(year);
            };
            if !matches!(sep, '-' | '/' | '.') {
                return None;
            }
            let (month, rest) = take_digits(&rest[1..], 1, 2)?;
            if rest.is_empty() {
                // `2024.03` reads as a decimal number as often as a month.
                return if sep == '.' {
                    None
                } else {
                    year_month(year, month)
                };
            }
            let (day, rest) = take_digits(rest.strip_prefix(sep)?, 1, 2)?;
            full_date(year, month, day, rest)
        }
        _ => None,
    }
}

/// `YYYY年M月D日` (optionally followed by a time), `YYYY年M月`, `YYYY年`.
fn parse_cjk_date(s: &str) -> Option<WrittenDate> {
    let (year, rest) = take_digits(s, 4, 4)?;
    let rest = rest.strip_prefix('年')?;
    if rest.is_empty() {
        return year_only(year);
    }
    let (month, rest) = take_digits(rest, 1, 2)?;
    let rest = rest.strip_prefix('月')?;
    if rest.is_empty() {
        return year_month(year, month);
    }
    let (day, rest) = take_digits(rest, 1, 2)?;
    full_date(year, month, day, rest.strip_prefix('日')?)
}

fn year_only(year: u32) -> Option<WrittenDate> {
    (1000..=9999)
        .contains(&year)
        .then_some(WrittenDate { year, month: None })
}

fn year_month(year: u32, month: u32) -> Option<WrittenDate> {
    let date = year_only(year)?;
    (1..=12).contains(&month).then_some(WrittenDate {
        month: Some(month),
        ..date
    })
}

/// A year, month and day, followed by `time` (empty, or a valid time).
fn full_date(year: u32, month: u32, day: u32, time: &str) -> Option<WrittenDate> {
    let date = year_month(year, month)?;
    let valid = day >= 1 && day <= days_in_month(year, month) && is_time_suffix(time);
    valid.then_some(date)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn is_leap_year(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Empty, or `T` / one or more spaces, then `HH:MM[:SS[.fraction]]` and an
/// optional zone `Z` / `+HH:MM` / `-HH:MM`.
fn is_time_suffix(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let time = match s.strip_prefix('T') {
        Some(time) => time,
        None => {
            let time = s.trim_start_matches(' ');
            if time.len() == s.len() {
                return false;
            }
            time
        }
    };
    parse_clock(time).is_some_and(is_zone)
}

/// Reads `HH:MM[:SS[.fraction]]` and returns what follows it.
fn parse_clock(s: &str) -> Option<&str> {
    let rest = hour_minute(s)?;
    let Some(rest) = rest.strip_prefix(':') else {
        return Some(rest);
    };
    let (second, rest) = take_digits(rest, 2, 2)?;
    if second > 59 {
        return None;
    }
    let Some(fraction) = rest.strip_prefix('.') else {
        return Some(rest);
    };
    let digits = leading_digits(fraction);
    (digits > 0).then_some(&fraction[digits..])
}

/// Reads `HH:MM` (hour 0..=23, minute 0..=59) and returns what follows.
fn hour_minute(s: &str) -> Option<&str> {
    let (hour, rest) = take_digits(s, 2, 2)?;
    let (minute, rest) = take_digits(rest.strip_prefix(':')?, 2, 2)?;
    (hour <= 23 && minute <= 59).then_some(rest)
}

fn is_zone(s: &str) -> bool {
    match s.strip_prefix(['+', '-']) {
        Some(offset) => hour_minute(offset) == Some(""),
        None => s.is_empty() || s == "Z",
    }
}

/// How many ASCII digits `s` starts with.
fn leading_digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// Between `min` and `max` leading ASCII digits of `s` as a number (`None`
/// if there are fewer or more), and the rest of `s`.
fn take_digits(s: &str, min: usize, max: usize) -> Option<(u32, &str)> {
    let n = leading_digits(s);
    if n < min || n > max {
        return None;
    }
    Some((number(&s[..n])?, &s[n..]))
}

/// A short run of ASCII digits as a number.
fn number(digits: &str) -> Option<u32> {
    digits.parse().ok()
}

// ---------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------

/// How a number is generalised to a multiple of the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberGrain {
    /// The half-open interval `lo~hi` of width `step` holding the value.
    Range,
    /// The nearest multiple of `step`, halves away from zero.
    Round,
}

/// Most significant digits read in a number: values beyond this are not
/// counts or amounts but identifiers, and would risk overflow.
const NUMBER_SIGNIFICANT_DIGITS_MAX: usize = 30;

/// A decimal number read exactly: its sign, the magnitude of its integer
/// part, and of its fraction only what floor and rounding need.
struct ExactDecimal {
    negative: bool,
    integer: i128,
    fraction_nonzero: bool,
    fraction_at_least_half: bool,
}

/// `v` generalised to a multiple of `step` (≥ 1), or `None` if `v` is not
/// a plain decimal number, has more than 30 significant digits, or the
/// result would overflow. At `Range`, a value already written as the range
/// it would map to is returned unchanged; any other `a~b` is `None`.
pub(crate) fn generalize_number(v: &str, step: u64, grain: NumberGrain) -> Option<String> {
    let v = v.trim();
    let step = i128::from(step);
    if step < 1 {
        return None;
    }
    match grain {
        NumberGrain::Range if v.contains('~') => existing_range(v, step),
        NumberGrain::Range => range(&parse_decimal(v)?, step),
        NumberGrain::Round => round(&parse_decimal(v)?, step),
    }
}

/// `v` itself if it is exactly `{lo}~{lo + step}` with `lo` a multiple of
/// `step`, both written as `range` writes them.
fn existing_range(v: &str, step: i128) -> Option<String> {
    let (lo, hi) = v.split_once('~')?;
    let (lo, hi) = (canonical_integer(lo)?, canonical_integer(hi)?);
    let is_range = lo.rem_euclid(step) == 0 && lo.checked_add(step) == Some(hi);
    is_range.then(|| v.to_owned())
}

/// An integer written without sign `+`, leading zeros, grouping or `-0`.
fn canonical_integer(s: &str) -> Option<i128> {
    let n: i128 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

fn range(d: &ExactDecimal, step: i128) -> Option<String> {
    let (quotient, remainder) = (d.integer / step, d.integer % step);
    // Floor toward −∞: a negative value not on a multiple falls one step lower.
    let floor = if !d.negative {
        quotient
    } else if remainder == 0 && !d.fraction_nonzero {
        -quotient
    } else {
        -quotient - 1
    };
    let lo = floor.checked_mul(step)?;
    let hi = lo.checked_add(step)?;
    Some(format!("{lo}~{hi}"))
}

fn round(d: &ExactDecimal, step: i128) -> Option<String> {
    let (quotient, remainder) = (d.integer / step, d.integer % step);
    // Up when remainder + fraction ≥ step / 2; with an odd step the half
    // falls between two integers and the fraction decides.
    let twice = 2 * remainder;
    let up = twice >= step || (twice + 1 == step && d.fraction_at_least_half);
    let magnitude = (quotient + i128::from(up)).checked_mul(step)?;
    let rounded = if d.negative { -magnitude } else { magnitude };
    let text = rounded.to_string();
    // So that the result is itself accepted, and rounds to itself.
    (significant_digits(text.trim_start_matches('-')) <= NUMBER_SIGNIFICANT_DIGITS_MAX)
        .then_some(text)
}

/// `[+-]digits[.digits]`, the integer digits either plain or grouped by `,`
/// in threes (`1,234,567`).
fn parse_decimal(s: &str) -> Option<ExactDecimal> {
    let (negative, unsigned) = match s.strip_prefix(['-', '+']) {
        Some(rest) => (s.starts_with('-'), rest),
        None => (false, s),
    };
    let (integer_text, fraction) = match unsigned.split_once('.') {
        Some((integer, fraction)) => (integer, fraction),
        None => (unsigned, ""),
    };
    if unsigned.contains('.') && !is_digits(fraction) {
        return None;
    }
    let integer_digits = ungrouped_digits(integer_text)?;
    let all_digits = format!("{integer_digits}{fraction}");
    if significant_digits(&all_digits) > NUMBER_SIGNIFICANT_DIGITS_MAX {
        return None;
    }
    Some(ExactDecimal {
        negative,
        integer: integer_value(&integer_digits)?,
        fraction_nonzero: fraction.bytes().any(|b| b != b'0'),
        fraction_at_least_half: fraction.bytes().next().is_some_and(|b| b >= b'5'),
    })
}

/// The digits of an integer part, plain or grouped as `1,234,567`.
fn ungrouped_digits(s: &str) -> Option<String> {
    let mut groups = s.split(',');
    let first = groups.next()?;
    if !is_digits(first) {
        return None;
    }
    if !s.contains(',') {
        return Some(s.to_owned());
    }
    if first.len() > 3 {
        return None;
    }
    let mut digits = first.to_owned();
    for group in groups {
        if group.len() != 3 || !is_digits(group) {
            return None;
        }
        digits.push_str(group);
    }
    Some(digits)
}

/// Non-empty and ASCII digits only.
fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Digits from the first non-zero digit to the last one (`0` for zero).
fn significant_digits(digits: &str) -> usize {
    digits.trim_start_matches('0').trim_end_matches('0').len()
}

/// ASCII digits as an i128; `None` on overflow.
fn integer_value(digits: &str) -> Option<i128> {
    digits.bytes().try_fold(0i128, |n, b| {
        n.checked_mul(10)?.checked_add(i128::from(b - b'0'))
    })
}

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

/// Characters before `区` that make it part of a word, not the end of a
/// district: 小区 社区 园区 校区 片区 街区 景区 厂区, 自治区 (a province)
/// and 地区 (a prefecture, above the county).
const NOT_DISTRICT_BEFORE_QU: [char; 10] =
    ['小', '社', '园', '校', '片', '街', '景', '厂', '治', '地'];

/// Characters that start the part of an address below the county level.
const BELOW_COUNTY: [char; 12] = [
    '镇', '乡', '路', '街', '道', '巷', '号', '村', '组', '栋', '楼', '室',
];

/// Unit suffixes after which `城市` is a word (武汉市城市花园), not the end
/// of a city whose name ends in 城 (聊城市).
const UNIT_BEFORE_CHENGSHI: [char; 5] = ['省', '市', '州', '盟', '区'];

/// A Chinese postal address cut after its district (区), county (县) or
/// banner (旗); without one, after the county-level city (市) before the
/// street part. `None` if neither is found: the caller suppresses it.
pub(crate) fn generalize_address(v: &str) -> Option<String> {
    let chars: Vec<char> = v.trim().chars().collect();
    let end = district_end(&chars).or_else(|| county_city_end(&chars))?;
    Some(chars[..=end].iter().collect())
}

/// Index of the first `区`/`县`/`旗` that ends a district-level unit.
/// House numbers come after the district, so none is looked for past the
/// first digit (…路28号国际商业区 has no district).
fn district_end(chars: &[char]) -> Option<usize> {
    for (i, &c) in chars.iter().enumerate() {
        if is_digit(c) {
            return None;
        }
        // A unit needs a name before its suffix.
        let Some(&before) = i.checked_sub(1).and_then(|j| chars.get(j)) else {
            continue;
        };
        let ends_unit = match c {
            '区' => !NOT_DISTRICT_BEFORE_QU.contains(&before),
            '县' => true,
            // 红旗 is a common street and village name, never a banner.
            '旗' => before != '红',
            _ => false,
        };
        if ends_unit {
            return Some(i);
        }
    }
    None
}

/// Index of the last `市` ending a city before the below-county part.
fn county_city_end(chars: &[char]) -> Option<usize> {
    let limit = chars
        .iter()
        .position(|&c| is_digit(c) || BELOW_COUNTY.contains(&c))
        .unwrap_or(chars.len());
    (1..limit).rev().find(|&i| ends_city(chars, i))
}

fn ends_city(chars: &[char], i: usize) -> bool {
    if chars[i] != '市' || chars.get(i + 1) == Some(&'场') {
        return false;
    }
    let is_chengshi_word = chars[i - 1] == '城'
        && i.checked_sub(2)
            .and_then(|j| chars.get(j))
            .is_none_or(|c| UNIT_BEFORE_CHENGSHI.contains(c));
    !is_chengshi_word
}

/// An ASCII or full-width digit.
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || ('０'..='９').contains(&c)
}

// ---------------------------------------------------------------------------
// Small-cell suppression
// ---------------------------------------------------------------------------

/// A table of counts as the guard read it. `cells` holds `rows × cols`
/// entries row-major (a shorter vector reads as empty cells past its end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CountTable {
    pub rows: usize,
    pub cols: usize,
    /// Row-major; `None` = empty or not a count.
    pub cells: Vec<Option<u64>>,
    /// The row holding column totals, if any.
    pub total_row: Option<usize>,
    /// The column holding row totals, if any.
    pub total_col: Option<usize>,
}

/// Which cells to blank, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Suppressed {
    /// Row-major, as `CountTable::cells`; `true` = suppressed.
    pub cells: Vec<bool>,
    /// Cells suppressed because they hold a small count.
    pub primary: u64,
    /// Cells suppressed so that no small count can be computed back.
    pub complementary: u64,
}

/// Why a table cannot be published with suppressed cells. Either way the
/// caller withholds the whole table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SuppressError {
    /// Protecting the table needs more than `max` suppressed cells.
    #[error("protecting this table needs more than {max} suppressed cells ({suppressed} so far); publish it with fewer, larger categories")]
    TooManyUnknowns { suppressed: usize, max: usize },
    /// The suppressed cell at (`row`, `col`) can be computed from the
    /// published cells and no further cell can be suppressed to prevent it
    /// (or exact arithmetic overflowed while checking it).
    #[error("the small count at row {row}, column {col} (from 0) can be computed from the totals and no other cell can hide it; publish the table without totals or with merged categories")]
    CannotProtect { row: usize, col: usize },
}

/// Most suppressed cells in one table: verification is an elimination over
/// the suppressed cells, so this bounds its cost.
pub(crate) const SUPPRESSED_MAX: usize = 4096;

/// The cells of `t` to suppress so that no count `0 < v < k` is published
/// or can be computed from the published cells and totals (the rules are in
/// the module documentation).
pub(crate) fn suppress(t: &CountTable, k: u64) -> Result<Suppressed, SuppressError> {
    let lines = table_lines(t);
    let mut state = SuppressionState {
        values: t.cells.clone(),
        cols: t.cols,
        cells: vec![false; t.cells.len()],
        primary: 0,
        complementary: 0,
    };
    for i in 0..t.cells.len() {
        if state.value(i).is_some_and(|v| 0 < v && v < k) {
            state.suppress(i, Reason::Primary)?;
        }
    }
    loop {
        protect_lines(&lines, &mut state)?;
        let determined = determined_cells(&lines, &state)?;
        if determined.is_empty() {
            return Ok(Suppressed {
                cells: state.cells,
                primary: state.primary,
                complementary: state.complementary,
            });
        }
        let cell = complement_for_determined(&determined, &lines, &state)?;
        state.suppress(cell, Reason::Complementary)?;
    }
}

/// One equation of the table: the members sum to the total. Cells are
/// row-major indices of cells holding a value, members in increasing order.
#[derive(Debug)]
struct Line {
    members: Vec<usize>,
    total: usize,
}

impl Line {
    fn cells(&self) -> impl Iterator<Item = usize> + '_ {
        self.members.iter().copied().chain([self.total])
    }
}

/// The lines of `t` with a present total and at least one member.
fn table_lines(t: &CountTable) -> Vec<Line> {
    let value = |r: usize, c: usize| cell_index(t, r, c).filter(|&i| cell_value(t, i).is_some());
    let mut lines = Vec::new();
    if let Some(tc) = t.total_col.filter(|&tc| tc < t.cols) {
        for r in 0..t.rows {
            let members = (0..t.cols).filter(|&c| c != tc).filter_map(|c| value(r, c));
            push_line(&mut lines, members.collect(), value(r, tc));
        }
    }
    if let Some(tr) = t.total_row.filter(|&tr| tr < t.rows) {
        for c in 0..t.cols {
            let members = (0..t.rows).filter(|&r| r != tr).filter_map(|r| value(r, c));
            push_line(&mut lines, members.collect(), value(tr, c));
        }
    }
    lines
}

fn push_line(lines: &mut Vec<Line>, members: Vec<usize>, total: Option<usize>) {
    if let (Some(total), false) = (total, members.is_empty()) {
        lines.push(Line { members, total });
    }
}

fn cell_index(t: &CountTable, r: usize, c: usize) -> Option<usize> {
    r.checked_mul(t.cols)?.checked_add(c)
}

fn cell_value(t: &CountTable, i: usize) -> Option<u64> {
    t.cells.get(i).copied().flatten()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Primary,
    Complementary,
}

struct SuppressionState {
    values: Vec<Option<u64>>,
    cols: usize,
    cells: Vec<bool>,
    primary: u64,
    complementary: u64,
}

impl SuppressionState {
    fn value(&self, i: usize) -> Option<u64> {
        self.values.get(i).copied().flatten()
    }

    fn is_suppressed(&self, i: usize) -> bool {
        self.cells.get(i).copied().unwrap_or(false)
    }

    fn suppress(&mut self, i: usize, reason: Reason) -> Result<(), SuppressError> {
        let Some(cell) = self.cells.get_mut(i) else {
            return Ok(());
        };
        *cell = true;
        match reason {
            Reason::Primary => self.primary += 1,
            Reason::Complementary => self.complementary += 1,
        }
        let suppressed = (self.primary + self.complementary) as usize;
        if suppressed > SUPPRESSED_MAX {
            return Err(SuppressError::TooManyUnknowns {
                suppressed,
                max: SUPPRESSED_MAX,
            });
        }
        Ok(())
    }

    fn cannot_protect(&self, i: usize) -> SuppressError {
        let cols = self.cols.max(1);
        SuppressError::CannotProtect {
            row: i / cols,
            col: i % cols,
        }
    }

    /// Suppressed members of `line`, plus its total if suppressed.
    fn unknowns(&self, line: &Line) -> usize {
        let members = line
            .members
            .iter()
            .filter(|&&i| self.is_suppressed(i))
            .count();
        members + usize::from(self.is_suppressed(line.total))
    }

    /// The next cell of `line` to suppress: the smallest non-zero
    /// unsuppressed member (first in row-major order on ties), else an
    /// unsuppressed zero member, else the total if unsuppressed.
    fn complement_in(&self, line: &Line) -> Option<usize> {
        let open = || {
            line.members
                .iter()
                .copied()
                .filter(|&i| !self.is_suppressed(i))
        };
        let smallest_nonzero = open()
            .filter_map(|i| Some((self.value(i).filter(|&v| v > 0)?, i)))
            .min()
            .map(|(_, i)| i);
        smallest_nonzero
            .or_else(|| open().next())
            .or_else(|| (!self.is_suppressed(line.total)).then_some(line.total))
    }
}

/// The line rule, to a fixed point: a line with exactly one unknown gets
/// one more.
fn protect_lines(lines: &[Line], state: &mut SuppressionState) -> Result<(), SuppressError> {
    loop {
        let mut changed = false;
        for line in lines {
            if state.unknowns(line) != 1 {
                continue;
            }
            // Lines have a member, so a line with one unknown always has an
            // open cell; kept as an error rather than a panic all the same.
            let cell = state
                .complement_in(line)
                .ok_or_else(|| state.cannot_protect(line.total))?;
            state.suppress(cell, Reason::Complementary)?;
            changed = true;
        }
        if !changed {
            return Ok(());
        }
    }
}

/// One more cell to suppress so that the first of `determined` that can be
/// protected is no longer computable.
fn complement_for_determined(
    determined: &[usize],
    lines: &[Line],
    state: &SuppressionState,
) -> Result<usize, SuppressError> {
    for &cell in determined {
        if let Some(complement) = lines_nearest_first(cell, lines, state)
            .into_iter()
            .find_map(|n| state.complement_in(&lines[n]))
        {
            return Ok(complement);
        }
    }
    let first = determined.first().copied().unwrap_or(0);
    Err(state.cannot_protect(first))
}

/// The lines a computation of `cell` can use, nearest first: those
/// containing it (fewest unknowns first), then those sharing a suppressed
/// cell with them, and so on. When every line containing `cell` is already
/// fully suppressed, it is computed through a chain of other lines, and one
/// of those has to give up a cell.
fn lines_nearest_first(cell: usize, lines: &[Line], state: &SuppressionState) -> Vec<usize> {
    let mut reached = vec![false; state.cells.len()];
    let mut frontier = reached.clone();
    if let (Some(start), Some(seen)) = (frontier.get_mut(cell), reached.get_mut(cell)) {
        (*start, *seen) = (true, true);
    }
    let mut placed = vec![false; lines.len()];
    let mut order = Vec::new();
    for distance in 0.. {
        let mut next = vec![false; state.cells.len()];
        for (n, line) in lines.iter().enumerate() {
            if placed[n] || !line.cells().any(|i| frontier[i]) {
                continue;
            }
            placed[n] = true;
            order.push((distance, state.unknowns(line), n));
            for i in line.cells().filter(|&i| state.is_suppressed(i)) {
                if !reached[i] {
                    reached[i] = true;
                    next[i] = true;
                }
            }
        }
        if !next.contains(&true) {
            break;
        }
        frontier = next;
    }
    order.sort_unstable();
    order.into_iter().map(|(_, _, n)| n).collect()
}

/// Suppressed cells (row-major order) whose value follows from the lines
/// and the published cells: those whose unit vector lies in the row space
/// of the system restricted to the suppressed cells.
fn determined_cells(lines: &[Line], state: &SuppressionState) -> Result<Vec<usize>, SuppressError> {
    let mut unknowns: Vec<usize> = lines
        .iter()
        .flat_map(Line::cells)
        .filter(|&i| state.is_suppressed(i))
        .collect();
    unknowns.sort_unstable();
    unknowns.dedup();
    let column = |cell: usize| unknowns.binary_search(&cell).ok();
    let mut echelon = Echelon::default();
    for line in lines {
        let mut equation: SparseRow = line
            .members
            .iter()
            .filter_map(|&i| Some((column(i)?, Ratio::ONE)))
            .chain(column(line.total).map(|col| (col, Ratio::MINUS_ONE)))
            .collect();
        equation.sort_unstable_by_key(|&(col, _)| col);
        echelon.insert(equation).ok_or_else(|| {
            // Not seen with row and column lines; refuse rather than guess.
            state.cannot_protect(unknowns.first().copied().unwrap_or(0))
        })?;
    }
    let mut determined: Vec<usize> = echelon.unit_columns().map(|col| unknowns[col]).collect();
    determined.sort_unstable();
    Ok(determined)
}

/// An exact rational, `den > 0`, in lowest terms. Every operation is
/// checked: `None` on overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ratio {
    num: i128,
    den: i128,
}

impl Ratio {
    const ZERO: Ratio = Ratio { num: 0, den: 1 };
    const ONE: Ratio = Ratio { num: 1, den: 1 };
    const MINUS_ONE: Ratio = Ratio { num: -1, den: 1 };

    fn new(num: i128, den: i128) -> Option<Ratio> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den);
        let (num, den) = (num / g, den / g);
        if den < 0 {
            Some(Ratio {
                num: num.checked_neg()?,
                den: den.checked_neg()?,
            })
        } else {
            Some(Ratio { num, den })
        }
    }

    fn is_zero(self) -> bool {
        self.num == 0
    }

    fn mul(self, o: Ratio) -> Option<Ratio> {
        Ratio::new(self.num.checked_mul(o.num)?, self.den.checked_mul(o.den)?)
    }

    fn div(self, o: Ratio) -> Option<Ratio> {
        Ratio::new(self.num.checked_mul(o.den)?, self.den.checked_mul(o.num)?)
    }

    fn sub(self, o: Ratio) -> Option<Ratio> {
        let num = self
            .num
            .checked_mul(o.den)?
            .checked_sub(o.num.checked_mul(self.den)?)?;
        Ratio::new(num, self.den.checked_mul(o.den)?)
    }
}

/// Greatest common divisor, at least 1 (so that dividing by it is safe).
fn gcd(a: i128, b: i128) -> i128 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    i128::try_from(a).unwrap_or(1).max(1)
}

/// Non-zero entries `(column, coefficient)` in increasing column order.
type SparseRow = Vec<(usize, Ratio)>;

/// A system in reduced row echelon form, built one equation at a time:
/// every row starts with its pivot (coefficient 1), and no other row has a
/// non-zero entry in a pivot's column.
#[derive(Default)]
struct Echelon {
    rows: Vec<SparseRow>,
}

impl Echelon {
    /// Adds `row` to the system; `None` on overflow.
    fn insert(&mut self, mut row: SparseRow) -> Option<()> {
        for basis in &self.rows {
            let Some(&(pivot, _)) = basis.first() else {
                continue;
            };
            if let Some(c) = coefficient(&row, pivot) {
                row = subtract_multiple(&row, c, basis)?;
            }
        }
        let Some(&(pivot, lead)) = row.first() else {
            return Some(());
        };
        let row: SparseRow = row
            .into_iter()
            .map(|(col, c)| Some((col, c.div(lead)?)))
            .collect::<Option<_>>()?;
        for basis in &mut self.rows {
            if let Some(c) = coefficient(basis, pivot) {
                *basis = subtract_multiple(basis, c, &row)?;
            }
        }
        self.rows.push(row);
        Some(())
    }

    /// Columns whose unit vector is in the row space: in reduced form,
    /// exactly the rows with a single entry.
    fn unit_columns(&self) -> impl Iterator<Item = usize> + '_ {
        self.rows
            .iter()
            .filter(|row| row.len() == 1)
            .map(|row| row[0].0)
    }
}

fn coefficient(row: &SparseRow, col: usize) -> Option<Ratio> {
    let at = row.binary_search_by_key(&col, |&(c, _)| c).ok()?;
    Some(row[at].1)
}

/// `a − c·b`, zeros dropped; `None` on overflow.
fn subtract_multiple(a: &SparseRow, c: Ratio, b: &SparseRow) -> Option<SparseRow> {
    let mut out = SparseRow::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let entry = match (a.get(i), b.get(j)) {
            (Some(&(ca, va)), Some(&(cb, _))) if ca < cb => {
                i += 1;
                (ca, va)
            }
            (Some(&(ca, va)), Some(&(cb, vb))) if ca == cb => {
                i += 1;
                j += 1;
                (ca, va.sub(c.mul(vb)?)?)
            }
            (_, Some(&(cb, vb))) => {
                j += 1;
                (cb, Ratio::ZERO.sub(c.mul(vb)?)?)
            }
            (Some(&(ca, va)), None) => {
                i += 1;
                (ca, va)
            }
            (None, None) => break,
        };
        if !entry.1.is_zero() {
            out.push(entry);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn month(v: &str) -> Option<String> {
        generalize_date(v, DateGrain::Month)
    }

    fn year(v: &str) -> Option<String> {
        generalize_date(v, DateGrain::Year)
    }

    #[test]
    fn every_date_form_is_read() {
        let cases = [
            ("2024-03-05", Some("2024-03")),
            ("2024-3-5", Some("2024-03")),
            ("2024/03/05", Some("2024-03")),
            ("2024/3/05", Some("2024-03")),
            ("2024.03.05", Some("2024-03")),
            ("20240305", Some("2024-03")),
            ("2024-03", Some("2024-03")),
            ("2024-3", Some("2024-03")),
            ("2024/03", Some("2024-03")),
            ("2024年3月5日", Some("2024-03")),
            ("2024年03月05日", Some("2024-03")),
            ("2024年3月", Some("2024-03")),
            ("2024年", None),
            ("2024", None),
            ("  2024-12-31\t", Some("2024-12")),
        ];
        for (input, at_month) in cases {
            let at_month = at_month.map_or_else(|| Some("2024".to_owned()), |m| Some(m.to_owned()));
            assert_eq!(month(input), at_month, "{input}");
            assert_eq!(year(input).as_deref(), Some("2024"), "{input}");
        }
    }

    #[test]
    fn a_date_may_carry_a_time() {
        for input in [
            "2024-03-05T10:30",
            "2024-03-05 10:30",
            "2024-03-05   10:30:59",
            "2024-03-05T23:59:59.123456",
            "2024-03-05T00:00Z",
            "2024-03-05T00:00:00+08:00",
            "2024-03-05T00:00:00.5-05:30",
            "2024/03/05 10:30",
            "20240305T10:30:00",
            "2024年3月5日 10:30",
        ] {
            assert_eq!(month(input).as_deref(), Some("2024-03"), "{input}");
        }
    }

    #[test]
    fn invalid_times_are_refused() {
        for input in [
            "2024-03-05T24:00",
            "2024-03-05 10:60",
            "2024-03-05T10:00:60",
            "2024-03-05T10",
            "2024-03-05T9:30",
            "2024-03-05T10:00.5",
            "2024-03-05T10:00:00.",
            "2024-03-05T10:00+24:00",
            "2024-03-05T10:00+08",
            "2024-03-05T10:00z",
            "2024-03-05T10:00 Z",
            "2024-03-05X10:00",
            "2024-03-05T",
            "2024-03T10:00",
            "2024 10:00",
            "2024年3月 10:00",
        ] {
            assert_eq!(month(input), None, "{input}");
        }
    }

    #[test]
    fn impossible_dates_are_refused() {
        for input in [
            "2023-02-29",
            "1900-02-29",
            "2024-04-31",
            "2024-02-30",
            "2024-13-01",
            "2024-00-10",
            "2024-01-00",
            "2024-13",
            "0999-01-01",
            "0999",
            "10000-01-01",
            "2024.03",
            "202403",
            "2024030",
            "2024-03/05",
            "2024-003-05",
            "2024-03-005",
            "24-03-05",
            "2024年13月",
            "2024年2月30日",
            "2024年3月5",
            "2024年日",
            "",
            "   ",
            "abc",
            "2024-03-05x",
            "２０２４-03-05",
        ] {
            assert_eq!(month(input), None, "{input}");
            assert_eq!(year(input), None, "{input}");
        }
        assert_eq!(month("2024-02-29").as_deref(), Some("2024-02"));
        assert_eq!(month("2000-02-29").as_deref(), Some("2000-02"));
        assert_eq!(month("9999-12-31").as_deref(), Some("9999-12"));
        assert_eq!(month("1000-01-01").as_deref(), Some("1000-01"));
    }

    /// A valid date written in one of the accepted full-date forms.
    fn written_date() -> impl Strategy<Value = (String, String, String)> {
        (
            1000u32..=9999,
            1u32..=12,
            1u32..=31,
            0usize..6,
            any::<bool>(),
        )
            .prop_filter("a day the month has", |&(y, m, d, _, _)| {
                d <= days_in_month(y, m)
            })
            .prop_map(|(y, m, d, form, with_time)| {
                let date = match form {
                    0 => format!("{y}-{m:02}-{d:02}"),
                    1 => format!("{y}/{m}/{d}"),
                    2 => format!("{y}.{m:02}.{d}"),
                    3 => format!("{y}{m:02}{d:02}"),
                    4 => format!("{y}年{m}月{d}日"),
                    _ => format!("{y}-{m}-{d}"),
                };
                let time = if with_time { " 08:15:00+08:00" } else { "" };
                (
                    format!("{date}{time}"),
                    format!("{y}-{m:02}"),
                    format!("{y}"),
                )
            })
    }

    proptest! {
        #[test]
        fn valid_dates_generalise_idempotently((input, at_month, at_year) in written_date()) {
            prop_assert_eq!(month(&input), Some(at_month.clone()));
            prop_assert_eq!(year(&input), Some(at_year.clone()));
            prop_assert_eq!(month(&at_month), Some(at_month.clone()));
            prop_assert_eq!(year(&at_month), Some(at_year.clone()));
            prop_assert_eq!(month(&at_year), Some(at_year.clone()));
            prop_assert_eq!(year(&at_year), Some(at_year));
        }

        #[test]
        fn any_text_is_refused_or_generalised_idempotently(input in "[0-9年月日T:. /+Z-]{0,24}|\\PC{0,16}") {
            for grain in [DateGrain::Month, DateGrain::Year] {
                if let Some(out) = generalize_date(&input, grain) {
                    prop_assert_eq!(generalize_date(&out, grain), Some(out));
                }
            }
        }
    }

    fn range(v: &str, step: u64) -> Option<String> {
        generalize_number(v, step, NumberGrain::Range)
    }

    fn round(v: &str, step: u64) -> Option<String> {
        generalize_number(v, step, NumberGrain::Round)
    }

    #[test]
    fn ranges_floor_toward_negative_infinity() {
        let cases = [
            ("1234567", 100_000, "1200000~1300000"),
            ("1,234,567", 100_000, "1200000~1300000"),
            ("-150", 100, "-200~-100"),
            ("-100", 100, "-100~0"),
            ("-100.0", 100, "-100~0"),
            ("-100.01", 100, "-200~-100"),
            ("-0.5", 10, "-10~0"),
            ("-0", 10, "0~10"),
            ("0", 10, "0~10"),
            ("0.4", 1, "0~1"),
            ("+5", 1, "5~6"),
            ("99.999", 100, "0~100"),
            (" 1,234.5 ", 1000, "1000~2000"),
            (
                "18446744073709551615",
                u64::MAX,
                "18446744073709551615~36893488147419103230",
            ),
        ];
        for (input, step, expected) in cases {
            assert_eq!(
                range(input, step).as_deref(),
                Some(expected),
                "{input} / {step}"
            );
        }
    }

    #[test]
    fn a_range_maps_to_itself_and_other_ranges_are_refused() {
        assert_eq!(
            range("1200000~1300000", 100_000).as_deref(),
            Some("1200000~1300000")
        );
        assert_eq!(range(" -200~-100 ", 100).as_deref(), Some("-200~-100"));
        assert_eq!(range("0~1", 1).as_deref(), Some("0~1"));
        for input in [
            "1200000~1400000",
            "1250000~1350000",
            "1300000~1200000",
            "+100~200",
            "0100~200",
            "100~0200",
            "-0~100",
            "100 ~ 200",
            "1,000~1,100",
            "100~200~300",
            "~",
            "100~",
        ] {
            assert_eq!(range(input, 100), None, "{input}");
        }
        assert_eq!(round("0~10", 10), None);
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        let cases = [
            ("1234.5", 10, "1230"),
            ("1235", 10, "1240"),
            ("1234.99", 10, "1230"),
            ("-1235", 10, "-1240"),
            ("-1234.5", 10, "-1230"),
            ("0.4", 1, "0"),
            ("-0.4", 1, "0"),
            ("-0", 1, "0"),
            ("0.5", 1, "1"),
            ("-0.5", 1, "-1"),
            ("2.5", 5, "5"),
            ("2.4999", 5, "0"),
            ("-2.5", 5, "-5"),
            ("2", 4, "4"),
            ("1.9", 4, "0"),
            ("7", 1, "7"),
            ("1,234,567.89", 1000, "1235000"),
            (
                "999999999999999999999999999999",
                10,
                "1000000000000000000000000000000",
            ),
        ];
        for (input, step, expected) in cases {
            assert_eq!(
                round(input, step).as_deref(),
                Some(expected),
                "{input} / {step}"
            );
            assert_eq!(
                round(expected, step).as_deref(),
                Some(expected),
                "{expected} again"
            );
        }
    }

    #[test]
    fn only_plain_decimals_are_read() {
        for input in [
            "", "-", "+", "1.", ".5", "-.5", "1,23", "12,3456", "1234,567", ",123", "1,,234",
            "1,234,", "1.234,5", "1e3", "1 000", "0x10", "１２", "--1", "+-1", "1-", "NaN", "∞",
        ] {
            assert_eq!(range(input, 10), None, "{input}");
            assert_eq!(round(input, 10), None, "{input}");
        }
    }

    #[test]
    fn significant_digits_and_overflow_are_bounded() {
        let thirty = "123456789012345678901234567890";
        assert!(round(thirty, 1).is_some());
        assert_eq!(round(&format!("{thirty}1"), 1), None);
        assert_eq!(round(&format!("{thirty}.1"), 1), None);
        // Leading and trailing zeros are not significant.
        let padded = format!("000000000000{thirty}.000000000000");
        assert_eq!(round(&padded, 1).as_deref(), Some(thirty));
        assert_eq!(
            round("0.000000000000000000000000000000000001", 1).as_deref(),
            Some("0")
        );
        // One significant digit, but past i128.
        assert_eq!(round(&format!("1{}", "0".repeat(39)), 1), None);
        assert_eq!(range(&format!("1{}", "0".repeat(39)), 1), None);
        // A rounded value that would need more than 30 digits is refused, so
        // every result can be read again.
        assert_eq!(round(&format!("1{}", "0".repeat(36)), 7), None);
        assert_eq!(range("170141183460469231731687303715884105727~1", 1), None);
    }

    /// An exact decimal with up to three fraction digits, written with or
    /// without sign `+`, grouping and trailing zeros, and its value × 1000.
    fn written_number() -> impl Strategy<Value = (String, i128)> {
        (
            any::<i64>(),
            0u32..1000,
            0usize..4,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(integer, thousandths, fraction_digits, grouped, plus)| {
                let magnitude = integer.unsigned_abs();
                let mut text = magnitude.to_string();
                if grouped {
                    let digits: Vec<char> = text.chars().collect();
                    let head = digits.len() % 3;
                    let mut out = String::new();
                    for (i, d) in digits.iter().enumerate() {
                        if i > 0 && i % 3 == head % 3 && (i != head || head > 0) {
                            out.push(',');
                        }
                        out.push(*d);
                    }
                    text = out;
                }
                let kept = [1, 10, 100, 1000][3 - fraction_digits.min(3)];
                let thousandths = if fraction_digits == 0 {
                    0
                } else {
                    thousandths / kept * kept
                };
                if fraction_digits > 0 {
                    let full = format!("{thousandths:03}");
                    text = format!("{text}.{}", &full[..fraction_digits]);
                }
                let sign = if integer < 0 {
                    "-"
                } else if plus {
                    "+"
                } else {
                    ""
                };
                let scaled = i128::from(magnitude) * 1000 + i128::from(thousandths);
                (
                    format!("{sign}{text}"),
                    if integer < 0 { -scaled } else { scaled },
                )
            })
    }

    proptest! {
        #[test]
        fn numbers_match_scaled_integer_arithmetic(
            (input, thousandths) in written_number(),
            step in prop_oneof![1u64..20, 1u64..1_000_000, Just(u64::MAX)],
        ) {
            let scaled_step = i128::from(step) * 1000;
            let lo = thousandths.div_euclid(scaled_step) * i128::from(step);
            let expected_range = format!("{lo}~{}", lo + i128::from(step));
            let out = range(&input, step);
            prop_assert_eq!(out.clone(), Some(expected_range));
            let out = out.unwrap_or_default();
            prop_assert_eq!(range(&out, step), Some(out));

            let (q, r) = (thousandths.abs() / scaled_step, thousandths.abs() % scaled_step);
            let magnitude = (q + i128::from(2 * r >= scaled_step)) * i128::from(step);
            let expected_round = if thousandths < 0 { -magnitude } else { magnitude };
            let out = round(&input, step);
            prop_assert_eq!(out.clone(), Some(expected_round.to_string()));
            let out = out.unwrap_or_default();
            prop_assert_eq!(round(&out, step), Some(out));
        }

        #[test]
        fn any_text_is_refused_or_generalised_idempotently_as_a_number(
            input in "[0-9,.~+-]{0,40}",
            step in 1u64..1000,
        ) {
            for grain in [NumberGrain::Range, NumberGrain::Round] {
                if let Some(out) = generalize_number(&input, step, grain) {
                    prop_assert_eq!(generalize_number(&out, step, grain), Some(out));
                }
            }
        }
    }

    #[test]
    fn addresses_are_cut_after_the_district() {
        let cases = [
            ("湖北省武汉市洪山区珞喻路1037号", Some("湖北省武汉市洪山区")),
            (
                "北京市朝阳区建国路88号SOHO现代城5号楼",
                Some("北京市朝阳区"),
            ),
            (
                "河北省保定市涞水县永阳镇北义安村",
                Some("河北省保定市涞水县"),
            ),
            (
                "内蒙古自治区锡林郭勒盟正蓝旗上都镇",
                Some("内蒙古自治区锡林郭勒盟正蓝旗"),
            ),
            ("广东省东莞市南城街道鸿福路", Some("广东省东莞市")),
            ("武汉市光谷小区5栋", Some("武汉市")),
            ("幸福小区3栋201", None),
            ("", None),
            ("   ", None),
            // Prefecture (地区) and county-level city (市) below it.
            (
                "新疆维吾尔自治区阿克苏地区阿克苏市解放路",
                Some("新疆维吾尔自治区阿克苏地区阿克苏市"),
            ),
            // A 区 after the house number is a building's name, not a district.
            (
                "广东省东莞市南城街道鸿福路28号国际商业区",
                Some("广东省东莞市"),
            ),
            ("武汉市光谷１号商业区", Some("武汉市")),
            ("武汉市红旗路5号", Some("武汉市")),
            ("武汉市城市花园5栋", Some("武汉市")),
            ("山东省聊城市古楼街道", Some("山东省聊城市")),
            ("山东省聊城市东昌府区柳园街道", Some("山东省聊城市东昌府区")),
            ("武汉市市场路", Some("武汉市")),
            (
                "湖北省长阳土家族自治县龙舟坪镇",
                Some("湖北省长阳土家族自治县"),
            ),
            ("上海市浦东新区张江路", Some("上海市浦东新区")),
            ("  北京市朝阳区  ", Some("北京市朝阳区")),
            ("北京市 朝阳区 建国路", Some("北京市 朝阳区")),
            ("区政府路1号", None),
            ("市场街2号", None),
            ("湖北省武汉市", Some("湖北省武汉市")),
        ];
        for (input, expected) in cases {
            let out = generalize_address(input);
            assert_eq!(out.as_deref(), expected, "{input}");
            if let Some(out) = out {
                assert_eq!(generalize_address(&out), Some(out.clone()), "{out} again");
            }
        }
    }

    proptest! {
        #[test]
        fn addresses_generalise_to_a_prefix_idempotently(
            input in "[ 省市区县旗小社治地红城场镇乡街道路号村栋楼室盟州自武汉北京1２a]{0,20}",
        ) {
            if let Some(out) = generalize_address(&input) {
                prop_assert!(input.trim().starts_with(&out));
                prop_assert_eq!(out.trim(), out.as_str());
                prop_assert_eq!(generalize_address(&out), Some(out));
            }
        }
    }

    /// A table from rows of cells, totals at the given row and column.
    fn table(
        rows: &[&[Option<u64>]],
        total_row: Option<usize>,
        total_col: Option<usize>,
    ) -> CountTable {
        CountTable {
            rows: rows.len(),
            cols: rows.first().map_or(0, |r| r.len()),
            cells: rows.iter().flat_map(|r| r.iter().copied()).collect(),
            total_row,
            total_col,
        }
    }

    /// The suppressed cells as (row, col).
    fn suppressed_at(t: &CountTable, s: &Suppressed) -> Vec<(usize, usize)> {
        (0..s.cells.len())
            .filter(|&i| s.cells[i])
            .map(|i| (i / t.cols, i % t.cols))
            .collect()
    }

    #[test]
    fn one_small_cell_needs_a_rectangle() {
        let s = Some;
        let t = table(
            &[
                &[s(10), s(20), s(30), s(60)],
                &[s(40), s(2), s(50), s(92)],
                &[s(60), s(70), s(80), s(210)],
                &[s(110), s(92), s(160), s(362)],
            ],
            Some(3),
            Some(3),
        );
        let out = suppress(&t, 3).unwrap();
        assert_eq!(suppressed_at(&t, &out), [(0, 0), (0, 1), (1, 0), (1, 1)]);
        assert_eq!((out.primary, out.complementary), (1, 3));
    }

    #[test]
    fn a_small_total_is_suppressed_and_protected() {
        let s = Some;
        let t = table(
            &[
                &[s(1), s(5), s(6)],
                &[s(1), s(7), s(8)],
                &[s(2), s(12), s(14)],
            ],
            Some(2),
            Some(2),
        );
        let out = suppress(&t, 3).unwrap();
        assert_eq!(
            suppressed_at(&t, &out),
            [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
        );
        assert_eq!((out.primary, out.complementary), (3, 3));
    }

    #[test]
    fn a_line_with_one_member_suppresses_its_total() {
        let s = Some;
        // Row 1 has one member (10), suppressed to protect column 0; its
        // total is then the only cell left to suppress.
        let t = table(
            &[&[s(2), s(2)], &[s(10), s(10)], &[s(12), s(12)]],
            Some(2),
            Some(1),
        );
        let out = suppress(&t, 3).unwrap();
        assert_eq!(suppressed_at(&t, &out), [(0, 0), (0, 1), (1, 0), (1, 1)]);
        assert_eq!((out.primary, out.complementary), (2, 2));
    }

    #[test]
    fn without_totals_only_small_cells_are_suppressed() {
        let s = Some;
        let t = table(&[&[s(1), s(0), s(9)], &[None, s(4), s(2)]], None, None);
        let out = suppress(&t, 3).unwrap();
        assert_eq!(suppressed_at(&t, &out), [(0, 0), (1, 2)]);
        assert_eq!((out.primary, out.complementary), (2, 0));
    }

    #[test]
    fn zeros_are_published_but_chosen_when_nothing_else_is_left() {
        let s = Some;
        // Row 0: 2 + 0 = 2; the small cell and its total are suppressed
        // (both small), leaving two unknowns: the zero stays published.
        let t = table(&[&[s(2), s(0), s(2)], &[s(5), s(0), s(5)]], None, Some(2));
        let out = suppress(&t, 3).unwrap();
        assert_eq!(suppressed_at(&t, &out), [(0, 0), (0, 2)]);
        // Row 0 with a large total: only the zero can protect the 2.
        let t = table(&[&[s(2), s(0), s(0), s(2)]], None, Some(3));
        let out = suppress(&t, 5).unwrap();
        assert_eq!(suppressed_at(&t, &out), [(0, 0), (0, 3)]);
        let t = table(&[&[s(2), s(0), s(9), s(11)]], None, Some(3));
        let out = suppress(&t, 3).unwrap();
        assert_eq!(suppressed_at(&t, &out), [(0, 0), (0, 2)]);
    }

    #[test]
    fn missing_totals_give_no_equation() {
        let s = Some;
        let t = table(&[&[s(2), s(9), None], &[s(4), s(9), s(13)]], None, Some(2));
        let out = suppress(&t, 3).unwrap();
        assert_eq!(suppressed_at(&t, &out), [(0, 0)]);
    }

    #[test]
    fn too_many_small_cells_are_refused() {
        let t = CountTable {
            rows: 1,
            cols: SUPPRESSED_MAX + 1,
            cells: vec![Some(1); SUPPRESSED_MAX + 1],
            total_row: None,
            total_col: None,
        };
        assert_eq!(
            suppress(&t, 2),
            Err(SuppressError::TooManyUnknowns {
                suppressed: SUPPRESSED_MAX + 1,
                max: SUPPRESSED_MAX
            })
        );
    }

    /// Lines and a suppression state for `t` with the given cells suppressed.
    fn with_suppressed(t: &CountTable, cells: &[(usize, usize)]) -> (Vec<Line>, SuppressionState) {
        let mut state = SuppressionState {
            values: t.cells.clone(),
            cols: t.cols,
            cells: vec![false; t.cells.len()],
            primary: 0,
            complementary: 0,
        };
        for &(r, c) in cells {
            state.cells[r * t.cols + c] = true;
        }
        (table_lines(t), state)
    }

    #[test]
    fn a_bridge_between_two_rectangles_is_determined() {
        // Every line has two or three unknowns, yet (0, 2) joins two
        // otherwise separate cycles and can be computed: the line rule
        // alone would publish it.
        let t = CountTable {
            rows: 5,
            cols: 5,
            cells: vec![Some(5); 25],
            total_row: Some(4),
            total_col: Some(4),
        };
        let rectangles = [
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
            (2, 2),
            (2, 3),
            (3, 2),
            (3, 3),
        ];
        let (lines, state) = with_suppressed(&t, &[rectangles.as_slice(), &[(0, 2)]].concat());
        assert!(lines.iter().all(|l| state.unknowns(l) != 1));
        assert_eq!(determined_cells(&lines, &state).unwrap(), [2]);
        let (lines, state) = with_suppressed(&t, &rectangles);
        assert_eq!(
            determined_cells(&lines, &state).unwrap(),
            Vec::<usize>::new()
        );
    }

    /// Totals in row 0 and column 0; after the line rule, (3, 2) is still
    /// computable as c2 + r0 − r2 + c3 although both its lines are fully
    /// suppressed (found by the property test below).
    fn chained_table() -> CountTable {
        let s = Some;
        table(
            &[
                &[s(24), s(19), s(4), s(1)],
                &[s(1), s(1), None, s(0)],
                &[s(21), s(17), s(3), s(1)],
                &[s(2), s(1), s(1), None],
            ],
            Some(0),
            Some(0),
        )
    }

    #[test]
    fn verification_protects_what_the_line_rule_misses() {
        let t = chained_table();
        let lines = table_lines(&t);
        let primary = [(0, 3), (1, 0), (1, 1), (2, 3), (3, 1), (3, 2)];
        let (_, mut state) = with_suppressed(&t, &primary);
        protect_lines(&lines, &mut state).unwrap();
        assert_eq!(determined_cells(&lines, &state).unwrap(), [3 * 4 + 2]);
        assert!(lines_nearest_first(3 * 4 + 2, &lines, &state)
            .iter()
            .take(2)
            .all(|&n| state.complement_in(&lines[n]).is_none()));

        let out = suppress(&t, 2).unwrap();
        assert_eq!(out.primary, 6);
        let (lines, state) = with_suppressed(&t, &suppressed_at(&t, &out));
        assert!(determined_cells(&lines, &state).unwrap().is_empty());
        assert!(determined_by_float(&t, &out.cells).is_empty());
    }

    // ---- an independent check: floating-point rank with partial pivoting

    const TOLERANCE: f64 = 1e-9;

    fn rank(mut m: Vec<Vec<f64>>) -> usize {
        let cols = m.first().map_or(0, Vec::len);
        let mut rank = 0;
        for col in 0..cols {
            let Some(pivot) = (rank..m.len())
                .max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))
                .filter(|&p| m[p][col].abs() > TOLERANCE)
            else {
                continue;
            };
            m.swap(rank, pivot);
            let pivot_row = m[rank].clone();
            for (r, row) in m.iter_mut().enumerate() {
                if r != rank {
                    let f = row[col] / pivot_row[col];
                    for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                        *x -= f * p;
                    }
                }
            }
            rank += 1;
        }
        rank
    }

    /// Equations of `t` written out from the definition: one per row (with
    /// a totals column) and per column (with a totals row) whose total is
    /// present and which has a member holding a value.
    fn equations(t: &CountTable) -> Vec<Vec<(usize, f64)>> {
        let at = |r: usize, c: usize| r * t.cols + c;
        let mut out = Vec::new();
        let mut add = |members: Vec<usize>, total: usize| {
            if t.cells[total].is_some() && !members.is_empty() {
                let mut eq: Vec<(usize, f64)> = members.into_iter().map(|i| (i, 1.0)).collect();
                eq.push((total, -1.0));
                out.push(eq);
            }
        };
        if let Some(tc) = t.total_col {
            for r in 0..t.rows {
                let members = (0..t.cols).filter(|&c| c != tc && t.cells[at(r, c)].is_some());
                add(members.map(|c| at(r, c)).collect(), at(r, tc));
            }
        }
        if let Some(tr) = t.total_row {
            for c in 0..t.cols {
                let members = (0..t.rows).filter(|&r| r != tr && t.cells[at(r, c)].is_some());
                add(members.map(|r| at(r, c)).collect(), at(tr, c));
            }
        }
        out
    }

    /// Suppressed cells whose unit vector is in the row space of the
    /// equations restricted to suppressed cells (rank does not grow).
    fn determined_by_float(t: &CountTable, suppressed: &[bool]) -> Vec<usize> {
        let matrix: Vec<Vec<f64>> = equations(t)
            .iter()
            .map(|eq| {
                let mut row = vec![0.0; t.cells.len()];
                for &(i, coefficient) in eq {
                    if suppressed[i] {
                        row[i] = coefficient;
                    }
                }
                row
            })
            .collect();
        let base = rank(matrix.clone());
        (0..t.cells.len())
            .filter(|&i| suppressed[i])
            .filter(|&i| {
                let mut with_unit = matrix.clone();
                let mut unit = vec![0.0; t.cells.len()];
                unit[i] = 1.0;
                with_unit.push(unit);
                rank(with_unit) == base
            })
            .collect()
    }

    /// A random table of counts with real totals: data cells, then totals
    /// inserted first or last.
    fn random_table() -> impl Strategy<Value = CountTable> {
        let cell = prop_oneof![
            3 => (0u64..4).prop_map(Some),
            3 => (0u64..20).prop_map(Some),
            1 => Just(None),
        ];
        (
            1usize..8,
            1usize..6,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_flat_map(move |(rows, cols, with_row, with_col, first)| {
                let cells = prop::collection::vec(cell.clone(), rows * cols);
                (Just((rows, cols, with_row, with_col, first)), cells)
            })
            .prop_map(|((rows, cols, with_row, with_col, first), cells)| {
                let sum = |v: Vec<Option<u64>>| {
                    v.iter()
                        .any(Option::is_some)
                        .then(|| v.iter().flatten().sum())
                };
                let mut grid: Vec<Vec<Option<u64>>> =
                    cells.chunks(cols).map(<[_]>::to_vec).collect();
                let at = |n: usize| if first { 0 } else { n };
                if with_col {
                    for row in &mut grid {
                        let total = sum(row.clone());
                        row.insert(at(cols), total);
                    }
                }
                if with_row {
                    let width = grid[0].len();
                    let totals = (0..width)
                        .map(|c| sum(grid.iter().map(|r| r[c]).collect()))
                        .collect();
                    grid.insert(at(rows), totals);
                }
                CountTable {
                    rows: grid.len(),
                    cols: grid[0].len(),
                    cells: grid.concat(),
                    total_row: with_row.then(|| at(rows)),
                    total_col: with_col.then(|| at(cols)),
                }
            })
    }

    proptest! {
        // Tables are small and cheap; the rare chained cases need many.
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn suppression_protects_every_small_cell(t in random_table(), k in 2u64..6) {
            let out = suppress(&t, k).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let small: Vec<bool> = t.cells.iter().map(|v| v.is_some_and(|v| 0 < v && v < k)).collect();
            prop_assert_eq!(out.cells.len(), t.cells.len());
            // (a) no published cell holds a small count, and (c) every small
            // cell is suppressed: one statement, checked cell by cell; the
            // small cells are exactly the primary ones.
            for (i, (&is_small, &suppressed)) in small.iter().zip(&out.cells).enumerate() {
                prop_assert!(!is_small || suppressed, "small cell {} published", i);
            }
            prop_assert_eq!(out.primary, small.iter().filter(|&&s| s).count() as u64);
            let suppressed = out.cells.iter().filter(|&&s| s).count() as u64;
            prop_assert_eq!(out.primary + out.complementary, suppressed);
            // (b) no suppressed cell can be computed back.
            prop_assert_eq!(determined_by_float(&t, &out.cells), Vec::<usize>::new());
        }

        #[test]
        fn exact_elimination_agrees_with_floating_point(
            t in random_table(),
            seed in prop::collection::vec(any::<bool>(), 64),
        ) {
            let chosen: Vec<(usize, usize)> = (0..t.cells.len())
                .filter(|&i| t.cells[i].is_some() && seed[i % seed.len()])
                .map(|i| (i / t.cols, i % t.cols))
                .collect();
            let (lines, state) = with_suppressed(&t, &chosen);
            let exact = determined_cells(&lines, &state).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(exact, determined_by_float(&t, &state.cells));
        }
    }
}
