//! A short-lived cache of resolved callers. Resolving a session or token costs several queries;
//! a page or API call should not pay them again within seconds. Sign-out, password change,
//! token revocation and disabling an account drop the account's entries at once: on the
//! instance that made the change before it answers, and on every other instance when the
//! store's bus event `account.revoked` reaches it (through PostgreSQL `LISTEN/NOTIFY`). A
//! role change (rare) still reaches other instances within `TTL`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use linli_core::auth::Principal;

pub const TTL: Duration = Duration::from_secs(5);
const MAX_ENTRIES: usize = 20_000;

#[derive(Default, Debug)]
pub struct AuthCache {
    map: Mutex<HashMap<String, (Instant, Principal, Option<String>)>>,
}

impl AuthCache {
    /// The cached caller and (for sessions) CSRF token, if fresh.
    pub fn get(&self, key: &str) -> Option<(Principal, Option<String>)> {
        let map = self.map.lock().expect("auth cache lock");
        map.get(key)
            .filter(|(at, _, _)| at.elapsed() < TTL)
            .map(|(_, p, c)| (p.clone(), c.clone()))
    }

    pub fn put(&self, key: &str, p: &Principal, csrf: Option<String>) {
        let mut map = self.map.lock().expect("auth cache lock");
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (at, _, _)| at.elapsed() < TTL);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key.to_string(), (Instant::now(), p.clone(), csrf));
    }

    pub fn remove(&self, key: &str) {
        self.map.lock().expect("auth cache lock").remove(key);
    }

    /// Forget everyone (a role's actions changed: its holders must not keep the old ones).
    pub fn clear(&self) {
        self.map.lock().expect("auth cache lock").clear();
    }

    /// Forget every entry of a user (password change, token revocation).
    pub fn remove_user(&self, user_id: &str) {
        self.map
            .lock()
            .expect("auth cache lock")
            .retain(|_, (_, p, _)| p.user_id() != user_id);
    }
}

pub fn session_key(token: &str) -> String {
    format!("s:{token}")
}

pub fn token_key(secret: &str) -> String {
    format!("t:{secret}")
}

/// Drop an account from `cache` whenever the store says its sessions or tokens were ended (on
/// this instance or another). A listener that fell behind forgets everyone (fail closed).
/// Needs a Tokio runtime; without one (a synchronous test) nothing is spawned.
pub fn forget_revoked_accounts(store: &linli_store::Store, cache: &std::sync::Arc<AuthCache>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut rx = store.bus.subscribe();
    let cache = std::sync::Arc::downgrade(cache);
    rt.spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let e = rx.recv().await;
            let Some(cache) = cache.upgrade() else {
                return;
            };
            match e {
                Ok(e) if e.kind == linli_store::accounts::users::ACCOUNT_REVOKED => {
                    cache.remove_user(&e.id);
                }
                // Notices from other instances may have been missed: forget everyone.
                Ok(e) if e.kind == linli_store::BUS_RESYNC => cache.clear(),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => cache.clear(),
                Err(RecvError::Closed) => return,
            }
        }
    });
}
