//! The `gemini-proxy` command: `run` serves, `check` validates a config, `hash-password`
//! prepares an admin password hash. Only wiring here.

use clap::{Parser, Subcommand};
use gemini_proxy::config::{self, Loaded, ProcessEnv};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc rather than jemalloc: with hundreds of requests in flight per thread, jemalloc's
/// per-thread cache (20 objects per size class) overflowed and every few requests emptied or
/// refilled a slab through the arena's extent bookkeeping: 29,600 instructions per request at
/// 256 connections against 23,200 at 4. mimalloc's per-thread pages hold up: 24,800 at 256
/// (`bench/profile callgrind --conns 256`). Called through `gemini_proxy::allocator`, which skips
/// the aligned entry points for the usual alignments.
#[cfg(all(not(target_env = "msvc"), not(feature = "system-allocator")))]
#[global_allocator]
static ALLOC: gemini_proxy::allocator::Mimalloc = gemini_proxy::allocator::Mimalloc;

const DEFAULT_CONFIG: &str = "config/proxy.toml";

#[derive(Parser)]
#[command(name = "gemini-proxy", version, about = "A high-performance key-pool proxy for Google's Gemini API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy. Without a config file, GEMINI_API_KEYS and GEMINI_PROXY_TOKENS configure it.
    Run {
        /// Config file [default: config/proxy.toml, if it exists]
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Where state lives (SQLite: key state, which key owns each file, cache and upload, usage, request log, config versions, audit log)
        #[arg(long, default_value = "./data", env = "GEMINI_PROXY_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Validate a config file and print every problem with its line and column.
    Check {
        /// Config file [default: config/proxy.toml, if it exists]
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Read a password on stdin and print its Argon2 hash for `[admin] password_hash`.
    HashPassword,
    /// Mint a JWT client token (for testing `[jwt]`).
    Token(TokenArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// Client name (the `sub` claim)
    #[arg(long)]
    sub: String,
    /// HS256, RS256 or ES256
    #[arg(long, default_value = "HS256")]
    alg: String,
    /// Environment variable holding the HS256 secret
    #[arg(long)]
    secret_env: Option<String>,
    /// File holding the HS256 secret (trailing newline ignored)
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// PEM private key for RS256 / ES256 (PKCS#8 for EC)
    #[arg(long)]
    private_key: Option<PathBuf>,
    #[arg(long)]
    iss: Option<String>,
    #[arg(long)]
    aud: Option<String>,
    #[arg(long)]
    kid: Option<String>,
    /// Seconds until the token expires (negative: already expired)
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
    expires_in: i64,
    /// Seconds until the token becomes valid (positive: not yet valid)
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    valid_in: i64,
    /// Extra claim as NAME=JSON (e.g. gp='{"rpm":10}'); repeatable
    #[arg(long = "claim")]
    claims: Vec<String>,
}

fn mint(a: TokenArgs) -> Result<String, String> {
    use gemini_proxy::auth::jwt::{mint, parse_algorithm, MintRequest};
    let alg = parse_algorithm(&a.alg).ok_or_else(|| format!("unsupported algorithm {:?}: use HS256, RS256 or ES256", a.alg))?;
    let key = match (&a.secret_env, &a.secret_file, &a.private_key) {
        (Some(var), None, None) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?.into_bytes(),
        (None, Some(f), None) => std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?.trim_end_matches(['\r', '\n']).as_bytes().to_vec(),
        (None, None, Some(f)) => std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?,
        _ => return Err("give exactly one of --secret-env, --secret-file (HS256) or --private-key (RS256/ES256)".into()),
    };
    let mut extra = serde_json::Map::new();
    for c in &a.claims {
        let (name, value) = c.split_once('=').ok_or_else(|| format!("--claim {c:?}: expected NAME=JSON"))?;
        let v = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        extra.insert(name.to_owned(), v);
    }
    mint(&MintRequest { alg, key, kid: a.kid, subject: a.sub, issuer: a.iss, audience: a.aud, expires_in: a.expires_in, not_before_offset: -a.valid_in, extra })
}

fn load(config: Option<PathBuf>) -> Result<Loaded, ExitCode> {
    let explicit = config.is_some();
    let path = config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    config::load(&path, explicit, &ProcessEnv).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(config) {
            Ok(Loaded { settings: s, source, .. }) => {
                let listen: Vec<String> = s.server.listen.iter().map(|a| a.to_string()).collect();
                println!(
                    "{source}: OK ({} pool(s), {} key(s), {} client(s); listening on {}; upstream {})",
                    s.pools.len(),
                    s.key_count(),
                    s.clients.len(),
                    listen.join(", "),
                    s.upstream.base_url
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::HashPassword => {
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line).is_err() || line.trim().is_empty() {
                eprintln!("error: give the password on stdin, e.g. `read -rs P && echo \"$P\" | gemini-proxy hash-password`");
                return ExitCode::from(1);
            }
            match gemini_proxy::admin::auth::hash_password(line.trim_end_matches(['\r', '\n'])) {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Token(args) => match mint(args) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Run { config, data_dir } => {
            let loaded = match load(config) {
                Ok(v) => v,
                Err(code) => return code,
            };
            match gemini_proxy::server::run(loaded, &data_dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
