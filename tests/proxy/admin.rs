//! The admin API: authentication, every route, hot reload, persistence across restarts.

use crate::harness::*;
use mock_gemini::KeyMode;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn call(p: &Proxy, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = client().request(method, p.admin_url(path)).bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("admin request");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn get(p: &Proxy, path: &str) -> Value {
    let (status, v) = call(p, Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

fn key39(tag: char) -> String {
    format!("AIza{}", tag.to_string().repeat(35))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_but_healthz_readyz_and_login_needs_authentication() {
    let s = setup(&["AIzaA"]).await;
    let c = client();
    assert_eq!(c.get(s.proxy.admin_url("/healthz")).send().await.unwrap().status(), 200);
    let routes: &[(Method, &str)] = &[
        (Method::GET, "/metrics"),
        (Method::GET, "/api/v1/openapi.json"),
        (Method::GET, "/api/v1/config"),
        (Method::POST, "/api/v1/config/validate"),
        (Method::PUT, "/api/v1/config"),
        (Method::POST, "/api/v1/config/reload"),
        (Method::GET, "/api/v1/config/versions"),
        (Method::GET, "/api/v1/config/versions/1"),
        (Method::POST, "/api/v1/config/versions/1/rollback"),
        (Method::GET, "/api/v1/config/diff?from=1"),
        (Method::GET, "/api/v1/keys"),
        (Method::POST, "/api/v1/keys"),
        (Method::POST, "/api/v1/keys/import"),
        (Method::POST, "/api/v1/keys/validate"),
        (Method::POST, "/api/v1/keys/0123456789ab/enable"),
        (Method::POST, "/api/v1/keys/0123456789ab/disable"),
        (Method::POST, "/api/v1/keys/0123456789ab/reset"),
        (Method::DELETE, "/api/v1/keys/0123456789ab"),
        (Method::GET, "/api/v1/clients"),
        (Method::POST, "/api/v1/clients"),
        (Method::PATCH, "/api/v1/clients/alice"),
        (Method::DELETE, "/api/v1/clients/alice"),
        (Method::GET, "/api/v1/stats/timeseries"),
        (Method::GET, "/api/v1/stats/totals"),
        (Method::GET, "/api/v1/requests"),
        (Method::GET, "/api/v1/requests/1"),
        (Method::GET, "/api/v1/audit"),
        (Method::GET, "/api/v1/auth/session"),
        (Method::POST, "/api/v1/auth/logout"),
    ];
    for (m, path) in routes {
        for token in [None, Some("wrong-admin-token-0000"), Some(TOKEN)] {
            let mut req = c.request(m.clone(), s.proxy.admin_url(path)).json(&json!({}));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{m} {path} with {token:?}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn login_sessions_and_failed_login_rate_limit() {
    let hash = gemini_proxy::admin::auth::hash_password("correct horse battery").unwrap();
    let s = setup_with(&["AIzaA"], |t| in_section(t, "admin", &format!("password_hash = \"{hash}\""))).await;
    let c = client();
    let login = |pw: &'static str| c.post(s.proxy.admin_url("/api/v1/auth/login")).json(&json!({"password": pw})).send();
    let r = login("correct horse battery").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("HttpOnly"));
    let token = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let me = c.get(s.proxy.admin_url("/api/v1/auth/session")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["kind"], "session");
    assert_eq!(c.get(s.proxy.admin_url("/api/v1/keys")).bearer_auth(&token).send().await.unwrap().status(), 200);
    assert_eq!(c.post(s.proxy.admin_url("/api/v1/auth/logout")).bearer_auth(&token).send().await.unwrap().status(), 204);
    assert_eq!(c.get(s.proxy.admin_url("/api/v1/keys")).bearer_auth(&token).send().await.unwrap().status(), 401, "logged out");

    // The admin token buys a session too (what a browser should keep instead of the token).
    let by_token = |body: Value| c.post(s.proxy.admin_url("/api/v1/auth/login")).json(&body).send();
    let r = by_token(json!({"token": ADMIN_TOKEN})).await.unwrap();
    assert_eq!(r.status(), 200);
    let session = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    assert_ne!(session, ADMIN_TOKEN);
    let me = c.get(s.proxy.admin_url("/api/v1/auth/session")).bearer_auth(&session).send().await.unwrap();
    assert_eq!(me.json::<Value>().await.unwrap()["kind"], "session");
    let both = by_token(json!({"token": ADMIN_TOKEN, "password": "correct horse battery"})).await.unwrap();
    assert_eq!(both.status(), 400, "exactly one credential");
    assert_eq!(by_token(json!({})).await.unwrap().status(), 400);

    let r = by_token(json!({"token": "not-the-token"})).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains("not-the-token"));
    for _ in 0..4 {
        assert_eq!(login("wrong").await.unwrap().status(), 401);
    }
    let r = login("correct horse battery").await.unwrap();
    assert_eq!(r.status(), 429, "even the right password waits after five failures");
    assert!(r.headers().contains_key("retry-after"));
}

/// The login page asks which methods are on, before anyone is logged in; the answer names the
/// methods and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn login_methods_say_which_credentials_are_set_up_without_authentication() {
    let methods = |p: &Proxy| {
        let url = p.admin_url("/api/v1/auth/methods");
        async move {
            let r = client().get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    // The test config has an admin token and no password.
    let token_only = setup(&["AIzaA"]).await;
    assert_eq!(methods(&token_only.proxy).await, json!({"password": false, "token": true}));
    let hash = gemini_proxy::admin::auth::hash_password("correct horse battery").unwrap();
    let both = setup_with(&["AIzaA"], |t| in_section(t, "admin", &format!("password_hash = \"{hash}\""))).await;
    assert_eq!(methods(&both.proxy).await, json!({"password": true, "token": true}));
    // No credential configured: a password is generated, and that is the only way in.
    let generated = setup_with(&["AIzaA"], |t| t.replace(&format!("token = \"{ADMIN_TOKEN}\"\n"), "")).await;
    assert_eq!(methods(&generated.proxy).await, json!({"password": true, "token": false}));
    let spec = get(&token_only.proxy, "/api/v1/openapi.json").await;
    assert!(spec["paths"]["/api/v1/auth/methods"]["get"]["security"].is_null(), "documented as open: {}", spec["paths"]["/api/v1/auth/methods"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generated_password_is_printed_once_and_survives_a_restart() {
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = config(addr, &mock.base_url(), &["AIzaA"]).replace(&format!("token = \"{ADMIN_TOKEN}\"\n"), "");
    let p = Proxy::start_config(addr, &toml);
    let deadline = Instant::now() + Duration::from_secs(5);
    let password = loop {
        if let Some(line) = p.stderr().lines().find(|l| l.contains("generated an admin password (shown only this once)")) {
            break line.rsplit(' ').next().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no generated password printed:\n{}", p.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let login = |p: &Proxy, pw: &str| client().post(p.admin_url("/api/v1/auth/login")).json(&json!({"password": pw})).send();
    assert_eq!(login(&p, &password).await.unwrap().status(), 200);
    let dir = p.stop();
    let p = Proxy::start_in(dir, addr, Some(&toml), &[], &[]);
    assert_eq!(login(&p, &password).await.unwrap().status(), 200, "the stored hash is reused");
    assert!(!p.stderr().contains("shown only this once"), "printed only on the first start");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_routes_validate_replace_version_diff_and_roll_back() {
    let s = setup(&["AIzaA"]).await;
    let cfg = get(&s.proxy, "/api/v1/config").await;
    let text = cfg["text"].as_str().unwrap().to_owned();
    assert!(cfg["writable"].as_bool().unwrap());
    assert!(!text.contains("AIzaA") && !text.contains(TOKEN) && !text.contains(ADMIN_TOKEN), "secrets are redacted: {text}");
    assert!(text.contains("redacted:key:"));

    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/config/validate", Some(json!({"text": text.replace("threads = 2", "threads = 2\nbogus = 1")}))).await;
    assert_eq!(st, 200);
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"][0]["line"], 5, "{v}");
    let (_, v) = call(&s.proxy, Method::POST, "/api/v1/config/validate", Some(json!({"text": text}))).await;
    assert_eq!(v["valid"], true, "{v}");

    // An invalid replacement is refused and the old config keeps serving.
    let (st, v) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": text.replace("base_url = \"http", "base_url = \"ftp")}))).await;
    assert_eq!(st, 422, "{v}");
    assert!(v["error"]["problems"][0]["line"].is_number());
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);

    // A valid one (placeholders kept) adds a key and is applied at once.
    let new_key = key39('N');
    let edited = text.replace("keys = [", &format!("keys = [\"{new_key}\", "));
    let (st, v) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": edited, "comment": "add N"}))).await;
    assert_eq!(st, 200, "{v}");
    let version = v["version"].as_i64().unwrap();
    let on_disk = std::fs::read_to_string(&s.proxy.config_path).unwrap();
    assert!(on_disk.contains(&new_key) && on_disk.contains("AIzaA") && on_disk.contains(TOKEN), "written with real secrets");
    let keys = get(&s.proxy, "/api/v1/keys").await;
    assert_eq!(keys["total"], 2);
    assert_eq!(keys["pools"], json!(["default"]));

    let versions = get(&s.proxy, "/api/v1/config/versions").await;
    let ids: Vec<i64> = versions.as_array().unwrap().iter().map(|v| v["id"].as_i64().unwrap()).collect();
    assert!(ids.len() >= 2 && ids[0] == version, "{versions}");
    let first = *ids.last().unwrap();
    let shown = get(&s.proxy, &format!("/api/v1/config/versions/{version}")).await;
    assert!(!shown["text"].as_str().unwrap().contains(&new_key), "versions are redacted too");
    let diff = get(&s.proxy, &format!("/api/v1/config/diff?from={first}&to={version}")).await;
    let d = diff["diff"].as_str().unwrap();
    assert!(d.contains("+keys = [\"redacted:key:") && !d.contains(&new_key), "{d}");

    let (st, v) = call(&s.proxy, Method::POST, &format!("/api/v1/config/versions/{first}/rollback"), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(get(&s.proxy, "/api/v1/keys").await["total"], 1);
    assert!(!std::fs::read_to_string(&s.proxy.config_path).unwrap().contains(&new_key));
    let (st, _) = call(&s.proxy, Method::GET, "/api/v1/config/versions/999999", None).await;
    assert_eq!(st, 404);

    // SIGHUP and the reload route re-read the file; a broken file is refused.
    std::fs::write(&s.proxy.config_path, on_disk.replace("threads = 2", "threads = 2\nnonsense = true")).unwrap();
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/config/reload", None).await;
    assert_eq!(st, 422, "{v}");
    s.proxy.signal("HUP");
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200, "the old config still serves");
    std::fs::write(&s.proxy.config_path, &on_disk).unwrap();
    s.proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&s.proxy, "/api/v1/keys").await["total"] != 2 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The audit entry is written just after the swap: wait for it too.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let audit = get(&s.proxy, "/api/v1/audit").await;
        let entries: Vec<(String, String)> =
            audit.as_array().unwrap().iter().map(|a| (a["action"].as_str().unwrap().to_owned(), a["actor"].as_str().unwrap().to_owned())).collect();
        let replaced = entries.iter().any(|(a, who)| a == "config.replace" && who.starts_with("token@"));
        let reloaded = entries.iter().any(|(a, who)| a == "config.reload" && who == "signal:SIGHUP");
        if replaced && reloaded {
            break;
        }
        assert!(Instant::now() < deadline, "audit log: {entries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The history's comments the server wrote come with a kind and parameters, and its authors
/// with theirs (the UI shows both in its language); a comment a user wrote comes as written,
/// with none, even when it reads exactly like one of the server's.
#[tokio::test(flavor = "multi_thread")]
async fn server_comments_and_authors_in_the_history_come_with_a_kind_and_parameters() {
    let s = setup(&["AIzaA"]).await;
    let newest = |versions: &Value| (versions[0]["comment"].clone(), versions[0]["server_comment"].clone(), versions[0]["author"].clone());
    let token = json!({"kind": "token", "params": {"address": "127.0.0.1"}});
    let versions = get(&s.proxy, "/api/v1/config/versions").await;
    let first = versions[0]["id"].as_i64().unwrap();
    assert_eq!(versions[0]["actor"], "startup");
    assert_eq!(newest(&versions), (json!("configuration at start-up"), json!({"kind": "startup"}), json!({"kind": "startup"})));

    // An API edit.
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/keys", Some(json!({"key": key39('G')}))).await;
    assert_eq!(st, 201, "{v}");
    let versions = get(&s.proxy, "/api/v1/config/versions").await;
    assert_eq!(versions[0]["actor"], "token@127.0.0.1");
    assert_eq!(newest(&versions), (json!("1 key(s) added"), json!({"kind": "keys_added", "params": {"count": 1}}), token.clone()));

    // Client edits.
    let (st, _) = call(&s.proxy, Method::POST, "/api/v1/clients", Some(json!({"name": "carol"}))).await;
    assert_eq!(st, 201);
    let versions = get(&s.proxy, "/api/v1/config/versions").await;
    assert_eq!(newest(&versions), (json!("client carol created"), json!({"kind": "client_created", "params": {"client": "carol"}}), token.clone()));
    let (st, _) = call(&s.proxy, Method::PATCH, "/api/v1/clients/carol", Some(json!({"rpm": 5}))).await;
    assert_eq!(st, 200);
    assert_eq!(newest(&get(&s.proxy, "/api/v1/config/versions").await).1, json!({"kind": "client_updated", "params": {"client": "carol"}}));
    let (st, _) = call(&s.proxy, Method::DELETE, "/api/v1/clients/carol", None).await;
    assert_eq!(st, 200);
    assert_eq!(newest(&get(&s.proxy, "/api/v1/config/versions").await).1, json!({"kind": "client_revoked", "params": {"client": "carol"}}));

    // A user's words, even the server's own, stay theirs.
    let text = get(&s.proxy, "/api/v1/config").await["text"].as_str().unwrap().to_owned();
    let mut mine = Vec::new();
    for (n, typed) in ["rollback to version x, by hand", "configuration at start-up", &format!("rollback to version {first}")].into_iter().enumerate() {
        let edited = text.replace("\"10ms\"", &format!("\"{}ms\"", 11 + n));
        let (st, v) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": edited, "comment": typed}))).await;
        assert_eq!(st, 200, "{v}");
        mine.push(v["version"].as_i64().unwrap());
        assert_eq!(newest(&get(&s.proxy, "/api/v1/config/versions").await), (json!(typed), Value::Null, token.clone()), "a user's words stay theirs");
    }
    let (st, _) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": text.replace("\"10ms\"", "\"30ms\"")}))).await;
    assert_eq!(st, 200);
    assert_eq!(newest(&get(&s.proxy, "/api/v1/config/versions").await).1, json!({"kind": "replaced"}));

    // A rollback, by a login session.
    let login = client().post(s.proxy.admin_url("/api/v1/auth/login")).json(&json!({"token": ADMIN_TOKEN})).send().await.expect("login");
    let session = login.json::<Value>().await.expect("session")["token"].as_str().expect("a session token").to_owned();
    let r = client().post(s.proxy.admin_url(&format!("/api/v1/config/versions/{first}/rollback"))).bearer_auth(&session).send().await.expect("rollback");
    assert_eq!(r.status(), 200);
    let rolled = r.json::<Value>().await.expect("applied")["version"].as_i64().unwrap();
    let one = get(&s.proxy, &format!("/api/v1/config/versions/{rolled}")).await;
    assert_eq!(one["server_comment"], json!({"kind": "rollback", "params": {"version": first}}));
    assert_eq!(one["author"], json!({"kind": "session", "params": {"address": "127.0.0.1"}}));
    for id in mine {
        assert_eq!(get(&s.proxy, &format!("/api/v1/config/versions/{id}")).await["server_comment"], Value::Null, "version {id}");
    }

    // Reloads: the route, then SIGHUP.
    let on_disk = std::fs::read_to_string(&s.proxy.config_path).unwrap();
    std::fs::write(&s.proxy.config_path, on_disk.replace("\"10ms\"", "\"40ms\"")).unwrap();
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/config/reload", None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(newest(&get(&s.proxy, "/api/v1/config/versions").await), (json!("reloaded from disk"), json!({"kind": "reloaded_from_disk"}), token));
    std::fs::write(&s.proxy.config_path, on_disk.replace("\"10ms\"", "\"50ms\"")).unwrap();
    s.proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let versions = loop {
        let versions = get(&s.proxy, "/api/v1/config/versions").await;
        if versions[0]["actor"] == "signal:SIGHUP" {
            break versions;
        }
        assert!(Instant::now() < deadline, "SIGHUP recorded no version: {versions}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(newest(&versions), (json!("reloaded from disk"), json!({"kind": "reloaded_from_disk"}), json!({"kind": "sighup"})));

    let spec = get(&s.proxy, "/api/v1/openapi.json").await;
    let schemas = &spec["components"]["schemas"];
    assert!(schemas["ServerComment"].is_object() && schemas["Author"].is_object(), "documented");
    let meta = &schemas["ConfigVersionMeta"]["properties"];
    assert!(meta["server_comment"].is_object() && meta["author"].is_object(), "{meta}");
}

/// The audit log as the admin UI's page reads it: entries filtered by a kind of action
/// (`keys.*`) and by actor (a credential at any address, or one as recorded), paged by id, each
/// with its author and, for a config change, its version's comment as a kind. No token in it.
#[tokio::test(flavor = "multi_thread")]
async fn audit_log_filters_by_kind_of_action_and_by_actor_and_names_authors() {
    let s = setup(&["AIzaA", "AIzaB"]).await;
    let first = get(&s.proxy, "/api/v1/config/versions").await[0]["id"].as_i64().unwrap();
    let fp = get(&s.proxy, "/api/v1/keys").await["keys"][0]["fingerprint"].as_str().unwrap().to_owned();

    // By the admin token: a key disabled and enabled again, a client created.
    for op in ["disable", "enable"] {
        let (st, v) = call(&s.proxy, Method::POST, &format!("/api/v1/keys/{fp}/{op}"), None).await;
        assert_eq!(st, 200, "{op}: {v}");
    }
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/clients", Some(json!({"name": "dave"}))).await;
    assert_eq!(st, 201, "{v}");
    let dave = v["token"].as_str().unwrap().to_owned();
    // By a login session: the client's limits, then a rollback.
    let login = client().post(s.proxy.admin_url("/api/v1/auth/login")).json(&json!({"token": ADMIN_TOKEN})).send().await.expect("login");
    let session = login.json::<Value>().await.expect("session")["token"].as_str().expect("a session token").to_owned();
    let r = client().patch(s.proxy.admin_url("/api/v1/clients/dave")).bearer_auth(&session).json(&json!({"rpm": 5})).send().await.expect("patch");
    assert_eq!(r.status(), 200);
    let r = client().post(s.proxy.admin_url(&format!("/api/v1/config/versions/{first}/rollback"))).bearer_auth(&session).send().await.expect("rollback");
    assert_eq!(r.status(), 200);

    // Every action is recorded before its answer goes out: no waiting, and in the order done.
    let actions = |v: &Value| v.as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let all = get(&s.proxy, "/api/v1/audit").await;
    assert_eq!(actions(&all), ["config.replace", "clients.update", "clients.create", "keys.enable", "keys.disable"]);
    assert!(!all.to_string().contains(&dave) && !all.to_string().contains(ADMIN_TOKEN) && !all.to_string().contains(&session), "no token: {all}");

    let token = json!({"kind": "token", "params": {"address": "127.0.0.1"}});
    let by_session = json!({"kind": "session", "params": {"address": "127.0.0.1"}});
    let keys = get(&s.proxy, "/api/v1/audit?action=keys.*").await;
    assert_eq!(actions(&keys), ["keys.enable", "keys.disable"]);
    assert_eq!((&keys[1]["actor"], &keys[1]["author"], &keys[1]["target"]), (&json!("token@127.0.0.1"), &token, &json!(format!("key-{fp}"))));
    assert_eq!((&keys[1]["detail"], &keys[1]["server_comment"]), (&json!({"fingerprint": fp}), &Value::Null));
    let clients = get(&s.proxy, "/api/v1/audit?action=clients.*").await;
    assert_eq!(actions(&clients), ["clients.update", "clients.create"]);
    assert_eq!((&clients[1]["author"], &clients[1]["server_comment"]), (&token, &json!({"kind": "client_created", "params": {"client": "dave"}})));
    assert_eq!(clients[1]["detail"]["comment"], "client dave created");
    assert_eq!(actions(&get(&s.proxy, "/api/v1/audit?action=clients.create").await), ["clients.create"]);

    let sessions = get(&s.proxy, "/api/v1/audit?actor=session").await;
    assert_eq!(actions(&sessions), ["config.replace", "clients.update"]);
    assert_eq!((&sessions[0]["author"], &sessions[0]["server_comment"]), (&by_session, &json!({"kind": "rollback", "params": {"version": first}})));
    assert_eq!(get(&s.proxy, "/api/v1/audit?actor=session@127.0.0.1").await, sessions);
    assert_eq!(actions(&get(&s.proxy, "/api/v1/audit?actor=token").await), ["clients.create", "keys.enable", "keys.disable"]);
    assert_eq!(actions(&get(&s.proxy, "/api/v1/audit?actor=token&action=clients.*").await), ["clients.create"]);
    assert_eq!(get(&s.proxy, "/api/v1/audit?actor=session@10.9.8.7").await, json!([]));
    assert_eq!(get(&s.proxy, "/api/v1/audit?actor=signal:SIGHUP").await, json!([]));

    // Pages: newest first, the next one older than the last id seen, together the whole log.
    let page1 = get(&s.proxy, "/api/v1/audit?limit=2").await;
    let last = page1[1]["id"].as_i64().unwrap();
    let page2 = get(&s.proxy, &format!("/api/v1/audit?limit=2&before_id={last}")).await;
    let page3 = get(&s.proxy, &format!("/api/v1/audit?limit=2&before_id={}", page2[1]["id"].as_i64().unwrap())).await;
    let pages: Vec<Value> = [page1, page2, page3].iter().flat_map(|p| p.as_array().unwrap().clone()).collect();
    assert_eq!(Value::Array(pages), all);

    let spec = get(&s.proxy, "/api/v1/openapi.json").await;
    let row = &spec["components"]["schemas"]["AuditRow"]["properties"];
    assert!(row["author"].is_object() && row["server_comment"].is_object(), "{row}");
    let params: Vec<&str> = spec["paths"]["/api/v1/audit"]["get"]["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(params.contains(&"actor") && params.contains(&"action"), "{params:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_routes_add_import_validate_enable_disable_reset_delete() {
    let s = setup(&["AIzaA"]).await;
    let good = key39('G');
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/keys", Some(json!({"key": good, "name": "added-one"}))).await;
    assert_eq!(st, 201, "{v}");
    let fp_good = v["added"][0]["fingerprint"].as_str().unwrap().to_owned();
    let (st, _) = call(&s.proxy, Method::POST, "/api/v1/keys", Some(json!({"key": good}))).await;
    assert_eq!(st, 409, "the same key twice");

    // Bulk import from messy text: keys in quotes, lines, JSON; duplicates; junk.
    let (k1, k2, k3) = (key39('x'), key39('y'), key39('z'));
    let messy = format!("GEMINI_KEY={k1}\n# notes\n\"{k2}\", '{k1}'\n{{\"api_key\": \"{k3}\"}} AIzaTooShort and {good}\n");
    let (st, preview) = call(&s.proxy, Method::POST, "/api/v1/keys/import", Some(json!({"text": messy, "dry_run": true}))).await;
    assert_eq!(st, 200);
    assert_eq!(preview["added"].as_array().unwrap().len(), 3, "{preview}");
    assert!(preview["version"].is_null());
    assert_eq!(get(&s.proxy, "/api/v1/keys").await["total"], 2, "a dry run changes nothing");
    let (_, done) = call(&s.proxy, Method::POST, "/api/v1/keys/import", Some(json!({"text": messy}))).await;
    assert_eq!(done["added"].as_array().unwrap().len(), 3);
    let reasons: Vec<&str> = done["skipped"].as_array().unwrap().iter().map(|x| x["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, vec!["duplicate_in_text", "already_in_pool", "malformed"]);
    let near = &done["skipped"][2];
    assert_eq!(near["length"], "AIzaTooShort".len());
    assert!(!done.to_string().contains("AIzaTooShort"), "a near-key is not echoed: {done}");
    let list = get(&s.proxy, "/api/v1/keys").await;
    assert_eq!(list["total"], 5);
    assert!(!list.to_string().contains(&k1), "the list shows no secrets");

    // Live validation disables what the upstream refuses.
    s.mock.set_key(&k2, KeyMode::Invalid.into());
    let (st, checked) = call(&s.proxy, Method::POST, "/api/v1/keys/validate", Some(json!({}))).await;
    assert_eq!(st, 200);
    let results: Vec<(&str, &str)> = checked.as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap(), c["result"].as_str().unwrap())).collect();
    assert_eq!(results.len(), 5);
    assert_eq!(results.iter().filter(|(_, r)| *r == "invalid_key").count(), 1, "{results:?}");
    let list = get(&s.proxy, "/api/v1/keys?state=disabled").await;
    assert_eq!(list["keys"][0]["disabled"]["reason"], "invalid_key");

    // Manual disable and enable, reset, delete.
    let (st, v) = call(&s.proxy, Method::POST, &format!("/api/v1/keys/{fp_good}/disable"), None).await;
    assert_eq!((st, v["state"].as_str()), (StatusCode::OK, Some("disabled")));
    let filtered = get(&s.proxy, &format!("/api/v1/keys?q={fp_good}")).await;
    assert_eq!(filtered["keys"][0]["disabled"]["reason"], "manual");
    let (st, v) = call(&s.proxy, Method::POST, &format!("/api/v1/keys/{fp_good}/enable"), None).await;
    assert_eq!((st, v["state"].as_str()), (StatusCode::OK, Some("healthy")));
    let (st, _) = call(&s.proxy, Method::POST, &format!("/api/v1/keys/{fp_good}/reset"), None).await;
    assert_eq!(st, 200);
    let (st, v) = call(&s.proxy, Method::DELETE, &format!("/api/v1/keys/{fp_good}"), None).await;
    assert_eq!((st, v["removed"].as_u64()), (StatusCode::OK, Some(1)));
    assert_eq!(get(&s.proxy, "/api/v1/keys").await["total"], 4);
    let (st, _) = call(&s.proxy, Method::POST, "/api/v1/keys/ffffffffffff/enable", None).await;
    assert_eq!(st, 404);
}

/// Google echoes the key in some messages ("Consumer 'api_key:AIza…' has been suspended", as the
/// mock does): wherever the proxy keeps or shows such a message, the key is replaced by its
/// fingerprint, and it reaches no log and no file.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_echoed_by_the_upstream_is_redacted_everywhere() {
    let key = key39('S');
    // No probing during the test: the key stays as the request left it.
    let s = setup_with(&[&key], |t| t.replace("probe_interval = \"1s\"", "probe_interval = \"1h\"")).await;
    s.mock.set_key(&key, KeyMode::Suspended.into());
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 503);
    let (st, checked) = call(&s.proxy, Method::POST, "/api/v1/keys/validate", Some(json!({}))).await;
    assert_eq!(st, 200, "{checked}");
    assert_eq!(keys_seen(&s.mock, "gemini-2.5-flash"), [key.clone(), key.clone()], "the mock saw the key, on the request and the check");

    let secret_part = &key[4..]; // the 35 characters after `AIza`
    let list = get(&s.proxy, "/api/v1/keys").await;
    let shown = &list["keys"][0];
    let marker = format!("[redacted key …{}]", shown["fingerprint"].as_str().unwrap());
    for (what, message) in
        [("last error", &shown["last_error"]["message"]), ("disabled", &shown["disabled"]["message"]), ("validation", &checked[0]["message"])]
    {
        let message = message.as_str().unwrap_or_default();
        assert!(message.contains(&marker) && message.contains("suspended"), "{what}: {message}");
    }
    let rows = s.proxy.wait_for_request_rows(1).await;
    assert_eq!(rows.len(), 1);
    let texts = [
        ("keys view", list.to_string()),
        ("validation", checked.to_string()),
        ("request log", serde_json::to_string(&rows).unwrap()),
        ("access log", s.proxy.stdout()),
        ("stderr", s.proxy.stderr()),
    ];
    for (what, text) in texts {
        assert!(!text.contains(secret_part), "{what}: {text}");
    }
    // The state store keeps the disabled key's message (written at the latest when stopping).
    // (Config versions hold the keys, like the config file itself.)
    let db = s.proxy.state_db();
    let _dir = s.proxy.stop();
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let saved: String = conn.query_row("SELECT disabled FROM key_state", [], |r| r.get(0)).unwrap();
    assert!(saved.contains(&marker) && !saved.contains(secret_part), "{saved}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_routes_create_use_update_revoke() {
    let s = setup(&["AIzaA"]).await;
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/clients", Some(json!({"name": "carol"}))).await;
    assert_eq!(st, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    assert!(!std::fs::read_to_string(&s.proxy.config_path).unwrap().contains(&token), "only the hash is stored");
    let r = generate_as(&s.proxy, &token, "gemini-2.5-flash").await;
    assert_eq!(r.status(), 200, "the new token works at once");
    let names: Vec<String> = get(&s.proxy, "/api/v1/clients").await.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, vec!["alice", "bob", "carol"]);
    let (st, _) = call(&s.proxy, Method::POST, "/api/v1/clients", Some(json!({"name": "carol"}))).await;
    assert_eq!(st, 409);
    let (st, _) = call(&s.proxy, Method::PATCH, "/api/v1/clients/carol", Some(json!({"pools": ["nope"]}))).await;
    assert_eq!(st, 422, "a client cannot name a missing pool");
    let (st, v) = call(&s.proxy, Method::PATCH, "/api/v1/clients/carol", Some(json!({"rmp": 100}))).await;
    assert_eq!(st, 422, "a typo is refused, not taken as an empty change: {v}");
    assert!(v.to_string().contains("rmp"), "{v}");
    let (st, _) = call(&s.proxy, Method::PATCH, "/api/v1/clients/carol", Some(json!({"pools": ["default"], "rpm": 100}))).await;
    assert_eq!(st, 200);
    let (st, _) = call(&s.proxy, Method::DELETE, "/api/v1/clients/carol", None).await;
    assert_eq!(st, 200);
    let r = generate_as(&s.proxy, &token, "gemini-2.5-flash").await;
    assert_eq!(r.status(), 401, "a revoked token stops working at once");
    let (st, _) = call(&s.proxy, Method::DELETE, "/api/v1/clients/carol", None).await;
    assert_eq!(st, 404);
}

/// Requests and requests in flight are counted only for clients whose limits need them: the
/// others say `null` (not counted), not a 0 that reads as "idle".
#[tokio::test(flavor = "multi_thread")]
async fn client_usage_says_what_is_not_counted() {
    // alice has no limit; bob has an rpm limit (so both counts are kept for him).
    let s = setup_with(&["AIzaA"], |t| t.replacen(&format!("token = \"{TOKEN_BOB}\"\n"), &format!("token = \"{TOKEN_BOB}\"\nrpm = 100\n"), 1)).await;
    for token in [TOKEN, TOKEN_BOB, TOKEN_BOB] {
        assert_eq!(generate_as(&s.proxy, token, "gemini-2.5-flash").await.status(), 200);
    }
    // A request leaves the in-flight count when its exchange ends, which can be just after the
    // client has read the whole answer: wait for bob's last one to end.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (alice, bob) = loop {
        let clients = get(&s.proxy, "/api/v1/clients").await;
        let usage = |name: &str| clients.as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["usage"].clone();
        let (alice, bob) = (usage("alice"), usage("bob"));
        if bob["inflight"] != json!(1) || Instant::now() > deadline {
            break (alice, bob);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((&alice["requests_last_minute"], &alice["inflight"]), (&Value::Null, &Value::Null), "{alice}");
    assert!(alice["tokens_today"].as_u64().unwrap() > 0, "tokens are counted for every client: {alice}");
    assert_eq!((&bob["requests_last_minute"], &bob["inflight"]), (&json!(2), &json!(0)), "{bob}");
    // The API document says why.
    let spec = get(&s.proxy, "/api/v1/openapi.json").await;
    let doc = spec["components"]["schemas"]["ClientUsage"]["properties"]["requests_last_minute"]["description"].as_str().unwrap_or_default().to_owned();
    assert!(doc.contains("not counted") && doc.contains("rpm"), "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_request_log_and_readiness() {
    let s = setup(&["AIzaA", "AIzaB"]).await;
    s.mock.set_key("AIzaB", KeyMode::rate_limited("30s").into());
    for _ in 0..4 {
        assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
    }
    assert_eq!(generate(&s.proxy, "no-such-model").await.status(), 404);
    // No token: a 401.
    client().get(s.proxy.url("/v1beta/models")).send().await.unwrap();
    // Records reach SQLite within a flush interval.
    let deadline = Instant::now() + Duration::from_secs(5);
    let rows = loop {
        let rows = get(&s.proxy, "/api/v1/requests").await;
        if rows.as_array().unwrap().len() >= 6 {
            break rows;
        }
        assert!(Instant::now() < deadline, "request log incomplete: {rows}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Newest first: a record is queued when its exchange ends, which for the 404 may be just
    // after the client, already answered, sent the next request; so the last two may swap.
    let newest: Vec<&Value> = rows.as_array().unwrap()[..2].iter().map(|r| &r["status"]).collect();
    assert!(newest.contains(&&json!(401)) && newest.contains(&&json!(404)), "{newest:?}");
    let only_404 = get(&s.proxy, "/api/v1/requests?status=404").await;
    assert_eq!(only_404.as_array().unwrap().len(), 1);
    assert_eq!(only_404[0]["model"], "no-such-model");
    let client_errors = get(&s.proxy, "/api/v1/requests?status=4xx&client=alice").await;
    assert_eq!(client_errors.as_array().unwrap().len(), 1);
    let keys = get(&s.proxy, "/api/v1/keys").await;
    let fp_a = keys["keys"].as_array().unwrap().iter().find(|k| k["state"] == "healthy").unwrap()["fingerprint"].as_str().unwrap().to_owned();
    let by_key = get(&s.proxy, &format!("/api/v1/requests?key={fp_a}")).await;
    // The filter returns exactly the rows whose answer came from that key (the 401 has none).
    let expected: Vec<&Value> = rows.as_array().unwrap().iter().filter(|r| r["key_fingerprint"].as_str().is_some_and(|f| f.starts_with(&fp_a))).collect();
    assert!(expected.len() >= 4);
    assert_eq!(by_key.as_array().unwrap().iter().collect::<Vec<_>>(), expected);
    let id = rows[1]["id"].as_i64().unwrap();
    let one = get(&s.proxy, &format!("/api/v1/requests/{id}")).await;
    assert_eq!(one["id"], id);
    let retried = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["attempts"].as_array().is_some_and(|a| a.len() == 2))
        .expect("the retried request is logged with its attempts");
    assert_eq!(retried["attempts"][0]["outcome"], "rate_limited");

    let points = get(&s.proxy, "/api/v1/stats/timeseries").await;
    let total: u64 = points.as_array().unwrap().iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(total, 6);
    assert!(points[0]["latency_p50_ms"].as_f64().unwrap() > 0.0);
    let totals = get(&s.proxy, "/api/v1/stats/totals?range=today").await;
    assert_eq!(totals["requests"], 6);
    assert_eq!(totals["client_errors"], 2);
    assert!(totals["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(totals["by_model"][0]["name"], "gemini-2.5-flash");
    let flash_only = get(&s.proxy, "/api/v1/stats/totals?range=today&model=no-such-model").await;
    assert_eq!(flash_only["requests"], 1);
    let (st, _) = call(&s.proxy, Method::GET, "/api/v1/stats/totals?range=yesterday", None).await;
    assert_eq!(st, 400);
    // Extreme times are refused, not overflowed (schemathesis found these).
    for path in
        ["/api/v1/stats/totals?from=-9223372036854775808", "/api/v1/stats/timeseries?from=-9223372036854775808", "/api/v1/requests?to=9223372036854775807"]
    {
        let (st, v) = call(&s.proxy, Method::GET, path, None).await;
        assert_eq!(st, 400, "{path}: {v}");
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    }

    let ready = get(&s.proxy, "/readyz").await;
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["usable_keys"], 2);
    let spec = get(&s.proxy, "/api/v1/openapi.json").await;
    assert!(spec["paths"]["/api/v1/keys/import"]["post"].is_object());
    // What generated clients rely on: path parameters are in the path, the rest in the query…
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let (name, place) = (p["name"].as_str().unwrap(), p["in"].as_str().unwrap());
                assert_eq!(place == "path", path.contains(&format!("{{{name}}}")), "{method} {path}: parameter {name} is in {place}");
            }
        }
    }
    let keys_params = spec["paths"]["/api/v1/keys"]["get"]["parameters"].as_array().unwrap();
    assert!(keys_params.iter().any(|p| p["name"] == "state" && p["in"] == "query"), "{keys_params:?}");
    // …and nested answers are described, not bare objects.
    let schemas = &spec["components"]["schemas"];
    assert_eq!(schemas["KeyView"]["properties"]["models"]["items"]["$ref"], "#/components/schemas/ModelView");
    assert!(schemas["ModelView"]["properties"]["cooldown_kind"].is_object());
    assert!(schemas["RequestRow"]["properties"]["attempts"]["items"].is_object(), "{}", schemas["RequestRow"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_without_a_usable_key() {
    let s = setup_with(&["AIzaDEAD"], |t| t.replace("probe_interval = \"1s\"", "probe_interval = \"1h\"")).await;
    s.mock.set_key("AIzaDEAD", KeyMode::Invalid.into());
    generate(&s.proxy, "gemini-2.5-flash").await;
    let (st, v) = call(&s.proxy, Method::GET, "/readyz", None).await;
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["usable_keys"], 0);
    assert_eq!(readyz_without_credentials(&s.proxy).await, (503, json!({"ready": false})));
}

/// `/readyz` as a load balancer or an orchestrator calls it: no credential.
async fn readyz_without_credentials(p: &Proxy) -> (u16, Value) {
    let r = client().get(p.admin_url("/readyz")).send().await.expect("readyz");
    (r.status().as_u16(), r.json().await.expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_answers_without_a_secret_and_gives_details_to_the_admin_only() {
    let s = setup(&["AIzaA"]).await;
    assert_eq!(readyz_without_credentials(&s.proxy).await, (200, json!({"ready": true})), "the status and nothing else");
    let (st, v) = call(&s.proxy, Method::GET, "/readyz", None).await;
    assert_eq!((st, v), (StatusCode::OK, json!({"ready": true, "usable_keys": 1, "store_writable": true})), "details with the admin token");
    // A session (here from logging in with the token) is as good as the token.
    let login = client().post(s.proxy.admin_url("/api/v1/auth/login")).json(&json!({"token": ADMIN_TOKEN})).send().await.unwrap();
    let session = login.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let by_session = client().get(s.proxy.admin_url("/readyz")).header("cookie", format!("gp_admin_session={session}")).send().await.unwrap();
    assert_eq!(by_session.json::<Value>().await.unwrap()["usable_keys"], 1);
    // A credential that is sent and wrong is refused, as on /metrics: a stale probe fails loudly.
    let wrong = [
        ("authorization", "Bearer wrong-admin-token-0000".to_owned()),
        ("authorization", format!("Bearer {TOKEN}")),
        ("cookie", "gp_admin_session=gps_stale".to_owned()),
    ];
    for (name, value) in wrong {
        let r = client().get(s.proxy.admin_url("/readyz")).header(name, &value).send().await.unwrap();
        assert_eq!(r.status(), 401, "{name}: {value}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["status"], "UNAUTHENTICATED");
    }
    // The API document says that authentication is optional here.
    let spec = get(&s.proxy, "/api/v1/openapi.json").await;
    let security = &spec["paths"]["/readyz"]["get"]["security"];
    assert!(security.as_array().is_some_and(|a| a.contains(&json!({})) && a.contains(&json!({"bearer": []}))), "{security}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_once_the_state_database_file_is_deleted() {
    let s = setup(&["AIzaA"]).await;
    let (st, v) = call(&s.proxy, Method::GET, "/readyz", None).await;
    assert_eq!(st, 200, "{v}");
    // SQLite writes on into the deleted file without an error; the proxy must notice itself.
    std::fs::remove_file(s.proxy.state_db()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let v = loop {
        assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200, "serving goes on");
        let (st, v) = call(&s.proxy, Method::GET, "/readyz", None).await;
        if st == 503 {
            break v;
        }
        assert!(Instant::now() < deadline, "the deleted database went unnoticed: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(v["store_writable"], false, "{v}");
    assert!(v["store_error"].as_str().unwrap().contains("deleted"), "{v}");
    // The error names the file: not for everyone.
    assert_eq!(readyz_without_credentials(&s.proxy).await, (503, json!({"ready": false})));
    assert!(s.proxy.stderr().contains("state database file lost"));
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_keys_stay_disabled_and_cooldowns_survive_a_restart() {
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = config(addr, &mock.base_url(), &["AIzaLEAKED", "AIzaCOOL", "AIzaGOOD"]).replace("probe_interval = \"1s\"", "probe_interval = \"1h\"");
    mock.set_key("AIzaLEAKED", KeyMode::Leaked.into());
    mock.set_key("AIzaCOOL", KeyMode::rate_limited("300s").into());
    let p = Proxy::start_config(addr, &toml);
    for _ in 0..6 {
        assert_eq!(generate(&p, "gemini-2.5-flash").await.status(), 200);
    }
    // Key state is written within a second or so.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dir = p.stop();
    mock.set_key("AIzaLEAKED", KeyMode::Ok.into());
    mock.set_key("AIzaCOOL", KeyMode::Ok.into());
    mock.clear_requests();
    let p = Proxy::start_in(dir, addr, Some(&toml), &[], &[]);
    for _ in 0..6 {
        assert_eq!(generate(&p, "gemini-2.5-flash").await.status(), 200);
    }
    assert_eq!(keys_seen(&mock, "generateContent"), vec!["AIzaGOOD"; 6], "the leaked key stays disabled and the cooling one keeps cooling");
    let keys = get(&p, "/api/v1/keys").await;
    let states: Vec<(&str, &str)> = keys["keys"].as_array().unwrap().iter().map(|k| (k["name"].as_str().unwrap(), k["state"].as_str().unwrap())).collect();
    assert_eq!(states.iter().filter(|(_, s)| *s == "disabled").count(), 1, "{states:?}");
    assert_eq!(states.iter().filter(|(_, s)| *s == "cooling").count(), 1, "{states:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_under_streaming_load_fails_no_request_and_a_removed_key_stops_being_used() {
    let s = setup(&["AIzaKEEP", "AIzaDROP"]).await;
    let cfg = get(&s.proxy, "/api/v1/config").await;
    let text = cfg["text"].as_str().unwrap().to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..6 {
        let (url, stop) = (s.proxy.url("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client()
                    .post(&url)
                    .header("x-goog-api-key", TOKEN)
                    .header("x-mock-chunks", "4")
                    .header("x-mock-chunk-delay-ms", "30")
                    .json(&generate_body("go"))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(body) if body.matches("data: ").count() == 4 => ok += 1,
                        other => failed.push(format!("{other:?}")),
                    },
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Remove AIzaDROP: its placeholder is the second entry of the keys array.
    let start = text.find("keys = [").unwrap();
    let end = start + text[start..].find(']').unwrap();
    let first_placeholder = text[start..end].split(',').next().unwrap().trim_start_matches("keys = [").trim().to_owned();
    let edited = format!("{}keys = [{first_placeholder}]{}", &text[..start], &text[end + 1..]);
    let (st, v) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": edited}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(get(&s.proxy, "/api/v1/keys").await["total"], 1);
    let reloaded_at = s.mock.requests().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_ok = 0;
    for w in workers {
        let (ok, failed) = w.await.unwrap();
        assert!(failed.is_empty(), "requests failed across the reload: {failed:?}");
        total_ok += ok;
    }
    assert!(total_ok > 10, "the load ran ({total_ok} streams)");
    let remaining = s.mock.requests();
    assert!(remaining[..reloaded_at].iter().any(|r| r.key.as_deref() == Some("AIzaDROP")), "both keys served before the reload");
    // Up to six streams (one per worker) may have started on the old snapshot just before the
    // swap; after those, no request may use the removed key.
    let dropped_after: Vec<_> = remaining.iter().skip(reloaded_at + 6).filter(|r| r.key.as_deref() == Some("AIzaDROP")).collect();
    assert!(dropped_after.is_empty(), "the removed key was used after the reload: {} times", dropped_after.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_admin_password_ends_the_sessions_made_with_the_old_one() {
    let old = gemini_proxy::admin::auth::hash_password("old password here").unwrap();
    let s = setup_with(&["AIzaA"], |t| in_section(t, "admin", &format!("password_hash = \"{old}\""))).await;
    let c = client();
    let r = c.post(s.proxy.admin_url("/api/v1/auth/login")).json(&json!({"password": "old password here"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let session = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    assert_eq!(c.get(s.proxy.admin_url("/api/v1/keys")).bearer_auth(&session).send().await.unwrap().status(), 200);

    // The password is changed (say, because it leaked): sessions made with it end at once.
    let new = gemini_proxy::admin::auth::hash_password("new password here").unwrap();
    let text = std::fs::read_to_string(&s.proxy.config_path).unwrap().replace(&old, &new);
    std::fs::write(&s.proxy.config_path, text).unwrap();
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/config/reload", None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(c.get(s.proxy.admin_url("/api/v1/keys")).bearer_auth(&session).send().await.unwrap().status(), 401);
    let r = c.post(s.proxy.admin_url("/api/v1/auth/login")).json(&json!({"password": "old password here"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c.post(s.proxy.admin_url("/api/v1/auth/login")).json(&json!({"password": "new password here"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

const AOT_KEY: &str = "AIzaSectionKeyOfPoolAot";
const JWT_SECRET: &str = "jwt-test-secret-that-is-at-least-32-bytes";

/// The harness config rewritten in the other layouts the loader accepts: clients as an inline
/// array, a second pool `aot` whose key is a `[[pools.keys]]` section, and a `[jwt]` secret.
fn other_layouts(text: String) -> String {
    let (head, _clients) = text.split_once("\n[[clients]]").expect("the harness config has clients");
    format!(
        "clients = [{{ name = \"alice\", token = \"{TOKEN}\" }}, {{ name = \"bob\", token = \"{TOKEN_BOB}\" }}]\n{head}\n\
         [[pools]]\nname = \"aot\"\n\n[[pools.keys]]\nkey = \"{AOT_KEY}\"\nname = \"aot-one\"\n\n[jwt]\nsecret = \"{JWT_SECRET}\"\n"
    )
}

/// Sends SIGHUP and waits for the proxy to log that it rejected the file; returns its stderr.
async fn sighup_rejected(p: &Proxy) -> String {
    p.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !p.stderr().contains("SIGHUP: reload rejected") {
        assert!(Instant::now() < deadline, "SIGHUP not handled:\n{}", p.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.stderr()
}

fn on_disk(p: &Proxy) -> String {
    std::fs::read_to_string(&p.config_path).expect("read the config file")
}

async fn audit_len(p: &Proxy) -> usize {
    get(p, "/api/v1/audit").await.as_array().unwrap().len()
}

async fn key_fingerprint(p: &Proxy, name: &str) -> String {
    let keys = get(p, "/api/v1/keys").await;
    let key = keys["keys"].as_array().unwrap().iter().find(|k| k["name"] == name).unwrap_or_else(|| panic!("no key {name}: {keys}"));
    key["fingerprint"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn api_edits_keep_entries_written_in_every_layout() {
    let s = setup_with(&["AIzaA"], other_layouts).await;
    let audit_before = audit_len(&s.proxy).await;

    // A key added to a pool written with [[pools.keys]] joins the one already there.
    let added = key39('S');
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/keys", Some(json!({"key": added, "pool": "aot"}))).await;
    assert_eq!(st, 201, "{v}");
    let text = on_disk(&s.proxy);
    assert!(text.contains(AOT_KEY) && text.contains(&added) && text.matches("[[pools.keys]]").count() == 2, "{text}");
    assert_eq!(get(&s.proxy, "/api/v1/keys?pool=aot").await["total"], 2);

    // A client added to inline clients: the others keep working.
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/clients", Some(json!({"name": "carol", "rpm": 50}))).await;
    assert_eq!(st, 201, "{v}");
    let carol = v["token"].as_str().unwrap().to_owned();
    for token in [TOKEN, TOKEN_BOB, carol.as_str()] {
        assert_eq!(generate_as(&s.proxy, token, "gemini-2.5-flash").await.status(), 200, "{token}");
    }
    let text = on_disk(&s.proxy);
    assert!(!text.contains("[[clients]]") && text.contains(TOKEN) && text.contains(TOKEN_BOB) && text.contains("carol"), "{text}");
    let (st, v) = call(&s.proxy, Method::PATCH, "/api/v1/clients/alice", Some(json!({"tpm": 1000}))).await;
    assert_eq!(st, 200, "{v}");
    assert!(on_disk(&s.proxy).contains("tpm = 1000"));

    // A key written as a [[pools.keys]] section is deleted, the other stays.
    let fp = key_fingerprint(&s.proxy, "aot-one").await;
    let (st, v) = call(&s.proxy, Method::DELETE, &format!("/api/v1/keys/{fp}"), None).await;
    assert_eq!((st, v["removed"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let text = on_disk(&s.proxy);
    assert!(!text.contains(AOT_KEY) && text.contains(&added), "{text}");
    assert_eq!(get(&s.proxy, "/api/v1/keys?pool=aot").await["total"], 1);

    let (st, _) = call(&s.proxy, Method::DELETE, "/api/v1/clients/carol", None).await;
    assert_eq!(st, 200);
    assert_eq!(generate_as(&s.proxy, &carol, "gemini-2.5-flash").await.status(), 401);
    assert_eq!(generate_as(&s.proxy, TOKEN, "gemini-2.5-flash").await.status(), 200);
    assert_eq!(audit_len(&s.proxy).await, audit_before + 5, "one audit entry per change");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_and_unchanged_requests_write_and_record_nothing() {
    let s = setup_with(&["AIzaA"], other_layouts).await;
    let text = on_disk(&s.proxy);
    let versions = get(&s.proxy, "/api/v1/config/versions").await;
    let audit = get(&s.proxy, "/api/v1/audit").await;
    let refused: &[(Method, &str, Option<Value>, u16)] = &[
        (Method::DELETE, "/api/v1/clients/zzz", None, 404),
        (Method::PATCH, "/api/v1/clients/zzz", Some(json!({"rpm": 1})), 404),
        (Method::POST, "/api/v1/clients", Some(json!({"name": "alice"})), 409),
        (Method::POST, "/api/v1/keys", Some(json!({"key": key39('Q'), "pool": "nope"})), 404),
        (Method::POST, "/api/v1/keys", Some(json!({"key": AOT_KEY, "pool": "aot"})), 409),
        (Method::DELETE, "/api/v1/keys/ffffffffffff", None, 404),
        (Method::PATCH, "/api/v1/clients/bob", Some(json!({"pools": ["nope"]})), 422),
    ];
    for (method, path, body, want) in refused {
        let (st, v) = call(&s.proxy, method.clone(), path, body.clone()).await;
        assert_eq!(st.as_u16(), *want, "{method} {path}: {v}");
    }
    // Unchanged text: applied, but no new version.
    let shown = get(&s.proxy, "/api/v1/config").await["text"].as_str().unwrap().to_owned();
    let (st, v) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": shown}))).await;
    assert_eq!((st, &v["changed"], &v["version"]), (StatusCode::OK, &json!(false), &versions[0]["id"]), "{v}");
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/config/reload", None).await;
    assert_eq!((st, &v["changed"]), (StatusCode::OK, &json!(false)), "{v}");
    for n in 1..=2 {
        s.proxy.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.proxy.stderr().matches("SIGHUP: configuration reloaded").count() < n {
            assert!(Instant::now() < deadline, "SIGHUP {n} not handled:\n{}", s.proxy.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(on_disk(&s.proxy), text, "the file is untouched");
    assert_eq!(get(&s.proxy, "/api/v1/config/versions").await, versions);
    assert_eq!(get(&s.proxy, "/api/v1/audit").await, audit);
    assert_eq!(generate_as(&s.proxy, TOKEN_BOB, "gemini-2.5-flash").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_in_every_layout_stay_out_of_config_answers_and_come_back_on_put() {
    let s = setup_with(&["AIzaPlainKeyOfPoolDefault"], other_layouts).await;
    let secrets = ["AIzaPlainKeyOfPoolDefault", AOT_KEY, TOKEN, TOKEN_BOB, ADMIN_TOKEN, JWT_SECRET];
    let hidden = |what: &str, text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} shows {secret}: {text}");
        }
    };
    let shown = get(&s.proxy, "/api/v1/config").await["text"].as_str().unwrap().to_owned();
    hidden("GET /config", &shown);
    let first = get(&s.proxy, "/api/v1/config/versions").await[0]["id"].as_i64().unwrap();
    hidden("the version", get(&s.proxy, &format!("/api/v1/config/versions/{first}")).await["text"].as_str().unwrap());

    // The placeholders go back as the secrets they stand for.
    let (st, v) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": format!("# edited\n{shown}")}))).await;
    assert_eq!((st, &v["changed"]), (StatusCode::OK, &json!(true)), "{v}");
    let text = on_disk(&s.proxy);
    assert!(text.starts_with("# edited\n") && secrets.iter().all(|x| text.contains(x)), "{text}");
    assert_eq!(generate_as(&s.proxy, TOKEN_BOB, "gemini-2.5-flash").await.status(), 200);
    let version = v["version"].as_i64().unwrap();
    hidden("the new version", get(&s.proxy, &format!("/api/v1/config/versions/{version}")).await["text"].as_str().unwrap());
    // A diff that touches secret lines shows placeholders only.
    let (st, v) = call(&s.proxy, Method::DELETE, &format!("/api/v1/keys/{}", key_fingerprint(&s.proxy, "aot-one").await), None).await;
    assert_eq!(st, 200, "{v}");
    let diff = get(&s.proxy, &format!("/api/v1/config/diff?from={first}")).await["diff"].as_str().unwrap().to_owned();
    assert!(diff.contains("-key = \"redacted:key:"), "{diff}");
    hidden("the diff", &diff);
}

/// Comments are shown as written, so a commented-out key or token line would show its secret:
/// key-shaped words and the values of secret fields in comments are redacted too, and a PUT of
/// the shown text writes the comments back as they were, never the placeholders.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_in_comments_stay_out_of_config_answers_and_the_file_keeps_them() {
    let old_key = key39('C');
    let old_token = "gp-commented-out-token";
    let s = setup_with(&["AIzaA"], |t| {
        let t = t.replacen("keys = [", &format!("# keys = [\"{old_key}\"]  retired on Monday\nkeys = ["), 1);
        t.replacen("[[clients]]\nname = \"bob\"", &format!("# token = \"{old_token}\"\n[[clients]]\nname = \"bob\""), 1)
    })
    .await;
    let written = on_disk(&s.proxy);
    let hidden = |what: &str, text: &str| {
        for secret in [old_key.as_str(), old_token] {
            assert!(!text.contains(secret), "{what} shows {secret}: {text}");
        }
    };
    let shown = get(&s.proxy, "/api/v1/config").await["text"].as_str().unwrap().to_owned();
    hidden("GET /config", &shown);
    assert!(shown.contains("# keys = [\"redacted:key:") && shown.contains("retired on Monday"), "{shown}");
    let first = get(&s.proxy, "/api/v1/config/versions").await[0]["id"].as_i64().unwrap();
    hidden("the version", get(&s.proxy, &format!("/api/v1/config/versions/{first}")).await["text"].as_str().unwrap());

    // A round trip through the API with an edit elsewhere: the comments go back as written.
    let (st, v) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": format!("# edited\n{shown}")}))).await;
    assert_eq!((st, &v["changed"]), (StatusCode::OK, &json!(true)), "{v}");
    assert_eq!(on_disk(&s.proxy), format!("# edited\n{written}"), "only the edit is written");
    let version = v["version"].as_i64().unwrap();
    hidden("the new version", get(&s.proxy, &format!("/api/v1/config/versions/{version}")).await["text"].as_str().unwrap());
    // An edit of a commented-out line itself.
    let edited = shown.replace("retired on Monday", "retired on Tuesday");
    let (st, v) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": edited}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let text = on_disk(&s.proxy);
    assert!(text.contains(&format!("# keys = [\"{old_key}\"]  retired on Tuesday")) && !text.contains("redacted:"), "{text}");
    let diff = get(&s.proxy, &format!("/api/v1/config/diff?from={first}")).await["diff"].as_str().unwrap().to_owned();
    assert!(diff.contains("+# keys = [\"redacted:key:"), "{diff}");
    hidden("the diff", &diff);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_problems_never_quote_a_key() {
    let s = setup(&["AIzaA"]).await;
    let typo = "AIzaSyTypoPastedWhereAListBelongs0123456";
    let broken = on_disk(&s.proxy).replace("keys = [\"AIzaA\"]", &format!("keys = \"{typo}\""));
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/config/validate", Some(json!({"text": broken}))).await;
    assert_eq!((st, &v["valid"]), (StatusCode::OK, &json!(false)), "{v}");
    assert!(!v.to_string().contains(typo) && v["problems"][0]["line"].is_number(), "{v}");
    let (st, v) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": broken}))).await;
    assert_eq!(st, 422, "{v}");
    assert!(!v.to_string().contains(typo), "{v}");
    // The same mistake in the file, reloaded by the API and by SIGHUP.
    std::fs::write(&s.proxy.config_path, &broken).unwrap();
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/config/reload", None).await;
    assert_eq!(st, 422, "{v}");
    assert!(!v.to_string().contains(typo), "{v}");
    let logged = sighup_rejected(&s.proxy).await;
    assert!(!logged.contains(typo), "{logged}");
    // And `gemini-proxy check`.
    let out = std::process::Command::new(binary()).args(["check", "-c"]).arg(&s.proxy.config_path).output().unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && printed.contains("expected a sequence") && !printed.contains(typo), "{printed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_jwt_secret_is_reported_at_its_line_on_every_path() {
    let s = setup(&["AIzaA"]).await;
    let short = "jwt-secret-too-short";
    let broken = format!("{}\n[jwt]\nsecret = \"{short}\"\n", on_disk(&s.proxy));
    let line = broken.lines().position(|l| l.starts_with("secret = ")).unwrap() + 1;
    let at_secret = |problems: &Value| {
        let p = problems.as_array().unwrap().iter().find(|p| p["message"].as_str().unwrap().starts_with("jwt.secret: ")).expect("a jwt.secret problem");
        (p["line"].as_u64(), p["column"].as_u64())
    };
    let want = (Some(line as u64), Some(10));
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/config/validate", Some(json!({"text": broken}))).await;
    assert_eq!((st, &v["valid"]), (StatusCode::OK, &json!(false)), "{v}");
    assert_eq!(at_secret(&v["problems"]), want, "{v}");
    assert!(!v.to_string().contains(short), "{v}");
    let (st, v) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": broken}))).await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(at_secret(&v["error"]["problems"]), want, "{v}");
    // The same file reloaded by the API and by SIGHUP (whose log lists the problems).
    std::fs::write(&s.proxy.config_path, &broken).unwrap();
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/config/reload", None).await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(at_secret(&v["error"]["problems"]), want, "{v}");
    let logged = sighup_rejected(&s.proxy).await;
    let placed = format!("line {line}, column 10: jwt.secret: the HS256 secret must be at least 32 bytes");
    assert!(logged.contains(&placed) && !logged.contains(short), "{logged}");
    // `gemini-proxy check`, and a start with this file.
    let data = tempfile::tempdir().unwrap();
    for args in [&["check", "-c"][..], &["run", "--data-dir", data.path().to_str().unwrap(), "-c"]] {
        let out = std::process::Command::new(binary()).args(args).arg(&s.proxy.config_path).output().unwrap();
        let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.code() == Some(1) && printed.contains(&placed) && !printed.contains(short), "{args:?}: {printed}");
    }
}

/// The editor marks problems by their line: a placeholder that stands for no secret (made up,
/// or mistyped) is one, in PUT's 422 and in config/validate, and the file is left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_placeholder_is_refused_at_its_line_and_column() {
    let s = setup(&["AIzaA"]).await;
    let shown = get(&s.proxy, "/api/v1/config").await["text"].as_str().unwrap().to_owned();
    let bogus = "redacted:key:000000000000";
    let edited = shown.replacen("keys = [", &format!("keys = [\"{bogus}\", "), 1);
    let line = edited.lines().position(|l| l.contains(bogus)).unwrap() + 1;
    let column = edited.lines().nth(line - 1).unwrap().find(bogus).unwrap(); // the opening quote, 1-based
    let before = on_disk(&s.proxy);
    let (st, v) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": edited}))).await;
    assert_eq!(st, 422, "{v}");
    let p = &v["error"]["problems"][0];
    assert_eq!((p["line"].as_u64(), p["column"].as_u64()), (Some(line as u64), Some(column as u64)), "{v}");
    assert!(p["message"].as_str().unwrap().contains("matches no secret of the running configuration") && !v.to_string().contains(bogus), "{v}");
    assert_eq!(on_disk(&s.proxy), before, "nothing written");
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/config/validate", Some(json!({"text": edited}))).await;
    assert_eq!((st, &v["valid"]), (StatusCode::OK, &json!(false)), "{v}");
    assert_eq!((v["problems"][0]["line"].as_u64(), v["problems"][0]["column"].as_u64()), (Some(line as u64), Some(column as u64)), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_after_an_unreloaded_file_change_is_refused() {
    let s = setup(&["AIzaA"]).await;
    let versions = get(&s.proxy, "/api/v1/config/versions").await;
    let operator = on_disk(&s.proxy).replace("probe_interval = \"1s\"", "probe_interval = \"2s\"");
    std::fs::write(&s.proxy.config_path, &operator).unwrap();
    let key = key39('K');
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/keys", Some(json!({"key": key}))).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("edited outside the API"), "{v}");
    let shown = get(&s.proxy, "/api/v1/config").await["text"].as_str().unwrap().to_owned();
    let (st, v) = call(&s.proxy, Method::PUT, "/api/v1/config", Some(json!({"text": shown.replace("threads = 2", "threads = 3")}))).await;
    assert_eq!(st, 409, "{v}");
    let (st, _) = call(&s.proxy, Method::DELETE, "/api/v1/clients/bob", None).await;
    assert_eq!(st, 409);
    assert_eq!(on_disk(&s.proxy), operator, "the operator's edit is kept");
    assert_eq!(get(&s.proxy, "/api/v1/config/versions").await, versions, "nothing recorded");

    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/config/reload", None).await;
    assert_eq!((st, &v["changed"]), (StatusCode::OK, &json!(true)), "{v}");
    let (st, v) = call(&s.proxy, Method::POST, "/api/v1/keys", Some(json!({"key": key}))).await;
    assert_eq!(st, 201, "{v}");
    let text = on_disk(&s.proxy);
    assert!(text.contains("probe_interval = \"2s\"") && text.contains(&key), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlinked_config_is_written_through_the_link_with_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("real");
    std::fs::create_dir(&real_dir).unwrap();
    let real = real_dir.join("gemini.toml");
    std::fs::write(&real, "").unwrap();
    // Group-writable: kept exactly, though the umask would narrow a new file's mode.
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o660)).unwrap();
    std::os::unix::fs::symlink("real/gemini.toml", dir.path().join("proxy.toml")).unwrap();
    // The harness writes the config to `proxy.toml`, through the link.
    let p = Proxy::start_in(dir, addr, Some(&config(addr, &mock.base_url(), &["AIzaA"])), &[], &[]);
    let key = key39('L');
    let (st, v) = call(&p, Method::POST, "/api/v1/keys", Some(json!({"key": key}))).await;
    assert_eq!(st, 201, "{v}");
    let link = std::fs::symlink_metadata(&p.config_path).unwrap();
    assert!(link.file_type().is_symlink(), "the link stays a link");
    assert!(std::fs::read_to_string(&real).unwrap().contains(&key), "the real file is written");
    assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o660);
    let strays: Vec<_> = std::fs::read_dir(&real_dir).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n != "gemini.toml").collect();
    assert!(strays.is_empty(), "temp files left: {strays:?}");
    assert_eq!(get(&p, "/api/v1/keys").await["total"], 2);
}
