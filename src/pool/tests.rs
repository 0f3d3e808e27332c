//! Selection, exhaustion and egress rules of the pool, without a network.

use super::outcome::{CooldownKind, DisableReason, FailureKind, Outcome};
use super::store::MemoryStore;
use super::*;
use crate::config::{KeySettings, PoolSettings};
use std::time::{Duration, SystemTime};

fn policy() -> KeyHealthSettings {
    KeyHealthSettings::default()
}

fn pool(strategy: Strategy, weights: &[u32], store: &MemoryStore) -> Pool {
    let keys = weights.iter().enumerate().map(|(i, w)| KeySettings { name: format!("k{i}"), secret: Secret::new(format!("secret-{i}")), weight: *w }).collect();
    Pool::build(&PoolSettings { name: "p".into(), strategy, keys }, store)
}

fn cool(p: &Pool, i: u32, model: &str, secs: u64, now: Instant) {
    let out = Outcome::Cooldown { until: now + Duration::from_secs(secs), until_wall: SystemTime::now(), kind: CooldownKind::Quota };
    p.report(i, model, &out, Some(429), "quota", &policy(), now);
}

fn counts(p: &Pool, model: &str, n: usize) -> Vec<usize> {
    let now = Instant::now();
    let mut c = vec![0; p.keys.len()];
    for _ in 0..n {
        c[p.select(model, &[], now).unwrap().index as usize] += 1;
    }
    c
}

#[test]
fn round_robin_spreads_evenly_and_skips_cooling_keys() {
    let store = MemoryStore::new();
    let p = pool(Strategy::RoundRobin, &[1, 1, 1], &store);
    assert_eq!(counts(&p, "m", 300), vec![100, 100, 100]);
    cool(&p, 1, "m", 30, Instant::now());
    let c = counts(&p, "m", 300);
    assert_eq!(c[1], 0);
    assert_eq!(c[0] + c[2], 300);
    // Another model is unaffected: quotas are per model.
    assert_eq!(counts(&p, "other", 300), vec![100, 100, 100]);
}

#[test]
fn weighted_follows_weights() {
    let store = MemoryStore::new();
    let p = pool(Strategy::Weighted, &[1, 3], &store);
    assert_eq!(counts(&p, "m", 400), vec![100, 300]);
}

#[test]
fn least_inflight_prefers_idle_keys() {
    let store = MemoryStore::new();
    let p = pool(Strategy::LeastInflight, &[1, 1, 1], &store);
    let now = Instant::now();
    let a = p.select("m", &[], now).unwrap();
    let b = p.select("m", &[], now).unwrap();
    let c = p.select("m", &[], now).unwrap();
    let mut got = vec![a.index, b.index, c.index];
    got.sort();
    assert_eq!(got, vec![0, 1, 2], "three concurrent requests land on three keys");
    drop(b);
    let d = p.select("m", &[], now).unwrap();
    assert_eq!(d.index, got.iter().copied().find(|i| *i != a.index && *i != c.index).unwrap());
    assert_eq!(p.key(a.index).health.inflight(), 1);
}

#[test]
fn random_only_picks_usable_keys() {
    let store = MemoryStore::new();
    let p = pool(Strategy::Random, &[1, 1, 1, 1], &store);
    p.report(2, "m", &Outcome::Disable(DisableReason::InvalidKey), Some(400), "bad", &policy(), Instant::now());
    let c = counts(&p, "m", 400);
    assert_eq!(c[2], 0);
    assert!(c[0] > 50 && c[1] > 50 && c[3] > 50, "{c:?}");
}

#[test]
fn tried_keys_are_not_picked_again() {
    let store = MemoryStore::new();
    let p = pool(Strategy::RoundRobin, &[1, 1], &store);
    let now = Instant::now();
    let a = p.select("m", &[], now).unwrap().index;
    let b = p.select("m", &[a], now).unwrap().index;
    assert_ne!(a, b);
    let err = p.select("m", &[a, b], now).unwrap_err();
    assert!(matches!(err, Exhausted::Unusable { tried: 2, .. }), "{err:?}");
}

#[test]
fn exhaustion_says_429_with_retry_after_while_cooling() {
    let store = MemoryStore::new();
    let p = pool(Strategy::RoundRobin, &[1, 1, 1], &store);
    let now = Instant::now();
    cool(&p, 0, "m", 30, now);
    cool(&p, 1, "m", 12, now);
    p.report(2, "m", &Outcome::Disable(DisableReason::Suspended), Some(403), "suspended", &policy(), now);
    let e = p.select("m", &[], now).unwrap_err().to_api_error("m", now, &policy());
    assert_eq!(e.code, 429);
    assert_eq!(e.retry_after, Some(12));
    assert!(e.message.contains("2 of 3 rate limited") && e.message.contains("1 suspended"), "{}", e.message);
}

#[test]
fn exhaustion_is_503_when_keys_are_dead() {
    let store = MemoryStore::new();
    let p = pool(Strategy::RoundRobin, &[1, 1], &store);
    let now = Instant::now();
    for i in 0..2 {
        p.report(i, "m", &Outcome::Disable(DisableReason::InvalidKey), Some(400), "invalid", &policy(), now);
    }
    let e = p.select("m", &[], now).unwrap_err().to_api_error("m", now, &policy());
    assert_eq!((e.code, e.retry_after), (503, Some(60)));
    for _ in 0..3 {
        p.report(0, "x", &Outcome::Failure(FailureKind::ServerError), Some(503), "", &policy(), now);
    }
    p.keys[0].health.enable();
    p.keys[1].health.enable();
    assert_eq!(p.select("x", &[], now).unwrap().index, 1, "the broken key is skipped");
}

#[test]
fn a_pool_wide_429_storm_pauses_instead_of_cooling_every_key() {
    let store = MemoryStore::new();
    let p = pool(Strategy::RoundRobin, &[1, 1, 1], &store);
    let now = Instant::now();
    cool(&p, 0, "m", 3600, now);
    cool(&p, 1, "m", 3600, now);
    assert!(p.select("m", &[], now).is_ok(), "one key left");
    cool(&p, 2, "m", 3600, now);
    match p.select("m", &[], now) {
        Err(Exhausted::EgressPaused { until }) => assert_eq!(until - now, Duration::from_secs(5)),
        other => panic!("expected an egress pause, got {other:?}"),
    }
    // After the short pause every key is usable again: nobody waits an hour.
    let later = now + Duration::from_secs(6);
    let mut picked: Vec<u32> = (0..3).map(|_| p.select("m", &[], later).unwrap().index).collect();
    picked.sort();
    assert_eq!(picked, vec![0, 1, 2]);
}

#[test]
fn a_success_between_429s_means_real_key_limits() {
    let store = MemoryStore::new();
    let p = pool(Strategy::RoundRobin, &[1, 1, 1], &store);
    let now = Instant::now();
    cool(&p, 0, "m", 60, now);
    cool(&p, 1, "m", 60, now);
    p.report(2, "m", &Outcome::Ok, Some(200), "", &policy(), now);
    cool(&p, 2, "m", 60, now);
    let e = p.select("m", &[], now).unwrap_err();
    assert!(matches!(e, Exhausted::Unusable { cooling: 3, .. }), "{e:?}");
}

#[test]
fn state_survives_a_rebuild_from_the_same_store() {
    let store = MemoryStore::new();
    let p1 = pool(Strategy::RoundRobin, &[1, 1], &store);
    p1.report(0, "m", &Outcome::Disable(DisableReason::Leaked), Some(403), "leaked", &policy(), Instant::now());
    let p2 = pool(Strategy::Random, &[1, 1, 1], &store);
    assert!(p2.keys[0].health.is_disabled(), "same key, same state after a reload");
    assert!(!p2.keys[2].health.is_disabled());
}

#[test]
fn a_hundred_thousand_keys_select_in_constant_time() {
    let store = MemoryStore::new();
    let p = pool(Strategy::RoundRobin, &vec![1; 100_000], &store);
    let now = Instant::now();
    let t = Instant::now();
    for _ in 0..100_000 {
        p.select("m", &[], now).unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(2), "selection took {:?}", t.elapsed());
}
