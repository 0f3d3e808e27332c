// Every action tells how it went: a success toast, or an error that stays until closed and
// says what failed and why (the API's own message, its status, a wait when rate limited).

import { ElMessage } from 'element-plus'
import { ApiError } from '@/api/client'
import { i18n } from '@/i18n'

export function errorText(e: unknown): string {
  const t = i18n.global.t
  if (e instanceof ApiError) {
    if (e.status === 0) return t('errors.network', { message: e.message })
    const wait = e.retryAfter !== undefined ? ' ' + t('errors.retryAfter', { s: e.retryAfter }) : ''
    return `${e.message} (${e.status})${wait}`
  }
  if (e instanceof Error) return e.message
  return String(e)
}

export function notifyOk(message: string): void {
  ElMessage({ type: 'success', message, showClose: true, duration: 3000 })
}

export function notifyInfo(message: string): void {
  ElMessage({ type: 'info', message, showClose: true, duration: 3000 })
}

/** `what`: the action that failed, e.g. "Disable key-1a2b". */
export function notifyError(what: string, e: unknown): void {
  ElMessage({ type: 'error', message: `${what}: ${errorText(e)}`, showClose: true, duration: 0 })
}

/** Runs an action and reports it; returns its value, or undefined when it failed. */
export async function act<T>(what: string, fn: () => Promise<T>, success?: (v: T) => string | null): Promise<T | undefined> {
  try {
    const v = await fn()
    const msg = success ? success(v) : null
    if (msg) notifyOk(msg)
    return v
  } catch (e) {
    notifyError(what, e)
    return undefined
  }
}
