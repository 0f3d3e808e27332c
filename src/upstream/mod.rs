//! The upstream side of the data plane: where Gemini is (`target`, with DNS resolved off the
//! request path), and HTTP/1.1 connections to it (`conn`) kept in an idle pool for reuse.
//! Connections (TCP and TLS) are made by Pingora's `TransportConnector`.

pub mod conn;
pub mod target;

pub use conn::{UpstreamClient, UpstreamConn, UpstreamFailure};
pub use target::UpstreamTarget;
