//! Black-box: the real `signalbox` binary, driven by the official OpenAI Python SDK.

use crate::common::*;
use fake_upstream::{Behaviour, FakeHandle, FakeUpstream, RecordedRequest};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the binary on port 0 and return it with the address it printed.
fn spawn_gateway(config: &std::path::Path, envs: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_signalbox"));
    let dir = config.parent().unwrap();
    cmd.args(["serve", "--config"])
        .arg(config)
        .args(["--port", "0", "--data-dir"])
        .arg(dir.join("data"))
        .current_dir(dir);
    cmd.env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start signalbox");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("signalbox exited before listening")
            .unwrap();
        if let Some(i) = line.find("listening on http://") {
            let rest = &line[i + "listening on ".len()..];
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Child(child), addr)
}

#[tokio::test]
async fn the_official_openai_python_sdk_works_against_the_real_binary() {
    let fake = FakeUpstream::openai().start().await;
    let cut = FakeUpstream::openai()
        .chunks(6)
        .always(Behaviour::CutAfter(2))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signalbox.toml");
    let toml = format!(
        "{}\n{}\n[server]\ndrain_delay_ms = 200\n[models.text-embedding-3-small]\nendpoint = \"embeddings\"\n[api_keys.app]\nkey = \"env::APP_KEY\"\n[targets.chat]\nprovider = \"up\"\nmodel = \"gpt-4o\"\n[targets.embed]\nprovider = \"up\"\nmodel = \"text-embedding-3-small\"\n[targets.cut]\nprovider = \"cutter\"\nmodel = \"gpt-4o\"\n[routes.hello]\ntargets = [\"chat\"]\n[routes.embed]\nendpoint = \"embeddings\"\ntargets = [\"embed\"]\n[routes.cut]\ntargets = [\"cut\"]\nretry = {{ max_retries = 0 }}\n",
        provider(
            "up",
            &fake.base_url(),
            &["gpt-4o", "text-embedding-3-small"]
        ),
        provider("cutter", &cut.base_url(), &["gpt-4o"]),
    );
    std::fs::write(&config, toml).unwrap();
    let (mut child, url) = spawn_gateway(
        &config,
        &[
            ("UP_KEY", "sk-up"),
            ("CUTTER_KEY", "sk-cut"),
            ("APP_KEY", "sb-sdk-key"),
        ],
    );

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/sdk/openai_python.py"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(&url)
            .arg("sb-sdk-key")
            .output()
            .expect("run python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the OpenAI SDK checks failed (run ./scripts/test.sh, the README test command, to install the pinned SDK):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"));
    assert!(fake.hits() > 0);

    // SIGTERM: the binary drains and exits cleanly.
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "signalbox did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A second SIGINT stops at once: the drain delay and the drain end, an open stream ends with
/// `stream_interrupted`, and the process exits (with the defaults it would wait up to 32 s).
#[tokio::test]
async fn a_second_stop_signal_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signalbox.toml");
    std::fs::write(
        &config,
        "[server]\nauth = \"off\"\ndrain_delay_ms = 10000\nshutdown_timeout_ms = 30000\n[providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\"]\n[targets.t]\nmodel = \"echo-1\"\n[routes.r]\ntargets = [\"t\"]\n",
    )
    .unwrap();
    let (mut child, url) = spawn_gateway(&config, &[]);
    // A stream that stalls after its second chunk, held open.
    let mut stream = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(&serde_json::json!({"model": "route::r", "stream": true,
            "messages": [{"role": "user", "content": "hi mock:stall=2"}]}))
        .send()
        .await
        .unwrap();
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    let pid = child.0.id().to_string();
    let t0 = std::time::Instant::now();
    for _ in 0..2 {
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut rest = Vec::new();
    while let Ok(Some(c)) = stream.chunk().await {
        rest.extend_from_slice(&c);
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("stream_interrupted"), "{rest}");
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "still running after the second signal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn check_prints_every_error_with_file_line_and_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[providers.up]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\n[routes.r]\ntargets = [\"nope\", \"also-nope\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_signalbox"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:6: routes.r.targets[0]: unknown target 'nope'"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:6: routes.r.targets[1]: unknown target 'also-nope'"),
        "{err}"
    );
    assert!(err.contains("2 error(s)"), "{err}");

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_signalbox"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_signalbox"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("signalbox "));
}

// ---------------------------------------------------------------------------------------------
// The compatibility suite: real clients (the OpenAI Python and Node SDKs, the Vercel AI SDK)
// against the real binary, each script in tests/sdk/, with the fakes' records checked here.

const GATEWAY_KEY: &str = "sb-sdk-suite-gateway-key";
const HOUSE_KEY: &str = "sk-house-credential";
const CALLER_KEY: &str = "sk-caller-own-provider-key";
/// A client script that runs longer than this is a hang, not a slow test.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

fn sdk_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk")
}

/// The fake upstreams behind the suite's config.
struct Upstreams {
    /// Every managed route and bare target; answers only the house credential.
    house: FakeHandle,
    /// Passthrough only (`caller_key`); answers only the caller's own key.
    byok: FakeHandle,
    /// Every chat answer is a JSON object, for structured outputs.
    shaped: FakeHandle,
    /// Always 503.
    down: FakeHandle,
    /// Every stream is cut after its first events (after the first byte reached the caller).
    cut: FakeHandle,
    /// Always 429 with `Retry-After: 30`.
    limited: FakeHandle,
}

impl Upstreams {
    async fn start() -> Self {
        Upstreams {
            house: FakeUpstream::openai().require_key(HOUSE_KEY).start().await,
            byok: FakeUpstream::openai().require_key(CALLER_KEY).start().await,
            shaped: FakeUpstream::openai()
                .require_key(HOUSE_KEY)
                .reply(r#"{"city":"Paris","temp_c":21}"#)
                .start()
                .await,
            down: FakeUpstream::openai()
                .always(Behaviour::status(503))
                .start()
                .await,
            cut: FakeUpstream::openai()
                .require_key(HOUSE_KEY)
                .chunks(8)
                .always(Behaviour::CutAfter(6))
                .start()
                .await,
            limited: FakeUpstream::openai()
                .always(Behaviour::Status {
                    status: 429,
                    retry_after: Some("30".to_string()),
                    body: None,
                })
                .start()
                .await,
        }
    }

    fn config(&self) -> String {
        let mut toml = format!(
            r#"
[api_keys.app]
key = "env::SDK_APP_KEY"

[routing.retry]
max_retries = 2
backoff_base_ms = 10
backoff_max_ms = 50

[providers.house]
kind = "openai"
base_url = "{house}"
credential = "env::SDK_HOUSE_KEY"
passthrough = "off"
models = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "text-embedding-3-large", "tts-1", "tts-1-hd", "whisper-1", "gpt-4o-transcribe", "dall-e-3", "dall-e-2"]

[providers.byok]
kind = "openai"
base_url = "{byok}"
models = ["gpt-4.1", "text-embedding-ada-002", "gpt-4o-mini-tts", "gpt-4o-mini-transcribe", "gpt-image-1"]

[providers.shaped]
kind = "openai"
base_url = "{shaped}"
credential = "env::SDK_HOUSE_KEY"
passthrough = "off"
models = ["gpt-4o-2024-08-06"]

[providers.down]
kind = "openai"
base_url = "{down}"
credential = "env::SDK_HOUSE_KEY"
passthrough = "off"
models = ["gpt-4o"]

[providers.cut]
kind = "openai"
base_url = "{cut}"
credential = "env::SDK_HOUSE_KEY"
passthrough = "off"
models = ["gpt-4o", "tts-1"]

[providers.limited]
kind = "openai"
base_url = "{limited}"
credential = "env::SDK_HOUSE_KEY"
passthrough = "off"
models = ["gpt-4o"]

[providers.demo]
kind = "mock"
models = ["echo-1"]

[targets.shaped]
provider = "shaped"
model = "gpt-4o-2024-08-06"
[targets.flaky]
provider = "down"
model = "gpt-4o"
[routes.structured]
targets = ["shaped"]
[routes.flaky]
targets = ["flaky"]
[targets.cut]
provider = "cut"
model = "gpt-4o"
[routes.cut]
targets = ["cut"]
[targets.cut-speak]
provider = "cut"
model = "tts-1"
[routes.cut-speak]
endpoint = "audio_speech"
targets = ["cut-speak"]
[targets.limited]
provider = "limited"
model = "gpt-4o"
[routes.limited]
targets = ["limited"]
"#,
            house = self.house.base_url(),
            byok = self.byok.base_url(),
            shaped = self.shaped.base_url(),
            down = self.down.base_url(),
            cut = self.cut.base_url(),
            limited = self.limited.base_url(),
        );
        // (endpoint kind, route, routed model, bare model, passthrough model)
        let kinds = [
            ("chat", "chat", "gpt-4o", "gpt-4o-mini", "gpt-4.1"),
            (
                "embeddings",
                "embed",
                "text-embedding-3-small",
                "text-embedding-3-large",
                "text-embedding-ada-002",
            ),
            (
                "audio_speech",
                "speak",
                "tts-1",
                "tts-1-hd",
                "gpt-4o-mini-tts",
            ),
            (
                "audio_transcription",
                "listen",
                "whisper-1",
                "gpt-4o-transcribe",
                "gpt-4o-mini-transcribe",
            ),
            (
                "image_generation",
                "draw",
                "dall-e-3",
                "dall-e-2",
                "gpt-image-1",
            ),
        ];
        for (kind, route, routed, bare, passthrough) in kinds {
            if kind != "chat" {
                for m in [routed, bare, passthrough] {
                    toml.push_str(&format!("[models.{m}]\nendpoint = \"{kind}\"\n"));
                }
            }
            toml.push_str(&format!(
                "[targets.house-{route}]\nprovider = \"house\"\nmodel = \"{routed}\"\n\
                 [targets.bare-{route}]\nprovider = \"house\"\nmodel = \"{bare}\"\n\
                 [routes.{route}]\nendpoint = \"{kind}\"\ntargets = [\"house-{route}\"]\n"
            ));
        }
        toml
    }
}

/// The real binary, serving the suite's config.
struct Gateway {
    url: String,
    _child: Child,
    _dir: tempfile::TempDir,
}

async fn start_suite() -> (Upstreams, Gateway) {
    let up = Upstreams::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signalbox.toml");
    std::fs::write(&config, up.config()).unwrap();
    let (child, url) = spawn_gateway(
        &config,
        &[("SDK_APP_KEY", GATEWAY_KEY), ("SDK_HOUSE_KEY", HOUSE_KEY)],
    );
    (
        up,
        Gateway {
            url,
            _child: child,
            _dir: dir,
        },
    )
}

/// Run `program args...` in tests/sdk within [`SCRIPT_LIMIT`]: (success, stdout, stderr).
fn run_with_limit(program: &str, args: &[String]) -> (bool, String, String) {
    run_script(program, args, &sdk_dir(), SCRIPT_LIMIT)
}

/// Run a client script; panic with its output unless it exits 0 and says it passed.
async fn run_client(program: &str, script: &str, args: &[&str], hint: &str) -> String {
    let program = program.to_string();
    let mut argv = vec![script.to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let shown = format!("{program} tests/sdk/{}", argv.join(" "));
    let (ok, out, err) = tokio::task::spawn_blocking(move || run_with_limit(&program, &argv))
        .await
        .unwrap();
    assert!(
        ok && out.contains("all checks passed"),
        "`{shown}` failed ({hint}):\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    eprint!("{out}");
    out
}

pub(crate) async fn run_python(script: &str, args: &[&str]) -> String {
    run_client(
        "python3",
        script,
        args,
        "the pinned `openai` package is installed by ./scripts/test.sh, the README test command",
    )
    .await
}

/// Fails, never skips, when the pinned Node packages are not installed.
async fn run_node(script: &str, args: &[&str]) -> String {
    let (ok, out, err) = tokio::task::spawn_blocking(|| {
        run_with_limit(
            "node",
            &["../check_node_install.mjs".to_string(), "node".to_string()],
        )
    })
    .await
    .unwrap();
    assert!(
        ok,
        "the Node SDK tests need the packages pinned in tests/sdk/node/package-lock.json: {}{}\n\
         Run ./scripts/test.sh (the README test command): it runs `npm ci --prefix tests/sdk/node` \
         when node_modules is missing or stale.",
        err.trim(),
        out.trim()
    );
    run_client(
        "node",
        &format!("node/{script}"),
        args,
        "run ./scripts/test.sh, the README test command, to install the pinned Node packages",
    )
    .await
}

fn at<'a>(reqs: &'a [RecordedRequest], path: &str) -> Vec<&'a RecordedRequest> {
    reqs.iter().filter(|r| r.path == path).collect()
}

/// The JSON body of the one request whose last user text (chat `messages`, Responses `input`) is
/// `text`.
fn by_text(reqs: &[&RecordedRequest], text: &str) -> serde_json::Value {
    let found: Vec<serde_json::Value> = reqs
        .iter()
        .map(|r| r.json())
        .filter(|b| {
            b["input"] == text
                || b["messages"]
                    .as_array()
                    .and_then(|m| m.last())
                    .is_some_and(|m| m["content"] == text)
        })
        .collect();
    assert_eq!(found.len(), 1, "one request says {text:?}");
    found.into_iter().next().unwrap()
}

fn models_of(reqs: &[&RecordedRequest]) -> Vec<String> {
    reqs.iter()
        .map(|r| match r.multipart_field("model") {
            Some(m) => m,
            None => r.json()["model"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

/// Only `key` went upstream: no gateway key, no `x-signalbox-*` header, none of the SDKs' own
/// headers (`x-stainless-*`, their user agent): only the gateway's allow-list.
fn assert_upstream_saw_only(reqs: &[RecordedRequest], key: &str) {
    for r in reqs {
        assert!(
            r.header("user-agent")
                .is_some_and(|ua| ua.starts_with("signalbox/")),
            "{:?}",
            r.header("user-agent")
        );
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {key}").as_str()),
            "{} {}",
            r.method,
            r.path
        );
        for (name, value) in &r.headers {
            assert!(
                !name.starts_with("x-signalbox")
                    && !name.starts_with("x-to11")
                    && !name.starts_with("x-stainless"),
                "{name} went upstream on {}",
                r.path
            );
            assert!(
                !value.contains(GATEWAY_KEY),
                "the gateway key went upstream in {name} on {}",
                r.path
            );
        }
    }
}

#[tokio::test]
async fn python_sdk_every_endpoint_through_named_routes() {
    let (up, gw) = start_suite().await;
    run_python("openai_python_endpoints.py", &[&gw.url, GATEWAY_KEY]).await;

    let reqs = up.house.requests();
    assert_upstream_saw_only(&reqs, HOUSE_KEY);
    assert!(
        reqs.iter().all(|r| r.method == "POST"),
        "GET /v1/models is the gateway's own"
    );

    // Chat: plain, unicode, streamed with usage, stream() helper, async, tools, response_format.
    let chat = at(&reqs, "/v1/chat/completions");
    assert_eq!(
        chat.len(),
        9,
        "{:?}",
        chat.iter().map(|r| r.json()).collect::<Vec<_>>()
    );
    assert!(models_of(&chat).iter().all(|m| m == "gpt-4o"));
    assert_eq!(by_text(&chat, "plain chat")["temperature"], 0.2);
    let streamed = by_text(&chat, "streamed chat");
    assert_eq!(streamed["stream"], true);
    assert_eq!(
        streamed["stream_options"],
        serde_json::json!({"include_usage": true})
    );
    assert!(
        by_text(&chat, "naïve café ✓ — 東京 😀")
            .get("stream")
            .is_none()
    );
    assert_eq!(
        by_text(&chat, "no usage please")["stream_options"],
        serde_json::json!({"include_usage": true}),
        "the gateway asks for usage for its own accounting"
    );
    let helper = by_text(&chat, "helper naïve café ✓ — 東京 😀");
    assert_eq!(helper["stream"], true, "the stream() helper's request");
    assert_eq!(by_text(&chat, "async stream")["stream"], true);
    let tools = serde_json::json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": false
            },
            "strict": true
        }
    }]);
    let with_tools: Vec<serde_json::Value> = chat
        .iter()
        .map(|r| r.json())
        .filter(|b| b.get("tools").is_some())
        .collect();
    assert_eq!(with_tools.len(), 2);
    assert_eq!(
        with_tools[0]["tools"], tools,
        "tools reach the upstream as sent"
    );
    assert_eq!(with_tools[0]["tool_choice"], "auto");
    let follow_up = &with_tools[1];
    assert_eq!(follow_up["tools"], tools);
    let m = follow_up["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m[1]["role"], "assistant");
    assert!(m[1]["content"].is_null());
    assert_eq!(m[1]["tool_calls"][0]["id"], "call_weather_1");
    assert_eq!(
        m[1]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(m[2]["role"], "tool");
    assert_eq!(m[2]["tool_call_id"], "call_weather_1");
    assert_eq!(m[2]["content"], r#"{"temp_c": 21, "sky": "clear"}"#);
    assert_eq!(
        by_text(&chat, "json please")["response_format"],
        serde_json::json!({
            "type": "json_schema",
            "json_schema": {
                "name": "weather",
                "strict": true,
                "schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "temp_c": {"type": "integer"}},
                    "required": ["city", "temp_c"],
                    "additionalProperties": false
                }
            }
        })
    );
    // The SDK's parse() helper turned a pydantic model into a strict json_schema.
    let shaped = up.shaped.requests();
    assert_upstream_saw_only(&shaped, HOUSE_KEY);
    assert_eq!(shaped.len(), 1);
    let rf = &shaped[0].json()["response_format"];
    assert_eq!(rf["type"], "json_schema");
    assert_eq!(rf["json_schema"]["name"], "Weather");
    assert_eq!(rf["json_schema"]["strict"], true);
    assert_eq!(shaped[0].json()["model"], "gpt-4o-2024-08-06");

    // Responses API: plain, stream=True, the stream() helper, async; no chat stream_options added.
    let responses = at(&reqs, "/v1/responses");
    assert_eq!(responses.len(), 4);
    assert!(models_of(&responses).iter().all(|m| m == "gpt-4o"));
    let plain = by_text(&responses, "plain responses");
    assert_eq!(plain["instructions"], "Be brief.");
    assert!(plain.get("stream").is_none_or(|s| s == false));
    assert_eq!(by_text(&responses, "streamed responses")["stream"], true);
    assert_eq!(by_text(&responses, "helper responses")["stream"], true);
    assert!(
        responses
            .iter()
            .all(|r| r.json().get("stream_options").is_none())
    );

    // A cut stream: the upstream saw each request once (a cut after the first byte is not retried).
    let cut = up.cut.requests();
    assert_upstream_saw_only(&cut, HOUSE_KEY);
    assert_eq!(at(&cut, "/v1/chat/completions").len(), 1);
    assert_eq!(at(&cut, "/v1/responses").len(), 2);
    assert_eq!(models_of(&at(&cut, "/v1/audio/speech")), ["tts-1", "tts-1"]);

    // Embeddings: float, base64, and whatever the SDK asks for by default.
    let emb = at(&reqs, "/v1/embeddings");
    assert_eq!(emb.len(), 3);
    assert!(
        models_of(&emb)
            .iter()
            .all(|m| m == "text-embedding-3-small")
    );
    let formats: Vec<serde_json::Value> = emb
        .iter()
        .map(|r| r.json()["encoding_format"].clone())
        .collect();
    assert_eq!(formats[0], "float");
    assert_eq!(formats[1], "base64");

    // Speech.
    let speech = at(&reqs, "/v1/audio/speech");
    assert_eq!(speech.len(), 2);
    assert!(models_of(&speech).iter().all(|m| m == "tts-1"));
    assert_eq!(speech[0].json()["response_format"], "wav");
    assert_eq!(speech[0].json()["voice"], "alloy");

    // Uploads: every byte of a real WAV, the file name and the form fields.
    let stt = at(&reqs, "/v1/audio/transcriptions");
    assert_eq!(stt.len(), 2);
    for (r, format) in stt.iter().zip(["json", "text"]) {
        assert_eq!(r.multipart_field("model").as_deref(), Some("whisper-1"));
        assert_eq!(r.multipart_file_name().as_deref(), Some("tone.wav"));
        assert_eq!(
            r.multipart_field("response_format").as_deref(),
            Some(format)
        );
        let file = r.multipart_file().unwrap();
        assert_eq!(&file[..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes(file[4..8].try_into().unwrap()) as usize + 8,
            file.len()
        );
    }
    assert_eq!(stt[1].multipart_field("language").as_deref(), Some("en"));
    let tr = at(&reqs, "/v1/audio/translations");
    assert_eq!(tr.len(), 1);
    assert_eq!(tr[0].multipart_file_name().as_deref(), Some("clip.wav"));
    assert_eq!(tr[0].multipart_field("model").as_deref(), Some("whisper-1"));

    // Images.
    let img = at(&reqs, "/v1/images/generations");
    assert_eq!(img.len(), 3);
    assert!(models_of(&img).iter().all(|m| m == "dall-e-3"));
    assert_eq!(img[0].json()["response_format"], "url");
    assert_eq!(img[0].json()["size"], "256x256");
    assert_eq!(img[1].json()["response_format"], "b64_json");
    assert_eq!(img[1].json()["n"], 2);
    assert_eq!(
        img[2].json()["size"],
        "huge",
        "an upstream 400 is not retried"
    );

    assert_eq!(
        reqs.len(),
        9 + 4 + 3 + 2 + 2 + 1 + 3,
        "nothing else went upstream"
    );
    assert_eq!(up.byok.hits(), 0);
    assert_eq!(up.down.hits(), 0);
}

#[tokio::test]
async fn python_sdk_every_endpoint_through_every_layer_and_the_errors_it_raises() {
    let (up, gw) = start_suite().await;
    run_python(
        "openai_python_layers.py",
        &[&gw.url, GATEWAY_KEY, CALLER_KEY],
    )
    .await;

    // Managed calls (route, then bare model) carry the house credential; the errors sent nothing.
    let house = up.house.requests();
    assert_upstream_saw_only(&house, HOUSE_KEY);
    let expect = [
        ("/v1/chat/completions", ["gpt-4o", "gpt-4o-mini"]),
        ("/v1/responses", ["gpt-4o", "gpt-4o-mini"]),
        (
            "/v1/embeddings",
            ["text-embedding-3-small", "text-embedding-3-large"],
        ),
        ("/v1/audio/speech", ["tts-1", "tts-1-hd"]),
        (
            "/v1/audio/transcriptions",
            ["whisper-1", "gpt-4o-transcribe"],
        ),
        ("/v1/audio/translations", ["whisper-1", "gpt-4o-transcribe"]),
        ("/v1/images/generations", ["dall-e-3", "dall-e-2"]),
    ];
    for (path, models) in expect {
        assert_eq!(models_of(&at(&house, path)), models, "{path}");
    }
    assert_eq!(house.len(), 14, "the error calls sent nothing upstream");

    // Passthrough carries the caller's own key, unchanged, and never the gateway key.
    let byok = up.byok.requests();
    assert_upstream_saw_only(&byok, CALLER_KEY);
    let expect = [
        ("/v1/chat/completions", "gpt-4.1"),
        ("/v1/responses", "gpt-4.1"),
        ("/v1/embeddings", "text-embedding-ada-002"),
        ("/v1/audio/speech", "gpt-4o-mini-tts"),
        ("/v1/audio/transcriptions", "gpt-4o-mini-transcribe"),
        ("/v1/audio/translations", "gpt-4o-mini-transcribe"),
        ("/v1/images/generations", "gpt-image-1"),
    ];
    for (path, model) in expect {
        assert_eq!(models_of(&at(&byok, path)), [model], "{path}");
    }
    assert_eq!(byok.len(), 7);
    assert_eq!(up.shaped.hits() + up.down.hits(), 0);
}

#[tokio::test]
async fn python_sdk_does_not_retry_what_the_gateway_already_retried() {
    let (up, gw) = start_suite().await;
    let direct = FakeUpstream::openai()
        .always(Behaviour::status(503))
        .start()
        .await;
    run_python(
        "openai_python_retries.py",
        &[&gw.url, GATEWAY_KEY, &direct.base_url()],
    )
    .await;
    // Three calls, each exactly the gateway's plan: 1 attempt + 2 retries, no SDK retry on top.
    let reqs = up.down.requests();
    assert_eq!(
        up.down.hits(),
        9,
        "{:?}",
        reqs.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(at(&reqs, "/v1/chat/completions").len(), 6);
    assert_eq!(at(&reqs, "/v1/responses").len(), 3);
    assert_upstream_saw_only(&reqs, HOUSE_KEY);
    // A 429 whose Retry-After is too long to wait: one attempt, no gateway or SDK retry.
    assert_eq!(up.limited.hits(), 1);
    // The control: the same SDK settings do retry a bare 503.
    assert_eq!(direct.hits(), 3);
}

#[tokio::test]
async fn node_openai_sdk_every_endpoint_and_no_retry_on_top_of_the_plan() {
    let (up, gw) = start_suite().await;
    run_node("openai_node.mjs", &[&gw.url, GATEWAY_KEY, CALLER_KEY]).await;

    let reqs = up.house.requests();
    assert_upstream_saw_only(&reqs, HOUSE_KEY);
    let chat = at(&reqs, "/v1/chat/completions");
    assert_eq!(chat.len(), 3);
    assert_eq!(chat[1].json()["stream_options"]["include_usage"], true);
    assert_eq!(at(&reqs, "/v1/responses").len(), 3);
    let emb = at(&reqs, "/v1/embeddings");
    assert_eq!(emb.len(), 2);
    assert_eq!(emb[1].json()["encoding_format"], "float");
    assert_eq!(at(&reqs, "/v1/audio/speech").len(), 1);
    let stt = at(&reqs, "/v1/audio/transcriptions");
    assert_eq!(stt.len(), 2);
    for r in &stt {
        assert_eq!(r.multipart_field("model").as_deref(), Some("whisper-1"));
        assert_eq!(r.multipart_file_name().as_deref(), Some("tone.wav"));
        assert_eq!(r.multipart_file_len(), Some(44 + 8000));
    }
    assert_eq!(
        stt[1].multipart_field("response_format").as_deref(),
        Some("text")
    );
    assert_eq!(at(&reqs, "/v1/audio/translations").len(), 1);
    assert_eq!(at(&reqs, "/v1/images/generations").len(), 2);
    assert_eq!(
        reqs.len(),
        3 + 3 + 2 + 1 + 2 + 1 + 2,
        "the errors sent nothing"
    );
    // maxRetries: 2, yet the upstream saw exactly the gateway's plan.
    assert_eq!(up.down.hits(), 3);
    // Passthrough: the caller's own key, never the gateway's.
    let byok = up.byok.requests();
    assert_upstream_saw_only(&byok, CALLER_KEY);
    assert_eq!(
        models_of(&byok.iter().collect::<Vec<_>>()),
        ["gpt-4.1", "text-embedding-ada-002"]
    );
}

#[tokio::test]
async fn vercel_ai_sdk_generate_and_stream_through_responses_and_chat() {
    let (up, gw) = start_suite().await;
    run_node("vercel_ai.mjs", &[&gw.url, GATEWAY_KEY, CALLER_KEY]).await;

    let reqs = up.house.requests();
    assert_upstream_saw_only(&reqs, HOUSE_KEY);
    // openai(model): the Responses API; openai.chat(model): chat completions.
    let responses = at(&reqs, "/v1/responses");
    assert_eq!(responses.len(), 2);
    assert!(models_of(&responses).iter().all(|m| m == "gpt-4o"));
    assert!(responses[0].json().get("stream").is_none_or(|s| s == false));
    assert_eq!(responses[1].json()["stream"], true);
    let chat = at(&reqs, "/v1/chat/completions");
    assert_eq!(chat.len(), 2);
    assert!(models_of(&chat).iter().all(|m| m == "gpt-4o"));
    assert_eq!(chat[1].json()["stream"], true);
    assert_eq!(chat[1].json()["stream_options"]["include_usage"], true);
    assert_eq!(at(&reqs, "/v1/embeddings").len(), 1);
    let speech = at(&reqs, "/v1/audio/speech");
    assert_eq!(speech.len(), 1);
    assert_eq!(speech[0].json()["response_format"], "wav");
    let stt = at(&reqs, "/v1/audio/transcriptions");
    assert_eq!(stt.len(), 1);
    assert_eq!(
        stt[0].multipart_field("model").as_deref(),
        Some("whisper-1")
    );
    assert_eq!(stt[0].multipart_file_len(), Some(44 + 8000));
    let img = at(&reqs, "/v1/images/generations");
    assert_eq!(img.len(), 1);
    assert_eq!(img[0].json()["response_format"], "b64_json");
    assert_eq!(reqs.len(), 8, "the mock and the error sent nothing here");
    // Passthrough (Responses API and chat): the caller's own key, never the gateway's.
    let byok = up.byok.requests();
    assert_upstream_saw_only(&byok, CALLER_KEY);
    assert_eq!(at(&byok, "/v1/responses").len(), 1);
    assert_eq!(at(&byok, "/v1/chat/completions").len(), 1);

    // Structured output: a strict json_schema, as `response_format` (chat) or `text.format`.
    let shaped = up.shaped.requests();
    assert_upstream_saw_only(&shaped, HOUSE_KEY);
    let format = &at(&shaped, "/v1/responses")[0].json()["text"]["format"];
    assert_eq!(format["type"], "json_schema", "{format}");
    assert!(
        format["schema"]["properties"]["city"].is_object(),
        "{format}"
    );
    let format = &at(&shaped, "/v1/chat/completions")[0].json()["response_format"];
    assert_eq!(format["type"], "json_schema", "{format}");
    assert!(
        format["json_schema"]["schema"]["properties"]["temp_c"].is_object(),
        "{format}"
    );
    assert_eq!(shaped.len(), 2);
}
