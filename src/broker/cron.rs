//! Cron expressions and time zones for schedules: parsing (with the `croner` crate, seconds
//! field required) and fire-time computation in a named IANA zone (with `chrono-tz`).
//!
//! Pure functions of their arguments: no clock is read, so the core can use them with its
//! injected `now_ms`.
//!
//! Daylight-saving time, as croner 4.0.3 computes it (searches move in real time, and the
//! zone's offset is applied to every candidate wall-clock time):
//! - **Gap (spring forward).** A fixed-time expression (one single number in each of its
//!   second, minute and hour fields, e.g. `0 30 2 * * *`) whose wall-clock time does not
//!   exist that day fires
//!   once, at the first valid time after the gap (03:00 in Europe/Berlin on 2026-03-29).
//!   Expressions with a wildcard, list, range or step in those fields skip the times inside
//!   the gap.
//! - **Overlap (fall back).** A fixed-time expression whose time occurs twice fires once, at
//!   the first occurrence. Expressions with a wildcard, list, range or step there fire at every
//!   matching wall-clock time of both passes, so an hourly schedule fires every real hour
//!   (02:00 CEST and 02:00 CET in Europe/Berlin on 2026-10-25).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// A parsed expression and zone, ready to compute fire times.
#[derive(Debug, Clone)]
pub struct CronSpec {
    /// The parsed expression.
    cron: Cron,
    /// The zone its wall-clock times are in.
    zone: Tz,
}

/// Why an expression or zone was refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSpecError {
    /// `cron` or `time_zone`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for CronSpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Parses a cron expression that has a seconds field (six fields, or seven with a year).
pub fn parse_cron(expression: &str) -> Result<Cron, CronSpecError> {
    CronParser::builder()
        .seconds(Seconds::Required)
        .build()
        .parse(expression)
        .map_err(|error| CronSpecError {
            field: "cron",
            reason: format!("{expression:?} is not a cron expression with seconds: {error}"),
        })
}

/// Parses an IANA time zone name (exact spelling, e.g. `Europe/Berlin`, `UTC`).
pub fn parse_zone(name: &str) -> Result<Tz, CronSpecError> {
    name.parse::<Tz>().map_err(|_| CronSpecError {
        field: "time_zone",
        reason: format!("{name:?} is not an IANA time zone name (such as Europe/Berlin or UTC)"),
    })
}

impl CronSpec {
    /// Parses an expression and a zone.
    pub fn parse(expression: &str, zone: &str) -> Result<CronSpec, CronSpecError> {
        Ok(CronSpec {
            cron: parse_cron(expression)?,
            zone: parse_zone(zone)?,
        })
    }

    /// The first fire time strictly after `after_ms`, in ms since the Unix epoch; `None`
    /// when there is none (an expression with a past year, or one that matches no date,
    /// which croner gives up on after a bounded search).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after = DateTime::<Utc>::from_timestamp_millis(i64::try_from(after_ms).ok()?)?
            .with_timezone(&self.zone);
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc_ms(text: &str) -> u64 {
        let time: DateTime<Utc> = text.parse().expect("an RFC 3339 time");
        time.timestamp_millis() as u64
    }

    fn fires(spec: &CronSpec, from: &str, count: usize) -> Vec<String> {
        let mut at_ms = utc_ms(from);
        let mut times = Vec::new();
        for _ in 0..count {
            at_ms = spec.next_after(at_ms).expect("a next fire time");
            let time = Utc
                .timestamp_millis_opt(at_ms as i64)
                .single()
                .expect("valid ms");
            times.push(time.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        times
    }

    #[test]
    fn seconds_are_required_and_bad_fields_are_named() {
        assert!(CronSpec::parse("*/10 * * * * *", "UTC").is_ok());
        assert!(CronSpec::parse("0 0 0 1 1 * 2030", "UTC").is_ok());
        assert_eq!(
            CronSpec::parse("* * * * *", "UTC").unwrap_err().field,
            "cron"
        );
        assert_eq!(
            CronSpec::parse("61 * * * * *", "UTC").unwrap_err().field,
            "cron"
        );
        assert_eq!(
            CronSpec::parse("0 * * * * *", "Mars/Olympus")
                .unwrap_err()
                .field,
            "time_zone"
        );
        assert_eq!(
            CronSpec::parse("0 * * * * *", "europe/berlin")
                .unwrap_err()
                .field,
            "time_zone"
        );
    }

    #[test]
    fn a_fixed_time_in_the_spring_forward_gap_fires_right_after_the_gap() {
        // Europe/Berlin jumps from 02:00 CET to 03:00 CEST on 2026-03-29: 02:30 does not
        // exist that day, and the schedule fires at 03:00 CEST (01:00 UTC) instead.
        let spec = CronSpec::parse("0 30 2 * * *", "Europe/Berlin").expect("valid");
        assert_eq!(
            fires(&spec, "2026-03-27T12:00:00Z", 4),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST, the first time after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
                "2026-03-31T00:30:00Z",
            ]
        );
    }

    #[test]
    fn an_hourly_schedule_fires_every_real_hour_across_fall_back() {
        // Europe/Berlin goes from 03:00 CEST back to 02:00 CET on 2026-10-25: the hour
        // 02:00-03:00 happens twice, and an hourly schedule fires in both.
        let spec = CronSpec::parse("0 0 * * * *", "Europe/Berlin").expect("valid");
        assert_eq!(
            fires(&spec, "2026-10-24T22:30:00Z", 5),
            [
                "2026-10-24T23:00:00Z", // 01:00 CEST
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET, the second pass
                "2026-10-25T02:00:00Z", // 03:00 CET
                "2026-10-25T03:00:00Z",
            ]
        );
    }

    #[test]
    fn a_fixed_time_in_the_fall_back_overlap_fires_once() {
        let spec = CronSpec::parse("0 30 2 * * *", "Europe/Berlin").expect("valid");
        assert_eq!(
            fires(&spec, "2026-10-24T12:00:00Z", 2),
            [
                "2026-10-25T00:30:00Z", // 02:30 CEST, the first occurrence only
                "2026-10-26T01:30:00Z", // 02:30 CET
            ]
        );
    }

    #[test]
    fn new_york_spring_forward_behaves_the_same() {
        let spec = CronSpec::parse("0 30 2 * * *", "America/New_York").expect("valid");
        assert_eq!(
            fires(&spec, "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"] // 03:00 EDT, then 02:30 EDT
        );
    }

    #[test]
    fn expressions_without_a_later_time_give_none() {
        let past_year = CronSpec::parse("0 0 0 1 1 * 2020", "UTC").expect("valid");
        assert_eq!(past_year.next_after(utc_ms("2026-01-01T00:00:00Z")), None);
        let never = CronSpec::parse("0 0 0 30 2 *", "UTC").expect("parses");
        assert_eq!(never.next_after(utc_ms("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn the_next_time_is_strictly_after_and_ignores_milliseconds() {
        let spec = CronSpec::parse("*/10 * * * * *", "UTC").expect("valid");
        let at = utc_ms("2026-01-01T00:00:10Z");
        assert_eq!(spec.next_after(at), Some(at + 10_000));
        assert_eq!(spec.next_after(at - 1), Some(at));
        assert_eq!(spec.next_after(at + 999), Some(at + 10_000));
    }
}
