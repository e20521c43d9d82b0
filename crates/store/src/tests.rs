use super::*;
use serde_json::json;
use signalbox_core::config::{Catalog, ConfigError, ConfigErrors, ObjectKind};

fn actor() -> Actor {
    Actor("tester".into())
}

/// Accepts everything; returns the catalog for inspection.
fn accept(c: &Catalog, _v: i64) -> Result<Catalog, ConfigErrors> {
    Ok(c.clone())
}

fn put(kind: ObjectKind, name: &str, body: serde_json::Value) -> Change {
    Change::PutObject {
        kind,
        project: "default".into(),
        name: name.into(),
        body,
        if_match: None,
        create_only: false,
    }
}

async fn each_backend(f: impl AsyncFn(String)) {
    let dir = tempfile::tempdir().unwrap();
    for url in testing::fresh_urls(dir.path()).await {
        f(url).await;
    }
}

/// Every trace the filter matches, page after page by `next_cursor`.
async fn every_page(
    store: &Store,
    f: &crate::TraceFilter,
    oldest_first: bool,
    limit: i64,
) -> Vec<crate::TraceRow> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .traces(f, oldest_first, limit, cursor.as_deref())
            .await
            .unwrap();
        all.extend(page.data);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return all,
        }
    }
}

#[tokio::test]
async fn first_start_creates_default_project_admin_and_key_once() {
    each_backend(async |url| {
        let store = Store::open(&url, MasterKey::generate()).await.unwrap();
        let first = store.bootstrap(&BootstrapEnv::default()).await.unwrap();
        assert!(
            first.admin_password.is_some() && first.gateway_key.is_some(),
            "{url}"
        );
        let again = store.bootstrap(&BootstrapEnv::default()).await.unwrap();
        assert!(again.is_empty(), "nothing is created twice ({url})");
        assert_eq!(store.keys("default").await.unwrap().len(), 1);
        let (catalog, _) = store.load_catalog().await.unwrap();
        let key = first.gateway_key.unwrap();
        let h = catalog.key_hasher.hash(&key);
        assert!(catalog.keys.iter().any(|(k, _)| *k == h));
        let pw = first.admin_password.unwrap();
        assert!(
            store
                .login("admin", &pw, std::time::Duration::from_secs(60))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .login(
                    "admin",
                    "wrong-password",
                    std::time::Duration::from_secs(60)
                )
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn a_wrong_master_key_refuses_to_open() {
    each_backend(async |url| {
        let key = MasterKey::generate();
        let store = Store::open(&url, key.clone()).await.unwrap();
        store.bootstrap(&BootstrapEnv::default()).await.unwrap();
        store
            .write(
                &actor(),
                Change::PutCredential {
                    project: "default".into(),
                    name: "c".into(),
                    value: "sk-123456789".into(),
                    if_match: None,
                    create_only: false,
                },
                accept,
            )
            .await
            .unwrap();
        store.close().await;
        let err = Store::open(&url, MasterKey::generate())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("master key"), "{err}");
        let store = Store::open(&url, key.clone()).await.unwrap();
        let new = MasterKey::generate();
        assert_eq!(store.rotate_master_key(&new).await.unwrap(), 1);
        store.close().await;
        assert!(
            Store::open(&url, key).await.is_err(),
            "the old key no longer opens it"
        );
        let store = Store::open(&url, new).await.unwrap();
        let (c, _) = store.load_catalog().await.unwrap();
        assert_eq!(c.credentials["c"].secret.expose(), "sk-123456789");
    })
    .await;
}

#[tokio::test]
async fn a_rejected_change_leaves_nothing_behind() {
    each_backend(async |url| {
        let store = Store::open(&url, MasterKey::generate()).await.unwrap();
        store.bootstrap(&BootstrapEnv::default()).await.unwrap();
        let before = store.config_version().await.unwrap();
        let err = store
            .write(
                &actor(),
                put(ObjectKind::Route, "r", json!({"targets": ["nope"]})),
                |_, _| {
                    Err::<(), _>(ConfigErrors(vec![ConfigError {
                        key: "routes.r".into(),
                        message: "bad".into(),
                        file: None,
                        line: None,
                    }]))
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Rejected(_)));
        assert_eq!(store.config_version().await.unwrap(), before);
        assert!(
            store
                .objects(ObjectKind::Route, "default")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .audit_log(None, 10)
                .await
                .unwrap()
                .iter()
                .all(|a| a.object != "route:r")
        );
    })
    .await;
}

#[tokio::test]
async fn versions_history_and_stale_writes() {
    each_backend(async |url| {
        let store = Store::open(&url, MasterKey::generate()).await.unwrap();
        store.bootstrap(&BootstrapEnv::default()).await.unwrap();
        let (_, c1) = store
            .write(
                &actor(),
                put(ObjectKind::Route, "r", json!({"targets": ["a"]})),
                accept,
            )
            .await
            .unwrap();
        assert_eq!(c1.object_version, Some(1));
        let mut stale = put(ObjectKind::Route, "r", json!({"targets": ["b"]}));
        if let Change::PutObject { if_match, .. } = &mut stale {
            *if_match = Some(1);
        }
        store.write(&actor(), stale.clone(), accept).await.unwrap();
        let err = store.write(&actor(), stale, accept).await.unwrap_err();
        assert!(matches!(err, StoreError::Stale(_)), "{err}");
        let h = store
            .history(ObjectKind::Route, "default", "r")
            .await
            .unwrap();
        assert_eq!(h.iter().map(|v| v.version).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(h[1].body, Some(json!({"targets": ["a"]})));
        assert_eq!(h[0].author, "tester");
    })
    .await;
}

#[tokio::test]
async fn gateway_keys_are_stored_only_as_keyed_hashes() {
    each_backend(async |url| {
        let store = Store::open(&url, MasterKey::generate()).await.unwrap();
        store.bootstrap(&BootstrapEnv::default()).await.unwrap();
        let (_, c) = store
            .write(
                &actor(),
                Change::CreateKey {
                    project: "default".into(),
                    name: "app".into(),
                    expires_at: None,
                    value: None,
                },
                accept,
            )
            .await
            .unwrap();
        let secret = c.revealed.unwrap();
        let rows: Vec<(String,)> = sqlx::query_as("SELECT hash FROM api_keys")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert!(
            rows.iter()
                .all(|(h,)| !h.contains(&secret) && h.len() == 64)
        );
        let info = c.key.unwrap();
        assert_eq!(info.prefix, secret[..12]);
        // Rotation: the old key gets an expiry (end of grace), the new one works.
        let (cat, c2) = store
            .write(
                &actor(),
                Change::RotateKey {
                    project: "default".into(),
                    id: info.id.clone(),
                    grace_secs: 60,
                },
                accept,
            )
            .await
            .unwrap();
        let new = c2.revealed.unwrap();
        let old_entry = cat.keys.iter().find(|(_, e)| e.id == info.id).unwrap();
        assert!(old_entry.1.expires_at_ms.is_some());
        assert!(
            cat.keys
                .iter()
                .any(|(h, _)| *h == cat.key_hasher.hash(&new))
        );
        store
            .write(
                &actor(),
                Change::RevokeKey {
                    project: "default".into(),
                    id: info.id.clone(),
                },
                accept,
            )
            .await
            .unwrap();
        let (cat, _) = store.load_catalog().await.unwrap();
        assert!(cat.keys.iter().all(|(_, e)| e.id != info.id));
    })
    .await;
}

#[tokio::test]
async fn a_node_holding_a_rotated_away_key_cannot_write_secrets() {
    each_backend(async |url| {
        let key = MasterKey::generate();
        let a = Store::open(&url, key.clone()).await.unwrap();
        a.bootstrap(&BootstrapEnv::default()).await.unwrap();
        let b = Store::open(&url, key).await.unwrap(); // a second node
        a.rotate_master_key(&MasterKey::generate()).await.unwrap();
        let err = b
            .write(
                &actor(),
                Change::PutCredential {
                    project: "default".into(),
                    name: "c".into(),
                    value: "sk-late-write".into(),
                    if_match: None,
                    create_only: false,
                },
                accept,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("rotated"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn short_bootstrap_secrets_are_refused() {
    each_backend(async |url| {
        let store = Store::open(&url, MasterKey::generate()).await.unwrap();
        let err = store
            .bootstrap(&BootstrapEnv {
                admin_password: None,
                admin_token: Some("short".into()),
                gateway_key: None,
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("SIGNALBOX_ADMIN_TOKEN"), "{err}");
        assert!(
            store.keys("default").await.unwrap_or_default().is_empty(),
            "nothing created"
        );
    })
    .await;
}

/// A NULL then a number in the same column, in one batch and across batches: a prepared
/// statement must not keep the type of the first NULL (PostgreSQL refused the number).
#[tokio::test]
async fn trace_batches_mixing_nulls_and_numbers_are_stored() {
    use signalbox_core::trace::TraceRecord;
    each_backend(async |url| {
        let store = Store::open(&url, MasterKey::generate()).await.unwrap();
        let rec = |id: &str, ttft: Option<f64>, cost: Option<f64>| TraceRecord {
            id: id.into(),
            project: "default".into(),
            endpoint: "chat",
            status: 200,
            latency_ms: 1.0,
            ttft_ms: ttft,
            cost_usd: cost,
            ..Default::default()
        };
        store
            .insert_traces(&[rec("a", None, None), rec("b", Some(2.5), Some(0.1))])
            .await
            .unwrap();
        store
            .insert_traces(&[rec("c", None, Some(0.2))])
            .await
            .unwrap();
        store
            .insert_traces(&[rec("d", Some(1.5), None)])
            .await
            .unwrap();
        // 149 rows: statements of 64, 64, 16, 4 and 1 row.
        let many: Vec<TraceRecord> = (0..149)
            .map(|i| {
                rec(
                    &format!("m{i}"),
                    (i % 2 == 0).then_some(1.0),
                    (i % 3 == 0).then_some(0.5),
                )
            })
            .collect();
        store.insert_traces(&many).await.unwrap();
        let stored = async || {
            let all = crate::TraceFilter {
                project: "default".into(),
                ..Default::default()
            };
            store
                .traces(&all, true, 1000, None)
                .await
                .unwrap()
                .data
                .len()
        };
        assert_eq!(stored().await, 153, "{url}");
        if !url.starts_with("postgres") {
            return;
        }
        // On PostgreSQL a batch written again (the writer retries a batch whose commit's
        // answer a dropped connection lost) stores its new rows once and skips the ones
        // already there, whether it goes as one statement or several. An SQLite commit
        // always answers: a batch is retried only after it stored nothing.
        for n in [3usize, 70] {
            let mut again: Vec<TraceRecord> = (0..n)
                .map(|i| rec(&format!("x{n}-{i}"), None, None))
                .collect();
            again.push(rec("a", None, None));
            store.insert_traces(&again).await.unwrap();
            store.insert_traces(&again).await.unwrap();
        }
        assert_eq!(stored().await, 153 + 3 + 70, "{url}");
    })
    .await;
}

/// Over the sampling budget, groups take their percentiles from an evenly spread sample;
/// counts stay exact, and a small group is read whole.
#[tokio::test]
async fn large_groups_sample_their_percentiles_and_keep_exact_counts() {
    use signalbox_core::trace::TraceRecord;
    each_backend(async |url| {
        let store = Store::open(&url, MasterKey::generate()).await.unwrap();
        let rec = |i: u64, route: &str| TraceRecord {
            id: format!("{route}-{i}"),
            project: "default".into(),
            endpoint: "chat",
            route: Some(route.into()),
            time_unix_ms: 1_000_000 + i,
            status: 200,
            // Latencies 1..=n, so the exact p50 is n/2.
            latency_ms: (i + 1) as f64,
            ..Default::default()
        };
        let big: Vec<TraceRecord> = (0..1000).map(|i| rec(i, "big")).collect();
        let small: Vec<TraceRecord> = (0..8).map(|i| rec(i, "small")).collect();
        store.insert_traces(&big).await.unwrap();
        store.insert_traces(&small).await.unwrap();
        let f = crate::TraceFilter {
            project: "default".into(),
            ..Default::default()
        };
        let aggs = store
            .aggregate_sampled(&f, Some("route"), 100)
            .await
            .unwrap();
        let big = aggs
            .iter()
            .find(|a| a.group.as_deref() == Some("big"))
            .unwrap();
        assert_eq!(big.requests, 1000, "{url}");
        // 1008 requests over a budget of 100: k = 11, about every 11th of 1000 ms.
        assert_eq!(big.percentile_sample, 90, "{url}");
        let p50 = big.latency_ms_p50.unwrap();
        assert!((450.0..=550.0).contains(&p50), "{p50}");
        let small = aggs
            .iter()
            .find(|a| a.group.as_deref() == Some("small"))
            .unwrap();
        // At most a tenth of the budget: read whole.
        assert_eq!((small.requests, small.percentile_sample), (8, 8));
        assert_eq!(small.latency_ms_p50, Some(4.0));
        // Ungrouped, the same.
        let all = store.aggregate_sampled(&f, None, 100).await.unwrap();
        assert_eq!(all[0].requests, 1008);
        assert!(
            (85..=100).contains(&all[0].percentile_sample),
            "{}",
            all[0].percentile_sample
        );
        // Below the threshold nothing is sampled.
        let whole = store.aggregate(&f, Some("route")).await.unwrap();
        assert!(whole.iter().all(|a| a.percentile_sample == a.requests));
        // Over no traces: no group by route, and the one group over everything, empty.
        let none = crate::TraceFilter {
            project: "nobody".into(),
            ..Default::default()
        };
        assert!(
            store
                .aggregate(&none, Some("route"))
                .await
                .unwrap()
                .is_empty()
        );
        let empty = store.aggregate(&none, None).await.unwrap();
        assert_eq!(empty.len(), 1, "{url}");
        assert_eq!(
            (empty[0].requests, empty[0].error_rate, empty[0].cost_usd),
            (0, 0.0, None)
        );
    })
    .await;
}

/// Opening a store that is already set up (what every CLI command does, `keys list` and
/// `config export` included) leaves the config version alone, so running nodes do not rebuild
/// their config for it; a bootstrap that creates something (a new admin token) moves it.
#[tokio::test]
async fn a_bootstrap_that_creates_nothing_leaves_the_config_version_alone() {
    each_backend(async |url| {
        let store = Store::open(&url, MasterKey::generate()).await.unwrap();
        store.bootstrap(&BootstrapEnv::default()).await.unwrap();
        let v = store.config_version().await.unwrap();
        for _ in 0..3 {
            store.bootstrap(&BootstrapEnv::default()).await.unwrap();
        }
        assert_eq!(store.config_version().await.unwrap(), v, "{url}");
        let token = BootstrapEnv {
            admin_token: Some("sbt-a-long-enough-admin-token-0123456789".into()),
            ..Default::default()
        };
        store.bootstrap(&token).await.unwrap();
        assert_eq!(store.config_version().await.unwrap(), v + 1, "{url}");
        store.bootstrap(&token).await.unwrap();
        assert_eq!(store.config_version().await.unwrap(), v + 1, "{url}");
    })
    .await;
}

/// An aggregate reads its counts and its latencies from one snapshot: while traces keep
/// arriving, the latencies behind a group's percentiles are never more than its `requests`
/// (unsampled, exactly as many), and the errors never more than the requests.
#[tokio::test]
async fn aggregates_under_live_writes_are_read_from_one_snapshot() {
    use signalbox_core::trace::TraceRecord;
    use std::sync::atomic::{AtomicU64, Ordering};
    each_backend(async |url| {
        let store = std::sync::Arc::new(Store::open(&url, MasterKey::generate()).await.unwrap());
        let written = std::sync::Arc::new(AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let rec = TraceRecord {
                        id: format!("live-{i}"),
                        project: "default".into(),
                        endpoint: "chat",
                        route: Some(if i.is_multiple_of(2) { "a" } else { "b" }.into()),
                        time_unix_ms: 1_000_000 + i,
                        status: if i.is_multiple_of(3) { 500 } else { 200 },
                        latency_ms: 1.0,
                        ..Default::default()
                    };
                    store.insert_traces(&[rec]).await.unwrap();
                    i += 1;
                    written.store(i, Ordering::Relaxed);
                }
            })
        };
        let f = crate::TraceFilter {
            project: "default".into(),
            ..Default::default()
        };
        // At least 60 rounds, and on until 30 traces have landed while they ran.
        let mut rounds = 0;
        while rounds < 60 || written.load(Ordering::Relaxed) < 30 {
            for by in [None, Some("route")] {
                for a in store.aggregate(&f, by).await.unwrap() {
                    assert_eq!(a.percentile_sample, a.requests, "{url} {by:?}: {a:?}");
                    assert!(a.errors <= a.requests);
                }
            }
            rounds += 1;
            tokio::task::yield_now().await;
        }
        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();
    })
    .await;
}

/// On SQLite, traces are written by their own connection: a trace batch and a catalog change
/// at the same moment both land (one waits for the other's transaction), and a batch comes
/// back to the writer whole.
#[tokio::test]
async fn trace_batches_and_catalog_changes_at_once_both_land() {
    use signalbox_core::trace::TraceRecord;
    each_backend(async |url| {
        let store = std::sync::Arc::new(Store::open(&url, MasterKey::generate()).await.unwrap());
        store.bootstrap(&BootstrapEnv::default()).await.unwrap();
        let traces = {
            let store = store.clone();
            tokio::spawn(async move {
                for b in 0..20 {
                    let batch: Vec<TraceRecord> = (0..100)
                        .map(|i| TraceRecord {
                            id: format!("t{b}-{i}"),
                            project: "default".into(),
                            endpoint: "chat",
                            status: 200,
                            ..Default::default()
                        })
                        .collect();
                    let (back, written) = store.write_traces(batch).await;
                    written.unwrap();
                    assert_eq!(back.len(), 100);
                    assert_eq!(back[99].id, format!("t{b}-99"));
                }
            })
        };
        for i in 0..20 {
            store
                .write(
                    &actor(),
                    put(ObjectKind::Route, &format!("r{i}"), json!({"targets": []})),
                    accept,
                )
                .await
                .unwrap();
        }
        traces.await.unwrap();
        assert_eq!(
            store
                .objects(ObjectKind::Route, "default")
                .await
                .unwrap()
                .len(),
            20
        );
        let all = crate::TraceFilter {
            project: "default".into(),
            ..Default::default()
        };
        assert_eq!(
            every_page(&store, &all, true, 1000).await.len(),
            2000,
            "{url}"
        );
    })
    .await;
}

/// Retention deletes what is older than the cutoff in every project that has traces, and
/// nothing newer.
#[tokio::test]
async fn retention_deletes_old_traces_in_every_project() {
    use signalbox_core::trace::TraceRecord;
    each_backend(async |url| {
        let store = Store::open(&url, MasterKey::generate()).await.unwrap();
        let rec = |id: &str, project: &str, at: u64| TraceRecord {
            id: id.into(),
            project: project.into(),
            time_unix_ms: at,
            endpoint: "chat",
            status: 200,
            ..Default::default()
        };
        store
            .insert_traces(&[
                rec("a-old", "alpha", 1_000),
                rec("a-new", "alpha", 9_000),
                rec("b-old", "beta", 2_000),
                rec("b-old2", "beta", 4_999),
                rec("c-new", "gamma", 5_000),
            ])
            .await
            .unwrap();
        assert_eq!(store.delete_traces_before(5_000).await.unwrap(), 3, "{url}");
        for (project, left) in [("alpha", 1), ("beta", 0), ("gamma", 1)] {
            let f = crate::TraceFilter {
                project: project.into(),
                ..Default::default()
            };
            let page = store.traces(&f, true, 100, None).await.unwrap();
            assert_eq!(page.data.len(), left, "{project} on {url}");
        }
        assert_eq!(store.delete_traces_before(5_000).await.unwrap(), 0);
    })
    .await;
}

#[test]
fn a_store_url_is_logged_without_any_password() {
    for (url, want) in [
        (
            "postgres://sb:pw@db:5432/sb?sslmode=disable",
            "postgres://sb:***@db:5432/sb?sslmode=disable",
        ),
        (
            "postgres://sb@db/sb?password=PgSecret-42&sslmode=disable",
            "postgres://sb@db/sb?password=***&sslmode=disable",
        ),
        (
            "postgresql://db/sb?PASSWORD=x&sslpassword=y&application_name=a@b:c",
            "postgresql://db/sb?PASSWORD=***&sslpassword=***&application_name=a@b:c",
        ),
        ("sqlite:///data/signalbox.db", "sqlite:///data/signalbox.db"),
    ] {
        assert_eq!(crate::redact_url(url), want);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_sqlite_store_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.path().join("s.db");
    let _store = Store::open(
        &format!("sqlite://{}", file.display()),
        MasterKey::generate(),
    )
    .await
    .unwrap();
    for f in ["s.db", "s.db-wal", "s.db-shm"] {
        let path = dir.path().join(f);
        if path.exists() {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }
}

#[tokio::test]
async fn nodes_starting_at_once_on_an_empty_postgresql_both_come_up() {
    // Migrations take turns under an advisory lock from the first statement on; before,
    // one of two nodes racing on `CREATE TABLE IF NOT EXISTS` could fail to start.
    let Some(url) = crate::testing::fresh_postgres().await else {
        return;
    };
    let key = MasterKey::generate();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let (url, key) = (url.clone(), key.clone());
            tokio::spawn(async move { Store::open(&url, key).await.map(|_| ()) })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
}

/// A store an earlier release left (migrations up to 5: the trace table keyed by `id`)
/// upgrades in place: its traces keep every value and are found by id (an old row's `at` a
/// clock reading apart from its id's time), the `id` index is gone, the time index no longer
/// carries the id, and new traces and retention work on the rebuilt table.
#[tokio::test]
async fn traces_stored_before_the_upgrade_are_kept_and_found_by_id() {
    use signalbox_core::trace::{TraceRecord, new_trace_id};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.db");
    let (old_id, old_ms) = new_trace_id();
    {
        let conn = rusqlite::Connection::open(&file).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .unwrap();
        for (version, description, sql, _) in crate::migrate::MIGRATIONS.iter().filter(|m| m.0 <= 5)
        {
            for stmt in crate::migrate::statements(sql) {
                conn.execute_batch(&stmt).unwrap();
            }
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, 0)",
                rusqlite::params![version, description],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO traces (id, project, at, endpoint, route, attempt_count, attempts_json, \
             status, latency_ms, stream, input_tokens, cost_usd) \
             VALUES (?1, 'default', ?2, 'chat', 'r', 0, '[]', 200, 1.5, 0, 7, 0.25)",
            rusqlite::params![old_id, old_ms as i64 - 3],
        )
        .unwrap();
    }
    let url = format!("sqlite://{}", file.display());
    let store = Store::open(&url, MasterKey::generate()).await.unwrap();
    let old = store.trace("default", &old_id).await.unwrap();
    assert_eq!(old.time, old_ms as i64 - 3);
    assert_eq!(
        (old.route.as_deref(), old.input_tokens, old.cost_usd),
        (Some("r"), Some(7), Some(0.25))
    );
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'traces' ORDER BY name",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(indexes, ["traces_project_at", "traces_project_route_at"]);
    // The time index ends at the time (the rowid follows it; the id is read from the row).
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM pragma_index_info('traces_project_at') ORDER BY seqno",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(columns, ["project", "at"]);
    // A new trace: found by its id, not by an id of another version or of nothing.
    let (id, ms) = new_trace_id();
    let rec = TraceRecord {
        id: id.clone(),
        time_unix_ms: ms,
        project: "default".into(),
        endpoint: "chat",
        status: 200,
        ..Default::default()
    };
    store.insert_traces(&[rec]).await.unwrap();
    assert_eq!(store.trace("default", &id).await.unwrap().time, ms as i64);
    for missing in [
        uuid::Uuid::new_v4().to_string(),
        "nope".into(),
        String::new(),
    ] {
        assert!(matches!(
            store.trace("default", &missing).await,
            Err(StoreError::NotFound(_))
        ));
    }
    assert!(matches!(
        store.trace("other", &id).await,
        Err(StoreError::NotFound(_))
    ));
    // Retention takes the old row (by rowid) and keeps the new one.
    assert_eq!(store.delete_traces_before(ms as i64).await.unwrap(), 1);
    assert!(store.trace("default", &old_id).await.is_err());
    assert!(store.trace("default", &id).await.is_ok());
}

/// Pages walk every trace once in (time, id) order, newest or oldest first, when many
/// traces share a millisecond and a page ends inside one; on SQLite a later page seeks to
/// its start in `traces_project_at` instead of reading every entry before it.
#[tokio::test]
async fn cursor_pages_walk_ties_in_order_and_seek() {
    use signalbox_core::trace::TraceRecord;
    use sqlx::Row;
    each_backend(async |url| {
        let store = Store::open(&url, MasterKey::generate()).await.unwrap();
        // 4 milliseconds of 7 traces each, written out of order.
        let mut rows: Vec<TraceRecord> = (0..28u64)
            .map(|i| TraceRecord {
                id: format!("{:02}-{}", (i * 11) % 28, i % 4),
                project: "default".into(),
                time_unix_ms: 1_790_000_000_000 + i % 4,
                endpoint: "chat",
                status: 200,
                ..Default::default()
            })
            .collect();
        rows.push(TraceRecord {
            id: "other".into(),
            project: "other".into(),
            time_unix_ms: 1_790_000_000_001,
            endpoint: "chat",
            ..Default::default()
        });
        store.insert_traces(&rows).await.unwrap();
        let mut want: Vec<(i64, String)> = rows[..28]
            .iter()
            .map(|r| (r.time_unix_ms as i64, r.id.clone()))
            .collect();
        want.sort();
        let all = crate::TraceFilter {
            project: "default".into(),
            ..Default::default()
        };
        for oldest_first in [true, false] {
            let seen: Vec<(i64, String)> = every_page(&store, &all, oldest_first, 3)
                .await
                .into_iter()
                .map(|t| (t.time, t.id))
                .collect();
            let mut expected = want.clone();
            if !oldest_first {
                expected.reverse();
            }
            assert_eq!(seen, expected, "{url} oldest_first={oldest_first}");
        }
        if url.starts_with("sqlite") {
            let cursor = format!("{}.{}", want[10].0, want[10].1);
            let (sql, binds) = crate::traces::page_query(&all, false, Some(&cursor)).unwrap();
            let plan: Vec<String> =
                crate::traces::bind_all(sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}")), &binds)
                    .bind(4i64)
                    .fetch_all(store.pool())
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.try_get::<String, _>(3).unwrap())
                    .collect();
            assert!(
                plan.iter()
                    .any(|d| d.contains("INDEX traces_project_at (project=? AND at<?)")),
                "{plan:?}"
            );
        }
    })
    .await;
}

/// A project whose keys have all expired can be deleted, and a project made later under the
/// same name starts empty: no traces (captured content included) and no versions of the old.
#[tokio::test]
async fn a_deleted_project_leaves_nothing_to_a_new_one_of_its_name() {
    use signalbox_core::trace::TraceRecord;
    each_backend(async |url| {
        let store = Store::open(&url, MasterKey::generate()).await.unwrap();
        let create = Change::CreateProject {
            name: "gone".into(),
            description: String::new(),
        };
        store.write(&actor(), create.clone(), accept).await.unwrap();
        let key = Change::CreateKey {
            project: "gone".into(),
            name: "k".into(),
            expires_at: Some(now_ms() - 1),
            value: None,
        };
        store.write(&actor(), key, accept).await.unwrap();
        let route = Change::PutObject {
            kind: ObjectKind::Route,
            project: "gone".into(),
            name: "r".into(),
            body: json!({"targets": ["t"]}),
            if_match: None,
            create_only: false,
        };
        store.write(&actor(), route, accept).await.unwrap();
        let del_route = Change::DeleteObject {
            kind: ObjectKind::Route,
            project: "gone".into(),
            name: "r".into(),
            if_match: None,
        };
        store.write(&actor(), del_route, accept).await.unwrap();
        let trace = TraceRecord {
            id: "old".into(),
            project: "gone".into(),
            endpoint: "chat",
            time_unix_ms: 1_000,
            status: 200,
            ..Default::default()
        };
        store.insert_traces(&[trace]).await.unwrap();

        let delete = Change::DeleteProject {
            name: "gone".into(),
        };
        store
            .write(&actor(), delete, accept)
            .await
            .expect("an expired key holds no project");
        store.write(&actor(), create, accept).await.unwrap();
        let f = crate::TraceFilter {
            project: "gone".into(),
            ..Default::default()
        };
        assert!(
            store
                .traces(&f, false, 10, None)
                .await
                .unwrap()
                .data
                .is_empty(),
            "{url}"
        );
        assert!(
            store.history(ObjectKind::Route, "gone", "r").await.is_err(),
            "{url}"
        );
    })
    .await;
}
