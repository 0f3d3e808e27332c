//! Where key state and resource ownership live. One interface, so that several proxy instances
//! can later share it through Redis; today's implementation is in memory.

use super::health::{ChangedKeys, KeyHealth};
use crate::secret::Fingerprint;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// An upload session started through the proxy: its chunks must use the same key.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub key: Fingerprint,
    /// The client that started it (chunk requests may come without a token, as at Google).
    pub client: Option<Arc<str>>,
    pub expires: Instant,
}

/// Key state and resource ownership, shared by every config snapshot.
pub trait StateStore: Send + Sync + 'static {
    /// The health record of a key, created on first use. The same `Arc` comes back for the same
    /// fingerprint, so a key that stays in the config keeps its state across reloads.
    fn key_health(&self, key: Fingerprint) -> Arc<KeyHealth>;
    /// The key health records whose durable state changed since the last call (each change is
    /// reported once), for persisting them. Only the changed ones: with 100,000 keys, handing
    /// out every record once a second cost more than all the changes.
    fn changed_keys(&self) -> Vec<Arc<KeyHealth>>;
    /// Records that `resource` (`files/abc`, `cachedContents/x`) belongs to `key`'s project.
    fn bind_owner(&self, resource: &str, key: Fingerprint, ttl: Duration);
    fn owner(&self, resource: &str) -> Option<Fingerprint>;
    /// Cheap check so that request bodies are only scanned for resource names when some are known.
    fn has_owned_resources(&self) -> bool;
    fn bind_upload(&self, upload_id: &str, session: UploadSession);
    fn upload(&self, upload_id: &str) -> Option<UploadSession>;
    /// Forgets expired ownership and upload records.
    fn sweep(&self, now: Instant);
}

/// Upper bound on remembered resources and uploads, so that a flood of creations cannot grow
/// memory without limit.
const MAX_BINDINGS: usize = 1_000_000;

#[derive(Default)]
pub struct MemoryStore {
    keys: RwLock<HashMap<Fingerprint, Arc<KeyHealth>>>,
    changes: Arc<ChangedKeys>,
    owners: Mutex<HashMap<String, (Fingerprint, Instant)>>,
    owner_count: AtomicUsize,
    uploads: Mutex<HashMap<String, UploadSession>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

fn make_room<V>(map: &mut HashMap<String, V>, expired: impl Fn(&V) -> bool) {
    if map.len() < MAX_BINDINGS {
        return;
    }
    map.retain(|_, v| !expired(v));
    // Still full of live entries: drop an arbitrary tenth rather than refuse new ones.
    if map.len() >= MAX_BINDINGS {
        let victims: Vec<String> = map.keys().take(MAX_BINDINGS / 10).cloned().collect();
        for k in victims {
            map.remove(&k);
        }
    }
}

impl StateStore for MemoryStore {
    fn key_health(&self, key: Fingerprint) -> Arc<KeyHealth> {
        if let Some(h) = self.keys.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return h.clone();
        }
        let mut w = self.keys.write().unwrap_or_else(|p| p.into_inner());
        w.entry(key).or_insert_with(|| Arc::new(KeyHealth::tracked(key, self.changes.clone()))).clone()
    }

    fn changed_keys(&self) -> Vec<Arc<KeyHealth>> {
        let changed = self.changes.take();
        if changed.is_empty() {
            return Vec::new();
        }
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        changed.iter().filter_map(|fp| keys.get(fp)).filter(|h| h.take_dirty()).cloned().collect()
    }

    fn bind_owner(&self, resource: &str, key: Fingerprint, ttl: Duration) {
        let now = Instant::now();
        let mut m = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut m, |(_, exp)| *exp <= now);
        m.insert(resource.to_owned(), (key, now + ttl));
        self.owner_count.store(m.len(), Ordering::Release);
    }

    fn owner(&self, resource: &str) -> Option<Fingerprint> {
        let m = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        m.get(resource).filter(|(_, exp)| *exp > Instant::now()).map(|(k, _)| *k)
    }

    fn has_owned_resources(&self) -> bool {
        self.owner_count.load(Ordering::Acquire) > 0
    }

    fn bind_upload(&self, upload_id: &str, session: UploadSession) {
        let now = Instant::now();
        let mut m = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut m, |s| s.expires <= now);
        m.insert(upload_id.to_owned(), session);
    }

    fn upload(&self, upload_id: &str) -> Option<UploadSession> {
        let m = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        m.get(upload_id).filter(|s| s.expires > Instant::now()).cloned()
    }

    fn sweep(&self, now: Instant) {
        let mut m = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, (_, exp)| *exp > now);
        self.owner_count.store(m.len(), Ordering::Release);
        drop(m);
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, s| s.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_fingerprint_same_state() {
        let s = MemoryStore::new();
        let a = s.key_health(Fingerprint::of(b"k1"));
        let b = s.key_health(Fingerprint::of(b"k1"));
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn changed_keys_reports_each_change_once() {
        let s = MemoryStore::new();
        let a = s.key_health(Fingerprint::of(b"k1"));
        let _b = s.key_health(Fingerprint::of(b"k2"));
        assert!(s.changed_keys().is_empty());
        a.disable(crate::pool::outcome::DisableReason::Manual, "off");
        let changed = s.changed_keys();
        assert_eq!(changed.len(), 1);
        assert!(Arc::ptr_eq(&changed[0], &a));
        assert!(s.changed_keys().is_empty(), "reported once");
    }

    #[test]
    fn ownership_expires() {
        let s = MemoryStore::new();
        assert!(!s.has_owned_resources());
        s.bind_owner("files/a", Fingerprint::of(b"k1"), Duration::from_secs(60));
        assert!(s.has_owned_resources());
        assert_eq!(s.owner("files/a"), Some(Fingerprint::of(b"k1")));
        s.bind_owner("files/b", Fingerprint::of(b"k1"), Duration::ZERO);
        assert_eq!(s.owner("files/b"), None);
        s.sweep(Instant::now() + Duration::from_secs(120));
        assert!(!s.has_owned_resources());
    }
}
