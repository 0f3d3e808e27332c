// The dashboard's data: per-minute series and totals for the chosen range, and key counts.

import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api } from '@/api/client'
import type { MinutePoint, Totals } from '@/api/types'
import { bucketize, rangeSpec, summarize } from '@/utils/stats'
import { useKeysStore } from './keys'

export const useDashboardStore = defineStore('dashboard', () => {
  const range = ref('1h')
  const points = ref<MinutePoint[]>([])
  const totals = ref<Totals | null>(null)
  const window = ref<{ from: number; to: number }>({ from: Date.now() - 3_600_000, to: Date.now() })
  const error = ref<unknown>(null)
  const loadedAt = ref<number | null>(null)

  const spec = computed(() => rangeSpec(range.value))
  const buckets = computed(() => bucketize(points.value, window.value.from, window.value.to, spec.value.bucket))
  const summary = computed(() => summarize(points.value, window.value.from, window.value.to, window.value.to))

  async function fetch(): Promise<void> {
    const to = Date.now()
    const from = to - spec.value.span
    const keys = useKeysStore()
    try {
      const [series, tot] = await Promise.all([
        api.get<MinutePoint[]>('/api/v1/stats/timeseries', { from, to }),
        api.get<Totals>('/api/v1/stats/totals', { from, to }),
        keys.fetch(),
      ])
      points.value = series
      totals.value = tot
      window.value = { from, to }
      error.value = null
      loadedAt.value = to
    } catch (e) {
      error.value = e
    }
  }

  return { range, points, totals, window, error, loadedAt, spec, buckets, summary, fetch }
})
