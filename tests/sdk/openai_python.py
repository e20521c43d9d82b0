"""Drive a running Signalbox with the official OpenAI Python SDK.

Usage: python3 openai_python.py BASE_URL GATEWAY_KEY
Routes expected: route::hello (chat), route::embed (embeddings), route::cut (a stream that breaks).
"""
import sys

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
msgs = [{"role": "user", "content": "Hello from the SDK"}]

# Plain chat, typed response.
r = client.chat.completions.create(model="route::hello", messages=msgs)
assert r.choices[0].message.content, r
assert r.choices[0].finish_reason == "stop", r
assert r.usage.total_tokens > 0, r
assert "::" not in r.model, "the body's model is the upstream's own"

# Raw response: gateway headers.
raw = client.chat.completions.with_raw_response.create(model="route::hello", messages=msgs)
assert raw.headers["x-signalbox-route"] == "route:hello", dict(raw.headers)
assert raw.headers.get("x-request-id"), dict(raw.headers)
raw.parse()

# Streaming without usage: text arrives, no usage-only chunk.
chunks = list(client.chat.completions.create(model="route::hello", messages=msgs, stream=True))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text, chunks
assert all(c.choices for c in chunks), "a usage-only chunk reached a caller who did not ask for it"

# Streaming with usage: the last chunk carries it.
chunks = list(
    client.chat.completions.create(
        model="route::hello", messages=msgs, stream=True, stream_options={"include_usage": True}
    )
)
assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0, chunks[-1]

# Embeddings through a named route.
e = client.embeddings.create(model="route::embed", input=["a", "b"])
assert len(e.data) == 2 and len(e.data[0].embedding) > 0, e

# Models list shows routes.
ids = [m.id for m in client.models.list()]
assert "route::hello" in ids and "route::embed" in ids, ids

# Errors are typed exceptions with our codes.
try:
    client.chat.completions.create(model="route::nope", messages=msgs)
    raise AssertionError("expected NotFoundError")
except openai.NotFoundError as err:
    assert err.code == "model_not_found", err.body
try:
    client.chat.completions.create(model="route::embed", messages=msgs)
    raise AssertionError("expected BadRequestError")
except openai.BadRequestError as err:
    assert err.code == "wrong_endpoint", err.body
    assert "/v1/embeddings" in err.message
try:
    openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).chat.completions.create(
        model="route::hello", messages=msgs
    )
    raise AssertionError("expected AuthenticationError")
except openai.AuthenticationError as err:
    assert err.code == "auth", err.body

# A stream cut after its first bytes surfaces as an error, never as a complete answer.
got = []
try:
    for c in client.chat.completions.create(model="route::cut", messages=msgs, stream=True):
        got.append(c)
    raise AssertionError("a cut stream must not end cleanly")
except openai.APIError as err:
    assert "interrupted" in str(err.message) or "stream_interrupted" in str(err.body), err
assert got, "the first chunks arrive before the error"

print("openai-python: all checks passed")
