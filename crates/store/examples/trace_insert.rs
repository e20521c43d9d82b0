//! What storing a trace costs, without the rest of the gateway: inserts ROWS records (as the
//! gateway's trace writer makes them for a single-target chat request) in batches of BATCH,
//! into a fresh SQLite store, and prints the time a row. Run it under
//! `valgrind --tool=callgrind` for instructions a row (bench/trace_insert.sh).
//!
//!     cargo run --release -p signalbox-store --example trace_insert -- [ROWS] [BATCH] [INDEX...]
//!
//! Each INDEX named after them is dropped first (what an index costs a row).

#![allow(clippy::expect_used, clippy::panic)] // a benchmark tool: it stops at the first failure

use signalbox_core::trace::{AttemptRecord, TraceRecord};
use signalbox_store::{MasterKey, Store};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(250);
    let loaded = signalbox_core::load_str(
        "[providers.up]\nkind = \"mock\"\nmodels = [\"gpt-4o\"]\n[targets.t]\nmodel = \"gpt-4o\"\n",
        None,
        &|_| None,
        1,
    )
    .expect("config");
    let route = &loaded
        .snapshot
        .project("default")
        .expect("project")
        .implicit["gpt-4o"];
    let signalbox_core::model::RouteBody::Steps(steps) = &*route.body else {
        panic!("steps")
    };
    let target = steps[0].targets[0].target.clone();
    let usage: signalbox_core::sse::Usage = serde_json::from_str(
        r#"{"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}"#,
    )
    .expect("usage");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate())
        .await
        .expect("store");
    for index in args {
        sqlx::query(&format!("DROP INDEX {index}"))
            .execute(store.pool())
            .await
            .expect("drop index");
    }
    let now = signalbox_store::now_millis() as u64;
    let records: Vec<TraceRecord> = (0..rows)
        .map(|i| TraceRecord {
            id: uuid::Uuid::now_v7().to_string(),
            time_unix_ms: now + i as u64 / 10,
            project: "default".into(),
            endpoint: "chat",
            requested_model: Some("route::bench".into()),
            layer: Some("route"),
            route: Some("bench".into()),
            route_version: Some(1),
            attempts: vec![AttemptRecord {
                target: target.clone(),
                status: Some(200),
                error_code: None,
                retry: 0,
                degraded: false,
                started_ms: 0.012,
                latency_ms: 0.105,
            }],
            status: 200,
            latency_ms: 0.123,
            usage: Some(usage),
            cost_usd: Some(0.0001),
            ..Default::default()
        })
        .collect();
    let batches: Vec<Vec<TraceRecord>> = records.chunks(batch).map(<[_]>::to_vec).collect();
    drop(records);
    let t0 = std::time::Instant::now();
    for b in batches {
        store.write_traces(b).await.1.expect("insert");
    }
    let el = t0.elapsed();
    println!(
        "{rows} rows in batches of {batch}: {:.2} µs a row (wall)",
        el.as_secs_f64() * 1e6 / rows as f64
    );
}
