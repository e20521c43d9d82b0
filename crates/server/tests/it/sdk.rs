//! Black-box: the real `signalbox` binary, driven by the official OpenAI Python SDK.

use crate::common::*;
use fake_upstream::{Behaviour, FakeUpstream};
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
    cmd.args(["serve", "--config"])
        .arg(config)
        .args(["--port", "0"]);
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
        "the OpenAI SDK checks failed (is `pip install openai` done? .ci/run does it):\n{stdout}\n{stderr}"
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
