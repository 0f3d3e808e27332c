// Number, time and duration formatting shared by the pages.

/** 1234567 -> "1,234,567" (in the UI's language). */
export function num(n: number | null | undefined, locale?: string): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '—'
  return n.toLocaleString(locale)
}

/** 1234567 -> "1.2M". */
export function compact(n: number | null | undefined, locale?: string): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '—'
  return new Intl.NumberFormat(locale, { notation: 'compact', maximumFractionDigits: 1 }).format(n)
}

/** Milliseconds, readable: "850 ms", "1.25 s", "2.0 min". */
export function ms(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—'
  if (v < 10) return `${v.toFixed(2)} ms`
  if (v < 1000) return `${Math.round(v)} ms`
  if (v < 60_000) return `${(v / 1000).toFixed(2)} s`
  return `${(v / 60_000).toFixed(1)} min`
}

/** A ratio 0..1 as a percentage. */
export function pct(r: number | null | undefined, digits = 1): string {
  if (r === null || r === undefined || Number.isNaN(r)) return '—'
  return `${(r * 100).toFixed(digits)}%`
}

/**
 * Seconds left, as a countdown: "45s", "4:05", then "15 h 38 min" and "2 d 3 h" (an hour or
 * more as "15:38:03" would read like a time of day). Zero or less gives "0s".
 */
export function countdown(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds))
  if (s < 60) return `${s}s`
  const d = Math.floor(s / 86_400)
  const h = Math.floor((s % 86_400) / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = s % 60
  if (d > 0) return h > 0 ? `${d} d ${h} h` : `${d} d`
  if (h > 0) return m > 0 ? `${h} h ${m} min` : `${h} h`
  return `${m}:${String(sec).padStart(2, '0')}`
}

/**
 * A chart axis tick: as many digits as the value has, up to 4 significant ones, so that the
 * ticks 0.005, 0.01, 0.015 stay apart (two fixed decimals made them 0.01, 0.01, 0.02).
 */
export function axisNumber(v: number): string {
  if (!Number.isFinite(v)) return ''
  if (v === 0) return '0'
  if (Math.abs(v) >= 100) return String(Math.round(v))
  return String(Number(v.toPrecision(4)))
}

/** A date-time in the UI's language: "2026-11-26 15:46:00" style. */
export function dateTime(t: number | string | null | undefined, locale?: string): string {
  if (t === null || t === undefined || t === '') return '—'
  const d = typeof t === 'number' ? new Date(t) : new Date(t)
  if (Number.isNaN(d.getTime())) return String(t)
  return d.toLocaleString(locale, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false })
}

/** How long ago: "just now", "5 min ago", "3 h ago", "2 d ago" (Intl.RelativeTimeFormat). */
export function ago(t: number | string | null | undefined, now: number, locale?: string): string {
  if (t === null || t === undefined) return '—'
  const at = typeof t === 'number' ? t : Date.parse(t)
  if (Number.isNaN(at)) return '—'
  const s = Math.round((at - now) / 1000)
  const rtf = new Intl.RelativeTimeFormat(locale, { numeric: 'auto', style: 'short' })
  const a = Math.abs(s)
  if (a < 60) return rtf.format(s, 'second')
  if (a < 3600) return rtf.format(Math.round(s / 60), 'minute')
  if (a < 86_400) return rtf.format(Math.round(s / 3600), 'hour')
  return rtf.format(Math.round(s / 86_400), 'day')
}

/** Bytes: "512 B", "1.5 KiB", "2.0 MiB". */
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—'
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}

/** The element type of a status code tag. */
export function statusType(status: number): 'success' | 'warning' | 'danger' | 'info' {
  if (status >= 500 || status === 0) return 'danger'
  if (status >= 400) return 'warning'
  if (status >= 200 && status < 400) return 'success'
  return 'info'
}

/** A compact time for logs: "15:46:00" today, "11-25 15:46:00" on other days. */
export function shortTime(t: number, now: number = Date.now(), locale?: string): string {
  const d = new Date(t)
  if (Number.isNaN(d.getTime())) return '—'
  const time = d.toLocaleTimeString(locale, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false })
  if (new Date(now).toDateString() === d.toDateString()) return time
  const two = (x: number) => String(x).padStart(2, '0')
  return `${two(d.getMonth() + 1)}-${two(d.getDate())} ${time}`
}
