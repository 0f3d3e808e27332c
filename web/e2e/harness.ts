// The end-to-end harness: the real mock-gemini and gemini-proxy binaries on free loopback
// ports (a temp config and data dir), and Debian's Chromium driven by playwright-core.
//
// Binaries: GEMINI_PROXY_BIN / MOCK_GEMINI_BIN, else target/debug of the repository, built
// first with cargo so that the binary embeds the current web/dist (set E2E_NO_CARGO=1 to skip).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash, createHmac } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

export const WEB = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const ROOT = resolve(WEB, '..')

export const ADMIN_PASSWORD = 'e2e-admin-password-1234'
export const ADMIN_TOKEN = 'e2e-admin-token-0123456789abcdef'
export const CLIENT_TOKEN = 'gp-e2e-client-token-0123456789'
/** The [jwt] HS256 secret of every proxy the harness starts (at least 32 bytes). */
export const JWT_SECRET = 'e2e-jwt-secret-0123456789abcdef-0123'
/** The claim a token carries its own limits in ([jwt] policy_claim). */
export const JWT_POLICY_CLAIM = 'gp'
/** The requests per minute of a JWT client with neither an entry nor a policy claim ([jwt.policy]). */
export const JWT_DEFAULT_RPM = 30

/** A Gemini-shaped key (AIza + 35 characters), so that the bulk import recognises it. */
export function geminiKey(tag: string): string {
  const body = `E2E${tag}`.replace(/[^A-Za-z0-9_-]/g, '')
  return `AIza${body.padEnd(35, '0')}`.slice(0, 39)
}

/** An HS256 JWT signed with JWT_SECRET, valid for an hour; `claims` add to or replace `exp`. */
export function signJwt(claims: Record<string, unknown>): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const signed = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}`
  return `${signed}.${createHmac('sha256', JWT_SECRET).update(signed).digest('base64url')}`
}

/** The 12 hex digits the proxy shows for a key. */
export function fingerprint(key: string): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 12)
}

export const INITIAL_KEYS = [geminiKey('INITIAL1'), geminiKey('INITIAL2')]
export const TLS_NAMES = ['e2e.test', 'localhost']

export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer()
    srv.once('error', fail)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      srv.close(() => ok(port))
    })
  })
}

function binaries(): { proxy: string; mock: string } {
  const proxy = process.env.GEMINI_PROXY_BIN ?? join(ROOT, 'target/debug/gemini-proxy')
  const mock = process.env.MOCK_GEMINI_BIN ?? join(ROOT, 'target/debug/mock-gemini')
  if (!process.env.GEMINI_PROXY_BIN && !process.env.E2E_NO_CARGO) {
    // Cheap when nothing changed; otherwise it embeds the UI that `npm run build` just made.
    const r = spawnSync('cargo', ['build', '--workspace', '--bins', '--locked'], { cwd: ROOT, stdio: 'inherit' })
    if (r.status !== 0) throw new Error(`cargo build failed (exit ${r.status})`)
  }
  for (const b of [proxy, mock]) if (!existsSync(b)) throw new Error(`${b} is missing: run \`cargo build --workspace --bins\` first`)
  return { proxy, mock }
}

/** Collects a child's output (for failures), never letting its pipes fill. */
class Output {
  text = ''
  constructor(proc: ChildProcess) {
    proc.stdout?.on('data', (d: Buffer) => (this.text = (this.text + d.toString()).slice(-200_000)))
    proc.stderr?.on('data', (d: Buffer) => (this.text = (this.text + d.toString()).slice(-200_000)))
  }
}

async function stop(proc: ChildProcess | undefined, timeoutMs = 10_000): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise<void>((ok) => proc.once('exit', () => ok()))
  proc.kill('SIGTERM')
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
  await exited
  clearTimeout(timer)
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown = null
  while (Date.now() < deadline) {
    try {
      if (await check()) return
    } catch (e) {
      last = e
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}

export class Mock {
  proc!: ChildProcess
  base = ''

  async start(bin: string): Promise<void> {
    this.proc = spawn(bin, ['--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.base = await new Promise<string>((ok, fail) => {
      let buf = ''
      const timer = setTimeout(() => fail(new Error(`mock-gemini did not start: ${buf}`)), 20_000)
      this.proc.stdout!.on('data', (d: Buffer) => {
        buf += d.toString()
        const m = /listening on (\S+)/.exec(buf)
        if (m) {
          clearTimeout(timer)
          ok(`http://${m[1]}`)
        }
      })
      this.proc.once('exit', (code) => fail(new Error(`mock-gemini exited (${code}): ${buf}`)))
    })
    this.proc.stdout!.resume()
    this.proc.stderr!.resume()
  }

  async setKey(key: string, behaviour: Record<string, unknown>): Promise<void> {
    const r = await fetch(`${this.base}/__mock/keys/${encodeURIComponent(key)}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(behaviour) })
    if (r.status !== 204) throw new Error(`mock control answered ${r.status}`)
  }

  stop(): Promise<void> {
    return stop(this.proc)
  }
}

export class Proxy {
  proc!: ChildProcess
  out!: Output
  dir = ''
  configPath = ''
  port = 0
  adminPort = 0
  tlsPort = 0

  get admin(): string {
    return `http://127.0.0.1:${this.adminPort}`
  }

  get data(): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** `adminExtra`: more `[admin]` settings (a short `session_ttl` for the session test);
   *  `adminToken: false` configures the password alone. */
  async start(bin: string, upstream: string, adminExtra = '', opts: { adminToken?: boolean } = {}): Promise<void> {
    const withToken = opts.adminToken ?? true
    this.dir = mkdtempSync(join(tmpdir(), 'gp-ui-e2e-'))
    this.port = await freePort()
    this.adminPort = await freePort()
    this.tlsPort = await freePort()
    const hash = spawnSync(bin, ['hash-password'], { input: ADMIN_PASSWORD, encoding: 'utf8' })
    if (hash.status !== 0) throw new Error(`hash-password failed: ${hash.stderr}`)
    this.configPath = join(this.dir, 'proxy.toml')
    writeFileSync(
      this.configPath,
      `# gemini-proxy configuration for the admin UI end-to-end tests
[server]
listen = "127.0.0.1:${this.port}"

[upstream]
base_url = "${upstream}"
retry_backoff = "1ms"

[key_health]
probe_interval = "1h"

[[pools]]
name = "default"
keys = [${INITIAL_KEYS.map((k) => `"${k}"`).join(', ')}]

[[clients]]
name = "alice"
token = "${CLIENT_TOKEN}"

# JWT clients: a subject without a [[clients]] entry is held to its token's policy claim, else
# to [jwt.policy]; the clients page lists it read-only.
[jwt]
secret = "${JWT_SECRET}"
policy_claim = "${JWT_POLICY_CLAIM}"

[jwt.policy]
rpm = ${JWT_DEFAULT_RPM}

# A TLS listener with a self-signed certificate: the certificates page has something to show.
[tls]
listen = "127.0.0.1:${this.tlsPort}"

[tls.self_signed]
names = ["${TLS_NAMES.join('", "')}"]

[admin]
listen = "127.0.0.1:${this.adminPort}"
${withToken ? `token = "${ADMIN_TOKEN}"` : ''}
password_hash = '${hash.stdout.trim()}'
${adminExtra}
`,
    )
    mkdirSync(join(this.dir, 'data'))
    this.proc = spawn(bin, ['run', '-c', this.configPath, '--data-dir', join(this.dir, 'data')], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.out = new Output(this.proc)
    await waitFor('the admin listener', async () => (await fetch(`${this.admin}/healthz`)).ok)
    // /readyz answers without a credential: 200 once a key is usable and the store writable.
    await waitFor('readiness', async () => (await fetch(`${this.admin}/readyz`)).ok)
    // The data port is a Pingora service of its own, not covered by readiness: wait for it too.
    await waitFor('the data port', async () => {
      const r = await fetch(`${this.data}/v1beta/models`, { headers: { 'x-goog-api-key': CLIENT_TOKEN } })
      return r.status < 500
    })
  }

  /** An admin API call with the admin token. */
  async api<T>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await fetch(`${this.admin}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await r.text()
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`)
    return (text ? JSON.parse(text) : undefined) as T
  }

  /** A generateContent through the data port; returns the status. */
  async generate(token: string, model = 'gemini-2.5-flash'): Promise<number> {
    const r = await fetch(`${this.data}/v1beta/models/${model}:generateContent`, {
      method: 'POST',
      headers: { 'x-goog-api-key': token, 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'Hello from the admin UI end-to-end test' }] }] }),
    })
    await r.arrayBuffer()
    return r.status
  }

  configText(): string {
    return readFileSync(this.configPath, 'utf8')
  }

  async stop(): Promise<void> {
    await stop(this.proc)
    if (this.dir && !process.env.E2E_KEEP) rmSync(this.dir, { recursive: true, force: true })
  }
}

/** Chromium flags that work headless, as root, on a machine without outside network. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
]

export async function launchBrowser(): Promise<Browser> {
  // playwright-core gives each launch a fresh, empty user data dir of its own.
  return chromium.launch({ executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium', args: CHROMIUM_ARGS, headless: true })
}

export interface World {
  bins: { proxy: string; mock: string }
  mock: Mock
  proxy: Proxy
  browser: Browser
  context: BrowserContext
  page: Page
  shots: string
  /** Page errors and console errors seen so far (CSP violations among them). */
  problems: string[]
}

export async function startWorld(): Promise<World> {
  const bins = binaries()
  const index = join(WEB, 'dist/index.html')
  if (!existsSync(index)) throw new Error('web/dist is missing: run `npm run build` before the end-to-end tests')
  const mock = new Mock()
  await mock.start(bins.mock)
  const proxy = new Proxy()
  try {
    await proxy.start(bins.proxy, mock.base)
  } catch (e) {
    await mock.stop()
    throw new Error(`${(e as Error).message}\n--- proxy output ---\n${proxy.out?.text ?? ''}`)
  }
  const shots = process.env.E2E_SCREENSHOTS ?? join(WEB, 'test-results/screenshots')
  rmSync(shots, { recursive: true, force: true })
  mkdirSync(shots, { recursive: true })
  console.log(`screenshots: ${shots}`)
  const browser = await launchBrowser()
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, locale: 'en-US', colorScheme: 'light' })
  const page = await context.newPage()
  const problems: string[] = []
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`))
  page.on('console', (m) => {
    // Chromium logs every error answer ("Failed to load resource: ... 401"); the UI shows
    // those itself (and the certificates probe expects a 404 while TLS is off).
    if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`)
  })
  return { bins, mock, proxy, browser, context, page, shots, problems }
}

/** A second proxy beside the world's (same mock upstream), e.g. with other admin settings. */
export async function startExtraProxy(w: World, adminExtra: string, opts: { adminToken?: boolean } = {}): Promise<Proxy> {
  const proxy = new Proxy()
  try {
    await proxy.start(w.bins.proxy, w.mock.base, adminExtra, opts)
  } catch (e) {
    await proxy.stop().catch(() => {})
    throw new Error(`${(e as Error).message}\n--- proxy output ---\n${proxy.out?.text ?? ''}`)
  }
  return proxy
}

export async function stopWorld(w: World | undefined): Promise<void> {
  if (!w) return
  await w.browser?.close().catch(() => {})
  await w.proxy?.stop().catch(() => {})
  await w.mock?.stop().catch(() => {})
}

export async function shot(w: World, name: string, page: Page = w.page): Promise<void> {
  await page.screenshot({ path: join(w.shots, `${name}.png`), fullPage: true, animations: 'disabled' })
}
