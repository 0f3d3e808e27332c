// Who is logged in: one credential, an expiring session token (from the password or from a
// pasted admin token traded for a session), sent as `Authorization: Bearer`. Kept in sessionStorage (this tab), or in
// localStorage when "remember me" is ticked.
//
// When a call is answered 401 (the session expired, or the proxy restarted and forgot it), the
// store says so (`ended`) instead of sending the user away: the layout then asks for the
// password in a dialog over the page, so nothing typed on the page is lost.

import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api, ApiError, configureApi } from '@/api/client'
import type { LoginMethods, SessionView } from '@/api/types'

const TOKEN_KEY = 'gp.token'

export type LoginMethod = 'password' | 'token'

/** The methods to offer, in tab order. Both when the proxy did not say (an older proxy, or it
 *  could not be asked): the login answer then says which one is not set up. */
export function offeredMethods(m: LoginMethods | null): LoginMethod[] {
  const on = ([['password', m?.password], ['token', m?.token]] as const).filter(([, v]) => v).map(([k]) => k)
  return on.length ? on : ['password', 'token']
}

interface Stored {
  token: string
  kind: string
  expiresAt: string | null
}

/** The stored credential, if any; `expired` when one was found but its session is over. */
function load(): { stored: Stored | null; expired: boolean } {
  let expired = false
  for (const s of [sessionStorage, localStorage]) {
    try {
      const raw = s.getItem(TOKEN_KEY)
      if (raw) {
        const v = JSON.parse(raw) as Stored
        if (v.expiresAt && Date.parse(v.expiresAt) <= Date.now()) {
          s.removeItem(TOKEN_KEY)
          expired = true
          continue
        }
        if (typeof v.token === 'string' && v.token) return { stored: v, expired: false }
      }
    } catch {
      // unreadable: ignore
    }
  }
  return { stored: null, expired }
}

function readable(s: Storage): string | null {
  try {
    const raw = s.getItem(TOKEN_KEY)
    return raw ? ((JSON.parse(raw) as Stored).token ?? null) : null
  } catch {
    return null
  }
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
  const { stored: initial, expired: storedExpired } = load()
  const token = ref<string | null>(initial?.token ?? null)
  const kind = ref<string | null>(initial?.kind ?? null)
  const expiresAt = ref<string | null>(initial?.expiresAt ?? null)
  /** Why the user is asked to log in (an expired session), for the login page. */
  const notice = ref<string | null>(storedExpired ? 'session-expired' : null)
  /** The session ended while the app was open: log in again without leaving the page. */
  const ended = ref(false)
  /** Where the last credential was kept, so that logging in again keeps it there. */
  const remembered = ref(initial !== null && readable(localStorage) === initial.token)
  const loggedIn = computed(() => token.value !== null)
  /** Which login methods the proxy has set up (null: not known yet, or it could not say). */
  const methods = ref<LoginMethods | null>(null)

  /** Asks the proxy which login methods are on (no credential needed). Never throws. */
  async function loadMethods(): Promise<void> {
    try {
      methods.value = await api.get<LoginMethods>('/api/v1/auth/methods', undefined, { auth: false, expect401: true, timeoutMs: 5000 })
    } catch {
      methods.value = null
    }
  }

  function keep(v: Stored, remember: boolean) {
    clearStored()
    token.value = v.token
    kind.value = v.kind
    expiresAt.value = v.expiresAt
    notice.value = null
    ended.value = false
    remembered.value = remember
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
      ended.value = false
    }
  }

  /** A call answered 401: the session ended (expired, or the proxy restarted). */
  function expired(message: string) {
    if (token.value === null) return
    forget()
    notice.value = message
    ended.value = true
  }

  return { token, kind, expiresAt, notice, ended, remembered, loggedIn, methods, loadMethods, login, loginWithToken, logout, expired, forget }
})

/**
 * Wires the API client to the auth store. A 401 to a call sent with the current credential
 * ends the session (`ended`), then `onExpired` runs. A late 401 to a call sent with an older
 * credential (before logging in again) changes nothing.
 */
export function connectApi(onExpired: () => void = () => {}): void {
  const auth = useAuthStore()
  configureApi({
    token: () => auth.token,
    onUnauthorized: (used) => {
      if (used === null || used !== auth.token) return
      auth.expired('session-expired')
      onExpired()
    },
  })
}
