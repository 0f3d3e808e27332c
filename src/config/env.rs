//! The zero-config path: with no config file, GEMINI_API_KEYS and GEMINI_PROXY_TOKENS (and
//! optionally GEMINI_PROXY_LISTEN, GEMINI_PROXY_UPSTREAM, GEMINI_PROXY_ADMIN_LISTEN) describe a
//! one-pool proxy. The result is TOML text, so it goes through exactly the same validation as a
//! file.

use super::validate::EnvLookup;

fn split_list(v: &str) -> Vec<String> {
    v.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

pub(super) fn toml_from_env(env: &dyn EnvLookup) -> Result<String, String> {
    let keys = env.var("GEMINI_API_KEYS").map(|v| split_list(&v)).unwrap_or_default();
    if keys.is_empty() {
        return Err("no upstream keys: set GEMINI_API_KEYS=key1,key2 (and GEMINI_PROXY_TOKENS=token for clients), or write a config file".into());
    }
    let tokens = env.var("GEMINI_PROXY_TOKENS").map(|v| split_list(&v)).unwrap_or_default();

    let mut doc = toml::Table::new();
    let mut server = toml::Table::new();
    if let Some(listen) = env.var("GEMINI_PROXY_LISTEN") {
        let addrs = split_list(&listen);
        server.insert("listen".into(), toml::Value::Array(addrs.into_iter().map(toml::Value::String).collect()));
    }
    doc.insert("server".into(), toml::Value::Table(server));
    if let Some(up) = env.var("GEMINI_PROXY_UPSTREAM") {
        let mut t = toml::Table::new();
        t.insert("base_url".into(), toml::Value::String(up));
        doc.insert("upstream".into(), toml::Value::Table(t));
    }
    // The admin listener's default port (9090) is Prometheus's own: it must be movable, or
    // switched off, without writing a file.
    if let Some(admin_listen) = env.var("GEMINI_PROXY_ADMIN_LISTEN") {
        let mut t = toml::Table::new();
        match admin_listen.trim() {
            "off" | "none" | "" => t.insert("enabled".into(), toml::Value::Boolean(false)),
            addr => t.insert("listen".into(), toml::Value::String(addr.to_owned())),
        };
        doc.insert("admin".into(), toml::Value::Table(t));
    }
    let mut pool = toml::Table::new();
    pool.insert("name".into(), toml::Value::String("default".into()));
    pool.insert("keys".into(), toml::Value::Array(keys.into_iter().map(toml::Value::String).collect()));
    doc.insert("pools".into(), toml::Value::Array(vec![toml::Value::Table(pool)]));
    let clients = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let mut c = toml::Table::new();
            c.insert("name".into(), toml::Value::String(format!("client-{}", i + 1)));
            c.insert("token".into(), toml::Value::String(t));
            toml::Value::Table(c)
        })
        .collect();
    doc.insert("clients".into(), toml::Value::Array(clients));
    toml::to_string(&doc).map_err(|e| format!("cannot build a configuration from the environment: {e}"))
}
