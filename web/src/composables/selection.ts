// The selected rows of a filtered table, kept to the rows on screen (see utils/selection.ts):
// whenever the shown rows change (a filter, a delete, a refresh), the selection shrinks to them.

import { computed, ref, watch, type Ref } from 'vue'
import { headerState, pruneSelection, toggleAll } from '@/utils/selection'

export function useSelection<T>(visible: Ref<readonly T[]>, id: (row: T) => string) {
  const ids = ref<Set<string>>(new Set())
  const visibleIds = computed(() => visible.value.map(id))

  watch(visibleIds, (v) => {
    const kept = pruneSelection(ids.value, v)
    if (kept.size !== ids.value.size) ids.value = kept
  })

  /** The selected rows, in table order: what a bulk action acts on. */
  const rows = computed(() => visible.value.filter((r) => ids.value.has(id(r))))
  const header = computed(() => headerState(ids.value, visibleIds.value))

  function isSelected(row: T): boolean {
    return ids.value.has(id(row))
  }

  function set(row: T, on: boolean) {
    const next = new Set(ids.value)
    if (on) next.add(id(row))
    else next.delete(id(row))
    ids.value = pruneSelection(next, visibleIds.value)
  }

  function toggleShown() {
    ids.value = toggleAll(ids.value, visibleIds.value)
  }

  function clear() {
    ids.value = new Set()
  }

  return { rows, header, isSelected, set, toggleShown, clear }
}
