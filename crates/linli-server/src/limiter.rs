//! Login throttling per account and per client address, with exponential back-off. The counts
//! live in the database ([`linli_store::cluster`]), so every instance sees the same ones: three
//! instances give an attacker the same five tries as one.

use linli_store::Store;
use linli_store::cluster::ThrottlePolicy as Policy;

pub const ACCOUNT_POLICY: Policy = Policy {
    free_failures: 5,
    window_ms: 900_000,
    base_lock_ms: 30_000,
    max_lock_ms: 900_000,
};
pub const IP_POLICY: Policy = Policy {
    free_failures: 30,
    window_ms: 900_000,
    base_lock_ms: 60_000,
    max_lock_ms: 900_000,
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

/// One throttle (accounts, or client addresses) over the shared counts.
#[derive(Debug, Clone)]
pub struct Limiter {
    policy: Policy,
    /// Keeps one throttle's keys apart from the other's.
    prefix: &'static str,
    store: Store,
}

impl Limiter {
    pub fn new(policy: Policy, prefix: &'static str, store: Store) -> Self {
        Limiter {
            policy,
            prefix,
            store,
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    /// `Err(seconds)` while `key` is locked (nothing is counted then). Otherwise the attempt is
    /// counted at once — as a failure, until [`Limiter::success`] or [`Limiter::refund`] takes it
    /// back — in one transaction with the check. Attempts arriving together (on any instance,
    /// while the first is still verifying its password) cannot all pass: at most
    /// `free_failures` get through. A database error refuses the attempt (fail closed).
    pub async fn attempt(&self, key: &str) -> Result<(), u64> {
        match self
            .store
            .throttle_attempt(&self.policy, &self.key(key))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "login throttle unavailable; refusing the attempt");
                Err(1)
            }
        }
    }

    /// The attempt counted by [`Limiter::attempt`] did not fail (a right password, or it was
    /// refused for another reason before any password was tried): take it back. A lock that
    /// only this attempt's count had set is lifted.
    pub async fn refund(&self, key: &str) {
        if let Err(e) = self
            .store
            .throttle_refund(&self.policy, &self.key(key))
            .await
        {
            tracing::warn!(error = %e, "login throttle refund");
        }
    }

    /// The account signed in: forget its failures.
    pub async fn success(&self, key: &str) {
        if let Err(e) = self.store.throttle_success(&self.key(key)).await {
            tracing::warn!(error = %e, "login throttle reset");
        }
    }
}
