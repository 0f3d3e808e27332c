// Clients of the proxy: their limits, what they use now, and what they used today.

import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api, seg } from '@/api/client'
import type { Changed, ClientUpdate, ClientView, CreatedClient, GroupTotal, Limits, NewClient, Totals } from '@/api/types'

export interface ClientForm {
  name: string
  pools: string[]
  models: string[]
  rpm: number | null
  tpm: number | null
  tpd: number | null
  concurrency: number | null
}

export function emptyForm(): ClientForm {
  return { name: '', pools: [], models: [], rpm: null, tpm: null, tpd: null, concurrency: null }
}

/**
 * Whether the client has a `[[clients]]` entry (it can be edited and revoked); a JWT client
 * without one is listed with the limits its tokens carry.
 */
export function hasEntry(c: ClientView): boolean {
  return c.limits_source === 'entry'
}

export function formOf(c: ClientView): ClientForm {
  return {
    name: c.name,
    pools: [...c.pools],
    models: [...c.limits.models],
    rpm: c.limits.rpm ?? null,
    tpm: c.limits.tpm ?? null,
    tpd: c.limits.tpd ?? null,
    concurrency: c.limits.concurrency ?? null,
  }
}

/** The body of POST /clients: only what is set. */
export function createBody(f: ClientForm): NewClient {
  const body: NewClient = { name: f.name.trim() }
  if (f.pools.length) body.pools = f.pools
  if (f.models.length) body.models = f.models
  for (const k of ['rpm', 'tpm', 'tpd', 'concurrency'] as const) {
    const v = f[k]
    if (v !== null && v !== undefined) body[k] = v
  }
  return body
}

const sameList = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i])

/**
 * The body of PATCH /clients/{name}: only the fields that changed; a cleared limit is `null`
 * (no limit), cleared pools or models are `null` (the default pool, every model).
 */
export function patchBody(before: ClientForm, after: ClientForm): ClientUpdate {
  const body: ClientUpdate = {}
  if (!sameList(before.pools, after.pools)) body.pools = after.pools.length ? after.pools : null
  if (!sameList(before.models, after.models)) body.models = after.models.length ? after.models : null
  for (const k of ['rpm', 'tpm', 'tpd', 'concurrency'] as const) {
    const a = before[k] ?? null
    const b = after[k] ?? null
    if (a !== b) body[k] = b
  }
  return body
}

export type LimitName = keyof Omit<Limits, 'models'>

export const useClientsStore = defineStore('clients', () => {
  const list = ref<ClientView[]>([])
  const today = ref<GroupTotal[]>([])
  const loading = ref(false)
  const error = ref<unknown>(null)

  const todayByName = computed(() => new Map(today.value.map((g) => [g.name, g])))

  async function fetch(): Promise<void> {
    loading.value = true
    try {
      const [clients, totals] = await Promise.all([
        api.get<ClientView[]>('/api/v1/clients'),
        api.get<Totals>('/api/v1/stats/totals', { range: 'today' }),
      ])
      list.value = clients
      today.value = totals.by_client
      error.value = null
    } catch (e) {
      error.value = e
      throw e
    } finally {
      loading.value = false
    }
  }

  const create = (f: ClientForm) => api.post<CreatedClient>('/api/v1/clients', createBody(f))
  const update = (name: string, body: ClientUpdate) => api.patch<Changed>(`/api/v1/clients/${seg(name)}`, body)
  const revoke = (name: string) => api.del<Changed>(`/api/v1/clients/${seg(name)}`)

  return { list, today, todayByName, loading, error, fetch, create, update, revoke }
})
