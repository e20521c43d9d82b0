"""Routes across providers, driven by the OpenAI Python SDK: callers speak OpenAI whichever
provider serves them.

Usage: python3 openai_python_cross.py BASE_URL GATEWAY_KEY

route::chain is a fallback chain from an OpenAI target (its upstream always answers 503) to an
Anthropic target; route::exp is an A/B experiment between an Anthropic and a Gemini variant,
sticky by user. Run by crates/server/tests/it/providers.rs, which checks what each upstream saw.
"""
import json

from sdkcheck import client, start

base, key, _, done = start("openai-python cross-provider")
c = client(base, key)
hello = [{"role": "user", "content": "Say hello"}]
tools = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather now",
        "parameters": {"type": "object", "properties": {"input": {"type": "string"}}},
    },
}]

# Fallback: the OpenAI target is down, Anthropic answers; the caller sees one OpenAI answer.
raw = c.chat.completions.with_raw_response.create(model="route::chain", messages=hello)
assert raw.headers["x-signalbox-provider"] == "claude", dict(raw.headers)
assert raw.headers["x-signalbox-attempts"] == "2", dict(raw.headers)
r = raw.parse()
assert r.choices[0].message.content == "fake reply to: Say hello", r
assert r.choices[0].finish_reason == "stop"
assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens == 5, r.usage

# The same, streamed with usage; and a tool call reassembled by the SDK's stream helper.
text, usage = "", None
for chunk in c.chat.completions.create(
    model="route::chain", messages=hello, stream=True, stream_options={"include_usage": True}
):
    if chunk.usage:
        usage = chunk.usage
    for ch in chunk.choices:
        text += ch.delta.content or ""
assert text == "fake reply to: Say hello", text
assert usage and usage.completion_tokens == 5, usage

weather = [{"role": "user", "content": "Weather in Oslo?"}]
with c.chat.completions.stream(model="route::chain", messages=weather, tools=tools) as s:
    final = s.get_final_completion()
call = final.choices[0].message.tool_calls[0]
assert final.choices[0].finish_reason == "tool_calls", final
assert call.function.name == "get_weather"
assert json.loads(call.function.arguments) == {"input": "Weather in Oslo?"}
# The tool result goes back through the chain to Anthropic.
followup = weather + [
    {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
    {"role": "tool", "tool_call_id": call.id, "content": "-3C"},
]
r = c.chat.completions.create(model="route::chain", messages=followup, tools=tools)
assert r.choices[0].message.content == "fake reply to tool result: -3C", r

# Experiment: users are split between Anthropic and Gemini, each keeps its variant.
seen = {}
for i in range(24):
    user = f"user-{i}"
    raw = c.chat.completions.with_raw_response.create(
        model="route::exp", messages=hello, extra_headers={"x-signalbox-user-id": user}
    )
    variant = raw.headers["x-signalbox-variant"]
    provider = raw.headers["x-signalbox-provider"]
    assert {"claude": "anthropic", "gem": "gemini"}[provider] == variant, (provider, variant)
    assert raw.parse().choices[0].message.content == "fake reply to: Say hello"
    seen[user] = variant
    # Sticky: a streamed call by the same user lands on the same variant.
    with c.chat.completions.with_streaming_response.create(
        model="route::exp", messages=hello, stream=True,
        extra_headers={"x-signalbox-user-id": user},
    ) as sr:
        assert sr.headers["x-signalbox-variant"] == variant
        streamed = "".join(
            ch.choices[0].delta.content or "" for ch in sr.parse() if ch.choices
        )
    assert streamed == "fake reply to: Say hello", streamed
assert set(seen.values()) == {"anthropic", "gemini"}, seen
print(f"variants: {sorted(seen.values()).count('anthropic')} anthropic, "
      f"{sorted(seen.values()).count('gemini')} gemini")
done()
