//! One request, from head to access-log line: authenticate, read the body, choose a key (or the
//! key a resource is pinned to), send, classify the answer, retry on another key while nothing
//! has reached the client, then relay.

use super::downstream::{AuthCache, BodyError, Downstream};
use super::hygiene::finish_upstream_head;
use super::relay::{self, Relay};
use super::underway::{self, Underway};
use super::{respond, Runtime, Shared};
use crate::auth::{self, Client};
use crate::config::Policy;
use crate::deadline::{self, Watch};
use crate::gemini::api_key;
use crate::gemini::error::{ApiError, UpstreamError};
use crate::gemini::route::{self, Action, Route, Surface};
use crate::gemini::usage::UsageScanner;
use crate::http1::{Framing, RequestHead, ResponseHead};
use crate::limits::{ip, Refusal};
use crate::pool::health::secs_until;
use crate::pool::outcome::{classify, FailureKind, Outcome};
use crate::pool::store::UploadSession;
use crate::pool::{Exhausted, Lease, Pool};
use crate::telemetry::access_log::{AccessRecord, Attempts};
use crate::upstream::{UpstreamConn, UpstreamFailure};
use crate::wire::PeerWatch;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest upstream error body read for classification. A larger one is not relayed (see
/// `ApiError::upstream_too_large`): what was not read cannot be checked for API keys.
const ERROR_BODY_CAP: usize = 256 * 1024;

/// A request in flight: counted for graceful shutdown, and its record written when it is done,
/// or when its state is dropped unfinished (cut at the end of a shutdown's grace period).
///
/// The request's state (the future of `serve`) borrows two disjoint fields of this guard: the
/// record, which the relay updates in place as bytes go out, and `underway`, the attempt in
/// progress and the usage scanner. A cut drops that state first (it is a temporary of `handle`,
/// declared after the guard), which ends those borrows; the guard's drop then finds the record
/// and `underway` as the request left them, and completes the one from the other. Nothing is
/// copied per chunk, and a finished request pays only for setting `underway`'s fields.
struct InFlight<'a> {
    shared: &'a Shared,
    started: Instant,
    /// Taken when the record is written.
    log: Option<AccessRecord>,
    underway: Underway<'a>,
}

impl InFlight<'_> {
    /// Writes the record of a request that ended; `answered_at`: when its answer was complete.
    fn finish(&mut self, answered_at: Instant) {
        if let Some(log) = self.log.take() {
            self.record(log, answered_at);
        }
    }

    fn record(&self, mut log: AccessRecord, ended_at: Instant) {
        log.total_ms = ms(ended_at.saturating_duration_since(self.started));
        if self.shared.access_log.enabled() {
            self.shared.access_log.record(log);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(mut log) = self.log.take() {
            // The status is the answer's when its head had gone out; otherwise the client got
            // none, only a closed connection.
            if log.status == 0 {
                log.status = 503;
            }
            let cut = self.shared.cut.fired();
            log.error = Some(if cut {
                "cut at shutdown: the grace period ended before the answer was complete".to_owned()
            } else {
                "the request was abandoned before it was complete".to_owned()
            });
            let now = Instant::now();
            self.underway.record_unfinished(self.shared, &mut log, if cut { underway::CUT } else { underway::ABANDONED }, now);
            self.record(log, now);
        }
        // After the record: graceful shutdown waits for this count before the last flush.
        self.shared.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Handles one request. Returns whether the connection may carry another.
pub(super) async fn handle(shared: &Shared, rt: &Arc<Runtime>, ds: &mut Downstream, head: RequestHead) -> bool {
    shared.inflight.fetch_add(1, Ordering::AcqRel);
    let started = Instant::now();
    let mut in_flight = InFlight {
        shared,
        started,
        log: Some(AccessRecord {
            time: crate::clock::wall_at(started),
            request_id: shared.next_request_id(),
            peer: ds.peer_label.clone(),
            client: None,
            method: static_method(head.method()),
            path: logged_path(&head),
            model: None,
            status: 0,
            attempts: Attempts::new(),
            total_ms: 0.0,
            first_byte_ms: None,
            bytes_in: 0,
            bytes_out: 0,
            tokens_in: 0,
            tokens_out: 0,
            stream: false,
            error: None,
        }),
        underway: Underway::default(),
    };
    // Disjoint borrows of the guard's fields (see `InFlight`). The record is always there: it is
    // taken only by `finish` and the drop.
    let InFlight { log, underway, .. } = &mut in_flight;
    let Some(log) = log.as_mut() else { return false };
    ds.answered_at = None;
    ds.cors = super::cors::Grant::for_request(&rt.settings.access.cors, &head);
    let keep = serve(shared, rt, ds, &head, log, underway, started).await;
    // A relayed answer was timed when its last byte went out (see `deliver`).
    let answered_at = *ds.answered_at.get_or_insert_with(Instant::now);
    in_flight.finish(answered_at);
    keep && !head.wants_close()
}

/// The method as logged: the usual ones without an allocation.
fn static_method(method: &str) -> std::borrow::Cow<'static, str> {
    const COMMON: [&str; 7] = ["POST", "GET", "DELETE", "PATCH", "PUT", "HEAD", "OPTIONS"];
    match COMMON.into_iter().find(|m| *m == method) {
        Some(m) => std::borrow::Cow::Borrowed(m),
        None => std::borrow::Cow::Owned(method.to_owned()),
    }
}

pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The path as logged: query kept, `key=` removed, `upload_id=` values replaced by their
/// fingerprint (see [`route::logged_query`]).
fn logged_path(head: &RequestHead) -> String {
    match head.query() {
        Some(q) => join_query(head.path(), &route::logged_query(q)),
        None => head.path().to_owned(),
    }
}

/// The target sent upstream: the client's, without `key=`. That is the logged path (no second
/// copy) unless an upload session's id was redacted from it.
fn upstream_target<'a>(head: &RequestHead, logged: &'a str) -> std::borrow::Cow<'a, str> {
    match head.query() {
        Some(q) if route::has_upload_id(q) => std::borrow::Cow::Owned(join_query(head.path(), &route::without_key_param(q))),
        _ => std::borrow::Cow::Borrowed(logged),
    }
}

fn join_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// Writes a proxy error and records it. Returns whether the connection stays usable.
async fn fail(ds: &mut Downstream, log: &mut AccessRecord, err: ApiError, openai: bool, close: bool, head_only: bool) -> bool {
    log.status = err.code;
    log.error = Some(err.message.clone());
    let written = respond::error(ds, &err, openai, close, head_only).await;
    log.bytes_out = written.unwrap_or(0);
    written.is_some() && !close
}

/// `underway` lives as long as the configuration snapshot `rt`: it holds the key of the attempt
/// in progress.
async fn serve<'r>(
    shared: &Shared,
    rt: &'r Arc<Runtime>,
    ds: &mut Downstream,
    head: &RequestHead,
    log: &mut AccessRecord,
    underway: &mut Underway<'r>,
    started: Instant,
) -> bool {
    let settings = &rt.settings;
    let head_only = head.method() == "HEAD";
    if let Some(token) = head.path().strip_prefix("/.well-known/acme-challenge/") {
        return acme_http01(shared, ds, log, token).await;
    }
    if super::cors::is_preflight(head) {
        return match ds.cors.clone() {
            // Boxed: a rare path, kept out of every request's state (see the size test below).
            Some(grant) => Box::pin(super::cors::preflight(ds, log, &grant, head)).await,
            None => {
                shared.refusals.count("cors_origin");
                let origin = head.header_str("origin").unwrap_or("");
                let err = ApiError::new(
                    403,
                    "PERMISSION_DENIED",
                    "CORS_ORIGIN_NOT_ALLOWED",
                    format!("browser requests from origin {origin:?} are not allowed: list it in access.cors_origins"),
                );
                fail(ds, log, err, false, false, false).await
            }
        };
    }
    let Some(mut route) = route::parse(head.method(), head.path()) else {
        // The body (if any) is unread: close rather than parse it as the next request.
        let close = !matches!(head.framing(), Ok(Framing::None));
        let err = ApiError::not_found(unserved_path(head.path()));
        return fail(ds, log, err, false, close, head_only).await;
    };
    let openai = route.surface == Surface::OpenAi;
    // A model named in the path is logged from here on, so that a request refused before its
    // body is read (token, limits) still says which model it was for.
    if let Some(m) = route.model {
        log.model = Some(Arc::from(m));
    }

    // Upload chunks are authorised by their upload_id, as at Google: the Python SDK sends
    // them to the URL it was given, without a key.
    let upload_id = (route.surface == Surface::Upload).then(|| head.query().and_then(|q| route::query_param(q, route::UPLOAD_ID))).flatten();
    let upload = upload_id.and_then(|id| shared.store.upload(id));
    if upload_id.is_some() {
        route.action = Action::UploadChunk;
    }
    // Who is asking: behind a trusted proxy, X-Forwarded-For names the client.
    let access = &settings.access;
    let peer_ip = ds.peer.map(|a| a.ip());
    let trusted = peer_ip.is_some_and(|p| ip::is_trusted_proxy(access, p));
    // The header lines are gathered only where they count: behind a trusted proxy.
    let forwarded = if trusted { forwarded_for(head) } else { None };
    let client_ip = peer_ip.map(|p| ip::client_ip(access, p, forwarded.as_deref()));
    if let Some(c) = client_ip {
        // Direct peers were checked when they connected; a forwarded client is checked here.
        if trusted && !ip::permitted(access, c) {
            shared.refusals.count("ip_denied");
            return fail(ds, log, ApiError::new(403, "PERMISSION_DENIED", "ADDRESS_DENIED", "this address may not use the proxy"), openai, true, head_only)
                .await;
        }
        // The request's start stands for "now" in the checks before the body (one clock read
        // less per request; they count in seconds and minutes).
        if let Err(r) = shared.limits.check_address(c, access.per_ip_rpm, access.global_rpm, started) {
            return refuse(shared, ds, log, r, openai, head, head_only).await;
        }
    }

    let credential = auth::credential(head);
    let client: Client = match (&upload, credential) {
        // Chunks of an upload started by an authenticated client belong to it; the limits were
        // applied when it started.
        (Some(session), None) => Client {
            name: session.client.clone().unwrap_or_else(|| Arc::from(auth::ANONYMOUS)),
            policy: Arc::new(Policy::default()),
            policy_source: auth::PolicySource::Entry,
        },
        (_, cred) => match authenticate(rt, ds, cred.as_ref().map(|(c, _)| c.as_ref())) {
            Ok(c) => c,
            Err(e) => {
                shared.refusals.count(e.reason());
                let close = !matches!(head.framing(), Ok(Framing::None));
                return fail(ds, log, ApiError::unauthenticated(e.to_string()), openai, close, head_only).await;
            }
        },
    };
    log.client = Some(client.name.clone());

    // A model named in the path is checked first, so that a forbidden call spends no budget.
    if let Some(m) = route.model {
        if let Some(r) = forbidden_model(&client, m) {
            return refuse(shared, ds, log, r, openai, head, head_only).await;
        }
    }

    // The client's own limits, before its body is read: a refused client costs no memory.
    let _client_permit = if upload.is_some() && route.action == Action::UploadChunk {
        None
    } else {
        // The pools by name as this request's configuration has them: a policy known only from
        // a token is remembered with them, since its indices mean nothing after a reload.
        match shared.limits.admit(&client, &|i| rt.pools.get(i).map(|p| p.name.clone()), started) {
            Ok(p) => Some(p),
            Err(r) => return refuse(shared, ds, log, r, openai, head, head_only).await,
        }
    };

    // Body.
    let framing = match head.framing() {
        Ok(f) => f,
        Err(e) => {
            let err = ApiError::new(e.status(), if e.status() == 501 { "UNIMPLEMENTED" } else { "INVALID_ARGUMENT" }, "BAD_REQUEST", e.to_string());
            return fail(ds, log, err, openai, true, head_only).await;
        }
    };
    let limit = settings.server.body_limit;
    if let Framing::Length(n) = framing {
        if n > limit as u64 {
            return fail(ds, log, ApiError::body_too_large(limit), openai, true, head_only).await;
        }
    }
    if head.expects_continue() && framing != Framing::None && !respond::continue_100(ds).await {
        return false;
    }
    let (body, _permit) = match ds.read_body(framing, limit, settings.server.body_timeout, &shared.body_budget).await {
        Ok(b) => b,
        Err(e) => {
            let err = match &e {
                BodyError::TooLarge(l) => ApiError::body_too_large(*l),
                BodyError::Busy => ApiError::new(503, "UNAVAILABLE", "PROXY_BUSY", e.to_string()).with_retry_after(1),
                BodyError::TimedOut => ApiError::new(408, "DEADLINE_EXCEEDED", "BODY_TIMEOUT", e.to_string()),
                BodyError::Chunked(_) => ApiError::bad_request(e.to_string()),
                BodyError::Closed | BodyError::Io(_) => {
                    log.status = 499;
                    log.error = Some(e.to_string());
                    return false;
                }
            };
            return fail(ds, log, err, openai, true, head_only).await;
        }
    };
    log.bytes_in = body.len() as u64;

    // A model the path names was logged already; the OpenAI surface names it in the body.
    if log.model.is_none() {
        log.model = model_in_body(&route, &body);
    }
    let model = log.model.clone();
    let model_key = model.as_deref().unwrap_or("");
    if let Some(r) = model.as_deref().and_then(|m| forbidden_model(&client, m)) {
        return refuse(shared, ds, log, r, openai, head, head_only).await;
    }
    let requested_pool = match head.header_str(POOL_HEADER) {
        None => None,
        Some(name) => match rt.pools.iter().position(|p| &*p.name == name.trim()) {
            Some(i) => Some(i),
            None => return fail(ds, log, ApiError::bad_request(format!("no pool named {:?}", name.trim())), openai, false, head_only).await,
        },
    };
    let pool_index = match client.policy.pool(requested_pool) {
        Ok(i) => i,
        Err(i) => {
            shared.refusals.count("pool_forbidden");
            let err = ApiError::new(
                403,
                "PERMISSION_DENIED",
                "POOL_NOT_ALLOWED",
                format!("client {} may not use pool {}", client.name, rt.pools.get(i).map(|p| &*p.name).unwrap_or("?")),
            );
            return fail(ds, log, err, openai, false, head_only).await;
        }
    };
    let pool = match rt.pools.get(pool_index) {
        Some(p) => p,
        None => return fail(ds, log, ApiError::new(503, "UNAVAILABLE", "NO_POOL", "no key pool is configured"), openai, false, head_only).await,
    };
    // Streams hold a connection for minutes: their number is bounded apart.
    let _stream_slot = if is_stream(&route, &body) {
        match shared.streams.acquire(access.max_streams) {
            Some(slot) => Some(slot),
            None => {
                let r = Refusal::rate(
                    "max_streams",
                    format!("the proxy is serving its maximum of {} streams", access.max_streams.unwrap_or(0)),
                    Duration::from_secs(1),
                );
                return refuse(shared, ds, log, r, openai, head, head_only).await;
            }
        }
    } else {
        None
    };

    // A resource (file, cache, upload...) lives in the project of the key that created it.
    let pinned = pinned_key(shared, pool, &route, upload.as_ref(), &body);

    // The upstream head is the same for every attempt but for the key. Its target is the
    // client's, without its `key=` parameter.
    // Room for small bodies too: they are sent in the same write.
    let mut upstream_head = Vec::with_capacity(640 + body.len().min(16 * 1024));
    rt.hygiene.upstream_head_prefix(head, &settings.upstream, &upstream_target(head, &log.path), &mut upstream_head);
    let prefix_len = upstream_head.len();

    let policy = &settings.key_health;
    let up = &settings.upstream;
    let max_attempts = if pinned.is_some() { 1 } else { up.max_attempts };
    // Keys tried so far; the usual few without an allocation.
    let mut tried: smallvec::SmallVec<[u32; 8]> = smallvec::SmallVec::new();
    let mut last_failure: Option<(UpstreamFailure, Lease)> = None;
    let mut held: Option<Held> = None;

    for attempt_no in 0..max_attempts {
        // A client that left during the last attempt's last second (or a retry that follows at
        // once, after a 429) starts no attempt on another key: one poll, on retries only.
        if attempt_no > 0 && ds.peer_watch.gone() {
            return client_left(log, underway, Instant::now());
        }
        let attempt_started = Instant::now();
        let lease = match pinned {
            Some(i) => pool.lease(i),
            None => match pool.select(model_key, &tried, attempt_started) {
                Ok(l) => l,
                Err(ex) => {
                    if let Some(h) = held.take() {
                        return deliver(shared, rt, ds, head, &route, h, log, underway, (started, Instant::now()), pool, Some(&ex)).await;
                    }
                    // The last attempt could not reach the upstream at all: that is the news
                    // (502/504), more than which keys are left.
                    if let Some((f, _)) = &last_failure {
                        return fail(ds, log, network_error(f), openai, false, head_only).await;
                    }
                    return fail(ds, log, ex.to_api_error(model_key, Instant::now(), policy), openai, false, head_only).await;
                }
            },
        };
        tried.push(lease.index);
        let key = pool.key(lease.index);
        underway.begin(key, attempt_started);
        upstream_head.truncate(prefix_len);
        finish_upstream_head(&mut upstream_head, route.surface, key.secret.expose(), body.len(), head.method());

        let answer = exchange(shared, rt, &mut upstream_head, &body, &mut ds.upstream_timer, &ds.peer_watch).await;
        let now = Instant::now();
        match answer {
            // Nothing to hold against the key: the upstream connection was dropped with the
            // attempt, and the permits and counts go as the request ends.
            Err(UpstreamFailure::ClientGone) => return client_left(log, underway, now),
            Err(failure) => {
                let kind = match failure {
                    UpstreamFailure::Connect(_) => FailureKind::Connect,
                    UpstreamFailure::Timeout(_) => FailureKind::Timeout,
                    // (ClientGone ended the request above.)
                    UpstreamFailure::Broken(_) | UpstreamFailure::Protocol(_) | UpstreamFailure::ClientGone => FailureKind::Broken,
                };
                let outcome = Outcome::Failure(kind);
                pool.report(lease.index, model_key, &outcome, None, &failure.to_string(), policy, now);
                log.attempts.extend(underway.settle(outcome.label(), now));
                tracing::debug!(request_id = log.request_id, key = %key.name, error = %failure, "upstream attempt failed");
                held = None;
                last_failure = Some((failure, lease));
                if attempt_no + 1 < max_attempts && pause(backoff(up.retry_backoff, attempt_no), &mut ds.upstream_timer, &ds.peer_watch).await.is_err() {
                    return client_left(log, underway, Instant::now());
                }
            }
            Ok((mut conn, res)) => {
                let status = res.status;
                underway.answered(status);
                // Error answers are read whole (they are small) to learn what they mean, and
                // every one of them, not only those that say something about the key: any error
                // message may quote the key it was sent with (checked before it is relayed).
                let classified = if status >= 400 {
                    match relay::buffer_body(&mut conn, &res, head.method(), up.idle_timeout, ERROR_BODY_CAP, &mut ds.upstream_timer, Some(&ds.peer_watch))
                        .await
                    {
                        Ok(Some(decoded)) => {
                            let parsed = UpstreamError::parse(&decoded);
                            let message = parsed.as_ref().map(|e| e.message.clone()).unwrap_or_default();
                            // An answer that quotes a key goes to the client redacted (`deliver`).
                            let withheld = api_key::contains_key(&decoded).then(|| Box::new(ApiError::upstream_redacted(status, parsed.as_ref())));
                            (classify(status, parsed.as_ref(), policy, now), message, withheld)
                        }
                        // Too large to read whole, so never relayed (it could quote a key past
                        // what was read); the key is judged by the status alone, as for any
                        // error body that is not Gemini's.
                        Ok(None) => {
                            let err = ApiError::upstream_too_large(status, ERROR_BODY_CAP);
                            (classify(status, None, policy, now), err.message.clone(), Some(Box::new(err)))
                        }
                        Err(UpstreamFailure::ClientGone) => return client_left(log, underway, Instant::now()),
                        Err(failure) => (Outcome::Failure(FailureKind::Broken), failure.to_string(), None),
                    }
                } else {
                    (classify(status, None, policy, now), String::new(), None)
                };
                let (outcome, message, withheld) = classified;
                if outcome.retry_elsewhere() {
                    pool.report(lease.index, model_key, &outcome, Some(status), &message, policy, now);
                    log.attempts.extend(underway.settle(outcome.label(), now));
                    tracing::debug!(request_id = log.request_id, key = %key.name, status, outcome = outcome.label(), "retrying on another key");
                    let is_failure = matches!(outcome, Outcome::Failure(_));
                    // Keep this answer in case no other key can do better.
                    held = Some(Held { conn, res, lease, outcome, withheld, already_reported: true });
                    last_failure = None;
                    if attempt_no + 1 < max_attempts {
                        if is_failure && pause(backoff(up.retry_backoff, attempt_no), &mut ds.upstream_timer, &ds.peer_watch).await.is_err() {
                            return client_left(log, underway, Instant::now());
                        }
                        continue;
                    }
                    break;
                }
                let h = Held { conn, res, lease, outcome, withheld, already_reported: false };
                // Delivered at once: the answer's arrival is when the client's answer starts.
                return deliver(shared, rt, ds, head, &route, h, log, underway, (started, now), pool, None).await;
            }
        }
    }

    // Every attempt used.
    if let Some(h) = held {
        let ex = pool.select(model_key, &tried, Instant::now()).err();
        return deliver(shared, rt, ds, head, &route, h, log, underway, (started, Instant::now()), pool, ex.as_ref()).await;
    }
    let err = match &last_failure {
        Some((f, _)) => network_error(f),
        None => ApiError::bad_gateway("no upstream attempt could be made"),
    };
    fail(ds, log, err, openai, false, head_only).await
}

/// Every `X-Forwarded-For` line, in order, as one list: a proxy in front may append a line of
/// its own rather than extend the client's, and reading only the first line would take the
/// client's own claim for the address the proxy saw.
fn forwarded_for(head: &RequestHead) -> Option<std::borrow::Cow<'_, str>> {
    let mut lines = head.headers().filter(|(n, _)| n.eq_ignore_ascii_case(b"x-forwarded-for")).map(|(_, v)| std::str::from_utf8(v).unwrap_or(""));
    let first = lines.next()?;
    let Some(second) = lines.next() else { return Some(std::borrow::Cow::Borrowed(first)) };
    let mut all = format!("{first},{second}");
    for line in lines {
        all.push(',');
        all.push_str(line);
    }
    Some(std::borrow::Cow::Owned(all))
}

/// Why a path is not served, in terms of what is.
fn unserved_path(path: &str) -> String {
    if path.starts_with("/ws/") {
        return "the Live API (WebSocket, /ws/...) is not proxied: connect to Google directly for it".to_owned();
    }
    if path.contains("/openai/") {
        return format!("{path} is not served: the OpenAI-compatible API is under /v1beta/openai/ (chat/completions, embeddings, models)");
    }
    format!("{path} is not a Gemini API path: this proxy serves /v1/..., /v1beta/... and /v1alpha/..., /v1beta/openai/... and /upload/v1beta/files")
}

/// The client's error when the upstream could not be reached or did not answer.
fn network_error(f: &UpstreamFailure) -> ApiError {
    match f {
        UpstreamFailure::Timeout(d) => ApiError::gateway_timeout(format!("the upstream did not answer within {d:?}")),
        other => ApiError::bad_gateway(other.to_string()),
    }
}

/// Authenticates a credential, reusing the connection's last static-token result when the same
/// token comes again under the same configuration (a keep-alive client sends it on every
/// request; the SHA-256 and lookup are then skipped). JWTs are checked every time (they expire).
fn authenticate(rt: &Runtime, ds: &mut Downstream, presented: Option<&str>) -> Result<Client, auth::AuthError> {
    if let (Some(cache), Some(token)) = (&ds.auth_cache, presented) {
        // Constant time: behind a reverse proxy that pools connections, one connection carries
        // many clients' tokens.
        if cache.generation == rt.generation && crate::secret::same_secret(cache.token.as_bytes(), token.as_bytes()) {
            return Ok(cache.client.clone());
        }
    }
    let client = rt.clients.authenticate(presented)?;
    if let Some(token) = presented.filter(|t| !auth::jwt::JwtVerifier::looks_like_jwt(t)) {
        ds.auth_cache = Some(AuthCache { generation: rt.generation, token: token.into(), client: client.clone() });
    }
    Ok(client)
}

/// Answers an ACME HTTP-01 validation request with the pending key authorization.
async fn acme_http01(shared: &Shared, ds: &mut Downstream, log: &mut AccessRecord, token: &str) -> bool {
    let valid = !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let answer = valid.then(|| shared.tls.as_ref().and_then(|t| t.store.http_challenge(token))).flatten();
    let Some(key_auth) = answer else {
        return fail(ds, log, ApiError::not_found("no such ACME challenge"), false, false, false).await;
    };
    log.status = 200;
    let mut out = Vec::with_capacity(128 + key_auth.len());
    crate::http1::write_status_line(&mut out, 200);
    crate::http1::write_header(&mut out, b"content-type", b"application/octet-stream");
    crate::http1::write_content_length(&mut out, key_auth.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(key_auth.as_bytes());
    ds.write_all(&out, Duration::from_secs(10)).await.is_ok()
}

/// Header a client may send to choose among the pools its policy allows; never forwarded.
pub const POOL_HEADER: &str = "x-gemini-proxy-pool";

/// Writes a limit's refusal (429/403 with Retry-After, naming the limit) and counts it.
async fn refuse(shared: &Shared, ds: &mut Downstream, log: &mut AccessRecord, r: Refusal, openai: bool, head: &RequestHead, head_only: bool) -> bool {
    shared.refusals.count(r.reason);
    let grpc = if r.status == 403 { "PERMISSION_DENIED" } else { "RESOURCE_EXHAUSTED" };
    let mut err = ApiError::new(r.status, grpc, limit_reason(r.reason), r.message);
    err.retry_after = r.retry_after;
    // An unread body would be taken for the next request: close instead.
    let close = !matches!(head.framing(), Ok(Framing::None));
    fail(ds, log, err, openai, close, head_only).await
}

/// A 403 if the client's policy does not allow `model`.
fn forbidden_model(client: &Client, model: &str) -> Option<Refusal> {
    (!client.policy.allows_model(model)).then(|| Refusal {
        status: 403,
        reason: "model_forbidden",
        message: format!("client {} may not use model {model} (allowed: {})", client.name, client.policy.models.join(", ")),
        retry_after: None,
    })
}

/// The ErrorInfo reason of a refusal.
fn limit_reason(reason: &str) -> &'static str {
    match reason {
        "client_rpm" => "CLIENT_RPM_LIMIT",
        "client_tpm" => "CLIENT_TPM_LIMIT",
        "client_tpd" => "CLIENT_TPD_LIMIT",
        "client_concurrency" => "CLIENT_CONCURRENCY_LIMIT",
        "ip_rate" => "ADDRESS_RATE_LIMIT",
        "global_rate" => "GLOBAL_RATE_LIMIT",
        "max_streams" => "STREAM_LIMIT",
        "model_forbidden" => "MODEL_NOT_ALLOWED",
        _ => "LIMIT",
    }
}

/// Whether the request asks for a streamed answer.
fn is_stream(route: &Route<'_>, body: &Bytes) -> bool {
    match route.action {
        Action::StreamGenerate => true,
        Action::OpenAiChat => {
            #[derive(serde::Deserialize)]
            struct Stream {
                #[serde(default)]
                stream: bool,
            }
            serde_json::from_slice::<Stream>(body).map(|s| s.stream).unwrap_or(false)
        }
        _ => false,
    }
}

/// An upstream answer waiting to be delivered (or replaced by a better one).
pub(super) struct Held {
    pub conn: UpstreamConn,
    pub res: ResponseHead,
    pub lease: Lease,
    pub outcome: Outcome,
    /// What the client gets instead of an error answer that quotes an API key or is too large
    /// to check for one (boxed: rare, and the request's state stays small).
    pub withheld: Option<Box<ApiError>>,
    /// Its attempt was settled; otherwise it is still `underway`'s attempt in progress.
    pub already_reported: bool,
}

fn backoff(base: Duration, attempt_no: u32) -> Duration {
    (base * (1u32 << attempt_no.min(5))).min(Duration::from_secs(2))
}

/// Waits `d` between two attempts, watching the client: `Err` if it went away meanwhile. On the
/// connection's kept timer for upstream waits (set earlier than its last wait at times: a retry
/// is not the common path).
async fn pause(d: Duration, timer: &mut deadline::Timer, client: &PeerWatch) -> Result<(), ()> {
    match deadline::Deadline::after(d).run_watched(timer, std::future::pending::<()>(), Some(client)).await {
        Err(deadline::Stopped::Gone) => Err(()),
        _ => Ok(()),
    }
}

/// Ends a request whose client went away while it waited (for an upstream answer, or between
/// attempts), before anything was sent back: logged as 499, the attempt in progress (if any)
/// as abandoned, and nothing reported against its key. The upstream connection was dropped
/// with the attempt (never pooled: its answer is still to come); the client's permits, the
/// key's in-flight count and the stream slot are released as the request returns, now rather
/// than when the upstream would have answered. Returns false: the connection closes.
fn client_left(log: &mut AccessRecord, underway: &mut Underway<'_>, now: Instant) -> bool {
    log.status = 499;
    log.error = Some("client went away while the proxy waited for the upstream".to_owned());
    log.attempts.extend(underway.settle(underway::ABANDONED, now));
    false
}

/// The model an OpenAI-surface request names in its JSON body.
fn model_in_body(route: &Route<'_>, body: &Bytes) -> Option<Arc<str>> {
    if route.surface == Surface::OpenAi && matches!(route.action, Action::OpenAiChat | Action::OpenAiEmbeddings) && !body.is_empty() {
        #[derive(serde::Deserialize)]
        struct WithModel<'a> {
            #[serde(borrow)]
            model: Option<std::borrow::Cow<'a, str>>,
        }
        let parsed: WithModel<'_> = serde_json::from_slice(body).ok()?;
        return parsed.model.map(|m| Arc::from(m.strip_prefix("models/").unwrap_or(&m)));
    }
    None
}

/// The key a request must use because the resource it names belongs to that key's project.
fn pinned_key(shared: &Shared, pool: &Pool, route: &Route<'_>, upload: Option<&UploadSession>, body: &Bytes) -> Option<u32> {
    if let Some(u) = upload {
        return pool.index_of(u.key);
    }
    if let Some(res) = route.resource {
        if let Some(owner) = shared.store.owner(res) {
            return pool.index_of(owner);
        }
    }
    if shared.store.has_owned_resources() && !body.is_empty() {
        for name in route::referenced_resources(body) {
            if let Some(owner) = shared.store.owner(&name) {
                return pool.index_of(owner);
            }
        }
    }
    None
}

/// Sends the request on a pooled (or new) connection and reads the response head, watching the
/// client meanwhile ([`UpstreamFailure::ClientGone`], the connection dropped, if it left). A
/// pooled connection the server closed while idle gets one retry on a fresh connection.
async fn exchange(
    shared: &Shared,
    rt: &Runtime,
    upstream_head: &mut Vec<u8>,
    body: &Bytes,
    timer: &mut deadline::Timer,
    client: &PeerWatch,
) -> Result<(UpstreamConn, ResponseHead), UpstreamFailure> {
    let target = &rt.target;
    let up = &target.settings;
    let head_len = upstream_head.len();
    let mut conn = shared.upstream.checkout(target).await?;
    loop {
        let sent = conn.send(upstream_head, body, up.idle_timeout).await;
        let result = match sent {
            Ok(()) => conn.read_head(up.first_byte_timeout, timer, Some(client)).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(res) => return Ok((conn, res)),
            Err(UpstreamFailure::Broken(_)) if conn.reused => {
                upstream_head.truncate(head_len);
                conn = shared.upstream.connect(target).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Relays a held answer to the client and does the bookkeeping. `(started, answer_at)`: when
/// the request started, and now, when the client's answer starts.
#[allow(clippy::too_many_arguments)]
async fn deliver(
    shared: &Shared,
    rt: &Arc<Runtime>,
    ds: &mut Downstream,
    head: &RequestHead,
    route: &Route<'_>,
    held: Held,
    log: &mut AccessRecord,
    underway: &mut Underway<'_>,
    (started, answer_at): (Instant, Instant),
    pool: &Pool,
    exhausted: Option<&Exhausted>,
) -> bool {
    let Held { conn, res, lease, outcome, withheld, already_reported } = held;
    let settings = &rt.settings;
    let policy = &settings.key_health;
    let model_name = log.model.clone();
    let model = model_name.as_deref().unwrap_or("");
    let openai = route.surface == Surface::OpenAi;
    let status = res.status;

    // A key error on the last attempt is our problem, not the client's: say so plainly rather
    // than pass on "API key not valid", which the client would read as its own token being bad.
    if matches!(outcome, Outcome::Disable(_)) {
        let ex = exhausted.cloned().unwrap_or_else(|| pool.select(model, &[], answer_at).err().unwrap_or(Exhausted::Empty));
        let err = ex.to_api_error(model, answer_at, policy);
        return fail(ds, log, err, openai, false, head.method() == "HEAD").await;
    }
    // Tell clients when to come back, which Gemini itself never does in a header.
    let key = pool.key(lease.index);
    let retry_after = match (status, exhausted) {
        (429 | 503, Some(ex)) => ex.to_api_error(model, answer_at, policy).retry_after,
        // A pinned request: the owner key's own recovery.
        (429 | 503, None) => key.health.recovers_at(model, answer_at).map(|t| secs_until(t, answer_at)),
        _ => None,
    };
    if let Some(err) = withheld {
        let err = *err;
        let err = match retry_after {
            Some(secs) => err.with_retry_after(secs),
            None => err,
        };
        // The upstream connection goes with the answer it still holds.
        drop(conn);
        let keep = fail(ds, log, err, openai, false, head.method() == "HEAD").await;
        if !already_reported {
            let end = Instant::now();
            // What the client was told (`fail` logged it) is the key's last error too: the
            // upstream's message redacted, or that its answer was too large to relay.
            pool.report(lease.index, model, &outcome, Some(status), log.error.as_deref().unwrap_or(""), policy, end);
            log.attempts.extend(underway.settle(outcome.label(), end));
        }
        return keep;
    }
    let plan = relay::Plan::for_request(route, head, &res);
    // Known before the body is relayed, so that a request cut meanwhile is logged with them.
    let first_byte = answer_at.saturating_duration_since(started);
    log.status = status;
    log.first_byte_ms = Some(ms(first_byte));
    log.stream = plan.streams();
    let owner = relay::Owner { key: key.health.fingerprint, client: log.client.clone() };
    // The relay counts the bytes it sends in the record and feeds `underway`'s scanner as it
    // goes: a request cut meanwhile is recorded with them (see `InFlight`).
    let result: Relay = relay::relay(shared, rt, ds, head, conn, res, plan, retry_after, owner, log, &mut underway.scanner).await;
    let end = Instant::now();
    ds.answered_at = Some(end);

    log.status = result.status;
    if let Some(e) = &result.error {
        log.error = Some(e.clone());
    }
    // Read whether the answer was complete or not: the tokens of an answer broken off midway
    // (the client went away, the upstream failed) were used as much as a finished one's.
    let usage = underway.scanner.take().as_ref().and_then(UsageScanner::finish);
    log.set_usage(usage);
    if let Some(u) = usage {
        underway::charge(shared, key, log.client.as_deref(), u);
    }
    if !already_reported {
        // A stream that broke midway counts against the key like any transient failure; one the
        // client walked away from is the key's answer as it began (the key did its part), and
        // the attempt is logged as abandoned.
        let outcome = if result.upstream_broke { Outcome::Failure(FailureKind::Broken) } else { outcome };
        pool.report(lease.index, model, &outcome, Some(status), result.error.as_deref().unwrap_or(""), policy, end);
        let label = if result.client_left { underway::ABANDONED } else { outcome.label() };
        log.attempts.extend(underway.settle(label, end));
    }
    result.client_keep_alive
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn taking four arguments returns.
    fn future_size<A, B, C, D, Fut>(_f: impl FnOnce(A, B, C, D) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// The same for six arguments.
    fn future_size6<A, B, C, D, E, G, Fut>(_f: impl FnOnce(A, B, C, D, E, G) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// A request's state is allocated and copied once per request (and was 11 KB while the
    /// upstream connect future sat inline in it: 20% more CPU per request at 256 connections).
    /// Rarely used big futures belong in a box of their own.
    #[test]
    fn a_requests_state_stays_small() {
        let handle_size = future_size(handle);
        let exchange_size = future_size6(exchange);
        assert!(handle_size <= 5 * 1024, "exchange::handle's future is {handle_size} bytes");
        assert!(exchange_size <= 1536, "the upstream exchange's future is {exchange_size} bytes");
    }
}
