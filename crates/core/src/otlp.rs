//! Optional OTLP export: one span per request, `{operation} {model}` with the OpenTelemetry
//! GenAI attributes, and one client span per upstream attempt, sent as OTLP/HTTP protobuf
//! (types from `opentelemetry-proto`) to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`.
//!
//! Spans are built from trace records by the trace writer, off the request path, and sent by
//! their own task through a bounded queue: a slow or absent collector drops batches (logged,
//! counted), never slows a request. With export on, the gateway joins the caller's W3C trace
//! (or starts one) and sends each attempt upstream with a `traceparent` naming that
//! attempt's span.

use crate::trace::{TraceRecord, TraceStore};
use http::HeaderValue;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether requests should carry span ids (an exporter is running in this process).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The W3C identity of one request's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    pub trace: [u8; 16],
    pub span: [u8; 8],
    /// The caller's span, when it sent a valid `traceparent`.
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl SpanIds {
    /// Join the caller's trace (a valid version-00 `traceparent`), or start a new one.
    pub fn new(traceparent: Option<&str>) -> SpanIds {
        let span = nonzero(rand::random());
        if let Some(tp) = traceparent {
            let parts: Vec<&str> = tp.trim().split('-').collect();
            if let [version, trace, parent, flags] = parts[..]
                && version.len() == 2
                && version != "ff"
                && let (Some(trace), Some(parent), Some(flags)) = (
                    hex_bytes::<16>(trace),
                    hex_bytes::<8>(parent),
                    hex_bytes::<1>(flags),
                )
                && trace != [0; 16]
                && parent != [0; 8]
            {
                return SpanIds {
                    trace,
                    span,
                    parent: Some(parent),
                    sampled: flags[0] & 1 == 1,
                };
            }
        }
        let mut trace: [u8; 16] = rand::random();
        if trace == [0; 16] {
            trace[15] = 1;
        }
        SpanIds {
            trace,
            span,
            parent: None,
            sampled: true,
        }
    }

    /// The span id of attempt `n` (0-based): derived from the request's, so the header sent
    /// upstream and the exported span agree without storing anything per attempt.
    pub fn attempt_span(&self, n: usize) -> [u8; 8] {
        let mut z = u64::from_be_bytes(self.span)
            .wrapping_add((n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        nonzero((z ^ (z >> 31)).to_be_bytes())
    }

    /// The `traceparent` attempt `n` carries upstream.
    pub fn upstream_traceparent(&self, n: usize) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!(
            "00-{}-{}-{}",
            hex(&self.trace),
            hex(&self.attempt_span(n)),
            if self.sampled { "01" } else { "00" }
        ))
        .ok()
    }
}

fn nonzero(mut b: [u8; 8]) -> [u8; 8] {
    if b == [0; 8] {
        b[7] = 1;
    }
    b
}

/// Where and how spans are sent, from the standard OpenTelemetry variables.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    pub service_name: String,
}

impl Settings {
    /// `None` when export is not asked for (no endpoint set, or `OTEL_TRACES_EXPORTER=none`).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Settings>, String> {
        if env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none") {
            return Ok(None);
        }
        let url = match (
            env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").filter(|v| !v.trim().is_empty()),
            env("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.trim().is_empty()),
        ) {
            (Some(u), _) => u.trim().to_string(),
            (None, Some(base)) => format!("{}/v1/traces", base.trim().trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        match reqwest::Url::parse(&url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => return Err(format!("OTLP endpoint '{url}' is not an http(s) URL")),
        }
        if let Some(p) =
            env("OTEL_EXPORTER_OTLP_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            && p.trim() != "http/protobuf"
        {
            return Err(format!(
                "OTLP protocol '{}' is not supported: Signalbox sends http/protobuf",
                p.trim()
            ));
        }
        let mut headers = Vec::new();
        for var in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            for pair in env(var).unwrap_or_default().split(',') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                let name = http::HeaderName::from_bytes(k.trim().as_bytes())
                    .map_err(|_| format!("{var}: '{}' is not a header name", k.trim()))?;
                let mut value = HeaderValue::from_str(&percent_decode(v.trim())).map_err(|_| {
                    format!("{var}: the value of '{}' is not a header value", k.trim())
                })?;
                value.set_sensitive(true);
                headers.push((name, value));
            }
        }
        let service_name = env("OTEL_SERVICE_NAME")
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "signalbox".into());
        Ok(Some(Settings {
            url,
            headers,
            service_name,
        }))
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS` values are URL-encoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Batches of spans waiting to be sent.
const QUEUE: usize = 64;

/// The running exporter. Cheap to share.
pub struct Exporter {
    tx: tokio::sync::mpsc::Sender<Vec<Span>>,
    dropped: Arc<AtomicU64>,
}

impl Exporter {
    /// Start the sending task; it sends what is queued and ends once the exporter is dropped
    /// (the trace writer drops it after its last batch).
    pub fn start(settings: Settings) -> Result<Arc<Exporter>, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the OTLP client: {e}"))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Span>>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let exporter = Arc::new(Exporter {
            tx,
            dropped: dropped.clone(),
        });
        let resource = Resource {
            attributes: vec![
                kv(
                    "service.name",
                    Value::StringValue(settings.service_name.clone()),
                ),
                kv(
                    "service.version",
                    Value::StringValue(env!("CARGO_PKG_VERSION").into()),
                ),
            ],
            ..Default::default()
        };
        tokio::spawn(async move {
            let mut failing = false;
            while let Some(spans) = rx.recv().await {
                let n = spans.len();
                let body = encode(&resource, spans);
                let mut rb = client
                    .post(&settings.url)
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf");
                for (k, v) in &settings.headers {
                    rb = rb.header(k, v);
                }
                match rb.body(body).send().await {
                    Ok(r) if r.status().is_success() => {
                        if failing {
                            tracing::info!("OTLP export works again");
                        }
                        failing = false;
                    }
                    outcome => {
                        dropped.fetch_add(n as u64, Ordering::Relaxed);
                        if !failing {
                            let why = match outcome {
                                Ok(r) => format!("status {}", r.status().as_u16()),
                                Err(e) => e.without_url().to_string(),
                            };
                            tracing::warn!(
                                spans = n,
                                "OTLP export failed ({why}); spans are dropped until it works"
                            );
                        }
                        failing = true;
                    }
                }
            }
        });
        ENABLED.store(true, Ordering::Relaxed);
        Ok(exporter)
    }

    /// Spans not delivered (queue full or the collector failed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queue the spans of a batch of records; never waits.
    pub fn export(&self, batch: &[TraceRecord]) {
        let spans: Vec<Span> = batch
            .iter()
            .filter(|r| !r.exported)
            .flat_map(spans_of)
            .collect();
        if spans.is_empty() {
            return;
        }
        let n = spans.len() as u64;
        if self.tx.try_send(spans).is_err() {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

fn encode(resource: &Resource, spans: Vec<Span>) -> Vec<u8> {
    use prost::Message;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "signalbox".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, Value::StringValue(v.into()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, Value::IntValue(v))
}

/// The GenAI operation name of an endpoint.
fn operation(endpoint: &str) -> &str {
    match endpoint {
        "chat" | "responses" => "chat",
        "embeddings" => "embeddings",
        other => other,
    }
}

/// GenAI `gen_ai.provider.name` of a provider kind.
fn provider_name(kind: crate::model::ProviderKind) -> &'static str {
    use crate::model::ProviderKind as K;
    match kind {
        K::OpenAi => "openai",
        K::AzureOpenAi => "azure.ai.openai",
        K::Anthropic => "anthropic",
        K::Gemini => "gcp.gemini",
        K::Mock => "signalbox.mock",
    }
}

fn nanos(ms: f64) -> u64 {
    (ms.max(0.0) * 1_000_000.0) as u64
}

/// The request's span and one client span per attempt.
fn spans_of(r: &TraceRecord) -> Vec<Span> {
    let Some(ids) = r.otel else {
        return Vec::new();
    };
    if !ids.sampled {
        return Vec::new();
    }
    let start = r.time_unix_ms * 1_000_000;
    let end = start + nanos(r.latency_ms);
    let last = r.attempts.last();
    let model = last
        .map(|a| a.target.model.as_str())
        .or(r.requested_model.as_deref())
        .unwrap_or("");
    let op = operation(r.endpoint);
    let mut attrs = vec![
        s("gen_ai.operation.name", op),
        s("signalbox.request_id", &r.id),
        s("signalbox.endpoint", r.endpoint),
        i("http.response.status_code", i64::from(r.status)),
        kv("signalbox.stream", Value::BoolValue(r.stream)),
    ];
    if let Some(m) = &r.requested_model {
        attrs.push(s("gen_ai.request.model", m));
    }
    if let Some(a) = last {
        attrs.push(s(
            "gen_ai.provider.name",
            provider_name(a.target.provider.kind),
        ));
        attrs.push(s("gen_ai.response.model", &a.target.model));
        attrs.push(s("signalbox.provider", &a.target.provider.id));
        attrs.push(s("signalbox.target", &a.target.name));
    }
    if let Some(route) = &r.route {
        attrs.push(s("signalbox.route", route));
    }
    if let Some(v) = &r.serving_variant {
        attrs.push(s("signalbox.variant", v));
    }
    if let Some(u) = &r.usage {
        attrs.push(i("gen_ai.usage.input_tokens", u.prompt_tokens as i64));
        attrs.push(i("gen_ai.usage.output_tokens", u.completion_tokens as i64));
        if u.cached_tokens() > 0 {
            attrs.push(i(
                "gen_ai.usage.cache_read.input_tokens",
                u.cached_tokens() as i64,
            ));
        }
    }
    if let Some(c) = r.cost_usd {
        attrs.push(kv("signalbox.cost_usd", Value::DoubleValue(c)));
    }
    if let Some(t) = r.ttft_ms {
        attrs.push(kv(
            "gen_ai.server.time_to_first_token",
            Value::DoubleValue(t / 1000.0),
        ));
    }
    attrs.push(i("signalbox.attempts", r.attempts.len() as i64));
    let failed = r.error_code.is_some() || r.status >= 400;
    if let Some(code) = r.error_code {
        attrs.push(s("error.type", code));
    }
    let status = |failed: bool, message: String| {
        Some(Status {
            message,
            code: if failed {
                status::StatusCode::Error as i32
            } else {
                status::StatusCode::Unset as i32
            },
        })
    };
    let mut out = Vec::with_capacity(1 + r.attempts.len());
    out.push(Span {
        trace_id: ids.trace.to_vec(),
        span_id: ids.span.to_vec(),
        parent_span_id: ids.parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags: 0x01,
        name: if model.is_empty() {
            op.to_string()
        } else {
            format!("{op} {model}")
        },
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: attrs,
        status: status(failed, r.error_code.unwrap_or_default().to_string()),
        ..Default::default()
    });
    for (n, a) in r.attempts.iter().enumerate() {
        let a_start = start + nanos(a.started_ms);
        let mut attrs = vec![
            s("gen_ai.operation.name", op),
            s(
                "gen_ai.provider.name",
                provider_name(a.target.provider.kind),
            ),
            s("gen_ai.request.model", &a.target.model),
            s("signalbox.provider", &a.target.provider.id),
            s("signalbox.target", &a.target.name),
            i("signalbox.retry", i64::from(a.retry)),
        ];
        if let Some(st) = a.status {
            attrs.push(i("http.response.status_code", i64::from(st)));
        }
        if let Some(code) = a.error_code {
            attrs.push(s("error.type", code));
        }
        let a_failed = a.error_code.is_some() || a.status.is_none_or(|s| s >= 400);
        out.push(Span {
            trace_id: ids.trace.to_vec(),
            span_id: ids.attempt_span(n).to_vec(),
            parent_span_id: ids.span.to_vec(),
            flags: 0x01,
            name: format!("{op} {}", a.target.model),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: a_start,
            end_time_unix_nano: a_start + nanos(a.latency_ms),
            attributes: attrs,
            status: status(a_failed, a.error_code.unwrap_or_default().to_string()),
            ..Default::default()
        });
    }
    out
}

/// A trace store that also exports each batch as spans (before storing it, if there is a
/// store: export never waits on the store, nor the store on export).
pub struct Tee {
    pub exporter: Arc<Exporter>,
    pub store: Option<Arc<dyn TraceStore>>,
}

impl TraceStore for Tee {
    fn write(
        &self,
        batch: Vec<TraceRecord>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = crate::trace::Written> + Send + '_>>
    {
        let mut batch = batch;
        self.exporter.export(&batch);
        for r in &mut batch {
            r.exported = true;
        }
        Box::pin(async move {
            match &self.store {
                Some(s) => s.write(batch).await,
                None => (batch, Ok(())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch the store refuses comes back through the exporter on each retry: its spans
    /// go out once.
    #[tokio::test]
    async fn a_batch_the_store_retries_is_exported_once() {
        struct Refuses;
        impl TraceStore for Refuses {
            fn write(
                &self,
                batch: Vec<TraceRecord>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = crate::trace::Written> + Send + '_>,
            > {
                Box::pin(async move { (batch, Err("locked".to_string())) })
            }
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let exporter = Arc::new(Exporter {
            tx,
            dropped: Default::default(),
        });
        let tee = Tee {
            exporter,
            store: Some(Arc::new(Refuses)),
        };
        let mut batch = vec![TraceRecord {
            otel: Some(SpanIds::new(None)),
            ..Default::default()
        }];
        for _ in 0..3 {
            batch = tee.write(batch).await.0;
        }
        let mut sent = 0;
        while let Ok(spans) = rx.try_recv() {
            sent += spans.len();
        }
        assert_eq!(sent, 1, "one SERVER span, once");
    }

    #[test]
    fn a_callers_traceparent_is_joined_and_a_bad_one_starts_a_new_trace() {
        let ids = SpanIds::new(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert_eq!(hex(&ids.trace), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            ids.parent.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(ids.sampled);
        let up = ids.upstream_traceparent(0).unwrap();
        let up = up.to_str().unwrap();
        assert!(up.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_ne!(
            &up[36..52],
            "00f067aa0ba902b7",
            "upstream's parent is the gateway's attempt span"
        );
        assert_ne!(ids.attempt_span(0), ids.attempt_span(1));
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let ids = SpanIds::new(Some(bad));
            assert_eq!(ids.parent, None, "{bad}");
            assert_ne!(hex(&ids.trace), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
        let unsampled = SpanIds::new(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ));
        assert!(!unsampled.sampled);
        assert!(
            unsampled
                .upstream_traceparent(0)
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("-00")
        );
    }

    #[test]
    fn settings_come_from_the_standard_variables() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(Settings::from_env(&env(&[])).unwrap().is_none());
        let s = Settings::from_env(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=a%20b,other=1"),
            ("OTEL_SERVICE_NAME", "gw-eu"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.url, "http://collector:4318/v1/traces");
        assert_eq!(s.headers[0].1, "a b");
        assert_eq!(s.service_name, "gw-eu");
        let s = Settings::from_env(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example/otlp",
            ),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.url, "https://traces.example/otlp");
        assert!(Settings::from_env(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x")])).is_err());
        assert!(
            Settings::from_env(&env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            ]))
            .is_err()
        );
        assert!(
            Settings::from_env(&env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x"),
                ("OTEL_TRACES_EXPORTER", "none")
            ]))
            .unwrap()
            .is_none()
        );
    }
}
