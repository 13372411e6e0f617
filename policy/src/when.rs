//! Local-time windows and cron schedules, in an explicit IANA time zone.
//!
//! Both work on civil (wall-clock) time in the named zone, so "22:00–06:00
//! Asia/Shanghai" means what the administrator wrote on every day of the
//! year, including days with a daylight-saving change in zones that have one.
//!
//! This is the one module that uses `jiff`; the rest of ferry uses `time`.
//! `time` knows fixed UTC offsets only, not the IANA rules (when a zone
//! changes offset, and to what), which a window in `Europe/Berlin` needs on
//! the two nights a year its offset moves; jiff bundles the IANA database,
//! so zones resolve without reading the host's `/usr/share/zoneinfo`
//! (which ferryd's Landlock sandbox forbids). Other modules name the types
//! below ([`Instant`], [`Zone`]), never jiff itself.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// An instant as windows and schedules compute with it.
pub(crate) type Instant = Timestamp;
/// A time zone with its IANA rules.
pub(crate) type Zone = TimeZone;

/// Days searched for the next window opening or schedule firing. Eight years
/// cover every cron pattern that fires at all (29 February on a given weekday
/// recurs within 28 years only when the day-of-week also restricts it, but
/// cron ORs the two day fields, so 8 leap cycles never matter).
const SEARCH_DAYS: u32 = 366 * 8 + 2;

/// A daily time window in local time. `days` are the days the window
/// *opens* on; a window that crosses midnight stays open into the next day.
#[derive(Debug, Clone)]
pub struct Window {
    /// `[window.NAME]`.
    pub name: String,
    /// IANA time zone name as written.
    pub time_zone: String,
    pub(crate) tz: TimeZone,
    /// Opening, minutes after local midnight.
    pub from_minute: u16,
    /// Closing, minutes after local midnight (1440 = 24:00).
    pub to_minute: u16,
    /// Monday = 0 … Sunday = 6.
    pub days: [bool; 7],
}

impl Window {
    /// Whether the window is open at `ts`.
    pub(crate) fn is_open(&self, ts: Instant) -> bool {
        let dt = self.tz.to_datetime(ts);
        let minute = dt.hour() as u16 * 60 + dt.minute() as u16;
        let day = dt.weekday().to_monday_zero_offset() as usize;
        let yesterday = (day + 6) % 7;
        if self.from_minute < self.to_minute {
            self.days[day] && (self.from_minute..self.to_minute).contains(&minute)
        } else {
            (self.days[day] && minute >= self.from_minute)
                || (self.days[yesterday] && minute < self.to_minute)
        }
    }

    /// The first opening strictly after `ts`, if the window ever opens.
    pub(crate) fn next_opening(&self, ts: Instant) -> Option<Instant> {
        let mut date = self.tz.to_datetime(ts).date();
        // Start a day early: yesterday's opening time converted through a
        // DST change may still lie ahead.
        date = date.yesterday().ok()?;
        for _ in 0..9 {
            let day = date.weekday().to_monday_zero_offset() as usize;
            if self.days[day] {
                let dt = date.at(
                    (self.from_minute / 60) as i8,
                    (self.from_minute % 60) as i8,
                    0,
                    0,
                );
                if let Ok(open) = self.tz.to_timestamp(dt) {
                    if open > ts {
                        return Some(open);
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// Whether the window is open at `at`.
    pub fn is_open_at(&self, at: time::OffsetDateTime) -> bool {
        instant(at).is_some_and(|t| self.is_open(t))
    }

    /// The first opening strictly after `at`.
    pub fn next_opening_after(&self, at: time::OffsetDateTime) -> Option<time::OffsetDateTime> {
        self.next_opening(instant(at)?).and_then(offset_date_time)
    }

    /// Minutes of the week (Monday 00:00 = 0) this window covers, as
    /// half-open ranges; a window crossing Sunday midnight wraps to Monday.
    pub(crate) fn week_ranges(&self) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let len = if self.from_minute < self.to_minute {
            u32::from(self.to_minute - self.from_minute)
        } else {
            u32::from(1440 - self.from_minute + self.to_minute)
        };
        for (d, on) in self.days.iter().enumerate() {
            if !on {
                continue;
            }
            let start = d as u32 * 1440 + u32::from(self.from_minute);
            let end = start + len;
            if end <= 7 * 1440 {
                out.push((start, end));
            } else {
                out.push((start, 7 * 1440));
                out.push((0, end - 7 * 1440));
            }
        }
        out
    }

    /// Whether two windows in the same time zone are ever open at once.
    pub(crate) fn overlaps(&self, other: &Window) -> bool {
        let a = self.week_ranges();
        let b = other.week_ranges();
        a.iter()
            .any(|(s1, e1)| b.iter().any(|(s2, e2)| s1 < e2 && s2 < e1))
    }
}

/// The time zone named `name`, from the IANA database compiled into the
/// binary: never a file read, so a policy compiles the same on every host
/// and on every reload, also inside ferryd's Landlock sandbox (a lazily
/// read `/usr/share/zoneinfo` made reloads fail once jiff's cache expired).
pub(crate) fn time_zone(name: &str) -> Result<TimeZone, jiff::Error> {
    jiff::tz::TimeZoneDatabase::bundled().get(name)
}

/// `t` as an [`Instant`], if in jiff's range.
pub(crate) fn instant(t: time::OffsetDateTime) -> Option<Instant> {
    Timestamp::from_nanosecond(t.unix_timestamp_nanos()).ok()
}

/// `t` as the rest of ferry keeps time (whole seconds).
pub(crate) fn offset_date_time(t: Instant) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).ok()
}

/// Parses `HH:MM` (24-hour; `24:00` only as an end). Returns minutes.
pub(crate) fn parse_hhmm(s: &str, allow_24: bool) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    match (h, m) {
        (24, 0) if allow_24 => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// Day names accepted in `days`.
pub(crate) const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A spool collection schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Collect whenever files appear.
    Continuous,
    /// Collect at the times a cron expression names.
    Cron(CronSchedule),
}

/// A five-field cron expression (minute hour day-of-month month
/// day-of-week) in a time zone, with Vixie cron's rule that a restricted
/// day-of-month and a restricted day-of-week are ORed.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// The expression as written.
    pub expression: String,
    /// IANA time zone name.
    pub time_zone: String,
    pub(crate) tz: TimeZone,
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    dom_any: bool,
    dow_any: bool,
}

/// Why a cron expression was refused: byte offset and length inside the
/// expression, and the message.
#[derive(Debug)]
pub(crate) struct CronError {
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) message: String,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DOWS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl CronSchedule {
    pub(crate) fn parse(
        expression: &str,
        time_zone: &str,
        tz: TimeZone,
    ) -> Result<CronSchedule, CronError> {
        let expanded = match expression.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(CronError {
                    offset: 0,
                    len: expression.len(),
                    message: format!(
                        "unknown cron macro `{other}`; use @hourly, @daily, @weekly, @monthly or @yearly, or five fields"
                    ),
                })
            }
            _ => expression,
        };
        let macro_used = expanded.as_ptr() != expression.as_ptr();
        let mut fields = Vec::new();
        let mut offset = 0;
        for part in expanded.split(' ') {
            if !part.is_empty() {
                fields.push((if macro_used { 0 } else { offset }, part));
            }
            offset += part.len() + 1;
        }
        if fields.len() != 5 {
            return Err(CronError {
                offset: 0,
                len: expression.len(),
                message: format!(
                    "a cron schedule has 5 fields (minute hour day-of-month month day-of-week), found {}; e.g. \"30 1 * * *\" for 01:30 every day",
                    fields.len()
                ),
            });
        }
        let field = |i: usize, min: u32, max: u32, names: &[&str], what: &str| {
            let (off, text) = fields[i];
            parse_field(text, min, max, names, what).map_err(|message| CronError {
                offset: off,
                len: text.len(),
                message,
            })
        };
        let (minutes, _) = field(0, 0, 59, &[], "minute")?;
        let (hours, _) = field(1, 0, 23, &[], "hour")?;
        let (dom, dom_any) = field(2, 1, 31, &[], "day-of-month")?;
        let (months, _) = field(3, 1, 12, &MONTHS, "month")?;
        let (mut dow, dow_any) = field(4, 0, 7, &DOWS, "day-of-week")?;
        // 7 is Sunday too.
        if dow & (1 << 7) != 0 {
            dow |= 1;
        }
        Ok(CronSchedule {
            expression: expression.to_string(),
            time_zone: time_zone.to_string(),
            tz,
            minutes,
            hours: hours as u32,
            days_of_month: dom as u32,
            months: months as u16,
            days_of_week: (dow & 0x7f) as u8,
            dom_any,
            dow_any,
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first firing strictly after `at`.
    pub fn next_run_after(&self, at: time::OffsetDateTime) -> Option<time::OffsetDateTime> {
        self.next_after(instant(at)?).and_then(offset_date_time)
    }

    /// Whether the schedule fires at all (`30 2 31 2 *` never does).
    pub(crate) fn ever_fires(&self) -> bool {
        // 2026-01-01T00:00Z: any fixed instant will do; a schedule that
        // never fires from there never fires at all.
        let origin = Timestamp::from_second(1_767_225_600).unwrap_or(Timestamp::UNIX_EPOCH);
        self.next_after(origin).is_some()
    }

    /// The first firing strictly after `ts`, if the schedule ever fires.
    pub(crate) fn next_after(&self, ts: Instant) -> Option<Instant> {
        let start: DateTime = self.tz.to_datetime(ts);
        // A day back, so a firing moved later by a DST change is not missed.
        let mut date = start.date().yesterday().ok()?;
        for _ in 0..SEARCH_DAYS {
            if self.day_matches(date) {
                for h in 0..24i8 {
                    if self.hours & (1 << h) == 0 {
                        continue;
                    }
                    for m in 0..60i8 {
                        if self.minutes & (1 << m) == 0 {
                            continue;
                        }
                        if let Ok(t) = self.tz.to_timestamp(date.at(h, m, 0, 0)) {
                            if t > ts {
                                return Some(t);
                            }
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

/// Parses one cron field into a bit set; the bool says it was `*`.
fn parse_field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    what: &str,
) -> Result<(u64, bool), String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Month names are 1-based, day names 0-based.
            return Ok(i as u32 + min.min(1) * u32::from(names.len() == 12));
        }
        match s.parse::<u32>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(format!(
                "cron {what} field: `{s}` is not a number from {min} to {max}{}",
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" or a name ({})", names.join(", "))
                }
            )),
        }
    };
    let mut bits = 0u64;
    let any = text == "*";
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step = s
                    .parse::<u32>()
                    .ok()
                    .filter(|s| (1..=max.max(1)).contains(s))
                    .ok_or_else(|| {
                        format!("cron {what} field: step `{s}` must be a number from 1 to {max}")
                    })?;
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!(
                    "cron {what} field: range `{range}` runs backwards; write the smaller value first"
                ));
            }
            (a, b)
        } else {
            let v = value(range)?;
            // `5/15` means 5, 20, 35, 50, as in Vixie cron.
            (v, if step > 1 { max } else { v })
        };
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, any))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz(name: &str) -> TimeZone {
        super::time_zone(name).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn cron_next_in_shanghai() {
        let c = CronSchedule::parse("30 1 * * *", "Asia/Shanghai", tz("Asia/Shanghai")).unwrap();
        // 2026-11-28T00:00Z is 08:00 in Shanghai; next 01:30 local is 17:30Z.
        assert_eq!(
            c.next_after(ts("2026-11-28T00:00:00Z")),
            Some(ts("2026-11-28T17:30:00Z"))
        );
    }

    #[test]
    fn cron_fields_and_errors() {
        let z = tz("UTC");
        let c = CronSchedule::parse("*/15 9-17 * * mon-fri", "UTC", z.clone()).unwrap();
        // Saturday 2026-11-28 → Monday 09:00.
        assert_eq!(
            c.next_after(ts("2026-11-28T12:00:00Z")),
            Some(ts("2026-11-30T09:00:00Z"))
        );
        let e = CronSchedule::parse("0 25 * * *", "UTC", z.clone()).unwrap_err();
        assert_eq!((e.offset, e.len), (2, 2));
        assert!(e.message.contains("hour"), "{}", e.message);
        assert!(CronSchedule::parse("0 0 * *", "UTC", z.clone()).is_err());
        let never = CronSchedule::parse("0 0 30 feb *", "UTC", z).unwrap();
        assert_eq!(never.next_after(ts("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn window_across_midnight() {
        let w = Window {
            name: "night".into(),
            time_zone: "Asia/Shanghai".into(),
            tz: tz("Asia/Shanghai"),
            from_minute: 22 * 60,
            to_minute: 6 * 60,
            days: [true; 7],
        };
        assert!(w.is_open(ts("2026-11-28T15:00:00Z"))); // 23:00 local
        assert!(w.is_open(ts("2026-11-28T21:59:00Z"))); // 05:59 local
        assert!(!w.is_open(ts("2026-11-28T22:00:00Z"))); // 06:00 local
        assert_eq!(
            w.next_opening(ts("2026-11-28T04:00:00Z")),
            Some(ts("2026-11-28T14:00:00Z"))
        );
    }
    #[test]
    fn window_on_a_daylight_saving_day() {
        // 2026-03-08 02:00 does not exist in New York (clocks jump to 03:00).
        let w = Window {
            name: "early".into(),
            time_zone: "America/New_York".into(),
            tz: tz("America/New_York"),
            from_minute: 2 * 60,
            to_minute: 4 * 60,
            days: [true; 7],
        };
        assert!(w.is_open(ts("2026-03-08T07:30:00Z"))); // 03:30 EDT
        assert!(!w.is_open(ts("2026-03-08T08:00:00Z"))); // 04:00 EDT
        assert_eq!(
            w.next_opening(ts("2026-03-08T05:00:00Z")),
            Some(ts("2026-03-08T07:00:00Z"))
        );
        // The next day opens at 02:00 EDT = 06:00Z.
        assert_eq!(
            w.next_opening(ts("2026-03-08T08:00:00Z")),
            Some(ts("2026-03-09T06:00:00Z"))
        );
        let c =
            CronSchedule::parse("30 2 * * *", "America/New_York", tz("America/New_York")).unwrap();
        // The missing 02:30 fires at 03:30 EDT, not never.
        assert_eq!(
            c.next_after(ts("2026-03-08T05:00:00Z")),
            Some(ts("2026-03-08T07:30:00Z"))
        );
    }
}
