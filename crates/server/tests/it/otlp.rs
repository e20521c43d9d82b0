//! OTLP export: an in-process OTLP/HTTP receiver gets one span per request and one per
//! upstream attempt, in the caller's W3C trace, and the upstream sees the attempt's span as
//! its parent.

use crate::common::*;
use fake_upstream::FakeUpstream;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
    services: Arc<Mutex<Vec<String>>>,
    content_types: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    /// An OTLP/HTTP collector on loopback; returns its base URL.
    async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
                let me = me.clone();
                async move {
                    let req = ExportTraceServiceRequest::decode(body).unwrap();
                    me.content_types
                        .lock()
                        .unwrap()
                        .push(headers["content-type"].to_str().unwrap().to_string());
                    for rs in req.resource_spans {
                        for kv in rs.resource.unwrap().attributes {
                            if kv.key == "service.name"
                                && let Some(AnyValue::StringValue(s)) = kv.value.unwrap().value
                            {
                                me.services.lock().unwrap().push(s);
                            }
                        }
                        for ss in rs.scope_spans {
                            me.spans.lock().unwrap().extend(ss.spans);
                        }
                    }
                    http::StatusCode::OK
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        url
    }

    async fn wait_for(&self, n: usize) -> Vec<Span> {
        let t0 = Instant::now();
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "only {} spans",
                spans.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn attr(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

fn str_attr(span: &Span, key: &str) -> Option<String> {
    match attr(span, key) {
        Some(AnyValue::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key) {
        Some(AnyValue::IntValue(i)) => Some(i),
        _ => None,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn spans_join_the_callers_trace_with_genai_attributes_and_one_child_per_attempt() {
    let rx = Receiver::default();
    let collector = rx.start().await;
    let fake = FakeUpstream::openai().fail_first(1, 503).start().await;
    let toml = format!(
        "[server]\nauth = \"off\"\n{FAST_RETRY}\n{}[targets.t]\nprovider = \"up\"\nmodel = \"gpt-4o\"\n[routes.r]\ntargets = [\"t\"]\n",
        provider("up", &fake.base_url(), &["gpt-4o"])
    );
    let gw = Gw::start_with_env(
        &toml,
        &[
            ("UP_KEY", "k"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_SERVICE_NAME", "signalbox-test"),
        ],
    )
    .await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = gw
        .post("/v1/chat/completions")
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .json(&json!({"model": "route::r", "messages": [{"role": "user", "content": "Say hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let request_id = header(&r, "x-request-id").unwrap().to_string();

    let spans = rx.wait_for(3).await;
    let server = spans
        .iter()
        .find(|s| s.parent_span_id == hex_to(caller_span))
        .expect("the request's span, child of the caller's");
    assert_eq!(hex(&server.trace_id), caller_trace);
    assert_eq!(server.name, "chat gpt-4o");
    assert_eq!(server.kind, 2, "SERVER");
    assert_eq!(
        str_attr(server, "gen_ai.operation.name").as_deref(),
        Some("chat")
    );
    assert_eq!(
        str_attr(server, "gen_ai.request.model").as_deref(),
        Some("route::r")
    );
    assert_eq!(
        str_attr(server, "gen_ai.response.model").as_deref(),
        Some("gpt-4o")
    );
    assert_eq!(
        str_attr(server, "gen_ai.provider.name").as_deref(),
        Some("openai")
    );
    assert_eq!(
        str_attr(server, "signalbox.route").as_deref(),
        Some("route:r")
    );
    assert_eq!(str_attr(server, "signalbox.request_id"), Some(request_id));
    assert!(int_attr(server, "gen_ai.usage.input_tokens").unwrap() > 0);
    assert_eq!(int_attr(server, "gen_ai.usage.output_tokens"), Some(5));
    assert_eq!(int_attr(server, "http.response.status_code"), Some(200));
    assert!(server.end_time_unix_nano > server.start_time_unix_nano);
    assert_eq!(rx.services.lock().unwrap()[0], "signalbox-test");
    assert_eq!(
        rx.content_types.lock().unwrap()[0],
        "application/x-protobuf"
    );

    // One client span per attempt: the 503, then the retry that answered.
    let mut attempts: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == server.span_id)
        .collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts
            .iter()
            .all(|s| s.kind == 3 && s.trace_id == server.trace_id)
    );
    assert_eq!(
        int_attr(attempts[0], "http.response.status_code"),
        Some(503)
    );
    assert_eq!(
        str_attr(attempts[0], "error.type").as_deref(),
        Some("overloaded")
    );
    assert_eq!(
        int_attr(attempts[1], "http.response.status_code"),
        Some(200)
    );
    assert!(attempts[1].start_time_unix_nano >= attempts[0].end_time_unix_nano);

    // Upstream, each attempt carried the caller's trace with its own span as the parent.
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    for (req, span) in reqs.iter().zip(&attempts) {
        let tp = req.header("traceparent").unwrap();
        assert_eq!(tp, format!("00-{caller_trace}-{}-01", hex(&span.span_id)));
    }
}

#[tokio::test]
async fn without_a_traceparent_the_gateway_starts_the_trace_and_propagates_it() {
    let rx = Receiver::default();
    let collector = rx.start().await;
    let fake = FakeUpstream::openai().start().await;
    let toml = format!(
        "[server]\nauth = \"off\"\n{}[targets.t]\nprovider = \"up\"\nmodel = \"gpt-4o\"\n[routes.r]\ntargets = [\"t\"]\n",
        provider("up", &fake.base_url(), &["gpt-4o"])
    );
    let gw = Gw::start_with_env(
        &toml,
        &[
            ("UP_KEY", "k"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &format!("{collector}/v1/traces"),
            ),
        ],
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    let spans = rx.wait_for(2).await;
    let server = spans.iter().find(|s| s.parent_span_id.is_empty()).unwrap();
    assert_eq!(server.trace_id.len(), 16);
    let tp = fake.requests()[0]
        .header("traceparent")
        .unwrap()
        .to_string();
    assert!(
        tp.starts_with(&format!("00-{}-", hex(&server.trace_id))),
        "{tp}"
    );
    // A failed request's span says why.
    let r = gw.chat("route::nope", None).await;
    assert_eq!(r.status(), 404);
    let spans = rx.wait_for(3).await;
    let failed = spans
        .iter()
        .find(|s| int_attr(s, "http.response.status_code") == Some(404))
        .unwrap();
    assert_eq!(
        str_attr(failed, "error.type").as_deref(),
        Some("model_not_found")
    );
    assert_eq!(failed.status.as_ref().unwrap().code, 2, "ERROR");
}

fn hex_to(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
