// One clock for every countdown on the page: a reactive "now" that ticks each second while
// something uses it.

import { onBeforeUnmount, ref, type Ref } from 'vue'

const now = ref(Date.now())
let users = 0
let timer: ReturnType<typeof setInterval> | null = null

/** The current time (ms), updated every second while the calling component is mounted. */
export function useNow(): Ref<number> {
  users++
  now.value = Date.now()
  if (timer === null) {
    timer = setInterval(() => (now.value = Date.now()), 1000)
  }
  onBeforeUnmount(() => {
    users--
    if (users === 0 && timer !== null) {
      clearInterval(timer)
      timer = null
    }
  })
  return now
}
