//! tenant-gateway: routes requests by tenant and serves tenant configuration through
//! sandboxed Wasm components, over an embedded (SQLite) or shared store.
#![deny(missing_docs)]

pub mod proxy;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod settings;
pub mod store;
pub mod tenants;

use anyhow::Context;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Where and how to run a gateway.
#[derive(Debug, Clone)]
pub struct Options {
    /// Parsed settings.
    pub settings: settings::Settings,
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Directory of the SQLite store.
    pub data_dir: PathBuf,
    /// Directory of precompiled components; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// The components to run.
    pub components: runtime::ComponentSet,
}

/// A started gateway.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The Wasm runtime (component swaps go through it).
    pub runtime: Arc<runtime::Runtime>,
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

/// The current time as RFC 3339 UTC, seconds precision.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Opens the store, seeds the tenants, loads and warms the built-in components and
/// starts serving. `shutdown` ends the server gracefully when it completes.
pub async fn start(
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let store: Arc<dyn store::Store> = Arc::new(
        store::SqliteStore::open(&options.data_dir)
            .with_context(|| format!("opening the store in {}", options.data_dir.display()))?,
    );
    let directory = {
        let store = store.clone();
        let tenants = options.settings.tenants.clone();
        tokio::task::spawn_blocking(move || {
            tenants::Directory::seed(store.as_ref(), &tenants, &now_rfc3339())
        })
        .await??
    };
    let shared = Arc::new(runtime::Shared {
        store,
        directory: ArcSwap::from_pointee(directory),
    });
    let limits = options.settings.limits.clone();
    let cache_dir = options.cache_dir.clone();
    let components = options.components.clone();
    let rt = tokio::task::spawn_blocking(move || {
        runtime::Runtime::new(&components, shared, limits, cache_dir)
    })
    .await??;
    rt.warm_up().await.context("warming up the components")?;

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding {}", options.listen))?;
    let addr = listener.local_addr()?;
    let gateway = Arc::new(server::Gateway::new(rt.clone(), &options.settings));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = rx => {}
        }
    };
    let task = tokio::spawn(server::serve(listener, gateway, stop));
    Ok(Running {
        addr,
        runtime: rt,
        shutdown: tx,
        task,
    })
}
