// Whether the screen is phone-sized (the layout switches to a drawer menu below 768 px).

import { onBeforeUnmount, ref, type Ref } from 'vue'

export function useMedia(query: string): Ref<boolean> {
  const mq = typeof window !== 'undefined' && typeof window.matchMedia === 'function' ? window.matchMedia(query) : null
  const matches = ref(mq?.matches ?? false)
  const update = (e: MediaQueryListEvent) => (matches.value = e.matches)
  mq?.addEventListener?.('change', update)
  onBeforeUnmount(() => mq?.removeEventListener?.('change', update))
  return matches
}

export const usePhone = () => useMedia('(max-width: 767px)')
