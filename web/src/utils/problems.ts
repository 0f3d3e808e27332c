// Config problems (line and column, 1-based, from the API) as CodeMirror diagnostics, and as
// short text for messages.

import type { Text } from '@codemirror/state'
import type { Diagnostic } from '@codemirror/lint'
import type { ProblemView } from '@/api/types'

/**
 * Where a problem is. The API sends `line: null` for TOML syntax errors, whose message still
 * names the place ("TOML parse error at line 3, column 9"): that is used then.
 */
export function problemAt(p: ProblemView): { line: number; column: number | null } | null {
  if (p.line && p.line >= 1) return { line: p.line, column: p.column ?? null }
  const m = /\bline (\d+), column (\d+)/.exec(p.message)
  if (m) return { line: Number(m[1]), column: Number(m[2]) }
  return null
}

/**
 * One diagnostic per problem that has a place: from its column to the end of the line (at
 * least one character, so it can be seen). Lines past the end of the text go to the last line.
 * Problems without a place are not marked (the page lists them).
 */
export function toDiagnostics(doc: Text, problems: ProblemView[]): Diagnostic[] {
  const out: Diagnostic[] = []
  for (const p of problems) {
    const at = problemAt(p)
    if (!at) continue
    const line = doc.line(Math.min(at.line, doc.lines))
    const col = Math.max(1, at.column ?? 1)
    const from = Math.min(line.from + col - 1, line.to)
    const to = line.to > from ? line.to : Math.min(from + 1, doc.length)
    out.push({ from, to: Math.max(from, to), severity: 'error', message: p.message, source: 'gemini-proxy' })
  }
  return out
}

/** "3:1", "3", or '' when the problem has no place. */
export function problemPlace(p: ProblemView): string {
  const at = problemAt(p)
  if (!at) return ''
  return at.column ? `${at.line}:${at.column}` : String(at.line)
}

/** The first line of a message (TOML syntax errors add a multi-line source excerpt). */
function firstLine(s: string): string {
  const lines = s.split('\n').map((l) => l.trim()).filter(Boolean)
  // "TOML parse error at line 1, column 17" then the excerpt, then the actual reason last.
  if (lines.length > 1 && /^TOML parse error/.test(lines[0]!)) return `${lines[0]}: ${lines[lines.length - 1]}`
  return lines[0] ?? ''
}

/**
 * The first `max` problems as one line of text ("a; b; c"), and how many were left out, for
 * a toast. `words.at` puts a place before a message ("line 3: …"), `words.more` words the
 * rest ("and 2 more").
 */
export function summarizeProblems(problems: ProblemView[], words: { at: (place: string, message: string) => string; more: (n: number) => string }, max = 3): string {
  const shown = problems.slice(0, max).map((p) => {
    const msg = firstLine(p.message)
    const place = problemPlace(p)
    // A syntax error's message already says where it is.
    return place && !/\bline \d+/.test(msg) ? words.at(place, msg) : msg
  })
  const rest = problems.length - shown.length
  return rest > 0 ? `${shown.join('; ')} ${words.more(rest)}` : shown.join('; ')
}
