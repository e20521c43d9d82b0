//! One trace record per request, handed to a bounded queue; a background writer batches
//! them out. Recording never blocks or fails a request: when the queue is full the record
//! is dropped and counted.

use crate::metrics::Metrics;
use crate::sse::Usage;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// One attempt. It holds the target itself (an `Arc` from the snapshot), so recording an
/// attempt copies no strings; provider, target and model names are written out when the
/// record is serialised.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub target: Arc<crate::model::Target>,
    pub status: Option<u16>,
    pub error_code: Option<&'static str>,
    pub retry: u32,
    pub degraded: bool,
    /// When the attempt started, in ms after the request arrived.
    pub started_ms: f64,
    pub latency_ms: f64,
}

impl Serialize for AttemptRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("AttemptRecord", 9)?;
        st.serialize_field("provider", &self.target.provider.id)?;
        st.serialize_field("target", &self.target.name)?;
        st.serialize_field("model", &self.target.model)?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("error_code", &self.error_code)?;
        st.serialize_field("retry", &self.retry)?;
        st.serialize_field("degraded", &self.degraded)?;
        st.serialize_field("started_ms", &self.started_ms)?;
        st.serialize_field("latency_ms", &self.latency_ms)?;
        st.end()
    }
}

/// The attempts as a JSON array, exactly as `serde_json::to_string(attempts)` writes them
/// (same keys, order and number forms), without serde's generic path: every stored trace
/// writes this, and serde's escaping of the nine keys alone cost ~1k instructions a row.
pub fn attempts_json(attempts: &[AttemptRecord]) -> String {
    let mut out = Vec::with_capacity(40 + 160 * attempts.len());
    // Writing to a Vec cannot fail, and only whole UTF-8 strings and ASCII go in.
    match write_attempts(&mut out, attempts) {
        Ok(()) => String::from_utf8(out).unwrap_or_else(|_| "[]".into()),
        Err(_) => "[]".into(),
    }
}

fn write_attempts(out: &mut Vec<u8>, attempts: &[AttemptRecord]) -> std::io::Result<()> {
    use serde_json::ser::{CompactFormatter, Formatter};
    let f = &mut CompactFormatter;
    out.push(b'[');
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"provider\":");
        json_str(out, &a.target.provider.id);
        out.extend_from_slice(b",\"target\":");
        json_str(out, &a.target.name);
        out.extend_from_slice(b",\"model\":");
        json_str(out, &a.target.model);
        out.extend_from_slice(b",\"status\":");
        match a.status {
            Some(s) => f.write_u16(out, s)?,
            None => f.write_null(out)?,
        }
        out.extend_from_slice(b",\"error_code\":");
        match a.error_code {
            Some(c) => json_str(out, c),
            None => f.write_null(out)?,
        }
        out.extend_from_slice(b",\"retry\":");
        f.write_u32(out, a.retry)?;
        out.extend_from_slice(b",\"degraded\":");
        f.write_bool(out, a.degraded)?;
        for (key, v) in [
            (&b",\"started_ms\":"[..], a.started_ms),
            (b",\"latency_ms\":", a.latency_ms),
        ] {
            out.extend_from_slice(key);
            // serde writes a non-finite number as null.
            if v.is_finite() {
                f.write_f64(out, v)?;
            } else {
                f.write_null(out)?;
            }
        }
        out.push(b'}');
    }
    out.push(b']');
    Ok(())
}

/// A JSON string: copied as it is when nothing in it needs escaping (names almost never
/// do), else through serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TraceRecord {
    pub id: String,
    pub client_request_id: Option<String>,
    pub time_unix_ms: u64,
    pub project: String,
    pub key_id: Option<String>,
    pub endpoint: &'static str,
    pub requested_model: Option<String>,
    pub layer: Option<&'static str>,
    pub route: Option<String>,
    pub route_version: Option<u64>,
    pub assigned_variant: Option<String>,
    pub serving_variant: Option<String>,
    pub sticky_source: Option<&'static str>,
    pub attempts: Vec<AttemptRecord>,
    pub status: u16,
    pub error_code: Option<&'static str>,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    pub stream: bool,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub traceparent: Option<String>,
    /// The request's span, when OTLP export is on.
    #[serde(skip)]
    pub otel: Option<crate::otlp::SpanIds>,
    pub invalid_stream_events: u32,
    /// Request and answer text, only for projects with content capture on.
    pub content: Option<Box<Captured>>,
    /// When a variant's generation params overrode the caller's: both,
    /// `{"variant": {...}, "caller": {...}}` (the caller's value, or null, for each key).
    pub params: Option<Box<serde_json::Value>>,
    /// An answer whose `usage` (and so `cost_usd`) is still to be read, with the target's
    /// price: the writer reads it off the request path ([`TraceRecord::settle`]).
    #[serde(skip)]
    pub unread_answer: Option<(bytes::Bytes, crate::model::Price)>,
    /// Its spans went to the OTLP exporter already (a batch the store retries comes back
    /// through the exporter; it is exported once).
    #[serde(skip)]
    pub exported: bool,
}

impl TraceRecord {
    /// Read the usage and cost of an answer left unread. Every reader of a record (metrics,
    /// the store, the log line) sees it settled.
    pub fn settle(&mut self) {
        if let Some((body, price)) = self.unread_answer.take() {
            self.usage = crate::sse::last_usage(&body);
            self.cost_usd = self.usage.as_ref().and_then(|u| cost(&price, u));
        }
    }

    /// Bytes this record holds while it waits in the queue: captured text and an unread
    /// answer (both count against [`CONTENT_QUEUE_BYTES`]).
    fn queued_bytes(&self) -> usize {
        self.content.as_deref().map_or(0, Captured::size)
            + self.unread_answer.as_ref().map_or(0, |(b, _)| b.len())
    }
}

/// Most bytes of a request or an answer a trace keeps.
pub const CAPTURE_CAP: usize = 32 * 1024;

/// Most bytes of captured text and unread answers the records waiting in the queue may hold
/// together; past it a record's answer is read at once and, if still over, the record is
/// queued without its content (counted). Without it a full queue of records with content
/// would hold ~1 GiB.
pub const CONTENT_QUEUE_BYTES: usize = 64 << 20;

/// Message content of one request, kept only when its project captures content; each side
/// is cut at [`CAPTURE_CAP`] bytes (on a character boundary) and marked when it was.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Captured {
    pub request: String,
    pub response: String,
    pub request_truncated: bool,
    pub response_truncated: bool,
}

impl Captured {
    /// Bytes of text held.
    pub fn size(&self) -> usize {
        self.request.len() + self.response.len()
    }

    pub fn of_request(body: &[u8]) -> Captured {
        let mut c = Captured::default();
        c.request_truncated = push_capped(&mut c.request, body);
        c
    }

    /// Append answer bytes (a body, or stream chunks as they go out).
    pub fn push_response(&mut self, bytes: &[u8]) {
        if !self.response_truncated {
            self.response_truncated = push_capped(&mut self.response, bytes);
        }
    }
}

/// Append as much of `bytes` (as UTF-8, lossily) as fits under the cap; true when cut.
fn push_capped(out: &mut String, bytes: &[u8]) -> bool {
    let room = CAPTURE_CAP.saturating_sub(out.len());
    // Convert only what can fit (a few bytes more, for a character cut at the edge): a large
    // answer is never scanned whole.
    let cut_bytes = bytes.len() > room + 4;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(room + 4)]);
    if text.len() <= room && !cut_bytes {
        out.push_str(&text);
        return false;
    }
    let mut cut = room;
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    out.push_str(&text[..cut]);
    true
}

/// How long the writer lets records gather between batches.
const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(25);
/// The most records one batch carries.
const BATCH_MAX: usize = 512;

/// What [`TraceStore::write`] gives back: the batch (for a retry, or to be reused) and the outcome.
pub type Written = (Vec<TraceRecord>, Result<(), String>);

/// Where batches of trace records are stored (the store, in the server). A batch is moved in
/// and handed back, so a store may write it on a thread of its own.
pub trait TraceStore: Send + Sync + 'static {
    fn write(
        &self,
        batch: Vec<TraceRecord>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Written> + Send + '_>>;
}

/// Where records go. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TraceSink {
    tx: mpsc::Sender<TraceRecord>,
    metrics: Arc<Metrics>,
    /// Bytes of captured content in the records queued (see [`CONTENT_QUEUE_BYTES`]).
    content_bytes: Arc<AtomicUsize>,
}

impl TraceSink {
    /// Start a background writer that only logs records (at DEBUG, target `signalbox::trace`)
    /// and feeds the metrics.
    pub fn start(
        capacity: usize,
        stop: tokio_util::sync::CancellationToken,
    ) -> (TraceSink, tokio::task::JoinHandle<()>) {
        Self::start_with(capacity, stop, None, Arc::new(Metrics::new()))
    }

    /// Start the background writer. `stop` ends it once what is queued is written
    /// (shutdown flushes); it also ends when every sink clone is dropped.
    pub fn start_with(
        capacity: usize,
        stop: tokio_util::sync::CancellationToken,
        store: Option<Arc<dyn TraceStore>>,
        metrics: Arc<Metrics>,
    ) -> (TraceSink, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<TraceRecord>(capacity.max(1));
        let m = metrics.clone();
        let content_bytes = Arc::new(AtomicUsize::new(0));
        let queued = content_bytes.clone();
        let handle = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH_MAX);
            loop {
                let n = tokio::select! {
                    n = rx.recv_many(&mut batch, BATCH_MAX) => n,
                    _ = stop.cancelled() => {
                        while let Ok(r) = rx.try_recv() {
                            batch.push(r);
                            if batch.len() >= BATCH_MAX {
                                write_batch(&mut batch, store.as_deref(), &m, &queued).await;
                            }
                        }
                        write_batch(&mut batch, store.as_deref(), &m, &queued).await;
                        return;
                    }
                };
                if n == 0 {
                    return;
                }
                write_batch(&mut batch, store.as_deref(), &m, &queued).await;
                // A full batch means more are waiting: write on at once (pausing here capped
                // the writer at BATCH_MAX records an interval, and a faster stream of
                // requests overflowed the queue however fast the store was).
                if n >= BATCH_MAX {
                    continue;
                }
                // Let records gather before the next batch: one wake-up of this task per
                // interval under load, instead of one per request.
                tokio::select! {
                    _ = tokio::time::sleep(BATCH_INTERVAL) => {}
                    _ = stop.cancelled() => {}
                }
            }
        });
        (
            TraceSink {
                tx,
                metrics,
                content_bytes,
            },
            handle,
        )
    }

    /// A sink whose records go nowhere (counted as dropped): a stand-in where a sink must
    /// exist but no writer runs.
    pub fn closed() -> TraceSink {
        let (tx, _) = mpsc::channel(1);
        TraceSink {
            tx,
            metrics: Arc::new(Metrics::new()),
            content_bytes: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Queue a record; never waits. A full queue drops it and counts the drop; captured
    /// content over the queue's byte budget is left off the record (and counted).
    pub fn record(&self, mut r: TraceRecord) {
        let mut size = r.queued_bytes();
        if size > 0 && !self.reserve(size) {
            // Over the budget: the answer is read now rather than held, then the content
            // goes if it alone does not fit.
            r.settle();
            size = r.queued_bytes();
            if size > 0 && !self.reserve(size) {
                r.content = None;
                size = 0;
                self.metrics.trace_content_dropped.inc();
            }
        }
        if let Err(e) = self.tx.try_send(r) {
            if size > 0 {
                self.content_bytes.fetch_sub(size, Ordering::Relaxed);
            }
            self.metrics.traces_dropped.inc();
            // The request still counts in the metrics (the writer would have fed them).
            let (mpsc::error::TrySendError::Full(mut r) | mpsc::error::TrySendError::Closed(mut r)) =
                e;
            r.settle();
            self.metrics.observe(&r);
        }
    }

    /// Take `size` bytes of the queue's budget, or nothing when they do not fit.
    fn reserve(&self, size: usize) -> bool {
        let before = self.content_bytes.fetch_add(size, Ordering::Relaxed);
        if before + size > CONTENT_QUEUE_BYTES {
            self.content_bytes.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn dropped(&self) -> u64 {
        self.metrics.traces_dropped.get()
    }

    pub fn written(&self) -> u64 {
        self.metrics.traces_written.get()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

async fn write_batch(
    batch: &mut Vec<TraceRecord>,
    store: Option<&dyn TraceStore>,
    m: &Metrics,
    content_bytes: &AtomicUsize,
) {
    if batch.is_empty() {
        return;
    }
    // Out of the queue: its content and answer no longer count against the budget.
    let taken: usize = batch.iter().map(TraceRecord::queued_bytes).sum();
    content_bytes.fetch_sub(taken, Ordering::Relaxed);
    let log = tracing::enabled!(target: "signalbox::trace", tracing::Level::DEBUG);
    for r in batch.iter_mut() {
        r.settle();
        if log && let Ok(line) = serde_json::to_string(r) {
            tracing::debug!(target: "signalbox::trace", "{line}");
        }
        m.observe(r);
    }
    match store {
        Some(s) => {
            // A store that hiccups gets two more tries; records arriving meanwhile wait in
            // the bounded queue (and are dropped and counted if it fills), never a request.
            let n = batch.len();
            let mut tries = 0;
            loop {
                let (back, written) = s.write(std::mem::take(batch)).await;
                *batch = back;
                match written {
                    Ok(()) => {
                        m.traces_written.inc_by(n as u64);
                        break;
                    }
                    // A batch the store could not hand back is not retried (it is gone).
                    Err(e) if tries < 2 && batch.len() == n => {
                        tries += 1;
                        tracing::debug!(records = n, "trace batch not stored, retrying: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100 * 4u64.pow(tries)))
                            .await;
                    }
                    Err(e) => {
                        m.trace_write_errors.inc();
                        m.traces_dropped.inc_by(n as u64);
                        tracing::warn!(records = n, "trace batch not stored: {e}");
                        break;
                    }
                }
            }
        }
        None => {
            m.traces_written.inc_by(batch.len() as u64);
        }
    }
    batch.clear();
}

/// A new trace id (a UUIDv7, hyphenated lowercase) and the time it carries (Unix
/// milliseconds), which is the trace's `time_unix_ms`: the store finds a trace by its id
/// through that time. Its 74 bits under the time are random (`uuid::Uuid::now_v7` would keep
/// ids of one millisecond in order, through a process-wide mutex taken by every request).
pub fn new_trace_id() -> (String, u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let at = uuid::Timestamp::from_unix(uuid::NoContext, now.as_secs(), now.subsec_nanos());
    let text = uuid::Uuid::new_v7(at)
        .hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned();
    (text, now.as_millis() as u64)
}

/// The time (Unix milliseconds) a UUIDv7 carries; `None` for another version.
pub fn id_time_ms(id: &uuid::Uuid) -> Option<u64> {
    if id.get_version_num() != 7 {
        return None;
    }
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    Some(secs * 1000 + u64::from(nanos / 1_000_000))
}

/// Cost in USD, or `None` when a needed price is unknown.
pub fn cost(price: &crate::model::Price, usage: &Usage) -> Option<f64> {
    let cached = usage.cached_tokens().min(usage.prompt_tokens);
    let uncached = usage.prompt_tokens - cached;
    let input = price.input?;
    let output = price.output?;
    let cached_price = if cached > 0 {
        price.cached_input.unwrap_or(input)
    } else {
        0.0
    };
    Some(
        (uncached as f64 * input
            + cached as f64 * cached_price
            + usage.completion_tokens as f64 * output)
            / 1e6,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored attempts JSON is what serde writes for them, whatever the values: names
    /// that need escaping, missing status and code, non-finite and odd timings.
    #[test]
    fn attempts_json_is_what_serde_writes() {
        let loaded = crate::load_str(
            "[providers.up]\nkind = \"mock\"\nmodels = [\"gpt-4o\", \"m \\\"q\\\" \\\\ é \\t\\u0001 ✓\"]\n\
             [targets.plain]\nmodel = \"gpt-4o\"\n\
             [targets.odd]\nmodel = \"m \\\"q\\\" \\\\ é \\t\\u0001 ✓\"\n",
            None,
            &|_| None,
            1,
        )
        .unwrap();
        let project = loaded.snapshot.project("default").unwrap();
        let target = |name: &str| {
            project
                .implicit
                .values()
                .flat_map(|r| match &*r.body {
                    crate::model::RouteBody::Steps(s) => s
                        .iter()
                        .flat_map(|s| s.targets.iter().map(|t| t.target.clone()))
                        .collect::<Vec<_>>(),
                    _ => Vec::new(),
                })
                .find(|t| t.name == name)
                .unwrap()
        };
        let attempt =
            |t: &str, status, code, retry, degraded, started_ms, latency_ms| AttemptRecord {
                target: target(t),
                status,
                error_code: code,
                retry,
                degraded,
                started_ms,
                latency_ms,
            };
        let cases = [
            vec![],
            vec![attempt("plain", Some(200), None, 0, false, 0.0, 0.421)],
            vec![
                attempt("odd", None, Some("timeout"), 3, true, 1e-7, 12_345.678_9),
                attempt(
                    "plain",
                    Some(429),
                    Some("rate_limited"),
                    4_000_000_000,
                    false,
                    f64::NAN,
                    f64::INFINITY,
                ),
                attempt("plain", Some(65535), Some("q\"uote"), 1, false, -0.0, 1e300),
            ],
        ];
        for attempts in cases {
            assert_eq!(
                attempts_json(&attempts),
                serde_json::to_string(&attempts).unwrap()
            );
        }
    }

    #[test]
    fn a_trace_id_is_a_uuidv7_carrying_the_trace_time() {
        let (a, at) = new_trace_id();
        let (b, _) = new_trace_id();
        assert_ne!(a, b);
        let u = uuid::Uuid::try_parse(&a).unwrap();
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(u.hyphenated().to_string(), a, "hyphenated lowercase");
        assert_eq!(id_time_ms(&u), Some(at));
        assert_eq!(id_time_ms(&uuid::Uuid::new_v4()), None);
    }

    /// A store that never finishes a write: the writer is stuck, the queue fills.
    struct Stuck;
    impl TraceStore for Stuck {
        fn write(
            &self,
            _batch: Vec<TraceRecord>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Written> + Send + '_>> {
            Box::pin(std::future::pending())
        }
    }

    /// Notes when each batch arrives and how large it is.
    struct Clocked(std::sync::Mutex<Vec<(tokio::time::Instant, usize)>>);
    impl TraceStore for Clocked {
        fn write(
            &self,
            batch: Vec<TraceRecord>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Written> + Send + '_>> {
            if let Ok(mut seen) = self.0.lock() {
                seen.push((tokio::time::Instant::now(), batch.len()));
            }
            Box::pin(async move { (batch, Ok(())) })
        }
    }

    /// A backlog goes out in full batches one after another: the pause between batches (to
    /// let records gather) is only taken when the writer has caught up.
    #[tokio::test(start_paused = true)]
    async fn a_backlog_is_written_without_pausing_between_full_batches() {
        let stop = tokio_util::sync::CancellationToken::new();
        let store = Arc::new(Clocked(std::sync::Mutex::new(Vec::new())));
        let (sink, _writer) =
            TraceSink::start_with(4096, stop, Some(store.clone()), Arc::new(Metrics::new()));
        for _ in 0..(2 * BATCH_MAX + 100) {
            sink.record(TraceRecord::default());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let seen = store.0.lock().map(|s| s.clone()).unwrap_or_default();
        let sizes: Vec<usize> = seen.iter().map(|s| s.1).collect();
        assert_eq!(sizes, [BATCH_MAX, BATCH_MAX, 100]);
        assert_eq!(
            seen[2].0 - seen[0].0,
            std::time::Duration::ZERO,
            "no pause: {seen:?}"
        );
        assert_eq!(sink.written(), 2 * BATCH_MAX as u64 + 100);
        assert_eq!(sink.dropped(), 0);
    }

    /// A store that loses what it was given and says so.
    struct Lost(std::sync::atomic::AtomicUsize);
    impl TraceStore for Lost {
        fn write(
            &self,
            _batch: Vec<TraceRecord>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Written> + Send + '_>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async { (Vec::new(), Err("gone".to_string())) })
        }
    }

    /// A batch the store could not give back is counted as dropped, whole, and not retried
    /// (a retry would "store" an empty batch and count the records as written).
    #[tokio::test(start_paused = true)]
    async fn a_batch_the_store_lost_counts_as_dropped() {
        let stop = tokio_util::sync::CancellationToken::new();
        let store = Arc::new(Lost(Default::default()));
        let (sink, _writer) =
            TraceSink::start_with(64, stop, Some(store.clone()), Arc::new(Metrics::new()));
        for _ in 0..5 {
            sink.record(TraceRecord::default());
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        assert_eq!(store.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!((sink.written(), sink.dropped()), (0, 5));
    }

    /// Captured text waiting in the queue is bounded in bytes: past the budget a record goes
    /// without its content (counted), and what the writer took frees the budget again.
    #[tokio::test]
    async fn queued_content_is_bounded_in_bytes() {
        let with_content = |mib: usize| TraceRecord {
            content: Some(Box::new(Captured {
                request: "x".repeat(mib << 20),
                ..Default::default()
            })),
            ..Default::default()
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let (sink, _writer) =
            TraceSink::start_with(16, stop, Some(Arc::new(Stuck)), Arc::new(Metrics::new()));
        // The writer takes a first record and stays stuck writing it: the rest wait.
        sink.record(TraceRecord::default());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        sink.record(with_content(40));
        sink.record(with_content(40));
        sink.record(with_content(20));
        assert_eq!(
            sink.metrics().trace_content_dropped.get(),
            1,
            "40 + 20 fit in 64 MiB"
        );
        assert_eq!(sink.dropped(), 0, "the record itself is kept");

        // A writer that drains frees the budget.
        let (sink, _writer) = TraceSink::start(16, tokio_util::sync::CancellationToken::new());
        for _ in 0..3 {
            sink.record(with_content(40));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(sink.metrics().trace_content_dropped.get(), 0);
        assert_eq!(sink.written(), 3);
    }

    /// A non-streaming answer's usage is read by the writer (the record holds the answer till
    /// then); an answer too big for the queue's budget is read at once and does not cost the
    /// record its content.
    #[tokio::test]
    async fn unread_answers_are_settled_by_the_writer_or_at_once_when_over_budget() {
        let answer = |pad: usize| {
            let mut body = format!(r#"{{"model":"m","x":"{}""#, "y".repeat(pad));
            body.push_str(
                r#","usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
            );
            TraceRecord {
                unread_answer: Some((bytes::Bytes::from(body), crate::model::Price::default())),
                content: Some(Box::new(Captured {
                    request: "x".repeat(1 << 20),
                    ..Default::default()
                })),
                ..Default::default()
            }
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let (sink, _writer) =
            TraceSink::start_with(16, stop, Some(Arc::new(Stuck)), Arc::new(Metrics::new()));
        sink.record(TraceRecord::default());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        sink.record(answer(70 << 20));
        assert_eq!(sink.metrics().trace_content_dropped.get(), 0);
        assert_eq!(
            sink.content_bytes.load(Ordering::Relaxed),
            1 << 20,
            "only the content waits"
        );

        let (sink, _writer) = TraceSink::start(16, tokio_util::sync::CancellationToken::new());
        sink.record(answer(10));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(sink.written(), 1);
        assert_eq!(sink.content_bytes.load(Ordering::Relaxed), 0);
        let text = sink.metrics().encode();
        assert!(
            text.lines()
                .any(|l| l.starts_with("gen_ai_client_token_usage_sum")
                    && l.contains("gen_ai_token_type=\"input\"} 7")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let stop = tokio_util::sync::CancellationToken::new();
        let (sink, _writer) =
            TraceSink::start_with(4, stop, Some(Arc::new(Stuck)), Arc::new(Metrics::new()));
        // Let the writer take a first batch and get stuck writing it.
        sink.record(TraceRecord::default());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        for _ in 0..100 {
            sink.record(TraceRecord::default()); // returns at once even though nothing drains
        }
        assert_eq!(sink.dropped(), 96, "4 queued, the rest dropped and counted");
        assert!(
            sink.metrics()
                .encode()
                .contains("signalbox_traces_dropped_total 96")
        );
        // The dropped requests still count in the request metrics (with the one the writer
        // took); the 4 queued count once written.
        let counted: u64 = sink
            .metrics()
            .encode()
            .lines()
            .filter(|l| l.starts_with("gen_ai_client_operation_duration_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(counted, 97);
    }

    #[test]
    fn an_attempt_serialises_with_provider_target_and_model_names() {
        let env = |_: &str| None;
        let loaded = crate::config::load_str(
            "[providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\"]\n[targets.t]\nmodel = \"echo-1\"\n",
            None,
            &env,
            1,
        )
        .unwrap();
        let route = &loaded.snapshot.project("default").unwrap().implicit["echo-1"];
        let crate::model::RouteBody::Steps(steps) = &*route.body else {
            panic!()
        };
        let rec = AttemptRecord {
            target: steps[0].targets[0].target.clone(),
            status: Some(200),
            error_code: None,
            retry: 0,
            degraded: false,
            started_ms: 0.0,
            latency_ms: 1.5,
        };
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["provider"], "demo");
        assert_eq!(v["target"], "t");
        assert_eq!(v["model"], "echo-1");
        assert_eq!(v["status"], 200);
    }
}
