//! The sign-in rate limit: failed attempts are counted per client address and per (address,
//! account) pair in fixed windows. A pair that fails [`PAIR_FAILURES`] times waits; an address
//! that fails [`ADDRESS_FAILURES`] times over any accounts waits (one attacker guessing many
//! accounts). Successful sign-ins are not counted and clear their pair, so one user's typos do
//! not lock out a colleague behind the same office address. There is deliberately no limit per
//! account from every address: anyone could then keep an account locked out; many addresses
//! guessing one account are slowed by each address's own limits and by argon2id.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per (address, account) per window.
pub const PAIR_FAILURES: u32 = 5;
/// Failures allowed per address (over all accounts) per window.
pub const ADDRESS_FAILURES: u32 = 30;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Hash, PartialEq, Eq, Clone)]
enum Key {
    Pair(IpAddr, String),
    Address(IpAddr),
}

/// Counts failed sign-ins.
#[derive(Default)]
pub struct LoginLimiter {
    seen: Mutex<HashMap<Key, (Instant, u32)>>,
}

/// Why an attempt must wait, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub wait_secs: u64,
    /// `address` or `address and account`.
    pub by: &'static str,
}

fn keys(ip: IpAddr, account: &str) -> [(Key, u32, &'static str); 2] {
    let account = account.trim().to_lowercase();
    [
        (Key::Pair(ip, account), PAIR_FAILURES, "address and account"),
        (Key::Address(ip), ADDRESS_FAILURES, "address"),
    ]
}

impl LoginLimiter {
    /// Takes an attempt: `Err` when this address, or this address for this account, failed too
    /// often in the current window; otherwise the attempt is counted as a failure at once (in
    /// the same lock), so a burst of parallel guesses cannot all pass the check before any of
    /// them is counted. [`succeeded`](Self::succeeded) gives it back.
    pub fn begin(&self, ip: IpAddr, account: &str) -> Result<(), Limited> {
        let now = Instant::now();
        let mut m = self.seen.lock().unwrap();
        if m.len() > 50_000 {
            m.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let ks = keys(ip, account);
        for (k, max, by) in &ks {
            if let Some((start, n)) = m.get(k)
                && now.duration_since(*start) < WINDOW
                && *n >= *max
            {
                return Err(Limited {
                    wait_secs: (WINDOW - now.duration_since(*start)).as_secs().max(1),
                    by,
                });
            }
        }
        for (k, _, _) in ks {
            let e = m.entry(k).or_insert((now, 0));
            if now.duration_since(e.0) >= WINDOW {
                *e = (now, 0);
            }
            e.1 += 1;
        }
        Ok(())
    }

    /// A successful sign-in: its pair is cleared and its address given its attempt back.
    pub fn succeeded(&self, ip: IpAddr, account: &str) {
        let [(pair, _, _), (address, _, _)] = keys(ip, account);
        let mut m = self.seen.lock().unwrap();
        m.remove(&pair);
        if let Some(e) = m.get_mut(&address) {
            e.1 = e.1.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_users_typos_do_not_lock_out_a_colleague_but_an_attacker_is_limited() {
        let l = LoginLimiter::default();
        let office: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..PAIR_FAILURES {
            assert!(l.begin(office, "ann@example.com").is_ok());
        }
        assert!(l.begin(office, "ann@example.com").is_err());
        assert!(l.begin(office, "bob@example.com").is_ok());
        l.succeeded(office, "bob@example.com");
        // one address guessing many accounts
        let bad: IpAddr = "10.0.0.66".parse().unwrap();
        for i in 0..ADDRESS_FAILURES {
            assert!(l.begin(bad, &format!("u{i}@example.com")).is_ok());
        }
        assert_eq!(l.begin(bad, "new@example.com").unwrap_err().by, "address");
        assert!(l.begin(office, "bob@example.com").is_ok());
        // many addresses failing for one account do not lock its owner out
        for i in 0..50u8 {
            let a: IpAddr = format!("10.1.0.{i}").parse().unwrap();
            for _ in 0..PAIR_FAILURES - 1 {
                let _ = l.begin(a, "admin@example.com");
            }
        }
        assert!(
            l.begin("10.2.0.1".parse().unwrap(), "admin@example.com")
                .is_ok()
        );
    }

    #[test]
    fn a_parallel_burst_cannot_pass_the_check_before_being_counted() {
        let l = std::sync::Arc::new(LoginLimiter::default());
        let ip: IpAddr = "10.9.9.9".parse().unwrap();
        let passed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..100 {
                s.spawn(|| {
                    if l.begin(ip, "admin@example.com").is_ok() {
                        passed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(
            passed.load(std::sync::atomic::Ordering::Relaxed),
            PAIR_FAILURES
        );
    }
}
