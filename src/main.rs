//! The `gemini-proxy` command: `run` serves, `check` validates a config, `hash-password`
//! prepares an admin password hash. Only wiring here.

use clap::{Parser, Subcommand};
use gemini_proxy::config::{self, Loaded, ProcessEnv};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        /// Where state lives (SQLite: key state, usage, request log, config versions, audit log)
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
