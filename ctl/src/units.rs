//! Duration parsing (`500ms`, `10s`, `2m`) and human formatting (`85µs`, `1.2ms`).

use std::time::Duration;

/// Parses `250us`, `500ms`, `10s`, `2m`, `1h` or a bare number of seconds
/// (fractions allowed).
///
/// # Errors
/// A message naming the accepted units.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 500ms, 10s, 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {s:?}: use us, ms, s, m or h"
            ))
        }
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 7.0 * 86_400.0 {
        return Err(format!("duration {s:?} out of range (0, 7 days]"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats nanoseconds: `850ns`, `85µs`, `85.3µs` below 100 µs, `1.2ms`, `3.40s`.
#[must_use]
pub fn format_nanos(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 100_000 {
        format!("{:.1}µs", ns as f64 / 1e3)
    } else if ns < 1_000_000 {
        format!("{}µs", ns / 1_000)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else {
        format!("{:.2}s", ns as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "0s", "x", "5d", "-1"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_nanos(850), "850ns");
        assert_eq!(format_nanos(85_300), "85.3µs");
        assert_eq!(format_nanos(450_000), "450µs");
        assert_eq!(format_nanos(1_234_000), "1.2ms");
        assert_eq!(format_nanos(3_400_000_000), "3.40s");
    }
}
