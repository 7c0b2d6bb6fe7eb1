//! The live MQTT sessions of this instance, by device, so that revoking a device's credentials
//! (a token reset, a device disabled or deleted) ends its connections at once instead of at
//! their next keep-alive. Each session remembers the token hash it authenticated with; a
//! revocation closes the sessions whose hash is no longer the device's current one.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

struct Entry {
    conn: u64,
    token_hash: String,
    /// Sending (or dropping) ends the connection.
    close: oneshot::Sender<()>,
}

#[derive(Default)]
pub(crate) struct Sessions {
    by_device: Mutex<HashMap<String, Vec<Entry>>>,
}

impl Sessions {
    /// Register an authenticated connection; the receiver completes when it must close.
    pub(crate) fn register(
        &self,
        device: &str,
        conn: u64,
        token_hash: &str,
    ) -> oneshot::Receiver<()> {
        let (close, closed) = oneshot::channel();
        self.lock()
            .entry(device.to_string())
            .or_default()
            .push(Entry {
                conn,
                token_hash: token_hash.to_string(),
                close,
            });
        closed
    }

    /// Forget a connection that ended.
    pub(crate) fn unregister(&self, device: &str, conn: u64) {
        let mut map = self.lock();
        if let Some(v) = map.get_mut(device) {
            v.retain(|e| e.conn != conn);
            if v.is_empty() {
                map.remove(device);
            }
        }
    }

    /// Close the sessions of `device` that did not authenticate with `current` (all of them when
    /// the device is gone or disabled). Returns how many were closed.
    pub(crate) fn close_stale(&self, device: &str, current: Option<&str>) -> usize {
        let mut map = self.lock();
        let Some(v) = map.get_mut(device) else {
            return 0;
        };
        let mut closed = 0;
        let mut kept = Vec::with_capacity(v.len());
        for e in v.drain(..) {
            if current == Some(e.token_hash.as_str()) {
                kept.push(e);
            } else {
                let _ = e.close.send(());
                closed += 1;
            }
        }
        if kept.is_empty() {
            map.remove(device);
        } else {
            *v = kept;
        }
        closed
    }

    /// The devices with live sessions, each with the token hashes its sessions authenticated
    /// with.
    pub(crate) fn snapshot(&self) -> Vec<(String, Vec<String>)> {
        self.lock()
            .iter()
            .map(|(d, v)| (d.clone(), v.iter().map(|e| e.token_hash.clone()).collect()))
            .collect()
    }

    /// Live sessions (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        self.by_device.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::Sessions;

    #[test]
    fn revocation_closes_only_sessions_with_another_token() {
        let s = Sessions::default();
        let mut a = s.register("d1", 1, "old");
        let mut b = s.register("d1", 2, "new");
        let mut c = s.register("d2", 3, "old");
        assert_eq!(s.close_stale("d1", Some("new")), 1);
        assert!(a.try_recv().is_ok());
        assert!(b.try_recv().is_err());
        assert!(c.try_recv().is_err());
        assert_eq!(s.len(), 2);
        let mut snap = s.snapshot();
        snap.sort();
        assert_eq!(
            snap,
            vec![
                ("d1".to_string(), vec!["new".to_string()]),
                ("d2".to_string(), vec!["old".to_string()])
            ]
        );
        // Gone or disabled: every session ends.
        assert_eq!(s.close_stale("d1", None), 1);
        assert!(b.try_recv().is_ok());
        s.unregister("d2", 3);
        assert_eq!(s.len(), 0);
        assert!(s.snapshot().is_empty());
        assert_eq!(s.close_stale("d2", None), 0);
    }
}
