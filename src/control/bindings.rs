//! Resource ownership and upload sessions that survive restarts: new bindings are handed to the
//! state store's writer once a second with the changed key states (see `key_sync`), and saved
//! ones are put back at start-up, so that a file uploaded before a restart is still asked for
//! with the key whose project owns it, and an upload in progress can be finished.

use crate::gateway::Shared;
use crate::pool::store::{Binding, UploadSession};
use crate::secret::Fingerprint;
use crate::store::{BindingKind, PersistedBinding, Store, StoreWriter};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Milliseconds in `d`, saturating.
fn ms_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `at` as Unix milliseconds, given that it is `now_ms` at `now`. Instants mean nothing to
/// another process; wall-clock time does.
fn wall_ms(at: Instant, now: Instant, now_ms: i64) -> i64 {
    match at.checked_duration_since(now) {
        Some(ahead) => now_ms.saturating_add(ms_of(ahead)),
        None => now_ms.saturating_sub(ms_of(now - at)),
    }
}

/// The instant of `expires_ms` (Unix milliseconds), given that it is `now_ms` at `now`;
/// `None` when it has passed.
fn instant_of(expires_ms: i64, now: Instant, now_ms: i64) -> Option<Instant> {
    let left = u64::try_from(expires_ms.saturating_sub(now_ms)).ok().filter(|ms| *ms > 0)?;
    now.checked_add(Duration::from_millis(left))
}

/// The stored form of `b` (`now`, `now_ms`: one reading of both clocks).
pub fn to_persisted(b: Binding, now: Instant, now_ms: i64) -> PersistedBinding {
    match b {
        Binding::Owner { resource, key, expires } => {
            PersistedBinding { kind: BindingKind::Owner, name: resource, key_fp: key.to_hex(), client: None, expires_ms: wall_ms(expires, now, now_ms) }
        }
        Binding::Upload { upload_id, session } => PersistedBinding {
            kind: BindingKind::Upload,
            name: upload_id,
            key_fp: session.key.to_hex(),
            client: session.client.as_deref().map(str::to_owned),
            expires_ms: wall_ms(session.expires, now, now_ms),
        },
    }
}

/// Why a stored binding is not put back.
#[derive(Debug, PartialEq, Eq)]
pub enum Skipped {
    Expired,
    /// The fingerprint is not 32 hex digits (a damaged row).
    BadFingerprint,
}

/// The binding a stored row describes (`now`, `now_ms`: one reading of both clocks).
pub fn from_persisted(p: PersistedBinding, now: Instant, now_ms: i64) -> Result<Binding, Skipped> {
    let expires = instant_of(p.expires_ms, now, now_ms).ok_or(Skipped::Expired)?;
    let key = Fingerprint::from_hex(&p.key_fp).ok_or(Skipped::BadFingerprint)?;
    Ok(match p.kind {
        BindingKind::Owner => Binding::Owner { resource: p.name, key, expires },
        BindingKind::Upload => Binding::Upload { upload_id: p.name, session: UploadSession { key, client: p.client.map(Arc::from), expires } },
    })
}

/// Hands the bindings made since the last call to the writer, which commits them at its next
/// tick; never waits on SQLite. Bindings the state store could not keep count as dropped.
pub fn persist_new(shared: &Shared, writer: &StoreWriter) {
    let new = shared.store.new_bindings();
    writer.count_dropped(new.dropped);
    if new.bindings.is_empty() {
        return;
    }
    let (now, now_ms) = (Instant::now(), crate::store::now_ms());
    writer.bindings(new.bindings.into_iter().map(|b| to_persisted(b, now, now_ms)));
}

/// How many bindings [`restore`] put back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub owners: usize,
    pub uploads: usize,
}

/// Puts the saved bindings that have not expired back into the running store. A store that
/// cannot be read is logged and leaves the proxy starting without them (requests for older
/// files then go to any key, as before this existed).
pub fn restore(shared: &Shared, db: &Store) -> Restored {
    let (now, now_ms) = (Instant::now(), crate::store::now_ms());
    let saved = match db.load_bindings(now_ms) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot load saved resource ownership; files and caches created before the restart may reach keys of other projects");
            return Restored::default();
        }
    };
    let (mut owners, mut uploads) = (Vec::new(), Vec::new());
    let mut damaged = 0usize;
    for p in saved {
        match from_persisted(p, now, now_ms) {
            Ok(b @ Binding::Owner { .. }) => owners.push(b),
            Ok(b @ Binding::Upload { .. }) => uploads.push(b),
            // Expired since the query ran: nothing to do.
            Err(Skipped::Expired) => {}
            Err(Skipped::BadFingerprint) => damaged += 1,
        }
    }
    if damaged > 0 {
        // No names: an upload's name is its id, which authorises its chunks.
        tracing::warn!(rows = damaged, "ignoring stored bindings with an unreadable key fingerprint");
    }
    Restored { owners: shared.store.restore_bindings(owners, now), uploads: shared.store.restore_bindings(uploads, now) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_800_000_000_000;

    #[test]
    fn expiries_convert_through_wall_clock_time() {
        let now = Instant::now();
        let in_an_hour = now + Duration::from_secs(3600);
        assert_eq!(wall_ms(in_an_hour, now, NOW_MS), NOW_MS + 3_600_000);
        assert_eq!(instant_of(NOW_MS + 3_600_000, now, NOW_MS), Some(in_an_hour));
        // Already past, or due this very millisecond: expired.
        assert_eq!(instant_of(NOW_MS - 1, now, NOW_MS), None);
        assert_eq!(instant_of(NOW_MS, now, NOW_MS), None);
        assert_eq!(instant_of(i64::MIN, now, NOW_MS), None);
        if let Some(earlier) = now.checked_sub(Duration::from_secs(5)) {
            assert_eq!(wall_ms(earlier, now, NOW_MS), NOW_MS - 5000);
        }
    }

    #[test]
    fn bindings_round_trip_through_the_stored_form() {
        let now = Instant::now();
        let key = Fingerprint::of(b"AIzaOwner");
        let expires = now + Duration::from_secs(60);
        let upload = Binding::Upload { upload_id: "secret-id".into(), session: UploadSession { key, client: Some(Arc::from("alice")), expires } };
        let p = to_persisted(upload, now, NOW_MS);
        assert_eq!(
            (p.kind, p.name.as_str(), p.key_fp.as_str(), p.client.as_deref(), p.expires_ms),
            (BindingKind::Upload, "secret-id", &*key.to_hex(), Some("alice"), NOW_MS + 60_000)
        );
        assert!(!format!("{p:?}").contains("secret-id"), "Debug must not show an upload id");
        // Restored 10 s later: 50 s left.
        let later = now + Duration::from_secs(10);
        match from_persisted(p, later, NOW_MS + 10_000) {
            Ok(Binding::Upload { upload_id, session }) => {
                assert_eq!((upload_id.as_str(), session.key, session.client.as_deref(), session.expires), ("secret-id", key, Some("alice"), expires));
            }
            other => panic!("{other:?}"),
        }
        let owner = to_persisted(Binding::Owner { resource: "files/abc".into(), key, expires }, now, NOW_MS);
        assert_eq!(from_persisted(owner.clone(), now + Duration::from_secs(61), NOW_MS + 61_000).err(), Some(Skipped::Expired));
        let damaged = PersistedBinding { key_fp: "zz".into(), ..owner };
        assert_eq!(from_persisted(damaged, now, NOW_MS).err(), Some(Skipped::BadFingerprint));
    }
}
