//! What the proxy tells operators: diagnostic logs (tracing, JSON on stderr) and the access
//! log (one JSON line per request on stdout, written off the request path).

pub mod access_log;
mod json_line;
pub mod metrics;
pub mod time;

use crate::config::LogSettings;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Directive;
use tracing_subscriber::EnvFilter;

/// Installs the diagnostic logger. `RUST_LOG` overrides the configured level.
pub fn init_logging(settings: &LogSettings) {
    // Pingora's own info lines (service start-up order...) are noise for operators.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("{},pingora_core=warn,pingora_proxy=warn", settings.level)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // Ignore the error of a second installation (tests may call this more than once).
    let _ = if settings.json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}

/// Why a `[log] level` filter is refused. Directives are named by position, never quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogFilterError {
    #[error("is empty")]
    Empty,
    /// The directive at this 1-based position, of that many.
    #[error("{}is neither a level nor a target=level directive", if *.1 > 1 { format!("directive {} of {} ", .0, .1) } else { String::new() })]
    Directive(usize, usize),
}

/// The `[log] level` filter as [`init_logging`] hands it to `EnvFilter`: its directives
/// trimmed and joined by commas (`EnvFilter` would read `info, gemini_proxy=debug` as a target
/// named " gemini_proxy", which matches nothing). Refused, where `EnvFilter::new` would carry
/// on silently: an empty filter, a directive that does not parse (dropped), and a bare word
/// that is not a level (`verbose` is taken as a target, which turns every other log off).
pub fn log_filter(level: &str) -> Result<String, LogFilterError> {
    let directives: Vec<&str> = level.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Err(LogFilterError::Empty);
    }
    for (i, d) in directives.iter().enumerate() {
        let bare = !d.contains(['=', '[']);
        let valid = if bare { d.parse::<LevelFilter>().is_ok() } else { d.parse::<Directive>().is_ok() };
        if !valid {
            return Err(LogFilterError::Directive(i + 1, directives.len()));
        }
    }
    Ok(directives.join(","))
}
