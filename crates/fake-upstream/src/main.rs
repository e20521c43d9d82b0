//! Standalone fake upstream (OpenAI, Anthropic and Gemini wire formats), for
//! benchmarks and manual testing.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use fake_upstream::FakeUpstream;

/// Fake LLM upstream: OpenAI (chat completions, embeddings, models, responses,
/// audio speech/transcriptions/translations, image generations) under /v1,
/// Anthropic messages at /v1/messages, Gemini generateContent under /v1beta.
#[derive(Debug, Parser)]
#[command(name = "fake-upstream", version)]
struct Args {
    /// Address or host name to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind (0 picks a free one).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Delay before the response headers of every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Number of content pieces per streamed reply.
    #[arg(long, default_value_t = 4)]
    chunks: usize,
    /// Delay between stream events, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Fixed reply text (default: "fake reply to: <last user message>").
    #[arg(long)]
    reply: Option<String>,
    /// Comma-separated model ids listed by GET /v1/models.
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Require KEY: `Authorization: Bearer KEY` (OpenAI), `x-api-key` (Anthropic),
    /// `x-goog-api-key` or `?key=` (Gemini).
    #[arg(long)]
    require_key: Option<String>,
    /// Prompt-cache read tokens to report in usage.
    #[arg(long, default_value_t = 0)]
    cache_read_tokens: u64,
    /// Prompt-cache write tokens to report in usage (Anthropic only).
    #[arg(long, default_value_t = 0)]
    cache_write_tokens: u64,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build()?;
    let result = rt.block_on(run(args));
    // Don't wait for open connections (or idle blocking threads) on exit.
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn run(args: Args) -> anyhow::Result<()> {
    let addr = match args.host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, args.port),
        Err(_) => tokio::net::lookup_host((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("resolving {}", args.host))?
            .next()
            .with_context(|| format!("no address for {}", args.host))?,
    };

    let mut up = FakeUpstream::openai()
        .record_requests(false)
        .latency(Duration::from_millis(args.latency_ms))
        .chunks(args.chunks)
        .chunk_delay(Duration::from_millis(args.chunk_delay_ms))
        .cache_tokens(args.cache_read_tokens, args.cache_write_tokens);
    if let Some(reply) = args.reply {
        up = up.reply(reply);
    }
    if !args.models.is_empty() {
        let ids: Vec<&str> = args.models.iter().map(String::as_str).collect();
        up = up.models(&ids);
    }
    if let Some(key) = args.require_key {
        up = up.require_key(key);
    }
    let signal = shutdown_signal()?;
    let handle = up
        .start_on(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}/v1", handle.addr())?;
        out.flush()?;
    }

    signal.await;
    handle.shutdown();
    Ok(())
}

/// Registers the handlers at once (so a signal sent right after the
/// "listening" line is never lost) and returns a future that waits for one.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
