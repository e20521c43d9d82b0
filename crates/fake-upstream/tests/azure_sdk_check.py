"""The official OpenAI SDK's Azure client parses what the fake serves at Azure paths.

Usage: python3 azure_sdk_check.py ENDPOINT KEY   (ENDPOINT without /v1, e.g. http://127.0.0.1:PORT)
"""
import sys

import openai

endpoint, key = sys.argv[1], sys.argv[2]
client = openai.AzureOpenAI(azure_endpoint=endpoint, api_key=key, api_version="2024-10-21", max_retries=0)
msgs = [{"role": "user", "content": "hello azure"}]

r = client.chat.completions.create(model="prod-gpt-4o", messages=msgs)
assert r.choices[0].message.content and r.usage.total_tokens > 0, r

chunks = list(
    client.chat.completions.create(
        model="prod-gpt-4o", messages=msgs, stream=True, stream_options={"include_usage": True}
    )
)
assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks
assert chunks[-1].usage is not None, chunks[-1]

e = client.embeddings.create(model="prod-embed", input=["a", "b"])
assert len(e.data) == 2 and e.data[0].embedding, e

try:
    openai.AzureOpenAI(azure_endpoint=endpoint, api_key="wrong", api_version="2024-10-21", max_retries=0).chat.completions.create(
        model="prod-gpt-4o", messages=msgs
    )
    raise AssertionError("expected AuthenticationError")
except openai.AuthenticationError:
    pass

print("azure sdk check: ok")
