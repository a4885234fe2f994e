//! Durations as people write them in drover.yml: `500ms`, `1s`, `1.5s`, `2m`, `1h`.
//!
//! A unit is required: a bare `5` could mean seconds or milliseconds, and guessing wrong turns
//! a health check interval into a busy loop or a five-minute wait.
//!
//! Parsing only reads the syntax; each field's [`model::DurationRange`] is checked by the caller.
//! A number too large for any range is told apart from a malformed one, so that
//! `deadline: 99999999999999999999999h` is answered with the field's upper bound.

use std::time::Duration;

/// The units accepted, as suffix and length in nanoseconds.
const UNITS: [(&str, u128); 4] =
    [("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)];

/// What a valid duration looks like, for error messages.
pub(crate) const EXPECTED: &str = "a duration like 500ms, 1s, 1.5s or 2m";

/// Why a text is not a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unparsed {
    /// Not of the form number and unit.
    Malformed,
    /// Well-formed, but longer than [`Duration`] can hold, so longer than any bound.
    TooLong,
}

/// Parses a number (with up to 9 decimals) followed by `ms`, `s`, `m` or `h`.
///
/// Anything else is [`Unparsed::Malformed`], including negative numbers and a missing unit.
pub(crate) fn parse(text: &str) -> Result<Duration, Unparsed> {
    let number_len = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    let unit_nanos =
        UNITS.iter().find(|(suffix, _)| *suffix == unit).map(|(_, nanos)| *nanos).ok_or(Unparsed::Malformed)?;
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    // `.5s` and `1.s` are rejected: they read like typos.
    if whole.is_empty() || number.ends_with('.') || fraction.len() > 9 || fraction.contains('.') {
        return Err(Unparsed::Malformed);
    }
    // Only digits are left, so a number that does not parse is one too large for a u128.
    let whole: u128 = whole.parse().map_err(|_| Unparsed::TooLong)?;
    let scale = 10u128.pow(u32::try_from(fraction.len()).expect("at most 9 decimals"));
    let fraction: u128 = match fraction {
        "" => 0,
        digits => digits.parse().expect("at most 9 digits fit a u128"),
    };
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|nanos| nanos.checked_add(fraction * unit_nanos / scale))
        .ok_or(Unparsed::TooLong)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| Unparsed::TooLong)?;
    let subsec_nanos = u32::try_from(nanos % 1_000_000_000).expect("a remainder of 1e9 fits a u32");
    Ok(Duration::new(secs, subsec_nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table = [
            ("500ms", Ok(Duration::from_millis(500))),
            ("1s", Ok(Duration::from_secs(1))),
            ("1.5s", Ok(Duration::from_millis(1500))),
            ("0.25s", Ok(Duration::from_millis(250))),
            ("2m", Ok(Duration::from_secs(120))),
            ("1.5m", Ok(Duration::from_secs(90))),
            ("1h", Ok(Duration::from_secs(3600))),
            ("0s", Ok(Duration::ZERO)),
            ("1.000000001s", Ok(Duration::new(1, 1))),
            ("0.5ms", Ok(Duration::from_micros(500))),
            ("5", Err(Unparsed::Malformed)),
            ("", Err(Unparsed::Malformed)),
            ("s", Err(Unparsed::Malformed)),
            (".5s", Err(Unparsed::Malformed)),
            ("1.s", Err(Unparsed::Malformed)),
            ("1.2.3s", Err(Unparsed::Malformed)),
            ("-1s", Err(Unparsed::Malformed)),
            ("1 s", Err(Unparsed::Malformed)),
            ("1sec", Err(Unparsed::Malformed)),
            ("1S", Err(Unparsed::Malformed)),
            ("1d", Err(Unparsed::Malformed)),
            ("1.0000000001s", Err(Unparsed::Malformed)),
            ("99999999999999999999999h", Err(Unparsed::TooLong)),
            ("18446744073709552s", Ok(Duration::from_secs(18_446_744_073_709_552))),
            ("18446744073709551616s", Err(Unparsed::TooLong)),
            ("999999999999999999999999999999999999999999ms", Err(Unparsed::TooLong)),
        ];
        for (text, expected) in table {
            assert_eq!(parse(text), expected, "{text:?}");
        }
    }
}
