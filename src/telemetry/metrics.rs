//! Prometheus metrics. Per-request metrics are updated by the telemetry thread from access
//! records (never on the data plane's threads); state gauges (keys, in-flight) and per-key
//! counters are read at scrape time. Names follow Prometheus conventions; labels name keys,
//! never their secrets. Per-key series exist only for pools of a size Prometheus handles
//! well ([`PER_KEY_SERIES_MAX`]); beyond that the per-pool aggregates and the admin API remain.

use super::access_log::AccessRecord;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::collections::HashSet;
use std::sync::Mutex;

/// Distinct model label values kept; more become "other" (model names come from clients).
const MAX_MODELS: usize = 200;

/// Above this many keys in all pools, no per-key series are exported: 100,000 keys would be
/// several hundred thousand series per scrape, more than a Prometheus server wants from one
/// target, and a per-request label lookup in a map that large.
pub const PER_KEY_SERIES_MAX: usize = 1_000;

const LATENCY_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    first_byte: HistogramVec,
    attempts: IntCounterVec,
    tokens: IntCounterVec,
    pub(crate) inflight: IntGaugeVec,
    pub(crate) key_state: IntGaugeVec,
    key_attempts: IntCounterVec,
    pub(crate) keys: IntGaugeVec,
    dropped: IntCounterVec,
    unlogged: prometheus::IntCounter,
    refusals: IntCounterVec,
    refusals_seen: Mutex<std::collections::HashMap<&'static str, u64>>,
    connections: IntGaugeVec,
    streams: IntGaugeVec,
    cert_expiry: prometheus::GaugeVec,
    dropped_seen: Mutex<std::collections::HashMap<&'static str, u64>>,
    pub(crate) reloads: IntCounterVec,
    models: Mutex<HashSet<String>>,
    series: Mutex<SeriesCache>,
    /// Scrape-time series are reset and refilled: one render at a time.
    render: Mutex<()>,
}

/// One key, as a scrape sees it.
pub struct KeySample {
    pub pool: String,
    pub key: String,
    /// ("*" for the whole key, or a model; state): healthy or disabled key-wide, cooling or
    /// broken per model.
    pub states: Vec<(String, &'static str)>,
    /// Attempts since start that succeeded and that failed.
    pub successes: u64,
    pub failures: u64,
}

/// Point-in-time values read at scrape time.
pub struct ScrapeState {
    pub inflight: i64,
    /// Every key of every pool.
    pub keys: Vec<KeySample>,
    /// (sink, dropped records)
    pub dropped: Vec<(&'static str, u64)>,
    /// Successful requests that got no request-log row (above `request_log_ok_per_second`).
    pub unlogged_requests: u64,
    /// (reason, refusals since start)
    pub refusals: Vec<(&'static str, u64)>,
    pub connections: i64,
    pub streams: i64,
    /// (certificate name, seconds until it expires; negative once expired)
    pub certificates: Vec<(String, f64)>,
}

const STATUS_CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "429", "4xx", "client_closed", "5xx"];

fn status_class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        429 => 3,
        400..=498 => 4,
        499 => 5,
        _ => 6,
    }
}

/// The series that one (client, model) pair's requests update. Looking them up by label
/// values costs a hash of every label and a lock per series and request; the telemetry thread
/// sees the same few pairs over and over, so it keeps them. (Per-request series are never
/// removed from the registry, so a kept handle always counts.)
struct PairSeries {
    /// By [`STATUS_CLASSES`] index.
    requests: [prometheus::IntCounter; 7],
    duration: prometheus::Histogram,
    first_byte: prometheus::Histogram,
    tokens_in: prometheus::IntCounter,
    tokens_out: prometheus::IntCounter,
}

/// Series handles kept by [`Metrics::observe`].
#[derive(Default)]
struct SeriesCache {
    /// client -> model (as the client named it) -> series
    pairs: hashbrown::HashMap<String, hashbrown::HashMap<String, PairSeries>>,
    /// Outcome labels are a handful of static strings: hashbrown's hash rather than SipHash.
    attempts: hashbrown::HashMap<&'static str, prometheus::IntCounter>,
}

/// Clients kept in the cache before it starts over (client names come from the config, but
/// reloads can rename them without end).
const SERIES_CACHE_MAX: usize = 10_000;

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("gemini_proxy".into()), None).expect("valid registry prefix");
        let requests =
            IntCounterVec::new(Opts::new("requests_total", "Requests answered, by status class, model and client"), &["status_class", "model", "client"])
                .expect("valid metric");
        let duration = HistogramVec::new(HistogramOpts::new("request_duration_seconds", "Total request latency").buckets(LATENCY_BUCKETS.to_vec()), &["model"])
            .expect("valid metric");
        let first_byte = HistogramVec::new(
            HistogramOpts::new("first_byte_seconds", "Time until the response head reached the client").buckets(LATENCY_BUCKETS.to_vec()),
            &["model"],
        )
        .expect("valid metric");
        let attempts = IntCounterVec::new(Opts::new("upstream_attempts_total", "Upstream attempts by outcome"), &["outcome"]).expect("valid metric");
        let key_attempts = IntCounterVec::new(
            Opts::new("key_attempts_total", "Upstream attempts per key since start, by result (success, failure); only for pools of up to 1,000 keys"),
            &["pool", "key", "result"],
        )
        .expect("valid metric");
        let tokens =
            IntCounterVec::new(Opts::new("tokens_total", "Tokens consumed, by direction (input, output), model and client"), &["direction", "model", "client"])
                .expect("valid metric");
        let inflight = IntGaugeVec::new(Opts::new("inflight_requests", "Requests being handled"), &[]).expect("valid metric");
        let key_state = IntGaugeVec::new(
            Opts::new("key_state", "1 for the current state of each key per model (model \"*\": all models)"),
            &["pool", "key", "model", "state"],
        )
        .expect("valid metric");
        let keys = IntGaugeVec::new(Opts::new("keys", "Keys per pool and state"), &["pool", "state"]).expect("valid metric");
        let dropped =
            IntCounterVec::new(Opts::new("dropped_records_total", "Records dropped because a writer (access log, state store) could not keep up"), &["sink"])
                .expect("valid metric");
        // Kept by the store's writer; brought up to its value at every scrape.
        let unlogged = prometheus::IntCounter::with_opts(Opts::new(
            "request_log_unlogged_total",
            "Successful requests counted in usage but given no request-log row (over [state] request_log_ok_per_second)",
        ))
        .expect("valid metric");
        registry.register(Box::new(unlogged.clone())).expect("unique metric");
        let refusals = IntCounterVec::new(Opts::new("refusals_total", "Requests and connections refused by access rules and limits, by reason"), &["reason"])
            .expect("valid metric");
        let connections = IntGaugeVec::new(Opts::new("open_connections", "Client connections open"), &[]).expect("valid metric");
        let streams = IntGaugeVec::new(Opts::new("open_streams", "Streamed responses in flight"), &[]).expect("valid metric");
        let cert_expiry = prometheus::GaugeVec::new(
            Opts::new("certificate_expiry_seconds", "Seconds until each served certificate expires (negative once expired)"),
            &["name"],
        )
        .expect("valid metric");
        registry.register(Box::new(cert_expiry.clone())).expect("unique metric");
        let reloads = IntCounterVec::new(Opts::new("config_reloads_total", "Configuration reloads by result"), &["result"]).expect("valid metric");
        for c in [&requests, &attempts, &key_attempts, &tokens, &reloads, &dropped, &refusals] {
            registry.register(Box::new((*c).clone())).expect("unique metric");
        }
        for h in [&duration, &first_byte] {
            registry.register(Box::new((*h).clone())).expect("unique metric");
        }
        for g in [&inflight, &key_state, &keys, &connections, &streams] {
            registry.register(Box::new((*g).clone())).expect("unique metric");
        }
        let build = IntGaugeVec::new(Opts::new("build_info", "Build information"), &["version"]).expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build)).expect("unique metric");
        Metrics {
            registry,
            requests,
            duration,
            first_byte,
            attempts,
            tokens,
            inflight,
            key_state,
            key_attempts,
            keys,
            dropped,
            unlogged,
            dropped_seen: Mutex::new(Default::default()),
            refusals,
            refusals_seen: Mutex::new(Default::default()),
            connections,
            streams,
            cert_expiry,
            reloads,
            models: Mutex::new(HashSet::new()),
            series: Mutex::new(SeriesCache::default()),
            render: Mutex::new(()),
        }
    }

    fn model_label(&self, model: Option<&str>) -> String {
        let Some(m) = model.filter(|m| !m.is_empty()) else { return "none".into() };
        let mut seen = self.models.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(m) {
            return m.to_owned();
        }
        if seen.len() < MAX_MODELS {
            seen.insert(m.to_owned());
            return m.to_owned();
        }
        "other".into()
    }

    /// Accounts one finished request.
    pub fn observe(&self, r: &AccessRecord) {
        let client = r.client.as_deref().unwrap_or("none");
        let model = r.model.as_deref().unwrap_or("");
        let mut cache = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if cache.pairs.len() >= SERIES_CACHE_MAX {
            cache.pairs.clear();
        }
        let by_model = cache.pairs.entry_ref(client).or_default();
        let series = match by_model.get_mut(model) {
            Some(s) => s,
            None => {
                let label = self.model_label(r.model.as_deref());
                by_model.entry_ref(model).or_insert_with(|| PairSeries {
                    requests: std::array::from_fn(|i| self.requests.with_label_values(&[STATUS_CLASSES[i], &label, client])),
                    duration: self.duration.with_label_values(&[&label]),
                    first_byte: self.first_byte.with_label_values(&[&label]),
                    tokens_in: self.tokens.with_label_values(&["input", &label, client]),
                    tokens_out: self.tokens.with_label_values(&["output", &label, client]),
                })
            }
        };
        series.requests[status_class_index(r.status)].inc();
        series.duration.observe(r.total_ms / 1000.0);
        if let Some(fb) = r.first_byte_ms {
            series.first_byte.observe(fb / 1000.0);
        }
        if r.tokens_in > 0 {
            series.tokens_in.inc_by(r.tokens_in);
        }
        if r.tokens_out > 0 {
            series.tokens_out.inc_by(r.tokens_out);
        }
        for a in &r.attempts {
            match cache.attempts.get(a.outcome) {
                Some(c) => c.inc(),
                None => {
                    let c = self.attempts.with_label_values(&[a.outcome]);
                    c.inc();
                    cache.attempts.insert(a.outcome, c);
                }
            }
        }
    }

    pub fn reload(&self, ok: bool) {
        self.reloads.with_label_values(&[if ok { "ok" } else { "rejected" }]).inc();
    }

    /// The text exposition, with scrape-time gauges refreshed from `state`.
    pub fn render(&self, state: &ScrapeState) -> String {
        let _one_at_a_time = self.render.lock().unwrap_or_else(|p| p.into_inner());
        self.inflight.with_label_values(&[] as &[&str]).set(state.inflight);
        self.key_state.reset();
        self.key_attempts.reset();
        self.keys.reset();
        let per_key = state.keys.len() <= PER_KEY_SERIES_MAX;
        let mut per_pool: std::collections::BTreeMap<(&str, &str), i64> = Default::default();
        for k in &state.keys {
            if per_key {
                for (model, st) in &k.states {
                    self.key_state.with_label_values(&[k.pool.as_str(), k.key.as_str(), model.as_str(), st]).set(1);
                }
                // Absolute values, refilled on every scrape: they only ever grow.
                self.key_attempts.with_label_values(&[k.pool.as_str(), k.key.as_str(), "success"]).inc_by(k.successes);
                self.key_attempts.with_label_values(&[k.pool.as_str(), k.key.as_str(), "failure"]).inc_by(k.failures);
            }
            // Each key counts once per state: healthy or disabled key-wide, and cooling or
            // broken when at least one model restricts it.
            let mut counted: Vec<&str> = Vec::with_capacity(2);
            for (_, st) in &k.states {
                if !counted.contains(st) {
                    counted.push(st);
                    *per_pool.entry((k.pool.as_str(), st)).or_default() += 1;
                }
            }
        }
        for ((pool, st), n) in per_pool {
            self.keys.with_label_values(&[pool, st]).set(n);
        }
        advance(&self.dropped, &self.dropped_seen, &state.dropped);
        self.unlogged.inc_by(state.unlogged_requests.saturating_sub(self.unlogged.get()));
        advance(&self.refusals, &self.refusals_seen, &state.refusals);
        self.connections.with_label_values(&[] as &[&str]).set(state.connections);
        self.streams.with_label_values(&[] as &[&str]).set(state.streams);
        self.cert_expiry.reset();
        for (name, left) in &state.certificates {
            self.cert_expiry.with_label_values(&[name]).set(*left);
        }
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Brings counters kept elsewhere (atomics) into a Prometheus counter by adding what is new.
fn advance(counter: &IntCounterVec, seen: &Mutex<std::collections::HashMap<&'static str, u64>>, now: &[(&'static str, u64)]) {
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    for (label, n) in now {
        let last = seen.entry(label).or_insert(0);
        // Touched even at zero, so that the series exists from the first scrape: an alert on
        // `increase(...) > 0` cannot fire on a series that appears with its first drop.
        let series = counter.with_label_values(&[label]);
        if *n > *last {
            series.inc_by(*n - *last);
            *last = *n;
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(keys: usize) -> String {
        let keys = (0..keys)
            .map(|i| KeySample {
                pool: "p".into(),
                key: format!("k{i}"),
                states: if i == 0 { vec![("*".into(), "healthy"), ("m".into(), "cooling")] } else { vec![("*".into(), "healthy")] },
                successes: 5,
                failures: 1,
            })
            .collect();
        let state =
            ScrapeState { inflight: 0, keys, dropped: vec![], unlogged_requests: 7, refusals: vec![], connections: 0, streams: 0, certificates: vec![] };
        Metrics::new().render(&state)
    }

    #[test]
    fn per_key_series_only_for_pools_prometheus_handles_well() {
        let small = scrape(3);
        assert!(small.contains(r#"gemini_proxy_key_attempts_total{key="k2",pool="p",result="success"} 5"#), "{small}");
        assert!(small.contains(r#"gemini_proxy_key_state{key="k0",model="m",pool="p",state="cooling"} 1"#));
        assert!(small.contains(r#"gemini_proxy_keys{pool="p",state="healthy"} 3"#));
        assert!(small.contains(r#"gemini_proxy_keys{pool="p",state="cooling"} 1"#));
        assert!(small.contains("gemini_proxy_request_log_unlogged_total 7"));

        let big = scrape(PER_KEY_SERIES_MAX + 1);
        assert!(!big.contains("gemini_proxy_key_attempts_total{") && !big.contains("gemini_proxy_key_state{"));
        assert!(big.contains(&format!(r#"gemini_proxy_keys{{pool="p",state="healthy"}} {}"#, PER_KEY_SERIES_MAX + 1)), "the aggregates stay");
    }
}
