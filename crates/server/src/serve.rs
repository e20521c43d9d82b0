//! Running the gateway: bind, serve, and shut down as SPEC section 8 says: `/ready` 503 at
//! once, keep serving for `drain_delay`, close the listener, drain for up to
//! `shutdown_timeout`, then end remaining streams with `stream_interrupted` and flush traces.

use crate::app::{AppState, Front, router};
use crate::live::Live;
use signalbox_core::trace::{TraceSink, TraceStore};

/// Trace records waiting for the writer; beyond this they are dropped and counted.
pub const TRACE_QUEUE: usize = 16_384;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
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
    let shared = Arc::new((app, state.clone()));
    let st = state.clone();
    let trigger = shutdown.clone();
    let done = tokio::spawn(async move {
        let header_timeout = st.live.snapshot().server.header_read_timeout;
        let serve = serve_connections(
            listener,
            header_timeout,
            move |peer| Front::new(shared.clone(), peer),
            drain(st.clone(), trigger),
        );
        // The graceful phase is bounded: hard stop after the timeout, then a short grace.
        let bounded = serve;
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
    // A hard stop (a second signal) cuts the drain delay short.
    tokio::select! {
        _ = tokio::time::sleep(server.drain_delay) => {}
        _ = st.hard_stop.cancelled() => {}
    }
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

    /// Wait for the next stop signal.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => {}
                _ = self.term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = &self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Serve the admin API alone on its own listener (`[server] admin_listen = "ADDR"`),
/// until `stop` is cancelled.
pub fn start_admin(
    listener: TcpListener,
    header_timeout: Duration,
    admin: axum::Router,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(serve_connections(
        listener,
        header_timeout,
        move |peer| WithPeer {
            router: admin.clone(),
            peer,
        },
        async move { stop.cancelled().await },
    ))
}

/// Serve each connection accepted on `listener` with the service `make` gives for its peer
/// (HTTP/1.1, or HTTP/2 with prior knowledge), until `stop` resolves; then stop accepting,
/// ask every connection to finish (an idle one closes at once, a busy one after its answer)
/// and return when all have closed.
///
/// A client gets `header_timeout` to send a request's headers, counted from when its
/// connection opens or its previous answer ends (so also as long to sit idle between
/// requests); past it the connection is closed: a slow or silent client holds no socket for
/// long, and is never in flight.
async fn serve_connections<S>(
    listener: TcpListener,
    header_timeout: Duration,
    make: impl Fn(SocketAddr) -> S,
    stop: impl std::future::Future<Output = ()>,
) where
    S: tower_service::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let finish = CancellationToken::new();
    // Each connection's task holds a receiver; `closed()` resolves when the last has ended.
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let service = make(peer);
        let finish = finish.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            serve_one(tcp, service, header_timeout, finish).await;
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    finish.cancel();
    open_tx.closed().await;
}

/// HTTP/2 with prior knowledge or HTTP/1.1, told apart by the first bytes (HTTP/2 starts with
/// its 24-byte preface) within the header timeout: `None` for a connection that sends
/// nothing, or too little to tell (it is closed). hyper's own detection has no timer.
async fn is_http2(
    tcp: &TcpStream,
    header_timeout: Duration,
    finish: &CancellationToken,
) -> Option<bool> {
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + header_timeout;
    let mut first = [0u8; 24];
    loop {
        let peeked = tokio::select! {
            r = tokio::time::timeout_at(deadline, tcp.peek(&mut first)) => r,
            _ = finish.cancelled() => return None,
        };
        match peeked {
            Ok(Ok(n)) if n > 0 && first[..n] != PREFACE[..n] => return Some(false),
            Ok(Ok(24)) => return Some(true),
            // A beginning of the preface: wait for more (without spinning).
            Ok(Ok(n)) if n > 0 && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            _ => return None,
        }
    }
}

/// Serve one accepted connection until it ends, asking it to finish when `finish` fires.
/// HTTP/1.1 gets hyper's header timer from the start. HTTP/2 multiplexes, so it has none: a
/// connection that starts no request for `header_timeout` is asked to finish (GOAWAY; streams
/// under way complete), and one that stops answering pings is closed.
async fn serve_one<S>(
    tcp: TcpStream,
    service: S,
    header_timeout: Duration,
    finish: CancellationToken,
) where
    S: tower_service::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let Some(h2) = is_http2(&tcp, header_timeout, &finish).await else {
        return;
    };
    let opened = tokio::time::Instant::now();
    // HTTP/2 only: milliseconds from `opened` to the last request's start.
    let last_start = h2.then(|| Arc::new(std::sync::atomic::AtomicU64::new(0)));
    let service = {
        let last_start = last_start.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            if let Some(t) = &last_start {
                t.store(opened.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            tower_service::Service::call(&mut service.clone(), req.map(axum::body::Body::new))
        })
    };
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let mut builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(header_timeout)
        .keep_alive_timeout(header_timeout);
    let conn = crate::coalesce::Coalesce::new(builder.serve_connection(TokioIo::new(tcp), service));
    let mut conn = std::pin::pin!(conn);
    let mut finishing = std::pin::pin!(finish.cancelled());
    let mut asked = false;
    // When an HTTP/2 connection with no request since counts as idle.
    let idle_at = |t: &std::sync::atomic::AtomicU64| {
        opened + Duration::from_millis(t.load(Ordering::Relaxed)) + header_timeout
    };
    loop {
        let idle_until = last_start.as_deref().map(idle_at);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = &mut finishing, if !asked => {
                asked = true;
                conn.as_mut().inner().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(idle_until.unwrap_or(opened)), if idle_until.is_some() && !asked => {
                // Unless a request started meanwhile (then the loop waits again).
                if last_start.as_deref().map(idle_at).is_some_and(|u| u <= tokio::time::Instant::now()) {
                    asked = true;
                    conn.as_mut().inner().graceful_shutdown();
                }
            }
        }
    }
}

/// An accept that failed: a connection reset before it was taken is nothing; anything else
/// (out of file descriptors) is logged and accepting pauses a second so as not to spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A router that sees the peer's address as `ConnectInfo`.
#[derive(Clone)]
struct WithPeer {
    router: axum::Router,
    peer: SocketAddr,
}

impl tower_service::Service<axum::extract::Request> for WithPeer {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = <axum::Router as tower_service::Service<axum::extract::Request>>::Future;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: axum::extract::Request) -> Self::Future {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        self.router.call(req)
    }
}
