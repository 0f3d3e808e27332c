//! What the proxy tells operators: diagnostic logs (tracing, JSON on stderr) and the access
//! log (one JSON line per request on stdout, written off the request path).

pub mod access_log;
mod json_line;
pub mod metrics;
pub mod time;

use crate::config::LogSettings;
use tracing_subscriber::EnvFilter;

/// Installs the diagnostic logger. `RUST_LOG` overrides the configured level.
pub fn init_logging(settings: &LogSettings) {
    // Pingora's own info lines (service start-up order...) are noise for operators.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("{},pingora_core=warn,pingora_proxy=warn", settings.level)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // Ignore the error of a second installation (tests may call this more than once).
    let _ = if settings.json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}
