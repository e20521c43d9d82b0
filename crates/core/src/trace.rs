//! One trace record per request, handed to a bounded queue; a background writer batches
//! them out. Recording never blocks or fails a request: when the queue is full the record
//! is dropped and counted.

use crate::sse::Usage;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    pub latency_ms: f64,
}

impl Serialize for AttemptRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("AttemptRecord", 8)?;
        st.serialize_field("provider", &self.target.provider.id)?;
        st.serialize_field("target", &self.target.name)?;
        st.serialize_field("model", &self.target.model)?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("error_code", &self.error_code)?;
        st.serialize_field("retry", &self.retry)?;
        st.serialize_field("degraded", &self.degraded)?;
        st.serialize_field("latency_ms", &self.latency_ms)?;
        st.end()
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
    pub invalid_stream_events: u32,
}

/// How long the writer lets records gather between batches.
const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(25);

/// Where records go. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TraceSink {
    tx: mpsc::Sender<TraceRecord>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl TraceSink {
    /// Start the background writer. `stop` ends it once what is queued is written
    /// (shutdown flushes); it also ends when every sink clone is dropped.
    pub fn start(
        capacity: usize,
        stop: tokio_util::sync::CancellationToken,
    ) -> (TraceSink, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<TraceRecord>(capacity.max(1));
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let handle = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(256);
            loop {
                let n = tokio::select! {
                    n = rx.recv_many(&mut batch, 256) => n,
                    _ = stop.cancelled() => {
                        while let Ok(r) = rx.try_recv() {
                            batch.push(r);
                        }
                        write_batch(&mut batch, &w);
                        return;
                    }
                };
                if n == 0 {
                    return;
                }
                write_batch(&mut batch, &w);
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
                dropped: Arc::new(AtomicU64::new(0)),
                written,
            },
            handle,
        )
    }

    pub fn record(&self, r: TraceRecord) {
        if self.tx.try_send(r).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

fn write_batch(batch: &mut Vec<TraceRecord>, written: &AtomicU64) {
    let log = tracing::enabled!(target: "signalbox::trace", tracing::Level::DEBUG);
    for r in batch.drain(..) {
        if log && let Ok(line) = serde_json::to_string(&r) {
            tracing::debug!(target: "signalbox::trace", "{line}");
        }
        written.fetch_add(1, Ordering::Relaxed);
    }
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
            latency_ms: 1.5,
        };
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["provider"], "demo");
        assert_eq!(v["target"], "t");
        assert_eq!(v["model"], "echo-1");
        assert_eq!(v["status"], 200);
    }
}
