//! UTC time formatting (the workspace's one formatter, `ferry_common::rfc3339`)
//! and the time arguments the audit officer types
//! (`2026-11-28`, `2026-11-28T10:00:00Z`, `2h`, `7d`).

use crate::error::AuditError;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, now (UTC).
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `2026-11-28T10:00:00.123Z` (always three fraction digits, so record
/// lines align), by the workspace's one formatter.
pub use ferry_common::rfc3339::unix_ms_millis as rfc3339;

/// Parses a time argument: RFC 3339, a date (UTC midnight), or an age such
/// as `90s`, `15m`, `2h`, `7d` meaning that long before `now_ms`.
pub fn parse_time_arg(s: &str, now_ms: i64) -> Result<i64, AuditError> {
    let s = s.trim();
    let bad = || {
        AuditError::Usage(format!(
            "time {s:?} not understood: use 2026-11-28, 2026-11-28T10:00:00Z, or an age like 2h or 7d"
        ))
    };
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = s[..s.len() - 1].parse::<i64>() {
            let mult = match unit {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                _ => 86_400_000,
            };
            return n
                .checked_mul(mult)
                .map(|d| now_ms.saturating_sub(d))
                .ok_or_else(bad);
        }
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &fmt) {
        let t = d.midnight().assume_utc();
        return Ok(t.unix_timestamp() * 1000);
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_time_arg("1970-01-02", 0).unwrap(), 86_400_000);
        assert_eq!(parse_time_arg("1970-01-01T00:00:01Z", 0).unwrap(), 1_000);
        assert_eq!(
            parse_time_arg("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        assert!(parse_time_arg("yesterday", 0).is_err());
    }
}
