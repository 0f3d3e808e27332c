import { describe, expect, it, vi } from 'vitest'
import { api, ApiError, buildUrl, configureApi } from '@/api/client'
import { fakeApi } from './helpers'

/** The ApiError a call fails with. */
const failure = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a failure') }, (e: ApiError) => e)

describe('api client', () => {
  it('sends the bearer token as JSON, never cookies, and drops empty query values', async () => {
    configureApi({ token: () => 'gps_abc', onUnauthorized: () => {} })
    const calls = fakeApi({ 'POST /api/v1/keys/import': { body: { added: [], skipped: [] } } })
    await api.post('/api/v1/keys/import', { text: 'x', dry_run: true }, { query: { a: '', b: 2, c: undefined } })
    expect(calls).toHaveLength(1)
    expect(calls[0]!.headers.authorization).toBe('Bearer gps_abc')
    expect(calls[0]!.headers['content-type']).toBe('application/json')
    expect(calls[0]!.credentials).toBe('omit')
    expect(calls[0]!.body).toEqual({ text: 'x', dry_run: true })
    expect(calls[0]!.query.toString()).toBe('b=2')
  })

  it('builds urls', () => {
    expect(buildUrl('/x', { q: 'a b', n: 0, z: null })).toBe('/x?q=a+b&n=0')
    expect(buildUrl('/x')).toBe('/x')
  })

  it('turns error envelopes into ApiError with problems and Retry-After', async () => {
    configureApi({ token: () => 't', onUnauthorized: () => {} })
    fakeApi({
      'PUT /api/v1/config': {
        status: 422,
        body: { error: { code: 422, status: 'INVALID_ARGUMENT', message: 'not valid', problems: [{ line: 3, column: 1, message: 'unknown field' }] } },
      },
      'POST /api/v1/auth/login': { status: 429, headers: { 'retry-after': '42' }, body: { error: { code: 429, status: 'RESOURCE_EXHAUSTED', message: 'too many failed logins' } } },
    })
    const e1 = await failure(api.put('/api/v1/config', { text: '' }))
    expect(e1).toBeInstanceOf(ApiError)
    expect(e1.status).toBe(422)
    expect(e1.message).toBe('not valid')
    expect(e1.problems).toEqual([{ line: 3, column: 1, message: 'unknown field' }])
    const e2 = await failure(api.post('/api/v1/auth/login', { password: 'x' }))
    expect(e2.status).toBe(429)
    expect(e2.retryAfter).toBe(42)
  })

  it('reports a 401 as an ended session, unless the caller expects it', async () => {
    const onUnauthorized = vi.fn()
    configureApi({ token: () => 't', onUnauthorized })
    fakeApi({ 'GET /api/v1/keys': { status: 401, body: { error: { code: 401, status: 'UNAUTHENTICATED', message: 'admin authentication required' } } } })
    await expect(api.get('/api/v1/keys')).rejects.toMatchObject({ status: 401 })
    expect(onUnauthorized).toHaveBeenCalledTimes(1)
    await expect(api.get('/api/v1/keys', undefined, { expect401: true })).rejects.toMatchObject({ status: 401 })
    expect(onUnauthorized).toHaveBeenCalledTimes(1)
  })

  it('reports a network failure with status 0', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))))
    const e = await failure(api.get('/api/v1/keys'))
    expect(e).toBeInstanceOf(ApiError)
    expect(e.status).toBe(0)
    expect(e.message).toContain('Failed to fetch')
  })

  it('answers 204 with undefined', async () => {
    fakeApi({ 'POST /api/v1/auth/logout': { status: 204 } })
    await expect(api.post('/api/v1/auth/logout')).resolves.toBeUndefined()
  })
})
