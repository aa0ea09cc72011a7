//! The one duration parser of the project's command lines (`liqo-gateway`, `liqo-host` and
//! `liqoctl` flags such as `--timeout`). It lives in this crate because it is the one all three
//! binaries depend on.

use std::time::Duration;

/// Parses a non-negative duration for a command-line flag: jiff's friendly format (`90s`,
/// `2m`, `1h30m`, `100ms`, `1.5s`) or ISO 8601 (`PT90S`); a bare whole number is seconds, as it
/// always was here. Calendar units (days and more) are refused: their length is not fixed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let refused = || format!("{text:?} is not a duration (examples: 90s, 2m, 1h)");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Duration::from_secs).map_err(|_| refused());
    }
    let parsed: jiff::SignedDuration = text.parse().map_err(|_| refused())?;
    Duration::try_from(parsed)
        .map_err(|_| format!("{text:?} is negative: give a duration of 0s or more"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_of_flags() {
        let ok = [
            ("90s", 90_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("100ms", 100),
            ("1.5s", 1_500),
            ("30", 30_000),
            (" 5m ", 300_000),
            ("PT2S", 2_000),
            ("0", 0),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for bad in ["", "soon", "5d", "1w", "s", "-5s", "18446744073709551616"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(&format!("{:?}", bad.trim())), "{bad}: {err}");
        }
        assert!(parse_duration("-5s").unwrap_err().contains("negative"));
    }
}
