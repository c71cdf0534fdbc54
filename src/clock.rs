//! Wall-clock time as Unix seconds, and RFC 3339 UTC text for output.
//!
//! Why: certificate validity is compared in Unix seconds everywhere (store,
//! snapshot, import rules); humans and scripts read RFC 3339 `Z` times.
//! What must hold: formatting is total for every `i64` a certificate can carry.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `2026-11-26T23:06:13Z` for a Unix time (proleptic Gregorian, UTC).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(DAY);
    let secs = unix.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parse RFC 3339 (`2026-11-26T23:06:13Z`, fractions and `±hh:mm` offsets
/// allowed) to Unix seconds; `None` for anything else. Total: never panics.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = frac.get(digits..)?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let (oh, om) = rest.get(1..)?.split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            let (oh, om): (i64, i64) = (oh.parse().ok()?, om.parse().ok()?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60 + sec - offset)
}

/// A span of time as an administrator types it (`acme set
/// --check-interval`, the ACME page): `6h`, `90m`, `1h30m`, `45s`, `1d`, or
/// a bare number of seconds (`21600`, as before). Parts are in falling order
/// (d, h, m, s), each at most once; spaces between parts are allowed. `None`
/// for anything else, or a total beyond `u64`. The one parser of such text
/// (the CLI and the page both call it).
pub fn parse_duration(raw: &str) -> Option<u64> {
    let text: String = raw.split_whitespace().collect();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let units = [(b'd', 86_400u64), (b'h', 3600), (b'm', 60), (b's', 1)];
    let mut total: u64 = 0;
    let mut next_unit = 0;
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: u64 = rest.get(..digits)?.parse().ok()?;
        let unit = rest.as_bytes().get(digits)?.to_ascii_lowercase();
        let offset = units
            .get(next_unit..)?
            .iter()
            .position(|(u, _)| *u == unit)?;
        let (_, secs) = units.get(next_unit + offset)?;
        total = total.checked_add(number.checked_mul(*secs)?)?;
        next_unit += offset + 1;
        rest = rest.get(digits + 1..)?;
    }
    Some(total)
}

/// A span of time in the words `parse_duration` reads back: `6h`,
/// `1h30m`, `45s`, `0s`.
pub fn duration_text(secs: u64) -> String {
    let mut out = String::new();
    let mut left = secs;
    for (unit, size) in [("d", 86_400u64), ("h", 3600), ("m", 60), ("s", 1)] {
        let n = left / size;
        left %= size;
        if n > 0 {
            out += &format!("{n}{unit}");
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// (year, month, day) → days since 1970-01-01; H. Hinnant's algorithm.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 → (year, month, day); H. Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_734_373), "2026-11-26T23:06:13Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn durations_read_as_typed_and_round_trip() {
        for (text, secs) in [
            ("21600", 21_600),
            ("6h", 21_600),
            ("90m", 5400),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("45s", 45),
            ("1d", 86_400),
            ("2H5M", 7500),
        ] {
            assert_eq!(parse_duration(text), Some(secs), "{text}");
        }
        for bad in [
            "",
            "h",
            "6x",
            "30m1h",
            "1h1h",
            "-1h",
            "1.5h",
            "1h30",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        for secs in [0, 1, 59, 60, 5400, 21_600, 86_400, 90_061, u64::MAX] {
            assert_eq!(parse_duration(&duration_text(secs)), Some(secs), "{secs}");
        }
        assert_eq!(duration_text(5400), "1h30m");
        assert_eq!(duration_text(21_600), "6h");
    }

    #[test]
    fn parses_rfc3339_and_refuses_garbage() {
        for t in [0, 951_782_400, 1_795_734_373, 253_402_300_799, -86_400] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2026-11-26T23:06:13.123456Z"),
            Some(1_795_734_373)
        );
        assert_eq!(
            parse_rfc3339("2026-11-27T00:06:13+01:00"),
            Some(1_795_734_373)
        );
        assert_eq!(
            parse_rfc3339("2026-11-26T22:06:13-01:00"),
            Some(1_795_734_373)
        );
        for bad in [
            "",
            "2026-11-26",
            "2026-13-26T00:00:00Z",
            "2026-11-26T00:00:00",
            "2026-11-26T00:00:00.Z",
            "2026-11-26T00:00:00+0100",
            "2026-11-26T0a:00:00Z",
            "+026-11-26T00:00:00Z",
            "2026-11-26T00:00:00Zjunk",
            "é026-11-26T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
