//! Wiring: builds the Pingora server with the data-plane service, the admin server and the
//! background services, from a loaded configuration. Nothing here runs per request.

use crate::admin::auth::{hash_password, random_token, AdminAuth, GENERATED_HASH_SETTING};
use crate::admin::{AdminServer, AdminState};
use crate::background::{Drain, Maintenance};
use crate::config::Loaded;
use crate::control::bindings;
use crate::control::key_sync::{self, KeySync};
use crate::control::reload::SighupReloader;
use crate::control::ConfigManager;
use crate::gateway::{AccessFilter, Gateway, Runtime, Shared};
use crate::pool::store::{MemoryStore, StateStore};
use crate::store::comment::{Author, ServerComment};
use crate::store::{Retention, Store};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::Metrics;
use anyhow::Context;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Starts the proxy and serves until a signal stops it. Only returns on a startup error.
pub fn run(loaded: Loaded, data_dir: &Path) -> anyhow::Result<()> {
    let Loaded { settings, source, text } = loaded;
    crate::telemetry::init_logging(&settings.log);
    raise_fd_limit();

    // Bind-check first, for a clear message instead of a failure deep inside Pingora.
    for addr in settings.server.listen.iter().chain(settings.tls.iter().flat_map(|t| t.listen.iter())) {
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    }
    if settings.admin.enabled {
        let a = settings.admin.listen;
        std::net::TcpListener::bind(a).with_context(|| format!("cannot listen on {a} for the admin API (set [admin] listen, or enabled = false)"))?;
    }
    if settings.clients.is_empty() {
        tracing::warn!("no client tokens are configured: any local process can use this proxy (allowed because it only listens on loopback)");
    }
    if settings.key_count() == 0 {
        tracing::warn!("the key pool is empty: every request will be answered 503 until keys are added");
    }

    let st = &settings.state;
    let retention = Retention {
        request_log_days: st.request_log_days,
        request_log_rows: st.request_log_rows,
        usage_days: st.usage_days,
        config_versions: st.config_versions,
        request_log_ok_per_second: st.request_log_ok_per_second,
    };
    let db = Arc::new(Store::open(data_dir, retention).with_context(|| format!("cannot open the state store in {}", data_dir.display()))?);
    let db_writer = db.start_writer(Duration::from_millis(250), 65_536).context("cannot start the state store's writer")?;

    let metrics = Arc::new(Metrics::new());
    let forward_to = db_writer.clone();
    let access_log = AccessLog::start(settings.log.access_log, metrics.clone(), Some(Box::new(move |r| forward_to.request_owned(r))));
    let key_states: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let runtime = Runtime::build(settings.clone(), &*key_states, None);
    let tls = match &settings.tls {
        Some(t) if !t.listen.is_empty() => Some(tls_front(t, data_dir)?),
        _ => None,
    };
    let upstream_roots = match &settings.upstream.ca_file {
        Some(f) => Some(crate::upstream::roots_with(f, &data_dir.join("tls")).with_context(|| format!("cannot prepare the upstream roots with {f}"))?),
        None => None,
    };
    let shared = Shared::new(runtime, key_states, access_log.clone(), tls, upstream_roots);
    seed_client_days(&shared, &db);
    let restored = key_sync::restore(&shared, &db);
    if restored > 0 {
        tracing::info!(keys = restored, "restored saved key state (disabled keys and cooldowns)");
    }
    let bound = bindings::restore(&shared, &db);
    tracing::info!(owned_resources = bound.owners, uploads = bound.uploads, "restored which keys own files, caches and upload sessions");

    let manager = Arc::new(ConfigManager::new(source.clone(), text.clone(), shared.clone(), Some(db.clone()), metrics.clone(), data_dir.to_owned()));
    record_startup_version(&db, &text);
    let auth = Arc::new(AdminAuth::default());
    if settings.admin.enabled {
        bootstrap_admin_password(&settings, &db, &auth)?;
    }

    let conf = ServerConf {
        threads: settings.server.threads,
        // By default one single-threaded runtime per thread instead of tokio's work-stealing
        // scheduler: a connection's task stays on its thread, and polls skip the cross-thread
        // bookkeeping (see bench/results/profile.md for what it saves).
        work_stealing: settings.server.work_stealing,
        // Pingora sleeps this long after SIGTERM before stopping its runtimes; `Drain` exits
        // earlier, once in-flight requests are done.
        grace_period_seconds: Some(settings.server.grace_period.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let mut data_plane = Service::new("gemini-proxy".to_owned(), Gateway { shared: shared.clone() });
    data_plane.set_connection_filter(Arc::new(AccessFilter { shared: shared.clone() }));
    // TLS listeners are plain TCP to Pingora: the data plane does the handshake itself, so
    // that ALPN can include acme-tls/1 and certificates can change at any time.
    // Unbuffered: the data plane reads into its own buffers in large chunks, so Pingora's 64 KiB
    // per-connection read buffer would only add a copy and memory (it is zeroed, so it costs
    // 64 KiB of RSS per open connection).
    for addr in settings.server.listen.iter().chain(settings.tls.iter().flat_map(|t| t.listen.iter())) {
        data_plane.add_listener(pingora::listeners::ListenerConfig::tcp(addr.to_string()).l4_buffer(pingora::listeners::L4BufferSettings::unbuffered()));
    }
    server.add_service(data_plane);
    if settings.admin.enabled {
        let state = AdminState {
            shared: shared.clone(),
            manager: manager.clone(),
            db: db.clone(),
            db_writer: db_writer.clone(),
            metrics,
            auth,
            access_log: access_log.clone(),
        };
        server.add_service(background_service("admin", AdminServer { state, listen: settings.admin.listen }));
    }
    if let (Some(front), Some(acme)) = (&shared.tls, settings.tls.as_ref().and_then(|t| t.acme.clone())) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        front.store.set_renewer(tx, acme.names.first().map(String::as_str).unwrap_or_default());
        let manager = crate::tls::acme::AcmeManager {
            settings: acme,
            store: front.store.clone(),
            dir: data_dir.join("tls").join("acme"),
            renew_requests: tokio::sync::Mutex::new(rx),
        };
        server.add_service(background_service("acme", manager));
    }
    server.add_service(background_service("maintenance", Maintenance { shared: shared.clone() }));
    server.add_service(background_service("key sync", KeySync { shared: shared.clone(), writer: db_writer.clone() }));
    server.add_service(background_service("sighup", SighupReloader { manager }));
    server.add_service(background_service("drain", Drain { shared: shared.clone(), access_log, db_writer, grace: settings.server.grace_period }));

    // Plain text lists, not Debug arrays (which a JSON log shows as a quoted string of quotes).
    let join = |addrs: &[std::net::SocketAddr]| addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
    let tls_listen = settings.tls.as_ref().map(|t| join(&t.listen)).filter(|l| !l.is_empty()).unwrap_or_else(|| "off".into());
    tracing::info!(
        listen = %join(&settings.server.listen),
        tls = %tls_listen,
        admin = %if settings.admin.enabled { settings.admin.listen.to_string() } else { "off".into() },
        config = %source,
        data_dir = %data_dir.display(),
        upstream = %settings.upstream.base_url,
        pools = settings.pools.len(),
        keys = settings.key_count(),
        clients = settings.clients.len(),
        threads = settings.server.threads,
        version = env!("CARGO_PKG_VERSION"),
        "gemini-proxy starting"
    );
    server.run_forever();
}

/// Loads the configured certificates and builds the TLS front of the data plane.
fn tls_front(t: &crate::config::TlsSettings, data_dir: &Path) -> anyhow::Result<crate::gateway::TlsFront> {
    let store = Arc::new(crate::tls::store::CertStore::new());
    // Nothing was served before: whether this is a change does not matter.
    let _ = store.set_configured(crate::tls::configured_entries(t, &data_dir.join("tls"))?);
    let config = crate::tls::server_config(store.clone(), t.http2);
    Ok(crate::gateway::TlsFront {
        store,
        acceptor: pingora::listeners::tls::Acceptor::from_server_config(config),
        listeners: t.listen.clone(),
        handshake_timeout: t.handshake_timeout,
    })
}

/// Restores each client's token count for today (UTC), so that a daily limit holds across a
/// restart; the per-minute usage in the state store has it.
fn seed_client_days(shared: &Shared, db: &Store) {
    let now = std::time::SystemTime::now();
    let day = crate::limits::rate::utc_day(now);
    match db.client_tokens_since(day as i64 * 86_400_000) {
        Ok(rows) => {
            for (client, tokens) in rows {
                shared.limits.seed_day(&client, day, tokens);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot restore today's token counts; daily limits restart from zero"),
    }
}

/// Records the configuration the process starts with, unless it is the latest version already.
fn record_startup_version(db: &Store, text: &str) {
    if let Err(e) = db.add_config_version_if_new(text, &Author::Startup.to_string(), &ServerComment::Startup.into()) {
        tracing::warn!(error = %e, "cannot record the start-up configuration version");
    }
}

/// With neither an admin token nor a password hash configured, the first start generates a
/// password, keeps only its hash in the state store, and prints it once.
fn bootstrap_admin_password(settings: &crate::config::Settings, db: &Store, auth: &AdminAuth) -> anyhow::Result<()> {
    let stored = db.setting(GENERATED_HASH_SETTING).context("cannot read the admin password from the state store")?;
    if let Some(h) = stored.clone() {
        *auth.generated_hash.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }
    if settings.admin.token_sha256.is_some() || settings.admin.password_hash.is_some() || stored.is_some() {
        return Ok(());
    }
    let password = random_token("")[..24].to_owned();
    let hash = hash_password(&password).map_err(|e| anyhow::anyhow!("cannot hash the generated admin password: {e}"))?;
    db.set_setting(GENERATED_HASH_SETTING, &hash).context("cannot store the admin password hash")?;
    *auth.generated_hash.lock().unwrap_or_else(|p| p.into_inner()) = Some(hash);
    // Printed once, on stderr, on purpose: this is the only time the password exists in clear.
    eprintln!(
        "\n  gemini-proxy: generated an admin password (shown only this once): {password}\n  Log in at http://{}/ or set [admin] token / password_hash in the config.\n",
        settings.admin.listen
    );
    tracing::warn!(listen = %settings.admin.listen, "generated an admin password and printed it once on stderr; only its hash is stored");
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: every client connection and every
/// upstream connection is a descriptor, and the usual soft limit (1024) is far too low for a
/// proxy. (nginx does the same with `worker_rlimit_nofile`.)
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let before = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                tracing::debug!(from = before, to = lim.rlim_max, "raised the open-files limit");
            }
        }
    }
}
