// An async check that runs a while after the last change (validating the config as it is
// typed) and keeps only the newest answer: an answer to an older call that arrives after a
// newer call was made, or after cancel(), is dropped rather than shown over the newer state.

import { ref, type Ref } from 'vue'

export interface DebouncedCheck<A> {
  /** (Re)starts the wait: the check runs `delayMs` after the last schedule(). */
  schedule: (arg: A) => void
  /** Drops the wait and any answer still on its way (a manual check supersedes it). */
  cancel: () => void
  /** A wait or a check is under way whose answer will be used. */
  pending: Ref<boolean>
}

export function debouncedCheck<A, R>(
  delayMs: number,
  run: (arg: A) => Promise<R>,
  on: { result: (r: R, arg: A) => void; error?: (e: unknown, arg: A) => void },
): DebouncedCheck<A> {
  const pending = ref(false)
  let timer: ReturnType<typeof setTimeout> | null = null
  // Bumped by every schedule() and cancel(); an answer counts only if none happened since.
  let generation = 0

  function stopTimer() {
    if (timer !== null) clearTimeout(timer)
    timer = null
  }

  function schedule(arg: A) {
    stopTimer()
    const mine = ++generation
    pending.value = true
    timer = setTimeout(async () => {
      timer = null
      try {
        const r = await run(arg)
        if (mine === generation) on.result(r, arg)
      } catch (e) {
        if (mine === generation) on.error?.(e, arg)
      } finally {
        if (mine === generation) pending.value = false
      }
    }, delayMs)
  }

  function cancel() {
    stopTimer()
    generation++
    pending.value = false
  }

  return { schedule, cancel, pending }
}
