"""Checks the fake's Anthropic Messages API with the official `anthropic` Python SDK.

Run by tests/endpoints.rs as
`python3 anthropic_sdk_check.py ROOT_URL API_KEY NAME=ROOT_URL...` against running
fakes (ROOT_URL without /v1: the SDK appends /v1/messages). The main fake requires
API_KEY and reports 7 cache-read and 3 cache-write tokens; the named ones always
fail: `rate` (429, retry-after 7), `overloaded` (529), `server` (500) and `streamerr`
(streams end with an `error` event after 3 events).

The SDK builds its models leniently, so every raw body and event is also validated
with pydantic's `model_validate` and checked for fields the SDK does not know. The
fixtures in ../fixtures/anthropic are validated the same way.
"""

import json
import os
import sys

import anthropic
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import ErrorResponse, Message, RawMessageStreamEvent
from pydantic import BaseModel, TypeAdapter

import rawhttp

root, key = sys.argv[1], sys.argv[2]
failing = dict(arg.split("=", 1) for arg in sys.argv[3:])
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "anthropic")
client = anthropic.Anthropic(base_url=root, api_key=key, max_retries=0, timeout=10)
events_adapter = TypeAdapter(RawMessageStreamEvent)
MODEL = "claude-sonnet-4-5"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]},
}
CLOCK = {"name": "get_time", "description": "Time now", "input_schema": {"type": "object", "properties": {}}}


def no_unknown_fields(value, path="$"):
    """Every field of the validated model is one the SDK knows."""
    if isinstance(value, BaseModel):
        extra = value.__pydantic_extra__ or {}
        assert not extra, f"{path}: fields the SDK does not know: {sorted(extra)}"
        for name in type(value).model_fields:
            no_unknown_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            no_unknown_fields(item, f"{path}[{i}]")


def strict(model, data):
    parsed = model.model_validate(data)
    no_unknown_fields(parsed)
    return parsed


def strict_event(data):
    if data.get("type") == "ping":
        assert data == {"type": "ping"}, data
        return data
    if data.get("type") == "error":
        return strict(ErrorResponse, data)
    event = events_adapter.validate_python(data)
    no_unknown_fields(event)
    return event


def parse_sse(text):
    """`(event name, data)` per SSE event; each event is named like its `type`."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        name, data = lines[0][len("event: "):], json.loads(lines[1][len("data: "):])
        assert data["type"] == name, block
        out.append((name, data))
    return out


def post(base, body, headers=None, version="2026-10-21"):
    """A raw POST /v1/messages: (status, headers, text)."""
    h = {"x-api-key": key}
    if version:
        h["anthropic-version"] = version
    return rawhttp.post(base + "/v1/messages", body, {**h, **(headers or {})})


def accumulate(events):
    """The final message the SDK's own accumulator builds from raw events."""
    snapshot, bufs = None, {}
    for name, data in events:
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=strict_event(data), current_snapshot=snapshot, json_bufs=bufs)
    return snapshot


def user(text):
    return [{"role": "user", "content": text}]


# ---- plain message, strictly validated -------------------------------------------------
raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=user("hello there"))
assert raw.headers["request-id"].startswith("req_011C"), dict(raw.headers)
assert "x-request-id" not in raw.headers, dict(raw.headers)
assert raw.http_request.headers["anthropic-version"] == "2026-10-21"
msg = strict(Message, json.loads(raw.http_response.text))
assert raw.parse()._request_id == raw.headers["request-id"]
assert msg.id.startswith("msg_01") and msg.model == MODEL and msg.role == "assistant", msg
assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == "fake reply to: hello there", msg
assert msg.stop_reason == "end_turn" and msg.stop_sequence is None, msg
# "hello there" is 11 chars -> 3 uncached input tokens; the reply has 5 words.
u = msg.usage
assert (u.input_tokens, u.output_tokens) == (3, 5), u
assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (7, 3), u
assert u.cache_creation.ephemeral_5m_input_tokens == 3 and u.service_tier == "standard", u

# ---- system prompt (string and blocks) counts as input -----------------------------------
m = client.messages.create(model=MODEL, max_tokens=100, system="be brief and kind", messages=user("hi"))
assert m.content[0].text == "fake reply to: hi" and m.usage.input_tokens == 5, m  # 17 + 2 chars
m = client.messages.create(
    model=MODEL,
    max_tokens=100,
    system=[{"type": "text", "text": "be brief and kind", "cache_control": {"type": "ephemeral"}}],
    messages=user("hi"),
)
assert m.usage.input_tokens == 5, m.usage

# ---- multi-turn: the reply echoes the last user message ----------------------------------
m = client.messages.create(
    model=MODEL,
    max_tokens=100,
    messages=[
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "text", "text": "question"}]},
    ],
)
assert m.content[0].text == "fake reply to: second question", m

# ---- tool call, then the tool result round trip ------------------------------------------
call = client.messages.create(model=MODEL, max_tokens=100, tools=[WEATHER, CLOCK], messages=user("weather in Oslo?"))
strict(Message, call.to_dict())
assert call.stop_reason == "tool_use", call
(block,) = call.content
assert block.type == "tool_use" and block.name == "get_weather", block
assert block.id.startswith("toolu_01") and block.input == {"input": "weather in Oslo?"}, block
history = user("weather in Oslo?") + [
    {"role": "assistant", "content": [b.to_dict() for b in call.content]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny, 21C"}]},
]
m = client.messages.create(model=MODEL, max_tokens=100, tools=[WEATHER, CLOCK], messages=history)
assert m.stop_reason == "end_turn" and m.content[0].text == "fake reply to tool result: sunny, 21C", m
# A tool result given as blocks.
history[-1]["content"][0]["content"] = [{"type": "text", "text": "cloudy"}]
m = client.messages.create(model=MODEL, max_tokens=100, tools=[WEATHER], messages=history)
assert m.content[0].text == "fake reply to tool result: cloudy", m
# Forced tool, and tool_choice none.
m = client.messages.create(
    model=MODEL, max_tokens=100, tools=[WEATHER, CLOCK], tool_choice={"type": "tool", "name": "get_time"},
    messages=user("now?"),
)
assert m.content[0].name == "get_time" and m.content[0].input == {"input": "now?"}, m
m = client.messages.create(
    model=MODEL, max_tokens=100, tools=[WEATHER], tool_choice={"type": "none"}, messages=user("now?")
)
assert m.stop_reason == "end_turn" and m.content[0].text == "fake reply to: now?", m

# ---- streaming text: the SDK's helper, and every raw event validated ---------------------
with client.messages.stream(model=MODEL, max_tokens=100, messages=user("stream me please")) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert text == final.content[0].text == "fake reply to: stream me please", (text, final)
assert final.stop_reason == "end_turn" and final.usage.output_tokens == 6, final
assert final.usage.input_tokens == 4 and final.usage.cache_read_input_tokens == 7, final.usage

status, headers, body = post(root, {"model": MODEL, "max_tokens": 100, "stream": True, "messages": user("abc def")})
assert status == 200 and headers["content-type"].startswith("text/event-stream"), (status, dict(headers))
assert headers["request-id"].startswith("req_"), dict(headers)
events = parse_sse(body)
names = [n for n, _ in events]
assert names[:3] == ["message_start", "ping", "content_block_start"], names
assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"], names
assert set(names[3:-3]) == {"content_block_delta"} and len(names[3:-3]) > 1, names
for _, data in events:
    strict_event(data)
rebuilt = accumulate(events)
strict(Message, rebuilt.to_dict())
assert rebuilt.content[0].text == "fake reply to: abc def" and rebuilt.stop_reason == "end_turn", rebuilt

# ---- streaming tool use: get_final_message reassembles the input -------------------------
with client.messages.stream(model=MODEL, max_tokens=100, tools=[WEATHER], messages=user('say "hi" \\ bye')) as stream:
    kinds = [e.type for e in stream]
    final = stream.get_final_message()
assert final.stop_reason == "tool_use", final
assert final.content[0].type == "tool_use" and final.content[0].input == {"input": 'say "hi" \\ bye'}, final
assert kinds.count("input_json") >= 2, kinds
status, _, body = post(root, {"model": MODEL, "max_tokens": 100, "stream": True, "tools": [WEATHER], "messages": user("x")})
events = parse_sse(body)
start = events[2][1]
assert start["content_block"] == {"type": "tool_use", "id": start["content_block"]["id"], "name": "get_weather", "input": {}}, start
partials = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
assert len([p for p in partials if p]) >= 2 and json.loads("".join(partials)) == {"input": "x"}, partials
assert accumulate(events).content[0].input == {"input": "x"}

# ---- stop sequences and max_tokens --------------------------------------------------------
m = client.messages.create(model=MODEL, max_tokens=100, stop_sequences=["STOP", "there"], messages=user("hello there"))
assert m.stop_reason == "stop_sequence" and m.stop_sequence == "there", m
assert m.content[0].text == "fake reply to: hello ", m
m = client.messages.create(model=MODEL, max_tokens=2, messages=user("hello there"))
assert m.stop_reason == "max_tokens" and m.content[0].text == "fake reply" and m.usage.output_tokens == 2, m
with client.messages.stream(model=MODEL, max_tokens=100, stop_sequences=["there"], messages=user("hello there")) as s:
    final = s.get_final_message()
assert final.stop_reason == "stop_sequence" and final.stop_sequence == "there", final

# ---- the API version 2023-06-01 with x-api-key: sampling parameters are accepted ----------
status, headers, body = post(root, {"model": MODEL, "max_tokens": 10, "temperature": 0.5, "messages": user("old")}, version="2023-06-01")
assert status == 200 and strict(Message, json.loads(body)).content[0].text == "fake reply to: old", body

# ---- errors, as the SDK raises them ------------------------------------------------------
def expect(exc_type, call, status, kind):
    try:
        call()
    except anthropic.APIStatusError as err:
        assert type(err) is exc_type, f"expected {exc_type.__name__}, got {type(err).__name__}: {err}"
        assert err.status_code == status, err
        body = strict(ErrorResponse, err.body)
        assert body.error.type == kind, err.body
        assert err.response.headers["request-id"] == body.request_id, (dict(err.response.headers), err.body)
        return err
    raise AssertionError(f"expected {exc_type.__name__}")


def failing_client(name):
    return anthropic.Anthropic(base_url=failing[name], api_key="k", max_retries=0, timeout=10)


expect(anthropic.BadRequestError, lambda: client.messages.create(model=MODEL, max_tokens=10, messages=[]), 400, "invalid_request_error")
err = expect(
    anthropic.BadRequestError,
    lambda: client.messages.create(model=MODEL, max_tokens=10, messages=user("x"), extra_body={"temperature": 1.0}),
    400,
    "invalid_request_error",
)
assert err.body["error"]["message"] == "temperature: Extra inputs are not permitted", err.body
expect(
    anthropic.AuthenticationError,
    lambda: anthropic.Anthropic(base_url=root, api_key="wrong", max_retries=0).messages.create(model=MODEL, max_tokens=10, messages=user("x")),
    401,
    "authentication_error",
)
err = expect(anthropic.RateLimitError, lambda: failing_client("rate").messages.create(model=MODEL, max_tokens=10, messages=user("x")), 429, "rate_limit_error")
assert err.response.headers["retry-after"] == "7", dict(err.response.headers)
err = expect(anthropic.OverloadedError, lambda: failing_client("overloaded").messages.create(model=MODEL, max_tokens=10, messages=user("x")), 529, "overloaded_error")
assert isinstance(err, anthropic.InternalServerError)
expect(anthropic.InternalServerError, lambda: failing_client("server").messages.create(model=MODEL, max_tokens=10, messages=user("x")), 500, "api_error")
status, _, body = post(root, {"model": MODEL, "max_tokens": 10, "messages": user("x")}, version=None)
assert status == 400 and json.loads(body)["error"]["message"] == "anthropic-version: header is required", body

# A stream that fails midway: the SDK raises the error event's error.
got = []
try:
    with failing_client("streamerr").messages.stream(model=MODEL, max_tokens=10, messages=user("x")) as s:
        for e in s:
            got.append(e.type)
    raise AssertionError("the stream must fail")
except anthropic.APIStatusError as err:
    assert err.body["error"]["type"] == "overloaded_error", err.body
assert got[:2] == ["message_start", "content_block_start"], got
status, _, body = post(failing["streamerr"], {"model": MODEL, "max_tokens": 10, "stream": True, "messages": user("x")})
events = parse_sse(body)
assert [n for n, _ in events] == ["message_start", "ping", "content_block_start", "error"], events
strict_event(events[-1][1])

# ---- the fixtures are what the SDK expects ------------------------------------------------
def fixture(name):
    with open(os.path.join(FIXTURES, name), newline="") as f:
        return f.read()


m = strict(Message, json.loads(fixture("message_text.json")))
assert m.content[0].type == "text" and m.usage.cache_read_input_tokens == 2048, m
m = strict(Message, json.loads(fixture("message_tool_use.json")))
assert m.stop_reason == "tool_use" and m.content[1].input == {"from": "EUR", "to": "JPY"}, m
final = accumulate(parse_sse(fixture("stream_text.sse")))
assert final.content[0].text == "Tides rise and fall with the moon." and final.usage.output_tokens == 12, final
final = accumulate(parse_sse(fixture("stream_tool_use.sse")))
assert final.stop_reason == "tool_use" and final.content[1].input == {"city": "Lyon", "days": 3}, final
assert final.content[0].text == "I'll look up the forecast for Lyon.", final
events = parse_sse(fixture("error_overloaded.sse"))
assert events[-1][0] == "error" and strict_event(events[-1][1]).error.type == "overloaded_error", events
assert accumulate(events).content[0].text == "The first"

print(f"anthropic sdk check ({anthropic.__version__}): ok")
