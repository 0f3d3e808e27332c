// Line diffs for the config page: the editor's text against the running configuration
// (computed here), and the server's unified diffs between versions (parsed).

import { diffLines } from 'diff'

export interface DiffLine {
  kind: 'add' | 'del' | 'same' | 'hunk'
  text: string
  /** Line number in the old text (del, same). */
  old?: number
  /** Line number in the new text (add, same). */
  new?: number
}

function splitLines(value: string): string[] {
  const lines = value.split('\n')
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
  return lines
}

/** Every line of both texts, marked added, removed or unchanged. */
export function lineDiff(before: string, after: string): DiffLine[] {
  const out: DiffLine[] = []
  let o = 1
  let n = 1
  for (const part of diffLines(before, after)) {
    for (const text of splitLines(part.value)) {
      if (part.added) out.push({ kind: 'add', text, new: n++ })
      else if (part.removed) out.push({ kind: 'del', text, old: o++ })
      else out.push({ kind: 'same', text, old: o++, new: n++ })
    }
  }
  return out
}

/** Keeps changed lines and `context` lines around them; gaps become one 'hunk' line. */
export function withContext(lines: DiffLine[], context = 3): DiffLine[] {
  const keep = new Array<boolean>(lines.length).fill(false)
  lines.forEach((l, i) => {
    if (l.kind === 'add' || l.kind === 'del') {
      for (let j = Math.max(0, i - context); j <= Math.min(lines.length - 1, i + context); j++) keep[j] = true
    }
  })
  const out: DiffLine[] = []
  let skipped = false
  lines.forEach((l, i) => {
    if (keep[i]) {
      if (skipped || (out.length === 0 && i > 0)) out.push({ kind: 'hunk', text: `@@ ${l.old ?? '?'},${l.new ?? '?'} @@` })
      skipped = false
      out.push(l)
    } else {
      skipped = true
    }
  })
  return out
}

export function countChanges(lines: DiffLine[]): { added: number; removed: number } {
  let added = 0
  let removed = 0
  for (const l of lines) {
    if (l.kind === 'add') added++
    else if (l.kind === 'del') removed++
  }
  return { added, removed }
}

/** A unified diff (as `GET /config/diff` returns it) as lines with numbers. */
export function parseUnified(text: string): DiffLine[] {
  const out: DiffLine[] = []
  let o = 0
  let n = 0
  for (const raw of splitLines(text)) {
    if (raw.startsWith('---') || raw.startsWith('+++')) continue
    const h = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(raw)
    if (h) {
      o = Number(h[1])
      n = Number(h[2])
      out.push({ kind: 'hunk', text: raw })
    } else if (raw.startsWith('+')) out.push({ kind: 'add', text: raw.slice(1), new: n++ })
    else if (raw.startsWith('-')) out.push({ kind: 'del', text: raw.slice(1), old: o++ })
    else if (raw.startsWith('\\')) continue
    else out.push({ kind: 'same', text: raw.startsWith(' ') ? raw.slice(1) : raw, old: o++, new: n++ })
  }
  return out
}
