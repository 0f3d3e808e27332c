// TLS certificates (only when the proxy serves TLS: GET /api/v1/certificates answers 404
// otherwise, and the page and its menu entry stay hidden).

import { defineStore } from 'pinia'
import { ref } from 'vue'
import { api, ApiError, seg } from '@/api/client'
import type { Certificate } from '@/api/types'

export const useCertsStore = defineStore('certs', () => {
  /** null: not known yet. */
  const available = ref<boolean | null>(null)
  const list = ref<Certificate[]>([])
  const loading = ref(false)

  /** Loads the list; a 404 means TLS is not configured (or the API has no TLS routes). */
  async function fetch(): Promise<void> {
    loading.value = true
    try {
      list.value = await api.get<Certificate[]>('/api/v1/certificates')
      available.value = true
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        available.value = false
        list.value = []
        return
      }
      throw e
    } finally {
      loading.value = false
    }
  }

  /** Starts a renewal (202: it runs in the background). */
  const renew = (name: string) => api.post<unknown>(`/api/v1/certificates/${seg(name)}/renew`)

  return { available, list, loading, fetch, renew }
})
