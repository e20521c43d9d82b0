//! `signalbox`: the command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use signalbox::live::{self, Live};
use signalbox::serve;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (default ./signalbox.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides [server] host).
        #[arg(long)]
        host: Option<String>,
        /// Port to listen on (overrides [server] port).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Validate a config file: print every error and exit non-zero, or exit 0.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show how a model string resolves and the ordered attempt plan, calling no provider.
    Explain {
        /// The model string, e.g. route::summarize or gpt-4o.
        model: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Endpoint kind: chat, embeddings, audio_speech, audio_transcription, image_generation.
        #[arg(long, default_value = "chat")]
        endpoint: String,
        /// Project (default: default).
        #[arg(long, default_value = "default")]
        project: String,
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => {
            let path = config.unwrap_or_else(|| PathBuf::from("signalbox.toml"));
            let env = |n: &str| std::env::var(n).ok();
            match signalbox_core::load_file(&path, &env, 1) {
                Ok(loaded) => {
                    for w in &loaded.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!("{}: ok", path.display());
                    std::process::ExitCode::SUCCESS
                }
                Err(errs) => {
                    for e in &errs.0 {
                        eprintln!("error: {e}");
                    }
                    eprintln!("{}: {} error(s)", path.display(), errs.0.len());
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Explain {
            model,
            config,
            endpoint,
            project,
        } => {
            let path = config.unwrap_or_else(|| PathBuf::from("signalbox.toml"));
            let env = |n: &str| std::env::var(n).ok();
            let loaded = match signalbox_core::load_file(&path, &env, 1) {
                Ok(l) => l,
                Err(errs) => {
                    for e in &errs.0 {
                        eprintln!("error: {e}");
                    }
                    return std::process::ExitCode::FAILURE;
                }
            };
            let Some(kind) = signalbox_core::model::EndpointKind::parse(&endpoint) else {
                eprintln!("error: unknown endpoint kind '{endpoint}'");
                return std::process::ExitCode::FAILURE;
            };
            let Some(ps) = loaded.snapshot.project(&project) else {
                eprintln!("error: unknown project '{project}'");
                return std::process::ExitCode::FAILURE;
            };
            match signalbox_core::explain::explain(ps, kind, &model) {
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {} ({})", e.message, e.code.as_str());
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config, host, port } => {
            init_logs();
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(config, host, port)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(
    config: Option<PathBuf>,
    host: Option<String>,
    port: Option<u16>,
) -> anyhow::Result<()> {
    let explicit = config.is_some();
    let path = config_path(config);
    if let Some(p) = &path {
        if explicit && !p.exists() {
            anyhow::bail!("config file {} does not exist", p.display());
        }
    } else {
        tracing::warn!("no signalbox.toml here and no --config: starting with an empty config");
    }
    let (live, warnings) = Live::load(path.as_deref(), host.as_deref(), live::process_env())
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
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    let running = serve::start(live, listener)?;
    tracing::info!(
        config_version = snap.version,
        "Signalbox listening on http://{}",
        running.addr
    );
    let trigger = running.shutdown.clone();
    tokio::spawn(async move {
        serve::signal().await;
        trigger.cancel();
    });
    running.done.await.context("server task failed")?;
    tracing::info!("stopped");
    Ok(())
}
