//! Tests of the config contract: what must parse, what must be refused, and where.

use super::*;
use std::collections::HashMap;

struct FakeEnv(HashMap<&'static str, &'static str>);

impl EnvLookup for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|s| s.to_string())
    }
}

fn no_env() -> FakeEnv {
    FakeEnv(HashMap::new())
}

const CONTRACT: &str = r#"
[server]
listen = "127.0.0.1:8080"

[upstream]
base_url = "https://generativelanguage.googleapis.com"   # the default when omitted

[[pools]]
name = "default"
keys = ["AIza...1", "AIza...2"]

[[clients]]
name = "alice"
token = "gp-..."
"#;

#[test]
fn the_contract_document_means_what_it_says() {
    let s = parse_str(CONTRACT, "contract", &no_env()).expect("contract parses");
    assert_eq!(s.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert!(s.upstream.tls);
    assert_eq!(s.upstream.host, "generativelanguage.googleapis.com");
    assert_eq!(s.upstream.port, 443);
    assert_eq!(s.upstream.host_header, "generativelanguage.googleapis.com");
    assert_eq!(s.pools.len(), 1);
    assert_eq!(s.pools[0].name, "default");
    assert_eq!(s.pools[0].keys.len(), 2);
    assert_eq!(s.pools[0].keys[0].secret.expose(), "AIza...1");
    assert_eq!(s.clients[0].name, "alice");
    assert_eq!(s.clients[0].token_sha256, Some(crate::secret::sha256(b"gp-...")));
}

#[test]
fn base_url_defaults_to_google() {
    let text = "[[pools]]\nname = \"p\"\nkeys = [\"k1\"]\n";
    let s = parse_str(text, "t", &no_env()).unwrap();
    assert_eq!(s.upstream.base_url, "https://generativelanguage.googleapis.com");
    assert_eq!(s.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
}

#[test]
fn key_tables_and_key_env() {
    let text = r#"
[[pools]]
name = "p"
strategy = "weighted"
keys = ["plain", { key = "tabled", name = "second", weight = 2 }, { key_env = "GEMINI_KEY_3", name = "third" }]
"#;
    let env = FakeEnv(HashMap::from([("GEMINI_KEY_3", "from-env")]));
    let s = parse_str(text, "t", &env).unwrap();
    let keys = &s.pools[0].keys;
    assert_eq!(keys[1].name, "second");
    assert_eq!(keys[1].weight, 2);
    assert_eq!(keys[2].secret.expose(), "from-env");
    assert!(keys[0].name.starts_with("key-"), "a key without a name is named by its fingerprint");
    assert_eq!(s.pools[0].strategy, Strategy::Weighted);

    let err = parse_str(text, "t", &no_env()).unwrap_err();
    assert!(err.problems()[0].message.contains("GEMINI_KEY_3"));
    assert_eq!(err.problems()[0].line, Some(5));
}

#[test]
fn unknown_fields_are_errors_with_line_and_column() {
    let text = "[server]\nlisten = \"127.0.0.1:8080\"\nlisten_port = 9\n";
    let err = parse_str(text, "t", &no_env()).unwrap_err();
    let p = &err.problems()[0];
    assert!(p.message.contains("unknown field `listen_port`"), "{p}");
    assert_eq!((p.line, p.column), (Some(3), Some(1)));

    let text = "[[pools]]\nname = \"p\"\nkeys = [{ key = \"k\", wieght = 2 }]\n";
    let err = parse_str(text, "t", &no_env()).unwrap_err();
    assert!(err.problems()[0].message.contains("wieght"), "{}", err.problems()[0]);
}

/// A value that fails its check could be anything, a secret pasted in the wrong place included:
/// no problem quotes it (the line and column say where to look), and a key-shaped word that a
/// message does name is redacted.
#[test]
fn problems_do_not_quote_the_values_they_refuse() {
    let secret = "s3cr3t-token-0123456789";
    let key = format!("AIza{}", "K".repeat(35));
    let text = format!(
        r#"
[server]
listen = ["127.0.0.1:8080", "{secret}"]

[upstream]
base_url = "{secret}"

[admin]
listen = "{secret}"

[access]
allow = ["{secret}"]
cors_origins = ["{secret}"]

[[pools]]
name = "{secret}!"
strategy = "{secret}"
keys = [{{ key = "AIza{k1}", name = "{secret} x" }}]

[[pools]]
name = "{key}"
keys = ["AIza{k2}", "AIza{k2}"]

[[clients]]
name = "{secret} y"
token = "gp-0123456789abcdef0123456789abcdef"
pools = ["{secret}"]

[jwt]
secret = "0123456789abcdef0123456789abcdef"
algorithms = ["{secret}"]

[tls]
listen = ["{secret}"]
[tls.acme]
directory = "{secret}"
names = ["example.com"]
contact = ["mailto:a@example.com"]
challenge = "{secret}"
"#,
        k1 = "L".repeat(35),
        k2 = "M".repeat(35)
    );
    let err = parse_str(&text, "t", &no_env()).unwrap_err();
    assert!(err.problems().len() >= 12, "every refused value is a problem: {err}");
    for p in err.problems() {
        assert!(!p.message.contains("s3cr3t") && !p.message.contains(&key[4..]), "quoted: {p}");
    }
    // A key-shaped name is a valid name, and is named by the problems of its pool: redacted.
    assert!(err.problems().iter().any(|p| p.message.contains("appears twice in pool \"[redacted key")), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[server]
listen = "0.0.0.0:80:80"

[upstream]
base_url = "ftp://example.com"
max_attempts = 0

[[pools]]
name = "p"
strategy = "fastest"
keys = ["a", "a"]
"#;
    let err = parse_str(text, "t", &no_env()).unwrap_err();
    let lines: Vec<_> = err.problems().iter().map(|p| p.line).collect();
    assert!(err.problems().len() >= 5, "{err}");
    for want in [3, 6, 7, 11, 12] {
        assert!(lines.contains(&Some(want)), "no problem on line {want}: {err}");
    }
}

#[test]
fn public_listener_without_tokens_is_refused() {
    let text = "[server]\nlisten = \"0.0.0.0:8080\"\n[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n";
    let err = parse_str(text, "t", &no_env()).unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    assert_eq!(err.problems()[0].line, Some(2));

    let ok = format!("{text}[[clients]]\nname = \"c\"\ntoken = \"a-long-token\"\n");
    assert!(parse_str(&ok, "t", &no_env()).is_ok());

    let v6 = "[server]\nlisten = \"[::1]:8080\"\n[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n";
    assert!(parse_str(v6, "t", &no_env()).is_ok(), "IPv6 loopback is loopback");
}

#[test]
fn an_upstream_key_is_never_a_client_token() {
    let text = "[[pools]]\nname = \"p\"\nkeys = [\"AIzaSameSecret\"]\n[[clients]]\nname = \"c\"\ntoken = \"AIzaSameSecret\"\n";
    let err = parse_str(text, "t", &no_env()).unwrap_err();
    assert!(err.to_string().contains("never a valid client token"), "{err}");
    assert!(!err.to_string().contains("AIzaSameSecret"), "errors must not echo secrets: {err}");
}

#[test]
fn environment_builds_a_loopback_proxy() {
    let env = FakeEnv(HashMap::from([("GEMINI_API_KEYS", "k1, k2,k3"), ("GEMINI_PROXY_TOKENS", "token-one-1")]));
    let loaded = load(std::path::Path::new("/nonexistent/proxy.toml"), false, &env).unwrap();
    assert_eq!(loaded.source, ConfigSource::Environment);
    let s = loaded.settings;
    assert_eq!(s.pools[0].keys.len(), 3);
    assert_eq!(s.clients.len(), 1);
    assert!(s.loopback_only());

    let err = load(std::path::Path::new("/nonexistent/proxy.toml"), false, &no_env()).unwrap_err();
    assert!(err.to_string().contains("GEMINI_API_KEYS"), "{err}");

    let err = load(std::path::Path::new("/nonexistent/proxy.toml"), true, &env).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "an explicitly named file must exist");
}

#[test]
fn environment_moves_or_switches_off_the_admin_listener() {
    let path = std::path::Path::new("/nonexistent/proxy.toml");
    let with = |admin: &'static str| FakeEnv(HashMap::from([("GEMINI_API_KEYS", "k1"), ("GEMINI_PROXY_ADMIN_LISTEN", admin)]));
    let s = load(path, false, &with("127.0.0.1:19191")).unwrap().settings;
    assert!(s.admin.enabled);
    assert_eq!(s.admin.listen, "127.0.0.1:19191".parse().unwrap());
    assert!(!load(path, false, &with("off")).unwrap().settings.admin.enabled);
    let err = load(path, false, &with("nowhere")).unwrap_err();
    assert!(err.to_string().contains("admin"), "{err}");
    let default = load(path, false, &FakeEnv(HashMap::from([("GEMINI_API_KEYS", "k1")]))).unwrap().settings;
    assert_eq!(default.admin.listen.port(), 9090);
}

#[test]
fn the_admin_listener_may_not_share_a_port_with_the_data_plane() {
    let with = |server: &str, admin: &str| {
        format!("[server]\nlisten = \"{server}\"\n[admin]\nlisten = \"{admin}\"\n[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n[[clients]]\nname = \"c\"\ntoken = \"client-token-123\"\n")
    };
    for (server, admin) in
        [("0.0.0.0:8080", "127.0.0.1:8080"), ("127.0.0.1:8080", "0.0.0.0:8080"), ("[::]:8080", "127.0.0.1:8080"), ("127.0.0.1:8080", "127.0.0.1:8080")]
    {
        let err = parse_str(&with(server, admin), "t", &no_env()).unwrap_err();
        assert!(err.to_string().contains("admin.listen"), "{server} and {admin}: {err}");
    }
    for (server, admin) in [("0.0.0.0:8080", "127.0.0.1:9090"), ("127.0.0.2:8080", "127.0.0.1:8080")] {
        assert!(parse_str(&with(server, admin), "t", &no_env()).is_ok(), "{server} and {admin}");
    }
}

#[test]
fn cors_origins_are_origins_or_a_lone_star() {
    let with = |list: &str| format!("[access]\ncors_origins = {list}\n[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n");
    let s = parse_str(&with(r#"["https://App.example.com/", "http://localhost:5173"]"#), "t", &no_env()).unwrap();
    assert_eq!(s.access.cors, CorsOrigins::List(vec!["https://app.example.com".into(), "http://localhost:5173".into()]));
    assert!(s.access.cors.allows(b"https://app.example.com") && !s.access.cors.allows(b"https://app.example.com.evil.net"));
    assert_eq!(parse_str(&with(r#"["*"]"#), "t", &no_env()).unwrap().access.cors, CorsOrigins::Any);
    assert_eq!(parse_str("[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n", "t", &no_env()).unwrap().access.cors, CorsOrigins::None);
    for bad in [
        r#"["app.example.com"]"#,
        r#"["https://app.example.com/path"]"#,
        r#"["ftp://x.example"]"#,
        r#"["*", "https://a.example"]"#,
        r#"["https://u@a.example"]"#,
    ] {
        let err = parse_str(&with(bad), "t", &no_env()).unwrap_err();
        assert!(err.to_string().contains("cors_origins"), "{bad}: {err}");
    }
}

#[test]
fn sizes_and_durations() {
    let text = "[server]\nbody_limit = \"5MiB\"\ngrace_period = \"2s\"\n[upstream]\nfirst_byte_timeout = \"10m\"\n[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n";
    let s = parse_str(text, "t", &no_env()).unwrap();
    assert_eq!(s.server.body_limit, 5 << 20);
    assert_eq!(s.server.grace_period.as_secs(), 2);
    assert_eq!(s.upstream.first_byte_timeout.as_secs(), 600);
    let bad = text.replace("\"2s\"", "\"2 fortnights\"");
    let err = parse_str(&bad, "t", &no_env()).unwrap_err();
    assert_eq!(err.problems()[0].line, Some(3));
}

#[test]
fn a_key_in_the_wrong_place_is_not_echoed_by_the_parser() {
    let key = "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q";
    for (text, line) in [
        (format!("[[pools]]\nname = \"p\"\nkeys = \"{key}\"\n"), 3),
        (format!("[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n[server]\nthreads = \"{key}\"\n"), 5),
        (format!("[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n[key_health]\nprobe_interval = \"{key}\"\n"), 5),
        (format!("[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n[[clients]]\nname = \"c\"\n\"{key}\" = 1\n"), 6),
        (format!("[[pools]]\nname = \"p\"\nkeys = [{key}]\n"), 3),
    ] {
        let err = parse_str(&text, "t", &no_env()).unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains("AIzaSy"), "the key is echoed: {shown}");
        assert_eq!(err.problems()[0].line, Some(line), "{shown}");
    }
    let err = parse_str(&format!("[[pools]]\nname = \"p\"\nkeys = \"{key}\"\n"), "t", &no_env()).unwrap_err();
    assert!(err.problems()[0].message.contains("invalid type: string, expected a sequence"), "{err}");
}

#[test]
fn problems_between_fields_point_at_the_line_that_causes_them() {
    let pool = "[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n";
    let client = "[[clients]]\nname = \"c\"\ntoken = \"a-long-token\"\n";
    for (text, line, says) in [
        (format!("{pool}[server]\nbody_limit = \"2MiB\"\nbuffered_bytes_limit = \"1MiB\"\n"), 5, "body_limit must not exceed"),
        (format!("{pool}[server]\nbuffered_bytes_limit = \"1MiB\"\n"), 5, "body_limit must not exceed"),
        (format!("{pool}{client}rpm = 10\ntpd = 0\n"), 8, "tpd = 0 would refuse everything"),
        (format!("{pool}{client}concurrency = 0\n"), 7, "concurrency = 0"),
        (format!("{pool}[access]\nper_ip_rpm = 5\nmax_streams = 0\n"), 6, "access.max_streams = 0"),
        (format!("{pool}[access]\ncors_origins = [\n  \"https://a.example\",\n  \"*\",\n]\n"), 7, "list it alone"),
        (
            format!("{pool}[tls]\nlisten = \"127.0.0.1:8443\"\n[[tls.certificates]]\ncert_file = \"/nonexistent/a.pem\"\nkey_file = \"/nonexistent/a.key\"\ndefault = true\n[[tls.certificates]]\ncert_file = \"/nonexistent/b.pem\"\nkey_file = \"/nonexistent/b.key\"\ndefault = true\n"),
            13,
            "at most one",
        ),
        (
            format!("{pool}[server]\nlisten = []\n[tls]\nlisten = \"127.0.0.1:8443\"\n[tls.acme]\ndirectory = \"letsencrypt\"\nnames = [\"a.example\"]\n"),
            9,
            "http-01 needs a plain listener",
        ),
    ] {
        let err = parse_str(&text, "t", &no_env()).unwrap_err();
        let p = err.problems().iter().find(|p| p.message.contains(says)).unwrap_or_else(|| panic!("no {says:?} in {err}"));
        assert_eq!(p.line, Some(line), "{says}: {err}\n{text}");
    }
}

const POOL: &str = "[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n";

/// Checks that each case's problem is at its line and column: (file text, line, column, part
/// of the message). Every misplaced or missing one is listed, so one run shows each that fails.
fn assert_placed(env: &dyn EnvLookup, cases: &[(String, usize, usize, &str)]) {
    assert_placed_by(|text| parse_str(text, "t", env).map(drop).map_err(|e| e.problems().to_vec()), cases);
}

/// [`assert_placed`] for another check of a text than the loader's (`check` returns the
/// problems it finds).
fn assert_placed_by(check: impl Fn(&str) -> Result<(), Vec<LocatedProblem>>, cases: &[(String, usize, usize, &str)]) {
    let mut wrong = Vec::new();
    for (text, line, column, says) in cases {
        match check(text) {
            Ok(_) => wrong.push(format!("{says:?}: accepted\n{text}")),
            Err(problems) => match problems.iter().find(|p| p.message.contains(says)) {
                Some(p) if (p.line, p.column) == (Some(*line), Some(*column)) => {}
                Some(p) => wrong.push(format!("{says:?} at line {:?}, column {:?}, not {line}:{column}\n{text}", p.line, p.column)),
                None => wrong.push(format!("no {says:?} in {problems:?}")),
            },
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn a_refused_jwt_key_points_at_the_field_that_sets_it_without_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let not_pem = file("key.pem", "not a key\n");
    // serde would quote a value of the wrong type: here a symmetric secret where the list belongs.
    let not_jwks = file("wrong.json", r#"{"keys": "jwks-symmetric-secret-value"}"#);
    let bad_rsa = file("bad-rsa.json", r#"{"keys": [{"kty": "RSA", "n": "!!not base64!!", "e": "AQAB"}]}"#);
    let only_oct = file("oct.json", r#"{"keys": [{"kty": "oct", "k": "b2N0LXNlY3JldC1vY3Qtc2VjcmV0LW9jdC1zZWNyZXQ"}]}"#);
    let long = "a-secret-of-thirty-two-bytes-xyz";
    let env = FakeEnv(HashMap::from([("JWT_SECRET", "too-short-env-secret")]));
    let cases = [
        (format!("{POOL}\n[jwt]\nsecret = \"too-short-file-secret\"\n"), 6, 10, "jwt.secret: the HS256 secret must be at least 32 bytes"),
        (
            format!("{POOL}[jwt]\nissuer = \"https://auth.test\"\nsecret_env = \"JWT_SECRET\"\n"),
            6,
            14,
            "jwt.secret_env: the HS256 secret must be at least 32 bytes",
        ),
        (format!("{POOL}[jwt]\npublic_key_file = \"{not_pem}\"\n"), 5, 19, "jwt.public_key_file: the public key file is not"),
        (format!("{POOL}[jwt]\njwks_file = \"{not_jwks}\"\n"), 5, 13, "jwt.jwks_file: the JWKS file is not a JWK set"),
        (format!("{POOL}[jwt]\njwks_file = \"{bad_rsa}\"\n"), 5, 13, "jwt.jwks_file: a JWKS key cannot be used"),
        (format!("{POOL}[jwt]\nsecret = \"{long}\"\nalgorithms = [\"RS256\"]\n"), 6, 14, "jwt.algorithms: no usable verification key"),
        (format!("{POOL}[jwt]\njwks_file = \"{only_oct}\"\n"), 5, 13, "jwt.jwks_file: no usable verification key"),
        (format!("{POOL}[jwt]\nclient_claim = \"email\"\n"), 4, 1, "[jwt]: no usable verification key"),
        (format!("jwt = {{ client_claim = \"email\" }}\n{POOL}"), 1, 7, "[jwt]: no usable verification key"),
    ];
    assert_placed(&env, &cases);
    for (text, ..) in &cases {
        let shown = parse_str(text, "t", &env).unwrap_err().to_string();
        for secret in ["too-short", "jwks-symmetric-secret-value", "b2N0LXNl"] {
            assert!(!shown.contains(secret), "{secret} is shown: {shown}");
        }
    }
}

#[test]
fn no_pools_points_at_the_top_of_the_file_or_the_empty_list() {
    let cases = [
        (String::new(), 1, 1, "no [[pools]] defined"),
        ("[server]\nlisten = \"127.0.0.1:8080\"\n".to_owned(), 1, 1, "no [[pools]] defined"),
        ("# keys come later\npools = []\n".to_owned(), 2, 9, "no [[pools]] defined"),
    ];
    assert_placed(&no_env(), &cases);
}

#[test]
fn an_admin_port_clash_points_at_the_listener_written_last() {
    let cases = [
        // The admin listener left at its default: at the listener that takes its port.
        (format!("{POOL}[server]\nlisten = \"127.0.0.1:9090\"\n"), 5, 10, "admin.listen (default) 127.0.0.1:9090 must not share its port with server.listen"),
        (
            format!("{POOL}[tls]\nlisten = \"0.0.0.0:9090\"\n[tls.self_signed]\nnames = [\"localhost\"]\n"),
            5,
            10,
            "must not share its port with tls.listen 0.0.0.0:9090",
        ),
        // Both written: at the later one.
        (format!("[server]\nlisten = \"0.0.0.0:8080\"\n[admin]\nlisten = \"127.0.0.1:8080\"\n{POOL}"), 4, 10, "must not share its port"),
        (format!("[admin]\nlisten = \"127.0.0.1:8080\"\n[server]\nlisten = \"0.0.0.0:8080\"\n{POOL}"), 4, 10, "must not share its port"),
    ];
    assert_placed(&no_env(), &cases);
}

#[test]
fn tls_listeners_without_a_certificate_point_at_the_listeners() {
    assert_placed(&no_env(), &[(format!("{POOL}[tls]\nlisten = \"127.0.0.1:8443\"\n"), 5, 10, "TLS listeners need a certificate")]);
}

#[test]
fn a_self_signed_name_no_certificate_can_carry_is_refused_at_its_line() {
    let text = format!("{POOL}[tls]\nlisten = \"127.0.0.1:8443\"\n[tls.self_signed]\nnames = [\"localhost\", \"bücher.example\"]\n");
    assert_placed(&no_env(), &[(text.clone(), 7, 9, "name 2 cannot be in a certificate")]);
    assert!(parse_str(&text.replace("bücher", "xn--bcher-kva"), "t", &no_env()).is_ok());
}

#[test]
fn a_log_level_the_filter_would_ignore_is_refused_at_its_line() {
    let level = |value: &str| format!("{POOL}[log]\nlevel = \"{value}\"\n");
    let cases = [
        // A bare word EnvFilter takes for a target: every other log would go dark.
        (level("verbose"), 5, 9, "log.level is neither a level nor a target=level directive: write a level (error, warn, info, debug, trace or off)"),
        // A malformed directive EnvFilter would drop.
        (level("info,gemini_proxy=loudest"), 5, 9, "log.level directive 2 of 2 is neither"),
        (level("info,[span"), 5, 9, "log.level directive 2 of 2 is neither"),
        (level(""), 5, 9, "log.level is empty"),
        (format!("[log]\nformat = \"text\"\nlevel = \" , \"\n{POOL}"), 3, 9, "log.level is empty"),
    ];
    assert_placed(&no_env(), &cases);
    for (text, ..) in &cases[..3] {
        let shown = parse_str(text, "t", &no_env()).unwrap_err().to_string();
        assert!(!shown.contains("verbose") && !shown.contains("loudest") && !shown.contains("[span"), "the value is quoted: {shown}");
    }
    // Accepted, trimmed for EnvFilter (which would read " gemini_proxy" as a target).
    let s = parse_str(&level("WARN, gemini_proxy=debug ,pingora_core[conn]=trace,3"), "t", &no_env()).unwrap();
    assert_eq!(s.log.level, "WARN,gemini_proxy=debug,pingora_core[conn]=trace,3");
    assert_eq!(parse_str(POOL, "t", &no_env()).unwrap().log.level, "info");
}

#[test]
fn jwt_settings_that_would_refuse_every_token_or_skip_a_check_are_refused_at_their_line() {
    let jwt = |lines: &str| format!("{POOL}[jwt]\nsecret = \"a-secret-of-thirty-two-bytes-xyz\"\n{lines}\n");
    let cases = [
        (jwt("issuer = \"\""), 6, 10, "jwt.issuer is empty: no token carries that issuer, so every token would be refused"),
        (jwt("issuer = \"  \""), 6, 10, "jwt.issuer is empty"),
        (jwt("client_claim = \"\""), 6, 16, "jwt.client_claim is empty: no token names its client in a claim without a name"),
        (jwt("policy_claim = \"\""), 6, 16, "jwt.policy_claim is empty"),
        (
            jwt("audience = []"),
            6,
            12,
            "jwt.audience = [] turns the audience check off: list the audiences your tokens are for, or omit audience to skip the check",
        ),
        (jwt("audience = [\"gemini-proxy\", \"\"]"), 6, 29, "jwt.audience: an empty audience is no token's aud"),
        (jwt("algorithms = []"), 6, 14, "jwt.algorithms = [] would accept every algorithm the keys support, not none"),
        (format!("jwt = {{ secret = \"a-secret-of-thirty-two-bytes-xyz\", issuer = \"\" }}\n{POOL}"), 1, 63, "jwt.issuer is empty"),
    ];
    assert_placed(&no_env(), &cases);
    // Reported beside a refused key, not instead of it.
    let both = format!("{POOL}[jwt]\nsecret = \"too-short\"\nissuer = \"\"\n");
    let err = parse_str(&both, "t", &no_env()).unwrap_err().to_string();
    assert!(err.contains("jwt.issuer is empty") && err.contains("jwt.secret: the HS256 secret must be at least 32 bytes"), "{err}");
    let written =
        jwt("issuer = \"https://auth.test\"\naudience = [\"gemini-proxy\"]\nclient_claim = \"email\"\npolicy_claim = \"gp\"\nalgorithms = [\"HS256\"]");
    assert!(parse_str(&written, "t", &no_env()).unwrap().jwt.is_some());
}

#[test]
fn an_unknown_placeholder_is_refused_at_its_place_without_being_quoted() {
    let running = "[[pools]]\nname = \"p\"\nkeys = [\"AIzaRUNNING\"]\n[[clients]]\nname = \"c\"\ntoken = \"gp-running-token\"\n";
    let shown = redact::redact(running);
    let known = shown.lines().find(|l| l.starts_with("keys = ")).unwrap().trim_start_matches("keys = [").trim_end_matches(']').to_owned();
    let says = "this redacted: placeholder matches no secret of the running configuration; write the secret itself";
    let cases = [
        // Made up, beside a known one.
        (shown.replace(&known, &format!("{known}, \"redacted:key:000000000000\"")), 3, 9 + known.len() + 2, says),
        (format!("{POOL}[[clients]]\nname = \"c\"\ntoken = \"redacted:token:ffffffffffff\"\n"), 6, 9, says),
        ("[[pools]]\nname = \"p\"\nkeys = [{ name = \"k\", key = \"redacted:key:0123456789ab\" }]\n".to_owned(), 3, 29, says),
        (format!("{POOL}[jwt]\nsecret = \"redacted:typed-by-hand\"\n"), 5, 10, says),
        // In a comment (it would be written to the file as it is).
        (format!("{POOL}# retired: redacted:key:abcdef012345, last year\n"), 4, 12, says),
    ];
    let unredact = |text: &str| redact::unredact(text, running).map(drop).map_err(|e| e.problems(text));
    assert_placed_by(unredact, &cases);
    for (text, ..) in &cases {
        let problems = unredact(text).unwrap_err();
        assert!(problems.iter().all(|p| p.message == says), "only the place says which: {problems:?}");
    }
    // Every one, in order.
    let two = format!("{POOL}# redacted:key:abcdef012345\n[[clients]]\nname = \"c\"\ntoken = \"redacted:token:ffffffffffff\"\n");
    let places: Vec<_> = unredact(&two).unwrap_err().iter().map(|p| (p.line, p.column)).collect();
    assert_eq!(places, [(Some(4), Some(3)), (Some(7), Some(9))]);
    assert!(redact::unredact(&shown, running).is_ok_and(|t| t == running));
}

#[test]
fn a_listen_list_problem_points_at_its_entry() {
    let server = |list: &str| format!("{POOL}[server]\nlisten = {list}\n");
    let tls = |list: &str| format!("{POOL}[server]\nlisten = \"127.0.0.1:8080\"\n[tls]\nlisten = {list}\n[tls.self_signed]\nnames = [\"localhost\"]\n");
    let cases = [
        (server(r#"["127.0.0.1:8080", "not-an-address"]"#), 5, 29, "invalid listen address"),
        (server("[\n  \"127.0.0.1:8080\",\n  \"nowhere\",\n]"), 7, 3, "invalid listen address"),
        (server(r#"["127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8080"]"#), 5, 47, "appears twice"),
        (tls(r#"["127.0.0.1:8443", "127.0.0.1:8080"]"#), 7, 29, "TLS listen address 127.0.0.1:8080 is also used by another listener"),
        (tls(r#"["127.0.0.1:8443", ":8444"]"#), 7, 29, "invalid TLS listen address"),
        // Between lists: at the entry that causes it.
        (server(r#"["127.0.0.1:8080", "127.0.0.1:9090"]"#), 5, 29, "admin.listen (default) 127.0.0.1:9090 must not share its port with server.listen"),
        (tls(r#"["127.0.0.1:8443", "[::]:9090"]"#), 7, 29, "must not share its port with tls.listen [::]:9090"),
        (server(r#"["127.0.0.1:8080", "0.0.0.0:8081"]"#), 5, 29, "no client token is configured"),
        (tls(r#"["127.0.0.1:8443", "0.0.0.0:8443"]"#), 7, 29, "no client token is configured"),
        // The plain listeners left at their default: at the public TLS one, not nowhere.
        (
            format!("{POOL}[tls]\nlisten = [\"127.0.0.1:8443\", \"0.0.0.0:8443\"]\n[tls.self_signed]\nnames = [\"localhost\"]\n"),
            5,
            29,
            "no client token is configured",
        ),
    ];
    assert_placed(&no_env(), &cases);
    let s = parse_str(&server(r#"["127.0.0.1:8080", "[::1]:8080"]"#), "t", &no_env()).unwrap();
    assert_eq!(s.server.listen, ["127.0.0.1:8080".parse().unwrap(), "[::1]:8080".parse().unwrap()]);
}
