//! Who made a config version and why, as data. The comments the server itself writes into the
//! version history are kinds with parameters, stored beside the English text they render, and
//! its authors are a closed set of labels; the UI shows both in the reader's language. A comment
//! a user typed is only text, whatever it looks like.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use utoipa::ToSchema;

/// A comment made by the server, with its parameters.
///
/// [`fmt::Display`] writes the English text stored in the `comment` column; the kind and its
/// parameters are stored beside it (`comment_kind`, `comment_params`), so nothing is ever
/// recognised from the text. Migration 3 of the store recognised the rows written before that
/// once, from the text and the audit entry of the same version: keep its SQL in step with the
/// texts below when they are first written, and never change a text afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", content = "params", rename_all = "snake_case")]
pub enum ServerComment {
    /// The configuration the process started with.
    Startup,
    /// The file was read again (SIGHUP or `POST /config/reload`).
    ReloadedFromDisk,
    /// Replaced with `PUT /config` without a comment.
    Replaced,
    /// An earlier version applied again.
    Rollback {
        version: i64,
    },
    ClientCreated {
        client: String,
    },
    ClientUpdated {
        client: String,
    },
    ClientRevoked {
        client: String,
    },
    /// Keys added (or imported) over the API.
    KeysAdded {
        count: u64,
    },
    KeyDeleted {
        key: String,
    },
}

impl fmt::Display for ServerComment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerComment::Startup => f.write_str("configuration at start-up"),
            ServerComment::ReloadedFromDisk => f.write_str("reloaded from disk"),
            ServerComment::Replaced => f.write_str("replaced over the admin API"),
            ServerComment::Rollback { version } => write!(f, "rollback to version {version}"),
            ServerComment::ClientCreated { client } => write!(f, "client {client} created"),
            ServerComment::ClientUpdated { client } => write!(f, "client {client} updated"),
            ServerComment::ClientRevoked { client } => write!(f, "client {client} revoked"),
            ServerComment::KeysAdded { count } => write!(f, "{count} key(s) added"),
            ServerComment::KeyDeleted { key } => write!(f, "key {key} deleted"),
        }
    }
}

/// How a comment is stored: its kind, and its parameters as a JSON object (`None` for a kind
/// without any).
pub struct StoredKind {
    pub kind: String,
    pub params: Option<String>,
}

impl ServerComment {
    /// The columns that record this comment's kind.
    pub fn stored(&self) -> StoredKind {
        // The serde form is the one the API shows: `{"kind": ..., "params": {...}}`.
        let mut value = serde_json::to_value(self).unwrap_or_default();
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_owned();
        let params = value.get_mut("params").map(|p| p.take().to_string());
        StoredKind { kind, params }
    }

    /// The comment recorded as `kind` and `params`; `None` for a kind or parameters this build
    /// does not know (the row then shows its text alone).
    pub fn from_stored(kind: &str, params: Option<&str>) -> Option<ServerComment> {
        let mut value = serde_json::json!({ "kind": kind });
        if let Some(p) = params {
            value["params"] = serde_json::from_str(p).ok()?;
        }
        serde_json::from_value(value).ok()
    }
}

/// A version's comment as it is recorded: the server's, with its kind, or a user's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionComment {
    Server(ServerComment),
    /// Written by a user (`PUT /config` with a comment): stored and shown as written.
    User(String),
}

impl VersionComment {
    /// The text stored in the `comment` column (and shown to API users).
    pub fn text(&self) -> String {
        match self {
            VersionComment::Server(c) => c.to_string(),
            VersionComment::User(text) => text.clone(),
        }
    }

    pub fn server(&self) -> Option<&ServerComment> {
        match self {
            VersionComment::Server(c) => Some(c),
            VersionComment::User(_) => None,
        }
    }
}

impl From<ServerComment> for VersionComment {
    fn from(c: ServerComment) -> Self {
        VersionComment::Server(c)
    }
}

/// Text is a user's comment: a server comment turned into text loses its kind.
impl From<String> for VersionComment {
    fn from(text: String) -> Self {
        VersionComment::User(text)
    }
}

impl From<&str> for VersionComment {
    fn from(text: &str) -> Self {
        VersionComment::User(text.to_owned())
    }
}

/// Who made a version: the closed set of actors the proxy records. The stored `actor` text is
/// what [`fmt::Display`] writes, and [`Author::from_label`] reads it back: no user can choose
/// an actor text (admins have no names; the address is the connection's), so the text decides
/// the kind without doubt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", content = "params", rename_all = "snake_case")]
pub enum Author {
    /// The process, recording the configuration it started with (`startup`).
    Startup,
    /// SIGHUP (`signal:SIGHUP`).
    Sighup,
    /// An admin API call with the admin token (`token@<address>`).
    Token {
        #[schema(value_type = Option<String>)]
        address: Option<IpAddr>,
    },
    /// An admin API call with a login session (`session@<address>`).
    Session {
        #[schema(value_type = Option<String>)]
        address: Option<IpAddr>,
    },
}

impl fmt::Display for Author {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (credential, address) = match self {
            Author::Startup => return f.write_str("startup"),
            Author::Sighup => return f.write_str("signal:SIGHUP"),
            Author::Token { address } => ("token", address),
            Author::Session { address } => ("session", address),
        };
        match address {
            Some(a) => write!(f, "{credential}@{a}"),
            None => f.write_str(credential),
        }
    }
}

impl Author {
    /// The author a stored actor text names; `None` for a text outside the set (shown as is).
    pub fn from_label(label: &str) -> Option<Author> {
        match label {
            "startup" => return Some(Author::Startup),
            "signal:SIGHUP" => return Some(Author::Sighup),
            _ => {}
        }
        let (credential, address) = match label.split_once('@') {
            Some((c, a)) => (c, Some(a.parse().ok()?)),
            None => (label, None),
        };
        match credential {
            "token" => Some(Author::Token { address }),
            "session" => Some(Author::Session { address }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_comment() -> Vec<ServerComment> {
        vec![
            ServerComment::Startup,
            ServerComment::ReloadedFromDisk,
            ServerComment::Replaced,
            ServerComment::Rollback { version: 12 },
            ServerComment::ClientCreated { client: "app.v2@team".into() },
            ServerComment::ClientUpdated { client: "a".into() },
            ServerComment::ClientRevoked { client: "b".into() },
            ServerComment::KeysAdded { count: 3 },
            ServerComment::KeyDeleted { key: "key with spaces".into() },
        ]
    }

    #[test]
    fn every_kind_reads_back_from_its_stored_columns() {
        for c in every_comment() {
            let s = c.stored();
            assert_eq!(ServerComment::from_stored(&s.kind, s.params.as_deref()), Some(c.clone()), "{c}");
        }
        assert_eq!(ServerComment::Startup.stored().params, None);
    }

    #[test]
    fn unknown_kinds_and_parameters_are_not_guessed_at() {
        assert_eq!(ServerComment::from_stored("from_a_newer_build", None), None);
        assert_eq!(ServerComment::from_stored("rollback", None), None);
        assert_eq!(ServerComment::from_stored("rollback", Some(r#"{"version": "x"}"#)), None);
        assert_eq!(ServerComment::from_stored("rollback", Some("not json")), None);
    }

    #[test]
    fn text_is_a_users_comment_even_when_it_reads_like_the_servers() {
        let typed: VersionComment = ServerComment::Startup.to_string().into();
        assert_eq!(typed, VersionComment::User("configuration at start-up".into()));
        assert_eq!(typed.server(), None);
        let server = VersionComment::from(ServerComment::Rollback { version: 2 });
        assert_eq!((server.text(), server.server().is_some()), ("rollback to version 2".to_owned(), true));
    }

    #[test]
    fn serializes_as_a_kind_and_its_parameters() {
        let json = serde_json::to_value(ServerComment::Rollback { version: 3 }).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "rollback", "params": {"version": 3}}));
        assert_eq!(serde_json::to_value(ServerComment::Startup).unwrap(), serde_json::json!({"kind": "startup"}));
        let token = serde_json::to_value(Author::Token { address: "::1".parse().ok() }).unwrap();
        assert_eq!(token, serde_json::json!({"kind": "token", "params": {"address": "::1"}}));
        assert_eq!(serde_json::to_value(Author::Sighup).unwrap(), serde_json::json!({"kind": "sighup"}));
    }

    #[test]
    fn every_author_reads_back_from_its_label() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let all = [
            Author::Startup,
            Author::Sighup,
            Author::Token { address: Some(v4) },
            Author::Token { address: None },
            Author::Session { address: Some(v6) },
            Author::Session { address: None },
        ];
        for a in all {
            assert_eq!(Author::from_label(&a.to_string()), Some(a), "{a}");
        }
        assert_eq!(Author::Session { address: Some(v6) }.to_string(), "session@::1");
    }

    #[test]
    fn labels_outside_the_set_are_shown_as_they_are() {
        for label in ["", "alice", "signal:SIGTERM", "token@", "token@not-an-address", "api:admin", "Startup"] {
            assert_eq!(Author::from_label(label), None, "{label:?}");
        }
    }
}
