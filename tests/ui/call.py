"""Call a Signalbox route with the official OpenAI Python SDK, for the dashboard test.

usage: call.py BASE_URL KEY MODEL [COUNT] [PROMPT]
Prints one JSON line: a list with, per call, the status and the gateway's response headers
(or, for a refused call, the status and error code).
"""

import json
import sys

from openai import APIStatusError, OpenAI


def main() -> None:
    base, key, model = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    prompt = sys.argv[5] if len(sys.argv) > 5 else "hello"
    client = OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=30)
    out = []
    for i in range(count):
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=model,
                messages=[{"role": "user", "content": f"{prompt} {i}"}],
                extra_headers={"x-signalbox-user-id": f"user-{i}"},
            )
            completion = raw.parse()
            h = raw.headers
            out.append(
                {
                    "status": raw.status_code,
                    "id": h.get("x-request-id"),
                    "route": h.get("x-signalbox-route"),
                    "provider": h.get("x-signalbox-provider"),
                    "model": h.get("x-signalbox-model"),
                    "attempts": h.get("x-signalbox-attempts"),
                    "variant": h.get("x-signalbox-variant"),
                    "text": completion.choices[0].message.content,
                }
            )
        except APIStatusError as e:
            out.append(
                {
                    "status": e.status_code,
                    "code": e.response.headers.get("x-signalbox-error-code"),
                }
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
