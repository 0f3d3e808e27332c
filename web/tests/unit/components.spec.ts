import { afterEach, describe, expect, it, vi } from 'vitest'
import { defineComponent, h, nextTick, ref } from 'vue'
import { flushPromises, mount } from '@vue/test-utils'
import { diagnosticCount } from '@codemirror/lint'
import { EditorView } from '@codemirror/view'
import LoginView from '@/views/LoginView.vue'
import CertificatesView from '@/views/CertificatesView.vue'
import AppLayout from '@/layouts/AppLayout.vue'
import Countdown from '@/components/Countdown.vue'
import ImportKeysDialog from '@/components/ImportKeysDialog.vue'
import TokenDialog from '@/components/TokenDialog.vue'
import TomlEditor from '@/components/TomlEditor.vue'
import KeysView from '@/views/KeysView.vue'
import { useAuthStore } from '@/stores/auth'
import { i18n } from '@/i18n'
import { fakeApi, freshPinia, mountPage, settle } from './helpers'

afterEach(() => {
  vi.useRealTimers()
})

describe('LoginView', () => {
  it('says when the password is wrong', async () => {
    fakeApi({ 'POST /api/v1/auth/login': { status: 401, body: { error: { code: 401, status: 'UNAUTHENTICATED', message: 'wrong password' } } } })
    const { wrapper } = await mountPage(LoginView, { path: '/login' })
    await wrapper.find('input[data-test=password]').setValue('nope')
    await wrapper.find('form').trigger('submit')
    await settle()
    expect(wrapper.find('[data-test=login-error]').text()).toContain('Wrong password.')
  })

  it('counts down the wait when logins are rate limited, with the button disabled', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] })
    fakeApi({ 'POST /api/v1/auth/login': { status: 429, headers: { 'retry-after': '3' }, body: { error: { code: 429, status: 'RESOURCE_EXHAUSTED', message: 'too many failed logins; try again later' } } } })
    const { wrapper } = await mountPage(LoginView, { path: '/login' })
    await wrapper.find('input[data-test=password]').setValue('nope')
    await wrapper.find('form').trigger('submit')
    await settle()
    expect(wrapper.find('[data-test=login-error]').text()).toContain('Too many failed logins.')
    expect(wrapper.find('[data-test=login-wait]').text()).toBe('Try again in 3 s.')
    expect(wrapper.find('[data-test=login-submit]').attributes('disabled')).toBeDefined()
    vi.advanceTimersByTime(1000)
    await nextTick()
    expect(wrapper.find('[data-test=login-wait]').text()).toBe('Try again in 2 s.')
    vi.advanceTimersByTime(2000)
    await nextTick()
    expect(wrapper.find('[data-test=login-error]').exists()).toBe(false)
    expect(wrapper.find('[data-test=login-submit]').attributes('disabled')).toBeUndefined()
  })

  it('logs in and goes where the user was headed', async () => {
    fakeApi({ 'POST /api/v1/auth/login': { body: { token: 'gps_x', kind: 'session', expires_at: '2999-01-01T00:00:00Z' } } })
    const { wrapper, router } = await mountPage(LoginView, { path: '/login?redirect=/keys' })
    await wrapper.find('input[data-test=password]').setValue('right')
    await wrapper.find('form').trigger('submit')
    await settle()
    expect(useAuthStore().token).toBe('gps_x')
    expect(router.currentRoute.value.fullPath).toBe('/keys')
  })

  it('accepts a pasted admin token and keeps the session it buys', async () => {
    const calls = fakeApi({ 'POST /api/v1/auth/login': { body: { token: 'gps_t', kind: 'session', expires_at: '2999-01-01T00:00:00Z' } } })
    const { wrapper, router } = await mountPage(LoginView, { path: '/login' })
    await wrapper.findAll('.el-tabs__item')[1]!.trigger('click')
    await nextTick()
    await wrapper.find('input[data-test=token]').setValue('admin-token')
    await wrapper.find('form').trigger('submit')
    await settle()
    expect(calls.find((c) => c.method === 'POST')!.body).toEqual({ token: 'admin-token' })
    expect(useAuthStore().token).toBe('gps_t')
    expect(router.currentRoute.value.fullPath).toBe('/dashboard')
  })
})

describe('LoginView methods', () => {
  it('offers only the login methods the proxy has set up, asking without a credential', async () => {
    const calls = fakeApi({ 'GET /api/v1/auth/methods': { body: { password: true, token: false } } })
    const { wrapper } = await mountPage(LoginView, { path: '/login' })
    await settle()
    const asked = calls.find((c) => c.path === '/api/v1/auth/methods')!
    expect(asked.headers.authorization).toBeUndefined()
    expect(wrapper.find('[data-test=login-tabs]').exists()).toBe(false)
    expect(wrapper.text()).not.toContain('Admin token')
    expect(wrapper.find('input[data-test=password]').exists()).toBe(true)
    expect(wrapper.find('[data-test=login-subtitle]').text()).toBe('Log in with the admin password.')
    wrapper.unmount()
  })

  it('shows the token field alone when only a token is configured', async () => {
    fakeApi({ 'GET /api/v1/auth/methods': { body: { password: false, token: true } } })
    const { wrapper } = await mountPage(LoginView, { path: '/login' })
    await settle()
    expect(wrapper.find('[data-test=login-tabs]').exists()).toBe(false)
    expect(wrapper.find('input[data-test=password]').exists()).toBe(false)
    expect(wrapper.find('input[data-test=token]').exists()).toBe(true)
    expect(wrapper.find('[data-test=login-subtitle]').text()).toBe('Paste the admin token to log in.')
    wrapper.unmount()
  })

  it('offers both when the proxy cannot say', async () => {
    fakeApi({})
    const { wrapper } = await mountPage(LoginView, { path: '/login' })
    await settle()
    expect(wrapper.findAll('.el-tabs__item').map((t) => t.text())).toEqual(['Password', 'Admin token'])
    wrapper.unmount()
  })
})

describe('Countdown', () => {
  it('ticks every second and says when it is over', async () => {
    vi.useFakeTimers({ now: new Date('2026-01-01T00:00:00Z') })
    const w = mount(Countdown, { props: { until: '2026-01-01T00:01:05Z' } })
    expect(w.text()).toBe('1:05')
    vi.advanceTimersByTime(6000)
    await nextTick()
    expect(w.text()).toBe('59s')
    vi.advanceTimersByTime(60_000)
    await nextTick()
    expect(w.text()).toBe('0s')
    expect(w.emitted('done')).toHaveLength(1)
    w.unmount()
  })
})

const cert = (over: object) => ({ name: 'main', names: ['a.example.com', 'b.example.com'], source: 'acme', issuer: 'CN=Pebble Intermediate', not_before: '2026-01-01T00:00:00Z', not_after: new Date(Date.now() + 20 * 86_400_000).toISOString(), last_renewal: { at: new Date().toISOString(), ok: true, message: 'issued' }, ...over })

describe('CertificatesView', () => {
  it('lists names, issuer, expiry and the last renewal, and renews on request', async () => {
    const calls = fakeApi({
      'GET /api/v1/certificates': { body: [cert({ serial: '0a1b2c', default: true }), cert({ name: 'old', source: 'file', not_after: new Date(Date.now() + 3 * 86_400_000).toISOString(), last_renewal: { at: new Date().toISOString(), ok: false, message: 'acme: rate limited' } })] },
      'POST /api/v1/certificates/main/renew': { status: 202 },
    })
    const { wrapper } = await mountPage(CertificatesView)
    const text = wrapper.find('[data-test=certs-table]').text()
    expect(text).toContain('a.example.com')
    expect(text).toContain('CN=Pebble Intermediate')
    expect(text).toContain('ACME')
    expect(text).toContain('acme: rate limited')
    expect(wrapper.find('[data-test=expiry-main]').text()).toMatch(/^(19|20) days left$/)
    expect(wrapper.find('[data-test=expiry-old]').classes()).toContain('el-tag--danger')
    expect(wrapper.find('[data-test=renewal-old]').text()).toBe('Failed')
    expect(text).toContain('serial 0a1b2c')
    expect(text).toContain('default')
    // Only ACME certificates can be renewed from here.
    expect(wrapper.find('[data-test=renew-old]').attributes('disabled')).toBeDefined()
    expect(wrapper.find('[data-test=renew-main]').attributes('disabled')).toBeUndefined()
    await wrapper.find('[data-test=renew-main]').trigger('click')
    await settle()
    expect(calls.some((c) => c.method === 'POST' && c.path === '/api/v1/certificates/main/renew')).toBe(true)
    expect(document.body.textContent).toContain('Renewal of main started')
  })

  it('says TLS is off when the API answers 404', async () => {
    fakeApi({})
    const { wrapper } = await mountPage(CertificatesView)
    expect(wrapper.find('[data-test=certs-off]').exists()).toBe(true)
  })

  it('shows why a renewal was refused', async () => {
    fakeApi({
      'GET /api/v1/certificates': { body: [cert({})] },
      'POST /api/v1/certificates/main/renew': { status: 409, body: { error: { code: 409, status: 'FAILED_PRECONDITION', message: 'a renewal is already running' } } },
    })
    const { wrapper } = await mountPage(CertificatesView)
    await wrapper.find('[data-test=renew-main]').trigger('click')
    await settle()
    expect(document.body.textContent).toContain('Cannot renew main: a renewal is already running (409)')
  })
})

describe('AppLayout', () => {
  const stubs = { 'router-view': true }
  it('hides the certificates entry when the TLS API answers 404', async () => {
    fakeApi({})
    const { wrapper } = await mountPage(AppLayout, { global: { stubs } })
    expect(wrapper.find('[data-test=nav-keys]').exists()).toBe(true)
    expect(wrapper.find('[data-test=nav-certificates]').exists()).toBe(false)
  })
  it('shows it when certificates are served', async () => {
    fakeApi({ 'GET /api/v1/certificates': { body: [] } })
    const { wrapper } = await mountPage(AppLayout, { global: { stubs } })
    expect(wrapper.find('[data-test=nav-certificates]').exists()).toBe(true)
  })
  it('switches language and dark mode', async () => {
    fakeApi({})
    const { wrapper } = await mountPage(AppLayout, { global: { stubs } })
    await wrapper.find('[data-test=dark-toggle]').trigger('click')
    expect(document.documentElement.classList.contains('dark')).toBe(true)
    expect(localStorage.getItem('gp.dark')).toBe('1')
    i18n.global.locale.value = 'zh-CN'
    await nextTick()
    expect(wrapper.find('[data-test=nav-keys]').text()).toBe('密钥')
    i18n.global.locale.value = 'en'
  })
})

describe('ImportKeysDialog', () => {
  it('previews what will be added and skipped, then imports', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const calls = fakeApi({
      'POST /api/v1/keys/import': (r) => {
        const b = r.body as { dry_run: boolean }
        return {
          body: {
            added: [{ fingerprint: 'aaaaaaaaaaaa', name: 'key-aaaaaaaaaaaa' }],
            skipped: [
              { fingerprint: 'bbbbbbbbbbbb', reason: 'already_in_pool' },
              { fingerprint: 'aaaaaaaaaaaa', reason: 'duplicate_in_text' },
            ],
            version: b.dry_run ? null : 7,
          },
        }
      },
    })
    const Host = defineComponent({
      setup() {
        const open = ref(true)
        return () => h(ImportKeysDialog, { modelValue: open.value, 'onUpdate:modelValue': (v: boolean) => (open.value = v), pools: ['default'] })
      },
    })
    const { wrapper } = await mountPage(Host)
    const area = document.querySelector('textarea[data-test=import-text]') as HTMLTextAreaElement
    area.value = 'keys: AIza1 AIza2 AIza1'
    area.dispatchEvent(new Event('input'))
    await nextTick()
    vi.advanceTimersByTime(700)
    await settle()
    expect(calls[0]!.body).toMatchObject({ dry_run: true })
    expect(document.querySelector('[data-test=import-add-count]')!.textContent).toBe('1 to add')
    expect(document.querySelector('[data-test=import-skip-count]')!.textContent).toBe('2 skipped')
    expect(document.querySelector('[data-test=import-skipped]')!.textContent).toContain('Already in the pool')
    const submit = document.querySelector('[data-test=import-submit]') as HTMLButtonElement
    expect(submit.textContent).toContain('Import 1 key(s)')
    submit.click()
    await settle()
    expect(calls[1]!.body).toMatchObject({ dry_run: false })
    expect(document.body.textContent).toContain('Imported 1 key(s), 2 skipped (config version 7)')
    wrapper.unmount()
  })
})

describe('TokenDialog', () => {
  it('shows the token once and copies it', async () => {
    const writeText = vi.fn(async () => {})
    Object.defineProperty(window, 'isSecureContext', { value: true, configurable: true })
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true })
    freshPinia()
    const w = mount(TokenDialog, { props: { modelValue: true, name: 'app', token: 'gp-secret' }, attachTo: document.body, global: { plugins: [i18n] } })
    await flushPromises()
    expect((document.querySelector('input[data-test=client-token]') as HTMLInputElement).value).toBe('gp-secret')
    ;(document.querySelector('[data-test=copy-token]') as HTMLButtonElement).click()
    await flushPromises()
    expect(writeText).toHaveBeenCalledWith('gp-secret')
    expect(document.body.textContent).toContain('Token copied')
    w.unmount()
  })
})

describe('TomlEditor', () => {
  it('marks problems at their lines and reports edits', async () => {
    const w = mount(TomlEditor, { props: { modelValue: '[server]\nbogus = 1\n', problems: [] }, attachTo: document.body })
    const view = EditorView.findFromDOM(w.element.querySelector('.cm-editor') as HTMLElement)!
    expect(view.state.doc.toString()).toBe('[server]\nbogus = 1\n')
    await w.setProps({ problems: [{ line: 2, column: 1, message: 'unknown field `bogus`' }] })
    expect(diagnosticCount(view.state)).toBe(1)
    view.dispatch({ changes: { from: 0, insert: '# hi\n' } })
    expect(w.emitted('update:modelValue')!.at(-1)).toEqual(['# hi\n[server]\nbogus = 1\n'])
    await w.setProps({ modelValue: 'x = 1\n' })
    expect(view.state.doc.toString()).toBe('x = 1\n')
    w.unmount()
  })
})

describe('KeysView', () => {
  it('shows per-model cooldowns counting down, and validates selected keys in batches with progress', async () => {
    const until = new Date(Date.now() + 90_000).toISOString()
    const keys = Array.from({ length: 7 }, (_, i) => ({
      pool: 'default',
      name: `key-${i}`,
      fingerprint: `${i}`.repeat(12),
      weight: 1,
      state: i === 0 ? 'cooling' : 'healthy',
      models: i === 0 ? [{ model: 'gemini-2.5-flash', state: 'cooling', until, cooldown_kind: 'quota', consecutive_failures: 0 }] : [],
      last_error: i === 0 ? { at: new Date().toISOString(), model: 'gemini-2.5-flash', outcome: 'rate_limited', status: 429, message: 'quota' } : null,
      inflight: 0,
      usage: { attempts: 1, successes: 0, failures: 1, input_tokens: 0, output_tokens: 0 },
    }))
    const calls = fakeApi({
      'GET /api/v1/keys': { body: { pools: ['default'], keys, total: 7, healthy: 6, cooling: 1, broken: 0, disabled: 0 } },
      'POST /api/v1/keys/validate': (r) => ({ body: (r.body as { fingerprints: string[] }).fingerprints.map((f) => ({ fingerprint: f, name: `key-${f[0]}`, result: f.startsWith('3') ? 'invalid_key' : 'valid', status: f.startsWith('3') ? 400 : 200, message: '' })) }),
    })
    const { wrapper } = await mountPage(KeysView)
    await settle()
    const cell = wrapper.find('[data-test="model-000000000000-gemini-2.5-flash"]')
    expect(cell.text()).toContain('Cooling')
    // 90 s from when the list was made; mounting on a busy machine can take a few seconds.
    expect(cell.find('[data-test=countdown]').text()).toMatch(/^1:(2\d|30)$/)
    expect(wrapper.find('[data-test=keys-counts]').text()).toContain('7 keys: 6 healthy, 1 cooling')

    for (const box of wrapper.findAll('.el-table__body input[type=checkbox]')) await box.setValue(true)
    await settle()
    await wrapper.find('[data-test=validate-selected]').trigger('click')
    await settle(6)
    const validateCalls = calls.filter((c) => c.path === '/api/v1/keys/validate')
    expect(validateCalls.map((c) => (c.body as { fingerprints: string[] }).fingerprints.length)).toEqual([5, 2])
    const dialog = document.querySelector('[data-test=batch-dialog]')!
    expect(dialog.querySelector('[data-test=batch-summary]')!.textContent).toContain('Done: 7 key(s), 0 failed.')
    expect(dialog.querySelectorAll('[data-result=valid]').length).toBe(6)
    expect(dialog.querySelectorAll('[data-result=invalid_key]').length).toBe(1)
    wrapper.unmount()
  })
})
