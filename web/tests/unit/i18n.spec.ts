import { describe, expect, it } from 'vitest'
import en from '@/i18n/en'
import zhCN from '@/i18n/zh-CN'
import { detectLocale } from '@/i18n'

function keys(o: object, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) => (v && typeof v === 'object' ? keys(v, `${prefix}${k}.`) : [`${prefix}${k}`]))
}

/** The parameters a message uses (plural forms repeat them; Chinese needs only one form). */
function params(s: string): string[] {
  return [...new Set([...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!))].sort()
}

describe('i18n', () => {
  it('has the same messages, with the same parameters, in both languages', () => {
    expect(keys(zhCN).sort()).toEqual(keys(en).sort())
    const get = (o: object, path: string) => path.split('.').reduce<unknown>((x, k) => (x as Record<string, unknown>)[k], o) as string
    for (const k of keys(en)) expect(params(get(zhCN, k)), k).toEqual(params(get(en, k)))
  })
  it('follows the browser language', () => {
    expect(detectLocale(['zh-TW', 'en'])).toBe('zh-CN')
    expect(detectLocale(['de-DE', 'en-US'])).toBe('en')
    expect(detectLocale(['fr'])).toBe('en')
    expect(detectLocale([])).toBe('en')
  })
})
