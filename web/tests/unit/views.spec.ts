// Pages and dialogs changed after the UI review: bulk key actions, the session-ended dialog,
// live config validation, the token dialog, the add-key form, keyboard access.
/* eslint-disable vue/one-component-per-file -- small hosts that hold a dialog's v-model */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { defineComponent, h, nextTick, ref } from 'vue'
import { flushPromises, mount } from '@vue/test-utils'
import KeysView from '@/views/KeysView.vue'
import ConfigView from '@/views/ConfigView.vue'
import ClientsView from '@/views/ClientsView.vue'
import RequestsView from '@/views/RequestsView.vue'
import AppLayout from '@/layouts/AppLayout.vue'
import TokenDialog from '@/components/TokenDialog.vue'
import AddKeyDialog from '@/components/AddKeyDialog.vue'
import StatCard from '@/components/StatCard.vue'
import { connectApi, useAuthStore } from '@/stores/auth'
import { useKeysStore } from '@/stores/keys'
import { i18n } from '@/i18n'
import type { ClientView, ConfigVersionMeta, KeyView, RequestRow, TokenLimits } from '@/api/types'
import { fakeApi, freshPinia, mountPage, settle, type Call, type FakeResponse } from './helpers'

afterEach(() => {
  vi.useRealTimers()
})

function key(name: string, fp: string, over: Partial<KeyView> = {}): KeyView {
  return { pool: 'default', name, fingerprint: fp, weight: 1, state: 'healthy', models: [], inflight: 0, usage: { attempts: 0, successes: 0, failures: 0, input_tokens: 0, output_tokens: 0 }, ...over }
}

const listOf = (keys: KeyView[]) => ({
  body: { pools: ['default'], keys, total: keys.length, healthy: keys.filter((k) => k.state === 'healthy').length, cooling: 0, broken: 0, disabled: keys.filter((k) => k.state === 'disabled').length },
})

/** Clicks the primary button of the open ElMessageBox. */
async function confirmBox(): Promise<string> {
  await vi.waitFor(() => expect(document.querySelector('.el-message-box')).not.toBeNull())
  const text = document.querySelector('.el-message-box')!.textContent ?? ''
  ;(document.querySelector('.el-message-box__btns .el-button--primary') as HTMLButtonElement).click()
  await settle()
  return text
}

const posts = (calls: Call[]) => calls.filter((c) => c.method === 'POST').map((c) => c.path)

describe('KeysView bulk actions', () => {
  it('act only on the selected keys that are shown, skip keys already disabled, and ask first', async () => {
    const disabled = key('key-b', 'bbbbbbbbbbbb', { state: 'disabled', disabled: { reason: 'invalid_key', message: 'API key not valid', since: '2026-01-01T00:00:00Z' } })
    let list = [key('key-a', 'aaaaaaaaaaaa'), disabled, key('other', 'cccccccccccc')]
    const calls = fakeApi({
      'GET /api/v1/keys': () => listOf(list),
      'POST /api/v1/keys/aaaaaaaaaaaa/disable': { body: { fingerprint: 'aaaaaaaaaaaa', state: 'disabled' } },
    })
    const { wrapper } = await mountPage(KeysView)
    await settle()
    // The header selects every shown key.
    await wrapper.find('[data-test=select-shown] input').setValue(true)
    await settle()
    expect(wrapper.find('[data-test=validate-selected]').text()).toContain('Validate (3)')
    // A search hides "other": it leaves the selection.
    useKeysStore().q = 'key-'
    await settle()
    expect(wrapper.find('[data-test=validate-selected]').text()).toContain('Validate (2)')
    expect(wrapper.find('[data-test=keys-selected]').text()).toContain('2 selected')
    expect(wrapper.findAll('.el-table__body tr')).toHaveLength(2)
    // The row checkboxes are named after their key.
    expect(wrapper.find('[data-test=select-aaaaaaaaaaaa]').attributes('aria-label')).toBe('Select key-a')
    expect(wrapper.find('[data-test=select-aaaaaaaaaaaa]').text()).toBe('Select key-a')

    await wrapper.find('[data-test=bulk-actions]').trigger('click')
    await settle()
    ;(document.querySelector('[data-test=bulk-disable]') as HTMLElement).click()
    const asked = await confirmBox()
    expect(asked).toContain('Disable 1 key')
    expect(asked).toContain('1 selected key is already disabled and keeps its reason.')
    await settle(6)
    // key-b kept its "invalid key" reason; "other" (hidden) was not touched.
    expect(posts(calls)).toEqual(['/api/v1/keys/aaaaaaaaaaaa/disable'])

    // A key deleted meanwhile leaves the selection at the next refresh.
    list = [disabled, key('other', 'cccccccccccc')]
    await useKeysStore().fetch()
    await settle()
    expect(wrapper.find('[data-test=validate-selected]').text()).toContain('Validate (1)')
    wrapper.unmount()
  })

  it('does nothing but say so when every selected key is already disabled', async () => {
    const calls = fakeApi({ 'GET /api/v1/keys': listOf([key('key-b', 'bbbbbbbbbbbb', { state: 'disabled' })]) })
    const { wrapper } = await mountPage(KeysView)
    await settle()
    await wrapper.find('[data-test=select-bbbbbbbbbbbb] input').setValue(true)
    await wrapper.find('[data-test=bulk-actions]').trigger('click')
    await settle()
    ;(document.querySelector('[data-test=bulk-disable]') as HTMLElement).click()
    await settle()
    expect(document.querySelector('.el-message-box')).toBeNull()
    expect(document.body.textContent).toContain('Nothing to disable: the selected key is already disabled.')
    expect(posts(calls)).toEqual([])
    wrapper.unmount()
  })
})

describe('Session ended', () => {
  it('asks for the password over the page, and keeps the page as it was', async () => {
    fakeApi({
      'POST /api/v1/auth/login': { body: { token: 'gps_new', kind: 'session', expires_at: '2999-01-01T00:00:00Z' } },
      'GET /api/v1/keys': { status: 401, body: { error: { code: 401, status: 'UNAUTHENTICATED', message: 'admin authentication required' } } },
    })
    sessionStorage.setItem('gp.token', JSON.stringify({ token: 'gps_old', kind: 'session', expiresAt: '2999-01-01T00:00:00Z' }))
    const { wrapper, router } = await mountPage(AppLayout, { path: '/config', global: { stubs: { 'router-view': { template: '<textarea data-test="draft">unsaved</textarea>' } } } })
    connectApi()
    const auth = useAuthStore()
    // A call answers 401: the session is over.
    await useKeysStore()
      .fetch()
      .catch(() => {})
    expect(auth.ended).toBe(true)
    await settle()
    const dialog = document.querySelector('[data-test=relogin-dialog]')!
    expect(dialog.textContent).toContain('Your session has ended')
    // Still on the page, with what was typed.
    expect(router.currentRoute.value.fullPath).toBe('/config')
    expect(wrapper.find('[data-test=draft]').exists()).toBe(true)
    // No × and no Escape: only logging in (or the login page) ends it.
    expect(dialog.querySelector('.el-dialog__headerbtn')).toBeNull()
    const input = dialog.querySelector('input[data-test=password]') as HTMLInputElement
    input.value = 'pw'
    input.dispatchEvent(new Event('input'))
    await nextTick()
    ;(dialog.querySelector('form') as HTMLFormElement).dispatchEvent(new Event('submit'))
    await settle()
    expect(auth.token).toBe('gps_new')
    expect(auth.ended).toBe(false)
    expect(router.currentRoute.value.fullPath).toBe('/config')
    expect(document.body.textContent).toContain('Logged in again')
    wrapper.unmount()
  })
})

describe('ConfigView live validation', () => {
  it('validates 600 ms after the last keystroke, lists problems without a line, and drops stale answers', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const running = '[server]\nlisten = "127.0.0.1:8080"\n'
    const answers: ((v: FakeResponse) => void)[] = []
    const calls = fakeApi({
      'GET /api/v1/config': { body: { text: running, source: '/etc/gp.toml', version: 3, writable: true } },
      'GET /api/v1/config/versions': { body: [] },
      'POST /api/v1/config/validate': () => new Promise((ok) => answers.push(ok)),
    })
    const { wrapper } = await mountPage(ConfigView)
    await settle()
    const editor = wrapper.findComponent({ name: 'TomlEditor' })
    editor.vm.$emit('update:modelValue', running + 'bogus = [\n')
    await nextTick()
    vi.advanceTimersByTime(300)
    editor.vm.$emit('update:modelValue', running + 'bogus = [1\n')
    await nextTick()
    vi.advanceTimersByTime(599)
    const validations = () => calls.filter((c) => c.path === '/api/v1/config/validate')
    expect(validations()).toHaveLength(0)
    expect(wrapper.find('[data-test=checking]').exists()).toBe(true)
    vi.advanceTimersByTime(1)
    await settle()
    expect(validations()).toHaveLength(1)
    expect((validations()[0]!.body as { text: string }).text).toBe(running + 'bogus = [1\n')
    // Typing again before the answer: the first answer, when it comes, is stale.
    editor.vm.$emit('update:modelValue', running + 'bogus = [1]\n')
    await nextTick()
    vi.advanceTimersByTime(600)
    await settle()
    expect(validations()).toHaveLength(2)
    answers[1]!({ body: { valid: false, problems: [{ line: null, column: null, message: 'unknown field `bogus`, expected one of `server`' }, { line: 3, column: 1, message: 'line three' }] } })
    await settle()
    answers[0]!({ body: { valid: false, problems: [{ line: 3, column: 9, message: 'stale' }] } })
    await settle()
    const list = wrapper.find('[data-test=problems]')
    expect(list.text()).toContain('2 problem(s)')
    expect(list.text()).toContain('unknown field `bogus`')
    expect(list.find('[data-test=problem-none]').exists()).toBe(true)
    expect(list.text()).not.toContain('stale')
    wrapper.unmount()
  })

  /** The config page of a file at /etc/gp.toml, after "Reload file" got `answer`. */
  async function reloadFileAnswering(answer: FakeResponse) {
    fakeApi({
      'GET /api/v1/config': { body: { text: 'a = 1\n', source: '/etc/gp.toml', version: 3, writable: true } },
      'GET /api/v1/config/versions': { body: [] },
      'POST /api/v1/config/reload': answer,
    })
    const { wrapper } = await mountPage(ConfigView)
    await settle()
    const reload = wrapper.findAll('button').find((b) => b.text() === 'Reload file')!
    await reload.trigger('click')
    await confirmBox()
    await settle()
    return wrapper
  }

  it('shows problems of the file on disk apart from the editor', async () => {
    const wrapper = await reloadFileAnswering({
      status: 422,
      body: { error: { code: 422, status: 'INVALID_ARGUMENT', message: 'not valid', problems: [{ line: 51, column: 1, message: 'duplicate table' }] } },
    })
    const disk = wrapper.find('[data-test=disk-problems]')
    expect(disk.text()).toContain('/etc/gp.toml')
    expect(disk.text()).toContain('duplicate table')
    expect(wrapper.find('[data-test=problems]').exists()).toBe(false)
    wrapper.unmount()
  })

  it('says so when a reload changed only the TLS certificates', async () => {
    const wrapper = await reloadFileAnswering({ body: { version: 3, changed: false, restart_needed: [], certificates_changed: true } })
    expect(document.body.textContent).toContain('new TLS certificates served')
    expect(document.body.textContent).not.toContain('File re-read: no change')
    wrapper.unmount()
  })
})

describe('TokenDialog', () => {
  it('does not close on Escape and has no ×: only "I have stored it" closes it', async () => {
    freshPinia()
    const open = ref(true)
    const Host = defineComponent({ setup: () => () => h(TokenDialog, { modelValue: open.value, 'onUpdate:modelValue': (v: boolean) => (open.value = v), name: 'app', token: 'gp-secret' }) })
    const w = mount(Host, { attachTo: document.body, global: { plugins: [i18n] } })
    await flushPromises()
    document.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', code: 'Escape', bubbles: true }))
    await flushPromises()
    expect(open.value).toBe(true)
    expect(document.querySelector('[data-test=token-dialog] .el-dialog__headerbtn')).toBeNull()
    ;(document.querySelector('[data-test=token-close]') as HTMLButtonElement).click()
    await flushPromises()
    expect(open.value).toBe(false)
    w.unmount()
  })
})

describe('AddKeyDialog', () => {
  it('checks the key format and the name before sending anything', async () => {
    const calls = fakeApi({ 'POST /api/v1/keys': { status: 201, body: { added: [{ fingerprint: 'f'.repeat(12), name: 'good' }], skipped: [], version: 4 } } })
    const open = ref(true)
    const Host = defineComponent({ setup: () => () => h(AddKeyDialog, { modelValue: open.value, 'onUpdate:modelValue': (v: boolean) => (open.value = v), pools: ['default'] }) })
    const { wrapper } = await mountPage(Host)
    const fill = async (test: string, value: string) => {
      const el = document.querySelector(`input[data-test=${test}]`) as HTMLInputElement
      el.value = value
      el.dispatchEvent(new Event('input'))
      await nextTick()
    }
    await fill('add-key-key', 'hello')
    await fill('add-key-name', 'new key')
    ;(document.querySelector('[data-test=add-key-submit]') as HTMLButtonElement).click()
    await settle()
    // Both fields are marked as wrong (the messages themselves are checked in the browser test).
    expect(document.querySelectorAll('[data-test=add-key-dialog] .el-form-item.is-error')).toHaveLength(2)
    expect(calls).toHaveLength(0)
    await fill('add-key-key', `AIza${'k'.repeat(35)}`)
    await fill('add-key-name', 'good')
    ;(document.querySelector('[data-test=add-key-submit]') as HTMLButtonElement).click()
    await settle()
    expect(calls).toHaveLength(1)
    expect(calls[0]!.body).toMatchObject({ key: `AIza${'k'.repeat(35)}`, name: 'good' })
    wrapper.unmount()
  })
})

describe('keyboard access', () => {
  it('menu entries are links in the tab order, marked when current', async () => {
    fakeApi({})
    const { wrapper } = await mountPage(AppLayout, { path: '/keys', global: { stubs: { 'router-view': true } } })
    const link = wrapper.find('a[data-test=nav-keys]')
    expect(link.attributes('href')).toBe('/keys')
    expect(link.attributes('aria-current')).toBe('page')
    expect(wrapper.find('a[data-test=nav-clients]').attributes('aria-current')).toBeUndefined()
    expect(wrapper.find('[data-test=dark-toggle]').attributes('aria-label')).toMatch(/^Switch to (dark|light) mode$/)
    expect(wrapper.find('[data-test=lang-button]').attributes('aria-label')).toBe('Language: English')
  })

  it('a stat card that opens something is a button that Enter opens', async () => {
    const w = mount(StatCard, { props: { label: 'Healthy', value: '4', action: 'Show these keys' } })
    expect(w.attributes('role')).toBe('button')
    expect(w.attributes('tabindex')).toBe('0')
    expect(w.attributes('aria-label')).toBe('Healthy: 4. Show these keys')
    await w.trigger('keydown', { key: 'Enter' })
    await w.trigger('keydown', { key: ' ' })
    expect(w.emitted('open')).toHaveLength(2)
    const plain = mount(StatCard, { props: { label: 'Errors', value: '1' } })
    expect(plain.attributes('tabindex')).toBeUndefined()
    await plain.trigger('click')
    expect(plain.emitted('open')).toBeUndefined()
  })
})

/** A configured client (a static token, an entry) as GET /clients lists it. */
function client(name: string, limits: Partial<ClientView['limits']> = {}, usage: Partial<ClientView['usage']> = {}, over: Partial<ClientView> = {}): ClientView {
  return {
    name,
    auth: 'token',
    pools: ['default'],
    limits: { models: [], ...limits },
    limits_source: 'entry',
    token_limits: [],
    usage: { inflight: null, requests_last_minute: null, tokens_last_minute: 0, tokens_today: 0, ...usage },
    ...over,
  }
}

/** The clients page over a fake API that lists `list`. */
function mountClients(list: ClientView[]) {
  fakeApi({
    'GET /api/v1/clients': { body: list },
    'GET /api/v1/stats/totals': { body: { requests: 0, ok: 0, client_errors: 0, rate_limited: 0, server_errors: 0, retries: 0, input_tokens: 0, output_tokens: 0, by_model: [], by_client: [], by_key: [] } },
    'GET /api/v1/keys': listOf([]),
  })
  return mountPage(ClientsView)
}

describe('ClientsView usage', () => {
  it('says "not counted", and why, where the proxy keeps no count, instead of a 0', async () => {
    const { wrapper } = await mountClients([client('free'), client('capped', { rpm: 100 }, { inflight: 1, requests_last_minute: 2 })])
    await settle()
    for (const cell of ['rpm-free', 'inflight-free']) {
      const shown = wrapper.find(`[data-test=${cell}] [data-test=not-counted]`)
      expect(shown.text(), cell).toBe('not counted')
      expect(wrapper.find(`[data-test=${cell}]`).text()).not.toContain('0')
    }
    expect(wrapper.find('[data-test=rpm-free] [data-test=not-counted]').attributes('aria-label')).toContain('set one to count requests')
    expect(wrapper.find('[data-test=inflight-free] [data-test=not-counted]').attributes('aria-label')).toContain('set any limit')
    // The tooltip says it on hover too.
    await wrapper.find('[data-test=rpm-free] [data-test=not-counted]').trigger('mouseenter')
    await vi.waitFor(() => expect(document.body.textContent).toContain('Not counted without a requests-per-minute limit'))
    expect(wrapper.find('[data-test=rpm-capped]').text()).toContain('2 / 100')
    expect(wrapper.find('[data-test=inflight-capped]').text()).toContain('1 / ∞')
    i18n.global.locale.value = 'zh-CN'
    await settle()
    expect(wrapper.find('[data-test=rpm-free]').text()).toBe('未统计')
    i18n.global.locale.value = 'en'
    wrapper.unmount()
  })
})

describe('ClientsView JWT clients without an entry', () => {
  const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000).toISOString()
  const claim: TokenLimits = { source: 'token_claim', pools: ['default'], limits: { models: ['gemini-2.5-*'], rpm: 2 }, last_seen: minutesAgo(5) }
  const byDefault: TokenLimits = { source: 'jwt_default', pools: ['default', 'batch'], limits: { models: [], rpm: 3, tpd: 1_000_000 }, last_seen: minutesAgo(1) }
  const list = [
    client('alice'),
    // A JWT client with an entry is held to the entry: it is edited and revoked like any other.
    client('carol', { rpm: 1 }, {}, { auth: 'jwt' }),
    client('erin', claim.limits, { requests_last_minute: 1 }, { auth: 'jwt', limits_source: 'token_claim', token_limits: [claim] }),
    client('frank', byDefault.limits, { requests_last_minute: 3 }, { auth: 'jwt', pools: byDefault.pools, limits_source: 'jwt_default', token_limits: [byDefault, claim] }),
  ]
  const has = (w: { find: (s: string) => { exists: () => boolean } }, sel: string) => w.find(`[data-test=${sel}]`).exists()

  it('marks them, says where their limits come from, and offers no edit or revoke', async () => {
    const { wrapper } = await mountClients(list)
    await settle()
    for (const name of ['alice', 'carol']) {
      expect([has(wrapper, `edit-${name}`), has(wrapper, `revoke-${name}`), has(wrapper, `jwt-only-${name}`)], name).toEqual([true, true, false])
    }
    expect(wrapper.find('[data-test=client-row-carol]').element.parentElement!.textContent).toContain('JWT')
    for (const name of ['erin', 'frank']) {
      expect([has(wrapper, `edit-${name}`), has(wrapper, `revoke-${name}`), has(wrapper, `jwt-only-${name}`)], name).toEqual([false, false, true])
    }
    const tag = (name: string) => wrapper.find(`[data-test=jwt-only-${name}]`)
    expect(tag('erin').text()).toBe('JWT, no entry')
    expect(tag('erin').attributes('aria-label')).toContain('the policy claim of its latest token')
    expect(tag('frank').attributes('aria-label')).toContain('it is held to [jwt.policy]')
    expect(wrapper.find('[data-test=limits-source-erin]').text()).toBe('Limits: token claim')
    expect(wrapper.find('[data-test=limits-source-frank]').text()).toBe('Limits: [jwt.policy]')
    // The bars show the limits enforced now: the latest token's.
    expect(wrapper.find('[data-test=rpm-frank]').text()).toContain('3 / 3')
    // The tooltip says it on hover too.
    await tag('erin').trigger('mouseenter')
    await vi.waitFor(() => expect(document.body.textContent).toContain('has no [[clients]] entry: it is held to the limits in the policy claim'))

    i18n.global.locale.value = 'zh-CN'
    await settle()
    expect(tag('erin').text()).toBe('JWT，未配置')
    expect(tag('frank').attributes('aria-label')).toContain('按 [jwt.policy] 限额')
    expect(wrapper.find('[data-test=limits-source-erin]').text()).toBe('限额：令牌声明')
    expect(wrapper.find('[data-test=edit-alice]').text()).toBe('编辑')
    i18n.global.locale.value = 'en'
    wrapper.unmount()
  })

  it('shows every set of limits their tokens carried, latest first, when there is more than one', async () => {
    const { wrapper } = await mountClients(list)
    await settle()
    // One set: the row's own limits say it all.
    expect(has(wrapper, 'varies-erin')).toBe(false)
    const varies = wrapper.find('[data-test=varies-frank]')
    expect(varies.text()).toBe('limits vary by token (2)')
    const popper = () => document.querySelector('[data-test=token-limits-frank]')?.closest<HTMLElement>('.el-popper')
    expect(popper()?.style.display ?? 'none').toBe('none')
    await varies.trigger('click')
    await vi.waitFor(() => expect(popper()?.style.display).toBe(''))
    // Each set, a line per part: its source and when last seen (side by side) | its limits | its pools and models.
    const words = (e: Element) => (e.children.length ? Array.from(e.children) : [e]).map((c) => c.textContent!.trim()).join(' ')
    const sets = () => Array.from(document.querySelectorAll('[data-test=token-limits-frank] li')).map((li) => Array.from(li.children).map(words).join(' | '))
    expect(sets()).toEqual([
      '[jwt.policy] 1 min. ago | Requests per minute: 3 · Tokens per day (UTC): 1M | Pools: default, batch · Allowed models: Every model',
      'token claim 5 min. ago | Requests per minute: 2 | Pools: default · Allowed models: gemini-2.5-*',
    ])
    expect(document.body.textContent).toContain('Each request is held to the limits of its own token')
    // Escape on the button closes them again.
    await varies.trigger('keydown', { key: 'Escape' })
    await vi.waitFor(() => expect(popper()?.style.display).toBe('none'))

    i18n.global.locale.value = 'zh-CN'
    await settle()
    expect(varies.text()).toBe('限额因令牌而异（2）')
    expect(sets()[1]).toBe('令牌声明 5分钟前 | 每分钟请求数：2 | 密钥池：default · 允许的模型：gemini-2.5-*')
    i18n.global.locale.value = 'en'
    wrapper.unmount()
  })
})

describe('ConfigView history', () => {
  it("shows the server's own comments and its authors in the chosen language, and a user's words as written", async () => {
    const v = (id: number, comment: string, server_comment: ConfigVersionMeta['server_comment'], actor = 'startup', author: ConfigVersionMeta['author'] = { kind: 'startup' }): ConfigVersionMeta =>
      ({ id, created_ms: 1_700_000_000_000, actor, author, comment, server_comment, sha256: 'ab', bytes: 10 })
    const token = { kind: 'token', params: { address: '127.0.0.1' } }
    fakeApi({
      'GET /api/v1/config': { body: { text: '', source: '/etc/gp.toml', version: 8, writable: true } },
      'GET /api/v1/config/versions': {
        body: [
          v(8, 'configuration at start-up', null, 'session@::1', { kind: 'session', params: { address: '::1' } }),
          v(7, 'reloaded from disk', { kind: 'reloaded_from_disk' }, 'signal:SIGHUP', { kind: 'sighup' }),
          v(6, 'rollback to version 2', { kind: 'rollback', params: { version: 2 } }, 'token@127.0.0.1', token),
          v(5, '3 key(s) added', { kind: 'keys_added', params: { count: 3 } }, 'token', { kind: 'token', params: { address: null } }),
          v(4, 'client carol created', { kind: 'client_created', params: { client: 'carol' } }, 'robot@ops', null),
          v(3, 'raise the rpm of carol', null, 'someone new', { kind: 'from_a_newer_proxy' }),
          v(2, 'something newer', { kind: 'from_a_newer_proxy' }),
          v(1, 'configuration at start-up', { kind: 'startup' }),
        ],
      },
    })
    const { wrapper } = await mountPage(ConfigView)
    await settle()
    const ids = [8, 7, 6, 5, 4, 3, 2, 1]
    const comment = (id: number) => wrapper.find(`[data-test=comment-${id}]`).text()
    const author = (id: number) => wrapper.find(`[data-test=author-${id}]`).text()
    expect(ids.map(comment)).toEqual(['configuration at start-up', 'Reloaded from disk', 'Rollback to version 2', '3 keys added', 'Client carol created', 'raise the rpm of carol', 'something newer', 'Configuration at start-up'])
    expect(ids.map(author)).toEqual(['Login session from ::1', 'SIGHUP signal', 'Admin token from 127.0.0.1', 'Admin token', 'robot@ops', 'someone new', 'Start-up', 'Start-up'])
    i18n.global.locale.value = 'zh-CN'
    await settle()
    expect(ids.map(comment)).toEqual(['configuration at start-up', '从磁盘重新读取', '回滚到版本 2', '已添加 3 个密钥', '已创建客户端 carol', 'raise the rpm of carol', 'something newer', '启动时的配置'])
    expect(ids.map(author)).toEqual(['登录会话（::1）', 'SIGHUP 信号', '管理令牌（127.0.0.1）', '管理令牌', 'robot@ops', 'someone new', '启动', '启动'])
    i18n.global.locale.value = 'en'
    wrapper.unmount()
  })
})

describe('RequestsView', () => {
  const row = (id: number, over: Partial<RequestRow> = {}): RequestRow => ({
    id, time_ms: Date.now(), request_id: id, client: 'alice', method: 'POST', path: '/v1beta/models/m:generateContent', model: 'm', status: 200, key: 'k', key_fingerprint: 'aaaaaaaaaaaa', attempts: [], total_ms: 5, bytes_in: 1, bytes_out: 1, tokens_in: 1, tokens_out: 1, stream: false, error: null, ...over,
  })

  it('keeps the filters in the URL: opened from a link, applied as a new history entry, undone by going back', async () => {
    const calls = fakeApi({ 'GET /api/v1/requests': { body: [row(1)] }, 'GET /api/v1/clients': { body: [] } })
    const requests = () => calls.filter((c) => c.path === '/api/v1/requests').map((c) => Object.fromEntries([...c.query].filter(([k]) => k !== 'limit')))
    const { wrapper, router } = await mountPage(RequestsView, { path: '/requests?status=4xx&client=alice' })
    await settle()
    expect(requests()).toEqual([{ status: '4xx', client: 'alice' }])
    expect((wrapper.find('input[data-test=filter-model]').element as HTMLInputElement).value).toBe('')
    await wrapper.find('input[data-test=filter-model]').setValue('gemini-2.5-flash')
    await wrapper.find('[data-test=filter-apply]').trigger('click')
    await settle()
    expect(router.currentRoute.value.query).toEqual({ status: '4xx', client: 'alice', model: 'gemini-2.5-flash' })
    expect(requests().at(-1)).toEqual({ status: '4xx', client: 'alice', model: 'gemini-2.5-flash' })
    // Applying the same filters again refreshes, without another history entry.
    await wrapper.find('[data-test=filter-apply]').trigger('click')
    await settle()
    expect(requests()).toHaveLength(3)
    router.back()
    await vi.waitFor(() => expect(router.currentRoute.value.query).toEqual({ status: '4xx', client: 'alice' }))
    await settle()
    expect(requests().at(-1)).toEqual({ status: '4xx', client: 'alice' })
    expect((wrapper.find('input[data-test=filter-model]').element as HTMLInputElement).value).toBe('')
    await wrapper.find('[data-test=filter-reset]').trigger('click')
    await settle()
    expect(router.currentRoute.value.fullPath).toBe('/requests')
    expect(requests().at(-1)).toEqual({})
    wrapper.unmount()
  })

  it('shows why a request failed: its error, else the last attempt that was not ok', async () => {
    fakeApi({
      'GET /api/v1/requests': {
        body: [
          row(3, { status: 401, error: 'invalid client token' }),
          row(2, { status: 503, attempts: [{ key: 'k', outcome: 'rate_limited', status: 429 }] }),
          row(1),
        ],
      },
      'GET /api/v1/clients': { body: [] },
    })
    const { wrapper } = await mountPage(RequestsView, { path: '/requests' })
    await settle()
    const headers = wrapper.findAll('.el-table__header th').map((h) => h.text())
    expect(headers).toContain('Error')
    expect(wrapper.find('[data-test=error-3]').text()).toBe('invalid client token')
    expect(wrapper.find('[data-test=error-2]').text()).toBe('rate limited')
    expect(wrapper.find('[data-test=error-1]').text()).toBe('—')
    wrapper.unmount()
  })
})
