//! Durations as people write them on command lines and in scenario files:
//! `500ms`, `2s`, `1.5s`, `10m`, `1h`, or a bare number of seconds (`2`,
//! `0`). One parser for every place that reads one, so that a duration
//! that works in one flag works in all of them.

use std::time::Duration;

/// The longest duration accepted: ten years. Far longer than any timeout or
/// interval anyone means, and short enough that adding it to an `Instant` or
/// a `SystemTime` never overflows (which would panic).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Digits of a fraction that are looked at. Eighteen decimal places of an
/// hour are far below a nanosecond, and keep the arithmetic within `u128`.
const MAX_FRACTION_DIGITS: usize = 18;

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A string that is not a duration: the input, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a duration: {kind}")]
pub struct DurationError {
    pub input: String,
    pub kind: DurationErrorKind,
}

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationErrorKind {
    #[error("it is empty (write e.g. 500ms, 1.5s, 10m or 1h)")]
    Empty,
    #[error("it does not start with a number (write e.g. 500ms, 1.5s, 10m or 1h)")]
    NoNumber,
    #[error("`{number}` is not a number")]
    BadNumber { number: String },
    #[error("unknown unit `{unit}` (use ms, s, m or h)")]
    UnknownUnit { unit: String },
    #[error("it is longer than the limit of {limit_secs} s")]
    TooLong { limit_secs: u64 },
}

/// Parses `500ms`, `2s`, `1.5s`, `10m`, `1h`, or a bare number of seconds.
/// The number may have a fraction with any unit (`0.5ms`, `.5s`, `1.5h`);
/// it is exact to the nanosecond (further digits are cut off). Surrounding
/// whitespace is ignored; units are lower case and follow the number
/// directly.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = |kind| DurationError {
        input: s.to_string(),
        kind,
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(err(DurationErrorKind::Empty));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty() {
        return Err(err(DurationErrorKind::NoNumber));
    }
    let unit_nanos = unit_nanos(unit).ok_or_else(|| {
        err(DurationErrorKind::UnknownUnit {
            unit: unit.to_string(),
        })
    })?;
    let nanos = decimal_times(number, unit_nanos).map_err(err)?;
    if nanos > MAX_DURATION.as_nanos() {
        return Err(err(too_long()));
    }
    // At most MAX_DURATION's nanoseconds, which fit in a u64.
    Ok(Duration::from_nanos(nanos as u64))
}

/// Nanoseconds in one `unit`; a bare number counts seconds.
fn unit_nanos(unit: &str) -> Option<u128> {
    match unit {
        "ms" => Some(NANOS_PER_MILLI),
        "" | "s" => Some(NANOS_PER_SEC),
        "m" => Some(60 * NANOS_PER_SEC),
        "h" => Some(3600 * NANOS_PER_SEC),
        _ => None,
    }
}

fn too_long() -> DurationErrorKind {
    DurationErrorKind::TooLong {
        limit_secs: MAX_DURATION.as_secs(),
    }
}

/// `number` (ASCII digits with at most one `.`, and at least one digit)
/// times `unit_nanos`, cut to a whole number of nanoseconds.
fn decimal_times(number: &str, unit_nanos: u128) -> Result<u128, DurationErrorKind> {
    let bad = || DurationErrorKind::BadNumber {
        number: number.to_string(),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return Err(bad());
    }
    // Only digits remain, so the one way to fail is a number too big.
    let whole: u128 = match whole {
        "" => 0,
        digits => digits.parse().map_err(|_| too_long())?,
    };
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let fraction_nanos = match fraction {
        "" => 0,
        digits => {
            let value: u128 = digits.parse().map_err(|_| bad())?;
            value * unit_nanos / 10u128.pow(digits.len() as u32)
        }
    };
    whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(too_long)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn kind(s: &str) -> DurationErrorKind {
        match parse_duration(s) {
            Ok(d) => panic!("{s} parsed as {d:?}"),
            Err(e) => {
                assert_eq!(e.input, s, "the error names the input");
                e.kind
            }
        }
    }

    #[test]
    fn every_unit() {
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("10m"), Duration::from_secs(600));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("24h"), Duration::from_secs(24 * 3600));
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(ok("2"), Duration::from_secs(2));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("1.5"), Duration::from_millis(1500));
    }

    #[test]
    fn fractions_are_exact_to_the_nanosecond() {
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0.1s"), Duration::from_millis(100));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("0.5ms"), Duration::from_micros(500));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("5.s"), Duration::from_secs(5));
        assert_eq!(ok("0.000000001s"), Duration::from_nanos(1));
        // Digits below a nanosecond are cut off, not rounded.
        assert_eq!(ok("0.0000000019s"), Duration::from_nanos(1));
        assert_eq!(
            ok("1.0000000000000000000000000001s"),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn whitespace_around_is_ignored() {
        assert_eq!(ok(" 15s\n"), Duration::from_secs(15));
    }

    /// What each of the three parsers this one replaced accepted (node's
    /// `--checkpoint-after`, the control CLI's flags, testnet's scenario
    /// files) still parses to the same value.
    #[test]
    fn accepts_what_the_old_parsers_did() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("15s", Duration::from_secs(15)),
            ("10m", Duration::from_secs(600)),
            ("1h", Duration::from_secs(3600)),
            ("2", Duration::from_secs(2)),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("200ms", Duration::from_millis(200)),
            ("0.25s", Duration::from_millis(250)),
            ("10000000s", Duration::from_secs(10_000_000)),
        ];
        for (s, want) in cases {
            assert_eq!(ok(s), want, "{s}");
        }
    }

    #[test]
    fn bad_input_names_the_reason() {
        assert_eq!(kind(""), DurationErrorKind::Empty);
        assert_eq!(kind("  "), DurationErrorKind::Empty);
        assert_eq!(kind("x"), DurationErrorKind::NoNumber);
        assert_eq!(kind("ms"), DurationErrorKind::NoNumber);
        assert_eq!(kind("-1s"), DurationErrorKind::NoNumber);
        assert_eq!(
            kind("1d"),
            DurationErrorKind::UnknownUnit { unit: "d".into() }
        );
        assert_eq!(
            kind("5 s"),
            DurationErrorKind::UnknownUnit { unit: " s".into() }
        );
        assert_eq!(
            kind("5S"),
            DurationErrorKind::UnknownUnit { unit: "S".into() }
        );
        assert_eq!(
            kind("1e3s"),
            DurationErrorKind::UnknownUnit { unit: "e3s".into() }
        );
        assert_eq!(
            kind("1.2.3s"),
            DurationErrorKind::BadNumber {
                number: "1.2.3".into()
            }
        );
        assert_eq!(
            kind(".s"),
            DurationErrorKind::BadNumber { number: ".".into() }
        );
    }

    #[test]
    fn limit_is_enforced_without_overflow() {
        let limit_secs = MAX_DURATION.as_secs();
        assert_eq!(ok(&format!("{limit_secs}s")), MAX_DURATION);
        let too_long = DurationErrorKind::TooLong { limit_secs };
        assert_eq!(kind(&format!("{}s", limit_secs + 1)), too_long);
        assert_eq!(kind("100000h"), too_long);
        // Bigger than u64 and than u128: still an error, never a panic.
        assert_eq!(kind("99999999999999999999h"), too_long);
        assert_eq!(kind(&format!("{}s", "9".repeat(60))), too_long);
    }

    #[test]
    fn message_names_input_and_reason() {
        let e = parse_duration("5d").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`5d` is not a duration: unknown unit `d` (use ms, s, m or h)"
        );
    }
}
