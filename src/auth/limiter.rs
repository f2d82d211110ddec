//! The sign-in rate limit: failed attempts are counted per client address and per (address,
//! account) pair in fixed windows. A pair that fails [`PAIR_FAILURES`] times waits; an address
//! that fails [`ADDRESS_FAILURES`] times over any accounts waits (one attacker guessing many
//! accounts). Successful sign-ins are not counted and clear their pair, so one user's typos do
//! not lock out a colleague behind the same office address. There is deliberately no limit per
//! account from every address: anyone could then keep an account locked out; many addresses
//! guessing one account are slowed by each address's own limits and by argon2id.

use std::net::IpAddr;
use std::time::Duration;

use crate::error::Result;
use crate::store::{Store, logins};

/// Failures allowed per (address, account) per window.
pub const PAIR_FAILURES: u32 = 5;
/// Failures allowed per address (over all accounts) per window.
pub const ADDRESS_FAILURES: u32 = 30;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Counts failed sign-ins in the store (so the limit holds for every node of a shared store).
pub struct LoginLimiter {
    store: Store,
}

/// Why an attempt must wait, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub wait_secs: u64,
    /// `address` or `address and account`.
    pub by: &'static str,
}

/// The two counters an attempt is counted in: `(key, limit, what it limits)`.
fn keys(ip: IpAddr, account: &str) -> [(String, u32, &'static str); 2] {
    let account = account.trim().to_lowercase();
    [
        (
            format!("pair {ip} {account}"),
            PAIR_FAILURES,
            "address and account",
        ),
        (format!("address {ip}"), ADDRESS_FAILURES, "address"),
    ]
}

impl LoginLimiter {
    /// A limiter counting in `store`.
    pub fn new(store: Store) -> LoginLimiter {
        LoginLimiter { store }
    }

    /// Takes an attempt: `Err` when this address, or this address for this account, failed too
    /// often in the current window; otherwise the attempt is counted as a failure at once (in
    /// the same write), so a burst of parallel guesses cannot all pass the check before any of
    /// them is counted. [`succeeded`](Self::succeeded) gives it back.
    pub async fn begin(
        &self,
        ip: IpAddr,
        account: &str,
    ) -> Result<std::result::Result<(), Limited>> {
        let ks = keys(ip, account);
        let names: Vec<(String, u32)> = ks.iter().map(|(k, m, _)| (k.clone(), *m)).collect();
        let taken = self
            .store
            .write(move |c| {
                let keys: Vec<(&str, u32)> = names.iter().map(|(k, m)| (k.as_str(), *m)).collect();
                logins::take(c, &keys, crate::util::now_ms(), WINDOW.as_millis() as i64)
            })
            .await?;
        Ok(taken.map_err(|(i, wait_ms)| Limited {
            wait_secs: (wait_ms.max(0) as u64).div_ceil(1000).max(1),
            by: ks[i].2,
        }))
    }

    /// A successful sign-in: its pair is cleared and its address given its attempt back.
    pub async fn succeeded(&self, ip: IpAddr, account: &str) -> Result<()> {
        let [(pair, _, _), (address, _, _)] = keys(ip, account);
        self.store
            .write(move |c| logins::succeeded(c, &pair, &address))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(dir: &std::path::Path) -> LoginLimiter {
        let c = crate::config::StoreConfig {
            data_dir: dir.to_path_buf(),
            pool_size: 4,
            ..Default::default()
        };
        LoginLimiter::new(Store::open(&c).unwrap())
    }

    async fn ok(l: &LoginLimiter, ip: IpAddr, account: &str) -> bool {
        l.begin(ip, account).await.unwrap().is_ok()
    }

    #[tokio::test]
    async fn one_users_typos_do_not_lock_out_a_colleague_but_an_attacker_is_limited() {
        let dir = tempfile::tempdir().unwrap();
        let l = limiter(dir.path());
        let office: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..PAIR_FAILURES {
            assert!(ok(&l, office, "ann@example.com").await);
        }
        assert!(!ok(&l, office, "ann@example.com").await);
        assert!(ok(&l, office, "bob@example.com").await);
        l.succeeded(office, "bob@example.com").await.unwrap();
        // one address guessing many accounts
        let bad: IpAddr = "10.0.0.66".parse().unwrap();
        for i in 0..ADDRESS_FAILURES {
            assert!(ok(&l, bad, &format!("u{i}@example.com")).await);
        }
        let refused = l.begin(bad, "new@example.com").await.unwrap().unwrap_err();
        assert_eq!(refused.by, "address");
        assert!(refused.wait_secs >= 1 && refused.wait_secs <= 60);
        assert!(ok(&l, office, "bob@example.com").await);
        // many addresses failing for one account do not lock its owner out
        for i in 0..50u8 {
            let a: IpAddr = format!("10.1.0.{i}").parse().unwrap();
            for _ in 0..PAIR_FAILURES - 1 {
                let _ = l.begin(a, "admin@example.com").await;
            }
        }
        assert!(ok(&l, "10.2.0.1".parse().unwrap(), "admin@example.com").await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parallel_burst_cannot_pass_the_check_before_being_counted() {
        let dir = tempfile::tempdir().unwrap();
        let l = std::sync::Arc::new(limiter(dir.path()));
        let ip: IpAddr = "10.9.9.9".parse().unwrap();
        let tries: Vec<_> = (0..100)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move { ok(&l, ip, "admin@example.com").await })
            })
            .collect();
        let mut passed = 0;
        for t in tries {
            passed += u32::from(t.await.unwrap());
        }
        assert_eq!(passed, PAIR_FAILURES);
    }
}
