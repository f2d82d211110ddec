//! Failed sign-in counts (`login_attempts`): taken and checked in one write, so a burst of
//! parallel guesses — on one node or several — cannot pass the check before it is counted.
//! Times are ms since the epoch; a window starts with its first failure.

use super::Conn;
use crate::error::Result;
use crate::params;

/// Counts an attempt against every `(key, max)` unless one of them already has `max` failures
/// in a window that started after `now_ms - window_ms`: then nothing is counted and the answer
/// is `Err((index of that key, ms until its window ends))`.
pub fn take(
    conn: &Conn<'_>,
    keys: &[(&str, u32)],
    now_ms: i64,
    window_ms: i64,
) -> Result<std::result::Result<(), (usize, i64)>> {
    let since = now_ms - window_ms;
    conn.execute(
        "DELETE FROM login_attempts WHERE window_start_ms <= ?1",
        [since],
    )?;
    for (i, (key, max)) in keys.iter().enumerate() {
        let row: Option<(i64, i64)> = conn.query_opt(
            "SELECT window_start_ms, failures FROM login_attempts WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if let Some((start, failures)) = row
            && failures >= i64::from(*max)
        {
            return Ok(Err((i, start + window_ms - now_ms)));
        }
    }
    for (key, _) in keys {
        conn.execute(
            "INSERT INTO login_attempts (key, window_start_ms, failures) VALUES (?1, ?2, 1)
             ON CONFLICT (key) DO UPDATE SET failures = login_attempts.failures + 1",
            params![key, now_ms],
        )?;
    }
    Ok(Ok(()))
}

/// A successful sign-in: `clear` loses its count, `give_back` one failure.
pub fn succeeded(conn: &Conn<'_>, clear: &str, give_back: &str) -> Result<()> {
    conn.execute("DELETE FROM login_attempts WHERE key = ?1", [clear])?;
    conn.execute(
        "UPDATE login_attempts SET failures = failures - 1 WHERE key = ?1 AND failures > 0",
        [give_back],
    )?;
    Ok(())
}
