//! State shared by all connections: key behaviours, the request log and the project-owned resources.
//!
//! Each piece has its own lock and every lock is held only for a map lookup or insert
//! (never across an `.await`), so the mock stays fast under a benchmark's load.

use crate::config::{KeyBehaviour, MockConfig};
use crate::files::Upload;
use crate::record::RecordedRequest;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

/// Everything a handler may read or change.
pub(crate) struct Shared {
    pub cfg: MockConfig,
    /// `cfg.upload_origin` with the "empty means me" rule applied, no trailing slash.
    pub upload_origin: String,
    keys: RwLock<HashMap<String, KeyBehaviour>>,
    log: Mutex<VecDeque<RecordedRequest>>,
    /// `seq`s of recorded requests whose connection went away before their answer was complete.
    abandoned: Mutex<Vec<u64>>,
    seq: AtomicU64,
    pub store: Mutex<Store>,
}

/// Files, cached contents and uploads in progress. Each entry remembers its owning project.
#[derive(Default)]
pub(crate) struct Store {
    pub files: HashMap<String, Owned>,
    pub caches: HashMap<String, Owned>,
    pub uploads: HashMap<String, Arc<Mutex<Upload>>>,
    /// Creation counter, so lists come out in a stable order.
    pub created: u64,
}

/// A resource as Google would return it, plus who owns it.
pub(crate) struct Owned {
    pub project: String,
    pub created: u64,
    pub json: Value,
}

/// The JSON of the entries of `map` owned by `project`, newest first.
pub(crate) fn owned_by(map: &HashMap<String, Owned>, project: &str) -> Vec<Value> {
    let mut mine: Vec<&Owned> = map.values().filter(|o| o.project == project).collect();
    mine.sort_by_key(|o| std::cmp::Reverse(o.created));
    mine.into_iter().map(|o| o.json.clone()).collect()
}

impl Shared {
    pub fn new(cfg: MockConfig, own_base_url: &str) -> Shared {
        let origin = if cfg.upload_origin.trim().is_empty() { own_base_url } else { cfg.upload_origin.trim() };
        Shared {
            upload_origin: origin.trim_end_matches('/').to_string(),
            keys: RwLock::new(HashMap::new()),
            log: Mutex::new(VecDeque::new()),
            abandoned: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            store: Mutex::new(Store::default()),
            cfg,
        }
    }

    /// The behaviour of `key`: the one set for it, else the configured default.
    pub fn behaviour(&self, key: &str) -> KeyBehaviour {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        match keys.get(key) {
            Some(b) => b.clone(),
            None => self.cfg.default_mode.clone().into(),
        }
    }

    pub fn default_behaviour(&self) -> KeyBehaviour {
        self.cfg.default_mode.clone().into()
    }

    pub fn set_key(&self, key: &str, behaviour: KeyBehaviour) {
        self.keys.write().unwrap_or_else(PoisonError::into_inner).insert(key.to_string(), behaviour);
    }

    pub fn forget_key(&self, key: &str) {
        self.keys.write().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// Appends to the bounded request log, stamping the sequence number; returns it.
    pub fn record(&self, mut req: RecordedRequest) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        req.seq = seq;
        let mut log = lock(&self.log);
        while log.len() >= self.cfg.max_recorded.max(1) {
            log.pop_front();
        }
        log.push_back(req);
        seq
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log).iter().cloned().collect()
    }

    /// Notes that request `seq` lost its connection before its answer was complete.
    pub fn abandon(&self, seq: u64) {
        lock(&self.abandoned).push(seq);
    }

    pub fn abandoned(&self) -> Vec<u64> {
        lock(&self.abandoned).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.log).clear();
        lock(&self.abandoned).clear();
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// Every key back to the default, resources and uploads forgotten, log cleared.
    pub fn reset(&self) {
        self.keys.write().unwrap_or_else(PoisonError::into_inner).clear();
        *self.store() = Store::default();
        self.clear_requests();
    }
}

/// Locks, ignoring poisoning: a panicked handler must not take the whole mock down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
