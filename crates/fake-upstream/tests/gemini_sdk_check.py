"""Checks the fake's Gemini API with the official `google-genai` Python SDK.

Run by tests/endpoints.rs as
`python3 gemini_sdk_check.py ROOT_URL API_KEY NAME=ROOT_URL...` against running
fakes (ROOT_URL without /v1beta: the SDK is given api_version="v1beta"). The main
fake requires API_KEY, lists the model gemini-2.5-flash and reports 7 cached
tokens; the named ones always fail: `rate` (429, retry-after 7), `unavailable`
(503), `server` (500) and `streamerr` (streams end with an error after 2 events).

The SDK's types forbid unknown fields, so `model_validate_json` on every raw body
and event is a strict check. The fixtures in ../fixtures/gemini are validated the
same way.
"""

import json
import os
import sys

import google.genai
from google.genai import errors, types

import rawhttp

root, key = sys.argv[1], sys.argv[2]
failing = dict(arg.split("=", 1) for arg in sys.argv[3:])
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "gemini")
MODEL = "gemini-2.5-flash"
Response = types.GenerateContentResponse


def make_client(base, api_key):
    options = types.HttpOptions(base_url=base, api_version="v1beta", timeout=10_000)
    return google.genai.Client(api_key=api_key, http_options=options)


client = make_client(root, key)
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather in a city",
    parameters_json_schema={"type": "object", "properties": {"input": {"type": "string"}}},
)
CLOCK = types.FunctionDeclaration(name="get_time", description="Time now")
TOOLS = [types.Tool(function_declarations=[WEATHER, CLOCK])]


def post(base, method, body, query="", headers=None):
    """A raw POST to models/MODEL:METHOD: (status, headers, text)."""
    url = f"{base}/v1beta/models/{MODEL}:{method}{query}"
    return rawhttp.post(url, body, {"x-goog-api-key": key} if headers is None else headers)


def sse_events(text):
    """The data of each SSE event, which Google separates with CRLF CRLF."""
    assert text.endswith("\r\n\r\n"), repr(text[-20:])
    out = []
    for block in text.split("\r\n\r\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, repr(block)
        out.append(block[len("data: "):])
    return out


def text_of(r):
    return "".join(p.text or "" for c in r.candidates or [] for p in c.content.parts or [] if c.content)


def user(text):
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


# ---- plain request, strictly validated --------------------------------------------------
status, headers, body = post(root, "generateContent", user("hello there"))
assert status == 200 and headers["content-type"] == "application/json; charset=UTF-8", (status, dict(headers))
r = Response.model_validate_json(body)
assert text_of(r) == "fake reply to: hello there" and r.model_version == MODEL and r.response_id, r
assert r.candidates[0].finish_reason == types.FinishReason.STOP and r.candidates[0].index == 0, r
# "hello there": 3 uncached prompt tokens + 7 cached; the reply has 5 words.
u = r.usage_metadata
assert (u.prompt_token_count, u.cached_content_token_count) == (10, 7), u
assert (u.candidates_token_count, u.total_token_count) == (5, 15), u
assert u.prompt_tokens_details[0].token_count == 10, u

r = client.models.generate_content(model=MODEL, contents="hello there")
assert r.text == "fake reply to: hello there" and r.usage_metadata.total_token_count == 15, r

# ---- system instruction, multi-turn -------------------------------------------------------
r = client.models.generate_content(
    model=MODEL, contents="hi", config=types.GenerateContentConfig(system_instruction="be brief and kind")
)
assert r.text == "fake reply to: hi" and r.usage_metadata.prompt_token_count == 5 + 7, r.usage_metadata
r = client.models.generate_content(
    model=MODEL,
    contents=[
        types.Content(role="user", parts=[types.Part(text="first question")]),
        types.Content(role="model", parts=[types.Part(text="first answer")]),
        types.Content(role="user", parts=[types.Part(text="second"), types.Part(text="question")]),
    ],
)
assert r.text == "fake reply to: second question", r.text
# snake_case field names work too, as they do with Google.
status, _, body = post(root, "generateContent", {"system_instruction": {"parts": [{"text": "x"}]}, **user("snake")})
assert status == 200 and text_of(Response.model_validate_json(body)) == "fake reply to: snake", body

# ---- function call, then the function response round trip ---------------------------------
config = types.GenerateContentConfig(tools=TOOLS, automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
r = client.models.generate_content(model=MODEL, contents="weather in Oslo?", config=config)
(call,) = r.function_calls
assert call.name == "get_weather" and call.args == {"input": "weather in Oslo?"}, r
assert r.candidates[0].finish_reason == types.FinishReason.STOP, r
history = [
    types.Content(role="user", parts=[types.Part(text="weather in Oslo?")]),
    r.candidates[0].content,
    types.Content(role="user", parts=[types.Part.from_function_response(name="get_weather", response={"result": "sunny, 21C"})]),
]
r = client.models.generate_content(model=MODEL, contents=history, config=config)
assert r.text == "fake reply to tool result: sunny, 21C" and not r.function_calls, r
forced = types.GenerateContentConfig(
    tools=TOOLS,
    tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY", allowed_function_names=["get_time"])),
)
r = client.models.generate_content(model=MODEL, contents="now?", config=forced)
assert r.function_calls[0].name == "get_time" and r.function_calls[0].args == {"input": "now?"}, r
none = types.GenerateContentConfig(
    tools=TOOLS, tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="NONE"))
)
r = client.models.generate_content(model=MODEL, contents="now?", config=none)
assert r.text == "fake reply to: now?", r


# The SDK's automatic function calling runs a Python function and sends its result back.
def get_weather(input: str) -> str:
    """Current weather in a city."""
    return "rainy"


r = client.models.generate_content(model=MODEL, contents="and Bergen?", config=types.GenerateContentConfig(tools=[get_weather]))
assert r.text == "fake reply to tool result: rainy", r.text

# ---- streaming text ----------------------------------------------------------------------
chunks = list(client.models.generate_content_stream(model=MODEL, contents="stream me please"))
assert "".join(c.text or "" for c in chunks) == "fake reply to: stream me please", chunks
assert len(chunks) > 2 and all(c.candidates[0].finish_reason is None for c in chunks[:-1]), chunks
last = chunks[-1]
assert last.candidates[0].finish_reason == types.FinishReason.STOP, last
assert last.usage_metadata.candidates_token_count == 6 and last.usage_metadata.total_token_count == 4 + 7 + 6, last

status, headers, body = post(root, "streamGenerateContent", user("abc def"), query="?alt=sse")
assert status == 200 and headers["content-type"] == "text/event-stream", dict(headers)
events = [Response.model_validate_json(e) for e in sse_events(body)]
assert "".join(text_of(e) for e in events) == "fake reply to: abc def", events
assert events[-1].candidates[0].finish_reason == types.FinishReason.STOP, events[-1]
assert len({e.response_id for e in events}) == 1, events

# Without alt=sse: one JSON array, streamed.
status, headers, body = post(root, "streamGenerateContent", user("abc def"))
assert status == 200 and headers["content-type"].startswith("application/json"), dict(headers)
array = json.loads(body)
assert isinstance(array, list) and len(array) == len(events), body
elements = [Response.model_validate(e) for e in array]
assert "".join(text_of(e) for e in elements) == "fake reply to: abc def", elements

# ---- streaming function call: one chunk with the whole call -------------------------------
chunks = list(client.models.generate_content_stream(model=MODEL, contents="weather?", config=config))
assert len(chunks) == 1 and chunks[0].function_calls[0].args == {"input": "weather?"}, chunks
status, _, body = post(
    root, "streamGenerateContent", {**user("x"), "tools": [{"functionDeclarations": [{"name": "f"}]}]}, query="?alt=sse"
)
(event,) = [Response.model_validate_json(e) for e in sse_events(body)]
assert event.candidates[0].content.parts[0].function_call.name == "f", event

# ---- stop sequences and max output tokens -------------------------------------------------
r = client.models.generate_content(
    model=MODEL, contents="hello there", config=types.GenerateContentConfig(stop_sequences=["STOP", "there"])
)
assert r.text == "fake reply to: hello " and r.candidates[0].finish_reason == types.FinishReason.STOP, r
r = client.models.generate_content(model=MODEL, contents="hello there", config=types.GenerateContentConfig(max_output_tokens=2))
assert r.text == "fake reply" and r.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS, r
chunks = list(
    client.models.generate_content_stream(model=MODEL, contents="hello there", config=types.GenerateContentConfig(max_output_tokens=3))
)
assert "".join(c.text or "" for c in chunks) == "fake reply to:", chunks
assert chunks[-1].candidates[0].finish_reason == types.FinishReason.MAX_TOKENS, chunks[-1]

# ---- safety ------------------------------------------------------------------------------
r = client.models.generate_content(model=MODEL, contents="please BLOCK_PROMPT now")
assert r.candidates is None and r.text is None, r
assert r.prompt_feedback.block_reason == types.BlockedReason.SAFETY, r
assert any(s.blocked for s in r.prompt_feedback.safety_ratings), r
chunks = list(client.models.generate_content_stream(model=MODEL, contents="please BLOCK_PROMPT now"))
assert len(chunks) == 1 and chunks[0].prompt_feedback.block_reason == types.BlockedReason.SAFETY, chunks

r = client.models.generate_content(model=MODEL, contents="please BLOCK_ANSWER now")
(candidate,) = r.candidates
assert candidate.finish_reason == types.FinishReason.SAFETY, r
assert any(s.blocked and s.probability == types.HarmProbability.HIGH for s in candidate.safety_ratings), r
assert candidate.content.parts[0].text, r
chunks = list(client.models.generate_content_stream(model=MODEL, contents="please BLOCK_ANSWER now"))
assert chunks[-1].candidates[0].finish_reason == types.FinishReason.SAFETY and chunks[-1].candidates[0].safety_ratings, chunks
assert "".join(c.text or "" for c in chunks) == text_of(r), chunks
status, _, body = post(root, "generateContent", user("BLOCK_ANSWER"))
Response.model_validate_json(body)


# ---- errors, as the SDK raises them ------------------------------------------------------
def expect(exc_type, call, code, status):
    try:
        call()
    except errors.APIError as err:
        assert type(err) is exc_type, f"expected {exc_type.__name__}, got {type(err).__name__}: {err}"
        assert (err.code, err.status) == (code, status), err
        assert set(err.details["error"]) <= {"code", "message", "status", "details"}, err.details
        return err
    raise AssertionError(f"expected {exc_type.__name__}")


def generate(c):
    return lambda: c.models.generate_content(model=MODEL, contents="x")


err = expect(errors.ClientError, generate(make_client(failing["rate"], "k")), 429, "RESOURCE_EXHAUSTED")
assert err.details["error"]["details"][0]["retryDelay"] == "7s", err.details
assert err.response.headers["retry-after"] == "7"
expect(errors.ServerError, generate(make_client(failing["unavailable"], "k")), 503, "UNAVAILABLE")
expect(errors.ServerError, generate(make_client(failing["server"], "k")), 500, "INTERNAL")
err = expect(errors.ClientError, generate(make_client(root, "wrong-key")), 400, "INVALID_ARGUMENT")
assert err.details["error"]["details"][0]["reason"] == "API_KEY_INVALID", err.details
status, _, body = post(root, "generateContent", user("x"), headers={})
assert status == 403 and json.loads(body)["error"]["status"] == "PERMISSION_DENIED", body
status, _, body = post(root, "generateContent", user("by query"), query=f"?key={key}", headers={})
assert status == 200 and text_of(Response.model_validate_json(body)) == "fake reply to: by query", body
status, _, body = post(root, "generateContent", {"contents": []})
assert status == 400 and json.loads(body)["error"]["status"] == "INVALID_ARGUMENT", body
status, _, body = post(root, "generateContent", {**user("x"), "max_tokens": 5})
assert status == 400 and 'Unknown name "max_tokens"' in json.loads(body)["error"]["message"], body

# A stream that fails midway: two chunks, then the SDK raises the error event.
got = []
streamerr = make_client(failing["streamerr"], "k")  # a client dropped mid-stream closes its connections
try:
    for c in streamerr.models.generate_content_stream(model=MODEL, contents="a b c d e f"):
        got.append(c.text)
    raise AssertionError("the stream must fail")
except errors.ServerError as err:
    assert (err.code, err.status) == (500, "INTERNAL"), err
assert len(got) == 2, got

# ---- models and token counting ------------------------------------------------------------
models = list(client.models.list())
assert [m.name for m in models] == [f"models/{MODEL}"] and "generateContent" in models[0].supported_actions, models
assert client.models.get(model=MODEL).name == f"models/{MODEL}"
assert client.models.count_tokens(model=MODEL, contents="hello there").total_tokens == 3

# ---- the fixtures are what the SDK expects ------------------------------------------------
def fixture(name):
    with open(os.path.join(FIXTURES, name), newline="") as f:
        return f.read()


r = Response.model_validate_json(fixture("response_text.json"))
assert text_of(r) and r.usage_metadata.cached_content_token_count == 1024, r
r = Response.model_validate_json(fixture("response_function_call.json"))
assert r.candidates[0].content.parts[0].function_call.args == {"from": "EUR", "to": "JPY"}, r
assert r.candidates[0].content.parts[0].thought_signature, r
r = Response.model_validate_json(fixture("prompt_blocked.json"))
assert r.candidates is None and r.prompt_feedback.block_reason == types.BlockedReason.SAFETY, r
events = [Response.model_validate_json(e) for e in sse_events(fixture("stream_text.sse"))]
assert "".join(text_of(e) for e in events) == "Rain falls softly on the old tin roof.", events
assert events[-1].candidates[0].finish_reason == types.FinishReason.STOP, events[-1]
u = events[-1].usage_metadata
assert u.total_token_count == u.prompt_token_count + u.candidates_token_count + u.thoughts_token_count, u
(event,) = [Response.model_validate_json(e) for e in sse_events(fixture("stream_function_call.sse"))]
assert event.candidates[0].content.parts[0].function_call.name == "get_forecast", event

print(f"gemini sdk check ({google.genai.__version__}): ok")
