//! Sizes and durations as people type them, parsed in one place: the server's flags, the
//! client's and the bench's, and the chat's `/ban NICK DURATION` all read them here, so `64KiB`
//! or `10m` means the same everywhere.
//!
//! The forms, exactly (the binaries' `--help` shows [`units_help!`](crate::units_help)):
//!
//! - A size is a whole number of bytes, bare or with `B`, or of `KiB`, `MiB` or `GiB`
//!   (binary: 1024, 1024², 1024³; `K`, `M` and `G` alike; any case). `kB`, `MB` and `GB` are
//!   refused: to some they are powers of 1000, to others of 1024, and a limit should not be
//!   a guess.
//! - A duration is a whole number with `ms`, `s`, `m`, `h` or `d`. A bare number is refused
//!   (is `10` seconds or minutes?), except `0`, which needs no unit.

use std::time::Duration;

/// The accepted forms, for the binaries' `--help` (a literal, so that `concat!` takes it).
#[macro_export]
macro_rules! units_help {
    () => {
        concat!(
            "Sizes: a number of bytes, or with KiB, MiB, GiB (binary; K, M, G alike): 65536, 64KiB. ",
            "Durations: a number with ms, s, m, h or d: 500ms, 10s, 2m (0 alone is zero)."
        )
    };
}

/// Parses `65536`, `512B`, `64KiB`, `64K`, `1MiB`, `1GiB`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: usize = digits.parse().map_err(|_| format!("not a size: {text:?} (try 64KiB)"))?;
    let multiplier: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        unit @ ("kb" | "mb" | "gb") => {
            let binary = format!("{}iB", unit[..1].to_ascii_uppercase());
            return Err(format!(
                "{text:?} is ambiguous (powers of 1000 or of 1024?): write {number}{binary}, or a number of bytes"
            ));
        }
        _ => return Err(format!("unknown size unit in {text:?} (use B, KiB, MiB, GiB)")),
    };
    number.checked_mul(multiplier).ok_or_else(|| format!("size too large: {text:?}"))
}

/// Parses `500ms`, `10s`, `2m`, `1h`, `1d`, and `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| format!("not a duration: {text:?} (try 10s)"))?;
    let millis = match unit.trim() {
        "" if number == 0 => Some(0),
        "" => {
            return Err(format!(
                "{text:?} needs a unit: {number}s, {number}m, {number}ms, {number}h or {number}d"
            ))
        }
        "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        "d" => number.checked_mul(86_400_000),
        _ => return Err(format!("unknown duration unit in {text:?} (use ms, s, m, h, d)")),
    };
    millis.map(Duration::from_millis).ok_or_else(|| format!("duration too long: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(
            parse_size("64kb").unwrap_err(),
            "\"64kb\" is ambiguous (powers of 1000 or of 1024?): write 64KiB, or a number of bytes"
        );
        assert!(parse_size("1MB").unwrap_err().contains("write 1MiB"));
        assert!(parse_size("1 GB").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10").unwrap_err(), "\"10\" needs a unit: 10s, 10m, 10ms, 10h or 10d");
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1.5s").is_err());
    }
}
