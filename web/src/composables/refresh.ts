// Periodic refresh for live pages: no overlapping calls, paused while the tab is hidden,
// stopped when the page goes away.

import { onBeforeUnmount, onMounted, ref, watch, type Ref } from 'vue'

export interface AutoRefresh {
  /** Interval in ms; 0 = off. */
  interval: Ref<number>
  /** A refresh is running. */
  busy: Ref<boolean>
  /** Runs `fn` now (unless one is running). */
  now: () => Promise<void>
}

export function useAutoRefresh(fn: () => Promise<void>, initialMs: number): AutoRefresh {
  const interval = ref(initialMs)
  const busy = ref(false)
  let timer: ReturnType<typeof setTimeout> | null = null
  let stopped = false

  async function now() {
    if (busy.value) return
    busy.value = true
    try {
      await fn()
    } finally {
      busy.value = false
    }
  }

  function schedule() {
    if (timer !== null) clearTimeout(timer)
    timer = null
    if (stopped || interval.value <= 0) return
    timer = setTimeout(async () => {
      if (typeof document === 'undefined' || document.visibilityState !== 'hidden') await now()
      schedule()
    }, interval.value)
  }

  function onVisible() {
    if (document.visibilityState === 'visible' && interval.value > 0) void now()
  }

  watch(interval, schedule)
  onMounted(() => {
    document.addEventListener('visibilitychange', onVisible)
    schedule()
  })
  onBeforeUnmount(() => {
    stopped = true
    if (timer !== null) clearTimeout(timer)
    document.removeEventListener('visibilitychange', onVisible)
  })
  return { interval, busy, now }
}
