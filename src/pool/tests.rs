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
    cool_as(p, i, model, secs, now, CooldownKind::Quota);
}

/// A 429 that names no quota and no delay (what an egress throttle looks like).
fn cool_bare(p: &Pool, i: u32, model: &str, secs: u64, now: Instant) {
    cool_as(p, i, model, secs, now, CooldownKind::Unspecified);
}

fn cool_as(p: &Pool, i: u32, model: &str, secs: u64, now: Instant, kind: CooldownKind) {
    let out = Outcome::Cooldown { until: now + Duration::from_secs(secs), until_wall: SystemTime::now(), kind };
    p.report(i, model, &out, Some(429), "quota", &policy(), now);
}

fn fail(p: &Pool, i: u32, model: &str, times: usize, now: Instant) {
    for _ in 0..times {
        p.report(i, model, &Outcome::Failure(FailureKind::ServerError), Some(503), "overloaded", &policy(), now);
    }
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
    cool_bare(&p, 0, "m", 3600, now);
    cool_bare(&p, 1, "m", 3600, now);
    assert!(p.select("m", &[], now).is_ok(), "one key left");
    cool_bare(&p, 2, "m", 3600, now);
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
fn every_key_naming_its_own_quota_is_rate_limited_not_a_throttled_egress() {
    let store = MemoryStore::new();
    let p = pool(Strategy::RoundRobin, &[1, 1, 1], &store);
    let now = Instant::now();
    for i in 0..3 {
        cool(&p, i, "m", 60, now);
    }
    let e = p.select("m", &[], now).unwrap_err();
    assert!(matches!(e, Exhausted::Unusable { cooling: 3, .. }), "{e:?}");
    let api = e.to_api_error("m", now, &policy());
    assert_eq!((api.code, api.retry_after), (429, Some(60)), "the keys' own delay, not a short egress pause");
    let later = now + Duration::from_secs(6);
    assert!(p.select("m", &[], later).is_err(), "no key comes back before its quota delay");
}

#[test]
fn with_every_key_broken_the_first_attempt_is_a_trial_on_the_key_that_recovers_first() {
    let store = MemoryStore::new();
    let p = pool(Strategy::RoundRobin, &[1, 1, 1], &store);
    let now = Instant::now();
    fail(&p, 2, "m", 3, now);
    let soon = now + Duration::from_secs(1);
    fail(&p, 0, "m", 3, soon);
    fail(&p, 1, "m", 3, soon);
    // Key 2 tripped first, so its breaker closes first.
    assert_eq!(p.select("m", &[], soon).unwrap().index, 2);
    // A request's later attempts get no trial: a failing upstream sees one call per request.
    let e = p.select("m", &[2], soon).unwrap_err();
    assert!(matches!(e, Exhausted::Unusable { broken: 3, .. }), "{e:?}");
    // A success closes the breaker: the key serves again as usual.
    p.report(2, "m", &Outcome::Ok, Some(200), "", &policy(), soon);
    assert_eq!(counts(&p, "m", 4), vec![0, 0, 4]);
    // Cooling keys are never a trial: their quota said how long to wait.
    let other = MemoryStore::new();
    let r = pool(Strategy::RoundRobin, &[1, 1], &other);
    cool(&r, 0, "m", 60, now);
    cool(&r, 1, "m", 60, now);
    assert!(r.select("m", &[], now).is_err());
}

#[test]
fn a_request_that_failed_on_every_usable_key_may_come_back_at_once() {
    let store = MemoryStore::new();
    let p = pool(Strategy::RoundRobin, &[1, 1], &store);
    let now = Instant::now();
    let e = p.select("m", &[0, 1], now).unwrap_err().to_api_error("m", now, &policy());
    assert_eq!(e.retry_after, Some(1), "not the prober's interval: nothing is known to be wrong with the keys");
}

#[test]
fn a_success_between_429s_means_real_key_limits() {
    let store = MemoryStore::new();
    let p = pool(Strategy::RoundRobin, &[1, 1, 1], &store);
    let now = Instant::now();
    cool_bare(&p, 0, "m", 60, now);
    cool_bare(&p, 1, "m", 60, now);
    p.report(2, "m", &Outcome::Ok, Some(200), "", &policy(), now);
    cool_bare(&p, 2, "m", 60, now);
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
