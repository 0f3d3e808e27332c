// Input rules the proxy enforces, checked in forms before anything is sent.

/** Names of keys, clients and pools (src/config/validate.rs `valid_name`): 1-64 ASCII letters,
 *  digits, '-', '_', '.', '@'. */
export const NAME_RULE = /^[A-Za-z0-9._@-]{1,64}$/

/** A Gemini API key as the bulk import recognises one (src/admin/routes/keys.rs
 *  `extract_keys`): `AIza` and 35 letters, digits, '-' or '_'. */
export const GEMINI_KEY = /^AIza[A-Za-z0-9_-]{35}$/
