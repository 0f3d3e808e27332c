// Shapes of the admin API (GET /api/v1/openapi.json), as the UI uses them.

export interface ProblemView {
  line?: number | null
  column?: number | null
  message: string
}

export interface ErrorBody {
  error: { code: number; status: string; message: string; problems?: ProblemView[] }
}

/** GET /api/v1/auth/methods: which ways to log in are set up. */
export interface LoginMethods {
  password: boolean
  token: boolean
}

export interface SessionView {
  token?: string | null
  kind: string
  expires_at?: string | null
}

// ---- keys

export type KeyState = 'healthy' | 'cooling' | 'broken' | 'disabled'

export interface ModelView {
  model: string
  state: string
  until?: string | null
  cooldown_kind?: string | null
  consecutive_failures: number
}

export interface LastError {
  at: string
  model: string
  outcome: string
  status?: number | null
  message: string
}

export interface DisabledView {
  reason: string
  message: string
  since: string
}

export interface KeyUsage {
  attempts: number
  successes: number
  failures: number
  input_tokens: number
  output_tokens: number
}

export interface KeyView {
  pool: string
  name: string
  fingerprint: string
  weight: number
  state: KeyState
  disabled?: DisabledView | null
  models: ModelView[]
  last_error?: LastError | null
  inflight: number
  usage: KeyUsage
}

export interface KeyList {
  /** Every configured pool, also those without keys. */
  pools: string[]
  keys: KeyView[]
  total: number
  healthy: number
  cooling: number
  broken: number
  disabled: number
}

export interface KeyRef {
  fingerprint: string
  name: string
}

export interface Skipped {
  fingerprint: string
  /** `duplicate_in_text`, `already_in_pool` or `malformed`. */
  reason: string
  /** For `malformed`: how many characters the near-key has. */
  length?: number
}

export interface Added {
  added: KeyRef[]
  skipped: Skipped[]
  version?: number | null
}

export interface Validated {
  fingerprint: string
  name: string
  result: string
  message: string
  status?: number | null
}

export interface KeyStateView {
  fingerprint: string
  state: string
}

export interface Deleted {
  removed: number
  version?: number | null
}

// ---- clients

export interface Limits {
  models: string[]
  rpm?: number | null
  tpm?: number | null
  tpd?: number | null
  concurrency?: number | null
}

export interface ClientUsage {
  /** null: not counted (the client has no limit at all). */
  inflight: number | null
  /** null: not counted (the client has no rpm limit). */
  requests_last_minute: number | null
  tokens_last_minute: number
  tokens_today: number
}

/**
 * Whose limits a client is held to: its `[[clients]]` entry's (`entry`: it can be edited and
 * revoked), or for a JWT client without an entry its latest token's policy claim
 * (`token_claim`) or `[jwt.policy]` (`jwt_default`).
 */
export type LimitsSource = 'entry' | 'token_claim' | 'jwt_default'

/** One set of limits a JWT client's tokens carried. */
export interface TokenLimits {
  source: Exclude<LimitsSource, 'entry'>
  pools: string[]
  limits: Limits
  /** RFC 3339: the last request admitted under these limits. */
  last_seen: string
}

export interface ClientView {
  name: string
  /** `token` (a static token) or `jwt` (JWTs only). */
  auth: 'token' | 'jwt'
  pools: string[]
  /** The limits enforced: the entry's, or the latest token's for a JWT client without one. */
  limits: Limits
  limits_source: LimitsSource
  /** For a JWT client without an entry: each distinct set of limits seen in the last 24 hours,
   *  the latest first (the first is `limits`). Empty for a configured client. */
  token_limits: TokenLimits[]
  usage: ClientUsage
}

export interface NewClient extends Partial<Limits> {
  name: string
  pools?: string[] | null
}

/** Absent: unchanged; null: removed (no limit). */
export interface ClientUpdate {
  pools?: string[] | null
  models?: string[] | null
  rpm?: number | null
  tpm?: number | null
  tpd?: number | null
  concurrency?: number | null
}

export interface CreatedClient {
  name: string
  token: string
  version?: number | null
}

export interface Changed {
  version?: number | null
}

// ---- config

export interface ConfigView {
  source: string
  writable: boolean
  text: string
  version?: number | null
}

export interface Validation {
  valid: boolean
  problems: ProblemView[]
}

export interface AppliedView {
  changed: boolean
  restart_needed: string[]
  version?: number | null
  /** Other TLS certificates are served from now on (files are re-read on every reload). */
  certificates_changed: boolean
}

/** A comment the server wrote, as a kind (`startup`, `rollback`, `client_created`…) and its
 *  parameters, for showing it in the UI's language. */
export interface ServerComment {
  kind: string
  params?: Record<string, string | number>
}

/** Who made a version, as a kind (`startup`, `sighup`, `token`, `session`) and, for the admin
 *  API's, the address the call came from. */
export interface Author {
  kind: string
  params?: { address?: string | null }
}

export interface ConfigVersionMeta {
  id: number
  created_ms: number
  /** As recorded: `startup`, `signal:SIGHUP`, `token@127.0.0.1`… */
  actor: string
  /** null: an actor this proxy does not know as a kind, shown as recorded. */
  author?: Author | null
  comment: string
  /** null: a user's comment, shown as written (even one that reads like the server's). */
  server_comment?: ServerComment | null
  sha256: string
  bytes: number
}

export interface VersionView extends ConfigVersionMeta {
  text: string
}

export interface DiffView {
  from: number
  to?: number | null
  diff: string
}

// ---- observe

export interface UsageCounts {
  requests: number
  ok: number
  client_errors: number
  rate_limited: number
  server_errors: number
  retries: number
  input_tokens: number
  output_tokens: number
}

export interface MinutePoint extends UsageCounts {
  minute_ms: number
  latency_p50_ms: number
  latency_p95_ms: number
  latency_p99_ms: number
}

export interface GroupTotal {
  name: string
  fingerprint?: string | null
  requests: number
  errors: number
  input_tokens: number
  output_tokens: number
}

export interface Totals extends UsageCounts {
  by_model: GroupTotal[]
  by_client: GroupTotal[]
  by_key: GroupTotal[]
}

export interface Attempt {
  key?: string
  fingerprint?: string
  outcome?: string
  status?: number | null
  ms?: number
  [more: string]: unknown
}

export interface RequestRow {
  id: number
  time_ms: number
  request_id: number
  client?: string | null
  method: string
  path: string
  model?: string | null
  status: number
  key?: string | null
  key_fingerprint?: string | null
  attempts: Attempt[] | null
  total_ms: number
  first_byte_ms?: number | null
  bytes_in: number
  bytes_out: number
  tokens_in: number
  tokens_out: number
  stream: boolean
  error?: string | null
}

// ---- audit log (GET /api/v1/audit)

export interface AuditRow {
  id: number
  time_ms: number
  /** As recorded: `signal:SIGHUP`, `token@127.0.0.1`, `session@::1`… */
  actor: string
  /** null: an actor this proxy does not know as a kind, shown as recorded. */
  author?: Author | null
  /** `keys.disable`, `clients.create`, `config.replace`… */
  action: string
  /** What it acted on: a key or client name, a pool, `config`. */
  target: string
  /** Names, fingerprints, numbers (the config version, its comment): never a secret. */
  detail: unknown
  /** The comment of the config version the change recorded, when the server wrote it. */
  server_comment?: ServerComment | null
}

// ---- certificates (TLS API: GET /api/v1/certificates, POST /api/v1/certificates/{name}/renew)

export interface Renewal {
  at: string
  ok: boolean
  message: string
}

export interface Certificate {
  name: string
  names: string[]
  source: 'file' | 'self_signed' | 'acme' | string
  issuer: string
  /** Hex serial number (present since the TLS API landed). */
  serial?: string
  not_before: string
  not_after: string
  /** Served to clients without SNI, or with a name no certificate has. */
  default?: boolean
  last_renewal: Renewal | null
}
