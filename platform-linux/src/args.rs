//! Argument values shared by the subcommands, parsed strictly: a bad value
//! is a one-line error naming the option, and exit code 2.

use std::ffi::OsString;
use std::fmt;

/// Exit code for bad arguments.
pub const EXIT_USAGE: u8 = 2;

/// A command-line mistake, printed as one line.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        UsageError(e.to_string())
    }
}

/// Builds a usage error.
pub fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// The value as UTF-8, or an error naming `option`.
pub fn text(option: &str, value: OsString) -> Result<String, UsageError> {
    value
        .into_string()
        .map_err(|v| usage(format!("{option}: not valid UTF-8: {v:?}")))
}

/// A TCP/UDP port, 1-65535.
pub fn port(option: &str, value: &str) -> Result<u16, UsageError> {
    match value.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(usage(format!(
            "{option}: expected a port 1-65535, got {value:?}"
        ))),
    }
}

/// An instance name for `punchwire status` (`--name`).
pub fn name(value: String) -> Result<String, UsageError> {
    if punchwire_linux::status::valid_name(&value) {
        Ok(value)
    } else {
        Err(usage(format!(
            "--name: expected 1-64 of A-Z a-z 0-9 _ . : @ -, got {value:?}"
        )))
    }
}

/// An IP TTL, 0-255.
pub fn ttl(option: &str, value: &str) -> Result<u8, UsageError> {
    value
        .parse()
        .map_err(|_| usage(format!("{option}: expected 0-255, got {value:?}")))
}

/// Parses decimal seconds (`1700000000`, `-3`, `2000000000.5`) into
/// milliseconds, rounding towards negative infinity past the third decimal.
pub fn parse_seconds_ms(option: &str, value: &str) -> Result<i64, UsageError> {
    let bad = || {
        usage(format!(
            "{option}: expected seconds like 12 or 12.5, got {value:?}"
        ))
    };
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let mut ms: i64 = 0;
    let mut scale = 100;
    let mut rest_nonzero = false;
    for (i, d) in frac.bytes().enumerate() {
        if i < 3 {
            ms += i64::from(d - b'0') * scale;
            scale /= 10;
        } else if d != b'0' {
            rest_nonzero = true;
        }
    }
    let total = whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(ms))
        .ok_or_else(bad)?;
    Ok(if negative {
        -total - i64::from(rest_nonzero)
    } else {
        total
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(
            parse_seconds_ms("--at", "1700000000").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_seconds_ms("--at", "2000000000.5").unwrap(),
            2_000_000_000_500
        );
        assert_eq!(parse_seconds_ms("--at", "0.125").unwrap(), 125);
        assert_eq!(parse_seconds_ms("--at", ".5").unwrap(), 500);
        assert_eq!(parse_seconds_ms("--at", "7.").unwrap(), 7000);
        assert_eq!(parse_seconds_ms("--at", "-3").unwrap(), -3000);
        assert_eq!(parse_seconds_ms("--at", "-0.0001").unwrap(), -1);
        assert_eq!(parse_seconds_ms("--at", "1.2349").unwrap(), 1234);
        for bad in [
            "",
            "-",
            ".",
            "abc",
            "1e9",
            "1.2.3",
            "--5",
            "1 2",
            "99999999999999999999",
        ] {
            assert!(parse_seconds_ms("--at", bad).is_err(), "{bad:?} accepted");
        }
    }
}
