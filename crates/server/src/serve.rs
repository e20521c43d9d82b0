//! Running the gateway: bind, serve, and shut down as SPEC section 8 says: `/ready` 503 at
//! once, keep serving for `drain_delay`, close the listener, drain for up to
//! `shutdown_timeout`, then end remaining streams with `stream_interrupted` and flush traces.

use crate::app::{AppState, router};
use crate::live::Live;
use axum::serve::ListenerExt;
use signalbox_core::trace::{TraceSink, TraceStore};

/// Trace records waiting for the writer; beyond this they are dropped and counted.
pub const TRACE_QUEUE: usize = 16_384;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A gateway running in this process.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    /// Cancel to start the shutdown sequence (as SIGTERM does).
    pub shutdown: CancellationToken,
    pub done: tokio::task::JoinHandle<()>,
}

/// Serve on an already bound listener (the data plane alone; traces are only logged).
pub fn start(live: Arc<Live>, listener: TcpListener) -> std::io::Result<Running> {
    start_with(live, listener, None, None)
}

/// Serve the data plane, and the admin API on the same listener when `admin` is given;
/// trace records go to `traces` when given.
pub fn start_with(
    live: Arc<Live>,
    listener: TcpListener,
    admin: Option<axum::Router>,
    traces: Option<Arc<dyn TraceStore>>,
) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let flush = CancellationToken::new();
    // Optional OTLP export, configured by the standard OTEL_* variables.
    let traces = match signalbox_core::otlp::Settings::from_env(&|n: &str| live.env(n)) {
        Ok(None) => traces,
        Ok(Some(settings)) => {
            tracing::info!(endpoint = %settings.url, "exporting spans over OTLP/HTTP");
            let exporter =
                signalbox_core::otlp::Exporter::start(settings).map_err(std::io::Error::other)?;
            Some(Arc::new(signalbox_core::otlp::Tee {
                exporter,
                store: traces,
            }) as Arc<dyn TraceStore>)
        }
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let (sink, writer) = TraceSink::start_with(
        TRACE_QUEUE,
        flush.clone(),
        traces,
        Arc::new(signalbox_core::metrics::Metrics::new()),
    );
    let state = AppState::new(live, sink);
    let shutdown = CancellationToken::new();
    let app = match admin {
        Some(a) => a.merge(router(state.clone())),
        None => router(state.clone()),
    };
    let app = crate::app::MakeFront::new(app, state.clone());
    let st = state.clone();
    let trigger = shutdown.clone();
    let done = tokio::spawn(async move {
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(listener, app).with_graceful_shutdown(drain(st.clone(), trigger));
        // The graceful phase is bounded: hard stop after the timeout, then a short grace.
        let bounded = async {
            let _ = serve.await;
        };
        let hard = st.hard_stop.clone();
        tokio::select! {
            _ = bounded => {}
            _ = async { hard.cancelled().await; tokio::time::sleep(Duration::from_secs(2)).await } => {
                tracing::warn!("connections still open after the shutdown timeout; closing them");
            }
        }
        drop(st);
        // Flush traces: write what is queued, then stop.
        flush.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    });
    Ok(Running {
        addr,
        state,
        shutdown,
        done,
    })
}

async fn drain(st: AppState, trigger: CancellationToken) {
    trigger.cancelled().await;
    st.draining.store(true, Ordering::SeqCst);
    let server = st.live.snapshot().server.clone();
    tracing::info!(
        drain_ms = server.drain_delay.as_millis() as u64,
        "shutting down: /ready answers 503, still serving during the drain delay"
    );
    tokio::time::sleep(server.drain_delay).await;
    tracing::info!("listener closed; waiting for in-flight requests");
    let hard = st.hard_stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(server.shutdown_timeout).await;
        hard.cancel();
    });
}

/// The process's stop signals (SIGINT, SIGTERM), registered when this is created: create it
/// before the listener accepts anything, so a signal that arrives while the gateway starts is
/// kept and starts the shutdown as soon as the gateway is up.
pub struct StopSignals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn register() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(StopSignals {})
        }
    }

    /// Wait for the first stop signal.
    pub async fn recv(mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => {}
                _ = self.term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Serve the admin API alone on its own listener (`[server] admin_listen = "ADDR"`),
/// until `stop` is cancelled.
pub fn start_admin(
    listener: TcpListener,
    admin: axum::Router,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            admin.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    })
}
