//! Start-up and the background loops: builds the state every request shares
//! (store, authenticator, Wasm runtime, component registry, tenant directory),
//! binds the listeners, and keeps the directory current: settings-file reloads
//! and changes other instances make in a shared store.

mod follow;
#[cfg(test)]
mod router_tests;
pub mod spin_seed;

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::now_rfc3339;

/// Where and how to run a gateway.
#[derive(Debug, Clone)]
pub struct Options {
    /// Parsed settings.
    pub settings: crate::config::Settings,
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Directory of the SQLite store.
    pub data_dir: PathBuf,
    /// Directory of precompiled components; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// The key that signs the precompiled components (outside `cache_dir`).
    /// Default: `<data_dir>/cache.key`.
    pub cache_key: Option<PathBuf>,
    /// The components directory: `validator.wasm`, `feature-gate.wasm`,
    /// `config-api.wasm` and tenants' own `validator@{tenant}.wasm` /
    /// `feature-gate@{tenant}.wasm`, watched while running.
    pub components_dir: Option<PathBuf>,
    /// The gateway binary, run as `compile-component` to compile what arrives
    /// while serving under `Limits.CompileTimeoutMs` / `CompileMemoryMib`;
    /// `None` compiles in this process, without those budgets.
    pub compile_with: Option<PathBuf>,
    /// The settings file to watch: a changed file is applied while running. The
    /// environment overrides are applied again on every reload.
    pub watch: Option<Watch>,
    /// How many log lines were dropped, the log writer being behind
    /// (`tg_log_lines_dropped_total`); `None`: the log never drops lines.
    pub log_lines_dropped: Option<crate::telemetry::log::Dropped>,
}

/// A settings file watched for changes.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The file.
    pub path: PathBuf,
    /// Environment overrides (`Section__Key=value`) applied on top of it.
    pub env: Vec<(String, String)>,
    /// What the running settings were read from: a file that differs from it
    /// is applied, however soon after the start it was written.
    pub started_from: Vec<u8>,
    /// The file's metadata from before it was read, if known: while the file
    /// still has it, the first look is at the metadata only, not a read and a
    /// hash of the whole file (4 MB with 10,000 tenants, read into memory that
    /// stayed with the process).
    pub started_meta: Option<std::fs::Metadata>,
}

/// How often the settings file is checked for changes (a change applies after
/// two checks agree on it: within 2 intervals and the time to apply it).
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// How often the store is asked whether another instance changed tenants (a
/// shared store also wakes the follower as soon as a change is committed).
const STORE_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A started gateway.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The admin listener's address (`TenantGateway.AdminListen`), if any.
    pub admin_addr: Option<SocketAddr>,
    /// The AMQP listener's address (`TenantGateway.Amqp.Listen`), if any.
    pub amqp_addr: Option<SocketAddr>,
    /// The Wasm runtime (component swaps go through it).
    pub runtime: Arc<crate::wasm::Runtime>,
    /// The metrics the server counts.
    pub metrics: Arc<crate::telemetry::Metrics>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.map_err(std::io::Error::other)?
    }

    /// Waits until the server ends: when the `shutdown` future given to [`start`] completes.
    pub async fn wait(self) -> std::io::Result<()> {
        let Running { task, shutdown, .. } = self;
        let r = task.await.map_err(std::io::Error::other)?;
        drop(shutdown);
        r
    }
}

/// Loads the tenant apps of `settings`, reusing those of `current` whose
/// component bytes are unchanged (blocking: compiles).
fn load_apps(
    rt: &crate::wasm::Runtime,
    settings: &crate::config::Settings,
    current: &crate::wasm::Apps,
) -> anyhow::Result<crate::wasm::Apps> {
    use sha2::Digest;
    let mut apps = std::collections::HashMap::new();
    for (name, app) in &settings.apps {
        let source = &app.source;
        // The built-in app's Wasm is needed only if its artifact is refused.
        let (sha, bytes) = match source {
            crate::config::AppSource::Builtin(_) => {
                (crate::wasm::builtin::TENANT_APP.sha256_hex(), None)
            }
            crate::config::AppSource::File(path) => {
                let bytes = std::fs::read(path).with_context(|| {
                    format!(
                        "TenantGateway.Apps.{name}.Component: reading {}",
                        path.display()
                    )
                })?;
                (hex::encode(sha2::Sha256::digest(&bytes)), Some(bytes))
            }
        };
        let reused = current
            .get(name)
            .filter(|a| a.sha256 == sha && &a.source == source)
            .cloned();
        let allowed = app.allowed_outbound_hosts.clone();
        let app = match reused {
            Some(app) if app.allowed_outbound_hosts == allowed => app,
            Some(app) => app.with_allowed_outbound_hosts(allowed),
            None => rt.load_app(name, source.clone(), allowed, bytes.as_deref(), sha)?,
        };
        apps.insert(name.clone(), app);
    }
    Ok(apps)
}

/// Applies settings to a running gateway: loads its apps, records its tenants in
/// the store and publishes the new directory in one atomic swap. On any error
/// nothing changes.
pub async fn apply_settings(
    rt: &Arc<crate::wasm::Runtime>,
    settings: crate::config::Settings,
) -> anyhow::Result<()> {
    let rt = rt.clone();
    tokio::task::spawn_blocking(move || {
        let shared = rt.shared().clone();
        let apps = load_apps(&rt, &settings, &rt.apps())?;
        let _guard = shared.publishing.lock().expect("poisoned");
        let store = shared.store.as_ref();
        let (directory, seq) = crate::tenancy::Directory::seed(
            store,
            Arc::new(settings),
            apps.keys().cloned().collect(),
            &now_rfc3339(),
        )?;
        // While the old directory and the new one may both be read, every app
        // either names is loaded.
        // Read under the lock: what a concurrent reload published counts.
        let mut both = (*rt.apps()).clone();
        both.extend(apps.iter().map(|(n, a)| (n.clone(), a.clone())));
        rt.publish_apps(both);
        shared.directory.store(Arc::new(directory));
        rt.publish_apps(apps);
        shared
            .seen_seq
            .store(seq, std::sync::atomic::Ordering::Release);
        anyhow::Ok(())
    })
    .await?
}

/// The settings a running gateway cannot change, as it started with them: all
/// the settings watcher keeps of them (a copy of the whole settings was some
/// 850 bytes per tenant for the life of the process).
struct RestartOnly {
    listen: Option<std::net::SocketAddr>,
    data_dir: Option<std::path::PathBuf>,
    store: crate::config::StoreSettings,
    components_dir: Option<std::path::PathBuf>,
    limits: crate::config::Limits,
}

impl RestartOnly {
    fn of(s: &crate::config::Settings) -> Self {
        Self {
            listen: s.listen,
            data_dir: s.data_dir.clone(),
            store: s.store.clone(),
            components_dir: s.components_dir.clone(),
            limits: s.limits.clone(),
        }
    }
}

/// Settings a running gateway cannot change (it logs that a restart is needed).
fn restart_only(a: &RestartOnly, b: &crate::config::Settings) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if a.listen != b.listen {
        keys.push("TenantGateway.Listen");
    }
    if a.data_dir != b.data_dir {
        keys.push("TenantGateway.DataDir");
    }
    if a.store != b.store {
        keys.push("TenantGateway.Store");
    }
    if a.components_dir != b.components_dir {
        keys.push("TenantGateway.ComponentsDir");
    }
    if a.limits != b.limits {
        keys.push("TenantGateway.Limits");
    }
    keys
}

/// What tells a file's versions apart without reading it: its size, inode
/// (a file replaced by a rename or a swapped symlink is another one) and
/// modification and change times.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStat {
    len: u64,
    inode: (u64, u64),
    modified: Option<std::time::SystemTime>,
    changed: (i64, i64),
}

/// A file modified this recently may be written again within the same tick
/// of the file system's clock, leaving its times as they were: it is read
/// until its modification is older than this.
const RACY_WRITE: std::time::Duration = std::time::Duration::from_secs(2);

impl FileStat {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            len: meta.len(),
            inode: (meta.dev(), meta.ino()),
            modified: meta.modified().ok(),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the file is as it was at the last read (`seen`), and old enough
    /// for that to be sure at `now`.
    fn unchanged_since(&self, seen: Option<&Self>, now: std::time::SystemTime) -> bool {
        let settled = self
            .modified
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= RACY_WRITE);
        settled && seen == Some(self)
    }
}

/// Polls the settings file and applies each change that parses; a bad file is
/// logged and the running settings stay.
async fn watch_settings(
    mut watch: Watch,
    rt: Arc<crate::wasm::Runtime>,
    metrics: Arc<crate::telemetry::Metrics>,
    started_with: RestartOnly,
) {
    use sha2::Digest;
    let mut last = Some(sha2::Sha256::digest(&watch.started_from));
    // The text is needed no more (4 MB with 10,000 tenants).
    watch.started_from = Vec::new();
    let mut pending = None;
    let mut seen: Option<FileStat> = watch.started_meta.take().as_ref().map(FileStat::of);
    let mut ticker = tokio::time::interval(WATCH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Nothing changed: a look at the metadata, not a read and a hash of
        // the whole file.
        let Ok(meta) = tokio::fs::metadata(&watch.path).await else {
            continue;
        };
        let stat = FileStat::of(&meta);
        if pending.is_none() && stat.unchanged_since(seen.as_ref(), std::time::SystemTime::now()) {
            continue;
        }
        seen = Some(stat);
        let Ok(bytes) = tokio::fs::read(&watch.path).await else {
            continue;
        };
        let digest = sha2::Sha256::digest(&bytes);
        if last == Some(digest) {
            pending = None;
            continue;
        }
        // A file being written may be read half-way: act on a content only once
        // two polls in a row have seen it.
        if pending != Some(digest) {
            pending = Some(digest);
            continue;
        }
        pending = None;
        last = Some(digest);
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|_| crate::config::SettingsError {
                key: watch.path.display().to_string(),
                problem: "not UTF-8".into(),
            })
            .and_then(|text| crate::config::Settings::parse_with_env(text, watch.env.clone()));
        let new = match parsed {
            Ok(s) => s,
            Err(e) => {
                metrics.reload(false);
                tracing::warn!(error = %e, "settings file changed but is invalid; keeping the running settings");
                continue;
            }
        };
        let pending = restart_only(&started_with, &new);
        let tenants = new.tenants.len();
        match apply_settings(&rt, new).await {
            Ok(()) => {
                metrics.reload(true);
                tracing::info!(tenants, "settings reloaded");
                if !pending.is_empty() {
                    tracing::warn!(keys = ?pending, "these settings changed but apply only after a restart");
                }
            }
            Err(e) => {
                metrics.reload(false);
                tracing::warn!(error = %format!("{e:#}"), "settings reload failed; keeping the running settings");
            }
        }
    }
}

/// The state a running gateway is made of, before it listens.
struct Assembled {
    gateway: Arc<crate::http::Gateway>,
    runtime: Arc<crate::wasm::Runtime>,
    registry: Arc<crate::registry::Registry>,
    metrics: Arc<crate::telemetry::Metrics>,
    amqp_metrics: crate::amqp::Metrics,
}

/// Opens the store, seeds the tenants, loads and warms the built-in
/// components, opens the component registry: the gateway's state.
async fn assemble(options: &Options) -> anyhow::Result<Assembled> {
    let (store, engine): (Arc<dyn crate::store::Store>, _) = match &options.settings.store {
        crate::config::StoreSettings::Sqlite => (
            Arc::new(
                crate::store::SqliteStore::open(&options.data_dir).with_context(|| {
                    format!("opening the store in {}", options.data_dir.display())
                })?,
            ),
            "sqlite",
        ),
        crate::config::StoreSettings::Postgres {
            connection,
            root_certificate,
        } => {
            let (connection, root) = (connection.clone(), root_certificate.clone());
            let store = tokio::task::spawn_blocking(move || {
                crate::store::PostgresStore::open(connection.expose(), root.as_deref())
            })
            .await?
            .context("opening the PostgreSQL store (TenantGateway.Store)")?;
            (Arc::new(store), "postgresql")
        }
    };
    tracing::info!(engine, "store opened");
    let auth = {
        let store = store.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || {
                crate::security::auth::Authenticator::open(store.as_ref())
            })
            .await??,
        )
    };
    let shared = Arc::new(crate::tenancy::Shared::new(store));
    // Every layer registers its metrics here once; `/metrics` encodes them.
    let mut exposition = crate::telemetry::Registry::default();
    let metrics = Arc::new(crate::telemetry::Metrics::register(&mut exposition));
    let wasm_metrics = crate::wasm::Metrics::register(&mut exposition);
    let registry_metrics = crate::registry::Metrics::register(&mut exposition);
    let connection_metrics = crate::http::ConnectionMetrics::register(&mut exposition);
    let amqp_metrics = crate::amqp::Metrics::register(&mut exposition);
    if let Some(dropped) = options.log_lines_dropped.clone() {
        exposition.register_collector(Box::new(crate::telemetry::ReadCounter::new(
            "tg_log_lines_dropped",
            "Log lines dropped because the log writer was behind (the request went on).",
            move || dropped.get(),
        )));
    }
    let exposition = Arc::new(exposition);
    let limits = options.settings.limits.clone();
    let cache_dir = options.cache_dir.clone();
    let compile_with = options.compile_with.clone();
    let cache_key = options
        .cache_key
        .clone()
        .unwrap_or_else(|| options.data_dir.join("cache.key"));
    let rt = tokio::task::spawn_blocking(move || {
        let cache = cache_dir
            .map(|dir| {
                crate::wasm::cache::ArtifactCache::open(&dir, &cache_key).with_context(|| {
                    format!(
                        "component cache {} (key {})",
                        dir.display(),
                        cache_key.display()
                    )
                })
            })
            .transpose()?;
        let compiler = crate::wasm::compiler::Compiler::new(compile_with, &limits);
        crate::wasm::Runtime::new(shared, limits, cache, compiler, wasm_metrics)
    })
    .await??;
    apply_settings(&rt, options.settings.clone()).await?;
    rt.warm_up().await.context("warming up the components")?;
    let registry = crate::registry::Registry::open(
        rt.clone(),
        &options.data_dir,
        options.components_dir.clone(),
        registry_metrics,
    )
    .await
    .context("opening the component registry")?;
    let gateway = Arc::new(crate::http::Gateway::new(
        rt.clone(),
        &options.settings.limits,
        auth,
        metrics.clone(),
        (connection_metrics, exposition),
        registry.clone(),
        options.settings.admin_listen.is_some(),
    ));
    Ok(Assembled {
        gateway,
        runtime: rt,
        registry,
        metrics,
        amqp_metrics,
    })
}

/// Assembles the gateway ([`assemble`]) and starts serving. `shutdown` ends
/// the server gracefully when it completes.
pub async fn start(
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let Assembled {
        gateway,
        runtime: rt,
        registry,
        metrics,
        amqp_metrics,
    } = assemble(&options).await?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding {}", options.listen))?;
    let addr = listener.local_addr()?;
    let admin = match options.settings.admin_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding TenantGateway.AdminListen {at}"))?,
        ),
        None => None,
    };
    let admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
    let admin_task = admin.map(|l| {
        tracing::info!(addr = %admin_addr.expect("bound"), "admin listener (metrics, health) on http://{}", admin_addr.expect("bound"));
        tokio::spawn(crate::http::serve_admin(
            l,
            crate::api::ops::admin_routes().with_state(gateway.clone()),
            std::time::Duration::from_millis(gateway.limits.header_read_timeout_ms),
        ))
    });
    let amqp = match &options.settings.amqp {
        Some(amqp) => Some(
            tokio::net::TcpListener::bind(amqp.listen)
                .await
                .with_context(|| format!("binding TenantGateway.Amqp.Listen {}", amqp.listen))?,
        ),
        None => None,
    };
    let amqp_addr = amqp.as_ref().map(|l| l.local_addr()).transpose()?;
    let amqp_tls = match options.settings.amqp.as_ref().and_then(|a| a.tls.clone()) {
        Some(tls) => {
            Some(tokio::task::spawn_blocking(move || crate::amqp::tls_acceptor(&tls)).await??)
        }
        None => None,
    };
    let (amqp_stop, amqp_stopping) = tokio::sync::watch::channel(false);
    let amqp_task = amqp.map(|l| {
        tokio::spawn(crate::amqp::serve(
            l,
            gateway.clone(),
            amqp_metrics,
            amqp_tls,
            amqp_stopping,
        ))
    });
    let components_watcher = tokio::spawn(registry.watch());
    let watcher = options.watch.clone().map(|w| {
        tokio::spawn(watch_settings(
            w,
            rt.clone(),
            metrics.clone(),
            RestartOnly::of(&options.settings),
        ))
    });
    let changed = Arc::new(tokio::sync::Notify::new());
    {
        let changed = changed.clone();
        rt.shared()
            .store
            .on_change(Arc::new(move || changed.notify_one()));
    }
    let follower = tokio::spawn(follow::follow_store(
        rt.shared().clone(),
        STORE_POLL_INTERVAL,
        changed,
    ));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let draining = gateway.clone();
    let stop = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = rx => {}
        }
        // Not ready from here on, while the AMQP connections close too.
        draining.drain();
        if let Some(w) = watcher {
            w.abort();
        }
        follower.abort();
        components_watcher.abort();
        if let Some(t) = admin_task {
            t.abort();
        }
        // AMQP clients are sent `close` (the task waits a bounded time for it).
        let _ = amqp_stop.send(true);
        if let Some(t) = amqp_task {
            let _ = t.await;
        }
    };
    let router = router(gateway.clone());
    let task = tokio::spawn(crate::http::serve(listener, gateway, router, stop));
    // What the start-up freed goes back to the system, once, while serving:
    // the settings as read (every tenant's, beside the directory's own copy),
    // which go now, and the heap that compiling components in this process
    // grew (a tenant app from a file on a fresh cache, a built-in whose
    // artifact was refused: up to some 120 MiB that the allocator keeps).
    drop(options);
    tokio::task::spawn_blocking(crate::return_free_memory).await?;
    Ok(Running {
        addr,
        admin_addr,
        amqp_addr,
        runtime: rt,
        metrics,
        shutdown: tx,
        task,
    })
}

/// The gateway's service: every surface's routes, and tenant traffic for
/// every path none of them owns.
pub fn router(gateway: Arc<crate::http::Gateway>) -> impl crate::http::GatewayService {
    let traffic = crate::traffic::Traffic::new(gateway.clone());
    crate::http::dispatch(routes(), gateway, move |req| traffic.clone().serve(req))
}

/// Every surface's routes.
fn routes() -> crate::http::Routes {
    crate::http::Routes::new()
        .merge(crate::api::ops::routes())
        .merge(crate::api::openapi::routes())
        .merge(crate::api::connect::routes())
        .merge(crate::api::edfi::routes())
        .merge(crate::api::config::routes())
        .merge(crate::api::vespa::routes())
        .merge(crate::api::doradus::routes())
        .merge(crate::api::components::routes())
        .merge(crate::api::hono::routes())
}

#[cfg(test)]
mod watch_tests {
    use super::{FileStat, RACY_WRITE};
    use std::time::{Duration, SystemTime};

    fn stat(path: &std::path::Path) -> FileStat {
        FileStat::of(&std::fs::metadata(path).unwrap())
    }

    #[test]
    fn a_settled_unchanged_file_is_not_read_again_and_any_change_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appsettings.json");
        std::fs::write(&path, "{\"a\":1}").unwrap();
        let long_ago = SystemTime::now() - RACY_WRITE * 3;
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(long_ago).unwrap();
        let seen = stat(&path);
        let now = SystemTime::now();
        assert!(seen.unchanged_since(Some(&seen), now));
        // Never read, or not yet settled: read.
        assert!(!seen.unchanged_since(None, now));
        assert!(!seen.unchanged_since(Some(&seen), long_ago + Duration::from_millis(1)));
        // Written again, the same size: its modification time tells (looked
        // at once that has settled).
        std::fs::write(&path, "{\"a\":2}").unwrap();
        let later = SystemTime::now() + RACY_WRITE * 2;
        assert!(!stat(&path).unchanged_since(Some(&seen), later));
        // Replaced by a rename: another inode.
        let other = dir.path().join("next.json");
        std::fs::write(&other, "{\"a\":1}").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(!stat(&path).unchanged_since(Some(&seen), now));
    }
}
