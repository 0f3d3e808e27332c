import { beforeEach, describe, expect, it, vi } from 'vitest'
import { effectScope } from 'vue'
import { connectApi, useAuthStore } from '@/stores/auth'
import { matchesKey, useKeysStore } from '@/stores/keys'
import { createBody, emptyForm, patchBody } from '@/stores/clients'
import { useCertsStore } from '@/stores/certs'
import { useRequestsStore } from '@/stores/requests'
import { useBatch } from '@/composables/batch'
import type { KeyView } from '@/api/types'
import { fakeApi, freshPinia } from './helpers'

const session = { token: 'gps_1', kind: 'session', expires_at: '2999-01-01T00:00:00Z' }

describe('auth store', () => {
  beforeEach(() => {
    freshPinia()
  })

  it('logs in with the password and keeps the session token for this tab', async () => {
    const calls = fakeApi({ 'POST /api/v1/auth/login': { body: session } })
    const auth = useAuthStore()
    connectApi(() => {})
    await auth.login('pw')
    expect(calls[0]!.body).toEqual({ password: 'pw' })
    expect(calls[0]!.headers.authorization).toBeUndefined()
    expect(auth.loggedIn).toBe(true)
    expect(JSON.parse(sessionStorage.getItem('gp.token')!).token).toBe('gps_1')
    expect(localStorage.getItem('gp.token')).toBeNull()
  })

  it('remembers the login in localStorage when asked', async () => {
    fakeApi({ 'POST /api/v1/auth/login': { body: session } })
    await useAuthStore().login('pw', true)
    expect(JSON.parse(localStorage.getItem('gp.token')!).token).toBe('gps_1')
    freshPinia()
    expect(useAuthStore().token).toBe('gps_1')
  })

  it('forgets stored sessions that have expired', () => {
    sessionStorage.setItem('gp.token', JSON.stringify({ token: 'old', kind: 'session', expiresAt: '2000-01-01T00:00:00Z' }))
    expect(useAuthStore().loggedIn).toBe(false)
    expect(sessionStorage.getItem('gp.token')).toBeNull()
  })

  it('rejects a wrong password without logging in or calling it an expired session', async () => {
    fakeApi({ 'POST /api/v1/auth/login': { status: 401, body: { error: { code: 401, status: 'UNAUTHENTICATED', message: 'wrong password' } } } })
    const expired = vi.fn()
    connectApi(expired)
    const auth = useAuthStore()
    await expect(auth.login('nope')).rejects.toMatchObject({ status: 401, message: 'wrong password' })
    expect(auth.loggedIn).toBe(false)
    expect(expired).not.toHaveBeenCalled()
  })

  it('trades a pasted admin token for a session and never keeps the token itself', async () => {
    const calls = fakeApi({
      'POST /api/v1/auth/login': (r) =>
        (r.body as { token?: string }).token === 'good' ? { body: session } : { status: 401, body: { error: { code: 401, status: 'UNAUTHENTICATED', message: 'wrong admin token' } } },
    })
    connectApi(() => {})
    const auth = useAuthStore()
    await expect(auth.loginWithToken('bad')).rejects.toMatchObject({ status: 401 })
    expect(auth.loggedIn).toBe(false)
    await auth.loginWithToken('  good ', true)
    expect(auth.token).toBe('gps_1')
    expect(auth.kind).toBe('session')
    expect(calls).toHaveLength(2)
    expect(calls[1]!.headers.authorization).toBeUndefined()
    expect(localStorage.getItem('gp.token')).not.toContain('good')
  })

  it('logs out on the server and forgets the token even when that fails', async () => {
    const calls = fakeApi({ 'POST /api/v1/auth/login': { body: session }, 'POST /api/v1/auth/logout': { status: 500, body: { error: { code: 500, status: 'INTERNAL', message: 'x' } } } })
    connectApi(() => {})
    const auth = useAuthStore()
    await auth.login('pw')
    await expect(auth.logout()).rejects.toMatchObject({ status: 500 })
    expect(calls[1]!.headers.authorization).toBe('Bearer gps_1')
    expect(auth.loggedIn).toBe(false)
    expect(sessionStorage.getItem('gp.token')).toBeNull()
  })

  it('says the session ended when a call answers 401, and clears that on logging in again', async () => {
    fakeApi({ 'POST /api/v1/auth/login': { body: session }, 'GET /api/v1/keys': { status: 401, body: { error: { code: 401, status: 'UNAUTHENTICATED', message: 'x' } } } })
    const expired = vi.fn()
    connectApi(expired)
    const auth = useAuthStore()
    await auth.login('pw')
    await expect(useKeysStore().fetch()).rejects.toMatchObject({ status: 401 })
    expect(expired).toHaveBeenCalledOnce()
    expect(auth.loggedIn).toBe(false)
    expect(auth.notice).toBe('session-expired')
    expect(auth.ended).toBe(true)
    await auth.login('pw')
    expect(auth.ended).toBe(false)
    expect(auth.notice).toBeNull()
  })

  it('ignores a late 401 to a call sent before logging in again', async () => {
    let answer: (() => void) | null = null
    fakeApi({
      'POST /api/v1/auth/login': (r) => ({ body: { ...session, token: (r.body as { password: string }).password === 'pw2' ? 'gps_2' : 'gps_1' } }),
      // The first keys call is held until the new session exists, then refused (old token).
      'GET /api/v1/keys': (r) =>
        r.headers.authorization === 'Bearer gps_1'
          ? new Promise((ok) => (answer = () => ok({ status: 401, body: { error: { code: 401, status: 'UNAUTHENTICATED', message: 'x' } } })))
          : { body: { keys: [], pools: [], total: 0, healthy: 0, cooling: 0, broken: 0, disabled: 0 } },
    })
    const expired = vi.fn()
    connectApi(expired)
    const auth = useAuthStore()
    await auth.login('pw')
    const late = useKeysStore().fetch()
    await auth.login('pw2')
    await vi.waitFor(() => expect(answer).not.toBeNull())
    answer!()
    await expect(late).rejects.toMatchObject({ status: 401 })
    expect(expired).not.toHaveBeenCalled()
    expect(auth.token).toBe('gps_2')
    expect(auth.ended).toBe(false)
  })

  it('says the session ended when the stored one expired while the tab was closed', () => {
    sessionStorage.setItem('gp.token', JSON.stringify({ token: 'old', kind: 'session', expiresAt: '2000-01-01T00:00:00Z' }))
    const auth = useAuthStore()
    expect(auth.loggedIn).toBe(false)
    expect(auth.notice).toBe('session-expired')
    // Not "ended while open": that is the in-page dialog, for a session lost under the user.
    expect(auth.ended).toBe(false)
  })

  it('logging out is not an ended session', async () => {
    fakeApi({ 'POST /api/v1/auth/login': { body: session }, 'POST /api/v1/auth/logout': { status: 204 } })
    connectApi()
    const auth = useAuthStore()
    await auth.login('pw')
    await auth.logout()
    expect(auth.ended).toBe(false)
    expect(auth.notice).toBeNull()
  })
})

function key(over: Partial<KeyView>): KeyView {
  return { pool: 'default', name: 'k', fingerprint: '000000000000', weight: 1, state: 'healthy', models: [], inflight: 0, usage: { attempts: 0, successes: 0, failures: 0, input_tokens: 0, output_tokens: 0 }, ...over }
}

describe('keys store', () => {
  beforeEach(() => {
    freshPinia()
  })

  it('filters like the API: name in any case, fingerprint, state, pool', () => {
    const k = key({ name: 'Team-B', fingerprint: 'abcdef123456', state: 'cooling', pool: 'p1' })
    expect(matchesKey(k, 'team', '', '')).toBe(true)
    expect(matchesKey(k, 'f123', '', '')).toBe(true)
    expect(matchesKey(k, 'zzz', '', '')).toBe(false)
    expect(matchesKey(k, '', 'cooling', 'p1')).toBe(true)
    expect(matchesKey(k, '', 'healthy', '')).toBe(false)
    expect(matchesKey(k, '', '', 'p2')).toBe(false)
  })

  it('loads keys and counts, and filters them', async () => {
    fakeApi({
      'GET /api/v1/keys': { body: { keys: [key({ name: 'a', fingerprint: 'aaaaaaaaaaaa' }), key({ name: 'b', fingerprint: 'bbbbbbbbbbbb', state: 'disabled', pool: 'other' })], pools: ['default', 'other', 'empty'], total: 2, healthy: 1, cooling: 0, broken: 0, disabled: 1 } },
    })
    const keys = useKeysStore()
    await keys.fetch()
    expect(keys.counts).toEqual({ total: 2, healthy: 1, cooling: 0, broken: 0, disabled: 1 })
    expect(keys.pools).toEqual(['default', 'other', 'empty'])
    keys.state = 'disabled'
    expect(keys.filtered.map((k) => k.name)).toEqual(['b'])
  })

  it('previews an import as a dry run, and validates the given fingerprints', async () => {
    const calls = fakeApi({ 'POST /api/v1/keys/import': { body: { added: [], skipped: [] } }, 'POST /api/v1/keys/validate': { body: [] } })
    const keys = useKeysStore()
    await keys.importKeys('AIza...', undefined, true)
    await keys.validate(['aaaaaaaaaaaa'])
    expect(calls[0]!.body).toEqual({ text: 'AIza...', dry_run: true })
    expect(calls[1]!.body).toEqual({ fingerprints: ['aaaaaaaaaaaa'] })
  })

  it('escapes fingerprints in paths', async () => {
    const calls = fakeApi({})
    await useKeysStore().enable('a/b').catch(() => {})
    expect(calls[0]!.path).toBe('/api/v1/keys/a%2Fb/enable')
  })
})

describe('client forms', () => {
  it('creates with only the fields that are set', () => {
    expect(createBody({ ...emptyForm(), name: ' app ', rpm: 10 })).toEqual({ name: 'app', rpm: 10 })
    expect(createBody({ ...emptyForm(), name: 'x', pools: ['a'], models: ['gemini-*'], concurrency: 2 })).toEqual({ name: 'x', pools: ['a'], models: ['gemini-*'], concurrency: 2 })
  })

  it('patches only what changed, with null for a removed limit', () => {
    const before = { ...emptyForm(), name: 'x', pools: ['a'], models: ['m'], rpm: 10, tpm: 100 }
    expect(patchBody(before, { ...before })).toEqual({})
    expect(patchBody(before, { ...before, rpm: null, tpd: 5 })).toEqual({ rpm: null, tpd: 5 })
    expect(patchBody(before, { ...before, pools: [], models: ['m', 'n'] })).toEqual({ pools: null, models: ['m', 'n'] })
  })
})

describe('certificates store', () => {
  beforeEach(() => {
    freshPinia()
  })

  it('is unavailable when the API answers 404', async () => {
    fakeApi({})
    const certs = useCertsStore()
    await certs.fetch()
    expect(certs.available).toBe(false)
  })

  it('lists certificates and starts renewals', async () => {
    const calls = fakeApi({
      'GET /api/v1/certificates': { body: [{ name: 'main', names: ['a.example.com'], source: 'acme', issuer: 'Pebble', not_before: '2026-01-01T00:00:00Z', not_after: '2027-01-01T00:00:00Z', last_renewal: null }] },
      'POST /api/v1/certificates/main/renew': { status: 202, body: {} },
    })
    const certs = useCertsStore()
    await certs.fetch()
    expect(certs.available).toBe(true)
    expect(certs.list[0]!.names).toEqual(['a.example.com'])
    await certs.renew('main')
    expect(calls[1]).toMatchObject({ method: 'POST', path: '/api/v1/certificates/main/renew' })
  })

  it('keeps other errors as errors', async () => {
    fakeApi({ 'GET /api/v1/certificates': { status: 500, body: { error: { code: 500, status: 'INTERNAL', message: 'boom' } } } })
    await expect(useCertsStore().fetch()).rejects.toMatchObject({ status: 500 })
  })
})

describe('request log store', () => {
  beforeEach(() => {
    freshPinia()
  })

  it('sends the filters and pages with before_id', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => ({ id: 100 - i }))
    const calls = fakeApi({ 'GET /api/v1/requests': (r) => ({ body: r.query.get('before_id') ? [{ id: 1 }] : rows }) })
    const log = useRequestsStore()
    log.filters.status = '4xx'
    log.filters.client = ' alice '
    await log.fetch()
    expect(calls[0]!.query.get('status')).toBe('4xx')
    expect(calls[0]!.query.get('client')).toBe('alice')
    expect(calls[0]!.query.get('key')).toBeNull()
    expect(log.more).toBe(true)
    await log.loadMore()
    expect(calls[1]!.query.get('before_id')).toBe('51')
    expect(log.rows).toHaveLength(51)
    expect(log.more).toBe(false)
  })
})

describe('batches', () => {
  it('runs in batches with progress, records failed batches, and can stop', async () => {
    const scope = effectScope()
    const b = scope.run(() => useBatch<number, string>())!
    const seen: number[] = []
    const run = b.run(
      [1, 2, 3, 4, 5],
      2,
      (n) => ({ id: String(n), label: `#${n}` }),
      async (batch) => {
        seen.push(b.done.value)
        if (batch.includes(3)) throw new Error('upstream down')
        return batch.map((n) => ({ id: String(n), label: `#${n}`, ok: true, value: 'valid' }))
      },
      (e) => (e as Error).message,
    )
    expect(b.running.value).toBe(true)
    const results = await run
    expect(seen).toEqual([0, 2, 4])
    expect(b.percent.value).toBe(100)
    expect(results.map((r) => r.ok)).toEqual([true, true, false, false, true])
    expect(results[2]!.error).toBe('upstream down')
    expect(b.failed.value).toBe(2)

    const second = b.run([1, 2, 3, 4], 1, (n) => ({ id: String(n), label: '' }), async ([n]) => {
      if (n === 2) b.cancel()
      return [{ id: String(n), label: '', ok: true }]
    }, String)
    expect((await second).length).toBe(2)
    expect(b.cancelled.value).toBe(true)
    scope.stop()
  })
})
