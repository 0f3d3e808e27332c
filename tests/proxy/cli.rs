//! The command line: check, version, and the zero-config start from environment variables.

use crate::harness::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn version_and_help() {
    let out = Command::new(binary()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("gemini-proxy "));
    let out = Command::new(binary()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("run") && help.contains("check"), "{help}");
}

#[test]
fn check_reports_every_problem_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = \"not-an-address\"\n\n[[pools]]\nname = \"p\"\nstrategy = \"fastest\"\nkeys = [\"AIzaA\"]\n").unwrap();
    let out = Command::new(binary()).args(["check", "-c"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2, column 10") && err.contains("invalid listen address"), "{err}");
    assert!(err.contains("line 6") && err.contains("unknown strategy"), "{err}");

    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:8080\"\nworkers = 4\n").unwrap();
    let out = Command::new(binary()).args(["check", "-c"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3, column 1: unknown field `workers`"));

    std::fs::write(&path, "[[pools]]\nname = \"p\"\nkeys = [\"AIzaA\"]\n").unwrap();
    let out = Command::new(binary()).args(["check", "-c"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn a_public_address_without_tokens_is_refused() {
    let out = Command::new(binary())
        .arg("run")
        .current_dir(tempfile::tempdir().unwrap().path())
        .env("GEMINI_API_KEYS", "AIzaA")
        .env_remove("GEMINI_PROXY_TOKENS")
        .env("GEMINI_PROXY_LISTEN", "0.0.0.0:18999")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_config_from_environment_serves_on_8080() {
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let addr = "127.0.0.1:8080".parse().unwrap();
    let upstream = mock.base_url();
    let proxy = Proxy::start_cmd(
        addr,
        None,
        &[],
        &[("GEMINI_API_KEYS", "AIzaENV1,AIzaENV2"), ("GEMINI_PROXY_TOKENS", "gp-env-token"), ("GEMINI_PROXY_UPSTREAM", &upstream)],
    );
    let r = client()
        .post("http://127.0.0.1:8080/v1beta/models/gemini-2.5-flash:generateContent")
        .header("x-goog-api-key", "gp-env-token")
        .json(&generate_body("hi"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client().post("http://127.0.0.1:8080/v1beta/models/gemini-2.5-flash:generateContent").json(&generate_body("hi")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    drop(proxy);
}

#[test]
fn the_shipped_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let out = Command::new(binary()).args(["check", "-c", example]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `EnvFilter` reads `verbose` as a target and drops a directive it cannot parse, so a wrong
/// `[log] level` used to switch diagnostics off without a word.
#[test]
fn check_refuses_a_log_level_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    for (level, says) in
        [("verbose", "line 5, column 9: log.level is neither a level"), ("info,gemini_proxy=loudest", "line 5, column 9: log.level directive 2 of 2")]
    {
        std::fs::write(&path, format!("[[pools]]\nname = \"p\"\nkeys = [\"AIzaA\"]\n[log]\nlevel = \"{level}\"\n")).unwrap();
        let out = Command::new(binary()).args(["check", "-c"]).arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{level}: {err}");
        assert!(err.contains(says) && err.contains("info,gemini_proxy=debug") && !err.contains(level), "{level}: {err}");
    }
}

/// A RUST_LOG that tracing cannot read used to be dropped without a word (the configured level
/// applied and nothing said why the operator's filter did nothing): it is said so on stderr, once,
/// without echoing it.
#[test]
fn an_unreadable_rust_log_is_reported_and_the_configured_level_applies() {
    let warned = "RUST_LOG is not a filter tracing can read";
    let started = |p: &Proxy| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !p.stderr().contains("\"listen\"") {
            assert!(std::time::Instant::now() < deadline, "no start-up line:\n{}", p.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        p.stderr()
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let toml = config(addr, "http://127.0.0.1:9", &["AIzaA"]);
    let p = Proxy::start_cmd(addr, Some(&toml), &[], &[("RUST_LOG", "info,gemini_proxy=[oops")]);
    let err = started(&p);
    assert_eq!(err.matches(warned).count(), 1, "{err}");
    assert!(!err.contains("[oops"), "the variable is not echoed:\n{err}");
    drop(p);
    let p = Proxy::start_cmd(addr, Some(&toml), &[], &[("RUST_LOG", "info")]);
    let err = started(&p);
    assert!(!err.contains(warned), "a readable RUST_LOG is used without a word:\n{err}");
}
