// The audit log: filters (a kind of action or one action, an actor; kept in the page's URL, see
// `useUrlFilters`), pages newest first.

import { defineStore } from 'pinia'
import { reactive } from 'vue'
import type { AuditRow } from '@/api/types'
import { usePagedLog } from '@/composables/paged'
import { filtersFrom, filtersQuery, type Filters } from '@/composables/urlFilters'

/** `action`: `keys.disable`, or a kind, `keys.*`; `actor`: `token` or `session` at any
 *  address, or an actor as recorded (`session@::1`). */
export const AUDIT_FILTERS = ['action', 'actor'] as const

export type AuditFilters = Filters<(typeof AUDIT_FILTERS)[number]>

export const useAuditStore = defineStore('audit', () => {
  const filters = reactive<AuditFilters>(filtersFrom(AUDIT_FILTERS, {}))
  const { rows, loading, more, fetch, loadMore } = usePagedLog<AuditRow>('/api/v1/audit', () => filtersQuery(AUDIT_FILTERS, filters))
  return { rows, filters, loading, more, fetch, loadMore }
})
