//! The `gemini-proxy` command: `run` serves, `check` validates a config. Only wiring here.

use clap::{Parser, Subcommand};
use gemini_proxy::config::{self, ConfigSource, ProcessEnv};
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
    },
    /// Validate a config file and print every problem with its line and column.
    Check {
        /// Config file [default: config/proxy.toml, if it exists]
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
}

fn load(config: Option<PathBuf>) -> Result<(config::Settings, ConfigSource), ExitCode> {
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
            Ok((s, source)) => {
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
        Command::Run { config } => {
            let (settings, source) = match load(config) {
                Ok(v) => v,
                Err(code) => return code,
            };
            match gemini_proxy::server::run(settings, &source) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
