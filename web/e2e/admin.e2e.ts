// End-to-end: the admin UI as embedded in the real gemini-proxy binary, in headless Chromium,
// against the mock Gemini. The scenarios run in order and build on each other.

import { writeFileSync } from 'node:fs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Page, Route } from 'playwright-core'
import { ADMIN_PASSWORD, ADMIN_TOKEN, CLIENT_TOKEN, INITIAL_KEYS, JWT_DEFAULT_RPM, JWT_POLICY_CLAIM, TLS_NAMES, fingerprint, geminiKey, shot, signJwt, startExtraProxy, startWorld, stopWorld, type World } from './harness'

let w: World
let page: Page

const NEW_KEYS = [geminiKey('IMPORTED1'), geminiKey('IMPORTED2')]

beforeAll(async () => {
  w = await startWorld()
  page = w.page
})

afterEach(async (ctx) => {
  // What the page looked like when a scenario failed.
  if (ctx.task.result?.state === 'fail' && page) {
    const name = `failed-${ctx.task.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}`
    await shot(w, name).catch(() => {})
  }
})

afterAll(async () => {
  await stopWorld(w)
})

/** The text of the last success toast. */
async function toast(kind: 'success' | 'error' | 'info', text: string | RegExp): Promise<void> {
  const msg = page.locator(`.el-message--${kind}`).filter({ hasText: text })
  await msg.first().waitFor({ state: 'visible', timeout: 15_000 })
}

async function closeToasts(): Promise<void> {
  for (const btn of await page.locator('.el-message__closeBtn').all()) await btn.click({ timeout: 1000 }).catch(() => {})
}

async function nav(name: string): Promise<void> {
  // A dialog left open by an earlier failure must not take the rest of the run with it.
  if (await page.locator('.el-message-box').isVisible()) await page.locator('.el-message-box__btns .el-button--primary').click()
  await page.click(`[data-test=nav-${name}]`)
  const leaveConfirm = await page.locator('.el-message-box').waitFor({ timeout: 500 }).then(() => true, () => false)
  if (leaveConfirm) await page.locator('.el-message-box__btns .el-button--primary').click()
  await page.waitForURL(new RegExp(`/${name}`))
}

/** An Element Plus input, whichever element the data-test attribute landed on. */
const field = (name: string) => `input[data-test=${name}], [data-test=${name}] input`

async function login(p: Page, password = ADMIN_PASSWORD): Promise<void> {
  await p.fill(field('password'), password)
  await p.click('[data-test=login-submit]')
}

/** The data-test of the focused element. */
const focused = (p: Page = page) => p.evaluate(() => document.activeElement?.getAttribute('data-test') ?? document.activeElement?.tagName ?? null)

/** The keys the API reports as disabled, by fingerprint. */
async function disabledKeys(): Promise<string[]> {
  const list = await w.proxy.api<{ keys: { fingerprint: string; state: string }[] }>('GET', '/api/v1/keys')
  return list.keys.filter((k) => k.state === 'disabled').map((k) => k.fingerprint)
}

/** Runs a bulk action from the "Selected" menu; returns the question asked first. */
async function bulkAction(op: 'enable' | 'disable' | 'reset', confirmLabel: string): Promise<string> {
  await page.click('[data-test=bulk-actions]')
  await page.locator(`[data-test=bulk-${op}]`).click()
  const box = page.locator('.el-message-box')
  await box.waitFor()
  const question = (await box.textContent()) ?? ''
  await box.locator('button', { hasText: confirmLabel }).click()
  await box.waitFor({ state: 'hidden' })
  return question
}

describe('admin UI, embedded in gemini-proxy', () => {
  it('is served with the right caching, beside the API that keeps its own answers', async () => {
    const base = w.proxy.admin
    const index = await fetch(`${base}/`)
    expect(index.status).toBe(200)
    expect(index.headers.get('cache-control')).toBe('no-cache')
    expect(index.headers.get('content-type')).toMatch(/^text\/html/)
    expect(index.headers.get('content-security-policy')).toContain("script-src 'self'")
    const html = await index.text()
    expect(html).toContain('<div id="app">')
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)![1]!
    const js = await fetch(`${base}${asset}`)
    expect(js.status).toBe(200)
    expect(js.headers.get('cache-control')).toBe('public, max-age=31536000, immutable')
    expect(js.headers.get('content-type')).toMatch(/javascript/)
    const again = await fetch(`${base}/`, { headers: { 'if-none-match': index.headers.get('etag')! } })
    expect(again.status).toBe(304)

    const deep = await fetch(`${base}/config`)
    expect(deep.status).toBe(200)
    expect(await deep.text()).toBe(html)

    for (const [method, path] of [['GET', '/api/v1/nope'], ['POST', '/api/v1/nope'], ['GET', '/api'], ['GET', '/assets/nope-123.js']] as const) {
      const r = await fetch(`${base}${path}`, { method })
      expect(r.status, `${method} ${path}`).toBe(404)
      expect(((await r.json()) as { error: { code: number } }).error.code).toBe(404)
    }
    expect(await (await fetch(`${base}/healthz`)).text()).toBe('ok')
    expect((await fetch(`${base}/metrics`)).status).toBe(401)
    expect((await fetch(`${base}/readyz`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status).toBe(200)
    // Without a credential too (the harness waits on it so): the verdict alone.
    expect(await (await fetch(`${base}/readyz`)).json()).toEqual({ ready: true })
    expect((await fetch(`${base}/api/v1/keys`)).status).toBe(401)
  })

  it('logs in: a wrong password is refused with a message, the right one opens the dashboard', async () => {
    await page.goto(`${w.proxy.admin}/keys`)
    await page.waitForURL(/\/login\?redirect=/)
    await shot(w, '01-login')
    await login(page, 'not-the-password')
    await expect.poll(() => page.textContent('[data-test=login-error]')).toContain('Wrong password.')
    await shot(w, '02-login-wrong-password')
    await login(page)
    await page.waitForURL(/\/keys$/)
    await nav('dashboard')
    await page.locator('[data-test=stat-rps]').waitFor()
    await shot(w, '03-dashboard-empty')
  })

  it('says when a page cannot be loaded because the proxy is unreachable, and stays where it was', async () => {
    // As when the proxy is down: the request log's code and the health check cannot be fetched.
    const refuse = (r: Route) => r.abort('connectionrefused')
    await page.route(/\/assets\/RequestsView-[^/]+$/, refuse)
    await page.route(/\/healthz$/, refuse)
    try {
      await page.click('[data-test=nav-requests]')
      await toast('error', 'Cannot open Request log: cannot reach the proxy')
      expect(new URL(page.url()).pathname).toBe('/dashboard')
      expect(await page.textContent('h1')).toBe('Dashboard')
      expect(await page.getAttribute('[data-test=nav-dashboard]', 'aria-current')).toBe('page')
      expect(await page.getAttribute('[data-test=nav-requests]', 'aria-current')).toBeNull()
      await shot(w, '03b-page-unreachable')
    } finally {
      await page.unrouteAll()
    }
    // A fresh document: the browser remembers failed module loads for the page's lifetime.
    await page.reload()
    await page.locator('[data-test=stat-rps]').waitFor()
  })

  it('can be driven from the keyboard: Tab reaches the menu, Enter opens a page', async () => {
    await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur())
    let seen: string | null = null
    for (let i = 0; i < 15 && seen !== 'nav-keys'; i++) {
      await page.keyboard.press('Tab')
      seen = await focused()
    }
    expect(seen).toBe('nav-keys')
    await page.keyboard.press('Enter')
    await page.waitForURL(/\/keys$/)
    expect(await page.getAttribute('[data-test=nav-keys]', 'aria-current')).toBe('page')
    // Controls known by a placeholder only have names of their own.
    expect(await page.getAttribute(field('keys-search'), 'aria-label')).toBe('Search keys by name or fingerprint')
    expect(await page.getAttribute('[data-test=keys-state-filter] input', 'aria-label')).toBe('Filter by state')
    await expect.poll(() => page.locator('[data-test=keys-table] .el-table__row').count()).toBe(2)
    expect(await page.locator(`[data-test=select-${fingerprint(INITIAL_KEYS[0]!)}]`).getAttribute('aria-label')).toMatch(/^Select key-/)
    await nav('dashboard')
  })

  it('imports keys in bulk: the preview shows what is added and skipped, then the table has them', async () => {
    await nav('keys')
    await page.locator('[data-test=keys-table]').waitFor()
    await page.click('[data-test=import-keys]')
    const text = `# pasted from a spreadsheet\nnew one: ${NEW_KEYS[0]}\nnew two, "${NEW_KEYS[1]}";\nagain ${NEW_KEYS[0]}\nold: ${INITIAL_KEYS[0]}\nnot a key: AIzaTooShort\n`
    await page.fill('textarea[data-test=import-text]', text)
    await expect.poll(() => page.textContent('[data-test=import-add-count]'), { timeout: 10_000 }).toBe('2 to add')
    expect(await page.textContent('[data-test=import-skip-count]')).toBe('3 skipped')
    const skipped = await page.textContent('[data-test=import-skipped]')
    expect(skipped).toContain('Appears twice in the text')
    expect(skipped).toContain('Already in the pool')
    expect(skipped).toContain('Starts like a key but has 12 characters')
    expect(skipped).not.toContain('AIzaTooShort')
    expect(await page.textContent('[data-test=import-added]')).toContain(fingerprint(NEW_KEYS[0]!))
    await shot(w, '04-keys-import-preview')
    await page.click('[data-test=import-submit]')
    await toast('success', 'Imported 2 key(s), 3 skipped')
    for (const k of NEW_KEYS) await page.locator(`[data-test=keys-table] [data-test=fp]`, { hasText: fingerprint(k) }).waitFor()
    await expect.poll(() => page.textContent('[data-test=keys-counts]')).toContain('4 keys')
    const list = await w.proxy.api<{ total: number }>('GET', '/api/v1/keys')
    expect(list.total).toBe(4)
    expect(w.proxy.configText()).toContain(NEW_KEYS[1])
    await closeToasts()
    await shot(w, '05-keys-imported')
  })

  it('shows a key cooling down, with a live countdown, after the upstream answers 429', async () => {
    const limited = NEW_KEYS[0]!
    const fp = fingerprint(limited)
    await w.mock.setKey(limited, { mode: 'rate_limited', retry_delay: '60s' })
    // Round robin over four keys: eight requests reach every key; the 429 moves a request on.
    for (let i = 0; i < 8; i++) expect(await w.proxy.generate(CLIENT_TOKEN)).toBe(200)
    const tag = page.locator(`[data-test=state-${fp}] [data-state=cooling]`)
    await tag.waitFor({ timeout: 15_000 })
    const countdown = page.locator(`[data-test="model-${fp}-gemini-2.5-flash"] [data-test=countdown]`)
    const seconds = async () => {
      const t = (await countdown.textContent())!.trim()
      const m = /^(?:(\d+):)?(\d+)s?$/.exec(t)
      if (!m) throw new Error(`unexpected countdown ${t}`)
      return m[1] ? Number(m[1]) * 60 + Number(m[2]) : Number(m[2])
    }
    const first = await seconds()
    expect(first).toBeGreaterThan(30)
    expect(first).toBeLessThanOrEqual(60)
    await expect.poll(seconds, { timeout: 5_000 }).toBeLessThan(first)
    expect(await page.textContent(`[data-test="model-${fp}-gemini-2.5-flash"]`)).toContain('Cooling')
    await shot(w, '06-keys-cooling')
  })

  it('validates the selected keys live, with progress and a result per key', async () => {
    await page.locator('[data-test=keys-table] .el-table__header .el-checkbox').click()
    await expect.poll(() => page.textContent('[data-test=validate-selected]')).toContain('Validate (4)')
    await page.click('[data-test=validate-selected]')
    const dialog = page.locator('[data-test=batch-dialog]')
    await expect.poll(() => dialog.locator('[data-test=batch-summary]').textContent(), { timeout: 30_000 }).toContain('Done: 4 key(s), 0 failed.')
    expect(await dialog.locator('[data-result=valid]').count()).toBe(4)
    await shot(w, '07-keys-validated')
    await page.click('[data-test=batch-close]')
    await page.locator('[data-test=keys-table] .el-table__header .el-checkbox').click()
  })

  it('acts in bulk only on the selected keys that are shown, after saying what it will do', async () => {
    const shown = fingerprint(NEW_KEYS[1]!)
    await page.locator('[data-test=select-shown]').click()
    await expect.poll(() => page.textContent('[data-test=validate-selected]')).toContain('Validate (4)')
    // A search hides three keys: they leave the selection, the header box stays honest.
    await page.fill(field('keys-search'), shown)
    await expect.poll(() => page.locator('[data-test=keys-table] .el-table__row').count()).toBe(1)
    await expect.poll(() => page.textContent('[data-test=validate-selected]')).toContain('Validate (1)')
    expect(await page.textContent('[data-test=keys-selected]')).toContain('1 selected')
    const question = await bulkAction('disable', 'Disable')
    expect(question).toContain('Disable 1 key')
    expect(question).toContain('Disable the selected key?')
    const dialog = page.locator('[data-test=batch-dialog]')
    await expect.poll(() => dialog.locator('[data-test=batch-summary]').textContent(), { timeout: 15_000 }).toContain('Done: 1 key(s), 0 failed.')
    await page.click('[data-test=batch-close]')
    expect(await disabledKeys()).toEqual([shown])
    await shot(w, '07b-keys-bulk-disabled')

    // All four shown and selected: "enable" skips the three that are not disabled, and says so.
    await page.fill(field('keys-search'), '')
    await expect.poll(() => page.locator('[data-test=keys-table] .el-table__row').count()).toBe(4)
    await expect.poll(() => page.textContent('[data-test=validate-selected]')).toContain('Validate (1)')
    await page.locator('[data-test=select-shown]').click()
    await expect.poll(() => page.textContent('[data-test=validate-selected]')).toContain('Validate (4)')
    const again = await bulkAction('enable', 'Enable')
    expect(again).toContain('Enable 1 key')
    expect(again).toContain('3 selected keys are not disabled and stay as they are.')
    await expect.poll(() => dialog.locator('[data-test=batch-summary]').textContent(), { timeout: 15_000 }).toContain('Done: 1 key(s), 0 failed.')
    await page.click('[data-test=batch-close]')
    expect(await disabledKeys()).toEqual([])
    await page.locator('[data-test=select-shown]').click()
    await expect.poll(() => page.locator('[data-test=keys-selected]').count()).toBe(0)
  })

  it('checks a new key and its name before sending them, like the proxy would', async () => {
    await page.click('[data-test=add-key]')
    const dialog = page.locator('[data-test=add-key-dialog]')
    try {
      await page.fill(field('add-key-key'), 'hello')
      await page.fill(field('add-key-name'), 'new key')
      await page.click('[data-test=add-key-submit]')
      await expect.poll(() => dialog.textContent()).toContain('A Gemini API key is AIza followed by 35')
      await expect.poll(() => dialog.textContent()).toContain("1-64 letters, digits, '-', '_', '.' or '@'.")
      await shot(w, '07c-add-key-invalid')
    } finally {
      await dialog.locator('button', { hasText: 'Cancel' }).click()
      await dialog.waitFor({ state: 'hidden' })
    }
    expect((await w.proxy.api<{ total: number }>('GET', '/api/v1/keys')).total).toBe(4)
  })

  it('creates a client whose token, shown once, works through the proxy; revoking it stops it', async () => {
    await nav('clients')
    await page.locator('[data-test=client-row-alice]').waitFor()
    await page.click('[data-test=create-client]')
    // Pools are picked from the configured ones: a new name cannot be made up here.
    await page.click('[data-test=client-pools]')
    await page.keyboard.type('nosuchpool')
    await page.keyboard.press('Enter')
    await expect.poll(() => page.locator('.el-select-dropdown:visible').textContent()).toContain('No such pool')
    expect(await page.locator('[data-test=client-pools] .el-tag').count()).toBe(0)
    await page.locator('[data-test=client-pools] input').fill('')
    await page.fill(field('client-name'), 'e2e-app')
    await page.fill(field('client-rpm'), '100')
    await page.click('[data-test=client-submit]')
    const tokenInput = page.locator(field('client-token'))
    await tokenInput.waitFor()
    const token = await tokenInput.inputValue()
    expect(token).toMatch(/^gp-/)
    await toast('success', 'Client e2e-app created')
    // Shown once: Escape does not close it, only "I have stored it" does.
    await page.keyboard.press('Escape')
    await page.waitForTimeout(300)
    expect(await page.locator('[data-test=token-dialog]').isVisible()).toBe(true)
    expect(await page.locator('[data-test=token-dialog] .el-dialog__headerbtn').count()).toBe(0)
    await shot(w, '08-client-token')
    await page.click('[data-test=token-close]')
    await page.locator('[data-test=token-dialog]').waitFor({ state: 'hidden' })

    expect(await w.proxy.generate(token)).toBe(200)
    expect(await w.proxy.generate(token)).toBe(200)
    // Usage is counted at once; today's totals after the state store's next commit.
    await expect
      .poll(async () => {
        await page.click('text=Refresh')
        return page.textContent('[data-test=today-e2e-app]')
      }, { timeout: 15_000, interval: 500 })
      .toContain('2 requests')
    expect(await page.textContent('[data-test=rpm-e2e-app]')).toContain('2 / 100')
    await closeToasts()
    await shot(w, '09-clients')

    await page.click('[data-test=edit-e2e-app]')
    await page.fill(field('client-rpm'), '')
    await page.fill(field('client-concurrency'), '3')
    await page.click('[data-test=client-submit]')
    await toast('success', 'Client e2e-app updated')
    const clients = await w.proxy.api<{ name: string; limits: { rpm: number | null; concurrency: number | null } }[]>('GET', '/api/v1/clients')
    expect(clients.find((c) => c.name === 'e2e-app')!.limits).toMatchObject({ rpm: null, concurrency: 3 })

    await page.click('[data-test=revoke-e2e-app]')
    await page.locator('.el-message-box button', { hasText: 'Revoke' }).click()
    await toast('success', 'Client e2e-app revoked')
    await page.locator('[data-test=client-row-e2e-app]').waitFor({ state: 'detached' })
    expect(await w.proxy.generate(token)).toBe(401)
    await closeToasts()
  })

  it('lists a JWT client without an entry read-only, with the limits each of its tokens carried', async () => {
    // Two tokens of one subject that has no [[clients]] entry: one carries its own limits, the
    // other none (so [jwt.policy] holds it). The latest sets the row's limits.
    const name = 'e2e-jwt'
    expect(await w.proxy.generate(signJwt({ sub: name, [JWT_POLICY_CLAIM]: { rpm: 5 } }))).toBe(200)
    expect(await w.proxy.generate(signJwt({ sub: name }))).toBe(200)
    // The UI's types are the API's: exactly these fields.
    const listed = await w.proxy.api<Record<string, unknown>[]>('GET', '/api/v1/clients')
    const api = listed.find((c) => c.name === name)!
    expect(Object.keys(api).sort()).toEqual(['auth', 'limits', 'limits_source', 'name', 'pools', 'token_limits', 'usage'])
    expect(api).toMatchObject({ auth: 'jwt', limits_source: 'jwt_default' })
    const sets = api.token_limits as Record<string, unknown>[]
    expect(sets.map((s) => Object.keys(s).sort())).toEqual([0, 1].map(() => ['last_seen', 'limits', 'pools', 'source']))
    expect(listed.find((c) => c.name === 'alice')).toMatchObject({ limits_source: 'entry', token_limits: [] })

    await nav('clients')
    await page.click('text=Refresh')
    const tag = page.locator(`[data-test=jwt-only-${name}]`)
    await tag.waitFor()
    expect(await tag.textContent()).toBe('JWT, no entry')
    expect(await page.locator(`[data-test=edit-${name}], [data-test=revoke-${name}]`).count()).toBe(0)
    expect(await page.locator('[data-test=edit-alice]').count()).toBe(1)
    expect(await page.textContent(`[data-test=limits-source-${name}]`)).toBe('Limits: [jwt.policy]')
    expect(await page.textContent(`[data-test=rpm-${name}]`)).toContain(`2 / ${JWT_DEFAULT_RPM}`)
    await tag.hover()
    await page.locator('.el-popper', { hasText: 'its latest token carries no policy claim' }).waitFor()
    await shot(w, '09a-clients-jwt')

    await page.click(`[data-test=varies-${name}]`)
    const list = page.locator(`[data-test=token-limits-${name}]`)
    await list.waitFor()
    const items = await list.locator('li').allTextContents()
    expect(items).toHaveLength(2)
    expect(items[0]).toContain('[jwt.policy]')
    expect(items[0]).toContain(`Requests per minute: ${JWT_DEFAULT_RPM}`)
    expect(items[1]).toContain('token claim')
    expect(items[1]).toContain('Requests per minute: 5')
    await shot(w, '09b-clients-jwt-token-limits')
    await page.keyboard.press('Escape')
    await list.waitFor({ state: 'hidden' })
  })

  it('edits the config: an error is refused and shown at its line; the fix is applied; then rolled back', async () => {
    await nav('config')
    const editor = page.locator('.cm-content')
    await editor.waitFor()
    await expect.poll(() => editor.textContent()).toContain('[server]')
    const before = (await w.proxy.api<{ text: string; version: number }>('GET', '/api/v1/config'))
    // Line 2 (just under the first line, "# gemini-proxy configuration ...") becomes the error.
    await editor.click()
    await page.keyboard.press('Control+Home')
    await page.keyboard.press('End')
    await page.keyboard.press('Enter')
    await page.keyboard.type('[bogus]')
    await page.click('[data-test=config-validate]')
    await page.locator('[data-test=problem-2]').waitFor()
    expect(await page.textContent('[data-test=problem-2]')).toMatch(/unknown field `bogus`/)
    await page.locator('.cm-gutter-lint .cm-lint-marker-error').first().waitFor()
    expect(await page.locator('.cm-lintRange-error').count()).toBeGreaterThan(0)
    // The lint marker sits on line 2 of the gutter.
    const markerTop = (await page.locator('.cm-gutter-lint .cm-lint-marker-error').first().boundingBox())!.y
    const line2 = page.locator('.cm-lineNumbers .cm-gutterElement', { hasText: /^2$/ })
    const line2Box = (await line2.boundingBox())!
    expect(Math.abs(markerTop - line2Box.y)).toBeLessThan(line2Box.height)
    await toast('error', 'The configuration is not valid')
    await closeToasts()
    await page.click('[data-test=config-review]')
    await toast('error', 'The configuration is not valid')
    expect(await page.locator('[data-test=review-dialog]').isVisible()).toBe(false)
    await shot(w, '10-config-error')
    await closeToasts()
    expect((await w.proxy.api<{ text: string }>('GET', '/api/v1/config')).text).toBe(before.text)

    // Fix it with a real change: replace line 2.
    await page.locator('.cm-line').nth(1).click()
    await page.keyboard.press('Home')
    await page.keyboard.press('Shift+End')
    await page.keyboard.type('[hygiene]\nstrip_response_headers = ["server", "via", "x-e2e-marker"]')
    await page.click('[data-test=config-validate]')
    await page.locator('[data-test=valid]').waitFor()
    await closeToasts()
    await page.click('[data-test=config-review]')
    const review = page.locator('[data-test=review-dialog]')
    await review.waitFor()
    const added = await review.locator('[data-kind=add]').allTextContents()
    expect(added.join('\n')).toContain('strip_response_headers = ["server", "via", "x-e2e-marker"]')
    await page.fill(field('config-comment'), 'e2e: strip one more header')
    await shot(w, '11-config-diff')
    await page.click('[data-test=config-save]')
    await toast('success', /Saved and applied \(version \d+\)/)
    await review.waitFor({ state: 'hidden' })
    const saved = await w.proxy.api<{ text: string; version: number }>('GET', '/api/v1/config')
    expect(saved.text).toContain('x-e2e-marker')
    expect(saved.version).toBeGreaterThan(before.version)
    expect(w.proxy.configText()).toContain('x-e2e-marker')
    await expect.poll(() => page.locator('[data-test=dirty]').count()).toBe(0)
    await closeToasts()
    await shot(w, '12-config-saved')

    // A setting that needs a restart says so.
    await editor.click()
    // Line 5 is `listen = ...` under [server] (lines 2-3 hold the change just saved).
    await page.keyboard.press('Control+Home')
    await page.keyboard.press('ArrowDown')
    await page.keyboard.press('ArrowDown')
    await page.keyboard.press('ArrowDown')
    await page.keyboard.press('ArrowDown')
    await page.keyboard.press('End')
    await page.keyboard.press('Enter')
    await page.keyboard.type('threads = 1')
    await page.click('[data-test=config-review]')
    await review.waitFor()
    await page.click('[data-test=config-save]')
    await toast('success', /Saved and applied/)
    await review.waitFor({ state: 'hidden' })
    await expect.poll(() => page.textContent('[data-test=restart-needed]')).toContain('threads')
    await shot(w, '13-config-restart-needed')
    await closeToasts()

    // Roll back to the version before the header change.
    await page.click('.el-tabs__item:has-text("History")')
    const versions = await w.proxy.api<{ id: number; comment: string }[]>('GET', '/api/v1/config/versions')
    expect(versions[1]!.comment).toBe('e2e: strip one more header')
    const target = versions[2]!.id
    await page.locator(`[data-test=rollback-${target}]`).waitFor()
    await shot(w, '14-config-history')
    await page.click(`[data-test=rollback-${target}]`)
    await page.locator('.el-message-box button', { hasText: 'Roll back' }).click()
    await toast('success', new RegExp(`Rolled back to version ${target} \\(new version \\d+\\)`))
    const rolled = await w.proxy.api<{ text: string }>('GET', '/api/v1/config')
    expect(rolled.text).not.toContain('x-e2e-marker')
    expect(rolled.text).not.toContain('threads = 1')
    await page.click('.el-tabs__item:has-text("Editor")')
    await expect.poll(() => editor.textContent()).not.toContain('x-e2e-marker')
    await page.click('.el-tabs__item:has-text("History")')
    // The rollback's comment is the server's: shown in the UI's language; the user's as typed.
    const now = await w.proxy.api<{ id: number; server_comment: { kind: string } | null }[]>('GET', '/api/v1/config/versions')
    expect(now[0]!.server_comment).toEqual({ kind: 'rollback', params: { version: target } })
    await expect.poll(() => page.textContent(`[data-test=comment-${now[0]!.id}]`)).toBe(`Rollback to version ${target}`)
    expect(await page.textContent(`[data-test=comment-${versions[1]!.id}]`)).toBe('e2e: strip one more header')
    await page.click('[data-test=lang-button]')
    await page.locator('[data-test=lang-zh]').click()
    await expect.poll(() => page.textContent(`[data-test=comment-${now[0]!.id}]`)).toBe(`回滚到版本 ${target}`)
    await shot(w, '15a-config-history-zh')
    await page.click('[data-test=lang-button]')
    await page.locator('[data-test=lang-en]').click()
    await expect.poll(() => page.textContent(`[data-test=comment-${now[0]!.id}]`)).toBe(`Rollback to version ${target}`)
    await page.click(`[data-test=diff-${versions[1]!.id}]`)
    await page.locator('[data-test=version-dialog] [data-kind=del]').first().waitFor()
    expect((await page.locator('[data-test=version-dialog] [data-kind=del]').allTextContents()).join('\n')).toContain('x-e2e-marker')
    await shot(w, '15-config-rolled-back')
    await page.keyboard.press('Escape')
    await closeToasts()
  })

  it("shows the history's server comments and authors in Chinese, and a user's look-alike comment as typed", async () => {
    // A user's comment worded exactly like the server's start-up comment, through the API.
    const running = await w.proxy.api<{ text: string }>('GET', '/api/v1/config')
    const typed = 'configuration at start-up'
    const saved = await w.proxy.api<{ version: number }>('PUT', '/api/v1/config', { text: `${running.text}\n# e2e: a look-alike comment\n`, comment: typed })
    type Row = { id: number; actor: string; server_comment: { kind: string; params?: { version?: number } } | null }
    const versions = await w.proxy.api<Row[]>('GET', '/api/v1/config/versions')
    expect(versions[0]).toMatchObject({ id: saved.version, server_comment: null })
    const rollback = versions.find((v) => v.server_comment?.kind === 'rollback')!
    const startup = versions.find((v) => v.actor === 'startup')!
    // Reopened, so that the page shows the new version.
    await nav('dashboard')
    await nav('config')
    await page.click('.el-tabs__item:has-text("History")')
    await page.locator(`[data-test=comment-${saved.version}]`).waitFor()
    await page.click('[data-test=lang-button]')
    await page.locator('[data-test=lang-zh]').click()
    const text = (what: string, id: number) => page.textContent(`[data-test=${what}-${id}]`)
    await expect.poll(() => text('author', startup.id)).toBe('启动')
    expect(await text('comment', startup.id)).toBe('启动时的配置')
    expect(await text('comment', rollback.id)).toBe(`回滚到版本 ${rollback.server_comment!.params!.version}`)
    expect(await text('author', rollback.id)).toBe('登录会话（127.0.0.1）')
    expect(await text('comment', saved.version)).toBe(typed)
    expect(await text('author', saved.version)).toBe('管理令牌（127.0.0.1）')
    await shot(w, '15c-config-history-authors-zh')
    await page.click('[data-test=lang-button]')
    await page.locator('[data-test=lang-en]').click()
    await expect.poll(() => text('author', saved.version)).toBe('Admin token from 127.0.0.1')
  })

  it('validates the config as it is typed, marking problems at their lines', async () => {
    await page.click('.el-tabs__item:has-text("Editor")')
    const editor = page.locator('.cm-content')
    await editor.click()
    await page.keyboard.press('Control+End')
    await page.keyboard.type('\nbogus_setting = [')
    // No button pressed: the check runs by itself shortly after the typing stops.
    const problems = page.locator('[data-test=problems]')
    await problems.waitFor({ timeout: 10_000 })
    await expect.poll(() => page.locator('[data-test=checking]').count()).toBe(0)
    expect(await problems.textContent()).toMatch(/\d+ problem\(s\)/)
    await page.locator('.cm-gutter-lint .cm-lint-marker-error').first().waitFor()
    await shot(w, '15b-config-live-problem')
    // A reference to a secret the proxy does not hold is a problem at its line too (its text is
    // not quoted back: a hand-typed placeholder can hold anything).
    await page.keyboard.press('Shift+Home')
    await page.keyboard.type('[[pools]]\nname = "e2e-extra"\nkeys = ["redacted:key:000000000000"]')
    const placeholder = page.locator('[data-test^=problem-]', { hasText: 'matches no secret of the running configuration' })
    await placeholder.waitFor({ timeout: 10_000 })
    expect(await placeholder.getAttribute('data-test')).toMatch(/^problem-\d+$/)
    expect(await problems.textContent()).not.toContain('000000000000')
    // Its place leads to the line that holds it.
    await page.keyboard.press('Control+Home')
    await placeholder.locator('a.place').click()
    await expect.poll(() => page.locator('.cm-activeLine').textContent()).toContain('redacted:key:000000000000')
    await page.click('[data-test=config-revert]')
    await problems.waitFor({ state: 'detached' })
  })

  it('says the file on disk is not valid when reloading it, apart from the editor', async () => {
    const original = w.proxy.configText()
    writeFileSync(w.proxy.configPath, `${original}\n[key_health]\nbreaker_threshold = 5\n`)
    try {
      await page.click('[data-test=config-reload]')
      await page.locator('.el-message-box button', { hasText: 'Reload file' }).click()
      // The reason, not just a count of problems.
      await toast('error', /Cannot reload the file: .*(table|key_health|duplicate).*\(422\)/i)
      const disk = page.locator('[data-test=disk-problems]')
      await disk.waitFor()
      expect(await disk.textContent()).toContain(w.proxy.configPath)
      expect(await page.locator('[data-test=problems]').count()).toBe(0)
      await shot(w, '15c-config-disk-invalid')
    } finally {
      writeFileSync(w.proxy.configPath, original)
    }
    await closeToasts()
  })

  it('shows the request log with filters, and one request with its attempts', async () => {
    const rows = await w.proxy.api<{ id: number; status: number; attempts: { outcome: string }[] }[]>('GET', '/api/v1/requests?limit=100')
    const retried = rows.find((r) => r.attempts.length > 1 && r.attempts.some((a) => a.outcome === 'rate_limited'))
    expect(retried, 'a request that moved on from the cooling key').toBeDefined()
    await nav('requests')
    await page.locator('[data-test=requests-table] .el-table__row').first().waitFor()
    const fp = fingerprint(NEW_KEYS[1]!)
    const onlyThatKey = async () => (await page.locator('[data-test=requests-table] .el-table__row').allTextContents()).every((t) => t.includes('key-' + fp))
    await page.fill(field('filter-key'), fp)
    await page.click('[data-test=filter-apply]')
    // The filter is in the URL: it survives a reload, and the back button returns to it.
    await page.waitForURL(new RegExp(`/requests\\?key=${fp}$`))
    await expect.poll(onlyThatKey).toBe(true)
    await page.reload()
    await page.locator('[data-test=requests-table] .el-table__row').first().waitFor()
    expect(await page.inputValue(field('filter-key'))).toBe(fp)
    await expect.poll(onlyThatKey).toBe(true)
    await page.fill(field('filter-key'), '')
    await page.fill(field('filter-model'), 'gemini-2.5-flash')
    await page.click('[data-test=filter-apply]')
    await page.waitForURL(/\/requests\?model=gemini-2\.5-flash$/)
    await shot(w, '16-requests')
    await page.goBack()
    await page.waitForURL(new RegExp(`/requests\\?key=${fp}$`))
    await expect.poll(() => page.inputValue(field('filter-key'))).toBe(fp)
    expect(await page.inputValue(field('filter-model'))).toBe('')
    await expect.poll(onlyThatKey).toBe(true)

    // The error column says why a request failed (a shared link opens the same view).
    const refused = (await w.proxy.api<{ id: number; error: string | null }[]>('GET', '/api/v1/requests?status=401&limit=1'))[0]!
    expect(refused.error).toBeTruthy()
    await page.goto(`${w.proxy.admin}/requests?status=401`)
    await expect.poll(() => page.textContent(`[data-test=error-${refused.id}]`)).toBe(refused.error)
    expect(await page.textContent('[data-test=filter-status]')).toContain('401')
    await shot(w, '16a-requests-errors')
    // Deep link to one request (the SPA fallback serves /requests).
    await page.goto(`${w.proxy.admin}/requests?id=${retried!.id}`)
    const drawer = page.locator('[data-test=request-detail]')
    await drawer.locator('[data-test=attempts-table]').waitFor()
    await drawer.locator('[data-outcome=rate_limited]').waitFor()
    await drawer.locator('[data-outcome=ok]').waitFor()
    expect(await drawer.textContent()).toContain(`Request #${retried!.id}`)
    // Outcomes are words, not log tokens.
    expect(await drawer.locator('[data-outcome=rate_limited]').first().textContent()).toBe('rate limited')
    await shot(w, '17-request-detail')
    await page.keyboard.press('Escape')
    await drawer.waitFor({ state: 'hidden' })
    // From the keyboard: the row's time is a button that opens it.
    const first = page.locator('[data-test=requests-table] button[data-test^=open-]').first()
    await first.focus()
    await page.keyboard.press('Enter')
    await drawer.locator('[data-test=attempts-table]').waitFor()
    await page.keyboard.press('Escape')
    await drawer.waitFor({ state: 'hidden' })
  })

  it('shows admin actions in the audit log, by whom, in English and in Chinese, with no token in sight', async () => {
    type Entry = { id: number; actor: string; action: string; target: string; detail: { version?: number }; server_comment: { kind: string; params?: { version?: number } } | null }
    // Through the API with the admin token: a key disabled and enabled again, a client created.
    const fp = fingerprint(INITIAL_KEYS[1]!)
    await w.proxy.api('POST', `/api/v1/keys/${fp}/disable`)
    await w.proxy.api('POST', `/api/v1/keys/${fp}/enable`)
    const created = await w.proxy.api<{ token: string }>('POST', '/api/v1/clients', { name: 'e2e-audit' })
    // Through the UI, as the logged-in session: the client revoked.
    await nav('clients')
    await page.click('text=Refresh')
    await page.click('[data-test=revoke-e2e-audit]')
    await page.locator('.el-message-box button', { hasText: 'Revoke' }).click()
    await toast('success', 'Client e2e-audit revoked')
    await closeToasts()
    // Key actions are recorded just after their answer.
    const newest = async () => w.proxy.api<Entry[]>('GET', '/api/v1/audit?limit=100')
    await expect.poll(async () => (await newest()).slice(0, 4).map((e) => e.action)).toEqual(['clients.revoke', 'clients.create', 'keys.enable', 'keys.disable'])
    const all = await newest()
    const [revoked, create, enabled, disabled] = all as [Entry, Entry, Entry, Entry]
    expect(revoked.actor).toMatch(/^session@/)
    expect(create.actor).toMatch(/^token@/)
    const rollback = all.find((e) => e.server_comment?.kind === 'rollback')!
    expect(rollback, 'the rollback of the config scenario').toBeDefined()

    await nav('audit')
    const text = (what: string, id: number) => page.textContent(`[data-test=${what}-${id}]`)
    const version = (e: Entry) => e.detail.version
    /** What the page says of each of these entries. */
    const seen = async () => ({
      revoked: [await text('action', revoked.id), await text('raw-action', revoked.id), await text('actor', revoked.id), await text('target', revoked.id)],
      created: [await text('action', create.id), await text('actor', create.id), await text('details', create.id)],
      disabled: [await text('action', disabled.id), await text('details', disabled.id)],
      enabled: await text('action', enabled.id),
      rollback: await text('details', rollback.id),
      time: await text('time', revoked.id),
    })
    await page.locator(`[data-test=action-${revoked.id}]`).waitFor()
    expect(await seen()).toEqual({
      revoked: ['Client revoked', 'clients.revoke', 'Login session from 127.0.0.1', 'e2e-audit'],
      created: ['Client created', 'Admin token from 127.0.0.1', `Comment: Client e2e-audit createdConfig version: ${version(create)}`],
      disabled: ['Key disabled', `Fingerprint: ${fp}`],
      enabled: 'Key enabled',
      rollback: `Comment: Rollback to version ${rollback.server_comment!.params!.version}Config version: ${version(rollback)}`,
      time: expect.stringMatching(/^(now|\d+ (sec|min)\. ago)\d{2}\/\d{2}\/\d{4}, \d{2}:\d{2}:\d{2}$/),
    })
    const shown = (await page.textContent('[data-test=audit-table]'))!
    const session = (JSON.parse((await page.evaluate(() => sessionStorage.getItem('gp.token')))!) as { token: string }).token
    for (const secret of [created.token, CLIENT_TOKEN, ADMIN_TOKEN, session, ...INITIAL_KEYS, ...NEW_KEYS]) expect(shown).not.toContain(secret)
    await shot(w, '18a-audit')

    // Filtered from the toolbar: every client action, then only the admin token's.
    const rows = () => page.locator('[data-test=audit-table] .el-table__row')
    await page.click('[data-test=filter-action]')
    await page.locator('.el-select-dropdown__item:visible', { hasText: 'Any client action' }).click()
    await page.waitForURL(/\/audit\?action=clients\.\*$/)
    const clientActions = (await newest()).filter((e) => e.action.startsWith('clients.'))
    await expect.poll(() => rows().count()).toBe(clientActions.length)
    await page.click('[data-test=filter-actor]')
    await page.locator('.el-select-dropdown__item:visible', { hasText: 'Admin token, any address' }).click()
    await page.waitForURL(/\/audit\?action=clients\.\*&actor=token$/)
    await expect.poll(() => rows().count()).toBe(clientActions.filter((e) => e.actor.startsWith('token')).length)
    expect(await text('action', create.id)).toBe('Client created')
    expect(await page.locator(`[data-test=action-${revoked.id}]`).count()).toBe(0)
    await shot(w, '18b-audit-filtered')
    // The filters are in the URL: a reload keeps them.
    await page.reload()
    await page.locator(`[data-test=action-${create.id}]`).waitFor()
    expect(await page.textContent('[data-test=filter-actor]')).toContain('Admin token, any address')

    // In Chinese: the same entries in its words, the recorded action unchanged.
    await page.click('[data-test=filter-reset]')
    await page.waitForURL(/\/audit$/)
    await page.locator(`[data-test=action-${revoked.id}]`).waitFor()
    await page.click('[data-test=lang-button]')
    await page.locator('[data-test=lang-zh]').click()
    await expect.poll(() => text('action', revoked.id)).toBe('吊销客户端')
    expect(await page.textContent('h1')).toBe('审计日志')
    expect(await seen()).toEqual({
      revoked: ['吊销客户端', 'clients.revoke', '登录会话（127.0.0.1）', 'e2e-audit'],
      created: ['创建客户端', '管理令牌（127.0.0.1）', `说明: 已创建客户端 e2e-audit配置版本: ${version(create)}`],
      disabled: ['停用密钥', `指纹: ${fp}`],
      enabled: '启用密钥',
      rollback: `说明: 回滚到版本 ${rollback.server_comment!.params!.version}配置版本: ${version(rollback)}`,
      time: expect.stringMatching(/^(现在|\d+(秒钟?|分钟)前)\d{4}\/\d{2}\/\d{2} \d{2}:\d{2}:\d{2}$/),
    })
    await shot(w, '18c-audit-zh')
    await page.click('[data-test=lang-button]')
    await page.locator('[data-test=lang-en]').click()
    await expect.poll(() => text('action', revoked.id)).toBe('Client revoked')
  })

  it('shows traffic on the dashboard', async () => {
    await nav('dashboard')
    await page.locator('[data-test=top-clients]').getByText('alice').waitFor()
    expect(await page.textContent('[data-test=top-models]')).toContain('gemini-2.5-flash')
    const counts = await Promise.all(['healthy', 'cooling', 'broken', 'disabled'].map(async (s) => Number(await page.textContent(`[data-test=count-${s}] .value`))))
    expect(counts.reduce((a, b) => a + b, 0)).toBe(4)
    expect(await page.getAttribute('[data-test=range]', 'aria-label')).toBe('Time range')
    // The 7-day range refreshes every 2 minutes, an interval the select offers by name.
    await page.locator('[data-test=range] label', { hasText: '7 days' }).click()
    await expect.poll(() => page.textContent('[data-test=auto-refresh]')).toContain('Every 2 min')
    await page.locator('[data-test=range] label', { hasText: '15 min' }).click()
    await page.waitForTimeout(500)
    await shot(w, '18-dashboard')
    // A key-count card opens the filtered keys from the keyboard too.
    await page.locator('[data-test=count-healthy]').focus()
    await page.keyboard.press('Enter')
    await page.waitForURL(/\/keys$/)
    await expect.poll(() => page.textContent('[data-test=keys-state-filter]')).toContain('Healthy')
  })

  it('lists the certificates the TLS listener serves', async () => {
    const certs = await w.proxy.api<{ name: string; source: string }[]>('GET', '/api/v1/certificates')
    expect(certs).toHaveLength(1)
    const name = certs[0]!.name
    await nav('certificates')
    const table = page.locator('[data-test=certs-table]')
    await table.locator('.el-table__row').first().waitFor()
    const text = await table.textContent()
    for (const n of TLS_NAMES) expect(text).toContain(n)
    expect(text).toContain('Self-signed')
    expect(await page.textContent(`[data-test=expiry-${name}]`)).toMatch(/\d+ days left/)
    // A self-signed certificate is regenerated by a restart, not renewed from here.
    expect(await page.locator(`[data-test=renew-${name}]`).isDisabled()).toBe(true)
    await shot(w, '19-certificates')
  })

  it('fits its tables in a 1,280 px window: nothing scrolls sideways, no header is cut', async () => {
    await page.setViewportSize({ width: 1280, height: 800 })
    try {
      for (const lang of ['en', 'zh'] as const) {
        await page.click('[data-test=lang-button]')
        await page.locator(`[data-test=lang-${lang}]`).click()
        for (const name of ['keys', 'clients', 'requests', 'audit', 'config', 'certificates']) {
          await nav(name)
          if (name === 'config') await page.locator('.el-tabs__item').nth(1).click()
          await page.locator('.el-table:visible .el-table__row').first().waitFor()
          // Columns settle once Element has measured the table.
          await page.waitForTimeout(300)
          const m = await page.evaluate(() => ({
            page: document.documentElement.scrollWidth - window.innerWidth,
            tables: Array.from(document.querySelectorAll<HTMLElement>('.el-table'))
              .filter((t) => t.offsetParent !== null)
              .map((t) => {
                const wrap = t.querySelector<HTMLElement>('.el-table__body-wrapper .el-scrollbar__wrap')
                return {
                  table: t.getAttribute('data-test'),
                  beyondWindow: t.getBoundingClientRect().right - window.innerWidth,
                  sideways: wrap ? wrap.scrollWidth - wrap.clientWidth : 0,
                  cutHeaders: Array.from(t.querySelectorAll<HTMLElement>('th .cell')).filter((c) => c.scrollWidth > c.clientWidth + 1).map((c) => `${c.textContent}: ${c.scrollWidth} px in ${c.clientWidth}`),
                }
              }),
          }))
          expect(m.page, `${name} (${lang}): the page scrolls sideways`).toBeLessThanOrEqual(0)
          expect(m.tables.length, name).toBeGreaterThan(0)
          for (const t of m.tables) expect(t, `${name} (${lang})`).toMatchObject({ beyondWindow: expect.any(Number), sideways: 0, cutHeaders: [] })
          for (const t of m.tables) expect(t.beyondWindow, `${name} (${lang}) ${t.table}`).toBeLessThanOrEqual(0)
          await shot(w, `19b-${name}-1280-${lang}`)
        }
      }
    } finally {
      await page.click('[data-test=lang-button]')
      await page.locator('[data-test=lang-en]').click()
      await page.setViewportSize({ width: 1400, height: 900 })
    }
  })

  it('works on a phone-sized screen, in Chinese, in dark mode', async () => {
    const ctx = await w.browser.newContext({ viewport: { width: 390, height: 844 }, locale: 'zh-CN', colorScheme: 'dark', isMobile: true, hasTouch: true })
    const phone = await ctx.newPage()
    phone.on('pageerror', (e) => w.problems.push(`phone pageerror: ${e.message}`))
    await phone.goto(`${w.proxy.admin}/`)
    await phone.waitForURL(/\/login/)
    expect(await phone.textContent('.login-card')).toContain('管理员密码')
    expect(await phone.evaluate(() => document.documentElement.classList.contains('dark'))).toBe(true)
    await shot(w, '20-phone-login-zh-dark', phone)
    await phone.click('.el-tabs__item:has-text("管理员令牌")')
    await phone.fill(field('token'), ADMIN_TOKEN)
    await phone.click('[data-test=login-submit]')
    await phone.waitForURL(/\/dashboard/)
    await phone.locator('[data-test=stat-rps]').waitFor()
    await shot(w, '21-phone-dashboard', phone)
    await phone.click('[data-test=menu-button]')
    await phone.locator('.el-drawer [data-test=nav-keys]').click()
    await phone.waitForURL(/\/keys/)
    await phone.locator('[data-test=keys-table]').waitFor()
    expect(await phone.textContent('h1')).toBe('密钥')
    await phone.locator('.el-drawer').waitFor({ state: 'hidden' })
    await shot(w, '22-phone-keys', phone)
    // The page fits the screen: no sideways scrolling of the whole page.
    expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390)
    // The audit log stacks each entry in two columns: nothing scrolls sideways, not even the table.
    await phone.click('[data-test=menu-button]')
    await phone.locator('.el-drawer [data-test=nav-audit]').click()
    await phone.waitForURL(/\/audit/)
    await phone.locator('[data-test=audit-table] .el-table__row').first().waitFor()
    await phone.locator('.el-drawer').waitFor({ state: 'hidden' })
    expect(await phone.textContent('h1')).toBe('审计日志')
    expect(await phone.locator('[data-test=audit-table] th').allTextContents()).toEqual(['时间 / 操作者', '操作 / 对象 / 详情'])
    const sideways = await phone.evaluate(() => {
      const wrap = document.querySelector<HTMLElement>('[data-test=audit-table] .el-table__body-wrapper .el-scrollbar__wrap')
      return { page: document.documentElement.scrollWidth, table: wrap ? wrap.scrollWidth - wrap.clientWidth : -1 }
    })
    expect(sideways).toEqual({ page: 390, table: 0 })
    await shot(w, '22a-phone-audit', phone)
    await phone.click('[data-test=menu-button]')
    await phone.locator('.el-drawer [data-test=nav-keys]').click()
    await phone.waitForURL(/\/keys/)
    await phone.locator('.el-drawer').waitFor({ state: 'hidden' })
    // Switch to English and light from the header.
    await phone.click('[data-test=lang-button]')
    await phone.locator('[data-test=lang-en]').click()
    await expect.poll(() => phone.textContent('h1')).toBe('Keys')
    await phone.click('[data-test=dark-toggle]')
    expect(await phone.evaluate(() => document.documentElement.classList.contains('dark'))).toBe(false)
    await ctx.close()
  })

  it('asks for the password again when the session ends, keeping unsaved config edits', async () => {
    // A proxy whose sessions last seconds; a tab of its own.
    const ttl = 5
    const short = await startExtraProxy(w, `session_ttl = "${ttl}s"`)
    const ctx = await w.browser.newContext({ viewport: { width: 1400, height: 900 }, locale: 'en-US' })
    const p = await ctx.newPage()
    p.on('pageerror', (e) => w.problems.push(`session pageerror: ${e.message}`))
    try {
      await p.goto(`${short.admin}/config`)
      await login(p)
      await p.waitForURL((u) => u.pathname === '/config')
      const stored = await p.evaluate(() => sessionStorage.getItem('gp.token'))
      const endsAt = Date.parse((JSON.parse(stored!) as { expiresAt: string }).expiresAt)
      const editor = p.locator('.cm-content')
      await expect.poll(() => editor.textContent(), { timeout: 10_000 }).toContain('[server]')
      await editor.click()
      await p.keyboard.press('Control+End')
      await p.keyboard.type('\n# unsaved e2e edit')
      await p.locator('[data-test=dirty]').waitFor()
      // Past the session's end, the next call is refused: a dialog asks for the password.
      await p.waitForTimeout(Math.max(0, endsAt + 300 - Date.now()))
      await p.click('[data-test=config-validate]')
      const dialog = p.locator('[data-test=relogin-dialog]')
      await dialog.waitFor()
      expect(await dialog.textContent()).toContain('Your session has ended')
      expect(new URL(p.url()).pathname).toBe('/config')
      expect(await editor.textContent()).toContain('# unsaved e2e edit')
      // Escape does not dismiss it (that left the app stuck half logged out).
      await p.keyboard.press('Escape')
      await p.waitForTimeout(300)
      expect(await dialog.isVisible()).toBe(true)
      await shot(w, '24-session-ended', p)
      await p.fill('[data-test=relogin-dialog] input[data-test=password]', ADMIN_PASSWORD)
      await p.click('[data-test=relogin-dialog] [data-test=login-submit]')
      await dialog.waitFor({ state: 'hidden' })
      expect(await editor.textContent()).toContain('# unsaved e2e edit')
      // The session-ended toast went with the dialog; the action works again.
      await expect.poll(() => p.locator('.el-message--error').count()).toBe(0)
      await p.click('[data-test=config-validate]')
      await p.locator('[data-test=valid]').waitFor()
      await shot(w, '25-session-resumed', p)
    } catch (e) {
      await shot(w, 'failed-session-tab', p).catch(() => {})
      throw e
    } finally {
      await ctx.close()
      await short.stop()
    }
  })

  it('logs out: the session ends on the server too', async () => {
    const stored = await page.evaluate(() => sessionStorage.getItem('gp.token'))
    const token = (JSON.parse(stored!) as { token: string }).token
    expect((await fetch(`${w.proxy.admin}/api/v1/auth/session`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200)
    await page.click('[data-test=logout]')
    await page.waitForURL(/\/login/)
    expect(await page.textContent('.login-card')).toContain('You are logged out.')
    expect((await fetch(`${w.proxy.admin}/api/v1/auth/session`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(401)
    await page.goto(`${w.proxy.admin}/clients`)
    await page.waitForURL(/\/login\?redirect=/)
  })

  it('offers only the login methods that are set up: no token tab without an admin token', async () => {
    // The main proxy has both: both tabs.
    const both = await w.context.newPage()
    await both.goto(`${w.proxy.admin}/login`)
    await both.locator('[data-test=login-tabs]').waitFor()
    expect(await both.locator('.el-tabs__item').allTextContents()).toEqual(['Password', 'Admin token'])
    await both.close()

    const passwordOnly = await startExtraProxy(w, '', { adminToken: false })
    const ctx = await w.browser.newContext({ viewport: { width: 1400, height: 900 }, locale: 'en-US' })
    const p = await ctx.newPage()
    try {
      const asked = p.waitForResponse((r) => r.url().endsWith('/api/v1/auth/methods'))
      await p.goto(`${passwordOnly.admin}/login`)
      expect(await (await asked).json()).toEqual({ password: true, token: false })
      await expect.poll(() => p.textContent('[data-test=login-subtitle]')).toBe('Log in with the admin password.')
      expect(await p.locator('[data-test=login-tabs]').count()).toBe(0)
      expect(await p.textContent('.login-card')).not.toContain('Admin token')
      expect(await p.locator(field('token')).count()).toBe(0)
      await shot(w, '23a-login-password-only', p)
      await login(p)
      await p.waitForURL(/\/dashboard/)
    } finally {
      await ctx.close()
      await passwordOnly.stop()
    }
  })

  it('says how long to wait when failed logins are rate limited (last: it locks this address out)', async () => {
    for (let i = 0; i < 8; i++) {
      const answered = page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/login'))
      await login(page, `wrong-${i}`)
      const status = (await answered).status()
      await page.locator('[data-test=login-error]').waitFor()
      if (status === 429) break
      await expect.poll(() => page.textContent('[data-test=login-error]')).toContain('Wrong password.')
    }
    await page.locator('[data-test=login-wait]').waitFor()
    expect(await page.textContent('[data-test=login-error]')).toContain('Too many failed logins.')
    expect(await page.textContent('[data-test=login-wait]')).toMatch(/Try again in \d+ s\./)
    expect(await page.locator('[data-test=login-submit]').isDisabled()).toBe(true)
    await shot(w, '23-login-rate-limited')
  })

  it('raised no page errors and no console errors (CSP violations included)', () => {
    expect(w.problems).toEqual([])
  })
})
