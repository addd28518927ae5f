//! Go duration strings ("1m30s", "1.5h", "500ms", "0s"), as the kubelet's
//! CredentialProviderConfig and plugin responses write them. Written by hand: the Go
//! syntax (fractions, µs) is not what the usual Rust duration crates accept. Input comes
//! from plugins and config: every step is checked integer arithmetic.

use std::time::Duration;

/// Go's limit: a duration is an int64 count of nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// A string that is not a Go duration (or one past Go's limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}")]
pub struct DurationError(pub String);

/// Parses a Go duration; negative or overflowing durations are refused, as Go refuses
/// them. Exact integer arithmetic: nothing from outside can make it panic.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError(text.to_string());
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() || text.starts_with('-') {
        return Err(bad());
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (part, after) = leading_part(rest).ok_or_else(bad)?;
        total = total
            .checked_add(part)
            .filter(|t| *t <= MAX_NANOS)
            .ok_or_else(bad)?;
        rest = after;
    }
    Ok(Duration::from_nanos(total as u64))
}

/// One `<number><unit>` at the start of `text`, in nanoseconds, and what follows.
fn leading_part(text: &str) -> Option<(u128, &str)> {
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (whole, mut rest) = text.split_at(digits(text));
    let mut fraction = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let (f, r) = after_dot.split_at(digits(after_dot));
        (fraction, rest) = (f, r);
    }
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let unit_len = rest
        .find(|c: char| c.is_ascii_digit() || c == '.')
        .unwrap_or(rest.len());
    let unit: u128 = match &rest[..unit_len] {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    };
    let mut value: u128 = 0;
    for digit in whole.bytes() {
        value = value
            .checked_mul(10)?
            .checked_add(u128::from(digit - b'0'))?;
        if value > MAX_NANOS {
            return None;
        }
    }
    let mut nanos = value.checked_mul(unit)?;
    // Digits past the 18th cannot change a nanosecond count below Go's limit.
    let (mut numerator, mut scale) = (0u128, 1u128);
    for digit in fraction.bytes().take(18) {
        numerator = numerator * 10 + u128::from(digit - b'0');
        scale *= 10;
    }
    nanos = nanos.checked_add(numerator * unit / scale)?;
    Some((nanos, &rest[unit_len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_go_duration("12h").unwrap(),
            Duration::from_secs(43200)
        );
        assert_eq!(
            parse_go_duration(".5s").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_go_duration("1µs").unwrap(), Duration::from_micros(1));
        assert_eq!(
            parse_go_duration("1h2m3.000000004s").unwrap().as_nanos(),
            3_723_000_000_004
        );
        assert_eq!(
            parse_go_duration("2562047h47m16.854775807s")
                .unwrap()
                .as_nanos(),
            i64::MAX as u128
        );
        for bad in ["", "5", "1d", "-1s", "s", "1.2.3s", ".s", "1..5s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn outside_durations_that_overflow_are_errors_not_panics() {
        for huge in [
            "99999999999999999999h",
            "2562047h47m16.854775808s",
            "9223372036854775808ns",
            "106751991167301d",
            "1e400h",
            "99999999999999999999999999999999999999999999h",
        ] {
            assert!(parse_go_duration(huge).is_err(), "{huge}");
        }
    }
}
