// The request log: filters (kept in the page's URL, see `filtersQuery`), pages (newest first,
// older pages by `before_id`), one request.

import { defineStore } from 'pinia'
import { reactive, ref } from 'vue'
import { api, seg } from '@/api/client'
import type { RequestRow } from '@/api/types'

export const PAGE = 50

export interface RequestFilters {
  status: string
  client: string
  key: string
  model: string
}

const FILTERS = ['status', 'client', 'key', 'model'] as const

/** The filters as the page's URL query holds them: only those set, trimmed. */
export function filtersQuery(f: RequestFilters): Record<string, string> {
  const q: Record<string, string> = {}
  for (const k of FILTERS) if (f[k].trim()) q[k] = f[k].trim()
  return q
}

/** The filters a URL query names (anything else in it, such as `id`, is not a filter). */
export function filtersFrom(q: Record<string, unknown>): RequestFilters {
  const one = (v: unknown) => (typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? v[0] : '')
  return { status: one(q.status), client: one(q.client), key: one(q.key), model: one(q.model) }
}

export const useRequestsStore = defineStore('requests', () => {
  const rows = ref<RequestRow[]>([])
  const filters = reactive<RequestFilters>({ status: '', client: '', key: '', model: '' })
  const loading = ref(false)
  const more = ref(false)

  function query(beforeId?: number) {
    return {
      status: filters.status.trim(),
      client: filters.client.trim(),
      key: filters.key.trim(),
      model: filters.model.trim(),
      limit: PAGE,
      before_id: beforeId,
    }
  }

  /** The newest page for the filters. */
  async function fetch(): Promise<void> {
    loading.value = true
    try {
      const page = await api.get<RequestRow[]>('/api/v1/requests', query())
      rows.value = page
      more.value = page.length === PAGE
    } finally {
      loading.value = false
    }
  }

  /** The next older page, appended. */
  async function loadMore(): Promise<void> {
    const last = rows.value[rows.value.length - 1]
    if (!last) return fetch()
    loading.value = true
    try {
      const page = await api.get<RequestRow[]>('/api/v1/requests', query(last.id))
      rows.value = [...rows.value, ...page]
      more.value = page.length === PAGE
    } finally {
      loading.value = false
    }
  }

  const one = (id: number) => api.get<RequestRow>(`/api/v1/requests/${seg(id)}`)

  return { rows, filters, loading, more, fetch, loadMore, one }
})
