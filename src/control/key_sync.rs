//! Key state that survives restarts: changed keys are written to the state store once a second
//! (the data plane only sets a flag), with the new resource bindings (`bindings`), and saved
//! state is applied at start-up.

use crate::gateway::Shared;
use crate::pool::health::{Disabled, Durable};
use crate::pool::outcome::{CooldownKind, DisableReason};
use crate::secret::Fingerprint;
use crate::store::{PersistedCooldown, PersistedDisable, PersistedKeyState, Store, StoreWriter};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

pub fn to_persisted(fp: Fingerprint, name: &str, d: &Durable) -> PersistedKeyState {
    PersistedKeyState {
        fingerprint: fp.to_hex(),
        name: name.to_owned(),
        disabled: d.disabled.as_ref().map(|x| PersistedDisable {
            reason: x.reason.as_str().into(),
            message: x.message.clone(),
            since_ms: ms(x.since),
            manual: x.reason == DisableReason::Manual,
        }),
        cooldowns: d.cooldowns.iter().map(|(m, until, k)| PersistedCooldown { model: m.clone(), until_ms: ms(*until), kind: k.as_str().into() }).collect(),
        updated_ms: ms(SystemTime::now()),
    }
}

pub fn from_persisted(p: &PersistedKeyState) -> Durable {
    Durable {
        disabled: p.disabled.as_ref().map(|d| Disabled {
            reason: DisableReason::parse(&d.reason).unwrap_or(DisableReason::Manual),
            since: from_ms(d.since_ms),
            message: d.message.clone(),
        }),
        cooldowns: p.cooldowns.iter().map(|c| (c.model.clone(), from_ms(c.until_ms), CooldownKind::parse(&c.kind).unwrap_or(CooldownKind::Quota))).collect(),
    }
}

/// Applies saved key state to the running store. Returns how many keys had some.
pub fn restore(shared: &Shared, db: &Store) -> usize {
    let saved = match db.load_key_states() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot load saved key state; keys start healthy");
            return 0;
        }
    };
    let now = Instant::now();
    let mut n = 0;
    for p in &saved {
        let Some(fp) = Fingerprint::from_hex(&p.fingerprint) else { continue };
        let durable = from_persisted(p);
        if durable.disabled.is_none() && durable.cooldowns.is_empty() {
            continue;
        }
        let h = shared.store.key_health(fp);
        h.restore(durable, now);
        // Restoring is not a change worth writing back.
        h.take_dirty();
        n += 1;
    }
    n
}

/// Hands changed key states and new bindings to the writer, which commits them at its next
/// tick; never waits on SQLite. Run once a second by [`KeySync`], and by `Drain` at shutdown
/// once in-flight requests are done.
pub fn persist_changes(shared: &Shared, writer: &StoreWriter) {
    persist_keys(shared, writer);
    super::bindings::persist_new(shared, writer);
}

fn persist_keys(shared: &Shared, writer: &StoreWriter) {
    let dirty = shared.store.changed_keys();
    if dirty.is_empty() {
        return;
    }
    let rt = shared.runtime.load_full();
    let names: HashMap<Fingerprint, &str> = rt.pools.iter().flat_map(|p| p.keys.iter()).map(|k| (k.health.fingerprint, &*k.name)).collect();
    let now = Instant::now();
    for h in dirty {
        let name = names.get(&h.fingerprint).copied().unwrap_or("");
        writer.key_state(to_persisted(h.fingerprint, name, &h.durable(now)));
    }
}

/// Writes changed key state and new bindings once a second.
pub struct KeySync {
    pub shared: Arc<Shared>,
    pub writer: StoreWriter,
}

#[async_trait]
impl BackgroundService for KeySync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => persist_changes(&self.shared, &self.writer),
                // Not here: `Drain` persists the last changes after the in-flight requests,
                // which may still create files, and before its final flush. Doing it here too
                // would race that flush.
                _ = shutdown.changed() => return,
            }
        }
    }
}
