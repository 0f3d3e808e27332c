// The key pool as the admin API reports it, and the operations on keys.

import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api, seg } from '@/api/client'
import type { Added, Deleted, KeyList, KeyState, KeyStateView, KeyView, Validated } from '@/api/types'

export type StateFilter = KeyState | ''

/** The same matching as the API's `q`: names (any case) and fingerprints. */
export function matchesKey(k: KeyView, q: string, state: StateFilter, pool: string): boolean {
  if (state && k.state !== state) return false
  if (pool && k.pool !== pool) return false
  const n = q.trim().toLowerCase()
  return !n || k.name.toLowerCase().includes(n) || k.fingerprint.includes(n)
}

/** Fingerprints to validate per request: small, so progress moves and a slow key holds up few. */
export const VALIDATE_BATCH = 5

export const useKeysStore = defineStore('keys', () => {
  const list = ref<KeyList | null>(null)
  const loading = ref(false)
  const error = ref<unknown>(null)
  const lastLoaded = ref<number | null>(null)
  const q = ref('')
  const state = ref<StateFilter>('')
  const pool = ref('')

  const keys = computed(() => list.value?.keys ?? [])
  // The configured pools, also those without keys (so a new key can go into one).
  const pools = computed(() => list.value?.pools ?? [])
  const filtered = computed(() => keys.value.filter((k) => matchesKey(k, q.value, state.value, pool.value)))
  const counts = computed(() => ({
    total: list.value?.total ?? 0,
    healthy: list.value?.healthy ?? 0,
    cooling: list.value?.cooling ?? 0,
    broken: list.value?.broken ?? 0,
    disabled: list.value?.disabled ?? 0,
  }))

  async function fetch(): Promise<void> {
    loading.value = true
    try {
      list.value = await api.get<KeyList>('/api/v1/keys')
      error.value = null
      lastLoaded.value = Date.now()
    } catch (e) {
      error.value = e
      throw e
    } finally {
      loading.value = false
    }
  }

  const add = (key: string, name?: string, poolName?: string, weight?: number) =>
    api.post<Added>('/api/v1/keys', { key, name: name || undefined, pool: poolName || undefined, weight: weight ?? undefined })

  const importKeys = (text: string, poolName: string | undefined, dryRun: boolean) =>
    api.post<Added>('/api/v1/keys/import', { text, pool: poolName || undefined, dry_run: dryRun })

  /** Live check of some keys (one request; see VALIDATE_BATCH). */
  const validate = (fingerprints: string[]) =>
    api.post<Validated[]>('/api/v1/keys/validate', { fingerprints }, { timeoutMs: 120_000 })

  const enable = (fp: string) => api.post<KeyStateView>(`/api/v1/keys/${seg(fp)}/enable`)
  const disable = (fp: string) => api.post<KeyStateView>(`/api/v1/keys/${seg(fp)}/disable`)
  const reset = (fp: string) => api.post<KeyStateView>(`/api/v1/keys/${seg(fp)}/reset`)
  const remove = (fp: string) => api.del<Deleted>(`/api/v1/keys/${seg(fp)}`)

  return { list, loading, error, lastLoaded, q, state, pool, keys, pools, filtered, counts, fetch, add, importKeys, validate, enable, disable, reset, remove }
})
