"""Checks the fake's wire formats with the official `openai` Python SDK.

Run by tests/endpoints.rs as
`python3 openai_sdk_check.py BASE_URL API_KEY ERROR_BASE_URL` against a running
fake (which reports 7 cached prompt tokens), and a second one (no key) whose
streams end with an error event. The SDK builds its models leniently, so every raw
body is also validated strictly with pydantic's `model_validate`.
"""

import json
import sys
import urllib.request
import warnings

from openai import OpenAI
from openai.types import ImagesResponse
from openai.types.audio import Transcription, TranscriptionVerbose
from openai.types.chat import ChatCompletion
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

base, key, error_base = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(api_key=key, base_url=base, max_retries=0, timeout=10)
warnings.filterwarnings("ignore", category=DeprecationWarning)  # audio.translations
adapter = TypeAdapter(ResponseStreamEvent)


def strict(model, raw):
    return model.model_validate(json.loads(raw.text))


def raw_events(base_url, body, key=None):
    """POSTs a streamed /responses request; returns its events, strictly validated."""
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(
        base_url + "/responses", data=json.dumps(body).encode(), headers=headers
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    assert "[DONE]" not in text
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), block
        payload = json.loads(data[len("data: "):])
        assert payload["type"] == name[len("event: "):], block
        events.append(adapter.validate_python(payload))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events


# Responses API, non-streaming: string input, then a list of message items.
raw = client.responses.with_raw_response.create(model="gpt-4o-mini", input="hello sdk")
resp = strict(Response, raw)
assert resp.status == "completed", resp
assert resp.output_text == "fake reply to: hello sdk", resp.output_text
assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
assert raw.parse().id == resp.id and resp.id.startswith("resp_")

raw = client.responses.with_raw_response.create(
    model="gpt-4o-mini",
    instructions="be brief",
    input=[
        {"role": "developer", "content": "no markdown"},
        {"role": "user", "content": [{"type": "input_text", "text": "hi there"}]},
    ],
    temperature=0.5,
    metadata={"k": "v"},
)
resp = strict(Response, raw)
assert resp.output_text == "fake reply to: hi there", resp.output_text
assert resp.instructions == "be brief" and resp.temperature == 0.5
assert resp.metadata == {"k": "v"}

# Responses API, streamed: every raw event validates as a ResponseStreamEvent,
# named like its `type`, numbered in order.
events = raw_events(base, {"model": "gpt-4o-mini", "input": "stream me", "stream": True}, key)
kinds = [e.type for e in events]
assert kinds[:4] == [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
], kinds
assert kinds[-4:] == [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
], kinds
deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
assert len(deltas) > 1 and "".join(deltas) == "fake reply to: stream me", deltas
assert events[-1].response.usage.output_tokens == 5

# The SDK's own stream helper accumulates the events into the final response.
with client.responses.stream(model="gpt-4o-mini", input="stream me") as stream:
    text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    final = stream.get_final_response()
assert text == final.output_text == "fake reply to: stream me", (text, final.output_text)

# Audio and images.
wav = client.audio.speech.create(model="tts-1", voice="alloy", input="hi", response_format="wav")
assert wav.content[:4] == b"RIFF" and wav.content[8:12] == b"WAVE"

raw = client.audio.transcriptions.with_raw_response.create(
    file=("clip.wav", wav.content, "audio/wav"), model="whisper-1"
)
t = strict(Transcription, raw)
assert t.text == f"fake transcript of clip.wav ({len(wav.content)} bytes)", t.text

raw = client.audio.transcriptions.with_raw_response.create(
    file=("clip.wav", wav.content),
    model="whisper-1",
    response_format="verbose_json",
    timestamp_granularities=["word", "segment"],
)
v = strict(TranscriptionVerbose, raw)
assert v.words and v.segments and abs(v.duration - (len(wav.content) - 44) / 48000) < 0.01, v

srt = client.audio.translations.create(file=("clip.mp3", b"\xff\xfb" * 100), model="whisper-1", response_format="srt")
assert srt.startswith("1\n00:00:00,000 --> "), srt

raw = client.images.with_raw_response.generate(model="gpt-image-1", prompt="a cat", n=2)
img = strict(ImagesResponse, raw)
assert len(img.data) == 2 and img.usage.total_tokens > 0 and img.data[0].b64_json

# Chat completions: tool calls, plain and streamed, and the tool result round trip.
tools = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
ask = [{"role": "user", "content": "weather in Oslo?"}]
raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=ask, tools=tools)
chat = strict(ChatCompletion, raw)
choice = chat.choices[0]
assert choice.finish_reason == "tool_calls" and choice.message.content is None, choice
(call,) = choice.message.tool_calls
assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather", call
assert json.loads(call.function.arguments) == {"input": "weather in Oslo?"}, call
with client.chat.completions.stream(model="gpt-4o", messages=ask, tools=tools) as stream:
    final = stream.get_final_completion()
(streamed,) = final.choices[0].message.tool_calls
assert final.choices[0].finish_reason == "tool_calls", final
assert json.loads(streamed.function.arguments) == {"input": "weather in Oslo?"}, streamed
forced = client.chat.completions.create(
    model="gpt-4o", messages=ask, tools=tools, tool_choice={"type": "function", "function": {"name": "get_time"}}
)
assert forced.choices[0].message.tool_calls[0].function.name == "get_time", forced
history = ask + [
    choice.message.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
]
answer = client.chat.completions.create(model="gpt-4o", messages=history, tools=tools)
assert answer.choices[0].message.content == "fake reply to tool result: sunny, 21C", answer
assert answer.choices[0].finish_reason == "stop", answer

# Stop sequences, max tokens, cached tokens.
hi = [{"role": "user", "content": "hello there"}]
r = client.chat.completions.create(model="gpt-4o", messages=hi, stop=["there"])
assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("fake reply to: hello ", "stop"), r
r = client.chat.completions.create(model="gpt-4o", messages=hi, max_completion_tokens=2)
assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("fake reply", "length"), r
assert r.usage.prompt_tokens == 3 + 7 and r.usage.prompt_tokens_details.cached_tokens == 7, r.usage
r = client.responses.create(model="gpt-4o", input="hello there")
assert r.usage.input_tokens == 3 + 7 and r.usage.input_tokens_details.cached_tokens == 7, r.usage

# A stream that fails midway: three events, then a valid `error` event.
events = raw_events(error_base, {"model": "gpt-4o-mini", "input": "x", "stream": True})
assert [e.type for e in events] == [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "error",
], events
assert events[-1].code == "server_error" and events[-1].param is None

print("openai sdk check: ok")
