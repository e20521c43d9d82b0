"""Helpers shared by the OpenAI Python SDK scripts in this folder.

Each script is run by crates/server/tests/it/sdk.rs as `python3 SCRIPT BASE_URL GATEWAY_KEY [...]`
against the real `signalbox` binary. A failed check raises (non-zero exit, with a traceback).
"""
import io
import math
import os
import struct
import sys
import time
import wave

import openai


def pinned_openai():
    """The version tests/sdk/requirements.txt pins (what ./scripts/test.sh installs)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.txt")) as f:
        for line in f:
            if line.startswith("openai=="):
                return line.strip().split("==", 1)[1]
    raise SystemExit("tests/sdk/requirements.txt does not pin openai")


def start(name):
    """Parse argv, check the SDK version, and return (base_url, gateway_key, extra args, done)."""
    if len(sys.argv) < 3:
        sys.exit(f"usage: python3 {sys.argv[0]} BASE_URL GATEWAY_KEY [...]")
    pin = pinned_openai()
    if openai.__version__ != pin:
        sys.exit(
            f"openai-python {openai.__version__} is installed, the suite pins {pin}: "
            "run ./scripts/test.sh (the README test command), which installs it"
        )
    print(f"{name}: openai-python {openai.__version__}", flush=True)
    started = time.monotonic()

    def done():
        print(f"{name}: all checks passed in {time.monotonic() - started:.2f}s", flush=True)

    return sys.argv[1], sys.argv[2], sys.argv[3:], done


def client(base, api_key, **kw):
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", 20.0)
    return openai.OpenAI(base_url=base + "/v1", api_key=api_key, **kw)


def expect_error(exc_type, call, code=None, status=None, contains=None):
    """Run `call`, which must raise exactly `exc_type` (an openai.APIStatusError subclass)."""
    try:
        got = call()
    except openai.APIStatusError as err:
        assert type(err) is exc_type, f"expected {exc_type.__name__}, got {type(err).__name__}: {err}"
        if code is not None:
            assert err.code == code, (err.code, err.body)
        if status is not None:
            assert err.status_code == status, (err.status_code, err.body)
        if contains is not None:
            assert contains in err.message, (contains, err.message)
        assert err.response.headers.get("x-signalbox-error-code") == err.code, dict(err.response.headers)
        return err
    raise AssertionError(f"expected {exc_type.__name__}, the call returned {got!r}")


def tone_wav(seconds=0.25, rate=16000, freq=440.0):
    """A real PCM WAV file (16-bit mono sine), made with the standard `wave` module."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        n = int(seconds * rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate)))
                for i in range(n)
            )
        )
    return buf.getvalue()


def check_wav(data):
    """The bytes are one complete, readable WAV file; returns (channels, rate, frames)."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", data[:16]
    declared = struct.unpack("<I", data[4:8])[0]
    assert declared + 8 == len(data), f"RIFF size {declared} + 8 != {len(data)} bytes: truncated?"
    with wave.open(io.BytesIO(data), "rb") as w:
        return w.getnchannels(), w.getframerate(), w.getnframes()
