"""The OpenAI Python SDK must not multiply the gateway's retry plan by its own retries.

Usage: python3 openai_python_retries.py BASE_URL GATEWAY_KEY DIRECT_UPSTREAM_URL

route::flaky has one target whose upstream always answers 503, and a plan of 1 + 2 retries. The
SDK is configured with max_retries=2: the gateway's final error carries `x-should-retry: false`,
so each call must reach the upstream exactly 3 times (checked from Rust with the fake's hits()).
route::limited's upstream always answers 429 with `Retry-After: 30`: 1 hit. As a control, the same SDK settings against an upstream that sends a bare 503 do retry (3 hits
on DIRECT_UPSTREAM_URL), so the count above proves the header was honoured.
"""
import openai

from sdkcheck import client, expect_error, start

base, key, extra, done = start("openai-python retries")
direct = extra[0]
c = client(base, key, max_retries=2)


def check(err):
    h = err.response.headers
    assert h["x-should-retry"] == "false", dict(h)
    assert h["x-signalbox-attempts"] == "3", dict(h)
    assert h["x-signalbox-upstream-provider"] == "down", dict(h)
    assert err.body["message"] == "provider returned status 503", err.body


# Plain chat, streamed chat (fails before its first byte) and the Responses API.
check(
    expect_error(
        openai.InternalServerError,
        lambda: c.chat.completions.create(
            model="route::flaky", messages=[{"role": "user", "content": "hi"}]
        ),
        code="overloaded",
        status=503,
    )
)
check(
    expect_error(
        openai.InternalServerError,
        lambda: c.chat.completions.create(
            model="route::flaky", messages=[{"role": "user", "content": "hi"}], stream=True
        ),
        code="overloaded",
        status=503,
    )
)
check(
    expect_error(
        openai.InternalServerError,
        lambda: c.responses.create(model="route::flaky", input="hi"),
        code="overloaded",
        status=503,
    )
)

# A final 429 whose Retry-After (30 s) is longer than the gateway's backoff_max_ms: the gateway moves
# on at once, and the SDK, although it honours Retry-After, does not retry either.
err = expect_error(
    openai.RateLimitError,
    lambda: c.chat.completions.create(model="route::limited", messages=[{"role": "user", "content": "hi"}]),
    code="rate_limit",
    status=429,
)
assert err.response.headers["x-should-retry"] == "false", dict(err.response.headers)
assert err.response.headers["retry-after"] == "30", dict(err.response.headers)

# Control: the same client settings straight at an upstream that answers a bare 503 do retry.
raw = openai.OpenAI(base_url=direct, api_key="sk-direct", max_retries=2, timeout=20.0)
try:
    raw.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("expected a 503")
except openai.InternalServerError as err:
    assert "x-should-retry" not in err.response.headers, dict(err.response.headers)

done()
