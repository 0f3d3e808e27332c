//! Integration tests: the real `gemini-proxy` binary against the in-repo mock Gemini, over
//! sockets. One test binary (several modules) to keep linking cheap.

mod harness;

mod access;
mod admin;
mod auth_hygiene;
mod cli;
mod client_gone;
mod key_pool;
mod lifecycle;
mod streaming;
mod tls;
mod uploads;
mod upstream_tls;
