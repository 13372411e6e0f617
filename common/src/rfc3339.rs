//! Times as ferry prints them: RFC 3339 in UTC (`2026-11-28T10:00:00Z`).
//! One formatter for every crate, so a time in a key listing, a certificate
//! report, a policy decision, a hold and an audit record reads the same and
//! sorts as text; there were five before, one of them hand-written.
//!
//! All formatting uses the `time` crate, the workspace's one date library
//! for instants (policy also uses `jiff`, only for IANA time-zone rules).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `2026-11-28T10:00:00Z`, with a fraction only when there is one
/// (`…00.5Z`), and the offset `t` carries (`Z` for UTC). A time RFC 3339
/// cannot write (a year past 9999) prints as `@SECONDSs` since the Unix
/// epoch rather than failing: it is for reading, never parsed back.
pub fn format(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| format!("@{}s", t.unix_timestamp()))
}

/// `2026-11-28T10:00:00.123Z`: always three fraction digits, in UTC, so log
/// lines align in a column.
pub fn format_millis(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt)
        .unwrap_or_else(|_| format!("@{}s", t.unix_timestamp()))
}

/// The instant `s` seconds after the Unix epoch, if representable.
pub fn from_unix_s(s: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(s).ok()
}

/// The instant `ms` milliseconds after the Unix epoch, if representable.
pub fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// [`format`] of Unix seconds; `@Ns` when out of range.
pub fn unix_s(s: i64) -> String {
    from_unix_s(s).map_or_else(|| format!("@{s}s"), format)
}

/// [`format`] of Unix milliseconds; `@Nms` when out of range.
pub fn unix_ms(ms: i64) -> String {
    from_unix_ms(ms).map_or_else(|| format!("@{ms}ms"), format)
}

/// [`format_millis`] of Unix milliseconds; `@Nms` when out of range.
pub fn unix_ms_millis(ms: i64) -> String {
    from_unix_ms(ms).map_or_else(|| format!("@{ms}ms"), format_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(unix_s(0), "1970-01-01T00:00:00Z");
        assert_eq!(unix_s(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(unix_s(951_825_599), "2000-02-29T11:59:59Z");
        assert_eq!(unix_ms(1_500), "1970-01-01T00:00:01.5Z");
        assert_eq!(unix_ms_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            unix_ms_millis(1_767_225_600_123),
            "2026-01-01T00:00:00.123Z"
        );
    }

    #[test]
    fn keeps_the_offset_it_is_given_or_converts_to_utc() {
        let t = from_unix_s(0)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap());
        assert_eq!(format(t), "1970-01-01T08:00:00+08:00");
        assert_eq!(format_millis(t), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn out_of_range_prints_instead_of_failing() {
        assert_eq!(unix_s(i64::MAX), format!("@{}s", i64::MAX));
        assert_eq!(unix_ms(i64::MAX), format!("@{}ms", i64::MAX));
        // Year 10000: past what `time` (without large dates) and RFC 3339 hold.
        assert!(unix_s(253_402_300_800).starts_with('@'));
    }
}
