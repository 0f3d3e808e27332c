// Config problems (line and column, 1-based, from the API) as CodeMirror diagnostics.

import type { Text } from '@codemirror/state'
import type { Diagnostic } from '@codemirror/lint'
import type { ProblemView } from '@/api/types'

/**
 * One diagnostic per problem that has a line: from its column to the end of the line (at
 * least one character, so it can be seen). Lines past the end of the text go to the last line.
 */
export function toDiagnostics(doc: Text, problems: ProblemView[]): Diagnostic[] {
  const out: Diagnostic[] = []
  for (const p of problems) {
    if (!p.line || p.line < 1) continue
    const line = doc.line(Math.min(p.line, doc.lines))
    const col = Math.max(1, p.column ?? 1)
    const from = Math.min(line.from + col - 1, line.to)
    const to = line.to > from ? line.to : Math.min(from + 1, doc.length)
    out.push({ from, to: Math.max(from, to), severity: 'error', message: p.message, source: 'gemini-proxy' })
  }
  return out
}

/** "line 3, column 1: message", or the message alone. */
export function problemPlace(p: ProblemView): string {
  if (!p.line) return ''
  return p.column ? `${p.line}:${p.column}` : String(p.line)
}
