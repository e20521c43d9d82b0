//! The control plane: the admin API over a real store (SQLite, and PostgreSQL when the test
//! command started one), live apply, history, keys, accounts and several nodes on one database.

use crate::common::{chat_body, client, env_of, error_of, header};
use serde_json::{Value, json};
use signalbox::admin::{self, AdminState};
use signalbox::live::Live;
use signalbox::serve::{Running, start_with};
use signalbox_store::{BootstrapEnv, MasterKey, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const ADMIN_PASSWORD: &str = "correct-horse-battery";
pub const BOOT_KEY: &str = "sbx-test-bootstrap-key-0001";

/// The file every node here starts from: a mock provider, nothing routed.
pub const BASE: &str = "[providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\", \"echo-2\"]\n";

pub struct Node {
    pub url: String,
    pub store: Arc<Store>,
    pub live: Arc<Live>,
    pub token: String,
    _running: Running,
    pub config_path: std::path::PathBuf,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
    /// The SQLite store's directory of a node made by [`Node::sqlite`].
    _db: Option<tempfile::TempDir>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Node {
    /// A gateway with the admin API on `db` (a store URL), config file text `toml`.
    pub async fn start(db: &str, key: &MasterKey, toml: &str) -> Node {
        Self::start_env(db, key, toml, &[]).await
    }

    pub async fn start_env(db: &str, key: &MasterKey, toml: &str, vars: &[(&str, &str)]) -> Node {
        // Warnings reach the test's output (shown when it fails).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("signalbox.toml");
        std::fs::write(&config_path, toml).unwrap();
        let store = Arc::new(Store::open(db, key.clone()).await.unwrap());
        store
            .bootstrap(&BootstrapEnv {
                admin_password: Some(ADMIN_PASSWORD.into()),
                admin_token: None,
                gateway_key: Some(BOOT_KEY.into()),
            })
            .await
            .unwrap();
        let (catalog, version) = store.load_catalog().await.unwrap();
        let (live, _) =
            Live::load_with_catalog(Some(&config_path), None, env_of(vars), catalog, version)
                .unwrap_or_else(|e| panic!("invalid:\n{e}"));
        let live = Arc::new(live);
        let stop = CancellationToken::new();
        let pg = db.starts_with("postgres").then(|| db.to_string());
        admin::sync::follow(store.clone(), live.clone(), pg, stop.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let router = admin::router(AdminState::new(store.clone(), live.clone()));
        let traces: Arc<dyn signalbox_core::trace::TraceStore> = store.clone();
        let running = start_with(live.clone(), listener, Some(router), Some(traces)).unwrap();
        let url = format!("http://{}", running.addr);
        let token = login(&url, "admin", ADMIN_PASSWORD).await.unwrap();
        Node {
            url,
            store,
            live,
            token,
            _running: running,
            config_path,
            stop,
            _dir: dir,
            _db: None,
        }
    }

    /// A node on a SQLite store of its own, with a fresh master key.
    pub async fn sqlite(toml: &str) -> Node {
        let db_dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", db_dir.path().join("s.db").display());
        let mut node = Self::start(&db, &MasterKey::generate(), toml).await;
        node._db = Some(db_dir);
        node
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        client()
            .request(method, format!("{}/admin/v1{}", self.url, path))
            .bearer_auth(&self.token)
    }

    pub async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.admin(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.admin(reqwest::Method::PUT, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.admin(reqwest::Method::GET, path).send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.admin(reqwest::Method::DELETE, path)
            .send()
            .await
            .unwrap()
    }

    /// A chat call with the bootstrap gateway key; returns status and body.
    pub async fn chat(&self, model: &str) -> (u16, Value) {
        self.chat_with(model, BOOT_KEY).await
    }

    pub async fn chat_with(&self, model: &str, key: &str) -> (u16, Value) {
        let r = client()
            .post(format!("{}/v1/chat/completions", self.url))
            .bearer_auth(key)
            .json(&chat_body(model, false))
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// A target `name` for mock model `model` and a route `route` onto it.
    pub async fn route_to(&self, route: &str, target: &str, model: &str) {
        let r = self
            .put_json(
                &format!("/projects/default/targets/{target}"),
                json!({"model": model, "provider": "demo"}),
            )
            .await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let r = self
            .put_json(
                &format!("/projects/default/routes/{route}"),
                json!({"strategy": "single", "targets": [target]}),
            )
            .await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
}

pub async fn login(url: &str, user: &str, password: &str) -> Result<String, (u16, Value)> {
    let r = client()
        .post(format!("{url}/admin/v1/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    if s == 200 {
        Ok(body["token"].as_str().unwrap().to_string())
    } else {
        Err((s, body))
    }
}

/// Run `f` once per store backend: SQLite, and PostgreSQL when configured.
pub async fn each_store(f: impl AsyncFn(String)) {
    let dir = tempfile::tempdir().unwrap();
    for url in signalbox_store::testing::fresh_urls(dir.path()).await {
        f(url).await;
    }
}

#[tokio::test]
async fn an_idle_node_polls_its_store_at_the_poll_interval_not_in_a_busy_loop() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        let before = node.store.version_reads();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let polls = node.store.version_reads() - before;
        // Every 250 ms: four a second (PostgreSQL's NOTIFY adds wake-ups only on writes).
        assert!(
            polls <= 8,
            "{polls} version reads in one idle second on {db}"
        );
        assert!(polls >= 2, "the follower stopped polling ({polls}) on {db}");
    })
    .await;
}

fn served_model(body: &Value) -> &str {
    body["model"].as_str().unwrap_or("")
}

#[tokio::test]
async fn an_admin_change_serves_at_once_and_a_request_never_sees_half_of_it() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        assert_eq!(node.chat("route::summarize").await.0, 404);
        node.route_to("summarize", "first", "echo-1").await;
        let (s, body) = node.chat("route::summarize").await;
        assert_eq!((s, served_model(&body)), (200, "echo-1"), "{db}");
        // Repoint the route: the very next request follows.
        node.route_to("summarize", "second", "echo-2").await;
        let (s, body) = node.chat("route::summarize").await;
        assert_eq!((s, served_model(&body)), (200, "echo-2"), "{db}");
    })
    .await;
}

#[tokio::test]
async fn an_invalid_write_is_refused_with_its_field_path_and_changes_nothing() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        let version = node.live.version();
        let r = node
            .post_json(
                "/projects/default/routes",
                json!({"name": "r", "targets": ["missing"]}),
            )
            .await;
        let (s, e) = error_of(r).await;
        assert_eq!(s, 400);
        assert_eq!(e["error"]["code"], "invalid_config");
        assert_eq!(e["error"]["param"], "routes.r.targets[0]");
        assert!(e["error"]["message"].as_str().unwrap().contains("missing"));
        assert_eq!(node.get_json("/projects/default/routes/r").await.0, 404);
        assert_eq!(
            node.live.version(),
            version,
            "no snapshot swap for a refused write"
        );

        // Unknown fields, bad JSON and a wrong type each name what is wrong.
        let r = node
            .post_json(
                "/projects/default/routes",
                json!({"name": "r", "targets": [], "colour": "red"}),
            )
            .await;
        let (s, e) = error_of(r).await;
        assert_eq!((s, e["error"]["param"].as_str()), (400, Some("colour")));
        let r = node
            .admin(reqwest::Method::POST, "/projects/default/routes")
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, 400);
        let r = node
            .post_json("/projects/default/routes", json!({"targets": ["x"]}))
            .await;
        let (s, e) = error_of(r).await;
        assert_eq!((s, e["error"]["param"].as_str()), (400, Some("name")));
        // Inside an object and with the wrong type, `param` is the field's path.
        for (path, body, param) in [
            (
                "/projects/default/routes/r",
                json!({"targets": [{"target": "t", "weight": 3, "colour": 1}]}),
                "targets[0].colour",
            ),
            (
                "/projects/default/targets/t",
                json!({"model": "echo-1", "weight": "heavy"}),
                "weight",
            ),
            (
                "/projects/default/providers/p",
                json!({"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "models": "gpt-4o"}),
                "models",
            ),
        ] {
            let (s, e) = error_of(node.put_json(path, body).await).await;
            assert_eq!((s, e["error"]["param"].as_str()), (400, Some(param)), "{e}");
            assert!(!e.to_string().contains("RawTargetRef"), "{e}");
        }
        let (s, e) = node
            .get_json("/projects/default/traces?endpoint=bogus")
            .await;
        assert_eq!(
            (s, e["error"]["param"].as_str()),
            (400, Some("endpoint")),
            "{e}"
        );
        // The framework's own refusals answer in the same shape: a wrong method, a path that
        // does not decode, a body over the admin limit.
        let r = node
            .admin(reqwest::Method::DELETE, "/projects")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(header(&r, "x-signalbox-error-code"), Some("bad_request"));
        let (s, e) = node.get_json("/projects/%C3/routes").await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{e}"
        );
        let r = node
            .admin(reqwest::Method::POST, "/projects/default/credentials")
            .header("content-type", "application/json")
            .body(vec![b' '; 3 * 1024 * 1024])
            .send()
            .await
            .unwrap();
        let (s, e) = error_of(r).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (413, Some("bad_request")),
            "{e}"
        );
    })
    .await;
}

#[tokio::test]
async fn deleting_a_target_a_route_uses_is_refused_with_the_list_of_users() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        node.route_to("a", "shared", "echo-1").await;
        let r = node
            .put_json(
                "/projects/default/routes/b",
                json!({"strategy": "fallback", "targets": ["shared"]}),
            )
            .await;
        assert!(r.status().is_success());
        let (s, e) = error_of(node.delete("/projects/default/targets/shared").await).await;
        assert_eq!(s, 409);
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("routes.a") && msg.contains("routes.b"),
            "{msg}"
        );
        assert_eq!(node.chat("route::a").await.0, 200, "still serving");
        // Duplicate names are refused too.
        let r = node
            .post_json(
                "/projects/default/targets",
                json!({"name": "shared", "model": "echo-2"}),
            )
            .await;
        assert_eq!(error_of(r).await.0, 409);
    })
    .await;
}

/// A config-file object of one project is not there for another project's writes: 404, as a
/// read answers (409 "defined in the config file" told that it exists).
#[tokio::test]
async fn another_projects_file_object_is_not_found_not_read_only() {
    let node = Node::sqlite(&format!(
        "{BASE}[targets.ft]\nmodel = \"echo-1\"\n[routes.fromfile]\ntargets = [\"ft\"]\n"
    ))
    .await;
    assert_eq!(
        node.post_json("/projects", json!({"name": "other"}))
            .await
            .status(),
        201
    );
    assert_eq!(
        error_of(node.delete("/projects/other/routes/fromfile").await)
            .await
            .0,
        404
    );
    let r = node
        .admin(reqwest::Method::PATCH, "/projects/other/routes/fromfile")
        .json(&json!({"strategy": "single"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 404);
    // In its own project it is read-only.
    assert_eq!(
        error_of(node.delete("/projects/default/routes/fromfile").await)
            .await
            .0,
        409
    );
}

/// If-Match on an object deleted since is a stale precondition (412), not 404.
#[tokio::test]
async fn if_match_on_an_object_deleted_since_is_412() {
    let node = Node::sqlite(BASE).await;
    let r = node
        .put_json("/projects/default/targets/gone", json!({"model": "echo-2"}))
        .await;
    assert!(r.status().is_success());
    assert!(
        node.delete("/projects/default/targets/gone")
            .await
            .status()
            .is_success()
    );
    let r = node
        .admin(reqwest::Method::DELETE, "/projects/default/targets/gone")
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    let (s, e) = error_of(r).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (412, Some("precondition_failed")),
        "{e}"
    );
    let r = node
        .admin(reqwest::Method::PATCH, "/projects/default/targets/gone")
        .header("if-match", "\"1\"")
        .json(&json!({"weight": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 412);
    // Without If-Match: simply not there.
    assert_eq!(
        error_of(node.delete("/projects/default/targets/gone").await)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn stale_writes_get_412_and_history_rolls_back_to_any_version() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        node.route_to("r", "one", "echo-1").await; // route v1
        let r = node
            .put_json("/projects/default/targets/two", json!({"model": "echo-2"}))
            .await;
        assert!(r.status().is_success());
        let got = node
            .admin(reqwest::Method::GET, "/projects/default/routes/r")
            .send()
            .await
            .unwrap();
        let etag = header(&got, "etag").unwrap().to_string();
        assert_eq!(etag, "\"1\"");
        // Writer A updates with the ETag it read.
        let r = node
            .admin(reqwest::Method::PUT, "/projects/default/routes/r")
            .header("if-match", &etag)
            .json(&json!({"strategy": "single", "targets": ["two"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "etag"), Some("\"2\""));
        // Writer B, with the same stale ETag, is refused; nothing is overwritten.
        let r = node
            .admin(reqwest::Method::PUT, "/projects/default/routes/r")
            .header("if-match", &etag)
            .json(&json!({"strategy": "single", "targets": ["one"], "models": ["x"]}))
            .send()
            .await
            .unwrap();
        let (s, e) = error_of(r).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (412, Some("precondition_failed"))
        );
        assert_eq!(served_model(&node.chat("route::r").await.1), "echo-2");

        let (_, h) = node.get_json("/projects/default/routes/r/history").await;
        let versions: Vec<i64> = h["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_i64().unwrap())
            .collect();
        assert_eq!(versions, vec![2, 1]);
        assert_eq!(h["data"][0]["author"], "admin");
        assert_eq!(h["data"][0]["diff"][0]["field"], "targets");
        assert_eq!(h["data"][0]["diff"][0]["before"], json!(["one"]));

        let r = node
            .post_json("/projects/default/routes/r/rollback", json!({"version": 1}))
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "etag"), Some("\"3\""));
        assert_eq!(served_model(&node.chat("route::r").await.1), "echo-1");
        let r = node
            .post_json("/projects/default/routes/r/rollback", json!({"version": 9}))
            .await;
        assert_eq!(error_of(r).await.0, 404);
    })
    .await;
}

#[tokio::test]
async fn file_objects_are_read_only_and_a_name_in_both_is_a_load_error_naming_both() {
    each_store(async |db| {
        let toml = format!("{BASE}[targets.filetarget]\nmodel = \"echo-1\"\n[routes.fromfile]\ntargets = [\"filetarget\"]\n");
        let node = Node::start(&db, &MasterKey::generate(), &toml).await;
        let (s, list) = node.get_json("/projects/default/routes").await;
        assert_eq!(s, 200);
        assert_eq!(list["data"][0]["name"], "fromfile");
        assert_eq!(list["data"][0]["managed_by"], "file");
        // Targets and providers say what they serve, for the dashboard's choices; a PUT of
        // what a GET returned ignores it.
        let (_, t) = node.get_json("/projects/default/targets/filetarget").await;
        assert_eq!(t["serves"], "chat");
        node.put_json("/projects/default/models/embed-9", json!({"endpoint": "embeddings"})).await;
        let r = node.put_json("/projects/default/providers/p9", json!({"kind": "mock", "models": ["echo-9", "embed-9"]})).await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let (_, p9) = node.get_json("/projects/default/providers/p9").await;
        assert_eq!(p9["serves"], json!({"echo-9": "chat", "embed-9": "embeddings"}));
        let r = node.put_json("/projects/default/providers/p9", p9).await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let r = node.put_json("/projects/default/routes/fromfile", json!({"targets": ["filetarget"]})).await;
        assert_eq!(error_of(r).await.0, 409);
        assert_eq!(error_of(node.delete("/projects/default/routes/fromfile").await).await.0, 409);
        // A store route, then the file grows one of the same name: the edit is rejected whole.
        node.route_to("clash", "t2", "echo-2").await;
        std::fs::write(&node.config_path, format!("{toml}[routes.clash]\ntargets = [\"filetarget\"]\n")).unwrap();
        let err = node.live.reload().unwrap_err().to_string();
        assert!(err.contains("routes.clash") && err.contains("store") && err.contains("signalbox.toml"), "{err}");
        assert_eq!(served_model(&node.chat("route::clash").await.1), "echo-2");
    })
    .await;
}

#[tokio::test]
async fn roles_limit_what_a_user_may_do_and_revoked_tokens_stop_at_once() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        let r = node.post_json("/projects", json!({"name": "team-b"})).await;
        assert_eq!(r.status(), 201);
        let r = node
            .post_json("/users", json!({"name": "vera", "password": "viewer-pass-1", "roles": {"default": "viewer"}}))
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let r = node
            .post_json("/users", json!({"name": "ed", "password": "editor-pass-1", "roles": {"default": "editor"}}))
            .await;
        assert_eq!(r.status(), 201);
        let viewer = login(&node.url, "vera", "viewer-pass-1").await.unwrap();
        let editor = login(&node.url, "ed", "editor-pass-1").await.unwrap();
        let as_user = |tok: &str, m: reqwest::Method, path: &str| {
            client().request(m, format!("{}/admin/v1{path}", node.url)).bearer_auth(tok.to_string())
        };
        // The viewer reads, but cannot write.
        let r = as_user(&viewer, reqwest::Method::GET, "/projects/default/routes").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = as_user(&viewer, reqwest::Method::PUT, "/projects/default/targets/t")
            .json(&json!({"model": "echo-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, 403);
        // The editor writes in its project, and sees nothing of another.
        let r = as_user(&editor, reqwest::Method::PUT, "/projects/default/targets/t")
            .json(&json!({"model": "echo-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = as_user(&editor, reqwest::Method::GET, "/projects/team-b/routes").send().await.unwrap();
        assert_eq!(error_of(r).await.0, 404);
        // Model settings apply to every project's providers: not one project's editor's to change.
        let r = as_user(&editor, reqwest::Method::PUT, "/projects/default/models/echo-1")
            .json(&json!({"timeout_ms": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, 403);
        // A name taken in another project is refused without naming that project.
        let r = node.put_json("/projects/team-b/credentials/theirs", json!({"value": "sk-b"})).await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let r = as_user(&editor, reqwest::Method::PUT, "/projects/default/credentials/theirs")
            .json(&json!({"value": "sk-a"}))
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(r).await;
        assert_eq!(status, 409);
        assert!(!body.to_string().contains("team-b"), "{body}");
        let r = as_user(&editor, reqwest::Method::POST, "/users")
            .json(&json!({"name": "x", "password": "whatever-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, 403);
        // An audit entry names who did it.
        let (_, audit) = node.get_json("/audit").await;
        assert!(audit["data"].as_array().unwrap().iter().any(|a| a["actor"] == "ed" && a["object"] == "target:t"));
        // A token revoked is refused on its next use.
        let (_, toks) = node.get_json("/tokens").await;
        let id = toks["data"].as_array().unwrap().iter().find(|t| t["user"] == "ed").unwrap()["id"].as_str().unwrap().to_string();
        assert_eq!(node.delete(&format!("/tokens/{id}")).await.status(), 204);
        let r = as_user(&editor, reqwest::Method::GET, "/projects/default/routes").send().await.unwrap();
        assert_eq!(error_of(r).await.0, 401);
        let r = client().get(format!("{}/admin/v1/projects", node.url)).send().await.unwrap();
        assert_eq!(error_of(r).await.0, 401);
    })
    .await;
}

#[tokio::test]
async fn more_than_ten_failed_logins_a_minute_get_429() {
    let node = Node::sqlite(BASE).await;
    for _ in 0..10 {
        assert_eq!(login(&node.url, "admin", "wrong").await.unwrap_err().0, 401);
    }
    let (s, body) = login(&node.url, "admin", "wrong").await.unwrap_err();
    assert_eq!(s, 429, "{body}");
    // Even the right password waits now: the limit is not a password oracle.
    assert_eq!(
        login(&node.url, "admin", ADMIN_PASSWORD)
            .await
            .unwrap_err()
            .0,
        429
    );
}

#[tokio::test]
async fn gateway_keys_revealed_once_revoked_rotated_and_expired() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        node.route_to("r", "t", "echo-1").await;
        let r = node
            .post_json("/projects/default/keys", json!({"name": "app"}))
            .await;
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        let key = created["key"].as_str().unwrap().to_string();
        assert!(key.starts_with(created["prefix"].as_str().unwrap()));
        assert_eq!(node.chat_with("route::r", &key).await.0, 200);
        // Listing shows prefixes, never the key.
        let (_, list) = node.get_json("/projects/default/keys").await;
        assert!(!list.to_string().contains(&key));
        // Rotation: the new key works, the old one through its grace period.
        let id = created["id"].as_str().unwrap();
        let r = node
            .post_json(
                &format!("/projects/default/keys/{id}/rotate"),
                json!({"grace_seconds": 3600}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let rotated: Value = r.json().await.unwrap();
        let new_key = rotated["key"].as_str().unwrap().to_string();
        assert_eq!(node.chat_with("route::r", &new_key).await.0, 200);
        assert_eq!(node.chat_with("route::r", &key).await.0, 200);
        // Revoked: refused at once.
        assert_eq!(
            node.delete(&format!("/projects/default/keys/{id}"))
                .await
                .status(),
            204
        );
        assert_eq!(node.chat_with("route::r", &key).await.0, 401);
        // Rotation with no grace ends the old key at once.
        let nid = rotated["id"].as_str().unwrap();
        let r = node
            .post_json(
                &format!("/projects/default/keys/{nid}/rotate"),
                json!({"grace_seconds": 0}),
            )
            .await;
        let third: Value = r.json().await.unwrap();
        assert_eq!(node.chat_with("route::r", &new_key).await.0, 401);
        assert_eq!(
            node.chat_with("route::r", third["key"].as_str().unwrap())
                .await
                .0,
            200
        );
        // An expiry in the past is refused; a short one lapses on its own.
        let r = node
            .post_json(
                "/projects/default/keys",
                json!({"name": "old", "expires_at": "2001-01-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(error_of(r).await.1["error"]["param"], "expires_at");
        let r = node
            .post_json(
                "/projects/default/keys",
                json!({"name": "brief", "expires_in_seconds": 1}),
            )
            .await;
        let brief: Value = r.json().await.unwrap();
        let brief = brief["key"].as_str().unwrap().to_string();
        assert_eq!(node.chat_with("route::r", &brief).await.0, 200);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(node.chat_with("route::r", &brief).await.0, 401);
    })
    .await;
}

/// A credential write carries its version as an ETag like every other admin write: a PUT or
/// DELETE with a stale If-Match gets 412 and leaves the stored value alone; the fresh one
/// applies; If-Match on a credential that is gone is 412 too.
#[tokio::test]
async fn stale_credential_writes_get_412_and_change_nothing() {
    let node = Node::sqlite(BASE).await;
    let etag_of = |r: &reqwest::Response| header(r, "etag").unwrap_or_default().to_string();
    let r = node
        .post_json(
            "/projects/default/credentials",
            json!({"name": "k", "value": "sk-first-value-1"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let first = etag_of(&r);
    let put = |value: &str, etag: &str| {
        node.admin(reqwest::Method::PUT, "/projects/default/credentials/k")
            .header("if-match", etag)
            .json(&json!({"value": value}))
    };
    let r = put("sk-second-value-2", &first).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let second = etag_of(&r);
    assert_ne!(second, first);
    // A writer that read the first version is refused; the value stays the second one.
    let (s, e) = error_of(put("sk-stale-value-3", &first).send().await.unwrap()).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (412, Some("precondition_failed")),
        "{e}"
    );
    let (_, list) = node.get_json("/projects/default/credentials").await;
    assert_eq!(
        format!("\"{}\"", list["data"][0]["version"]),
        second,
        "the list shows the ETag's version"
    );
    assert_eq!(list["data"][0]["hint"], "****ue-2");
    let delete = |etag: &str| {
        node.admin(reqwest::Method::DELETE, "/projects/default/credentials/k")
            .header("if-match", etag)
    };
    assert_eq!(error_of(delete(&first).send().await.unwrap()).await.0, 412);
    assert_eq!(error_of(delete("*").send().await.unwrap()).await.0, 400);
    assert_eq!(
        delete(&format!("W/{second}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let (s, e) = error_of(delete(&second).send().await.unwrap()).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (412, Some("precondition_failed")),
        "{e}"
    );
    assert_eq!(
        error_of(put("sk-recreated-4", &second).send().await.unwrap())
            .await
            .0,
        412
    );
    // Without If-Match: gone is 404, and a PUT creates it afresh, at a version it never had:
    // a writer holding an ETag of the deleted credential cannot touch the new one.
    assert_eq!(
        error_of(node.delete("/projects/default/credentials/k").await)
            .await
            .0,
        404
    );
    let r = node
        .put_json(
            "/projects/default/credentials/k",
            json!({"value": "sk-recreated-5"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let third = etag_of(&r);
    assert!(third != first && third != second, "{third}");
    assert_eq!(error_of(delete(&first).send().await.unwrap()).await.0, 412);
    assert_eq!(error_of(delete(&second).send().await.unwrap()).await.0, 412);
    // Creating is create-only in the store's own transaction: of POSTs at once, one wins.
    let posts = (0..4).map(|i| {
        node.admin(reqwest::Method::POST, "/projects/default/credentials")
            .json(&json!({"name": "race", "value": format!("sk-racing-value-{i}")}))
            .send()
    });
    let mut codes: Vec<u16> = futures_util::future::join_all(posts)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, [201, 409, 409, 409]);
}

#[tokio::test]
async fn stored_credentials_are_used_upstream_but_never_shown_again() {
    let fake = fake_upstream::FakeUpstream::openai().start().await;
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        let secret = "sk-canary-credential-7f3a9";
        let r = node.post_json("/projects/default/credentials", json!({"name": "up", "value": secret})).await;
        assert_eq!(r.status(), 201);
        let body = r.text().await.unwrap();
        assert!(!body.contains(secret) && body.contains("****"), "{body}");
        // A value no header could carry is refused.
        let r = node.put_json("/projects/default/credentials/huge", json!({"value": "k".repeat(20_000)})).await;
        let (s, e) = error_of(r).await;
        assert_eq!((s, e["error"]["param"].as_str()), (400, Some("value")), "{e}");
        let r = node
            .put_json(
                "/projects/default/providers/up",
                json!({"kind": "openai", "base_url": fake.base_url(), "models": ["gpt-4o"], "credential": "credential::up"}),
            )
            .await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        node.put_json("/projects/default/targets/upt", json!({"provider": "up", "model": "gpt-4o"})).await;
        node.put_json("/projects/default/routes/viaup", json!({"targets": ["upt"]})).await;
        let (s, body) = node.chat("route::viaup").await;
        assert_eq!(s, 200, "{body}");
        let reqs = fake.requests();
        let chat = reqs.iter().rev().find(|r| r.path.ends_with("/chat/completions")).unwrap();
        let seen = chat.header("authorization").unwrap().to_string();
        assert_eq!(seen, format!("Bearer {secret}"));
        // Test connection lists the models, nothing else.
        let r = node.post_json("/projects/default/providers/up/test", json!({})).await;
        let t: Value = r.json().await.unwrap();
        assert_eq!(t["status"], "ok");
        assert!(t["models"].as_array().unwrap().iter().any(|m| m == "gpt-4o"));
        // Nothing the admin API returns holds the secret, nor does the audit log.
        for path in ["/projects/default/credentials", "/projects/default/providers", "/audit", "/projects/default/export"] {
            let r = node.admin(reqwest::Method::GET, path).send().await.unwrap();
            let text = r.text().await.unwrap();
            assert!(!text.contains(secret), "{path} leaks the credential: {text}");
        }
        // A credential of another project cannot be borrowed.
        node.post_json("/projects", json!({"name": "other"})).await;
        let r = node
            .put_json(
                "/projects/other/providers/thief",
                json!({"kind": "openai", "base_url": fake.base_url(), "models": ["gpt-4o"], "credential": "credential::up"}),
            )
            .await;
        let (s, e) = error_of(r).await;
        assert_eq!(s, 400);
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains("belongs to another project"), "{msg}");
        assert!(!msg.contains("'default'"), "the other project is not named: {msg}");
    })
    .await;
}

#[tokio::test]
async fn a_moved_provider_loses_its_credential_and_metadata_addresses_are_refused() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        node.post_json("/projects/default/credentials", json!({"name": "k", "value": "sk-moving-secret"})).await;
        let r = node
            .put_json(
                "/projects/default/providers/p",
                json!({"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m"], "credential": "credential::k"}),
            )
            .await;
        assert!(r.status().is_success());
        let r = node
            .admin(reqwest::Method::PATCH, "/projects/default/providers/p")
            .json(&json!({"base_url": "http://127.0.0.2:9/v1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (_, p) = node.get_json("/projects/default/providers/p").await;
        assert_eq!(p["base_url"], "http://127.0.0.2:9/v1");
        assert!(p.get("credential").is_none(), "credential must not follow a new base_url: {p}");
        // Setting one in the same request keeps it.
        let r = node
            .admin(reqwest::Method::PATCH, "/projects/default/providers/p")
            .json(&json!({"base_url": "http://127.0.0.3:9/v1", "credential": "credential::k"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        for bad in [
            "http://169.254.169.254/latest",
            "http://[fe80::1]/v1",
            "http://metadata.google.internal/v1",
            // A trailing dot names the same host.
            "http://169.254.169.254./latest",
            "http://169.254.169.254.:80/",
            "http://METADATA.GOOGLE.INTERNAL./v1",
        ] {
            let r = node
                .put_json("/projects/default/providers/meta", json!({"kind": "openai", "base_url": bad, "models": ["m"]}))
                .await;
            let (s, e) = error_of(r).await;
            assert_eq!((s, e["error"]["param"].as_str()), (400, Some("base_url")), "{bad}");
        }
    })
    .await;
}

/// One admin call in project `default` with a user's token: the status and the body.
async fn call_as(
    node: &Node,
    tok: &str,
    m: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = client()
        .request(m, format!("{}/admin/v1/projects/default{path}", node.url))
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// An editor cannot send the project's stored credential to an address of their own (a new
/// provider, a provider moved with the credential set again, a target on such a provider, or a
/// rollback onto a moved provider): the credential would reach it by test connection or by
/// any request, nor detach it and attach it elsewhere. The owner can; an editor can still use
/// it where it already goes, and attach a credential sent nowhere yet.
#[tokio::test]
async fn only_an_owner_sends_a_stored_credential_to_a_new_address() {
    use reqwest::Method;
    let node = Node::sqlite(BASE).await;
    node.post_json(
        "/projects/default/credentials",
        json!({"name": "prod", "value": "sk-prod-secret"}),
    )
    .await;
    let real = json!({"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m"], "credential": "credential::prod"});
    assert!(
        node.put_json("/projects/default/providers/real", real)
            .await
            .status()
            .is_success()
    );
    for (user, role) in [("ed", "editor"), ("olive", "owner")] {
        let body =
            json!({"name": user, "password": "long-enough-pass-1", "roles": {"default": role}});
        assert_eq!(node.post_json("/users", body).await.status(), 201);
    }
    let editor = login(&node.url, "ed", "long-enough-pass-1").await.unwrap();
    let owner = login(&node.url, "olive", "long-enough-pass-1")
        .await
        .unwrap();
    let elsewhere = |url: &str, credential: &str| json!({"kind": "openai", "base_url": url, "models": ["m"], "credential": credential});
    let prod_elsewhere = elsewhere("http://127.0.0.7:9/v1", "credential::prod");

    // A new provider elsewhere with the credential: refused, and nothing was written.
    let (s, e) = call_as(
        &node,
        &editor,
        Method::PUT,
        "/providers/theirs",
        prod_elsewhere.clone(),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{e}"
    );
    let msg = e["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("http://127.0.0.7:9") && msg.contains("owner"),
        "{msg}"
    );
    assert!(!msg.contains("sk-prod-secret"), "{msg}");
    // The rest, in order: (who, method, path, body, status expected, what it shows).
    let (ed, own) = (editor.as_str(), owner.as_str());
    #[rustfmt::skip]
    let steps = [
        (ed, Method::GET, "/providers/theirs", Value::Null, 404, "the refused write wrote nothing"),
        (ed, Method::PATCH, "/providers/real", json!({"base_url": "http://127.0.0.7:9/v1", "credential": "credential::prod"}), 403, "moving a provider and setting the credential again"),
        (ed, Method::PUT, "/providers/bare", json!({"kind": "openai", "base_url": "http://127.0.0.8:9/v1", "models": ["m"]}), 201, "a provider without a credential is the editor's to make"),
        (ed, Method::PUT, "/targets/sneaky", json!({"provider": "bare", "model": "m", "credential": "credential::prod"}), 403, "a target carrying the credential on a provider elsewhere"),
        (ed, Method::PUT, "/providers/same-host", elsewhere("http://127.0.0.1:9/other", "credential::prod"), 201, "where the credential already goes, the editor may use it"),
        (ed, Method::POST, "/credentials", json!({"name": "mine", "value": "sk-editor-own"}), 201, "the editor stores a credential of their own"),
        (ed, Method::PUT, "/providers/theirs", elsewhere("http://127.0.0.7:9/v1", "credential::mine"), 201, "a credential sent nowhere yet goes where the editor puts it"),
        // A rollback onto a moved provider: the owner's target on `real`; the editor moves
        // `real` (which drops the target's credential), then rolls the target back.
        (own, Method::PUT, "/targets/kept", json!({"provider": "real", "model": "m", "credential": "credential::prod"}), 201, "the owner's target"),
        (ed, Method::PATCH, "/providers/real", json!({"base_url": "http://127.0.0.7:9/v1"}), 200, "moving a provider drops its credentials"),
        (ed, Method::POST, "/targets/kept/rollback", json!({"version": 1}), 403, "a rollback bringing the credential onto the moved provider"),
        // Detached, then attached elsewhere: a credential that went somewhere is not new.
        (ed, Method::PATCH, "/providers/theirs", json!({"credential": null}), 200, "detaching the credential"),
        (ed, Method::PUT, "/providers/other", elsewhere("http://127.0.0.10:9/v1", "credential::mine"), 403, "a detached credential sent to a new address"),
        (own, Method::PUT, "/providers/new-home", elsewhere("http://127.0.0.9:9/v1", "credential::prod"), 201, "the owner may send the credential anywhere"),
    ];
    for (tok, method, path, body, want, what) in steps {
        let (got, e) = call_as(&node, tok, method, path, body).await;
        assert_eq!(got, want, "{what}: {e}");
    }
}

#[tokio::test]
async fn explain_shows_the_match_what_it_shadows_and_the_plan() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        node.route_to("echo-1", "t", "echo-2").await;
        let r = node
            .post_json(
                "/projects/default/explain",
                json!({"model": "echo-1", "endpoint": "chat"}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["layer"], "route");
        assert!(e["shadowed"].to_string().contains("demo"), "{e}");
        assert_eq!(e["plan"]["steps"][0]["targets"][0]["model"], "echo-2");
        let r = node
            .post_json(
                "/projects/default/explain",
                json!({"model": "route::echo-1", "endpoint": "embeddings"}),
            )
            .await;
        let (s, e) = error_of(r).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (400, Some("wrong_endpoint"))
        );
        let r = node
            .post_json("/projects/default/explain", json!({"model": "nothing"}))
            .await;
        assert_eq!(error_of(r).await.0, 404);
    })
    .await;
}

#[tokio::test]
async fn export_then_import_into_a_new_store_behaves_the_same() {
    each_store(async |db| {
        let a = Node::start(&db, &MasterKey::generate(), BASE).await;
        a.route_to("summarize", "t1", "echo-1").await;
        a.put_json("/projects/default/targets/t2", json!({"model": "echo-2", "weight": 3})).await;
        let r = a
            .put_json(
                "/projects/default/routes/split",
                json!({"strategy": "weighted", "targets": [{"target": "t1", "weight": 30}, "t2"], "retry": {"max_retries": 1}}),
            )
            .await;
        assert!(r.status().is_success());
        let r = a
            .put_json(
                "/projects/default/routes/ab",
                json!({"strategy": "experiment", "sticky": "user", "variants": {"x": {"target": "t1", "weight": 50, "temperature": 0.2}, "y": {"model": "echo-2", "weight": 50}}}),
            )
            .await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let exported = a.admin(reqwest::Method::GET, "/projects/default/export").send().await.unwrap().text().await.unwrap();

        // Import into a fresh SQLite store through the same path `config import` takes.
        let dir = tempfile::tempdir().unwrap();
        let db2 = format!("sqlite://{}", dir.path().join("b.db").display());
        let b = Node::start(&db2, &MasterKey::generate(), BASE).await;
        let raw = signalbox_core::config::parse(&exported, None).unwrap();
        let (changes, _) = signalbox::transfer::import_changes(raw, "default", &["default".to_string()]);
        b.store
            .write_all(&signalbox_store::Actor("test".into()), changes, |c, _| b.live.check_catalog(c).map(|_| ()))
            .await
            .unwrap();
        signalbox::admin::sync::refresh(&b.store, &b.live).await.unwrap();
        for m in ["route::summarize", "route::split", "route::ab"] {
            let ea = a.post_json("/projects/default/explain", json!({"model": m})).await.json::<Value>().await.unwrap();
            let eb = b.post_json("/projects/default/explain", json!({"model": m})).await.json::<Value>().await.unwrap();
            assert_eq!(ea, eb, "{m}");
        }
        // And the exported file serves as a config file on its own.
        let both = format!("{BASE}{exported}");
        signalbox_core::load_str(&both, None, &|_| None, 1).unwrap_or_else(|e| panic!("{e}\n{both}"));
    })
    .await;
}

#[tokio::test]
async fn a_store_that_goes_away_fails_admin_writes_cleanly_while_traffic_continues() {
    let node = Node::sqlite(BASE).await;
    node.route_to("r", "t", "echo-1").await;
    node.store.close().await;
    let r = node
        .put_json("/projects/default/targets/u", json!({"model": "echo-2"}))
        .await;
    let (s, e) = error_of(r).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (503, Some("store_unavailable"))
    );
    for _ in 0..5 {
        assert_eq!(node.chat("route::r").await.0, 200);
    }
}

#[tokio::test]
async fn the_openapi_document_describes_the_admin_api() {
    let node = Node::sqlite(BASE).await;
    let r = client()
        .get(format!("{}/admin/v1/openapi.json", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/admin/v1/login",
        "/admin/v1/projects/{project}/routes/{name}",
        "/admin/v1/projects/{project}/explain",
    ] {
        assert!(doc["paths"].get(p).is_some(), "missing {p}");
    }
    assert!(
        doc["components"]["schemas"]["Route"]["properties"]
            .get("strategy")
            .is_some()
    );
    // No CORS on the admin API.
    let r = client()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/admin/v1/projects", node.url),
        )
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(header(&r, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn two_nodes_on_one_postgresql_converge() {
    let Some(db) = signalbox_store::testing::fresh_postgres().await else {
        return;
    };
    let key = MasterKey::generate();
    let a = Node::start(&db, &key, BASE).await;
    let b = Node::start(&db, &key, BASE).await;
    for (i, model) in ["echo-1", "echo-2", "echo-1"].iter().enumerate() {
        let t0 = Instant::now();
        a.route_to("shared", &format!("t{i}"), model).await;
        loop {
            let (s, body) = b.chat("route::shared").await;
            if s == 200 && served_model(&body) == *model {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "node B never saw the change"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("node B served change {i} after {:?}", t0.elapsed());
    }
}

/// A node whose own file does not fit a store change (another file defines the same route)
/// keeps its last good config but is out of step with the others (a key revoked since would
/// still pass there): it answers `/ready` with 503 until a change fits again.
#[tokio::test]
async fn a_node_that_cannot_apply_a_store_change_is_not_ready_until_one_fits() {
    let Some(db) = signalbox_store::testing::fresh_postgres().await else {
        return;
    };
    let key = MasterKey::generate();
    let a = Node::start(&db, &key, BASE).await;
    let b = Node::start(
        &db,
        &key,
        &format!("{BASE}[targets.fb]\nmodel = \"echo-1\"\n[routes.clash]\ntargets = [\"fb\"]\n"),
    )
    .await;
    let ready = |n: &Node| {
        let url = format!("{}/ready", n.url);
        async move {
            let r = client().get(url).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(ready(&b).await.0, 200);
    a.route_to("clash", "t0", "echo-2").await;
    let t0 = Instant::now();
    loop {
        let (s, body) = ready(&b).await;
        if s == 503 {
            assert_eq!(body["status"], "store_config_rejected", "{body}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "node B stayed ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready(&a).await.0, 200, "the writer's node applied it");
    // The store's route goes: B can follow again.
    assert!(
        a.delete("/projects/default/routes/clash")
            .await
            .status()
            .is_success()
    );
    let t0 = Instant::now();
    while ready(&b).await.0 != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "node B never became ready again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP relay to the database that the test can cut and restore: the database "goes away".
struct Relay {
    addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    async fn start(target: std::net::SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let mut rx = cut2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        Relay { addr, up, cut }
    }
    fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|v| *v += 1);
    }
    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn postgresql_going_away_keeps_traffic_flowing_and_writes_resume_when_it_returns() {
    let Some(db) = signalbox_store::testing::fresh_postgres().await else {
        return;
    };
    // postgres://user@127.0.0.1:PORT/NAME -> through the relay
    let hostport = db
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let relay = Relay::start(hostport.parse().unwrap()).await;
    let via = db.replace(&hostport, &relay.addr.to_string());
    let node = Node::start(&via, &MasterKey::generate(), BASE).await;
    node.route_to("r", "t1", "echo-1").await;
    let ready = async || {
        client()
            .get(format!("{}/ready", node.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 200);

    relay.down();
    let r = node
        .put_json("/projects/default/targets/t2", json!({"model": "echo-2"}))
        .await;
    let (s, e) = error_of(r).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{e}"
    );
    for _ in 0..5 {
        let (s, body) = node.chat("route::r").await;
        assert_eq!((s, served_model(&body)), (200, "echo-1"));
    }

    let t0 = Instant::now();
    while ready().await != 503 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "/ready never noticed the store is gone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relay.restore();
    let t0 = Instant::now();
    loop {
        let r = node
            .put_json("/projects/default/targets/t2", json!({"model": "echo-2"}))
            .await;
        if r.status().is_success() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "writes never resumed: {}",
            r.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.route_to("r", "t2", "echo-2").await;
    assert_eq!(served_model(&node.chat("route::r").await.1), "echo-2");
    let t0 = Instant::now();
    while ready().await != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "/ready never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn concurrent_edits_with_the_same_etag_let_exactly_one_win() {
    each_store(async |db| {
        let node = Arc::new(Node::start(&db, &MasterKey::generate(), BASE).await);
        node.route_to("r", "t1", "echo-1").await;
        node.put_json("/projects/default/targets/t2", json!({"model": "echo-2"})).await;
        let mut tasks = Vec::new();
        for i in 0..8 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                let target = if i % 2 == 0 { "t1" } else { "t2" };
                let r = node
                    .admin(reqwest::Method::PUT, "/projects/default/routes/r")
                    .header("if-match", "\"1\"")
                    .json(&json!({"strategy": "fallback", "targets": [target], "models": [format!("m{i}")]}))
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        statuses.sort();
        assert_eq!(statuses, vec![200, 412, 412, 412, 412, 412, 412, 412], "{db}");
        let (_, h) = node.get_json("/projects/default/routes/r/history").await;
        assert_eq!(h["data"].as_array().unwrap().len(), 2, "one winner, no lost or doubled version");
    })
    .await;
}

#[tokio::test]
async fn store_objects_cannot_reach_the_servers_environment() {
    let fake = fake_upstream::FakeUpstream::openai().start().await;
    each_store(async |db| {
        let vars = [("OPENAI_API_KEY", "sk-server-env-secret"), ("SOME_SECRET", "s3cr3t-value")];
        let node = Node::start_env(&db, &MasterKey::generate(), BASE, &vars).await;
        // An explicit env:: reference in a store object is refused.
        let r = node
            .put_json(
                "/projects/default/providers/evil",
                json!({"kind": "openai", "base_url": fake.base_url(), "models": ["gpt-4o"], "credential": "env::SOME_SECRET"}),
            )
            .await;
        let (s, e) = error_of(r).await;
        assert_eq!((s, e["error"]["param"].as_str()), (400, Some("providers.evil.credential")), "{e}");
        let r = node.put_json("/projects/default/targets/t", json!({"model": "echo-1", "credential": "env::SOME_SECRET"})).await;
        assert_eq!(error_of(r).await.0, 400);
        // A store provider with a well-known id does not pick up the conventional variable.
        let r = node
            .put_json("/projects/default/providers/openai", json!({"base_url": fake.base_url(), "models": ["gpt-4o"]}))
            .await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        node.put_json("/projects/default/targets/o", json!({"provider": "openai", "model": "gpt-4o"})).await;
        node.put_json("/projects/default/routes/o", json!({"targets": ["o"]})).await;
        node.chat("route::o").await;
        for req in fake.requests() {
            assert!(req.header("authorization").is_none_or(|a| !a.contains("sk-server-env-secret")));
        }
    })
    .await;
}

#[tokio::test]
async fn a_deleted_name_can_be_created_again_and_keeps_its_history() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        node.route_to("r", "t", "echo-1").await;
        assert_eq!(
            node.delete("/projects/default/routes/r").await.status(),
            204
        );
        assert_eq!(node.chat("route::r").await.0, 404);
        let r = node
            .put_json(
                "/projects/default/routes/r",
                json!({"targets": ["t"], "retry": {"max_retries": 0}}),
            )
            .await;
        assert_eq!(r.status(), 201, "{db}");
        assert_eq!(header(&r, "etag"), Some("\"3\""));
        let (_, h) = node.get_json("/projects/default/routes/r/history").await;
        let versions: Vec<(i64, bool)> = h["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["version"].as_i64().unwrap(),
                    v["deleted"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(versions, vec![(3, false), (2, true), (1, false)]);
        assert_eq!(node.chat("route::r").await.0, 200);
    })
    .await;
}

#[tokio::test]
async fn moving_a_provider_drops_its_targets_credentials_too() {
    each_store(async |db| {
        let node = Node::start(&db, &MasterKey::generate(), BASE).await;
        node.post_json(
            "/projects/default/credentials",
            json!({"name": "k", "value": "sk-target-secret"}),
        )
        .await;
        let r = node
            .put_json(
                "/projects/default/providers/p",
                json!({"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m"]}),
            )
            .await;
        assert!(r.status().is_success());
        let r = node
            .put_json(
                "/projects/default/targets/t",
                json!({"provider": "p", "model": "m", "credential": "credential::k"}),
            )
            .await;
        assert!(r.status().is_success());
        let r = node
            .put_json(
                "/projects/default/targets/u",
                json!({"model": "m", "credential": "credential::k"}),
            )
            .await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let r = node
            .admin(reqwest::Method::PATCH, "/projects/default/providers/p")
            .json(&json!({"base_url": "http://127.0.0.2:9/v1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        for t in ["t", "u"] {
            let (_, body) = node
                .get_json(&format!("/projects/default/targets/{t}"))
                .await;
            assert!(
                body.get("credential").is_none(),
                "target {t} keeps its credential after the move: {body}"
            );
        }
        // A target moved to another provider leaves its credential behind too, unless the
        // same patch sets one; a patch that keeps its provider keeps it.
        let r = node
            .put_json(
                "/projects/default/providers/q",
                json!({"kind": "openai", "base_url": "http://127.0.0.3:9/v1", "models": ["n"]}),
            )
            .await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        node.put_json(
            "/projects/default/targets/t",
            json!({"provider": "p", "model": "m", "credential": "credential::k"}),
        )
        .await;
        let patch = |body: serde_json::Value| {
            node.admin(reqwest::Method::PATCH, "/projects/default/targets/t")
                .json(&body)
                .send()
        };
        for (body, keeps) in [
            (json!({"weight": 2}), true),
            (json!({"provider": "q", "model": "n"}), false),
            (
                json!({"provider": "p", "model": "m", "credential": "credential::k"}),
                true,
            ),
        ] {
            let r = patch(body.clone()).await.unwrap();
            assert_eq!(r.status(), 200, "{body}: {}", r.text().await.unwrap());
            let (_, t) = node.get_json("/projects/default/targets/t").await;
            assert_eq!(t.get("credential").is_some(), keeps, "{body}: {t}");
        }
    })
    .await;
}

#[tokio::test]
async fn an_admin_write_and_a_file_edit_at_once_never_both_land() {
    // The file has target `racet`; an edit removes it while an admin write routes to it.
    // Whichever comes second is checked against the first and refused whole; the store never
    // keeps a write the node cannot serve, and later admin writes go on.
    let with = format!("{BASE}[targets.racet]\nmodel = \"echo-2\"\n");
    for admin_first in [true, false] {
        let node = Node::sqlite(&with).await;
        let held = node.live.changing().await;
        let put = || {
            let r = node
                .admin(reqwest::Method::PUT, "/projects/default/routes/rc")
                .json(&json!({"targets": ["racet"]}));
            async move { r.send().await.unwrap().status().as_u16() }
        };
        let edit = || {
            std::fs::write(&node.config_path, BASE).unwrap();
            let live = node.live.clone();
            tokio::spawn(async move { live.reload_as_change().await.is_ok() })
        };
        let (put_status, reloaded) = if admin_first {
            let put = tokio::spawn(put());
            tokio::time::sleep(Duration::from_millis(200)).await;
            let reload = edit();
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(held);
            (put.await.unwrap(), reload.await.unwrap())
        } else {
            let reload = edit();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let put = tokio::spawn(put());
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(held);
            (put.await.unwrap(), reload.await.unwrap())
        };
        if admin_first {
            assert_eq!((put_status, reloaded), (201, false));
            assert_eq!(node.chat("route::rc").await.0, 200);
        } else {
            assert_eq!((put_status, reloaded), (400, true));
            assert_eq!(node.get_json("/projects/default/routes/rc").await.0, 404);
        }
        // Nothing is left half-applied: an unrelated write goes through.
        let r = node
            .put_json(
                "/projects/default/routes/other",
                json!({"targets": ["racet"]}),
            )
            .await;
        let want = if admin_first { 201 } else { 400 };
        assert_eq!(r.status().as_u16(), want, "{}", r.text().await.unwrap());
        node.route_to("innocent", "ti", "echo-1").await;
        assert_eq!(node.chat("route::innocent").await.0, 200);
    }
}

#[tokio::test]
async fn token_and_key_names_and_lifetimes_are_checked() {
    let node = Node::sqlite(BASE).await;
    let long = "n".repeat(129);
    for (path, body, param) in [
        ("/tokens", json!({"name": ""}), "name"),
        ("/tokens", json!({"name": long}), "name"),
        (
            "/tokens",
            json!({"name": "ci", "expires_in_seconds": 99_999_999_999_999i64}),
            "expires_in_seconds",
        ),
        (
            "/tokens",
            json!({"name": "ci", "expires_in_seconds": 0}),
            "expires_in_seconds",
        ),
        (
            "/projects/default/keys",
            json!({"name": "app", "expires_in_seconds": 99_999_999_999_999i64}),
            "expires_in_seconds",
        ),
        (
            "/projects/default/keys",
            json!({"name": "app", "expires_at": "99999-01-01T00:00:00Z"}),
            "expires_at",
        ),
    ] {
        let (s, e) = error_of(node.post_json(path, body.clone()).await).await;
        assert_eq!(
            (s, e["error"]["param"].as_str()),
            (400, Some(param)),
            "{body}: {e}"
        );
    }
    let r = node
        .post_json("/tokens", json!({"name": "ci", "expires_in_seconds": 3600}))
        .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn the_api_takes_the_names_the_file_takes() {
    // Model ids such as `BAAI/bge-small` and names with `/`, `:` or `@` are valid in the file;
    // the API takes them too (percent-encoded in the path), and they serve.
    let node = Node::sqlite(BASE).await;
    for (path, body) in [
        (
            "/projects/default/models/BAAI%2Fbge-small",
            json!({"endpoint": "embeddings"}),
        ),
        (
            "/projects/default/providers/hf",
            json!({"kind": "mock", "models": ["BAAI/bge-small", "llama3:8b"]}),
        ),
        (
            "/projects/default/targets/bge@v1",
            json!({"provider": "hf", "model": "BAAI/bge-small"}),
        ),
        (
            "/projects/default/routes/team%2Femb",
            json!({"endpoint": "embeddings", "targets": ["bge@v1"]}),
        ),
        (
            "/projects/default/routes/team%2Fchat",
            json!({"targets": [{"target": "t-llama"}]}),
        ),
    ] {
        if path.ends_with("team%2Fchat") {
            let r = node
                .put_json(
                    "/projects/default/targets/t-llama",
                    json!({"provider": "hf", "model": "llama3:8b"}),
                )
                .await;
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
        let r = node.put_json(path, body).await;
        assert!(
            r.status().is_success(),
            "{path}: {}",
            r.text().await.unwrap()
        );
    }
    let (_, route) = node.get_json("/projects/default/routes/team%2Femb").await;
    assert_eq!(route["name"], "team/emb");
    assert_eq!(node.chat("route::team/chat").await.0, 200);
    let r = client()
        .post(format!("{}/v1/embeddings", node.url))
        .bearer_auth(BOOT_KEY)
        .json(&json!({"model": "route::team/emb", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // `::` stays reserved.
    let (s, e) = error_of(
        node.put_json(
            "/projects/default/routes/a::b",
            json!({"targets": ["t-llama"]}),
        )
        .await,
    )
    .await;
    assert_eq!((s, e["error"]["param"].as_str()), (400, Some("name")));
}

#[tokio::test]
async fn one_key_value_for_two_projects_in_the_file_and_the_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = Store::open(&db, MasterKey::generate()).await.unwrap();
    store
        .bootstrap(&BootstrapEnv {
            admin_password: Some(ADMIN_PASSWORD.into()),
            admin_token: None,
            gateway_key: Some(BOOT_KEY.into()),
        })
        .await
        .unwrap();
    let (catalog, version) = store.load_catalog().await.unwrap();
    let path = dir.path().join("signalbox.toml");
    let file = |project: &str| {
        format!("{BASE}[api_keys.dup]\nkey = \"env::DUP\"\nproject = \"{project}\"\n")
    };
    std::fs::write(&path, file("p9")).unwrap();
    let vars = env_of(&[("DUP", BOOT_KEY)]);
    let err = Live::load_with_catalog(Some(&path), None, vars.clone(), catalog.clone(), version)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("api_keys.dup.key") && err.contains("of project 'default'"),
        "{err}"
    );
    // The same value for the same project is one key, named twice: fine.
    std::fs::write(&path, file("default")).unwrap();
    assert!(Live::load_with_catalog(Some(&path), None, vars, catalog, version).is_ok());
}

#[tokio::test]
async fn changing_your_own_password_takes_the_present_one_and_the_admin_sets_any() {
    let node = Node::sqlite(BASE).await;
    let r = node
        .post_json(
            "/users",
            json!({"name": "pat", "password": "first-pass-1", "roles": {"default": "editor"}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let tok = login(&node.url, "pat", "first-pass-1").await.unwrap();
    let change = |body: serde_json::Value, tok: String| {
        client()
            .post(format!("{}/admin/v1/users/pat/password", node.url))
            .bearer_auth(tok)
            .json(&body)
            .send()
    };
    // A token alone does not change the password.
    let (s, body) = error_of(
        change(json!({"password": "taken-over-1"}), tok.clone())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["param"], "current_password");
    let r = change(
        json!({"password": "taken-over-1", "current_password": "wrong-one"}),
        tok.clone(),
    )
    .await
    .unwrap();
    assert_eq!(error_of(r).await.0, 403);
    assert!(login(&node.url, "pat", "taken-over-1").await.is_err());
    // With the present password it does.
    let r = change(
        json!({"password": "second-pass-2", "current_password": "first-pass-1"}),
        tok,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    assert!(login(&node.url, "pat", "second-pass-2").await.is_ok());
    // The admin sets anyone's without it.
    let r = node
        .post_json("/users/pat/password", json!({"password": "third-pass-3"}))
        .await;
    assert_eq!(r.status(), 204);
    assert!(login(&node.url, "pat", "third-pass-3").await.is_ok());
}
