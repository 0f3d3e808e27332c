// Test helpers: a fake admin API behind fetch, and mounting with the app's plugins.
import { vi } from 'vitest'
import { mount, flushPromises, type MountingOptions } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { createMemoryHistory, createRouter, type Router } from 'vue-router'
import type { Component } from 'vue'
import { i18n } from '@/i18n'

export interface FakeResponse {
  status?: number
  body?: unknown
  headers?: Record<string, string>
}

export type Handler = (req: { method: string; path: string; query: URLSearchParams; body: unknown; headers: Record<string, string> }) => FakeResponse | Promise<FakeResponse>

export interface Call {
  method: string
  path: string
  query: URLSearchParams
  body: unknown
  headers: Record<string, string>
  credentials?: RequestCredentials
}

/**
 * Replaces fetch with a router over `routes` ("GET /api/v1/keys" -> handler or response).
 * Unknown routes answer the API's JSON 404. Returns the recorded calls.
 */
export function fakeApi(routes: Record<string, Handler | FakeResponse>): Call[] {
  const calls: Call[] = []
  vi.stubGlobal(
    'fetch',
    vi.fn(async (input: string, init: RequestInit = {}) => {
      const url = new URL(input, 'http://admin.test')
      const method = (init.method ?? 'GET').toUpperCase()
      const headers = { ...(init.headers as Record<string, string>) }
      const body = typeof init.body === 'string' ? JSON.parse(init.body) : undefined
      calls.push({ method, path: url.pathname, query: url.searchParams, body, headers, credentials: init.credentials })
      const route = routes[`${method} ${url.pathname}`]
      let res: FakeResponse
      if (route === undefined) res = { status: 404, body: { error: { code: 404, status: 'NOT_FOUND', message: 'no such admin route' } } }
      else if (typeof route === 'function') res = await route({ method, path: url.pathname, query: url.searchParams, body, headers })
      else res = route
      const status = res.status ?? 200
      const text = res.body === undefined ? '' : JSON.stringify(res.body)
      return new Response(status === 204 ? null : text, { status, headers: { 'content-type': 'application/json', ...(res.headers ?? {}) } })
    }),
  )
  return calls
}

export function freshPinia() {
  const pinia = createPinia()
  setActivePinia(pinia)
  return pinia
}

export function testRouter(): Router {
  const Empty = { template: '<div />' }
  return createRouter({
    history: createMemoryHistory(),
    routes: [
      { path: '/', component: Empty },
      { path: '/login', name: 'login', component: Empty },
      { path: '/dashboard', name: 'dashboard', component: Empty },
      { path: '/keys', name: 'keys', component: Empty },
      { path: '/clients', name: 'clients', component: Empty },
      { path: '/config', name: 'config', component: Empty },
      { path: '/requests', name: 'requests', component: Empty },
      { path: '/audit', name: 'audit', component: Empty },
      { path: '/certificates', name: 'certificates', component: Empty },
    ],
  })
}

export async function mountPage<T extends Component>(component: T, opts: MountingOptions<Record<string, unknown>> & { path?: string } = {}) {
  i18n.global.locale.value = 'en'
  const pinia = freshPinia()
  const router = testRouter()
  await router.push(opts.path ?? '/')
  await router.isReady()
  const wrapper = mount(component as Component, {
    ...opts,
    attachTo: document.body,
    global: { plugins: [pinia, i18n, router], ...(opts.global ?? {}) },
  })
  await flushPromises()
  return { wrapper, router, pinia }
}

/** Waits for pending promises and a few timer-free ticks. */
export async function settle(times = 3) {
  for (let i = 0; i < times; i++) await flushPromises()
}
