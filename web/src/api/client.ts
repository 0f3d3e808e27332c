// The one way the UI talks to the admin API: JSON over fetch, `Authorization: Bearer <token>`
// (the session token from the login, or a pasted admin token), errors as ApiError.
//
// The session cookie the login endpoint also sets is deliberately not used (credentials:
// 'omit' keeps it out of the browser): one credential, sent one way, that logout forgets.

import type { ErrorBody, ProblemView } from './types'

export class ApiError extends Error {
  /** HTTP status; 0 when the request never got an answer (network down, timeout). */
  readonly status: number
  readonly grpcStatus: string | undefined
  readonly problems: ProblemView[]
  /** Seconds, from Retry-After. */
  readonly retryAfter: number | undefined

  constructor(status: number, message: string, opts: { grpcStatus?: string; problems?: ProblemView[]; retryAfter?: number } = {}) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.grpcStatus = opts.grpcStatus
    this.problems = opts.problems ?? []
    this.retryAfter = opts.retryAfter
  }
}

export type Query = Record<string, string | number | boolean | null | undefined>

export interface RequestOptions {
  query?: Query
  body?: unknown
  /** Send the credential (default true). */
  auth?: boolean
  /** Send this token instead of the stored credential (checking a pasted admin token). */
  bearer?: string
  /** Milliseconds before the request is abandoned (default 30 s). */
  timeoutMs?: number
  /** A 401 from this call is an answer, not an expired session (the login itself). */
  expect401?: boolean
}

interface ApiHooks {
  token: () => string | null
  /** A call sent with `token` (null: none) was answered 401. */
  onUnauthorized: (token: string | null) => void
}

const hooks: ApiHooks = { token: () => null, onUnauthorized: () => {} }

/** Set by the auth store: where the credential comes from, and what a 401 means. */
export function configureApi(h: Partial<ApiHooks>): void {
  Object.assign(hooks, h)
}

export function buildUrl(path: string, query?: Query): string {
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== '') params.set(k, String(v))
  }
  const qs = params.toString()
  return qs ? `${path}?${qs}` : path
}

function parseRetryAfter(v: string | null): number | undefined {
  if (!v) return undefined
  const n = Number(v)
  if (Number.isFinite(n)) return Math.max(0, Math.ceil(n))
  const at = Date.parse(v)
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000))
}

export async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (opts.body !== undefined) headers['content-type'] = 'application/json'
  const token = opts.auth === false ? null : (opts.bearer ?? hooks.token())
  if (token) headers.authorization = `Bearer ${token}`
  const ctrl = new AbortController()
  const timer = setTimeout(() => ctrl.abort(), opts.timeoutMs ?? 30_000)
  let res: Response
  try {
    res = await fetch(buildUrl(path, opts.query), {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: 'omit',
      signal: ctrl.signal,
    })
  } catch (e) {
    const timedOut = ctrl.signal.aborted
    throw new ApiError(0, timedOut ? 'the request timed out' : `network error: ${(e as Error).message}`)
  } finally {
    clearTimeout(timer)
  }
  const text = await res.text()
  let data: unknown = undefined
  if (text) {
    try {
      data = JSON.parse(text)
    } catch {
      data = undefined
    }
  }
  if (!res.ok) {
    const err = (data as ErrorBody | undefined)?.error
    const message = err?.message ?? (text && text.length < 300 ? text : `${res.status} ${res.statusText}`)
    const e = new ApiError(res.status, message, {
      grpcStatus: err?.status,
      problems: err?.problems,
      retryAfter: parseRetryAfter(res.headers.get('retry-after')),
    })
    if (res.status === 401 && !opts.expect401) hooks.onUnauthorized(token)
    throw e
  }
  return data as T
}

export const api = {
  get: <T>(path: string, query?: Query, opts: RequestOptions = {}) => request<T>('GET', path, { ...opts, query }),
  post: <T>(path: string, body?: unknown, opts: RequestOptions = {}) => request<T>('POST', path, { ...opts, body }),
  put: <T>(path: string, body?: unknown, opts: RequestOptions = {}) => request<T>('PUT', path, { ...opts, body }),
  patch: <T>(path: string, body?: unknown, opts: RequestOptions = {}) => request<T>('PATCH', path, { ...opts, body }),
  del: <T>(path: string, opts: RequestOptions = {}) => request<T>('DELETE', path, opts),
}

/** A path segment, escaped. */
export const seg = (s: string | number) => encodeURIComponent(String(s))
