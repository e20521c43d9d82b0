//! Traces, cost and metrics: what a request leaves behind, queried through the admin API.

use crate::admin::{BASE, BOOT_KEY, Node, each_store};
use crate::common::{chat_body, client, error_of, header};
use fake_upstream::{Behaviour, FakeHandle, FakeUpstream};
use serde_json::{Value, json};
use signalbox_store::MasterKey;
use std::time::{Duration, Instant};

/// Wait until the project holds `n` traces (the writer batches every 25 ms).
async fn traces(node: &Node, query: &str, n: usize) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let (s, body) = node
            .get_json(&format!("/projects/default/traces?{query}"))
            .await;
        assert_eq!(s, 200, "{body}");
        let data = body["data"].as_array().unwrap().clone();
        if data.len() >= n {
            return data;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "only {} of {n} traces: {body}",
            data.len()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn provider(fake: &FakeHandle, id: &str) -> Value {
    json!({"kind": "openai", "base_url": fake.base_url(), "models": ["gpt-4o", "unpriced-model"], "credential": format!("credential::{id}")})
}

async fn upstream(node: &Node, id: &str, fake: &FakeHandle) {
    let r = node
        .put_json(
            &format!("/projects/default/credentials/{id}"),
            json!({"value": "sk-upstream"}),
        )
        .await;
    assert!(r.status().is_success());
    let r = node
        .put_json(
            &format!("/projects/default/providers/{id}"),
            provider(fake, id),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn streamed_and_plain_requests_leave_complete_traces_with_tokens_and_cost() {
    let fake = FakeUpstream::openai().start().await;
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        upstream(&node, "up", &fake).await;
        node.put_json("/projects/default/targets/t", json!({"provider": "up", "model": "gpt-4o"})).await;
        node.put_json("/projects/default/routes/r", json!({"targets": ["t"]})).await;

        let r = client()
            .post(format!("{}/v1/chat/completions", node.url))
            .bearer_auth(BOOT_KEY)
            .header("x-request-id", "client-123")
            .header("x-signalbox-user-id", "u-1")
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .json(&json!({"model": "route::r", "messages": [{"role": "user", "content": "Say hello"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let request_id = header(&r, "x-request-id").unwrap().to_string();
        let body: Value = r.json().await.unwrap();
        let usage = body["usage"].clone();
        // A stream whose caller did not ask for usage: the trace still has it.
        let r = client()
            .post(format!("{}/v1/chat/completions", node.url))
            .bearer_auth(BOOT_KEY)
            .json(&chat_body("route::r", true))
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        assert!(!text.contains("\"usage\":{"), "the caller did not ask for usage: {text}");

        let data = traces(&node, "order=asc", 2).await;
        let plain = &data[0];
        assert_eq!(plain["id"], request_id.as_str(), "{db}");
        assert_eq!(plain["client_request_id"], "client-123");
        assert_eq!(plain["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(plain["route"], "route:r");
        assert_eq!(plain["route_version"], 1);
        assert_eq!(plain["layer"], "route");
        assert_eq!(plain["provider"], "up");
        assert_eq!(plain["model"], "gpt-4o");
        assert_eq!(plain["key_id"].as_str().map(|k| k.starts_with("key_")), Some(true));
        assert_eq!(plain["user_id"], "u-1");
        assert_eq!(plain["status"], 200);
        assert_eq!(plain["stream"], false);
        assert_eq!(plain["input_tokens"], usage["prompt_tokens"]);
        assert_eq!(plain["output_tokens"], usage["completion_tokens"]);
        // gpt-4o from the shipped table: $2.50 in, $10 out per million.
        let expected = (usage["prompt_tokens"].as_f64().unwrap() * 2.5 + usage["completion_tokens"].as_f64().unwrap() * 10.0) / 1e6;
        assert!((plain["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-12, "{plain}");
        assert_eq!(plain["attempts"].as_array().unwrap().len(), 1);
        let streamed = &data[1];
        assert_eq!(streamed["stream"], true);
        assert!(streamed["ttft_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(streamed["input_tokens"], usage["prompt_tokens"]);
        assert!(streamed["output_tokens"].as_i64().unwrap() > 0);
        assert!(streamed["cost_usd"].as_f64().unwrap() > 0.0);
        // One trace by id, and nothing secret in any of it.
        let (s, one) = node.get_json(&format!("/projects/default/traces/{request_id}")).await;
        assert_eq!((s, &one["id"]), (200, &json!(request_id)));
        let all = serde_json::to_string(&data).unwrap();
        assert!(!all.contains(BOOT_KEY) && !all.contains("sk-upstream"));
    })
    .await;
}

#[tokio::test]
async fn a_failover_leaves_one_trace_with_every_attempt_and_unknown_prices_stay_empty() {
    let bad = FakeUpstream::openai()
        .always(Behaviour::status(503))
        .start()
        .await;
    let good = FakeUpstream::openai().start().await;
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        upstream(&node, "bad", &bad).await;
        upstream(&node, "good", &good).await;
        node.put_json("/projects/default/targets/a", json!({"provider": "bad", "model": "gpt-4o"})).await;
        node.put_json("/projects/default/targets/b", json!({"provider": "good", "model": "unpriced-model"})).await;
        let r = node
            .put_json("/projects/default/routes/chain", json!({"strategy": "fallback", "targets": ["a", "b"], "retry": {"max_retries": 1, "backoff_base_ms": 1, "backoff_max_ms": 2}}))
            .await;
        assert!(r.status().is_success());
        assert_eq!(node.chat("route::chain").await.0, 200);
        let data = traces(&node, "route=chain", 1).await;
        assert_eq!(data.len(), 1, "one request, one trace");
        let t = &data[0];
        let attempts = t["attempts"].as_array().unwrap();
        let seen: Vec<(&str, i64, i64)> = attempts
            .iter()
            .map(|a| (a["target"].as_str().unwrap(), a["status"].as_i64().unwrap_or(0), a["retry"].as_i64().unwrap()))
            .collect();
        assert_eq!(seen, vec![("a", 503, 0), ("a", 503, 1), ("b", 200, 0)], "{db}");
        assert_eq!(t["attempt_count"], 3);
        assert_eq!(t["provider"], "good");
        assert!(t["input_tokens"].as_i64().unwrap() > 0);
        assert!(t["cost_usd"].is_null(), "unknown price: empty, never zero: {t}");
        // And the metrics count the retry, the fallback and the unpriced request.
        let m = client().get(format!("{}/metrics", node.url)).send().await.unwrap().text().await.unwrap();
        assert!(m.contains("signalbox_retries_total{route=\"route:chain\"} 1"), "{m}");
        assert!(m.contains("signalbox_fallbacks_total{route=\"route:chain\"} 1"), "{m}");
        assert!(m.contains("signalbox_cost_unknown_total{"), "{m}");
    })
    .await;
}

#[tokio::test]
async fn a_caller_that_hangs_up_before_the_answer_still_leaves_a_trace() {
    let fake = FakeUpstream::openai().always(Behaviour::Hang).start().await;
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        upstream(&node, "slow", &fake).await;
        node.put_json(
            "/projects/default/targets/t",
            json!({"provider": "slow", "model": "gpt-4o"}),
        )
        .await;
        node.put_json("/projects/default/routes/r", json!({"targets": ["t"]}))
            .await;
        let r = client()
            .post(format!("{}/v1/chat/completions", node.url))
            .bearer_auth(BOOT_KEY)
            .timeout(Duration::from_millis(300))
            .json(&chat_body("route::r", false))
            .send()
            .await;
        assert!(r.is_err(), "the caller gave up");
        let data = traces(&node, "route=r", 1).await;
        let t = &data[0];
        assert_eq!(t["status"], 499, "{t}");
        assert_eq!(t["error_code"], "client_closed");
        assert!(t["latency_ms"].as_f64().unwrap() >= 250.0);
        let a = &t["attempts"][0];
        assert_eq!(
            (a["target"].as_str(), a["error_code"].as_str()),
            (Some("t"), Some("client_closed")),
            "{t}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_caller_that_hangs_up_while_sending_its_body_is_traced_as_client_closed() {
    use tokio::io::AsyncWriteExt;
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        let addr = node.url.trim_start_matches("http://").to_string();
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BOOT_KEY}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\":"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(tcp);
        let data = traces(&node, "status=499", 1).await;
        let t = &data[0];
        assert_eq!(t["error_code"], "client_closed", "{t}");
        assert!(t["attempts"].as_array().is_none_or(|a| a.is_empty()), "{t}");
    })
    .await;
}

#[tokio::test]
async fn filters_and_cursor_pages_walk_every_trace_once() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        node.route_to("r", "t", "echo-1").await;
        for _ in 0..5 {
            assert_eq!(node.chat("route::r").await.0, 200);
        }
        assert_eq!(node.chat("route::missing").await.0, 404);
        traces(&node, "", 6).await;
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("/projects/default/traces?route=r&limit=2&cursor={c}"),
                None => "/projects/default/traces?route=r&limit=2".to_string(),
            };
            let (_, page) = node.get_json(&q).await;
            for t in page["data"].as_array().unwrap() {
                seen.push(t["id"].as_str().unwrap().to_string());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((seen.len(), unique.len()), (5, 5), "{db}");
        let (_, errs) = node.get_json("/projects/default/traces?status=error").await;
        assert_eq!(errs["data"].as_array().unwrap().len(), 1);
        assert_eq!(errs["data"][0]["status"], 404);
        assert_eq!(errs["data"][0]["error_code"], "model_not_found");
        let (_, none) = node
            .get_json("/projects/default/traces?status=2xx&endpoint=embeddings")
            .await;
        assert!(none["data"].as_array().unwrap().is_empty());
        // Bad filters name themselves.
        let r = node
            .admin(reqwest::Method::GET, "/projects/default/traces?colour=red")
            .send()
            .await
            .unwrap();
        let (s, e) = error_of(r).await;
        assert_eq!((s, e["error"]["param"].as_str()), (400, Some("colour")));
        let r = node
            .admin(
                reqwest::Method::GET,
                "/projects/default/traces?from=yesterday",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.1["error"]["param"], "from");
        // A status filter the store cannot read is a 400 naming it on every trace endpoint,
        // the streamed export included (it used to cut the connection).
        for path in ["traces", "traces/export", "traces/aggregate"] {
            for status in ["nope", "6xx", "700"] {
                let r = node
                    .admin(
                        reqwest::Method::GET,
                        &format!("/projects/default/{path}?status={status}"),
                    )
                    .send()
                    .await
                    .unwrap();
                let (s, e) = error_of(r).await;
                assert_eq!(
                    (s, e["error"]["param"].as_str()),
                    (400, Some("status")),
                    "{path}?status={status}: {e}"
                );
            }
        }
        // JSON lines export holds every trace.
        let r = node
            .admin(reqwest::Method::GET, "/projects/default/traces/export")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "content-type"), Some("application/x-ndjson"));
        let lines = r.text().await.unwrap();
        assert_eq!(lines.lines().count(), 6);
        assert!(
            lines
                .lines()
                .all(|l| serde_json::from_str::<Value>(l).is_ok())
        );
    })
    .await;
}

/// Seeded records with known figures: the aggregates must match hand-computed values.
#[tokio::test]
async fn aggregates_match_hand_computed_figures() {
    use signalbox_core::trace::{AttemptRecord, TraceRecord};
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        let loaded = signalbox_core::load_str(
            "[providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\"]\n[targets.t]\nmodel = \"echo-1\"\n",
            None,
            &|_| None,
            1,
        )
        .unwrap();
        let route = &loaded.snapshot.project("default").unwrap().implicit["echo-1"];
        let signalbox_core::model::RouteBody::Steps(steps) = &*route.body else { panic!() };
        let target = steps[0].targets[0].target.clone();
        let now = signalbox_store::now_millis() as u64;
        let mut batch = Vec::new();
        // Variant A: latencies 1..=100 ms, every 10th an error; 10 input + 5 output tokens, $0.001 each.
        // Variant B: latencies 200, 400 ms, no errors, no price.
        for i in 1..=100u64 {
            batch.push(TraceRecord {
                id: format!("a-{i:03}"),
                time_unix_ms: now - 1000 + i,
                project: "default".into(),
                endpoint: "chat",
                route: Some("route:exp".into()),
                serving_variant: Some("A".into()),
                status: if i % 10 == 0 { 502 } else { 200 },
                error_code: (i % 10 == 0).then_some("upstream"),
                latency_ms: i as f64,
                ttft_ms: Some(i as f64 / 2.0),
                usage: Some(serde_json::from_value(json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})).unwrap()),
                cost_usd: Some(0.001),
                stream: true,
                attempts: vec![AttemptRecord { target: target.clone(), status: Some(200), error_code: None, retry: 0, degraded: false, started_ms: 0.0, latency_ms: 1.0 }],
                ..Default::default()
            });
        }
        for (i, l) in [200.0, 400.0].into_iter().enumerate() {
            batch.push(TraceRecord {
                id: format!("b-{i}"),
                time_unix_ms: now - 500,
                project: "default".into(),
                endpoint: "chat",
                route: Some("route:exp".into()),
                serving_variant: Some("B".into()),
                status: 200,
                latency_ms: l,
                usage: Some(serde_json::from_value(json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})).unwrap()),
                ..Default::default()
            });
        }
        // An old record outside the time range.
        batch.push(TraceRecord { id: "old".into(), time_unix_ms: now - 86_400_000, project: "default".into(), endpoint: "chat", route: Some("route:exp".into()), serving_variant: Some("A".into()), status: 500, latency_ms: 9999.0, ..Default::default() });
        node.store.insert_traces(&batch).await.unwrap();

        let from = now - 60_000;
        let (s, agg) = node.get_json(&format!("/projects/default/traces/aggregate?by=variant&from={from}")).await;
        assert_eq!(s, 200, "{agg}");
        let a = agg["data"].as_array().unwrap().iter().find(|g| g["group"] == "A").unwrap();
        assert_eq!(a["requests"], 100, "{db}");
        assert_eq!(a["errors"], 10);
        assert_eq!(a["error_rate"], 0.1);
        assert_eq!((a["latency_ms_p50"].as_f64(), a["latency_ms_p95"].as_f64(), a["latency_ms_p99"].as_f64()), (Some(50.0), Some(95.0), Some(99.0)));
        assert_eq!((a["ttft_ms_p50"].as_f64(), a["ttft_ms_p95"].as_f64(), a["ttft_count"].as_i64()), (Some(25.0), Some(47.5), Some(100)));
        assert_eq!((a["input_tokens"].as_i64(), a["output_tokens"].as_i64()), (Some(1000), Some(500)));
        assert!((a["cost_usd"].as_f64().unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(a["priced_requests"], 100);
        let b = agg["data"].as_array().unwrap().iter().find(|g| g["group"] == "B").unwrap();
        assert_eq!((b["requests"].as_i64(), b["latency_ms_p50"].as_f64(), b["latency_ms_p99"].as_f64()), (Some(2), Some(200.0), Some(400.0)));
        assert!(b["cost_usd"].is_null() && b["priced_requests"] == 0);
        // Without a time range the old record counts too.
        let (_, all) = node.get_json("/projects/default/traces/aggregate").await;
        assert_eq!(all["data"][0]["requests"], 103);
        // Retention removes only what is old.
        let deleted = node.store.delete_traces_before((now - 3_600_000) as i64).await.unwrap();
        assert_eq!(deleted, 1);
        let (_, all) = node.get_json("/projects/default/traces/aggregate").await;
        assert_eq!(all["data"][0]["requests"], 102);
        let r = node.admin(reqwest::Method::GET, "/projects/default/traces/aggregate?by=colour").send().await.unwrap();
        assert_eq!(error_of(r).await.1["error"]["param"], "by");
    })
    .await;
}

/// An error that is the answer of a variant reached by failover (a 400 for its params, say)
/// is that variant's: the trace's serving variant and params name it, as the headers do, so the
/// experiment's figures count the error against the variant that gave it.
#[tokio::test]
async fn an_answer_from_a_failover_variant_is_traced_under_that_variant() {
    let down = FakeUpstream::openai()
        .always(Behaviour::status(503))
        .start()
        .await;
    let refuses = FakeUpstream::openai()
        .always(Behaviour::status(400))
        .start()
        .await;
    let node = Node::sqlite(BASE).await;
    for (id, fake) in [("p-down", &down), ("p-refuses", &refuses)] {
        let r = node
            .put_json(
                &format!("/projects/default/providers/{id}"),
                json!({"kind": "openai", "base_url": fake.base_url(), "models": ["gpt-4o"]}),
            )
            .await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        node.put_json(
            &format!("/projects/default/targets/t-{id}"),
            json!({"provider": id, "model": "gpt-4o"}),
        )
        .await;
    }
    let r = node
        .put_json(
            "/projects/default/routes/prm",
            json!({"strategy": "experiment", "retry": {"max_retries": 0}, "variants": {
                "first": {"target": "t-p-down", "weight": 1},
                "second": {"target": "t-p-refuses", "weight": 0, "temperature": 0.3}}}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = client()
        .post(format!("{}/v1/chat/completions", node.url))
        .bearer_auth(BOOT_KEY)
        .json(&chat_body("route::prm", false))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-signalbox-variant"), Some("second"));
    assert_eq!(error_of(r).await.0, 400);
    let t = &traces(&node, "route=prm", 1).await[0];
    assert_eq!(
        (
            t["assigned_variant"].as_str(),
            t["serving_variant"].as_str()
        ),
        (Some("first"), Some("second")),
        "{t}"
    );
    assert_eq!(t["params"]["variant"], json!({"temperature": 0.3}), "{t}");
    // Grouped by serving variant the error is `second`'s; by assigned variant, `first`'s.
    for (by, group) in [("variant", "second"), ("assigned_variant", "first")] {
        let (s, a) = node
            .get_json(&format!(
                "/projects/default/traces/aggregate?route=prm&by={by}"
            ))
            .await;
        assert_eq!(s, 200, "{a}");
        assert_eq!(
            (
                a["data"][0]["group"].as_str(),
                a["data"][0]["errors"].as_i64()
            ),
            (Some(group), Some(1)),
            "{by}: {a}"
        );
    }
}

/// A route's experiment view counts the requests that reached it through a function pointing
/// at the route, and a variant removed since stays in the view (retired) with its requests.
#[tokio::test]
async fn an_experiments_view_counts_function_traffic_and_retired_variants() {
    let node = Node::sqlite(BASE).await;
    node.put_json(
        "/projects/default/targets/t1",
        json!({"model": "echo-1", "provider": "demo"}),
    )
    .await;
    let r = node
        .put_json(
            "/projects/default/routes/ab",
            json!({"strategy": "experiment", "variants": {"x": {"target": "t1", "weight": 1}, "z": {"model": "echo-2", "weight": 1}}}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = node
        .put_json("/projects/default/functions/fr", json!({"route": "ab"}))
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let call = async |model: &str| {
        let r = client()
            .post(format!("{}/v1/chat/completions", node.url))
            .bearer_auth(BOOT_KEY)
            .json(&chat_body(model, false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    for _ in 0..6 {
        call("route::ab").await;
        call("function::fr").await;
    }
    traces(&node, "limit=100", 12).await;
    // Variant z goes; x stays.
    let r = node
        .put_json(
            "/projects/default/routes/ab",
            json!({"strategy": "experiment", "variants": {"x": {"target": "t1", "weight": 1}}}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let (s, e) = node
        .get_json("/projects/default/routes/ab/experiment")
        .await;
    assert_eq!(s, 200, "{e}");
    let vs = e["variants"].as_array().unwrap();
    let total: i64 = vs
        .iter()
        .map(|v| v["figures"]["requests"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(
        total, 12,
        "the function's six requests count for the route's experiment: {e}"
    );
    if let Some(z) = vs.iter().find(|v| v["variant"] == "z") {
        assert_eq!(
            (z["retired"].as_bool(), z["weight"].as_i64()),
            (Some(true), Some(0)),
            "{e}"
        );
    }
    assert!(
        vs.iter()
            .any(|v| v["variant"] == "x" && v["retired"].is_null()),
        "{e}"
    );
}

#[tokio::test]
async fn an_experiment_shows_its_variants_side_by_side() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        node.put_json("/projects/default/targets/t1", json!({"model": "echo-1", "provider": "demo"})).await;
        let r = node
            .put_json(
                "/projects/default/routes/tone",
                json!({"strategy": "experiment", "sticky": "user", "variants": {"fast": {"target": "t1", "weight": 30, "temperature": 0.2, "params": {"service_tier": "flex", "metadata": {"team": "a"}, "instructions": "be brief"}}, "slow": {"model": "echo-2", "weight": 70}}}),
            )
            .await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        for i in 0..40 {
            let r = client()
                .post(format!("{}/v1/chat/completions", node.url))
                .bearer_auth(BOOT_KEY)
                .json(&json!({"model": "route::tone", "user": format!("user-{i}"), "temperature": 0.9, "service_tier": "auto", "instructions": "the caller's own text", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let all = traces(&node, "route=tone&limit=100", 40).await;
        // The trace records both the variant's params and the caller's it overrode (null: not
        // sent); a field carrying the caller's content only when the project captures content.
        let fast = all.iter().find(|t| t["serving_variant"] == "fast").expect("some user lands on fast");
        assert_eq!(
            fast["params"],
            json!({
                "variant": {"temperature": 0.2, "service_tier": "flex", "metadata": {"team": "a"}, "instructions": "be brief"},
                "caller": {"temperature": 0.9, "service_tier": "auto", "metadata": null, "instructions": "(not recorded)"}
            })
        );
        let slow = all.iter().find(|t| t["serving_variant"] == "slow").unwrap();
        assert!(slow["params"].is_null());
        assert_eq!(fast["sticky_source"], "body.user");
        // An empty `user` (like an empty id header) is no id: the pick is random.
        let r = client()
            .post(format!("{}/v1/chat/completions", node.url))
            .bearer_auth(BOOT_KEY)
            .header("x-signalbox-user-id", " ")
            .json(&json!({"model": "route::tone", "user": "", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let all = traces(&node, "route=tone&limit=100", 41).await;
        assert_eq!(all.iter().filter(|t| t["sticky_source"] == "random").count(), 1);
        let (s, e) = node.get_json("/projects/default/routes/tone/experiment?status=6xx").await;
        assert_eq!((s, e["error"]["param"].as_str()), (400, Some("status")), "{e}");
        let (s, e) = node.get_json("/projects/default/routes/tone/experiment").await;
        assert_eq!(s, 200, "{e}");
        assert_eq!(e["sticky"], "user");
        let vs = e["variants"].as_array().unwrap();
        assert_eq!(vs.len(), 2);
        let total: i64 = vs.iter().map(|v| v["figures"]["requests"].as_i64().unwrap_or(0)).sum();
        assert_eq!(total, 41, "{e}");
        assert_eq!(vs.iter().find(|v| v["variant"] == "slow").unwrap()["share"], 0.7);
        let (s, _) = node.get_json("/projects/default/routes/nope/experiment").await;
        assert_eq!(s, 404);
    })
    .await;
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_bounded_labels_and_an_optional_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let toml = format!("[server]\nmetrics_token = \"env::METRICS_TOKEN\"\n{BASE}");
    let node = Node::start_env(
        &db,
        &MasterKey::generate(),
        &toml,
        &[("METRICS_TOKEN", "m-secret")],
    )
    .await;
    node.route_to("r", "t", "echo-1").await;
    assert_eq!(node.chat("route::r").await.0, 200);
    assert_eq!(
        node.chat("a-raw-model-string-no-one-configured").await.0,
        404
    );
    traces(&node, "", 2).await;
    let r = client()
        .get(format!("{}/metrics", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 401);
    // The scheme in any case, extra spaces: still the token.
    for (value, want) in [
        ("bearer m-secret", 200),
        ("BEARER  m-secret ", 200),
        ("Bearer m-wrong", 401),
    ] {
        let r = client()
            .get(format!("{}/metrics", node.url))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{value}");
    }
    let r = client()
        .get(format!("{}/metrics", node.url))
        .bearer_auth("m-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let m = r.text().await.unwrap();
    for needle in [
        "gen_ai_client_operation_duration_seconds_bucket{",
        "gen_ai_client_token_usage_bucket{",
        "gen_ai_token_type=\"input\"",
        "route=\"route:r\"",
        "gen_ai_provider_name=\"demo\"",
        "gen_ai_response_model=\"echo-1\"",
        "signalbox_errors_total{gen_ai_operation_name=\"chat\",route=\"\",error_type=\"model_not_found\"} 1",
        "signalbox_requests_in_flight",
        "signalbox_traces_dropped_total 0",
        "signalbox_config_version",
    ] {
        assert!(m.contains(needle), "missing {needle}:\n{m}");
    }
    assert!(
        !m.contains("a-raw-model-string"),
        "the caller's raw model is never a label"
    );
    assert!(!m.contains("m-secret") && !m.contains(BOOT_KEY));
}

#[tokio::test]
async fn content_capture_keeps_request_and_answer_text_only_where_switched_on() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        node.route_to("r", "t", "echo-1").await;
        assert_eq!(node.chat("route::r").await.0, 200);
        traces(&node, "", 1).await;
        let r = node
            .admin(reqwest::Method::PATCH, "/projects/default")
            .json(&json!({"content_capture": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["content_capture"], true);
        let (s, answer) = node.chat("route::r").await;
        assert_eq!(s, 200);
        let r = client()
            .post(format!("{}/v1/chat/completions", node.url))
            .bearer_auth(BOOT_KEY)
            .json(&json!({"model": "route::r", "stream": true, "messages": [{"role": "user", "content": "x".repeat(40_000)}]}))
            .send()
            .await
            .unwrap();
        let streamed = r.text().await.unwrap();
        let data = traces(&node, "order=asc&content=true", 3).await;
        assert!(data[0].get("content").is_none(), "captured before it was on: {db}");
        let plain = &data[1]["content"];
        assert!(plain["request"].as_str().unwrap().contains("Say hello"), "{plain}");
        let said = answer["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(plain["response"].as_str().unwrap().contains(said));
        let big = &data[2]["content"];
        assert_eq!(big["request_truncated"], true);
        assert_eq!(big["request"].as_str().unwrap().len(), 32 * 1024);
        assert!(streamed.starts_with(&big["response"].as_str().unwrap()[..20]));
        // Lists leave content out unless asked; an export leaves it out on request.
        let (_, list) = node.get_json("/projects/default/traces").await;
        assert!(list["data"].as_array().unwrap().iter().all(|t| t.get("content").is_none()));
        let lines = node
            .admin(reqwest::Method::GET, "/projects/default/traces/export?content=false")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!lines.contains("Say hello"));
        // Viewers cannot switch it (owner only).
        node.post_json("/users", json!({"name": "v", "password": "viewer-pass-1", "roles": {"default": "editor"}})).await;
        let tok = crate::admin::login(&node.url, "v", "viewer-pass-1").await.unwrap();
        let r = client()
            .patch(format!("{}/admin/v1/projects/default", node.url))
            .bearer_auth(tok)
            .json(&json!({"content_capture": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, 403);
    })
    .await;
}
