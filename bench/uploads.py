#!/usr/bin/env python3
"""Memory of large bodies and speech time to first byte, Signalbox vs the fake upstream directly.

    python3 bench/uploads.py [--skip-build]

For each measurement a fresh gateway is started, so its peak RSS (VmHWM) covers exactly one
request: a 5 MB and a 30 MB transcription upload (spilled past 1 MiB, so both should raise the peak
by about the same), and a 4 MB chat request. Speech time to first byte is curl's
time_starttransfer, median of 50, through the gateway and straight to the fake.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
FAKE, GW = 19500, 19510


def wait_up(url):
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def hwm_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def gateway(cfg):
    p = subprocess.Popen(["taskset", "-c", "0", f"{REL}/signalbox", "serve", "--config", cfg],
                         env=dict(os.environ, UP_KEY="k", SIGNALBOX_LOG="warn"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{GW}/health")
    time.sleep(0.3)
    return p


def curl(*args):
    return subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_starttransfer}", *args],
                          check=True, capture_output=True, text=True).stdout.split()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-build", action="store_true")
    a = ap.parse_args()
    if not a.skip_build:
        subprocess.run(["cargo", "build", "--release", "-p", "signalbox", "-p", "fake-upstream"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp()
    cfg = os.path.join(tmp, "gw.toml")
    with open(cfg, "w") as f:
        f.write(f"""[server]
auth = "off"
port = {GW}
drain_delay_ms = 0
[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:{FAKE}/v1"
models = ["gpt-4o", "whisper-1", "tts-1"]
credential = "env::UP_KEY"
[models.whisper-1]
endpoint = "audio_transcription"
[models.tts-1]
endpoint = "audio_speech"
[targets.chat]
provider = "up"
model = "gpt-4o"
[targets.stt]
provider = "up"
model = "whisper-1"
[targets.tts]
provider = "up"
model = "tts-1"
[routes.chat]
targets = ["chat"]
[routes.listen]
endpoint = "audio_transcription"
targets = ["stt"]
[routes.speak]
endpoint = "audio_speech"
targets = ["tts"]
""")
    files = {}
    for mb in (5, 30):
        path = os.path.join(tmp, f"clip{mb}.wav")
        with open(path, "wb") as f:
            f.write(os.urandom(mb * 1_000_000))
        files[mb] = path
    chat = os.path.join(tmp, "chat.json")
    with open(chat, "w") as f:
        f.write('{"model":"route::chat","messages":[{"role":"user","content":"%s"}]}' % ("x" * 4_000_000))
    fake = subprocess.Popen(["taskset", "-c", "1", f"{REL}/fake-upstream", "--port", str(FAKE)], stdout=subprocess.DEVNULL)
    rows = []
    try:
        wait_up(f"http://127.0.0.1:{FAKE}/v1/models")
        for name, args in [
            ("transcription upload, 5 MB", ["-F", "model=route::listen", "-F", f"file=@{files[5]}",
                                            f"http://127.0.0.1:{GW}/v1/audio/transcriptions"]),
            ("transcription upload, 30 MB", ["-F", "model=route::listen", "-F", f"file=@{files[30]}",
                                             f"http://127.0.0.1:{GW}/v1/audio/transcriptions"]),
            ("chat request, 4 MB", ["-H", "content-type: application/json", "--data-binary", f"@{chat}",
                                    f"http://127.0.0.1:{GW}/v1/chat/completions"]),
        ]:
            g = gateway(cfg)
            before = hwm_mb(g.pid)
            code, _ = curl(*args)
            after = hwm_mb(g.pid)
            g.terminate()
            g.wait(timeout=10)
            rows.append((name, code, before, after))
        g = gateway(cfg)
        body = '{"model":"%s","input":"Hello there, this is a test of speech.","voice":"alloy","response_format":"wav"}'
        via = [float(curl("-H", "content-type: application/json", "-d", body % "route::speak",
                          f"http://127.0.0.1:{GW}/v1/audio/speech")[1]) * 1000 for _ in range(50)]
        direct = [float(curl("-H", "content-type: application/json", "-d", body % "tts-1",
                             f"http://127.0.0.1:{FAKE}/v1/audio/speech")[1]) * 1000 for _ in range(50)]
        g.terminate()
        g.wait(timeout=10)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    print("| request | status | peak RSS before (MB) | peak RSS after (MB) | increase (MB) |")
    print("|---|---|---|---|---|")
    for name, code, before, after in rows:
        print(f"| {name} | {code} | {before:.1f} | {after:.1f} | {after - before:.1f} |")
    d, v = statistics.median(direct), statistics.median(via)
    print()
    print("| speech time to first byte, median of 50 (ms) | direct to fake | Signalbox | ratio |")
    print("|---|---|---|---|")
    print(f"| wav, 'Hello there...' | {d:.3f} | {v:.3f} | {v / d:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
