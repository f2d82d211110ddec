//! Small shared helpers: clock, randomness, opaque cursors.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A time as the store writes it: RFC 3339, UTC, milliseconds, `Z`.
pub fn rfc3339(dt: DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now, in the store's format.
pub fn now_rfc3339() -> String {
    rfc3339(Utc::now())
}

/// Store format for a millisecond timestamp.
pub fn ms_rfc3339(ms: i64) -> String {
    rfc3339(DateTime::from_timestamp_millis(ms).unwrap_or_default())
}

/// Parses an RFC 3339 time (any offset) into UTC.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Milliseconds since the epoch of a stored time; `None` when it does not parse.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    parse_rfc3339(s).map(|d| d.timestamp_millis())
}

/// `n` bytes from the operating system's CSPRNG, as lowercase hex (2n characters).
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the OS random source failed");
    hex::encode(buf)
}

/// An opaque pagination cursor for keyset paging on `(created_at, id)`.
pub fn encode_cursor(created_at: &str, id: &str) -> String {
    hex::encode(format!("{created_at}\u{1f}{id}"))
}

/// Reads a cursor made by [`encode_cursor`]; `None` for anything else.
pub fn decode_cursor(cursor: &str) -> Option<(String, String)> {
    let raw = String::from_utf8(hex::decode(cursor).ok()?).ok()?;
    let (a, b) = raw.split_once('\u{1f}')?;
    parse_rfc3339(a)?;
    Some((a.to_string(), b.to_string()))
}

/// An opaque cursor for offset paging over a list computed in memory.
pub fn encode_offset(offset: usize) -> String {
    hex::encode(format!("o:{offset}"))
}

/// Reads a cursor made by [`encode_offset`]; `None` for anything else.
pub fn decode_offset(cursor: &str) -> Option<usize> {
    let raw = String::from_utf8(hex::decode(cursor).ok()?).ok()?;
    raw.strip_prefix("o:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_garbage() {
        let c = encode_cursor("2026-01-01T00:00:00.000Z", "abc");
        assert_eq!(
            decode_cursor(&c),
            Some(("2026-01-01T00:00:00.000Z".into(), "abc".into()))
        );
        assert_eq!(decode_cursor("zz"), None);
        assert_eq!(decode_cursor(&hex::encode("no separator")), None);
    }
}
