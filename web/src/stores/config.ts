// The running configuration, its validation, saving and version history.

import { defineStore } from 'pinia'
import { ref } from 'vue'
import { api, seg } from '@/api/client'
import type { AppliedView, ConfigVersionMeta, ConfigView, DiffView, Validation, VersionView } from '@/api/types'

export const useConfigStore = defineStore('config', () => {
  const running = ref<ConfigView | null>(null)
  const versions = ref<ConfigVersionMeta[]>([])
  const loading = ref(false)

  async function fetch(): Promise<ConfigView> {
    loading.value = true
    try {
      running.value = await api.get<ConfigView>('/api/v1/config')
      return running.value
    } finally {
      loading.value = false
    }
  }

  async function fetchVersions(): Promise<void> {
    versions.value = await api.get<ConfigVersionMeta[]>('/api/v1/config/versions', { limit: 100 })
  }

  const validate = (text: string) => api.post<Validation>('/api/v1/config/validate', { text })
  const save = (text: string, comment?: string) => api.put<AppliedView>('/api/v1/config', { text, comment: comment || undefined })
  const reload = () => api.post<AppliedView>('/api/v1/config/reload')
  const version = (id: number) => api.get<VersionView>(`/api/v1/config/versions/${seg(id)}`)
  const diff = (from: number, to?: number) => api.get<DiffView>('/api/v1/config/diff', { from, to })
  const rollback = (id: number) => api.post<AppliedView>(`/api/v1/config/versions/${seg(id)}/rollback`)

  return { running, versions, loading, fetch, fetchVersions, validate, save, reload, version, diff, rollback }
})
