//! The `tenant-gateway` command.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tenant_gateway::config::{SAMPLE, Settings};

#[derive(Parser)]
#[command(
    name = "tenant-gateway",
    version,
    about = "Edge tenant router and config gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway.
    Serve(Serve),
    /// Print the Argon2 hash of a password read from standard input, for
    /// `TenantGateway.Auth.SuperUser.PasswordHash`.
    HashPassword,
    /// Fill the `tenants` key-value store of the Spin application (`spin.toml`)
    /// with the settings file's tenants, as the config API on Spin reads them.
    SpinSeed(SpinSeed),
    /// Compiles a component read on standard input to a precompiled artifact
    /// on standard output: what the gateway runs to compile what arrives
    /// while it serves.
    #[command(name = "compile-component", hide = true)]
    CompileComponent {
        /// Heap limit in MiB.
        #[arg(long)]
        memory_mib: u64,
    },
}

#[derive(Parser)]
struct SpinSeed {
    /// Settings file. Default: ./appsettings.json if present, else the built-in sample.
    #[arg(long, env = "TENANT_GATEWAY_SETTINGS")]
    settings: Option<PathBuf>,
    /// The runtime config file `spin up` is given (`--runtime-config-file`).
    #[arg(long, default_value = "runtime-config.toml")]
    runtime_config: PathBuf,
    /// The key-value store label the config API reads tenants from.
    #[arg(long, default_value = "tenants")]
    store: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Parser)]
struct Serve {
    /// Settings file (Ed-Fi appsettings.json shape). Default: ./appsettings.json if
    /// present, else the built-in sample with two tenants.
    #[arg(long, env = "TENANT_GATEWAY_SETTINGS")]
    settings: Option<PathBuf>,
    /// Address to listen on. Default: TenantGateway.Listen, else 127.0.0.1:8080.
    #[arg(long, env = "TENANT_GATEWAY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the embedded store. Default: TenantGateway.DataDir, else ./data.
    #[arg(long, env = "TENANT_GATEWAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Directory for precompiled components. Default: <data-dir>/cache.
    #[arg(long, env = "TENANT_GATEWAY_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// The key that signs the precompiled components; keep it where those who
    /// may write the cache directory cannot. Default: <data-dir>/cache.key.
    #[arg(long, env = "TENANT_GATEWAY_CACHE_KEY")]
    cache_key: Option<PathBuf>,
    /// The watched components directory: `validator.wasm`, `feature-gate.wasm`,
    /// `config-api.wasm`, `validator@{tenant}.wasm`, `feature-gate@{tenant}.wasm`
    /// dropped, replaced or removed there are loaded or unloaded while running.
    /// Default: TenantGateway.ComponentsDir, else <data-dir>/components.
    #[arg(long, env = "TENANT_GATEWAY_COMPONENTS")]
    components: Option<PathBuf>,
    /// Log line format.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "TENANT_GATEWAY_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// End when the process (thread) that started the gateway ends, however it
    /// ends (Linux: the parent-death signal). For supervisors and test
    /// harnesses that must never leave a gateway running.
    #[arg(long)]
    exit_with_parent: bool,
}

/// Asks the kernel to kill this process when its parent goes; if the parent
/// went already (we were handed to init), ends now.
fn exit_with_parent() -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .context("setting the parent-death signal")?;
        if std::os::unix::process::parent_id() == 1 {
            anyhow::bail!("--exit-with-parent: the parent process has ended already");
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    anyhow::bail!("--exit-with-parent is supported on Linux only")
}

/// Logs to standard error from a thread of its own, in batches
/// (`telemetry::log`): a request formats its line and appends it; past 1 MiB
/// waiting, lines are dropped (and counted, `tg_log_lines_dropped_total`)
/// rather than stalling requests. The guard writes what is left when dropped.
fn init_logging(
    format: LogFormat,
) -> std::io::Result<(
    tenant_gateway::telemetry::log::Flush,
    tenant_gateway::telemetry::log::Dropped,
)> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: a file or a log collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (lines, dropped, flush) = tenant_gateway::telemetry::log::start(std::io::stderr())?;
    // Text access lines without colours skip the `tracing` dispatch.
    if matches!(format, LogFormat::Text) && !ansi {
        tenant_gateway::telemetry::request::access_lines_to(lines.clone());
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(lines);
    // The request a line is about comes from the request's task, not from a
    // span (see telemetry::request).
    use tenant_gateway::telemetry::request::{Json, Rfc3339Micros, Text, TextFields};
    match format {
        LogFormat::Text => builder
            .fmt_fields(TextFields)
            .event_format(Text(Rfc3339Micros))
            .init(),
        LogFormat::Json => builder.event_format(Json(Rfc3339Micros)).init(),
    }
    Ok((flush, dropped))
}

/// The settings file read: its path, what it said, and its metadata from just
/// before it was read (it is watched for changes from that text on).
type SettingsSource = (PathBuf, String, Option<std::fs::Metadata>);

/// The settings file (or the built-in sample) with environment overrides
/// applied; and the file read, if any.
fn load_settings(
    path: Option<&Path>,
) -> Result<(Settings, Option<SettingsSource>), tenant_gateway::config::SettingsError> {
    let file = match path {
        Some(p) => Some(p.to_owned()),
        None if Path::new("appsettings.json").exists() => Some(PathBuf::from("appsettings.json")),
        None => None,
    };
    let meta = file.as_deref().and_then(|p| std::fs::metadata(p).ok());
    let text = match &file {
        Some(p) => read(p)?,
        None => SAMPLE.to_owned(),
    };
    let settings = Settings::parse_with_env(&text, std::env::vars())?;
    Ok((settings, file.map(|f| (f, text, meta))))
}

fn read(path: &Path) -> Result<String, tenant_gateway::config::SettingsError> {
    std::fs::read_to_string(path).map_err(|e| tenant_gateway::config::SettingsError {
        key: path.display().to_string(),
        problem: format!("cannot read: {e}"),
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn serve(
    args: Serve,
    log_lines_dropped: tenant_gateway::telemetry::log::Dropped,
) -> anyhow::Result<()> {
    if args.exit_with_parent {
        exit_with_parent()?;
    }
    let (settings, source_path) = match load_settings(args.settings.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tenant-gateway: {e}");
            std::process::exit(2);
        }
    };
    let listen = args
        .listen
        .or(settings.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let data_dir = args
        .data_dir
        .or_else(|| settings.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("data"));
    let cache_dir = args.cache_dir.unwrap_or_else(|| data_dir.join("cache"));
    let components_dir = args
        .components
        .or_else(|| settings.components_dir.clone())
        .unwrap_or_else(|| data_dir.join("components"));
    let source = source_path.as_ref().map_or_else(
        || "built-in sample".to_owned(),
        |(p, ..)| p.display().to_string(),
    );
    tracing::info!(settings = %source, tenants = settings.tenants.len(), data_dir = %data_dir.display(), "starting");
    // Every connection is a file descriptor: take what the system allows, and
    // say so when that is less than Limits.MaxConnections needs.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let needed = settings.limits.max_connections as u64 + 16 + 256;
            if limit < needed {
                tracing::warn!(
                    open_files = limit,
                    needed,
                    "the open-file limit is below what Limits.MaxConnections needs; lower it or raise the limit"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let watch = source_path.map(|(path, text, meta)| tenant_gateway::Watch {
        path,
        env: std::env::vars().collect(),
        started_from: text.into_bytes(),
        started_meta: meta,
    });
    let running = tenant_gateway::start(
        tenant_gateway::Options {
            settings,
            listen,
            data_dir,
            cache_dir: Some(cache_dir),
            cache_key: args.cache_key,
            components_dir: Some(components_dir),
            compile_with: Some(
                std::env::current_exe().context("finding the gateway binary for its compiler")?,
            ),
            watch,
            log_lines_dropped: Some(log_lines_dropped),
        },
        shutdown_signal(),
    )
    .await?;
    // The first stdout line announces the address (tests and scripts read it).
    match running.amqp_addr {
        Some(amqp) => println!(
            "tenant-gateway listening on amqp://{amqp}, http://{}",
            running.addr
        ),
        None => println!("tenant-gateway listening on http://{}", running.addr),
    }
    std::io::stdout().flush().context("writing to stdout")?;
    running.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "the password is empty");
            println!(
                "{}",
                tenant_gateway::security::password::hash_password(password)
            );
            Ok(())
        }
        Command::CompileComponent { memory_mib } => {
            tenant_gateway::wasm::compiler::run_child(memory_mib)
        }
        Command::SpinSeed(args) => {
            let (settings, _) = match load_settings(args.settings.as_deref()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("tenant-gateway: {e}");
                    std::process::exit(2);
                }
            };
            let out =
                tenant_gateway::app::spin_seed::seed(&settings, &args.runtime_config, &args.store)?;
            println!(
                "seeded {} tenant(s) into Spin key-value store `{}` ({}); {} stale record(s) removed",
                out.tenants.len(),
                args.store,
                out.path.display(),
                out.removed
            );
            for (name, id) in &out.tenants {
                println!("  {name} {id}");
            }
            Ok(())
        }
        Command::Serve(args) => {
            // Held to the end: dropping it writes the last lines.
            let (_flush_at_exit, dropped) = init_logging(args.log_format)?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(args, dropped))
        }
    }
}
