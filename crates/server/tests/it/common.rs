//! Test harness: a real gateway on a loopback port, configured from TOML text.

use signalbox::live::{EnvFn, Live};
use signalbox::serve::{Running, start};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub struct Gw {
    pub url: String,
    pub running: Running,
    pub config_path: PathBuf,
    pub live: Arc<Live>,
    _watcher: Option<notify::RecommendedWatcher>,
    _dir: tempfile::TempDir,
}

pub fn env_of(vars: &[(&str, &str)]) -> EnvFn {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Arc::new(move |name: &str| map.get(name).cloned())
}

impl Gw {
    pub async fn start(toml: &str) -> Gw {
        Self::start_with_env(toml, &[]).await
    }

    pub async fn start_with_env(toml: &str, vars: &[(&str, &str)]) -> Gw {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("signalbox.toml");
        std::fs::write(&config_path, toml).unwrap();
        let (live, _warnings) = Live::load(Some(&config_path), None, env_of(vars))
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let live = Arc::new(live);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = start(live.clone(), listener).unwrap();
        let watcher = signalbox::live::watch(live.clone());
        Gw {
            url: format!("http://{}", running.addr),
            running,
            config_path,
            live,
            _watcher: watcher,
            _dir: dir,
        }
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        client().post(format!("{}{}", self.url, path))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        client().get(format!("{}{}", self.url, path))
    }

    /// A non-streaming chat call with the given gateway key (or none).
    pub async fn chat(&self, model: &str, key: Option<&str>) -> reqwest::Response {
        let mut rb = self
            .post("/v1/chat/completions")
            .json(&chat_body(model, false));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb.send().await.unwrap()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}]
    })
}

/// Fast retries for tests.
pub const FAST_RETRY: &str =
    "[routing.retry]\nmax_retries = 2\nbackoff_base_ms = 10\nbackoff_max_ms = 100\n";

/// A provider table pointing at a fake upstream.
pub fn provider(id: &str, base_url: &str, models: &[&str]) -> String {
    let models: Vec<String> = models.iter().map(|m| format!("{m:?}")).collect();
    format!(
        "[providers.{id}]\nkind = \"openai\"\nbase_url = \"{base_url}\"\nmodels = [{}]\ncredential = \"env::{}_KEY\"\n",
        models.join(", "),
        id.to_uppercase().replace('-', "_")
    )
}

pub fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The error envelope of a response, with status and error-code header checked for consistency.
pub async fn error_of(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let code_header = header(&r, "x-signalbox-error-code").map(str::to_string);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["code"].as_str(),
        code_header.as_deref(),
        "x-signalbox-error-code must match the body's code"
    );
    for k in ["message", "type", "param", "code"] {
        assert!(
            body["error"].get(k).is_some(),
            "error body lacks `{k}`: {body}"
        );
    }
    (status, body)
}

/// Run `program args...` in `dir` to completion within `limit`: (success, stdout, stderr).
/// Loopback only: never through a proxy the machine may configure. A script still running at
/// the limit is killed, and says so at the end of its stderr.
pub fn run_script(
    program: &str,
    args: &[String],
    dir: &std::path::Path,
    limit: std::time::Duration,
) -> (bool, String, String) {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_COLOR", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{program}`: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (out, mut err) = (out.join().unwrap(), err.join().unwrap());
    if status.is_none() {
        err.push_str(&format!("\n[killed: still running after {limit:?}]"));
    }
    (status.is_some_and(|s| s.success()), out, err)
}
