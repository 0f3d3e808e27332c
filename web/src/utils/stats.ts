// Turns the API's per-minute points (sparse: only minutes with traffic) into evenly spaced
// buckets for the charts, and derives rates from them.

import type { MinutePoint } from '@/api/types'

export interface Bucket {
  /** Start of the bucket, Unix ms. */
  t: number
  requests: number
  ok: number
  errors: number
  rateLimited: number
  serverErrors: number
  clientErrors: number
  /** Requests per second over the bucket. */
  rps: number
  /** Errors / requests; null when there were no requests. */
  errorRate: number | null
  /** Latency percentiles (ms); null when there were no requests. Over several minutes, the
   * request-weighted mean of the minutes' percentiles (an approximation). */
  p50: number | null
  p95: number | null
  p99: number | null
  tokensIn: number
  tokensOut: number
}

export interface RangeSpec {
  key: string
  /** Length, ms. */
  span: number
  /** Bucket size, minutes. */
  bucket: number
  /** Auto-refresh interval that suits the range, ms. */
  refresh: number
}

export const RANGES: RangeSpec[] = [
  { key: '15m', span: 15 * 60_000, bucket: 1, refresh: 5_000 },
  { key: '1h', span: 3_600_000, bucket: 1, refresh: 10_000 },
  { key: '6h', span: 6 * 3_600_000, bucket: 1, refresh: 30_000 },
  { key: '24h', span: 24 * 3_600_000, bucket: 5, refresh: 60_000 },
  { key: '7d', span: 7 * 86_400_000, bucket: 30, refresh: 120_000 },
]

export function rangeSpec(key: string): RangeSpec {
  return RANGES.find((r) => r.key === key) ?? RANGES[1]!
}

function errorsOf(p: MinutePoint): number {
  return Math.max(0, p.requests - p.ok)
}

/** Buckets of `bucketMin` minutes covering [fromMs, toMs), zero-filled. */
export function bucketize(points: MinutePoint[], fromMs: number, toMs: number, bucketMin: number): Bucket[] {
  const size = bucketMin * 60_000
  const first = Math.floor(fromMs / size) * size
  const last = Math.floor((toMs - 1) / size) * size
  const out: Bucket[] = []
  const index = new Map<number, number>()
  for (let t = first; t <= last; t += size) {
    index.set(t, out.length)
    out.push({ t, requests: 0, ok: 0, errors: 0, rateLimited: 0, serverErrors: 0, clientErrors: 0, rps: 0, errorRate: null, p50: null, p95: null, p99: null, tokensIn: 0, tokensOut: 0 })
  }
  const weights = new Map<number, { w: number; p50: number; p95: number; p99: number }>()
  for (const p of points) {
    const t = Math.floor(p.minute_ms / size) * size
    const i = index.get(t)
    if (i === undefined) continue
    const b = out[i]!
    b.requests += p.requests
    b.ok += p.ok
    b.errors += errorsOf(p)
    b.rateLimited += p.rate_limited
    b.serverErrors += p.server_errors
    b.clientErrors += p.client_errors
    b.tokensIn += p.input_tokens
    b.tokensOut += p.output_tokens
    if (p.requests > 0) {
      const w = weights.get(t) ?? { w: 0, p50: 0, p95: 0, p99: 0 }
      w.w += p.requests
      w.p50 += p.latency_p50_ms * p.requests
      w.p95 += p.latency_p95_ms * p.requests
      w.p99 += p.latency_p99_ms * p.requests
      weights.set(t, w)
    }
  }
  for (const b of out) {
    b.rps = b.requests / (bucketMin * 60)
    b.errorRate = b.requests > 0 ? b.errors / b.requests : null
    const w = weights.get(b.t)
    if (w && w.w > 0) {
      b.p50 = w.p50 / w.w
      b.p95 = w.p95 / w.w
      b.p99 = w.p99 / w.w
    }
  }
  return out
}

export interface Summary {
  requests: number
  errors: number
  errorRate: number | null
  /** Requests per second in the last complete minute. */
  rpsNow: number
  /** Average requests per second over the range. */
  rpsAvg: number
  /** Latency percentiles of the most recent minute that had requests. */
  latest: { p50: number; p95: number; p99: number; minute: number } | null
  tokensIn: number
  tokensOut: number
}

export function summarize(points: MinutePoint[], fromMs: number, toMs: number, now: number): Summary {
  let requests = 0
  let errors = 0
  let tokensIn = 0
  let tokensOut = 0
  let latest: Summary['latest'] = null
  const lastFull = Math.floor(now / 60_000) * 60_000 - 60_000
  let lastFullRequests = 0
  for (const p of points) {
    requests += p.requests
    errors += errorsOf(p)
    tokensIn += p.input_tokens
    tokensOut += p.output_tokens
    if (p.minute_ms === lastFull) lastFullRequests = p.requests
    if (p.requests > 0 && (!latest || p.minute_ms > latest.minute)) {
      latest = { p50: p.latency_p50_ms, p95: p.latency_p95_ms, p99: p.latency_p99_ms, minute: p.minute_ms }
    }
  }
  const spanS = Math.max(1, (toMs - fromMs) / 1000)
  return {
    requests,
    errors,
    errorRate: requests > 0 ? errors / requests : null,
    rpsNow: lastFullRequests / 60,
    rpsAvg: requests / spanS,
    latest,
    tokensIn,
    tokensOut,
  }
}
