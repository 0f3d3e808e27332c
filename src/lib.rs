//! gemini-proxy: one endpoint in front of a pool of Gemini API keys, built on Pingora.
//!
//! Layers, from the wire inwards: `gateway` (the data plane) uses `http1` (codec), `upstream`
//! (connections to Gemini), `auth` (who is calling), `pool` (which key), `gemini` (what the
//! wire means) and `telemetry`; `config` builds the snapshot they all read; `server` and
//! `background` wire it into a Pingora server.

pub mod admin;
#[cfg(not(target_env = "msvc"))]
pub mod allocator;
pub mod auth;
pub mod background;
pub mod clock;
pub mod config;
pub mod control;
pub mod courtesy;
pub mod deadline;
pub mod gateway;
pub mod gemini;
pub mod http1;
pub mod limits;
pub mod pool;
pub mod secret;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod wire;
