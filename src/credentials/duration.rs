//! Go duration strings ("1m30s", "1.5h", "500ms", "0s"), as the kubelet's
//! CredentialProviderConfig and plugin responses write them. Written by hand: the Go
//! syntax (fractions, µs) is not what the usual Rust duration crates accept. Input comes
//! from plugins and config: every step is checked integer arithmetic.

use std::time::Duration;

/// A string that is not a Go duration (or one past Go's limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}")]
pub struct DurationError(pub String);

/// 2^63, the bound Go's parser checks its unsigned sums against.
const TWO_63: u64 = 1 << 63;

/// Parses a Go duration exactly as Go's `time.ParseDuration` does (fractions in
/// float64, as Go computes them), then refuses a negative one (a cache duration cannot
/// be negative); `-0` is zero, as in Go. Nothing from outside can make it panic.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    match parse_signed(text) {
        Some((negative, nanos)) if !negative || nanos == 0 => Ok(Duration::from_nanos(nanos)),
        _ => Err(DurationError(text.to_string())),
    }
}

/// Go's `ParseDuration`: the sign and the magnitude in nanoseconds.
fn parse_signed(text: &str) -> Option<(bool, u64)> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some((negative, 0));
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (part, after) = leading_part(rest)?;
        total = total.checked_add(part).filter(|t| *t <= TWO_63)?;
        rest = after;
    }
    (negative || total < TWO_63).then_some((negative, total))
}

/// One `<number><unit>` at the start of `text`, in nanoseconds, and what follows.
fn leading_part(text: &str) -> Option<(u64, &str)> {
    if !text.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
        return None;
    }
    let (whole, rest) = leading_int(text)?;
    let pre = rest.len() != text.len();
    let (fraction, scale, rest, post) = match rest.strip_prefix('.') {
        Some(after) => {
            let (f, scale, r) = leading_fraction(after);
            (f, scale, r, r.len() != after.len())
        }
        None => (0, 1.0, rest, false),
    };
    if !pre && !post {
        return None;
    }
    let unit_len = rest
        .find(|c: char| c == '.' || c.is_ascii_digit())
        .unwrap_or(rest.len());
    let unit: u64 = match &rest[..unit_len] {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    };
    if whole > TWO_63 / unit {
        return None;
    }
    let mut nanos = whole * unit;
    if fraction > 0 {
        // Go: float64 keeps fractions of hours nanosecond-accurate; truncated.
        nanos += (fraction as f64 * (unit as f64 / scale)) as u64;
        if nanos > TWO_63 {
            return None;
        }
    }
    Some((nanos, &rest[unit_len..]))
}

/// Go's `leadingInt`: the leading digits, refused past 2^63.
fn leading_int(text: &str) -> Option<(u64, &str)> {
    let mut value: u64 = 0;
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    for digit in text[..end].bytes() {
        if value > TWO_63 / 10 {
            return None;
        }
        value = value * 10 + u64::from(digit - b'0');
        if value > TWO_63 {
            return None;
        }
    }
    Some((value, &text[end..]))
}

/// Go's `leadingFraction`: the leading digits and their scale, accumulating until
/// another digit would overflow, then only consuming.
fn leading_fraction(text: &str) -> (u64, f64, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (mut value, mut scale, mut overflow) = (0u64, 1.0f64, false);
    for digit in text[..end].bytes() {
        if overflow {
            continue;
        }
        if value > (TWO_63 - 1) / 10 {
            overflow = true;
            continue;
        }
        let next = value * 10 + u64::from(digit - b'0');
        if next > TWO_63 {
            overflow = true;
            continue;
        }
        value = next;
        scale *= 10.0;
    }
    (value, scale, &text[end..])
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
        for zero in ["+0", "-0", "-0s", "+0.0h"] {
            assert_eq!(parse_go_duration(zero).unwrap(), Duration::ZERO, "{zero}");
        }
        for bad in [
            "", "+", "-", "5", "1d", "-1s", "s", "1.2.3s", ".s", "1..5s", "+.s",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    /// The Go toolchain, when this machine has one (CI does: it builds the runtimes).
    fn go_binary() -> Option<std::path::PathBuf> {
        let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("go"))
                .collect::<Vec<_>>()
        });
        on_path
            .chain([std::path::PathBuf::from("/usr/local/go/bin/go")])
            .find(|p| p.is_file())
    }

    /// Inputs near every rule: signs, zero, fractions long enough to overflow, units,
    /// limits; then generated strings over the alphabet Go's parser reads.
    fn differential_inputs() -> Vec<String> {
        let mut inputs: Vec<String> = [
            "+",
            "-",
            "+0",
            "-0",
            "0",
            "-0s",
            "1.5h",
            "-1.5h",
            ".5s",
            "5.s",
            "1.0000000001h",
            "0.1234567890123456789012345h",
            "2562047h47m16.854775807s",
            "2562047h47m16.854775808s",
            "-2562047h47m16.854775808s",
            "9223372036854775807ns",
            "9223372036854775808ns",
            "-9223372036854775808ns",
            "1.9999999999999999999ms",
            "3.3333333333333333333h",
            "1h1h",
            "1µs",
            "1μs",
            "1us",
            "+.5m",
            "1.2.3s",
        ]
        .map(String::from)
        .to_vec();
        let alphabet: Vec<&str> = vec![
            "0", "1", "5", "9", ".", "+", "-", "h", "m", "s", "ms", "us", "µs", "ns", "99999",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..4000 {
            let mut text = String::new();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            for i in 0..(seed >> 60) {
                let pick = (seed >> (i * 4 % 56)) as usize % alphabet.len();
                text.push_str(alphabet[pick]);
            }
            inputs.push(text);
        }
        inputs
    }

    /// Differential against Go itself: every input parses to the same signed
    /// nanosecond count, or fails, as `time.ParseDuration` does.
    #[test]
    fn go_parses_every_input_as_we_do() {
        let Some(go) = go_binary() else {
            assert!(
                std::env::var_os("IMAGESHIM_REQUIRE_REAL_TESTS").is_none(),
                "no Go toolchain for the duration differential"
            );
            eprintln!("skipped: no Go toolchain here");
            return;
        };
        let inputs = differential_inputs();
        let program = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/go-duration/main.go");
        let mut child = std::process::Command::new(go)
            .args(["run", program])
            .env("GOFLAGS", "-mod=mod")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let text = inputs.join("\n") + "\n";
        let writer = std::thread::spawn(move || {
            std::io::Write::write_all(&mut stdin, text.as_bytes()).unwrap()
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(output.status.success(), "go run");
        let answers = String::from_utf8(output.stdout).unwrap();
        let answers: Vec<&str> = answers.lines().collect();
        assert_eq!(answers.len(), inputs.len());
        for (input, go_says) in inputs.iter().zip(answers) {
            let ours = match parse_signed(input) {
                None => "error".to_string(),
                Some((true, n)) => (-(i128::from(n))).to_string(),
                Some((false, n)) => n.to_string(),
            };
            assert_eq!(ours, go_says, "{input:?}");
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
