//! Failure contract: retries, backoff, fallback, degraded mode, deadlines, error mapping.

// Test helpers may unwrap and panic: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use fake_upstream::{Behaviour, FakeHandle, FakeUpstream};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

const IDS: [&str; 4] = ["a", "b", "c", "d"];

/// A gateway (auth off) over `ups`: fake `i` is provider `IDS[i]` serving `model-<id>`,
/// with a target `t<id>` (plus `target_extra` lines). `server_extra` goes into `[server]`;
/// `rest` holds the routes.
async fn gateway(ups: &[(&FakeHandle, &str)], server_extra: &str, rest: &str) -> Gw {
    let mut toml = format!("[server]\nauth = \"off\"\n{server_extra}\n{FAST_RETRY}\n");
    for (i, (fake, target_extra)) in ups.iter().enumerate() {
        let id = IDS[i];
        toml.push_str(&provider(id, &fake.base_url(), &[&format!("model-{id}")]));
        toml.push_str(&format!(
            "\n[targets.t{id}]\nprovider = \"{id}\"\nmodel = \"model-{id}\"\n{target_extra}\n"
        ));
    }
    toml.push_str(rest);
    Gw::start_with_env(
        &toml,
        &[
            ("A_KEY", "sk-a"),
            ("B_KEY", "sk-b"),
            ("C_KEY", "sk-c"),
            ("D_KEY", "sk-d"),
        ],
    )
    .await
}

fn attempts(r: &reqwest::Response) -> u32 {
    header(r, "x-signalbox-attempts")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no x-signalbox-attempts header: {:?}", r.headers()))
}

fn status_with_body(status: u16, body: &str) -> Behaviour {
    Behaviour::Status {
        status,
        retry_after: None,
        body: Some(body.to_string()),
    }
}

/// What a leaked house key would look like in an upstream error message.
const SECRET: &str = "sk-live-HOUSEKEY-abcdef0123456789";

fn secret_error_body(status: u16) -> String {
    serde_json::json!({"error": {
        "message": format!("Incorrect API key provided: {SECRET}. (status {status})"),
        "type": "invalid_request_error", "param": null, "code": "invalid_api_key"
    }})
    .to_string()
}

/// The final error of a plan: status, the envelope, and the plan-spent headers.
async fn spent_error(r: reqwest::Response, provider: &str) -> (u16, serde_json::Value) {
    assert_eq!(
        header(&r, "x-should-retry"),
        Some("false"),
        "{:?}",
        r.headers()
    );
    assert_eq!(
        header(&r, "x-signalbox-upstream-provider"),
        Some(provider),
        "{:?}",
        r.headers()
    );
    error_of(r).await
}

// ---------------------------------------------------------------- same-target retries

#[tokio::test]
async fn transient_503_is_retried_on_the_same_target_then_succeeds() {
    let a = FakeUpstream::openai().fail_first(2, 503).start().await;
    let gw = gateway(
        &[(&a, "")],
        "",
        "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\nretry = { max_retries = 2, backoff_base_ms = 10, backoff_max_ms = 100 }\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(attempts(&r), 3);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("a"));
    assert_eq!(header(&r, "x-signalbox-model"), Some("model-a"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["model"], "model-a",
        "the upstream's own model, never the route name"
    );
    assert_eq!(a.hits(), 3, "max_retries + 1 attempts on the same target");
}

#[tokio::test]
async fn retries_stop_at_max_retries_then_the_next_target_answers() {
    let a = FakeUpstream::openai()
        .always(Behaviour::status(503))
        .start()
        .await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway(
        &[(&a, ""), (&b, "")],
        "",
        "[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\nretry = { max_retries = 1, backoff_base_ms = 10, backoff_max_ms = 100 }\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
    assert_eq!(attempts(&r), 3);
    assert_eq!(a.hits(), 2, "1 + max_retries on the failing target");
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn backoff_waits_between_retries() {
    let a = FakeUpstream::openai().fail_first(2, 503).start().await;
    let gw = gateway(
        &[(&a, "")],
        "",
        "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\nretry = { max_retries = 2, backoff_base_ms = 100, backoff_max_ms = 1000 }\n",
    )
    .await;
    let t0 = Instant::now();
    let r = gw.chat("route::r", None).await;
    let elapsed = t0.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(a.hits(), 3);
    // Equal jitter: retry 0 waits >= 50ms (half of 100), retry 1 >= 100ms (half of 200).
    assert!(elapsed >= Duration::from_millis(150), "elapsed {elapsed:?}");
    let reqs = a.requests();
    assert_eq!(reqs.len(), 3);
    let gap1 = reqs[1].at.duration_since(reqs[0].at);
    let gap2 = reqs[2].at.duration_since(reqs[1].at);
    assert!(gap1 >= Duration::from_millis(50), "first backoff {gap1:?}");
    assert!(
        gap2 >= Duration::from_millis(100),
        "second backoff {gap2:?}"
    );
}

#[tokio::test]
async fn retry_after_within_backoff_max_is_honoured() {
    let a = FakeUpstream::openai().rate_limit_first(1, 1).start().await;
    let gw = gateway(
        &[(&a, "")],
        "",
        "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\nretry = { max_retries = 1, backoff_base_ms = 10, backoff_max_ms = 2000 }\n",
    )
    .await;
    let t0 = Instant::now();
    let r = gw.chat("route::r", None).await;
    let elapsed = t0.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(a.hits(), 2);
    assert!(
        elapsed >= Duration::from_millis(950),
        "Retry-After: 1 not honoured: {elapsed:?}"
    );
    let reqs = a.requests();
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_millis(950),
        "gap between attempts {gap:?}"
    );
}

#[tokio::test]
async fn retry_after_longer_than_backoff_max_moves_on_to_the_next_target() {
    let a = FakeUpstream::openai().rate_limit_first(1, 30).start().await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway(
        &[(&a, ""), (&b, "")],
        "",
        "[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\nretry = { max_retries = 2, backoff_base_ms = 10, backoff_max_ms = 100 }\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
    assert_eq!(
        a.hits(),
        1,
        "a 30s Retry-After must not be waited for on the same target"
    );
    assert_eq!(b.hits(), 1);
    assert_eq!(attempts(&r), 2);
}

#[tokio::test]
async fn connection_reset_is_retried() {
    let a = FakeUpstream::openai().reset_first(1).start().await;
    let gw = gateway(
        &[(&a, "")],
        "",
        "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("a"));
    assert_eq!(a.hits(), 2);
    assert_eq!(attempts(&r), 2);
}

#[tokio::test]
async fn timeout_is_not_retried_on_the_same_target_and_falls_back() {
    let a = FakeUpstream::openai().then(Behaviour::Hang).start().await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway(
        &[(&a, "timeout_ms = 200"), (&b, "")],
        "",
        "[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\nretry = { max_retries = 2, backoff_base_ms = 10, backoff_max_ms = 100 }\n",
    )
    .await;
    let t0 = Instant::now();
    let r = gw.chat("route::r", None).await;
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
    assert_eq!(a.hits(), 1, "a silent target is not retried");
    assert_eq!(b.hits(), 1);
    assert_eq!(attempts(&r), 2);
    assert!(
        a.wait_disconnects(1, Duration::from_secs(5)).await,
        "the gateway abandons the hung upstream request"
    );
}

// ---------------------------------------------------------------- fallback

#[tokio::test]
async fn fallback_tries_targets_in_order_until_one_answers() {
    let a = FakeUpstream::openai()
        .always(Behaviour::status(500))
        .start()
        .await;
    let b = FakeUpstream::openai()
        .always(Behaviour::status(500))
        .start()
        .await;
    let c = FakeUpstream::openai().start().await;
    let gw = gateway(
        &[(&a, ""), (&b, ""), (&c, "")],
        "",
        "[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\", \"tc\"]\nretry = { max_retries = 1, backoff_base_ms = 10, backoff_max_ms = 100 }\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("c"));
    assert_eq!(header(&r, "x-signalbox-route"), Some("route:r"));
    assert_eq!((a.hits(), b.hits(), c.hits()), (2, 2, 1));
    assert_eq!(attempts(&r), 5);
    let (ra, rb, rc) = (a.requests(), b.requests(), c.requests());
    assert!(ra[1].at <= rb[0].at, "a's retries come before b");
    assert!(rb[1].at <= rc[0].at, "b's retries come before c");
    // Each target gets its own credential, never another's.
    assert_eq!(ra[0].header("authorization"), Some("Bearer sk-a"));
    assert_eq!(rb[0].header("authorization"), Some("Bearer sk-b"));
    assert_eq!(rc[0].header("authorization"), Some("Bearer sk-c"));
    assert_eq!(rc[0].json()["model"], "model-c");
}

#[tokio::test]
async fn managed_401_is_not_retried_and_falls_back() {
    let a = FakeUpstream::openai()
        .always(status_with_body(401, &secret_error_body(401)))
        .start()
        .await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway(
        &[(&a, ""), (&b, "")],
        "",
        "[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
    assert_eq!(a.hits(), 1, "a credential problem is not retried");
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn managed_401_as_last_failure_is_502_upstream_without_the_providers_message() {
    for status in [401u16, 403, 404] {
        let a = FakeUpstream::openai()
            .always(status_with_body(status, &secret_error_body(status)))
            .start()
            .await;
        let gw = gateway(
            &[(&a, "")],
            "",
            "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\n",
        )
        .await;
        let r = gw.chat("route::r", None).await;
        let headers = format!("{:?}", r.headers());
        let (st, body) = spent_error(r, "a").await;
        assert_eq!(st, 502, "managed {status} -> 502: {body}");
        assert_eq!(body["error"]["code"], "upstream");
        let text = body.to_string();
        assert!(
            !text.contains("HOUSEKEY") && !text.contains("Incorrect API key"),
            "leaked: {text}"
        );
        assert!(
            !headers.contains("HOUSEKEY"),
            "leaked in headers: {headers}"
        );
        assert_eq!(a.hits(), 1, "status {status} is not retried");
    }
}

#[tokio::test]
async fn upstream_400_is_the_answer_with_no_retry_and_no_fallback() {
    let msg = "Invalid value for 'temperature': must be at most 2.";
    let err = serde_json::json!({"error": {"message": msg, "type": "invalid_request_error", "param": "temperature", "code": "invalid_value"}});
    let a = FakeUpstream::openai()
        .always(status_with_body(400, &err.to_string()))
        .start()
        .await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway(
        &[(&a, ""), (&b, "")],
        "",
        "[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(header(&r, "x-signalbox-provider"), Some("a"));
    let (st, body) = error_of(r).await;
    assert_eq!(st, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    assert_eq!(
        body["error"]["message"], msg,
        "the caller's mistake is explained in the provider's words"
    );
    assert_eq!(body["error"]["param"], "temperature");
    assert_eq!(a.hits(), 1);
    assert_eq!(b.hits(), 0, "no fallback on a caller mistake");
}

#[tokio::test]
async fn upstream_422_and_413_are_answers_too() {
    for status in [413u16, 422] {
        let a = FakeUpstream::openai()
            .always(Behaviour::status(status))
            .start()
            .await;
        let b = FakeUpstream::openai().start().await;
        let gw = gateway(
            &[(&a, ""), (&b, "")],
            "",
            "[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\n",
        )
        .await;
        let r = gw.chat("route::r", None).await;
        let (st, body) = error_of(r).await;
        assert_eq!(st, status);
        assert_eq!(body["error"]["code"], "bad_request");
        assert_eq!((a.hits(), b.hits()), (1, 0));
    }
}

#[tokio::test]
async fn content_policy_refusal_is_the_answer() {
    let err = serde_json::json!({"error": {"message": "Your request was rejected by our safety system.", "type": "invalid_request_error", "param": null, "code": "content_policy_violation"}});
    let a = FakeUpstream::openai()
        .always(status_with_body(400, &err.to_string()))
        .start()
        .await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway(
        &[(&a, ""), (&b, "")],
        "",
        "[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    let (st, body) = error_of(r).await;
    assert_eq!(st, 400);
    assert_eq!(body["error"]["code"], "content_policy");
    assert_eq!((a.hits(), b.hits()), (1, 0));
}

// ---------------------------------------------------------------- degraded mode

#[tokio::test]
async fn degraded_mode_gives_the_first_target_one_more_attempt() {
    let a = FakeUpstream::openai()
        .always(Behaviour::status(503))
        .start()
        .await;
    let b = FakeUpstream::openai()
        .always(Behaviour::status(503))
        .start()
        .await;
    let gw = gateway(
        &[(&a, ""), (&b, "")],
        "",
        "[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\nretry = { max_retries = 0 }\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(attempts(&r), 3);
    let (st, body) = spent_error(r, "a").await;
    assert_eq!(st, 503);
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!((a.hits(), b.hits()), (2, 1));
    let (ra, rb) = (a.requests(), b.requests());
    assert!(
        rb[0].at <= ra[1].at,
        "the degraded attempt comes after the whole chain"
    );
}

#[tokio::test]
async fn degraded_attempt_can_succeed() {
    let a = FakeUpstream::openai().fail_first(1, 503).start().await;
    let b = FakeUpstream::openai()
        .always(Behaviour::status(503))
        .start()
        .await;
    let gw = gateway(
        &[(&a, ""), (&b, "")],
        "",
        "[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\nretry = { max_retries = 0 }\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("a"));
    assert_eq!(attempts(&r), 3);
    assert_eq!((a.hits(), b.hits()), (2, 1));
}

#[tokio::test]
async fn single_target_route_gets_no_degraded_attempt() {
    let a = FakeUpstream::openai()
        .always(Behaviour::status(503))
        .start()
        .await;
    let gw = gateway(
        &[(&a, "")],
        "",
        "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\nretry = { max_retries = 0 }\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(attempts(&r), 1);
    let (st, _) = spent_error(r, "a").await;
    assert_eq!(st, 503);
    assert_eq!(a.hits(), 1);
}

// ---------------------------------------------------------------- final error mapping

/// One single-target route with no retries whose only upstream behaves as `b`.
async fn final_error_of(b: Behaviour, target_extra: &str) -> (reqwest::Response, FakeHandle) {
    let a = FakeUpstream::openai().always(b).start().await;
    let gw = gateway(
        &[(&a, target_extra)],
        "",
        "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\nretry = { max_retries = 0, backoff_base_ms = 10, backoff_max_ms = 100 }\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    (r, a)
}

#[tokio::test]
async fn final_429_stays_429_rate_limit_with_retry_after() {
    let (r, a) = final_error_of(
        Behaviour::Status {
            status: 429,
            retry_after: Some("7".into()),
            body: None,
        },
        "",
    )
    .await;
    assert_eq!(header(&r, "retry-after"), Some("7"));
    assert!(
        header(&r, "x-signalbox-upstream-request-id").is_some_and(|id| !id.is_empty()),
        "the upstream's request id names the failure too"
    );
    let (st, body) = spent_error(r, "a").await;
    assert_eq!(st, 429);
    assert_eq!(body["error"]["code"], "rate_limit");
    assert_eq!(a.hits(), 1);
    // Without one from the upstream the caller still gets a `Retry-After` (one second), and an
    // absurd one is capped at a day.
    for (sent, want) in [(None, "1"), (Some("99999999999999999999"), "86400")] {
        let (r, _) = final_error_of(
            Behaviour::Status {
                status: 429,
                retry_after: sent.map(str::to_string),
                body: None,
            },
            "",
        )
        .await;
        assert_eq!(r.status(), 429);
        assert_eq!(header(&r, "retry-after"), Some(want), "{sent:?}");
    }
}

#[tokio::test]
async fn final_500_keeps_its_status_with_a_redacted_message() {
    let leaky = serde_json::json!({"error": {"message": "db error at 10.0.0.7: password=hunter2", "type": "server_error", "param": null, "code": null}});
    let (r, _a) = final_error_of(status_with_body(500, &leaky.to_string()), "").await;
    let (st, body) = spent_error(r, "a").await;
    assert_eq!(st, 500);
    assert_eq!(body["error"]["code"], "upstream");
    assert_eq!(body["error"]["message"], "provider returned status 500");
    assert!(!body.to_string().contains("hunter2"));
}

#[tokio::test]
async fn final_502_and_504_from_upstream_keep_their_status() {
    for status in [502u16, 504] {
        let (r, _a) = final_error_of(Behaviour::status(status), "").await;
        let (st, body) = spent_error(r, "a").await;
        assert_eq!(st, status);
        assert_eq!(body["error"]["code"], "upstream");
        assert_eq!(
            body["error"]["message"],
            format!("provider returned status {status}")
        );
    }
}

#[tokio::test]
async fn final_503_is_overloaded() {
    let (r, _a) = final_error_of(Behaviour::status(503), "").await;
    let (st, body) = spent_error(r, "a").await;
    assert_eq!(st, 503);
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(body["error"]["message"], "provider returned status 503");
}

#[tokio::test]
async fn final_529_is_overloaded_with_its_status() {
    let (r, _a) = final_error_of(Behaviour::status(529), "").await;
    let (st, body) = spent_error(r, "a").await;
    assert_eq!(st, 529);
    assert_eq!(body["error"]["code"], "overloaded");
}

#[tokio::test]
async fn upstream_408_is_retried_and_ends_as_504_timeout() {
    let a = FakeUpstream::openai()
        .always(Behaviour::status(408))
        .start()
        .await;
    let gw = gateway(&[(&a, "")], "", "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\nretry = { max_retries = 1, backoff_base_ms = 10, backoff_max_ms = 50 }\n").await;
    let r = gw.chat("route::r", None).await;
    let (st, body) = spent_error(r, "a").await;
    assert_eq!(st, 504);
    assert_eq!(body["error"]["code"], "timeout");
    assert_eq!(a.hits(), 2, "408 is transient: retried on the same target");
}

#[tokio::test]
async fn final_timeout_is_504_timeout() {
    let (r, a) = final_error_of(Behaviour::Hang, "timeout_ms = 200").await;
    let (st, body) = spent_error(r, "a").await;
    assert_eq!(st, 504);
    assert_eq!(body["error"]["code"], "timeout");
    assert_eq!(a.hits(), 1);
}

#[tokio::test]
async fn final_connection_failure_is_502_upstream() {
    let a = FakeUpstream::openai()
        .always(Behaviour::Reset)
        .start()
        .await;
    let gw = gateway(
        &[(&a, "")],
        "",
        "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\nretry = { max_retries = 1, backoff_base_ms = 10, backoff_max_ms = 100 }\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    let (st, body) = spent_error(r, "a").await;
    assert_eq!(st, 502);
    assert_eq!(body["error"]["code"], "upstream");
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "{body}"
    );
    assert_eq!(a.hits(), 2);
}

#[tokio::test]
async fn request_deadline_bounds_the_whole_request() {
    let a = FakeUpstream::openai().always(Behaviour::Hang).start().await;
    let gw = gateway(
        &[(&a, "")],
        "request_timeout_ms = 300",
        "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    let (st, body) = error_of(r).await;
    assert_eq!(st, 504);
    assert_eq!(body["error"]["code"], "timeout");
}

#[tokio::test]
async fn request_deadline_stops_retries() {
    // Every attempt fails at once; backoff alone would take ~10s over 5 retries.
    let a = FakeUpstream::openai()
        .always(Behaviour::status(503))
        .start()
        .await;
    let gw = gateway(
        &[(&a, "")],
        "request_timeout_ms = 300",
        "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\nretry = { max_retries = 5, backoff_base_ms = 200, backoff_max_ms = 4000 }\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    let (st, _) = error_of(r).await;
    assert!(st == 503 || st == 504, "status {st}");
    assert!(
        a.hits() < 6,
        "retries outlived the deadline: {} hits",
        a.hits()
    );
}

// ---------------------------------------------------------------- weighted

#[tokio::test]
async fn weighted_route_first_pick_follows_the_weights() {
    let a = FakeUpstream::openai().start().await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway(
        &[(&a, ""), (&b, "")],
        "",
        "[routes.r]\nstrategy = \"weighted\"\ntargets = [{ target = \"ta\", weight = 70 }, { target = \"tb\", weight = 30 }]\n",
    )
    .await;
    let n = 600usize;
    let statuses: Vec<u16> = futures_util::stream::iter(0..n)
        .map(|_| async { gw.chat("route::r", None).await.status().as_u16() })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(a.hits() + b.hits(), n, "every request lands once");
    let share = a.hits() as f64 / n as f64;
    assert!(
        (0.6..=0.8).contains(&share),
        "share of the 70 target: {share}"
    );
}

#[tokio::test]
async fn weighted_pick_that_fails_falls_through_to_the_other_target() {
    let a = FakeUpstream::openai()
        .always(Behaviour::status(500))
        .start()
        .await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway(
        &[(&a, ""), (&b, "")],
        "",
        "[routes.r]\nstrategy = \"weighted\"\ntargets = [{ target = \"ta\", weight = 90 }, { target = \"tb\", weight = 10 }]\nretry = { max_retries = 0 }\n",
    )
    .await;
    let mut second_tries = 0;
    for _ in 0..20 {
        let r = gw.chat("route::r", None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
        if attempts(&r) == 2 {
            second_tries += 1;
        }
    }
    assert!(a.hits() > 0, "the 90 target was never picked first");
    assert_eq!(
        a.hits(),
        second_tries,
        "each fall-through is one failed attempt on a"
    );
    assert_eq!(b.hits(), 20);
}

// ---------------------------------------------------------------- steps

#[tokio::test]
async fn a_failed_step_hands_over_to_the_next_step() {
    let a = FakeUpstream::openai()
        .always(Behaviour::status(500))
        .start()
        .await;
    let b = FakeUpstream::openai()
        .always(Behaviour::status(502))
        .start()
        .await;
    let c = FakeUpstream::openai().start().await;
    let gw = gateway(
        &[(&a, ""), (&b, ""), (&c, "")],
        "",
        "[routes.r]\nstrategy = \"fallback\"\nsteps = [\n  { strategy = \"fallback\", targets = [\"ta\", \"tb\"], retry = { max_retries = 1, backoff_base_ms = 10, backoff_max_ms = 50 } },\n  { strategy = \"single\", targets = [\"tc\"], retry = { max_retries = 0 } },\n]\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("c"));
    assert_eq!(
        (a.hits(), b.hits(), c.hits()),
        (2, 2, 1),
        "each step uses its own retry"
    );
    assert_eq!(attempts(&r), 5);
}

#[tokio::test]
async fn step_retry_policy_applies_to_its_own_targets() {
    let a = FakeUpstream::openai()
        .always(Behaviour::status(500))
        .start()
        .await;
    let b = FakeUpstream::openai()
        .always(Behaviour::status(503))
        .start()
        .await;
    let gw = gateway(
        &[(&a, ""), (&b, "")],
        "",
        "[routes.r]\nstrategy = \"fallback\"\nsteps = [\n  { strategy = \"single\", targets = [\"ta\"], retry = { max_retries = 0 } },\n  { strategy = \"single\", targets = [\"tb\"], retry = { max_retries = 2, backoff_base_ms = 10, backoff_max_ms = 50 } },\n]\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    // a once, b 1 + 2 retries, then the degraded extra attempt on a.
    assert_eq!(attempts(&r), 5);
    let (st, body) = spent_error(r, "a").await;
    assert_eq!(st, 500, "the last failure was a's 500: {body}");
    assert_eq!((a.hits(), b.hits()), (2, 3));
}

// ---------------------------------------------------------------- experiments

const EXPERIMENT: &str = "[routes.exp]\nstrategy = \"experiment\"\nretry = { max_retries = 0 }\n\
[routes.exp.variants.va]\ntarget = \"ta\"\nweight = 50\ntemperature = 0.2\n\
[routes.exp.variants.vb]\ntarget = \"tb\"\nweight = 50\ntemperature = 0.9\nmax_tokens = 77\n";

fn chat_with_temperature(gw: &Gw, user: Option<&str>) -> reqwest::RequestBuilder {
    let mut body = chat_body("route::exp", false);
    body["temperature"] = serde_json::json!(1.5);
    body["max_tokens"] = serde_json::json!(5);
    let rb = gw.post("/v1/chat/completions").json(&body);
    match user {
        Some(u) => rb.header("x-signalbox-user-id", u),
        None => rb,
    }
}

#[tokio::test]
async fn experiment_variant_is_reported_and_its_params_override_the_callers() {
    let a = FakeUpstream::openai().start().await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway(&[(&a, ""), (&b, "")], "", EXPERIMENT).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let r = chat_with_temperature(&gw, None).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v = header(&r, "x-signalbox-variant")
            .unwrap_or_default()
            .to_string();
        assert_eq!(header(&r, "x-gateway-variant"), Some(v.as_str()));
        let provider = header(&r, "x-signalbox-provider").unwrap_or_default();
        assert_eq!(
            provider,
            match v.as_str() {
                "va" => "a",
                "vb" => "b",
                other => panic!("unknown variant {other:?}"),
            }
        );
        seen.insert(v);
    }
    assert_eq!(seen.len(), 2, "both variants serve a 50/50 split: {seen:?}");
    for req in a.requests() {
        let j = req.json();
        assert_eq!(j["temperature"], 0.2, "variant va's temperature wins: {j}");
        assert_eq!(
            j["max_tokens"], 5,
            "va does not set max_tokens: the caller's stays"
        );
        assert_eq!(j["model"], "model-a");
    }
    for req in b.requests() {
        let j = req.json();
        assert_eq!(j["temperature"], 0.9);
        assert_eq!(j["max_tokens"], 77);
    }
}

#[tokio::test]
async fn sticky_user_experiment_keeps_each_user_on_one_variant() {
    let a = FakeUpstream::openai().start().await;
    let b = FakeUpstream::openai().start().await;
    let sticky = EXPERIMENT.replace(
        "strategy = \"experiment\"\n",
        "strategy = \"experiment\"\nsticky = \"user\"\n",
    );
    let gw = gateway(&[(&a, ""), (&b, "")], "", &sticky).await;
    let mut first: Option<String> = None;
    for _ in 0..20 {
        let r = chat_with_temperature(&gw, Some("user-42"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v = header(&r, "x-signalbox-variant").map(str::to_string);
        assert!(v.is_some());
        match &first {
            None => first = v,
            Some(f) => assert_eq!(v.as_ref(), Some(f), "user-42 changed variant"),
        }
    }
    // And different users do spread over both variants.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let r = chat_with_temperature(&gw, Some(&format!("user-{i}")))
            .send()
            .await
            .unwrap();
        seen.insert(
            header(&r, "x-signalbox-variant")
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // A user id in UTF-8 (not plain ASCII) is an id like any other: sticky, not random.
    for name in ["josé", "Ærøskøbing-7", "用户-3"] {
        let mut variants = std::collections::BTreeSet::new();
        for _ in 0..10 {
            let id = reqwest::header::HeaderValue::from_bytes(name.as_bytes()).unwrap();
            let r = chat_with_temperature(&gw, None)
                .header("x-signalbox-user-id", id)
                .send()
                .await
                .unwrap();
            variants.insert(
                header(&r, "x-signalbox-variant")
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        assert_eq!(variants.len(), 1, "{name}: {variants:?}");
    }
}

#[tokio::test]
async fn experiment_falls_back_to_the_other_variant_and_says_which_served() {
    let a = FakeUpstream::openai()
        .always(Behaviour::status(500))
        .start()
        .await;
    let b = FakeUpstream::openai().start().await;
    let sticky = EXPERIMENT.replace(
        "strategy = \"experiment\"\n",
        "strategy = \"experiment\"\nsticky = \"user\"\n",
    );
    let gw = gateway(&[(&a, ""), (&b, "")], "", &sticky).await;
    let mut fell_back = 0;
    for i in 0..20 {
        let r = chat_with_temperature(&gw, Some(&format!("user-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-signalbox-variant"), Some("vb"));
        assert_eq!(header(&r, "x-gateway-variant"), Some("vb"));
        assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
        if attempts(&r) == 2 {
            fell_back += 1;
        }
    }
    assert!(fell_back > 0, "no user was assigned the failing variant");
    assert_eq!(a.hits(), fell_back);
    // The serving variant's params apply, not the assigned one's.
    for req in b.requests() {
        assert_eq!(req.json()["temperature"], 0.9);
    }
}

// ---------------------------------------------------------------- broken bodies, cancellation

#[tokio::test]
async fn non_stream_body_cut_midway_is_retried() {
    let a = FakeUpstream::openai()
        .then(Behaviour::CutAfter(1))
        .start()
        .await;
    let gw = gateway(
        &[(&a, "")],
        "",
        "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(attempts(&r), 2);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["finish_reason"], "stop",
        "a whole answer: {body}"
    );
    assert_eq!(a.hits(), 2);
}

#[tokio::test]
async fn non_stream_body_slower_than_timeout_ms_is_a_timeout_and_falls_back() {
    let a = FakeUpstream::openai()
        .then(Behaviour::StallAfter(1))
        .start()
        .await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway(
        &[(&a, "timeout_ms = 200"), (&b, "")],
        "",
        "[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\n",
    )
    .await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        (a.hits(), b.hits()),
        (1, 1),
        "timeouts are not retried on the same target"
    );
}

#[tokio::test]
async fn caller_going_away_cancels_the_pending_upstream_request() {
    let a = FakeUpstream::openai().always(Behaviour::Hang).start().await;
    let gw = gateway(
        &[(&a, "")],
        "",
        "[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\n",
    )
    .await;
    let res = gw
        .post("/v1/chat/completions")
        .json(&chat_body("route::r", false))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(res.is_err(), "the upstream hangs: the caller gives up");
    assert!(
        a.wait_disconnects(1, Duration::from_secs(5)).await,
        "the gateway kept waiting on the upstream after the caller left"
    );
    assert_eq!(a.hits(), 1);
}

/// A loopback base URL where nothing listens.
async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn connect_error_is_a_target_failure_and_falls_back() {
    let b = FakeUpstream::openai().start().await;
    let dead = dead_url().await;
    let toml = format!(
        "[server]\nauth = \"off\"\n\n{FAST_RETRY}\n{}\n[targets.ta]\nprovider = \"a\"\nmodel = \"model-a\"\n\n{}\n[targets.tb]\nprovider = \"b\"\nmodel = \"model-b\"\n\n[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\n",
        provider("a", &dead, &["model-a"]),
        provider("b", &b.base_url(), &["model-b"]),
    );
    let gw = Gw::start_with_env(&toml, &[("A_KEY", "sk-a"), ("B_KEY", "sk-b")]).await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
    // FAST_RETRY: a connect error is transient, so 1 + 2 retries on a first.
    assert_eq!(attempts(&r), 4);
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn connect_error_as_last_failure_is_502_upstream() {
    let dead = dead_url().await;
    let toml = format!(
        "[server]\nauth = \"off\"\n\n{FAST_RETRY}\n{}\n[targets.ta]\nprovider = \"a\"\nmodel = \"model-a\"\n\n[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\n",
        provider("a", &dead, &["model-a"]),
    );
    let gw = Gw::start_with_env(&toml, &[("A_KEY", "sk-a")]).await;
    let r = gw.chat("route::r", None).await;
    assert_eq!(attempts(&r), 3);
    let (st, body) = spent_error(r, "a").await;
    assert_eq!(st, 502);
    assert_eq!(body["error"]["code"], "upstream");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !msg.contains(&dead) && !msg.contains("127.0.0.1"),
        "no upstream URL in errors: {msg}"
    );
}

/// A listener that never accepts, its backlog filled: a connect to it hangs until the
/// connector's own timeout (the SYN is dropped). The sockets must be kept alive.
async fn blackhole() -> (String, Vec<tokio::net::TcpStream>, tokio::net::TcpListener) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fill = Vec::new();
    for _ in 0..4 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fill.push(s),
            _ => break,
        }
    }
    (format!("http://{addr}/v1"), fill, listener)
}

#[tokio::test]
async fn a_connect_timeout_is_a_timeout_moving_on_at_once_and_504_when_last() {
    let (url, _fill, _l) = blackhole().await;
    let good = FakeUpstream::openai().start().await;
    let toml = format!(
        "[server]\nauth = \"off\"\n{FAST_RETRY}\n{}\nconnect_timeout_ms = 300\n{}\n[targets.tb]\nprovider = \"blk\"\nmodel = \"m\"\n[targets.tg]\nprovider = \"good\"\nmodel = \"m\"\n[routes.alone]\ntargets = [\"tb\"]\nretry = {{ max_retries = 2 }}\n[routes.chain]\ntargets = [\"tb\", \"tg\"]\nretry = {{ max_retries = 2 }}\n",
        provider("blk", &url, &["m"]),
        provider("good", &good.base_url(), &["m"])
    );
    let gw = Gw::start_with_env(&toml, &[("BLK_KEY", "k"), ("GOOD_KEY", "k")]).await;
    let t0 = Instant::now();
    let r = gw.chat("route::chain", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        attempts(&r),
        2,
        "no same-target retry after a connect timeout"
    );
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    let r = gw.chat("route::alone", None).await;
    assert_eq!(attempts(&r), 1);
    let (status, code) = (
        r.status().as_u16(),
        header(&r, "x-signalbox-error-code").map(str::to_string),
    );
    assert_eq!((status, code.as_deref()), (504, Some("timeout")));
}
