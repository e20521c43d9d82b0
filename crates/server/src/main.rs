//! `signalbox`: the command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use signalbox::live::{self, Live};
use signalbox::{admin, serve, setup, ui};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod alloc;

#[derive(Parser)]
#[command(
    name = "signalbox",
    version,
    about = "Signalbox: a self-hosted AI gateway with named routes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the store is: `--db URL` (sqlite://PATH or postgres://...) and `--data-dir`.
#[derive(clap::Args, Clone, Default)]
struct StoreFlags {
    /// Store database URL (default: SQLite in the data directory; also `[store] url`).
    #[arg(long, global = true)]
    db: Option<String>,
    /// Data directory (default ./signalbox-data; also SIGNALBOX_DATA_DIR, `[store] data_dir`).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Config file (default ./signalbox.toml when present): its `[store]` table and objects.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway, the admin API and the store.
    Serve {
        /// Address to listen on (overrides [server] host).
        #[arg(long)]
        host: Option<String>,
        /// Port to listen on (overrides [server] port).
        #[arg(long)]
        port: Option<u16>,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// Validate a config file (with the store's objects, when there is a store): print every
    /// error and exit non-zero, or exit 0.
    Check {
        /// Check the config file alone, without the store.
        #[arg(long)]
        file_only: bool,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// Show how a model string resolves and the ordered attempt plan, calling no provider.
    Explain {
        /// The model string, e.g. route::summarize or gpt-4o.
        model: String,
        /// Endpoint kind: chat, embeddings, audio_speech, audio_transcription, image_generation.
        #[arg(long, default_value = "chat")]
        endpoint: String,
        /// Project (default: default).
        #[arg(long, default_value = "default")]
        project: String,
        /// Explain from the config file alone, without the store.
        #[arg(long)]
        file_only: bool,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// Apply the store's pending migrations and exit.
    Migrate {
        #[command(flatten)]
        store: StoreFlags,
    },
    /// Gateway keys in the store.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Export a project as TOML, or import TOML into the store.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Account administration.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Re-encrypt every stored credential under a new master key, in one transaction.
    RotateMasterKey {
        #[command(flatten)]
        store: StoreFlags,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key and print it, alone, on standard output (shown once).
    Create {
        #[arg(long, default_value = "default")]
        project: String,
        #[arg(long)]
        name: String,
        /// Seconds until the key stops working.
        #[arg(long)]
        expires_in: Option<i64>,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// List a project's keys (prefixes only).
    List {
        #[arg(long, default_value = "default")]
        project: String,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// Revoke a key by id.
    Revoke {
        id: String,
        #[arg(long, default_value = "default")]
        project: String,
        #[command(flatten)]
        store: StoreFlags,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Write a project's store objects as config-file TOML.
    Export {
        #[arg(long, default_value = "default")]
        project: String,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// Apply a TOML file's objects to the store, all or nothing.
    Import {
        file: PathBuf,
        /// Project for objects that name none.
        #[arg(long, default_value = "default")]
        project: String,
        #[command(flatten)]
        store: StoreFlags,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Set a new password (read from SIGNALBOX_NEW_PASSWORD, else generated and printed)
    /// and revoke the user's tokens.
    ResetPassword {
        #[arg(long, default_value = "admin")]
        user: String,
        #[command(flatten)]
        store: StoreFlags,
    },
}

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SIGNALBOX_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("SIGNALBOX_LOG_FORMAT").is_ok_and(|v| v == "json");
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn config_path(given: Option<PathBuf>) -> Option<PathBuf> {
    match given {
        Some(p) => Some(p),
        None => {
            let default = Path::new("signalbox.toml");
            default.exists().then(|| default.to_path_buf())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn main() -> std::process::ExitCode {
    alloc::starting();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { file_only, store } => {
            init_cli_logs();
            return match runtime().and_then(|rt| rt.block_on(cli::check(&store, file_only))) {
                Ok(true) => std::process::ExitCode::SUCCESS,
                Ok(false) => std::process::ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Command::Serve { host, port, store } => {
            init_logs();
            runtime().and_then(|rt| rt.block_on(run(store, host, port)))
        }
        other => {
            init_cli_logs();
            runtime().and_then(|rt| rt.block_on(cli::run(other)))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Commands other than `serve` log warnings only, to standard error.
fn init_cli_logs() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SIGNALBOX_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(flags: StoreFlags, host: Option<String>, port: Option<u16>) -> anyhow::Result<()> {
    // Before anything can be served: a stop signal during start-up is kept, not lost.
    let signals = serve::StopSignals::register().context("cannot register signal handlers")?;
    let explicit = flags.config.is_some();
    let path = config_path(flags.config.clone());
    if let Some(p) = &path {
        if explicit && !p.exists() {
            anyhow::bail!("config file {} does not exist", p.display());
        }
    } else {
        tracing::warn!(
            "no signalbox.toml here and no --config: starting with an empty config file"
        );
    }
    let env = live::process_env();
    let lookup = |n: &str| env(n);
    // `[server]` errors refuse the start whatever the store holds (auth off on a public
    // address, a bad host or CA bundle): found before the store is opened or created, so a
    // refused first start leaves nothing behind. (Other errors may depend on store objects;
    // they are judged once the store is open.)
    if path.is_some()
        && let Err(errs) = Live::load(path.as_deref(), host.as_deref(), env.clone())
    {
        let server: Vec<_> = errs
            .0
            .into_iter()
            .filter(|e| e.key == "server" || e.key.starts_with("server."))
            .collect();
        if !server.is_empty() {
            anyhow::bail!(
                "the config is invalid:\n{}",
                signalbox_core::config::ConfigErrors(server)
            );
        }
    }
    let loc = setup::locate(
        &setup::StoreArgs {
            db: flags.db.clone(),
            data_dir: flags.data_dir.clone(),
        },
        path.as_deref(),
        &lookup,
    )?;
    let store = Arc::new(setup::open(&loc, &lookup).await?);
    setup::first_start(&store, &loc, &lookup, true).await?;
    let (catalog, store_version) = store.load_catalog().await?;
    let (live, warnings) = Live::load_with_catalog(
        path.as_deref(),
        host.as_deref(),
        env.clone(),
        catalog,
        store_version,
    )
    .map_err(|errs| anyhow::anyhow!("the config is invalid:\n{errs}"))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let live = Arc::new(live);
    let snap = live.snapshot();
    let host = host.unwrap_or_else(|| snap.server.host.clone());
    let port = port.unwrap_or(snap.server.port);
    if snap.server.auth == signalbox_core::model::AuthMode::Off {
        tracing::warn!(
            "AUTH IS OFF: open development mode, any local caller may use every route without a gateway key. Never expose this address."
        );
    }
    let _watcher = live::watch(live.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let pg_url = (store.backend() == signalbox_store::Backend::Postgres).then(|| loc.url.clone());
    admin::sync::follow(store.clone(), live.clone(), pg_url, stop.clone());
    // The admin API and the dashboard (which calls only that API) share one listener.
    let admin_state = admin::AdminState::new(store.clone(), live.clone())
        .with_traces(loc.store_traces, loc.trace_retention_days);
    let admin_router = admin::router(admin_state.clone()).merge(ui::router(admin_state));
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    let admin_listen = snap.server.admin_listen.clone();
    let (same, separate) = match admin_listen.as_str() {
        "same" | "" => (Some(admin_router), None),
        "off" => (None, None),
        addr => (None, Some((addr.to_string(), admin_router))),
    };
    let mut admin_task = None;
    if let Some((addr, router)) = separate {
        let l = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .with_context(|| format!("cannot listen on admin_listen {addr}"))?;
        tracing::info!(
            "admin API listening on http://{}/admin/v1 (dashboard: /ui)",
            l.local_addr()?
        );
        admin_task = Some(serve::start_admin(
            l,
            snap.server.header_read_timeout,
            router,
            stop.clone(),
        ));
    }
    let traces: Option<Arc<dyn signalbox_core::trace::TraceStore>> = if loc.store_traces {
        Some(store.clone())
    } else {
        tracing::info!("[store] traces = false: trace records feed metrics and logs only");
        None
    };
    let running = serve::start_with(live, listener, same, traces)?;
    alloc::serving();
    admin::sync::retain_traces(store.clone(), loc.trace_retention_days, stop.clone());
    tracing::info!(
        config_version = snap.version,
        store = %signalbox_store::redact_url(&loc.url),
        "Signalbox listening on http://{}",
        running.addr
    );
    let trigger = running.shutdown.clone();
    let hard_stop = running.state.hard_stop.clone();
    tokio::spawn(async move {
        let mut signals = signals;
        signals.recv().await;
        trigger.cancel();
        // A second signal (Ctrl-C again): no more waiting. The drain delay and the drain end
        // at once, open streams end with `stream_interrupted`, traces are still flushed.
        signals.recv().await;
        tracing::warn!("second stop signal: stopping now");
        hard_stop.cancel();
    });
    running.done.await.context("server task failed")?;
    stop.cancel();
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

mod cli;
