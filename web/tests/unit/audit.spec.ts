// The audit log: its words (actions, actors, details) in both languages, the filters it sends,
// its pages, and the page itself: empty, failed, filtered from its URL, on a phone.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ElSelect } from 'element-plus'
import AuditView from '@/views/AuditView.vue'
import { i18n } from '@/i18n'
import { useAuditStore } from '@/stores/audit'
import type { AuditRow } from '@/api/types'
import { ACTION_KINDS, AUDIT_ACTIONS, actionText, actionType, actorOptions, auditDetails, hideSecrets } from '@/utils/audit'
import { fakeApi, freshPinia, mountPage, settle } from './helpers'

const t = (k: string, named: Record<string, unknown>, n?: number) => (n === undefined ? i18n.global.t(k, named) : i18n.global.t(k, named, n))
const exists = (k: string) => i18n.global.te(k)
const KEY = `AIza${'x'.repeat(35)}`
const CLIENT_TOKEN = `gp-${'A'.repeat(43)}`

function entry(id: number, over: Partial<AuditRow> = {}): AuditRow {
  return { id, time_ms: Date.now() - 5 * 60_000, actor: 'token@127.0.0.1', author: { kind: 'token', params: { address: '127.0.0.1' } }, action: 'keys.disable', target: 'key-a', detail: { fingerprint: 'aaaaaaaaaaaa' }, server_comment: null, ...over }
}

const rollback = entry(7, {
  actor: 'session@::1',
  author: { kind: 'session', params: { address: '::1' } },
  action: 'config.replace',
  target: 'config',
  detail: { version: 12, comment: 'rollback to version 3', restart_needed: ['threads'] },
  server_comment: { kind: 'rollback', params: { version: 3 } },
})

afterEach(() => {
  i18n.global.locale.value = 'en'
})

describe('audit words', () => {
  it('names every action the proxy records, in both languages, and an unknown one as recorded', () => {
    for (const locale of ['en', 'zh-CN'] as const) {
      i18n.global.locale.value = locale
      for (const kind of ACTION_KINDS) {
        for (const verb of AUDIT_ACTIONS[kind]) {
          const text = actionText(`${kind}.${verb}`, t, exists)
          expect(text, `${locale} ${kind}.${verb}`).not.toBe(`${kind}.${verb}`)
          expect(text).not.toMatch(/auditAction/)
        }
      }
    }
    i18n.global.locale.value = 'en'
    expect(actionText('keys.disable', t, exists)).toBe('Key disabled')
    expect(actionText('config.replace', t, exists)).toBe('Config replaced')
    // A newer proxy's action, a kind alone, odd text: as recorded.
    expect(actionText('keys.rotate', t, exists)).toBe('keys.rotate')
    expect(actionText('keys', t, exists)).toBe('keys')
    expect(actionText('keys.disable.more', t, exists)).toBe('keys.disable.more')
    i18n.global.locale.value = 'zh-CN'
    expect(actionText('keys.disable', t, exists)).toBe('停用密钥')
    expect(actionText('clients.create', t, exists)).toBe('创建客户端')
  })

  it('colours what takes away, stops and adds', () => {
    expect(['keys.delete', 'clients.revoke', 'keys.disable', 'keys.add', 'clients.create', 'keys.enable', 'config.replace', 'odd'].map(actionType)).toEqual([
      'danger', 'danger', 'warning', 'success', 'success', 'success', 'info', 'info',
    ])
  })

  it('hides anything that looks like a key or a token, and nothing else', () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'
    expect(hideSecrets(`a ${KEY} b ${CLIENT_TOKEN} c gps_${'b'.repeat(43)} d ${jwt}`, '#')).toBe('a # b # c # d #')
    for (const fine of ['key-aaaaaaaaaaaa', 'aaaaaaaaaaaa', 'gp-short', 'AIzaTooShort', 'client e2e-app created', 'token@127.0.0.1']) expect(hideSecrets(fine, '#')).toBe(fine)
  })

  it('offers the credentials at any address, SIGHUP, then every actor shown, once', () => {
    const rows = [entry(3), entry(2), rollback, entry(1, { actor: 'robot', author: null })]
    const options = actorOptions(rows, t, exists)
    expect(options).toEqual([
      { value: 'token', label: 'Admin token, any address' },
      { value: 'session', label: 'Login session, any address' },
      { value: 'signal:SIGHUP', label: 'SIGHUP signal' },
      { value: 'token@127.0.0.1', label: 'Admin token from 127.0.0.1' },
      { value: 'session@::1', label: 'Login session from ::1' },
      { value: 'robot', label: 'robot' },
    ])
    expect(actorOptions([entry(1, { actor: 'signal:SIGHUP', author: { kind: 'sighup' } })], t, exists)).toHaveLength(3)
    i18n.global.locale.value = 'zh-CN'
    expect(actorOptions([rollback], t, exists).map((o) => o.label)).toEqual(['管理令牌（任意地址）', '登录会话（任意地址）', 'SIGHUP 信号', '登录会话（::1）'])
  })

  it("lists the details: the server's comment translated, a user's as written, empty fields left out", () => {
    const shown = (r: AuditRow) => auditDetails(r, t, exists).map((d) => [d.label, d.value])
    expect(shown(rollback)).toEqual([
      ['Comment', 'Rollback to version 3'],
      ['Config version', '12'],
      ['Needs a restart', 'threads'],
    ])
    const typed = entry(8, { action: 'config.replace', detail: { version: 13, comment: 'rollback to version 3', restart_needed: [] }, server_comment: null })
    expect(shown(typed)).toEqual([
      ['Comment', 'rollback to version 3'],
      ['Config version', '13'],
    ])
    const added = entry(9, { action: 'keys.add', detail: { added: ['aaaaaaaaaaaa', 'bbbbbbbbbbbb'], version: null, comment: '2 key(s) added' }, server_comment: { kind: 'keys_added', params: { count: 2 } } })
    expect(auditDetails(added, t, exists)).toEqual([
      { field: 'comment', label: 'Comment', value: '2 keys added', mono: false },
      { field: 'added', label: 'Keys added', value: 'aaaaaaaaaaaa, bbbbbbbbbbbb', mono: true },
    ])
    expect(shown(entry(10, { action: 'keys.validate', detail: { checked: 4 } }))).toEqual([['Keys checked', '4']])
    expect(auditDetails(entry(11), t, exists)).toEqual([{ field: 'fingerprint', label: 'Fingerprint', value: 'aaaaaaaaaaaa', mono: true }])
    // A newer proxy's fields as recorded; a detail that is not an object as it is; none at all.
    expect(shown(entry(12, { detail: { zone: 'eu', limits: { rpm: 5 } } }))).toEqual([
      ['zone', 'eu'],
      ['limits', '{"rpm":5}'],
    ])
    expect(shown(entry(13, { detail: 'not json' }))).toEqual([['', 'not json']])
    expect(shown(entry(14, { detail: {} }))).toEqual([])
    expect(shown(entry(15, { detail: null }))).toEqual([])
    // Whatever a field holds, nothing that looks like a secret is shown.
    const leaky = shown(entry(16, { detail: { comment: `pasted ${KEY} by mistake`, note: CLIENT_TOKEN } }))
    expect(JSON.stringify(leaky)).not.toContain(KEY)
    expect(JSON.stringify(leaky)).not.toContain(CLIENT_TOKEN)
    expect(leaky).toEqual([
      ['Comment', 'pasted (hidden: looks like a secret) by mistake'],
      ['note', '(hidden: looks like a secret)'],
    ])
    i18n.global.locale.value = 'zh-CN'
    expect(shown(rollback)).toEqual([
      ['说明', '回滚到版本 3'],
      ['配置版本', '12'],
      ['需要重启', 'threads'],
    ])
  })
})

describe('audit store', () => {
  beforeEach(() => {
    freshPinia()
  })

  it('sends the filters it has, and pages with before_id', async () => {
    const page = Array.from({ length: 50 }, (_, i) => entry(100 - i))
    const calls = fakeApi({ 'GET /api/v1/audit': (r) => ({ body: r.query.get('before_id') ? [entry(1)] : page }) })
    const audit = useAuditStore()
    audit.filters.action = 'keys.*'
    audit.filters.actor = ' '
    await audit.fetch()
    expect(Object.fromEntries(calls[0]!.query)).toEqual({ action: 'keys.*', limit: '50' })
    expect(audit.more).toBe(true)
    await audit.loadMore()
    expect(Object.fromEntries(calls[1]!.query)).toEqual({ action: 'keys.*', limit: '50', before_id: '51' })
    expect(audit.rows.map((r) => r.id).slice(-2)).toEqual([51, 1])
    expect(audit.more).toBe(false)
    audit.filters.actor = 'session'
    await audit.fetch()
    expect(calls[2]!.query.get('actor')).toBe('session')
    expect(audit.rows).toHaveLength(50)
  })
})

describe('AuditView', () => {
  const sent = (calls: ReturnType<typeof fakeApi>) => calls.filter((c) => c.path === '/api/v1/audit').map((c) => Object.fromEntries([...c.query].filter(([k]) => k !== 'limit')))

  it('shows who did what and when, in both languages, with the recorded action beside the words', async () => {
    fakeApi({ 'GET /api/v1/audit': { body: [rollback, entry(5)] } })
    const { wrapper } = await mountPage(AuditView, { path: '/audit' })
    await settle()
    const text = (what: string, id: number) => wrapper.find(`[data-test=${what}-${id}]`).text()
    expect(wrapper.findAll('.el-table__header th').map((h) => h.text())).toEqual(['Time', 'By', 'Action', 'Target', 'Details'])
    expect(text('actor', 7)).toBe('Login session from ::1')
    expect(wrapper.find('[data-test=actor-7]').attributes('title')).toBe('session@::1')
    expect(text('action', 7)).toBe('Config replaced')
    expect(text('raw-action', 7)).toBe('config.replace')
    expect(text('target', 7)).toBe('config')
    expect(text('details', 7)).toContain('Comment: Rollback to version 3')
    expect(text('details', 5)).toBe('Fingerprint: aaaaaaaaaaaa')
    // How long ago, and when.
    expect(text('time', 5)).toMatch(/^5 min\. ago/)
    expect(text('time', 5)).toMatch(/\d{2}:\d{2}:\d{2}/)
    expect(wrapper.find('[data-test=audit-end]').text()).toBe('2 entries shown')
    expect(wrapper.find('[data-test=load-more]').exists()).toBe(false)
    i18n.global.locale.value = 'zh-CN'
    await settle()
    expect(text('actor', 7)).toBe('登录会话（::1）')
    expect(text('action', 5)).toBe('停用密钥')
    expect(text('raw-action', 5)).toBe('keys.disable')
    expect(text('details', 7)).toContain('说明: 回滚到版本 3')
    expect(text('time', 5)).toMatch(/^5分钟前/)
    wrapper.unmount()
  })

  it('takes its filters from the URL, applies a change as a new URL, and says when nothing matches', async () => {
    const calls = fakeApi({ 'GET /api/v1/audit': (r) => ({ body: r.query.get('actor') === 'session' ? [] : [entry(1)] }) })
    const { wrapper, router } = await mountPage(AuditView, { path: '/audit?action=keys.*&actor=session' })
    await settle()
    expect(sent(calls)).toEqual([{ action: 'keys.*', actor: 'session' }])
    expect(wrapper.find('[data-test=audit-table]').text()).toContain('No entries match these filters')
    // The actor cleared: applying is a navigation, and the page follows its URL.
    useAuditStore().filters.actor = ''
    wrapper.findComponent<typeof ElSelect>('[data-test=filter-actor]').vm.$emit('change', '')
    await settle()
    expect(router.currentRoute.value.fullPath).toBe('/audit?action=keys.*')
    expect(sent(calls).at(-1)).toEqual({ action: 'keys.*' })
    expect(wrapper.find('[data-test=action-1]').text()).toBe('Key disabled')
    await wrapper.find('[data-test=filter-reset]').trigger('click')
    await settle()
    expect(router.currentRoute.value.fullPath).toBe('/audit')
    expect(sent(calls).at(-1)).toEqual({})
    wrapper.unmount()
  })

  it('says when the log is empty, and when it cannot be read', async () => {
    let fail = true
    fakeApi({ 'GET /api/v1/audit': () => (fail ? { status: 500, body: { error: { code: 500, status: 'INTERNAL', message: 'state store: disk I/O error' } } } : { body: [] }) })
    const { wrapper } = await mountPage(AuditView, { path: '/audit' })
    await settle()
    expect(wrapper.find('[data-test=audit-error]').text()).toContain('Cannot load the audit log: state store: disk I/O error')
    fail = false
    await wrapper.find('[data-test=audit-refresh]').trigger('click')
    await settle()
    expect(wrapper.find('[data-test=audit-error]').exists()).toBe(false)
    expect(wrapper.find('[data-test=audit-table]').text()).toContain('No entries: nothing has been changed over the admin API yet')
    expect(wrapper.find('[data-test=filter-reset]').attributes('disabled')).toBeDefined()
    wrapper.unmount()
  })

  it('loads older entries on demand', async () => {
    const calls = fakeApi({ 'GET /api/v1/audit': (r) => ({ body: r.query.get('before_id') ? [entry(1)] : Array.from({ length: 50 }, (_, i) => entry(100 - i)) }) })
    const { wrapper } = await mountPage(AuditView, { path: '/audit' })
    await settle()
    await wrapper.find('[data-test=load-more]').trigger('click')
    await settle()
    expect(calls.at(-1)!.query.get('before_id')).toBe('51')
    expect(wrapper.find('[data-test=audit-end]').text()).toBe('51 entries shown')
    wrapper.unmount()
  })

  it('stacks an entry in two columns on a phone', async () => {
    const phone = vi.spyOn(window, 'matchMedia').mockImplementation((query: string) => ({ matches: query.includes('max-width: 767px'), media: query, onchange: null, addEventListener: () => {}, removeEventListener: () => {}, addListener: () => {}, removeListener: () => {}, dispatchEvent: () => false }))
    fakeApi({ 'GET /api/v1/audit': { body: [rollback] } })
    const { wrapper } = await mountPage(AuditView, { path: '/audit' })
    await settle()
    expect(phone).toHaveBeenCalled()
    expect(wrapper.findAll('.el-table__header th').map((h) => h.text())).toEqual(['Time / by', 'Action / target / details'])
    const cells = wrapper.findAll('.el-table__body td')
    expect(cells[0]!.text()).toContain('Login session from ::1')
    expect(cells[1]!.text()).toContain('Config replaced')
    expect(cells[1]!.text()).toContain('Rollback to version 3')
    wrapper.unmount()
  })
})
