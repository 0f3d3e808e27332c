//! Where key state and resource ownership live. One interface, so that several proxy instances
//! can later share it through Redis; today's implementation is in memory, and what must
//! survive a restart is handed out for the SQLite state store (`changed_keys`, `new_bindings`).

use super::health::{ChangedKeys, KeyHealth};
use crate::secret::Fingerprint;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// A binding as handed to persistence and back: the key whose project owns a resource, or an
/// upload session. `Debug` leaves out the upload id: it alone authorises the upload's chunks.
#[derive(Clone)]
pub enum Binding {
    /// `resource` (`files/abc`, `cachedContents/x`) belongs to `key`'s project until `expires`.
    Owner {
        resource: String,
        key: Fingerprint,
        expires: Instant,
    },
    Upload {
        upload_id: String,
        session: UploadSession,
    },
}

impl Binding {
    pub fn expires(&self) -> Instant {
        match self {
            Binding::Owner { expires, .. } => *expires,
            Binding::Upload { session, .. } => session.expires,
        }
    }
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Binding::Owner { resource, key, expires } => {
                f.debug_struct("Owner").field("resource", resource).field("key", key).field("expires", expires).finish()
            }
            Binding::Upload { session, .. } => f.debug_struct("Upload").field("upload_id", &"<hidden>").field("session", session).finish(),
        }
    }
}

/// What [`StateStore::new_bindings`] hands out.
#[derive(Debug, Default)]
pub struct NewBindings {
    /// Bindings made since the last call, oldest first.
    pub bindings: Vec<Binding>,
    /// Bindings made since the last call that were not kept for handing out because too many
    /// were waiting (nobody called `new_bindings`). They still work until the process stops.
    pub dropped: u64,
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
    /// The bindings made by `bind_owner` and `bind_upload` since the last call, each handed out
    /// once, for persisting them. Restored bindings are not handed out (they are saved
    /// already). Cheap for the data plane: binding only appends to a list this call takes.
    fn new_bindings(&self) -> NewBindings;
    /// Puts back bindings saved by an earlier process, for use at start-up. Ones expired at
    /// `now` are skipped, and a binding already made under the same name stays (it is newer).
    /// Restored bindings are not handed out by `new_bindings`. Returns how many were put back.
    fn restore_bindings(&self, bindings: Vec<Binding>, now: Instant) -> usize;
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
    /// Bindings made since the last `new_bindings`, bounded like the maps: the bound is only
    /// reached when nothing persists them.
    fresh: Mutex<Vec<Binding>>,
    fresh_dropped: AtomicU64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `b` for the next `new_bindings`, unless the list is full.
    fn note_fresh(&self, b: Binding) {
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        if fresh.len() >= MAX_BINDINGS {
            self.fresh_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        fresh.push(b);
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
        let expires = now + ttl;
        let mut m = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut m, |(_, exp)| *exp <= now);
        m.insert(resource.to_owned(), (key, expires));
        self.owner_count.store(m.len(), Ordering::Release);
        drop(m);
        self.note_fresh(Binding::Owner { resource: resource.to_owned(), key, expires });
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
        m.insert(upload_id.to_owned(), session.clone());
        drop(m);
        self.note_fresh(Binding::Upload { upload_id: upload_id.to_owned(), session });
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

    fn new_bindings(&self) -> NewBindings {
        let bindings = std::mem::take(&mut *self.fresh.lock().unwrap_or_else(|p| p.into_inner()));
        NewBindings { bindings, dropped: self.fresh_dropped.swap(0, Ordering::Relaxed) }
    }

    fn restore_bindings(&self, bindings: Vec<Binding>, now: Instant) -> usize {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let mut restored = 0;
        for b in bindings.into_iter().filter(|b| b.expires() > now) {
            let inserted = match b {
                Binding::Owner { resource, key, expires } => {
                    make_room(&mut owners, |(_, exp)| *exp <= now);
                    insert_if_absent(&mut owners, resource, (key, expires))
                }
                Binding::Upload { upload_id, session } => {
                    make_room(&mut uploads, |s| s.expires <= now);
                    insert_if_absent(&mut uploads, upload_id, session)
                }
            };
            restored += usize::from(inserted);
        }
        self.owner_count.store(owners.len(), Ordering::Release);
        restored
    }
}

fn insert_if_absent<V>(map: &mut HashMap<String, V>, name: String, value: V) -> bool {
    match map.entry(name) {
        std::collections::hash_map::Entry::Occupied(_) => false,
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(value);
            true
        }
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

    fn session(key: Fingerprint, expires: Instant) -> UploadSession {
        UploadSession { key, client: Some(Arc::from("alice")), expires }
    }

    #[test]
    fn new_bindings_are_handed_out_once_and_restored_ones_never() {
        let s = MemoryStore::new();
        let k = Fingerprint::of(b"k1");
        s.bind_owner("files/a", k, Duration::from_secs(60));
        s.bind_upload("up-1", session(k, Instant::now() + Duration::from_secs(60)));
        let new = s.new_bindings();
        assert_eq!(new.dropped, 0);
        match &new.bindings[..] {
            [Binding::Owner { resource, key, .. }, Binding::Upload { upload_id, session }] => {
                assert_eq!((resource.as_str(), *key, upload_id.as_str(), session.key, session.client.as_deref()), ("files/a", k, "up-1", k, Some("alice")));
            }
            other => panic!("{other:?}"),
        }
        assert!(s.new_bindings().bindings.is_empty(), "handed out once");

        // A new process: what was saved comes back, except what has expired since.
        let restarted = MemoryStore::new();
        let now = Instant::now();
        let expired = Binding::Owner { resource: "files/old".into(), key: k, expires: now };
        assert_eq!(restarted.restore_bindings(new.bindings.into_iter().chain([expired]).collect(), now), 2);
        assert!(restarted.has_owned_resources());
        assert_eq!(restarted.owner("files/a"), Some(k));
        assert_eq!(restarted.owner("files/old"), None);
        assert_eq!(restarted.upload("up-1").map(|u| u.key), Some(k));
        assert!(restarted.new_bindings().bindings.is_empty(), "restored bindings are saved already");
    }

    #[test]
    fn a_restored_binding_does_not_replace_a_newer_one() {
        let s = MemoryStore::new();
        let (old, new) = (Fingerprint::of(b"old"), Fingerprint::of(b"new"));
        s.bind_owner("files/a", new, Duration::from_secs(60));
        let saved = Binding::Owner { resource: "files/a".into(), key: old, expires: Instant::now() + Duration::from_secs(60) };
        assert_eq!(s.restore_bindings(vec![saved], Instant::now()), 0);
        assert_eq!(s.owner("files/a"), Some(new));
    }

    #[test]
    fn debug_never_shows_an_upload_id() {
        let b = Binding::Upload { upload_id: "AbCdUploadId".into(), session: session(Fingerprint::of(b"k"), Instant::now()) };
        let shown = format!("{b:?}");
        assert!(!shown.contains("AbCdUploadId") && shown.contains("alice"), "{shown}");
    }
}
