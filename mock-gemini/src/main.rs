//! `mock-gemini` binary: runs the mock until SIGTERM/SIGINT, printing `listening on ADDR` once ready.

use clap::Parser;
use mock_gemini::{KeyMode, MockConfig, MockGemini, GOOGLE_ORIGIN};
use std::io::Write;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(name = "mock-gemini", about = "Mock of Google's Gemini API for gemini-proxy's tests (control API under /__mock/)")]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Origin put in X-Goog-Upload-URL and file URIs; `self` means this mock's own address.
    #[arg(long, default_value = GOOGLE_ORIGIN)]
    upload_origin: String,
    /// Behaviour of keys not set through the control API: a mode name (`ok`, `invalid`,
    /// `rate_limited`...) or its JSON form (`{"mode":"slow","first_byte_ms":200}`).
    #[arg(long, default_value = "ok")]
    default_mode: KeyMode,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let upload_origin = if args.upload_origin == "self" { String::new() } else { args.upload_origin };
    let cfg = MockConfig { upload_origin, default_mode: args.default_mode, ..MockConfig::default() };
    let mock = match MockGemini::start_on(args.listen, cfg).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("mock-gemini: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    // The harness reads the port from this single line.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {}", mock.addr());
    let _ = out.flush();
    drop(out);

    wait_for_signal().await;
    mock.shutdown().await;
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
