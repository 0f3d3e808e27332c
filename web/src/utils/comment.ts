// A config version's comment in the reader's language: the server's own comments (start-up,
// reload, rollback, API edits) come with a kind and parameters and are translated; a comment a
// user wrote, or a kind this UI does not know yet (a newer proxy), is shown as written.

import type { ConfigVersionMeta } from '@/api/types'

type Translate = (key: string, named: Record<string, unknown>, plural?: number) => string

export function commentText(v: Pick<ConfigVersionMeta, 'comment' | 'server_comment'>, t: Translate, exists: (key: string) => boolean): string {
  const c = v.server_comment
  if (!c || !exists(`versionComment.${c.kind}`)) return v.comment
  const params = c.params ?? {}
  // Only a count chooses a plural form.
  const count = typeof params.count === 'number' ? params.count : undefined
  return count === undefined ? t(`versionComment.${c.kind}`, params) : t(`versionComment.${c.kind}`, params, count)
}
