import { afterEach, describe, expect, it, vi } from 'vitest'
import { effectScope, nextTick, ref } from 'vue'
import { headerState, planBulk, pruneSelection, toggleAll } from '@/utils/selection'
import { problemAt, problemPlace, summarizeProblems } from '@/utils/problems'
import { axisNumber } from '@/utils/format'
import { GEMINI_KEY, NAME_RULE } from '@/utils/rules'
import { useSelection } from '@/composables/selection'
import { debouncedCheck } from '@/composables/debounced'
import { errorText } from '@/composables/notify'
import { ApiError } from '@/api/client'
import { isChunkLoadError } from '@/router'
import { i18n } from '@/i18n'

afterEach(() => {
  vi.useRealTimers()
})

describe('selection', () => {
  it('keeps only the selected rows that are shown', () => {
    expect([...pruneSelection(new Set(['a', 'b', 'gone']), ['b', 'c', 'a'])]).toEqual(['b', 'a'])
    expect(pruneSelection(new Set(['a']), []).size).toBe(0)
  })

  it('ticks the header only when every shown row is selected', () => {
    expect(headerState(new Set(), [])).toEqual({ all: false, some: false })
    expect(headerState(new Set(['a', 'b']), ['a', 'b'])).toEqual({ all: true, some: false })
    expect(headerState(new Set(['a']), ['a', 'b'])).toEqual({ all: false, some: true })
    // Rows selected but not shown do not count.
    expect(headerState(new Set(['x']), ['a', 'b'])).toEqual({ all: false, some: false })
  })

  it('selects every shown row from the header, or none when all are', () => {
    expect([...toggleAll(new Set(['a']), ['a', 'b', 'c'])]).toEqual(['a', 'b', 'c'])
    expect([...toggleAll(new Set(['a', 'b', 'c']), ['a', 'b', 'c'])]).toEqual([])
    expect([...toggleAll(new Set(), ['a'])]).toEqual(['a'])
  })

  it('skips keys already disabled when disabling, and keys not disabled when enabling', () => {
    const keys = [
      { name: 'ok', state: 'healthy' },
      { name: 'invalid', state: 'disabled' },
      { name: 'cool', state: 'cooling' },
    ]
    const disable = planBulk('disable', keys)
    expect(disable.targets.map((k) => k.name)).toEqual(['ok', 'cool'])
    expect(disable.skipped.map((k) => k.name)).toEqual(['invalid'])
    const enable = planBulk('enable', keys)
    expect(enable.targets.map((k) => k.name)).toEqual(['invalid'])
    expect(enable.skipped).toHaveLength(2)
    expect(planBulk('reset', keys).targets).toHaveLength(3)
  })

  it('drops rows from the selection when a filter hides them or they are deleted', async () => {
    const scope = effectScope()
    const rows = ref([{ id: 'a' }, { id: 'b' }, { id: 'c' }])
    const sel = scope.run(() => useSelection(rows, (r) => r.id))!
    sel.toggleShown()
    expect(sel.rows.value.map((r) => r.id)).toEqual(['a', 'b', 'c'])
    expect(sel.header.value.all).toBe(true)
    // A filter now shows only b.
    rows.value = [{ id: 'b' }]
    await nextTick()
    expect(sel.rows.value.map((r) => r.id)).toEqual(['b'])
    // Clearing the filter does not bring the hidden ones back into the selection.
    rows.value = [{ id: 'a' }, { id: 'b' }, { id: 'c' }]
    await nextTick()
    expect(sel.rows.value.map((r) => r.id)).toEqual(['b'])
    expect(sel.header.value).toEqual({ all: false, some: true })
    // The header selects what is shown; b deleted leaves the selection.
    sel.toggleShown()
    rows.value = [{ id: 'a' }, { id: 'c' }]
    await nextTick()
    expect(sel.rows.value.map((r) => r.id)).toEqual(['a', 'c'])
    sel.set({ id: 'a' }, false)
    expect(sel.isSelected({ id: 'a' })).toBe(false)
    // A row that is not shown cannot be selected.
    sel.set({ id: 'zzz' }, true)
    expect(sel.rows.value.map((r) => r.id)).toEqual(['c'])
    scope.stop()
  })
})

describe('problems', () => {
  const words = { at: (place: string, message: string) => `line ${place}: ${message}`, more: (n: number) => `(and ${n} more)` }

  it('finds the place of a syntax error in its message when the API gives no line', () => {
    const syntax = { line: null, column: null, message: 'TOML parse error at line 3, column 9\n  |\n3 | bogus = [\n  |         ^\ninvalid array\nexpected `]`' }
    expect(problemAt(syntax)).toEqual({ line: 3, column: 9 })
    expect(problemPlace(syntax)).toBe('3:9')
    expect(problemAt({ line: 2, column: null, message: 'x' })).toEqual({ line: 2, column: null })
    expect(problemAt({ message: 'no place at all' })).toBeNull()
    expect(problemPlace({ message: 'no place at all' })).toBe('')
  })

  it('summarizes the first problems for a toast, and counts the rest', () => {
    const p = (message: string, line?: number) => ({ message, line: line ?? null, column: line ? 1 : null })
    expect(summarizeProblems([p('key name "new key" must be 1-64 characters')], words)).toBe('key name "new key" must be 1-64 characters')
    expect(summarizeProblems([p('a', 3), p('b'), p('c'), p('d'), p('e')], words)).toBe('line 3:1: a; b; c (and 2 more)')
    // A syntax error: its place is in the message already, and only its first and last lines are kept.
    expect(summarizeProblems([p('TOML parse error at line 1, column 17\n  |\n1 | x = [\n  |    ^\ninvalid array')], words)).toBe('TOML parse error at line 1, column 17: invalid array')
  })

  it('shows the problems of a refused change in the error text', () => {
    i18n.global.locale.value = 'en'
    const e = new ApiError(422, 'the configuration is not valid (2 problem(s)); the running one stays in force', {
      problems: [
        { line: null, column: null, message: 'key name "new key" must be 1-64 characters of letters, digits' },
        { line: 4, column: 1, message: 'unknown pool' },
      ],
    })
    expect(errorText(e)).toBe('the configuration is not valid (2 problem(s)); the running one stays in force: key name "new key" must be 1-64 characters of letters, digits; line 4:1: unknown pool (422)')
    const many = new ApiError(422, 'not valid', { problems: Array.from({ length: 5 }, (_, i) => ({ message: `p${i}` })) })
    expect(errorText(many)).toBe('not valid: p0; p1; p2 (and 2 more) (422)')
    expect(errorText(new ApiError(409, 'already there'))).toBe('already there (409)')
  })

  it('says plainly that the session ended instead of the API text for a 401', () => {
    i18n.global.locale.value = 'en'
    expect(errorText(new ApiError(401, 'admin authentication required: send `Authorization: Bearer <admin token or session>`'))).toBe('your session has ended; log in again (401)')
  })
})

describe('rules', () => {
  it('accepts the names and keys the proxy accepts', () => {
    expect(NAME_RULE.test('team-b.1_x@corp')).toBe(true)
    expect(NAME_RULE.test('new key')).toBe(false)
    expect(NAME_RULE.test('x'.repeat(65))).toBe(false)
    expect(GEMINI_KEY.test(`AIza${'a'.repeat(35)}`)).toBe(true)
    expect(GEMINI_KEY.test(`AIza${'a'.repeat(34)}`)).toBe(false)
    expect(GEMINI_KEY.test('hello')).toBe(false)
  })
})

describe('formatting', () => {
  it('labels chart ticks with the digits they need, so small rates do not repeat', () => {
    const ticks = [0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03].map(axisNumber)
    expect(ticks).toEqual(['0', '0.005', '0.01', '0.015', '0.02', '0.025', '0.03'])
    expect(new Set(ticks).size).toBe(ticks.length)
    expect(axisNumber(0.1 + 0.2)).toBe('0.3')
    expect(axisNumber(12.5)).toBe('12.5')
    expect(axisNumber(1500)).toBe('1500')
  })
})

describe('debouncedCheck', () => {
  it('runs once, a while after the last change', async () => {
    vi.useFakeTimers()
    const run = vi.fn(async (s: string) => s.length)
    const result = vi.fn()
    const c = debouncedCheck(600, run, { result })
    c.schedule('a')
    vi.advanceTimersByTime(300)
    c.schedule('ab')
    vi.advanceTimersByTime(599)
    expect(run).not.toHaveBeenCalled()
    expect(c.pending.value).toBe(true)
    await vi.advanceTimersByTimeAsync(1)
    expect(run).toHaveBeenCalledExactlyOnceWith('ab')
    expect(result).toHaveBeenCalledExactlyOnceWith(2, 'ab')
    expect(c.pending.value).toBe(false)
  })

  it('drops an answer that arrives after a newer check started, or after cancel()', async () => {
    vi.useFakeTimers()
    const answers: Record<string, () => void> = {}
    const run = (s: string) => new Promise<string>((ok) => (answers[s] = () => ok(s)))
    const result = vi.fn()
    const error = vi.fn()
    const c = debouncedCheck(600, run, { result, error })
    c.schedule('old')
    await vi.advanceTimersByTimeAsync(600)
    c.schedule('new')
    await vi.advanceTimersByTimeAsync(600)
    // The new answer first, then the old one late: only the new one is shown.
    answers.new!()
    await vi.advanceTimersByTimeAsync(0)
    answers.old!()
    await vi.advanceTimersByTimeAsync(0)
    expect(result.mock.calls).toEqual([['new', 'new']])
    c.schedule('later')
    await vi.advanceTimersByTimeAsync(600)
    c.cancel()
    answers.later!()
    await vi.advanceTimersByTimeAsync(0)
    expect(result).toHaveBeenCalledTimes(1)
    expect(c.pending.value).toBe(false)
    expect(error).not.toHaveBeenCalled()
  })

  it('reports a failure of the newest check', async () => {
    vi.useFakeTimers()
    const error = vi.fn()
    const c = debouncedCheck(10, async () => Promise.reject(new Error('down')), { result: () => {}, error })
    c.schedule(1)
    await vi.advanceTimersByTimeAsync(10)
    expect(error).toHaveBeenCalledOnce()
    expect((error.mock.calls[0]![0] as Error).message).toBe('down')
  })
})

describe('router', () => {
  it('recognises a page whose code could not be fetched', () => {
    expect(isChunkLoadError(new TypeError('Failed to fetch dynamically imported module: http://x/assets/ConfigView-1.js'))).toBe(true)
    expect(isChunkLoadError(new Error('Unable to preload CSS for /assets/ConfigView-1.css'))).toBe(true)
    expect(isChunkLoadError(new Error('something else'))).toBe(false)
  })
})
