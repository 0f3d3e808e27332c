//! Configuration: the TOML file format (`file`), its validation into the internal model
//! (`validate`, `settings`), and the zero-config path from environment variables (`env`).

pub mod edit;
mod env;
pub mod file;
pub mod redact;
pub mod settings;
pub mod units;
pub mod validate;

pub use settings::*;
pub use validate::{EnvLookup, Problem, ProcessEnv};

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem placed at a line and column of its source, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedProblem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for LocatedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin} is not valid:\n{}", render(problems))]
    Invalid { origin: String, problems: Vec<LocatedProblem> },
}

fn render(problems: &[LocatedProblem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

impl ConfigError {
    pub fn problems(&self) -> &[LocatedProblem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// Where the running configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// No file: built from GEMINI_API_KEYS and friends.
    Environment,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Environment => f.write_str("environment (GEMINI_API_KEYS, GEMINI_PROXY_TOKENS)"),
        }
    }
}

/// Parses and validates TOML text. `origin` names it in error messages.
pub fn parse_str(text: &str, origin: &str, env: &dyn EnvLookup) -> Result<Settings, ConfigError> {
    let locate = |span: Option<std::ops::Range<usize>>, message: String| {
        let (line, column) = match span {
            Some(r) => {
                let (l, c) = line_col(text, r.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        LocatedProblem { line, column, message }
    };
    // Parser and serde messages quote the values they could not use, which may be secrets.
    let file: file::ConfigFile = toml::from_str(text)
        .map_err(|e| ConfigError::Invalid { origin: origin.to_owned(), problems: vec![locate(e.span(), redact::problem_message(e.message()))] })?;
    validate::validate(file, env)
        .map_err(|problems| ConfigError::Invalid { origin: origin.to_owned(), problems: problems.into_iter().map(|p| locate(p.span, p.message)).collect() })
}

/// Loads the config file at `path`.
pub fn load_file(path: &Path, env: &dyn EnvLookup) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse_str(&text, &path.display().to_string(), env)
}

/// A loaded configuration: the settings, where they came from, and the text they were parsed
/// from (kept for the admin API; the environment path generates its text).
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub source: ConfigSource,
    pub text: String,
}

/// Loads the configuration for `run`/`check`: the file when it exists (or was named
/// explicitly), otherwise the environment.
pub fn load(path: &Path, explicit: bool, env: &dyn EnvLookup) -> Result<Loaded, ConfigError> {
    if explicit || path.exists() {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let settings = parse_str(&text, &path.display().to_string(), env)?;
        return Ok(Loaded { settings, source: ConfigSource::File(path.to_owned()), text });
    }
    let text = env::toml_from_env(env).map_err(|message| ConfigError::Invalid {
        origin: format!("no config file at {} and the environment", path.display()),
        problems: vec![LocatedProblem { line: None, column: None, message }],
    })?;
    // Problems in generated text have no useful line numbers: report messages only.
    let settings = parse_str(&text, "the environment configuration", env).map_err(|e| match e {
        ConfigError::Invalid { origin, problems } => {
            ConfigError::Invalid { origin, problems: problems.into_iter().map(|p| LocatedProblem { line: None, column: None, ..p }).collect() }
        }
        other => other,
    })?;
    Ok(Loaded { settings, source: ConfigSource::Environment, text })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut cut = offset;
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &text[..cut];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

#[cfg(test)]
mod tests;
