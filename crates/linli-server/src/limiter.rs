//! Login throttling per account and per client address, with exponential back-off.
//! In memory: each Linli instance throttles what it sees (documented in docs/security.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed inside `window` before locking.
    pub free_failures: u32,
    pub window: Duration,
    /// First lock; doubles with every further failure.
    pub base_lock: Duration,
    pub max_lock: Duration,
}

pub const ACCOUNT_POLICY: Policy = Policy {
    free_failures: 5,
    window: Duration::from_secs(900),
    base_lock: Duration::from_secs(30),
    max_lock: Duration::from_secs(900),
};
pub const IP_POLICY: Policy = Policy {
    free_failures: 30,
    window: Duration::from_secs(900),
    base_lock: Duration::from_secs(60),
    max_lock: Duration::from_secs(900),
};

/// The key an account is locked under: the account itself when the typed login (name or mobile
/// number) names one, so failures under one of them lock every way into it; otherwise the typed
/// login, so unknown logins lock (and answer) exactly like known ones.
pub fn account_key(typed_login: &str, user_id: Option<&str>) -> String {
    match user_id {
        Some(id) => format!("user:{id}"),
        None => format!("login:{}", typed_login.trim().to_lowercase()),
    }
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug)]
pub struct Limiter {
    policy: Policy,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Limiter {
    pub fn new(policy: Policy) -> Self {
        Limiter {
            policy,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` while `key` is locked (nothing is counted then). Otherwise the attempt is
    /// counted at once — as a failure, until [`Limiter::success`] or [`Limiter::refund`] takes it
    /// back — under the same lock as the check. Checking and counting in one step means that
    /// attempts arriving together (while the first of them is still verifying its password)
    /// cannot all pass the check: at most `free_failures` get through, however many run at once.
    pub fn attempt(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.entries.lock().expect("limiter lock");
        if let Some(until) = map.get(key).and_then(|e| e.locked_until)
            && until > now
        {
            return Err((until - now).as_secs().max(1));
        }
        if map.len() > 100_000 {
            let window = self.policy.window;
            map.retain(|_, e| {
                now.duration_since(e.first) < window || e.locked_until.is_some_and(|u| u > now)
            });
        }
        let e = map.entry(key.to_string()).or_insert(Entry {
            failures: 0,
            first: now,
            locked_until: None,
        });
        if now.duration_since(e.first) > self.policy.window
            && e.locked_until.is_none_or(|u| u <= now)
        {
            *e = Entry {
                failures: 0,
                first: now,
                locked_until: None,
            };
        }
        e.failures += 1;
        if e.failures >= self.policy.free_failures {
            let extra = (e.failures - self.policy.free_failures).min(16);
            let lock = self
                .policy
                .base_lock
                .saturating_mul(1 << extra)
                .min(self.policy.max_lock);
            e.locked_until = Some(now + lock);
        }
        Ok(())
    }

    /// The attempt counted by [`Limiter::attempt`] did not fail (a right password, or it was
    /// refused for another reason before any password was tried): take it back. A lock that
    /// only this attempt's count had set is lifted.
    pub fn refund(&self, key: &str) {
        let mut map = self.entries.lock().expect("limiter lock");
        if let Some(e) = map.get_mut(key) {
            e.failures = e.failures.saturating_sub(1);
            if e.failures < self.policy.free_failures {
                e.locked_until = None;
            }
            if e.failures == 0 && e.locked_until.is_none() {
                map.remove(key);
            }
        }
    }

    /// The account signed in: forget its failures.
    pub fn success(&self, key: &str) {
        self.entries.lock().expect("limiter lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_free_failures_and_backs_off() {
        let l = Limiter::new(Policy {
            free_failures: 3,
            window: Duration::from_secs(60),
            base_lock: Duration::from_secs(10),
            max_lock: Duration::from_secs(100),
        });
        assert!(l.attempt("a").is_ok());
        assert!(l.attempt("a").is_ok());
        // The third attempt still runs; it locks whatever comes after it.
        assert!(l.attempt("a").is_ok());
        let first = l.attempt("a").unwrap_err();
        assert!((9..=10).contains(&first));
        assert!(l.attempt("b").is_ok());
        l.success("a");
        assert!(l.attempt("a").is_ok());
    }

    #[test]
    fn refunds_take_back_an_attempt_that_did_not_fail() {
        let l = Limiter::new(Policy {
            free_failures: 2,
            window: Duration::from_secs(60),
            base_lock: Duration::from_secs(10),
            max_lock: Duration::from_secs(100),
        });
        for _ in 0..10 {
            assert!(l.attempt("ip").is_ok());
            l.refund("ip");
        }
        assert!(l.attempt("ip").is_ok());
        assert!(l.attempt("ip").is_ok());
        assert!(l.attempt("ip").is_err(), "two failures lock");
    }

    #[test]
    fn concurrent_attempts_pass_at_most_the_free_failures() {
        let l = std::sync::Arc::new(Limiter::new(ACCOUNT_POLICY));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(40));
        let passed: usize = (0..40)
            .map(|_| {
                let (l, b) = (l.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait();
                    usize::from(l.attempt("user:x").is_ok())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(passed, ACCOUNT_POLICY.free_failures as usize);
    }
}
