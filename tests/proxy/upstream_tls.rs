//! The upstream over TLS: verified against the system roots, plus an extra CA file for private
//! upstreams. A second proxy with a self-signed certificate plays the private HTTPS upstream.

use crate::harness::*;
use std::net::SocketAddr;

#[tokio::test(flavor = "multi_thread")]
async fn a_private_upstream_is_trusted_only_with_its_ca_file() {
    // The private upstream: a proxy with a TLS listener and a self-signed certificate.
    let tls_port = free_port();
    let inner = setup_with(&["AIzaINNER"], |t| {
        t.replace("[admin]", &format!("[tls]\nlisten = \"127.0.0.1:{tls_port}\"\n[tls.self_signed]\nnames = [\"127.0.0.1\", \"localhost\"]\n\n[admin]"))
    })
    .await;
    let ca = inner.proxy.dir.path().join("data/tls/self-signed.crt");
    assert!(ca.exists(), "the self-signed certificate is kept in the data directory");

    // The outer proxy uses the inner one's client token as its upstream key.
    let outer_toml = |with_ca: bool, addr: SocketAddr| {
        let ca_line = if with_ca { format!("ca_file = \"{}\"\n", ca.display()) } else { String::new() };
        config(addr, &format!("https://127.0.0.1:{tls_port}"), &[TOKEN])
            .replace("retry_backoff = \"10ms\"\n", &format!("retry_backoff = \"10ms\"\n{ca_line}"))
            .replace(&format!("token = \"{TOKEN}\""), "token = \"gp-outer-client\"")
    };
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let trusted = Proxy::start_config(addr, &outer_toml(true, addr));
    let r = generate_as(&trusted, "gp-outer-client", "gemini-2.5-flash").await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(inner.mock.requests().len(), 1, "the request went through both proxies");
    assert_eq!(inner.mock.requests()[0].key.as_deref(), Some("AIzaINNER"));

    let addr2: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let untrusted = Proxy::start_config(addr2, &outer_toml(false, addr2));
    let r = generate_as(&untrusted, "gp-outer-client", "gemini-2.5-flash").await;
    assert_eq!(r.status(), 502, "an unknown certificate is refused");
    assert_eq!(inner.mock.requests().len(), 1);
}
