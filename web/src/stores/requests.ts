// The request log: filters (kept in the page's URL, see `useUrlFilters`), pages (newest first,
// older pages by `before_id`), one request.

import { defineStore } from 'pinia'
import { reactive } from 'vue'
import { api, seg } from '@/api/client'
import type { RequestRow } from '@/api/types'
import { usePagedLog } from '@/composables/paged'
import { filtersFrom, filtersQuery, type Filters } from '@/composables/urlFilters'

export const REQUEST_FILTERS = ['status', 'client', 'key', 'model'] as const

export type RequestFilters = Filters<(typeof REQUEST_FILTERS)[number]>

export const useRequestsStore = defineStore('requests', () => {
  const filters = reactive<RequestFilters>(filtersFrom(REQUEST_FILTERS, {}))
  const { rows, loading, more, fetch, loadMore } = usePagedLog<RequestRow>('/api/v1/requests', () => filtersQuery(REQUEST_FILTERS, filters))

  const one = (id: number) => api.get<RequestRow>(`/api/v1/requests/${seg(id)}`)

  return { rows, filters, loading, more, fetch, loadMore, one }
})
