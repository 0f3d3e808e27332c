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

/// Installs the diagnostic logger. `RUST_LOG` overrides the configured level; one that does
/// not parse is said so on stderr, and the configured level is used.
pub fn init_logging(settings: &LogSettings) {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let env_filter = from_env.as_deref().map(EnvFilter::try_new);
    let refused_env = matches!(env_filter, Some(Err(_)));
    let filter = match env_filter {
        Some(Ok(f)) => f,
        _ => EnvFilter::new(configured_filter(&settings.level)),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // Ignore the error of a second installation (tests may call this more than once).
    let _ = if settings.json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    if refused_env {
        // Not quoted: an environment variable is no place for a secret, but it is not ours to echo.
        tracing::warn!(level = %settings.level, "RUST_LOG is not a filter tracing can read (levels: error, warn, info, debug, trace; or target=level directives); using [log] level");
    }
}

/// The filter of a `[log] level`: Pingora's own info lines (service start-up order...) are
/// noise for operators, so its crates start at `warn`; written first, so that the operator's
/// own directive for them wins (of two directives for one target, `EnvFilter` keeps the later).
fn configured_filter(level: &str) -> String {
    format!("pingora_core=warn,pingora_proxy=warn,{level}")
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    /// Whether a subscriber with the filter of `level` would log an event of `target` at `at`.
    fn enabled(level: &str, target: &'static str, at: Level) -> bool {
        let subscriber = tracing_subscriber::fmt().with_env_filter(EnvFilter::new(configured_filter(level))).with_writer(std::io::sink).finish();
        tracing::subscriber::with_default(subscriber, || match (target, at) {
            ("pingora_core", Level::DEBUG) => tracing::enabled!(target: "pingora_core", Level::DEBUG),
            ("pingora_core", Level::INFO) => tracing::enabled!(target: "pingora_core", Level::INFO),
            ("gemini_proxy", Level::DEBUG) => tracing::enabled!(target: "gemini_proxy", Level::DEBUG),
            ("gemini_proxy", Level::INFO) => tracing::enabled!(target: "gemini_proxy", Level::INFO),
            other => panic!("no probe for {other:?}"),
        })
    }

    #[test]
    fn pingora_is_quiet_unless_the_operator_asks_for_it() {
        assert!(!enabled("info", "pingora_core", Level::INFO), "Pingora's info lines are off by default");
        assert!(enabled("info", "gemini_proxy", Level::INFO));
        assert!(!enabled("info", "gemini_proxy", Level::DEBUG));
        // The operator's own directive for a Pingora crate wins over the default.
        assert!(enabled("info,pingora_core=debug", "pingora_core", Level::DEBUG));
        assert!(enabled("debug", "gemini_proxy", Level::DEBUG));
    }
}
