//! Access limits: network rules (allow, deny, trusted proxies), per-address and global request
//! rates, and per-client policy limits (requests and tokens per minute, tokens per day,
//! concurrency). Counters sit behind the `Limits` interface so that several proxy instances can
//! later share them; today's implementation is in memory.

pub mod ip;
pub mod rate;

use crate::auth::{Client, PolicySource};
use crate::config::Policy;
use rate::{secs_to_next_day, utc_day, Gcra, RequestLog, TokenDay, TokenMinute};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// A refused request: the status, the limit that refused it and when to come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// Label for the refusal metric.
    pub reason: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Refusal {
    pub fn rate(reason: &'static str, message: String, wait: Duration) -> Self {
        Refusal { status: 429, reason, message, retry_after: Some(secs(wait).max(1)) }
    }
}

/// What a client has used, for the admin API.
///
/// Requests and requests in flight are counted only for clients whose limits need them:
/// counting every client would cost each request a lock and a map lookup. What is not counted
/// is `None` (`null`), so that it is not mistaken for an idle client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ClientUsage {
    /// Requests in flight now; `null` (not counted) for a client with no `rpm`, `tpm`, `tpd` or
    /// `concurrency` limit: set one to count them.
    pub inflight: Option<u32>,
    /// Requests admitted in the last 60 seconds; `null` (not counted) for a client without an
    /// `rpm` limit: set one to count them.
    pub requests_last_minute: Option<u32>,
    /// Tokens used in the last 60 seconds (counted for every client).
    pub tokens_last_minute: u64,
    /// Tokens used today, UTC (counted for every client).
    pub tokens_today: u64,
}

/// Per-client counters.
#[derive(Debug, Default)]
struct ClientCounters {
    inflight: AtomicU32,
    requests: Mutex<RequestLog>,
    minute: Mutex<TokenMinute>,
    day: Mutex<TokenDay>,
    /// For a client whose policy comes from its tokens: the policies they carried.
    token_policies: Mutex<Vec<SeenPolicy>>,
}

impl ClientCounters {
    /// Whether forgetting these counters loses nothing: no request in flight or within the
    /// last minute, no tokens this minute or this UTC day (a `tpd` limit needs the day's count),
    /// and no token policy the admin API still shows. A counter another thread holds locked is
    /// in use, so not idle (the map's lock is held here; the counters' locks are never held
    /// while waiting for it).
    fn idle(&self, now: Instant, wall: SystemTime) -> bool {
        let quiet = |ok: Option<bool>| ok == Some(true);
        self.inflight.load(Ordering::Acquire) == 0
            && quiet(self.requests.try_lock().ok().map(|r| r.used(now) == 0))
            && quiet(self.minute.try_lock().ok().map(|mut m| m.used(wall) == 0))
            && quiet(self.day.try_lock().ok().map(|mut d| d.used(wall) == 0))
            && quiet(self.token_policies.try_lock().ok().map(|p| !p.iter().any(|s| remembered(s, wall))))
    }
}

/// A policy a JWT client's token carried (or `[jwt.policy]` gave it), and when it was last
/// enforced.
#[derive(Debug, Clone)]
pub struct SeenPolicy {
    /// Its limits. `policy.pools` are indices into the pools of the configuration it was first
    /// enforced under, which a reload may reorder: read `pools` for what they named.
    pub policy: Arc<Policy>,
    /// The pools it allowed, by name as they were when it was enforced, the default first (for
    /// an empty list, the first pool, which is what such a request gets).
    pub pools: Vec<Arc<str>>,
    pub source: PolicySource,
    pub last_seen: SystemTime,
}

/// The name of the pool at an index of the configuration a request runs on, for
/// [`Limits::admit`] (`None` past the end).
pub type PoolName<'a> = &'a dyn Fn(usize) -> Option<Arc<str>>;

/// A JWT client without a `[[clients]]` entry, as its requests showed it.
#[derive(Debug, Clone)]
pub struct TokenClient {
    pub name: Arc<str>,
    /// The distinct policies seen within [`TOKEN_POLICY_MEMORY`], the latest first.
    pub policies: Vec<SeenPolicy>,
}

/// How long a policy seen on a token is remembered for the admin API.
pub const TOKEN_POLICY_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// Distinct policies remembered per client: tokens minted with ever-changing limits must not
/// grow the list without bound.
const TOKEN_POLICIES_KEPT: usize = 8;

/// Puts `policy` first in `seen` (the latest enforced), drops policies not seen within
/// [`TOKEN_POLICY_MEMORY`] and keeps at most [`TOKEN_POLICIES_KEPT`].
///
/// A policy is the one seen before when what the admin API shows of it is the same: source,
/// limits and pool names. Its pool indices are not compared: after a reload that reorders the
/// pools, the same token names the same pools at other indices. The names are resolved (and
/// allocated) only for a policy not seen before; the usual request compares them without
/// allocating.
fn note_policy(seen: &mut Vec<SeenPolicy>, policy: &Arc<Policy>, source: PolicySource, pool_name: PoolName<'_>, now: SystemTime) {
    let known = seen.iter().position(|s| s.source == source && same_limits(&s.policy, policy) && s.pools.iter().cloned().eq(enforced_pools(policy, pool_name)));
    let entry = match known {
        Some(i) => {
            let mut s = seen.remove(i);
            s.last_seen = now;
            s
        }
        None => SeenPolicy { policy: policy.clone(), pools: enforced_pools(policy, pool_name).collect(), source, last_seen: now },
    };
    seen.insert(0, entry);
    seen.retain(|s| remembered(s, now));
    seen.truncate(TOKEN_POLICIES_KEPT);
}

/// The names of the pools `policy` allows, the default first: the first pool when it names
/// none, as its requests get (see `Policy::pool`).
fn enforced_pools<'a>(policy: &'a Policy, pool_name: PoolName<'a>) -> impl Iterator<Item = Arc<str>> + 'a {
    let first = policy.pools.is_empty().then_some(0);
    first.into_iter().chain(policy.pools.iter().copied()).filter_map(pool_name)
}

/// Whether two policies hold a client to the same limits, whatever pool indices they carry
/// (pools are compared by name, beside). Every field is named, so that a field added to
/// `Policy` cannot be left out of the comparison unnoticed.
fn same_limits(a: &Policy, b: &Policy) -> bool {
    let Policy { models, pools: _, rpm, tpm, tpd, concurrency } = a;
    *models == b.models && *rpm == b.rpm && *tpm == b.tpm && *tpd == b.tpd && *concurrency == b.concurrency
}

fn remembered(seen: &SeenPolicy, now: SystemTime) -> bool {
    now.duration_since(seen.last_seen).map_or(true, |age| age < TOKEN_POLICY_MEMORY)
}

/// A client's request in flight; counts against its concurrency until dropped.
pub struct ClientPermit {
    counters: Option<Arc<ClientCounters>>,
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        if let Some(c) = &self.counters {
            c.inflight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The counters behind every limit.
pub trait Limits: Send + Sync + 'static {
    /// Per-address and global request rates.
    fn check_address(&self, ip: IpAddr, per_ip_rpm: Option<u32>, global_rpm: Option<u32>, now: Instant) -> Result<(), Refusal>;
    /// Admits a request of `client` under its policy's limits (the model rule is checked by the
    /// caller, which knows the model). `pool_name` names the pools of the configuration the
    /// request runs on, which its policy's pool indices point into: a policy known only from a
    /// token is remembered with those names (see [`Limits::token_clients`]).
    fn admit(&self, client: &Client, pool_name: PoolName<'_>, now: Instant) -> Result<ClientPermit, Refusal>;
    /// Accounts tokens a client's request consumed (read from the response).
    fn record_tokens(&self, client: &str, tokens: u64);
    /// Restores a client's token count of `day` (UTC) at start-up.
    fn seed_day(&self, client: &str, day: u64, tokens: u64);
    /// What `client` has used; the counts that `policy` does not make `admit` keep are `None`.
    fn usage(&self, client: &str, policy: &Policy) -> ClientUsage;
    /// JWT clients admitted under a policy of their tokens (no `[[clients]]` entry) within
    /// [`TOKEN_POLICY_MEMORY`], by name, with the policies they were admitted under and the
    /// names of the pools those allowed at the time.
    fn token_clients(&self) -> Vec<TokenClient>;
}

/// In-memory counters.
#[derive(Default)]
pub struct MemoryLimits {
    clients: Mutex<ClientMap>,
    addresses: Mutex<HashMap<IpAddr, Gcra>>,
    global: Mutex<Option<Gcra>>,
}

/// Counters by client name: the configured clients, and the subjects of JWTs, which a signed
/// token can make up in any number. hashbrown's fast hash (looked up once or twice per
/// request) is enough: a name comes from the configuration or from a token the issuer signed,
/// never from an anonymous request. Addresses keep std's.
#[derive(Default)]
struct ClientMap {
    by_name: hashbrown::HashMap<Arc<str>, Arc<ClientCounters>>,
    /// Size at which idle clients are swept next (0: [`SWEEP_AT`]).
    sweep_at: usize,
}

impl ClientMap {
    /// Forgets clients that hold nothing a limit or the admin API still needs (see
    /// [`ClientCounters::idle`]), once the map reaches its sweep size, so that JWT subjects
    /// seen once do not pile up. The next sweep waits until the map has doubled, so a map of
    /// busy clients is not scanned on every insert.
    fn sweep_if_due(&mut self, now: Instant, wall: SystemTime) {
        if self.by_name.len() < self.sweep_at.max(SWEEP_AT) {
            return;
        }
        // A count of 1: no request holds its permit (or anything else) now.
        self.by_name.retain(|_, c| Arc::strong_count(c) > 1 || !c.idle(now, wall));
        self.sweep_at = (self.by_name.len() * 2).max(SWEEP_AT);
    }
}

/// Addresses (and clients) tracked before idle ones are swept.
const SWEEP_AT: usize = 100_000;

impl MemoryLimits {
    pub fn new() -> Self {
        Self::default()
    }

    fn counters(&self, client: &str) -> Arc<ClientCounters> {
        let mut m = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.by_name.get(client) {
            return c.clone();
        }
        m.sweep_if_due(Instant::now(), crate::clock::coarse_wall());
        let c = Arc::new(ClientCounters::default());
        m.by_name.insert(Arc::from(client), c.clone());
        c
    }
}

impl Limits for MemoryLimits {
    fn check_address(&self, ip: IpAddr, per_ip_rpm: Option<u32>, global_rpm: Option<u32>, now: Instant) -> Result<(), Refusal> {
        if let Some(limit) = global_rpm {
            let mut g = self.global.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(wait) = g.get_or_insert_with(|| Gcra::new(now)).admit(limit, now) {
                return Err(Refusal::rate("global_rate", format!("the proxy's global limit of {limit} requests per minute is reached"), wait));
            }
        }
        if let Some(limit) = per_ip_rpm {
            let mut m = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
            if m.len() >= SWEEP_AT {
                m.retain(|_, g| !g.idle(now));
            }
            if let Err(wait) = m.entry(ip).or_insert_with(|| Gcra::new(now)).admit(limit, now) {
                return Err(Refusal::rate("ip_rate", format!("the limit of {limit} requests per minute per address is reached"), wait));
            }
        }
        Ok(())
    }

    fn admit(&self, client: &Client, pool_name: PoolName<'_>, now: Instant) -> Result<ClientPermit, Refusal> {
        let p = &client.policy;
        // Limits known only from a token are kept for the admin API; this costs a lock per
        // request of such a client, small beside the JWT check it already went through.
        let from_token = client.policy_source != PolicySource::Entry;
        if p.is_unlimited() && !from_token {
            return Ok(ClientPermit { counters: None });
        }
        let c = self.counters(&client.name);
        let wall = crate::clock::coarse_wall();
        if from_token {
            note_policy(&mut c.token_policies.lock().unwrap_or_else(|p| p.into_inner()), p, client.policy_source, pool_name, wall);
            if p.is_unlimited() {
                return Ok(ClientPermit { counters: None });
            }
        }
        if let Some(limit) = p.tpd {
            let used = c.day.lock().unwrap_or_else(|p| p.into_inner()).used(wall);
            if used >= limit {
                return Err(Refusal::rate(
                    "client_tpd",
                    format!("client {} has used its {limit} tokens for today (UTC)", client.name),
                    Duration::from_secs(secs_to_next_day(wall)),
                ));
            }
        }
        if let Some(limit) = p.tpm {
            let mut m = c.minute.lock().unwrap_or_else(|p| p.into_inner());
            if m.used(wall) >= limit {
                let wait = m.wait_below(limit, wall);
                return Err(Refusal::rate("client_tpm", format!("client {} has used its {limit} tokens per minute", client.name), Duration::from_secs(wait)));
            }
        }
        if let Some(limit) = p.concurrency {
            let now_in = c.inflight.fetch_add(1, Ordering::AcqRel);
            if now_in >= limit {
                c.inflight.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::rate(
                    "client_concurrency",
                    format!("client {} already has {limit} requests in flight", client.name),
                    Duration::from_secs(1),
                ));
            }
        } else {
            c.inflight.fetch_add(1, Ordering::AcqRel);
        }
        let permit = ClientPermit { counters: Some(c.clone()) };
        if let Some(limit) = p.rpm {
            if let Err(wait) = c.requests.lock().unwrap_or_else(|p| p.into_inner()).admit(limit, now) {
                return Err(Refusal::rate("client_rpm", format!("client {} has made its {limit} requests per minute", client.name), wait));
            }
        }
        Ok(permit)
    }

    fn record_tokens(&self, client: &str, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let c = self.counters(client);
        let now = crate::clock::coarse_wall();
        c.minute.lock().unwrap_or_else(|p| p.into_inner()).add(tokens, now);
        c.day.lock().unwrap_or_else(|p| p.into_inner()).add(tokens, now);
    }

    fn seed_day(&self, client: &str, day: u64, tokens: u64) {
        if day == utc_day(crate::clock::coarse_wall()) {
            self.counters(client).day.lock().unwrap_or_else(|p| p.into_inner()).seed(day, tokens);
        }
    }

    fn usage(&self, client: &str, policy: &Policy) -> ClientUsage {
        // What `admit` counts: in-flight requests for any limited client, requests only under an
        // rpm limit. A count kept before a policy change is not shown once it stops being kept.
        let counts_inflight = !policy.is_unlimited();
        let counts_requests = policy.rpm.is_some();
        let Some(c) = self.clients.lock().unwrap_or_else(|p| p.into_inner()).by_name.get(client).cloned() else {
            return ClientUsage { inflight: counts_inflight.then_some(0), requests_last_minute: counts_requests.then_some(0), ..ClientUsage::default() };
        };
        let now = crate::clock::coarse_wall();
        let requests_last_minute = counts_requests.then(|| c.requests.lock().unwrap_or_else(|p| p.into_inner()).used(Instant::now()));
        let tokens_last_minute = c.minute.lock().unwrap_or_else(|p| p.into_inner()).used(now);
        let tokens_today = c.day.lock().unwrap_or_else(|p| p.into_inner()).used(now);
        ClientUsage { inflight: counts_inflight.then(|| c.inflight.load(Ordering::Relaxed)), requests_last_minute, tokens_last_minute, tokens_today }
    }

    fn token_clients(&self) -> Vec<TokenClient> {
        let all: Vec<(Arc<str>, Arc<ClientCounters>)> =
            self.clients.lock().unwrap_or_else(|p| p.into_inner()).by_name.iter().map(|(n, c)| (n.clone(), c.clone())).collect();
        let now = crate::clock::coarse_wall();
        let mut out: Vec<TokenClient> = all
            .into_iter()
            .filter_map(|(name, c)| {
                let policies: Vec<SeenPolicy> =
                    c.token_policies.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|s| remembered(s, now)).cloned().collect();
                (!policies.is_empty()).then_some(TokenClient { name, policies })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn client(policy: Policy) -> Client {
        Client { name: Arc::from("c"), policy: Arc::new(policy), policy_source: PolicySource::Entry }
    }

    fn token_client(policy: Policy, source: PolicySource) -> Client {
        Client { name: Arc::from("t"), policy: Arc::new(policy), policy_source: source }
    }

    /// The pools of the configuration the tests' requests run on.
    fn pool(i: usize) -> Option<Arc<str>> {
        ["main", "batch"].get(i).map(|n| Arc::from(*n))
    }

    #[test]
    fn policies_from_tokens_are_kept_latest_first_and_entries_are_not() {
        let l = MemoryLimits::new();
        let now = Instant::now();
        let rpm = |n| Policy { rpm: Some(n), ..Default::default() };
        drop(l.admit(&client(rpm(5)), &pool, now));
        assert!(l.token_clients().is_empty(), "a configured client's limits are in the config");
        drop(l.admit(&token_client(rpm(5), PolicySource::TokenClaim), &pool, now));
        drop(l.admit(&token_client(Policy::default(), PolicySource::JwtDefault), &pool, now));
        drop(l.admit(&token_client(rpm(5), PolicySource::TokenClaim), &pool, now));
        let seen = l.token_clients();
        assert_eq!(seen.len(), 1);
        let kept: Vec<(Option<u32>, PolicySource)> = seen[0].policies.iter().map(|s| (s.policy.rpm, s.source)).collect();
        assert_eq!(kept, [(Some(5), PolicySource::TokenClaim), (None, PolicySource::JwtDefault)], "distinct policies, the latest first");
        for n in 0..20 {
            drop(l.admit(&token_client(rpm(100 + n), PolicySource::TokenClaim), &pool, now));
        }
        assert_eq!(l.token_clients()[0].policies.len(), TOKEN_POLICIES_KEPT);
    }

    #[test]
    fn clients_that_hold_nothing_are_forgotten_once_the_map_is_large() {
        let l = MemoryLimits::new();
        let now = Instant::now();
        let named = |name: String, policy: Policy| Client { name: Arc::from(name), policy: Arc::new(policy), policy_source: PolicySource::Entry };
        let limited = Policy { concurrency: Some(5), ..Default::default() };
        // JWT subjects seen once: in flight, then done, with no tokens.
        for i in 0..SWEEP_AT - 3 {
            drop(l.admit(&named(format!("sub-{i}"), limited.clone()), &pool, now));
        }
        let busy = l.admit(&named("busy".into(), limited.clone()), &pool, now).expect("admitted");
        l.record_tokens("spent-today", 10);
        drop(l.admit(&named("recent".into(), Policy { rpm: Some(10), ..Default::default() }), &pool, now));
        let len = || l.clients.lock().unwrap().by_name.len();
        assert_eq!(len(), SWEEP_AT);
        drop(l.admit(&named("new".into(), limited.clone()), &pool, now));
        let kept: std::collections::BTreeSet<String> = l.clients.lock().unwrap().by_name.keys().map(|k| k.to_string()).collect();
        assert_eq!(kept, ["busy", "new", "recent", "spent-today"].map(String::from).into());
        assert_eq!(l.usage("spent-today", &Policy::default()).tokens_today, 10, "a day's tokens outlive the sweep");
        // The next sweep waits for the map to double from what was kept (at least SWEEP_AT).
        assert_eq!(l.clients.lock().unwrap().sweep_at, SWEEP_AT);
        drop(busy);
    }

    #[test]
    fn policies_not_seen_for_a_day_are_forgotten() {
        let now = SystemTime::now();
        let mut seen = Vec::new();
        let old = Arc::new(Policy { rpm: Some(1), ..Default::default() });
        note_policy(&mut seen, &old, PolicySource::TokenClaim, &pool, now - TOKEN_POLICY_MEMORY - Duration::from_secs(1));
        note_policy(&mut seen, &Arc::new(Policy::default()), PolicySource::JwtDefault, &pool, now);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].source, PolicySource::JwtDefault);
    }

    #[test]
    fn policies_keep_the_pool_names_they_were_enforced_with() {
        let now = SystemTime::now();
        let mut seen = Vec::new();
        let batch_only = |i| Arc::new(Policy { rpm: Some(5), pools: vec![i], ..Default::default() });
        note_policy(&mut seen, &batch_only(1), PolicySource::TokenClaim, &pool, now);
        note_policy(&mut seen, &Arc::new(Policy::default()), PolicySource::JwtDefault, &pool, now);
        let names = |s: &SeenPolicy| s.pools.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&seen[0]), ["main"], "no pools: the first pool, by name");
        assert_eq!(names(&seen[1]), ["batch"]);
        // A reload swaps the pools: the same token now names "batch" at index 0. It is the
        // policy seen before (one entry, moved first), still naming "batch".
        let swapped = |i: usize| ["batch", "main"].get(i).map(|n| Arc::from(*n));
        note_policy(&mut seen, &batch_only(0), PolicySource::TokenClaim, &swapped, now);
        assert_eq!(seen.len(), 2);
        assert_eq!((names(&seen[0]), seen[0].source), (vec!["batch".to_owned()], PolicySource::TokenClaim));
        // A policy of the same limits that names another pool is another policy.
        note_policy(&mut seen, &batch_only(1), PolicySource::TokenClaim, &swapped, now);
        assert_eq!(seen.len(), 3);
        assert_eq!(names(&seen[0]), ["main"]);
    }

    #[test]
    fn concurrency_is_released_when_requests_end() {
        let l = MemoryLimits::new();
        let c = client(Policy { concurrency: Some(2), ..Default::default() });
        let now = Instant::now();
        let a = l.admit(&c, &pool, now).unwrap();
        let _b = l.admit(&c, &pool, now).unwrap();
        assert_eq!(l.admit(&c, &pool, now).err().unwrap().reason, "client_concurrency");
        drop(a);
        let _c = l.admit(&c, &pool, now).expect("a slot is free again");
        assert_eq!(l.usage("c", &c.policy).inflight, Some(2));
    }

    #[test]
    fn usage_leaves_out_what_admit_does_not_count() {
        let l = MemoryLimits::new();
        let now = Instant::now();
        let free = client(Policy::default());
        let _f = l.admit(&free, &pool, now).unwrap();
        assert_eq!(l.usage("c", &free.policy), ClientUsage { inflight: None, requests_last_minute: None, ..Default::default() });
        // A token limit keeps the in-flight count, not the request log.
        let tpm = client(Policy { tpm: Some(1000), ..Default::default() });
        let _t = l.admit(&tpm, &pool, now).unwrap();
        let u = l.usage("c", &tpm.policy);
        assert_eq!((u.inflight, u.requests_last_minute), (Some(1), None));
        let rpm = Policy { rpm: Some(10), ..Default::default() };
        assert_eq!(l.usage("never-seen", &rpm).requests_last_minute, Some(0));
    }

    #[test]
    fn token_limits_refuse_the_next_request_once_spent() {
        let l = MemoryLimits::new();
        let c = client(Policy { tpm: Some(100), tpd: Some(1000), ..Default::default() });
        let now = Instant::now();
        drop(l.admit(&c, &pool, now).unwrap());
        l.record_tokens("c", 100);
        let r = l.admit(&c, &pool, now).err().unwrap();
        assert_eq!((r.status, r.reason), (429, "client_tpm"));
        assert!(r.retry_after.unwrap() <= 60);
        l.seed_day("c", utc_day(SystemTime::now()), 5000);
        assert_eq!(l.admit(&c, &pool, now).err().unwrap().reason, "client_tpd");
    }

    #[test]
    fn addresses_and_the_whole_proxy_have_rates() {
        let l = MemoryLimits::new();
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check_address(a, Some(3), None, now).is_ok());
        }
        assert_eq!(l.check_address(a, Some(3), None, now).err().unwrap().reason, "ip_rate");
        assert!(l.check_address(b, Some(3), None, now).is_ok(), "another address has its own budget");
        assert!(l.check_address(b, None, Some(1), now).is_ok());
        assert_eq!(l.check_address(a, None, Some(1), now).err().unwrap().reason, "global_rate");
    }
}
