//! Azure OpenAI: deployment URLs with `api-version`, the `api-key` header, content filters.

use crate::common::*;
use fake_upstream::{Behaviour, FakeUpstream};
use serde_json::json;

fn config(base: &str, deployment: &str) -> String {
    let host = base.trim_end_matches("/v1");
    format!(
        "[server]\nauth = \"off\"\n{FAST_RETRY}\n[providers.az]\nkind = \"azure-openai\"\nbase_url = \"{host}\"\nmodels = [\"gpt-4o\"]\ncredential = \"env::AZ_KEY\"\napi_version = \"2024-10-21\"\n[targets.t]\nprovider = \"az\"\nmodel = \"gpt-4o\"\ndeployment = \"{deployment}\"\n[routes.r]\ntargets = [\"t\"]\n"
    )
}

#[tokio::test]
async fn azure_targets_call_their_deployment_with_the_api_key_header() {
    let fake = FakeUpstream::openai()
        .require_key("az-secret")
        .start()
        .await;
    let gw = Gw::start_with_env(
        &config(&fake.base_url(), "prod gpt/4o"),
        &[("AZ_KEY", "az-secret")],
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("az"));
    let r = gw
        .post("/v1/chat/completions")
        .json(&chat_body("route::r", true))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    for req in fake.requests() {
        assert_eq!(
            req.path, "/openai/deployments/prod%20gpt%2F4o/chat/completions",
            "the deployment is one escaped segment"
        );
        assert_eq!(req.query.as_deref(), Some("api-version=2024-10-21"));
        assert_eq!(req.header("api-key"), Some("az-secret"));
        assert_eq!(req.header("authorization"), None);
    }
}

#[tokio::test]
async fn an_azure_content_filter_refusal_is_content_policy_and_not_retried() {
    let body = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#;
    let fake = FakeUpstream::openai()
        .always(Behaviour::Status {
            status: 400,
            retry_after: None,
            body: Some(body.into()),
        })
        .start()
        .await;
    let gw = Gw::start_with_env(&config(&fake.base_url(), "d1"), &[("AZ_KEY", "k")]).await;
    let (status, b) = error_of(gw.chat("route::r", None).await).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("content_policy"))
    );
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn the_responses_api_to_an_azure_target_is_refused_naming_the_limitation() {
    let fake = FakeUpstream::openai().start().await;
    let gw = Gw::start_with_env(&config(&fake.base_url(), "d1"), &[("AZ_KEY", "k")]).await;
    let r = gw
        .post("/v1/responses")
        .json(&json!({"model": "route::r", "input": "hi"}))
        .send()
        .await
        .unwrap();
    let (status, b) = error_of(r).await;
    assert_eq!(status, 400);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("azure-openai"),
        "{b}"
    );
    assert_eq!(fake.hits(), 0);
}
