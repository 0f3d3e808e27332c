// A config version's comment and author in the reader's language (in the version history, and
// in the audit log, whose entries carry both the same way). The server's own comments (start-up,
// reload, rollback, API edits) come with a kind and parameters and are translated; a comment a
// user wrote has no kind and is shown as written, even when it reads like the server's. Authors
// come as a kind too (start-up, SIGHUP, the admin token or a login session and its address); an
// author or a kind this UI does not know yet (a newer proxy) is shown as the server recorded it.

import type { ConfigVersionMeta } from '@/api/types'

export type Translate = (key: string, named: Record<string, unknown>, plural?: number) => string

export function commentText(v: Pick<ConfigVersionMeta, 'comment' | 'server_comment'>, t: Translate, exists: (key: string) => boolean): string {
  const c = v.server_comment
  if (!c || !exists(`versionComment.${c.kind}`)) return v.comment
  const params = c.params ?? {}
  // Only a count chooses a plural form.
  const count = typeof params.count === 'number' ? params.count : undefined
  return count === undefined ? t(`versionComment.${c.kind}`, params) : t(`versionComment.${c.kind}`, params, count)
}

export function authorText(v: Pick<ConfigVersionMeta, 'actor' | 'author'>, t: Translate, exists: (key: string) => boolean): string {
  const a = v.author
  if (!a || !exists(`versionAuthor.kind.${a.kind}`)) return v.actor
  const who = t(`versionAuthor.kind.${a.kind}`, {})
  const address = a.params?.address
  return address ? t('versionAuthor.at', { who, address }) : who
}
