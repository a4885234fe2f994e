//! Durations as people write them in drover.yml: `500ms`, `1s`, `1.5s`, `2m`, `1h`.
//!
//! A unit is required: a bare `5` could mean seconds or milliseconds, and guessing wrong turns
//! a health check interval into a busy loop or a five-minute wait.

use std::time::Duration;

/// The units accepted, as suffix and length in nanoseconds.
const UNITS: [(&str, u128); 4] =
    [("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)];

/// What a valid duration looks like, for error messages.
pub(crate) const EXPECTED: &str = "a duration like 500ms, 1s, 1.5s or 2m";

/// Parses a number (with up to 9 decimals) followed by `ms`, `s`, `m` or `h`.
///
/// Returns `None` for anything else, including negative numbers, a missing unit and
/// durations too long for [`Duration`].
pub(crate) fn parse(text: &str) -> Option<Duration> {
    let number_len = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    let unit_nanos = UNITS.iter().find(|(suffix, _)| *suffix == unit).map(|(_, nanos)| *nanos)?;
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    // `.5s` and `1.s` are rejected: they read like typos.
    if whole.is_empty() || number.ends_with('.') || fraction.len() > 9 || fraction.contains('.') {
        return None;
    }
    let whole: u128 = whole.parse().ok()?;
    let scale = 10u128.pow(u32::try_from(fraction.len()).ok()?);
    let fraction: u128 = if fraction.is_empty() { 0 } else { fraction.parse().ok()? };
    let nanos = whole.checked_mul(unit_nanos)?.checked_add(fraction * unit_nanos / scale)?;
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    let subsec_nanos = u32::try_from(nanos % 1_000_000_000).ok()?;
    Some(Duration::new(secs, subsec_nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table = [
            ("500ms", Some(Duration::from_millis(500))),
            ("1s", Some(Duration::from_secs(1))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("0.25s", Some(Duration::from_millis(250))),
            ("2m", Some(Duration::from_secs(120))),
            ("1.5m", Some(Duration::from_secs(90))),
            ("1h", Some(Duration::from_secs(3600))),
            ("0s", Some(Duration::ZERO)),
            ("1.000000001s", Some(Duration::new(1, 1))),
            ("0.5ms", Some(Duration::from_micros(500))),
            ("5", None),
            ("", None),
            ("s", None),
            (".5s", None),
            ("1.s", None),
            ("1.2.3s", None),
            ("-1s", None),
            ("1 s", None),
            ("1sec", None),
            ("1S", None),
            ("1d", None),
            ("1.0000000001s", None),
            ("99999999999999999999999h", None),
        ];
        for (text, expected) in table {
            assert_eq!(parse(text), expected, "{text:?}");
        }
    }
}
