// Filters that live in the page's URL (`?status=4xx&client=alice`), so that a filtered view can
// be shared, and survives a reload and the back button: applying them is a navigation, and the
// page follows its URL (applied, back, forward, a pasted link).

import { computed, onMounted, watch } from 'vue'
import { useRoute, useRouter } from 'vue-router'

export type Filters<K extends string> = Record<K, string>

/** The filters as a URL query holds them: only those set, trimmed. */
export function filtersQuery<K extends string>(names: readonly K[], f: Filters<K>): Record<string, string> {
  const q: Record<string, string> = {}
  for (const k of names) if (f[k].trim()) q[k] = f[k].trim()
  return q
}

/** The filters a URL query names (anything else in it, such as `id`, is not a filter). */
export function filtersFrom<K extends string>(names: readonly K[], q: Record<string, unknown>): Filters<K> {
  const one = (v: unknown) => (typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? v[0] : '')
  return Object.fromEntries(names.map((k) => [k, one(q[k])])) as Filters<K>
}

export interface UrlFilters {
  /** Applies the filters as typed: a new URL (a history entry) when they changed, else `load`. */
  apply: () => Promise<void>
  /** Clears every filter, and applies that. */
  reset: () => void
}

/**
 * Keeps `filters` (the page's reactive filters) and the URL in step, and calls `load` whenever
 * the URL's filters change, and once when the page opens. `keep`: query parameters that are
 * not filters but stay over an apply (the request log's open `id`).
 */
export function useUrlFilters<K extends string>(names: readonly K[], filters: Filters<K>, load: () => Promise<void>, keep: string[] = []): UrlFilters {
  const route = useRoute()
  const router = useRouter()
  const page = route.name
  /** The URL's filters, as a comparable string. */
  const inUrl = computed(() => JSON.stringify(filtersQuery(names, filtersFrom(names, route.query))))

  async function apply() {
    const want = filtersQuery(names, filters)
    if (JSON.stringify(want) === inUrl.value) return load()
    const kept = Object.fromEntries(keep.flatMap((k) => (typeof route.query[k] === 'string' ? [[k, route.query[k]]] : [])))
    await router.push({ query: { ...want, ...kept } })
  }

  function reset() {
    Object.assign(filters, filtersFrom(names, {}))
    void apply()
  }

  watch(inUrl, () => {
    if (route.name !== page) return // leaving the page
    Object.assign(filters, filtersFrom(names, route.query))
    void load()
  })

  onMounted(() => {
    Object.assign(filters, filtersFrom(names, route.query))
    void load()
  })

  return { apply, reset }
}
