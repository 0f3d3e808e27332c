// Every action tells how it went: a success toast, or an error that stays until closed and
// says what failed and why (the API's own message, the problems it found, its status, a wait
// when rate limited). The same message shown twice is one toast with a count, not a stack.

import { ElMessage, type MessageHandler } from 'element-plus'
import { ApiError } from '@/api/client'
import { i18n } from '@/i18n'
import { summarizeProblems } from '@/utils/problems'

export function errorText(e: unknown): string {
  const t = i18n.global.t
  if (e instanceof ApiError) {
    if (e.status === 0) return t('errors.network', { message: e.message })
    // The API's 401 text is written for API clients ("send Authorization: Bearer …").
    if (e.status === 401) return t('errors.sessionEnded')
    const wait = e.retryAfter !== undefined ? ' ' + t('errors.retryAfter', { s: e.retryAfter }) : ''
    // A 422 says "the configuration is not valid (1 problem(s))": the problems are the reason.
    const why = e.problems.length
      ? ': ' + summarizeProblems(e.problems, { at: (place, message) => t('errors.problemAt', { place, message }), more: (n) => t('errors.moreProblems', { n }) })
      : ''
    return `${e.message}${why} (${e.status})${wait}`
  }
  if (e instanceof Error) return e.message
  return String(e)
}

export function notifyOk(message: string): void {
  ElMessage({ type: 'success', message, showClose: true, duration: 3000, grouping: true })
}

export function notifyInfo(message: string): void {
  ElMessage({ type: 'info', message, showClose: true, duration: 3000, grouping: true })
}

/** Toasts about calls refused because the session ended: moot once logged in again. */
const sessionToasts = new Set<MessageHandler>()

/** `what`: the action that failed, e.g. "Disable key-1a2b". */
export function notifyError(what: string, e: unknown): void {
  const h = ElMessage({ type: 'error', message: `${what}: ${errorText(e)}`, showClose: true, duration: 0, grouping: true })
  if (e instanceof ApiError && e.status === 401) sessionToasts.add(h)
}

/** Closes the "your session has ended" toasts (after logging in again). */
export function closeSessionErrors(): void {
  for (const h of sessionToasts) h.close()
  sessionToasts.clear()
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
