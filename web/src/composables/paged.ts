// A log read newest first, a page at a time (the request log, the audit log): the newest page
// for the current filters, then older pages by `before_id`, the id of the oldest row shown; and
// how its page reads it.

import { ref, type Ref } from 'vue'
import { api, type Query } from '@/api/client'
import { useAutoRefresh, type AutoRefresh } from '@/composables/refresh'
import { errorText, notifyError } from '@/composables/notify'

export const PAGE = 50

export interface PagedLog<Row> {
  rows: Ref<Row[]>
  loading: Ref<boolean>
  /** The last page was full: there may be older rows. */
  more: Ref<boolean>
  /** The newest page. */
  fetch: () => Promise<void>
  /** The next older page, appended. */
  loadMore: () => Promise<void>
}

/** `query`: the filters, as sent (without `limit` and `before_id`). */
export function usePagedLog<Row extends { id: number }>(path: string, query: () => Query, page = PAGE): PagedLog<Row> {
  const rows = ref<Row[]>([]) as Ref<Row[]>
  const loading = ref(false)
  const more = ref(false)

  async function get(beforeId?: number): Promise<Row[]> {
    loading.value = true
    try {
      const got = await api.get<Row[]>(path, { ...query(), limit: page, before_id: beforeId })
      more.value = got.length === page
      return got
    } finally {
      loading.value = false
    }
  }

  async function fetch(): Promise<void> {
    rows.value = await get()
  }

  async function loadMore(): Promise<void> {
    const last = rows.value[rows.value.length - 1]
    if (!last) return fetch()
    const older = await get(last.id)
    rows.value = [...rows.value, ...older]
  }

  return { rows, loading, more, fetch, loadMore }
}

export interface LogView {
  /** Why the newest page could not be read (shown over the table); null once it was. */
  loadError: Ref<string | null>
  /** Reads the newest page again. */
  load: () => Promise<void>
  /** Reads the next older page; a failure is a notification. */
  more: () => Promise<void>
  /** Off at first; it holds still while older pages are shown (a refresh would drop them). */
  auto: AutoRefresh
}

/** How a log page reads its log (a store made with `usePagedLog`). */
export function useLogView(log: { rows: { id: number }[]; fetch: () => Promise<void>; loadMore: () => Promise<void> }, moreFailed: () => string): LogView {
  const loadError = ref<string | null>(null)

  async function load() {
    try {
      await log.fetch()
      loadError.value = null
    } catch (e) {
      loadError.value = errorText(e)
    }
  }

  async function more() {
    try {
      await log.loadMore()
    } catch (e) {
      notifyError(moreFailed(), e)
    }
  }

  const auto = useAutoRefresh(async () => {
    if (log.rows.length <= PAGE) await load()
  }, 0)

  return { loadError, load, more, auto }
}
