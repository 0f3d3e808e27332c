import { describe, expect, it } from 'vitest'
import { Text } from '@codemirror/state'
import { countdown, ms, pct, statusType, shortTime } from '@/utils/format'
import { bucketize, summarize } from '@/utils/stats'
import { countChanges, lineDiff, parseUnified, withContext } from '@/utils/diff'
import { toDiagnostics } from '@/utils/problems'
import type { MinutePoint } from '@/api/types'

function point(minute: number, over: Partial<MinutePoint> = {}): MinutePoint {
  return {
    minute_ms: minute * 60_000,
    requests: 0,
    ok: 0,
    client_errors: 0,
    rate_limited: 0,
    server_errors: 0,
    retries: 0,
    input_tokens: 0,
    output_tokens: 0,
    latency_p50_ms: 0,
    latency_p95_ms: 0,
    latency_p99_ms: 0,
    ...over,
  }
}

describe('format', () => {
  it('counts down in the shortest readable form', () => {
    expect(countdown(-3)).toBe('0s')
    expect(countdown(0.2)).toBe('1s')
    expect(countdown(59)).toBe('59s')
    expect(countdown(245)).toBe('4:05')
    expect(countdown(3723)).toBe('1 h 2 min')
    expect(countdown(15 * 3600 + 38 * 60 + 3)).toBe('15 h 38 min')
    expect(countdown(3600)).toBe('1 h')
    expect(countdown(2 * 86_400 + 3 * 3600)).toBe('2 d 3 h')
    expect(countdown(86_400)).toBe('1 d')
  })
  it('formats latencies, ratios and statuses', () => {
    expect(ms(1.234)).toBe('1.23 ms')
    expect(ms(250)).toBe('250 ms')
    expect(ms(1500)).toBe('1.50 s')
    expect(ms(null)).toBe('—')
    expect(pct(0.1234)).toBe('12.3%')
    expect(pct(null)).toBe('—')
    expect(statusType(200)).toBe('success')
    expect(statusType(429)).toBe('warning')
    expect(statusType(503)).toBe('danger')
  })
  it('shows only the time for today', () => {
    const now = new Date(2026, 10, 26, 16, 0, 0).getTime()
    expect(shortTime(new Date(2026, 10, 26, 15, 4, 5).getTime(), now, 'en-GB')).toBe('15:04:05')
    expect(shortTime(new Date(2026, 10, 25, 15, 4, 5).getTime(), now, 'en-GB')).toBe('11-25 15:04:05')
  })
})

describe('stats', () => {
  it('fills minutes without traffic with zeros and no latency', () => {
    const b = bucketize([point(2, { requests: 60, ok: 54, rate_limited: 6, latency_p50_ms: 10, latency_p95_ms: 20, latency_p99_ms: 30, input_tokens: 5 })], 0, 4 * 60_000, 1)
    expect(b.map((x) => x.t)).toEqual([0, 60_000, 120_000, 180_000])
    expect(b[0]!.requests).toBe(0)
    expect(b[0]!.p95).toBeNull()
    expect(b[0]!.errorRate).toBeNull()
    expect(b[2]!.rps).toBe(1)
    expect(b[2]!.errorRate).toBeCloseTo(0.1)
    expect(b[2]!.p95).toBe(20)
    expect(b[2]!.tokensIn).toBe(5)
  })
  it('merges minutes into larger buckets, weighting percentiles by requests', () => {
    const b = bucketize(
      [point(0, { requests: 10, ok: 10, latency_p50_ms: 10, latency_p95_ms: 10, latency_p99_ms: 10 }), point(1, { requests: 30, ok: 30, latency_p50_ms: 50, latency_p95_ms: 50, latency_p99_ms: 50 })],
      0,
      5 * 60_000,
      5,
    )
    expect(b).toHaveLength(1)
    expect(b[0]!.requests).toBe(40)
    expect(b[0]!.p50).toBe(40)
    expect(b[0]!.rps).toBeCloseTo(40 / 300)
  })
  it('summarizes a range: last complete minute, totals, latest latency', () => {
    const now = 10 * 60_000 + 30_000
    const s = summarize(
      [point(8, { requests: 6, ok: 6, latency_p95_ms: 7 }), point(9, { requests: 120, ok: 100, latency_p95_ms: 9, output_tokens: 3 }), point(10, { requests: 5, ok: 5, latency_p95_ms: 11 })],
      0,
      now,
      now,
    )
    expect(s.rpsNow).toBe(2)
    expect(s.requests).toBe(131)
    expect(s.errors).toBe(20)
    expect(s.latest?.p95).toBe(11)
    expect(s.tokensOut).toBe(3)
  })
})

describe('diff', () => {
  it('marks added and removed lines with their numbers', () => {
    const lines = lineDiff('a\nb\nc\n', 'a\nB\nc\nd\n')
    expect(lines).toEqual([
      { kind: 'same', text: 'a', old: 1, new: 1 },
      { kind: 'del', text: 'b', old: 2 },
      { kind: 'add', text: 'B', new: 2 },
      { kind: 'same', text: 'c', old: 3, new: 3 },
      { kind: 'add', text: 'd', new: 4 },
    ])
    expect(countChanges(lines)).toEqual({ added: 2, removed: 1 })
  })
  it('keeps context around changes only', () => {
    const before = Array.from({ length: 20 }, (_, i) => `l${i}`).join('\n')
    const after = before.replace('l10', 'L10')
    const lines = withContext(lineDiff(before, after), 2)
    expect(lines[0]!.kind).toBe('hunk')
    expect(lines.filter((l) => l.kind === 'same').map((l) => l.text)).toEqual(['l8', 'l9', 'l11', 'l12'])
  })
  it('parses the API unified diff', () => {
    const d = parseUnified('--- version 1\n+++ running\n@@ -2,3 +2,3 @@\n a\n-b\n+c\n d\n')
    expect(d.map((l) => l.kind)).toEqual(['hunk', 'same', 'del', 'add', 'same'])
    expect(d[2]).toMatchObject({ text: 'b', old: 3 })
    expect(d[3]).toMatchObject({ text: 'c', new: 3 })
  })
})

describe('problems', () => {
  it('places problems at their line and column', () => {
    const doc = Text.of(['[server]', 'listen = "x"', 'bogus = 1'])
    const d = toDiagnostics(doc, [
      { line: 3, column: 1, message: 'unknown field `bogus`' },
      { line: 2, column: 10, message: 'bad address' },
      { message: 'no place' },
      { line: 99, column: 1, message: 'past the end' },
    ])
    expect(d).toHaveLength(3)
    expect(doc.sliceString(d[0]!.from, d[0]!.to)).toBe('bogus = 1')
    expect(doc.sliceString(d[1]!.from, d[1]!.to)).toBe('"x"')
    expect(doc.lineAt(d[2]!.from).number).toBe(3)
    expect(d[0]!.severity).toBe('error')
  })
})
