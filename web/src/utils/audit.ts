// An audit entry in the reader's language: its action as words (the recorded `keys.disable`
// stays beside them), its actor as the version history names authors (`authorText`), and the
// details the change recorded, each with a label; a config change's comment is translated like
// the history's (`commentText`). An action, actor or detail this UI does not know yet (a newer
// proxy) is shown as recorded.
//
// The proxy records names, fingerprints and numbers, never a key or a token; a string that still
// looks like one (a key pasted as a key's name, a comment) is hidden all the same.

import type { AuditRow } from '@/api/types'
import { authorText, commentText, type Translate } from '@/utils/comment'

type Exists = (key: string) => boolean

/** The actions the proxy records, by kind (the text before the dot), as the filter offers them. */
export const AUDIT_ACTIONS = {
  keys: ['add', 'delete', 'enable', 'disable', 'reset', 'validate'],
  clients: ['create', 'update', 'revoke'],
  config: ['replace', 'reload'],
  certificates: ['renew'],
} as const

export type ActionKind = keyof typeof AUDIT_ACTIONS

export const ACTION_KINDS = Object.keys(AUDIT_ACTIONS) as ActionKind[]

/** `keys.disable` -> "Key disabled"; an action this UI does not know, as recorded. */
export function actionText(action: string, t: Translate, exists: Exists): string {
  const key = `auditAction.${action}`
  return /^[a-z_]+\.[a-z_]+$/.test(action) && exists(key) ? t(key, {}) : action
}

/** The colour of an action's tag: what takes something away is red, what stops a key orange,
 *  what adds green, the rest neutral. */
export function actionType(action: string): 'success' | 'warning' | 'danger' | 'info' {
  const verb = action.slice(action.indexOf('.') + 1)
  if (verb === 'delete' || verb === 'revoke') return 'danger'
  if (verb === 'disable') return 'warning'
  if (verb === 'add' || verb === 'create' || verb === 'enable') return 'success'
  return 'info'
}

/** A Gemini key, a client token (`gp-`), a login session (`gps_`) or a JWT. */
const SECRET = /AIza[0-9A-Za-z_-]{35}|\bgps?[-_][0-9A-Za-z_-]{40,}|\beyJ[0-9A-Za-z_-]*\.eyJ[0-9A-Za-z_-]*\.[0-9A-Za-z_-]+/g

/** `text` with anything that looks like a key or a token replaced by `mask`. */
export function hideSecrets(text: string, mask: string): string {
  return text.replace(SECRET, mask)
}

export interface ActorOption {
  /** The `actor` filter: a credential (`token`: at any address) or an actor as recorded. */
  value: string
  label: string
}

/**
 * The actors to filter by: the admin token and login sessions at any address, SIGHUP, then
 * every actor of the entries shown (an address of its own), in the reader's language.
 */
export function actorOptions(rows: Pick<AuditRow, 'actor' | 'author'>[], t: Translate, exists: Exists): ActorOption[] {
  const kind = (k: string) => t(`versionAuthor.kind.${k}`, {})
  const options: ActorOption[] = [
    { value: 'token', label: t('audit.anyAddress', { who: kind('token') }) },
    { value: 'session', label: t('audit.anyAddress', { who: kind('session') }) },
    { value: 'signal:SIGHUP', label: kind('sighup') },
  ]
  const seen = new Set(options.map((o) => o.value))
  for (const r of rows) {
    if (seen.has(r.actor)) continue
    seen.add(r.actor)
    options.push({ value: r.actor, label: authorText(r, t, exists) })
  }
  return options
}

export interface DetailItem {
  /** The field as recorded (`fingerprint`); '' for a detail that is not an object. */
  field: string
  /** In the reader's language; an unknown field's name as recorded. */
  label: string
  value: string
  /** Shown in a monospace font (fingerprints). */
  mono: boolean
}

/** The fields this UI knows, in the order it shows them. */
const KNOWN = ['comment', 'version', 'fingerprint', 'added', 'checked', 'restart_needed'] as const
const MONO = new Set<string>(['fingerprint', 'added'])

function plain(v: unknown): string {
  if (typeof v === 'string') return v
  if (Array.isArray(v) && v.every((x) => typeof x === 'string' || typeof x === 'number')) return v.join(', ')
  return JSON.stringify(v)
}

/**
 * What an entry's detail says, one item a field: the comment (translated when the server wrote
 * it), the config version, a key's fingerprint, the keys added or checked, the settings that need
 * a restart, then any other field as recorded. Empty fields (no version, nothing to restart) are
 * left out.
 */
export function auditDetails(row: Pick<AuditRow, 'detail' | 'server_comment'>, t: Translate, exists: Exists): DetailItem[] {
  const mask = t('audit.hidden', {})
  const d = row.detail
  if (d === null || d === undefined) return []
  if (typeof d !== 'object' || Array.isArray(d)) return [{ field: '', label: '', value: hideSecrets(plain(d), mask), mono: false }]
  const fields = d as Record<string, unknown>
  const empty = (v: unknown) => v === null || v === undefined || v === '' || (Array.isArray(v) && v.length === 0)
  const order = [...KNOWN.filter((k) => k in fields), ...Object.keys(fields).filter((k) => !(KNOWN as readonly string[]).includes(k))]
  const items: DetailItem[] = []
  for (const field of order) {
    const v = fields[field]
    if (empty(v)) continue
    const known = (KNOWN as readonly string[]).includes(field)
    const value = field === 'comment' && typeof v === 'string' ? commentText({ comment: v, server_comment: row.server_comment }, t, exists) : plain(v)
    items.push({ field, label: known ? t(`auditDetail.${field}`, {}) : field, value: hideSecrets(value, mask), mono: MONO.has(field) })
  }
  return items
}
