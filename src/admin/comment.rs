//! The comments the server itself writes into the config version history, as data: each kind
//! renders the English text that is stored, and is recognised again when the history is read,
//! so that the UI can show it in the reader's language. A comment a user wrote matches none.

use crate::control::ConfigManager;
use serde::Serialize;
use std::fmt;
use utoipa::ToSchema;

/// A comment made by the server, with its parameters.
///
/// The stored text is what [`fmt::Display`] writes, and [`ServerComment::parse`] reads it back,
/// so versions recorded before this type existed are recognised too. The one comment written
/// outside the admin API, by the config manager on SIGHUP or `POST /config/reload`, is its
/// [`ConfigManager::RELOADED_FROM_DISK`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
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
            ServerComment::ReloadedFromDisk => f.write_str(ConfigManager::RELOADED_FROM_DISK),
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

impl ServerComment {
    /// The server comment `text` is, if it is one.
    pub fn parse(text: &str) -> Option<ServerComment> {
        let fixed = [ServerComment::Startup, ServerComment::ReloadedFromDisk, ServerComment::Replaced];
        if let Some(c) = fixed.into_iter().find(|c| c.to_string() == text) {
            return Some(c);
        }
        if let Some(v) = text.strip_prefix("rollback to version ") {
            return v.parse().ok().map(|version| ServerComment::Rollback { version });
        }
        if let Some(n) = text.strip_suffix(" key(s) added") {
            return n.parse().ok().map(|count| ServerComment::KeysAdded { count });
        }
        if let Some(key) = text.strip_prefix("key ").and_then(|r| r.strip_suffix(" deleted")).filter(|k| !k.is_empty()) {
            return Some(ServerComment::KeyDeleted { key: key.to_owned() });
        }
        let rest = text.strip_prefix("client ")?;
        let (client, verb) = rest.rsplit_once(' ')?;
        let client = client.to_owned();
        match verb {
            _ if client.is_empty() => None,
            "created" => Some(ServerComment::ClientCreated { client }),
            "updated" => Some(ServerComment::ClientUpdated { client }),
            "revoked" => Some(ServerComment::ClientRevoked { client }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_text() {
        let all = [
            ServerComment::Startup,
            ServerComment::ReloadedFromDisk,
            ServerComment::Replaced,
            ServerComment::Rollback { version: 12 },
            ServerComment::ClientCreated { client: "app.v2@team".into() },
            ServerComment::ClientUpdated { client: "a".into() },
            ServerComment::ClientRevoked { client: "b".into() },
            ServerComment::KeysAdded { count: 3 },
            ServerComment::KeyDeleted { key: "key with spaces".into() },
        ];
        for c in all {
            assert_eq!(ServerComment::parse(&c.to_string()), Some(c.clone()), "{c}");
        }
    }

    #[test]
    fn user_comments_are_not_taken_for_server_ones() {
        for text in ["", "fix the rpm of alice", "rollback to version x", "client  created", "client alice deleted", "many key(s) added", "key  deleted"] {
            assert_eq!(ServerComment::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn serializes_as_a_kind_and_its_parameters() {
        let json = serde_json::to_value(ServerComment::Rollback { version: 3 }).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "rollback", "params": {"version": 3}}));
        assert_eq!(serde_json::to_value(ServerComment::Startup).unwrap(), serde_json::json!({"kind": "startup"}));
    }
}
