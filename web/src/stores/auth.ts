// Who is logged in: one credential, an expiring session token (from the password or from a
// pasted admin token traded for a session), sent as `Authorization: Bearer`. Kept in sessionStorage (this tab), or in
// localStorage when "remember me" is ticked.

import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api, ApiError, configureApi } from '@/api/client'
import type { SessionView } from '@/api/types'

const TOKEN_KEY = 'gp.token'

interface Stored {
  token: string
  kind: string
  expiresAt: string | null
}

function load(): Stored | null {
  for (const s of [sessionStorage, localStorage]) {
    try {
      const raw = s.getItem(TOKEN_KEY)
      if (raw) {
        const v = JSON.parse(raw) as Stored
        if (v.expiresAt && Date.parse(v.expiresAt) <= Date.now()) {
          s.removeItem(TOKEN_KEY)
          continue
        }
        if (typeof v.token === 'string' && v.token) return v
      }
    } catch {
      // unreadable: ignore
    }
  }
  return null
}

function clearStored(): void {
  for (const s of [sessionStorage, localStorage]) {
    try {
      s.removeItem(TOKEN_KEY)
    } catch {
      // ignore
    }
  }
}

export const useAuthStore = defineStore('auth', () => {
  const initial = load()
  const token = ref<string | null>(initial?.token ?? null)
  const kind = ref<string | null>(initial?.kind ?? null)
  const expiresAt = ref<string | null>(initial?.expiresAt ?? null)
  /** Why the user was sent to the login page (an expired session). */
  const notice = ref<string | null>(null)
  const loggedIn = computed(() => token.value !== null)

  function keep(v: Stored, remember: boolean) {
    clearStored()
    token.value = v.token
    kind.value = v.kind
    expiresAt.value = v.expiresAt
    notice.value = null
    try {
      ;(remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, JSON.stringify(v))
    } catch {
      // storage disabled: logged in for this page only
    }
  }

  function forget() {
    clearStored()
    token.value = null
    kind.value = null
    expiresAt.value = null
  }

  /** Password login. Throws ApiError (401 wrong password, 429 with retryAfter). */
  async function login(password: string, remember = false): Promise<void> {
    const s = await api.post<SessionView>('/api/v1/auth/login', { password }, { auth: false, expect401: true })
    if (!s?.token) throw new ApiError(500, 'the login answer carried no token')
    keep({ token: s.token, kind: s.kind, expiresAt: s.expires_at ?? null }, remember)
  }

  /** Admin-token login: the token is traded for an expiring session, so the browser never
   *  stores the long-lived admin token itself. */
  async function loginWithToken(adminToken: string, remember = false): Promise<void> {
    const t = adminToken.trim()
    if (!t) throw new ApiError(400, 'empty token')
    const s = await api.post<SessionView>('/api/v1/auth/login', { token: t }, { auth: false, expect401: true })
    if (!s?.token) throw new ApiError(500, 'the login answer carried no token')
    keep({ token: s.token, kind: s.kind, expiresAt: s.expires_at ?? null }, remember)
  }

  /** Ends the session on the server (best effort) and forgets the credential. */
  async function logout(): Promise<void> {
    try {
      if (token.value && kind.value === 'session') await api.post<void>('/api/v1/auth/logout', undefined, { expect401: true, timeoutMs: 5000 })
    } finally {
      forget()
    }
  }

  /** A call answered 401: the session ended (expired, or the proxy restarted). */
  function expired(message: string) {
    if (token.value === null) return
    forget()
    notice.value = message
  }

  return { token, kind, expiresAt, notice, loggedIn, login, loginWithToken, logout, expired, forget }
})

/** Wires the API client to the auth store; `onExpired` runs after a 401 (go to the login). */
export function connectApi(onExpired: () => void): void {
  const auth = useAuthStore()
  configureApi({
    token: () => auth.token,
    onUnauthorized: () => {
      if (auth.token === null) return
      auth.expired('session-expired')
      onExpired()
    },
  })
}
