// Long operations over many items (validating or enabling selected keys): run in batches,
// with progress, results per item, and a way to stop after the current batch.

import { computed, ref } from 'vue'

export interface ItemResult<R> {
  id: string
  label: string
  ok: boolean
  value?: R
  error?: string
}

export function useBatch<T, R>() {
  const total = ref(0)
  const done = ref(0)
  const running = ref(false)
  const cancelled = ref(false)
  const results = ref<ItemResult<R>[]>([]) as { value: ItemResult<R>[] }
  const percent = computed(() => (total.value === 0 ? 0 : Math.round((done.value / total.value) * 100)))
  const failed = computed(() => results.value.filter((r) => !r.ok).length)

  /**
   * `work` handles one batch and returns one result per item (in any order); when it throws,
   * every item of the batch is recorded as failed with that error.
   */
  async function run(
    items: T[],
    size: number,
    describe: (item: T) => { id: string; label: string },
    work: (batch: T[]) => Promise<ItemResult<R>[]>,
    errorText: (e: unknown) => string,
  ): Promise<ItemResult<R>[]> {
    total.value = items.length
    done.value = 0
    results.value = []
    cancelled.value = false
    running.value = true
    try {
      for (let i = 0; i < items.length && !cancelled.value; i += size) {
        const batch = items.slice(i, i + size)
        try {
          results.value = [...results.value, ...(await work(batch))]
        } catch (e) {
          const msg = errorText(e)
          results.value = [...results.value, ...batch.map((b) => ({ ...describe(b), ok: false, error: msg }))]
        }
        done.value += batch.length
      }
    } finally {
      running.value = false
    }
    return results.value
  }

  function cancel() {
    cancelled.value = true
  }

  return { total, done, running, cancelled, results, percent, failed, run, cancel }
}
