//! HTTPS upstreams: trusted through `[server] ca_bundle`, refused (and failed over) otherwise.

use crate::common::*;
use fake_upstream::{FakeUpstream, test_tls_cert_path, test_tls_identity};

async fn https_fake() -> fake_upstream::FakeHandle {
    let (cert, key) = test_tls_identity();
    FakeUpstream::openai().tls(cert, key).start().await
}

#[tokio::test]
async fn an_https_upstream_trusted_through_ca_bundle_serves_plain_and_streaming_calls() {
    let fake = https_fake().await;
    assert!(fake.base_url().starts_with("https://localhost:"));
    let toml = format!(
        "[server]\nauth = \"off\"\nca_bundle = \"{}\"\n{}\n[targets.t]\nprovider = \"up\"\nmodel = \"gpt-4o\"\n[routes.secure]\ntargets = [\"t\"]\n",
        test_tls_cert_path(),
        provider("up", &fake.base_url(), &["gpt-4o"])
    );
    let gw = Gw::start_with_env(&toml, &[("UP_KEY", "sk-up")]).await;
    let r = gw.chat("route::secure", None).await;
    assert_eq!(r.status(), 200);
    let r = gw
        .post("/v1/chat/completions")
        .json(&chat_body("route::secure", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(fake.hits(), 2);
    assert_eq!(
        fake.requests()[0].header("authorization"),
        Some("Bearer sk-up")
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_target_failure_that_falls_back() {
    let bad = https_fake().await;
    let good = FakeUpstream::openai().start().await;
    let toml = format!(
        "[server]\nauth = \"off\"\n{}\n{}\n{FAST_RETRY}\n[targets.a]\nprovider = \"bad\"\nmodel = \"gpt-4o\"\n[targets.b]\nprovider = \"good\"\nmodel = \"gpt-4o\"\n[routes.r]\ntargets = [\"a\", \"b\"]\n[routes.only]\ntargets = [\"a\"]\n",
        provider("bad", &bad.base_url(), &["gpt-4o"]),
        provider("good", &good.base_url(), &["gpt-4o"]),
    );
    let gw = Gw::start_with_env(&toml, &[("BAD_KEY", "k"), ("GOOD_KEY", "k")]).await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("good"));
    assert_eq!(
        bad.hits(),
        0,
        "no request goes over an untrusted connection"
    );

    let r = gw.chat("route::only", None).await;
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream"))
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("TLS"),
        "{body}"
    );
}
