-- wrk script for the gemini-proxy benchmark: one fixed Gemini request, set up once, so that
-- wrk builds it a single time (no per-request Lua). The environment sets the details:
--   BENCH_KEY   value of x-goog-api-key (a proxy token for gemini-proxy, a key otherwise)
--   BENCH_BODY  request body (JSON; empty for none)
-- At the end it prints one line "BENCH_JSON {...}" with counts and latency percentiles in
-- microseconds, including p99.9 (wrk --latency itself stops at p99).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or ""
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-goog-api-key"] = os.getenv("BENCH_KEY") or ""

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p99.9":%d,"p99.99":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency:percentile(99.99)))
end
