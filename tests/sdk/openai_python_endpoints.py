"""Every endpoint through named routes, with the official OpenAI Python SDK's typed results.

Usage: python3 openai_python_endpoints.py BASE_URL GATEWAY_KEY
Routes expected (config in crates/server/tests/it/sdk.rs): route::chat (chat), route::structured
(chat; the upstream answers JSON), route::cut (chat; every stream is cut after a few events),
route::embed, route::speak, route::listen, route::draw.
The Rust side checks what reached the upstream (tools, response_format, uploads, ...).
"""
import asyncio
import base64
import os
import struct
import tempfile

import openai
from openai.types import CreateEmbeddingResponse, ImagesResponse
from openai.types.audio import Transcription, Translation
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response
from pydantic import BaseModel

from sdkcheck import check_wav, client, expect_error, start, tone_wav

base, key, _, done = start("openai-python endpoints")
c = client(base, key)
tmp = tempfile.mkdtemp(prefix="signalbox-sdk-")


def msgs(text):
    return [{"role": "user", "content": text}]


# ---- chat: plain -------------------------------------------------------------------------
r = c.chat.completions.create(model="route::chat", messages=msgs("plain chat"), temperature=0.2)
assert isinstance(r, ChatCompletion), type(r)
assert r.choices[0].message.content == "fake reply to: plain chat", r
assert r.choices[0].finish_reason == "stop", r
assert r.model == "gpt-4o", "the body's model is the upstream's own: " + r.model
assert r.usage.prompt_tokens > 0 and r.usage.total_tokens > 0, r.usage

# Non-ASCII text survives both directions byte for byte (the fake echoes the last user message).
uni = "naïve café ✓ — 東京 😀"
r = c.chat.completions.create(model="route::chat", messages=msgs(uni))
assert r.choices[0].message.content == f"fake reply to: {uni}", r.choices[0].message.content

# ---- chat: streaming with include_usage ----------------------------------------------------
stream = c.chat.completions.create(
    model="route::chat",
    messages=msgs("streamed chat"),
    stream=True,
    stream_options={"include_usage": True},
)
chunks = list(stream)
assert all(isinstance(ch, ChatCompletionChunk) for ch in chunks)
text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
assert text == "fake reply to: streamed chat", text
assert any(ch.choices and ch.choices[0].finish_reason == "stop" for ch in chunks), chunks
last = chunks[-1]
assert last.choices == [] and last.usage is not None and last.usage.total_tokens > 0, last
assert sum(1 for ch in chunks if ch.usage is not None) == 1, "exactly one usage chunk"

# A caller who says include_usage: false gets no usage chunk (the gateway asks upstream for one).
chunks = list(
    c.chat.completions.create(
        model="route::chat",
        messages=msgs("no usage please"),
        stream=True,
        stream_options={"include_usage": False},
    )
)
assert chunks and all(ch.choices and ch.usage is None for ch in chunks), chunks[-1]

# The SDK's chat stream() helper, and the async client.
with c.chat.completions.stream(model="route::chat", messages=msgs(f"helper {uni}")) as s:
    deltas = "".join(e.delta for e in s if e.type == "content.delta")
    final = s.get_final_completion()
assert deltas == final.choices[0].message.content == f"fake reply to: helper {uni}", (deltas, final)


async def async_checks():
    ac = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=20.0)
    async with ac:
        text = ""
        async for ch in await ac.chat.completions.create(
            model="route::chat", messages=msgs("async stream"), stream=True
        ):
            text += ch.choices[0].delta.content or "" if ch.choices else ""
        assert text == "fake reply to: async stream", text
        r = await ac.responses.create(model="route::chat", input="async responses")
        assert r.output_text == "fake reply to: async responses", r.output_text


asyncio.run(async_checks())

# ---- chat: tools / function-calling round trip ---------------------------------------------
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
]
first = msgs("What is the weather in Paris?")
r = c.chat.completions.create(model="route::chat", messages=first, tools=tools, tool_choice="auto")
# The fake model calls the first tool with the user's words as `input`.
assert r.choices[0].finish_reason == "tool_calls", r
assert r.choices[0].message.tool_calls[0].function.name == "get_weather", r
# The follow-up a client sends after running the tool the model asked for.
follow_up = first + [
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_weather_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_weather_1", "content": '{"temp_c": 21, "sky": "clear"}'},
]
r = c.chat.completions.create(model="route::chat", messages=follow_up, tools=tools)
assert isinstance(r, ChatCompletion), r
assert r.choices[0].message.content == 'fake reply to tool result: {"temp_c": 21, "sky": "clear"}', r

# ---- chat: response_format json_schema, raw and through the SDK's parse() helper -----------
schema = {
    "type": "json_schema",
    "json_schema": {
        "name": "weather",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "temp_c": {"type": "integer"}},
            "required": ["city", "temp_c"],
            "additionalProperties": False,
        },
    },
}
r = c.chat.completions.create(model="route::chat", messages=msgs("json please"), response_format=schema)
assert r.choices[0].message.content, r


class Weather(BaseModel):
    city: str
    temp_c: int


parsed = c.chat.completions.parse(
    model="route::structured", messages=msgs("weather as json"), response_format=Weather
)
w = parsed.choices[0].message.parsed
assert isinstance(w, Weather) and w.city == "Paris" and w.temp_c == 21, parsed

# ---- Responses API: plain, stream=True, and the responses.stream() helper ------------------
r = c.responses.create(model="route::chat", input="plain responses", instructions="Be brief.")
assert isinstance(r, Response), type(r)
assert r.status == "completed", r
assert r.output_text == "fake reply to: plain responses", r.output_text
assert r.model == "gpt-4o", r.model
assert r.usage is not None and r.usage.output_tokens > 0, r.usage

events = list(c.responses.create(model="route::chat", input="streamed responses", stream=True))
types = [e.type for e in events]
assert types[0] == "response.created", types
assert types[-1] == "response.completed", types
assert "response.output_text.delta" in types, types
deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
assert deltas == "fake reply to: streamed responses", deltas
assert events[-1].response.output_text == deltas
assert [e.sequence_number for e in events] == sorted(e.sequence_number for e in events)

with c.responses.stream(model="route::chat", input="helper responses") as s:
    seen = [e.type for e in s]
    final = s.get_final_response()
assert seen[-1] == "response.completed", seen
assert final.output_text == "fake reply to: helper responses", final.output_text

# ---- embeddings: float and base64 (and the SDK's own default) ------------------------------
e_float = c.embeddings.create(model="route::embed", input=["alpha", "beta"], encoding_format="float")
assert isinstance(e_float, CreateEmbeddingResponse)
assert len(e_float.data) == 2 and [d.index for d in e_float.data] == [0, 1], e_float
vec = e_float.data[0].embedding
assert isinstance(vec, list) and len(vec) > 0 and isinstance(vec[0], float), vec[:3]
assert e_float.model == "text-embedding-3-small", e_float.model

e_b64 = c.embeddings.create(model="route::embed", input=["alpha", "beta"], encoding_format="base64")
raw = e_b64.data[0].embedding
assert isinstance(raw, str), "an explicit base64 request returns the string as sent"
decoded = list(struct.unpack(f"<{len(base64.b64decode(raw)) // 4}f", base64.b64decode(raw)))
assert len(decoded) == len(vec) and all(abs(a - b) < 1e-6 for a, b in zip(decoded, vec)), "same vector"

e_default = c.embeddings.create(model="route::embed", input="alpha")
dv = e_default.data[0].embedding
assert isinstance(dv, list) and all(abs(a - b) < 1e-6 for a, b in zip(dv, vec)), "SDK default decodes"

# ---- speech: streamed to a file, a complete WAV --------------------------------------------
path = os.path.join(tmp, "speech.wav")
with c.audio.speech.with_streaming_response.create(
    model="route::speak", voice="alloy", input="Hello from the speech check", response_format="wav"
) as resp:
    assert resp.headers["content-type"] == "audio/wav", resp.headers
    assert resp.headers["x-signalbox-route"] == "route:speak", resp.headers
    resp.stream_to_file(path)
with open(path, "rb") as f:
    audio = f.read()
channels, rate, frames = check_wav(audio)
assert channels >= 1 and rate > 0 and frames > 0, (channels, rate, frames)

mp3 = c.audio.speech.create(model="route::speak", voice="nova", input="mp3 please")
assert len(mp3.content) > 0 and mp3.response.headers["content-type"] == "audio/mpeg"

# ---- transcription / translation: a real WAV upload ----------------------------------------
wav = tone_wav()
clip = os.path.join(tmp, "tone.wav")
with open(clip, "wb") as f:
    f.write(wav)
check_wav(wav)
with open(clip, "rb") as f:
    t = c.audio.transcriptions.create(model="route::listen", file=f, response_format="json")
assert isinstance(t, Transcription), type(t)
assert t.text == f"fake transcript of tone.wav ({len(wav)} bytes)", t.text
with open(clip, "rb") as f:
    txt = c.audio.transcriptions.create(
        model="route::listen", file=f, response_format="text", language="en"
    )
assert isinstance(txt, str) and txt.strip() == f"fake transcript of tone.wav ({len(wav)} bytes)", txt
tr = c.audio.translations.create(model="route::listen", file=("clip.wav", wav, "audio/wav"))
assert isinstance(tr, Translation) and tr.text == f"fake translation of clip.wav ({len(wav)} bytes)", tr

# ---- images: url and b64_json --------------------------------------------------------------
im = c.images.generate(model="route::draw", prompt="a red square", response_format="url", size="256x256")
assert isinstance(im, ImagesResponse) and im.data[0].url.startswith("https://"), im
im = c.images.generate(model="route::draw", prompt="a red square", response_format="b64_json", n=2)
assert len(im.data) == 2, im
png = base64.b64decode(im.data[0].b64_json)
assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]

# An upstream 400 (a caller mistake) is the answer: the SDK's BadRequestError with its param.
err = expect_error(
    openai.BadRequestError,
    lambda: c.images.generate(model="route::draw", prompt="a red square", size="huge"),
    code="bad_request",
    status=400,
)
assert err.param == "size" and "huge" in err.message, err.body

# ---- a stream cut after its first bytes is an error, never a complete answer ---------------
def expect_interrupted(consume):
    got = []
    try:
        consume(got)
    except openai.APIError as err:
        assert err.code == "stream_interrupted", (err.code, err.body)
        assert got, "events before the cut reach the caller first"
        return got
    raise AssertionError(f"a cut stream ended cleanly after {len(got)} events")


expect_interrupted(
    lambda got: got.extend(
        c.chat.completions.create(model="route::cut", messages=msgs("cut chat"), stream=True)
    )
)
expect_interrupted(
    lambda got: got.extend(c.responses.create(model="route::cut", input="cut responses", stream=True))
)


def helper(got):
    with c.responses.stream(model="route::cut", input="cut helper") as s:
        got.extend(s)
        s.get_final_response()


expect_interrupted(helper)

# Speech cut mid-body (the gateway aborts the response): an error, never a short file taken for a
# whole one. Read whole by the SDK it is APIConnectionError; streamed, the HTTP library's own error.
try:
    data = c.audio.speech.create(
        model="route::cut-speak", voice="alloy", input="cut speech " * 20, response_format="wav"
    ).content
    raise AssertionError(f"a cut speech body ended cleanly with {len(data)} bytes")
except openai.APIConnectionError:
    pass
try:
    with c.audio.speech.with_streaming_response.create(
        model="route::cut-speak", voice="alloy", input="cut speech " * 20, response_format="wav"
    ) as resp:
        assert resp.status_code == 200
        data = resp.read()
    raise AssertionError(f"a cut speech stream ended cleanly with {len(data)} bytes")
except AssertionError:
    raise
except Exception as err:  # the HTTP library's (httpx) RemoteProtocolError
    assert type(err).__name__ == "RemoteProtocolError", repr(err)

# ---- models list ---------------------------------------------------------------------------
models = {m.id: m for m in c.models.list()}
for name in ["chat", "structured", "embed", "speak", "listen", "draw", "cut", "flaky"]:
    assert f"route::{name}" in models, sorted(models)
assert (models["route::embed"].model_extra or {}).get("endpoint") == "embeddings", models["route::embed"]
one = c.models.retrieve("route::speak")
assert one.id == "route::speak", one

done()
