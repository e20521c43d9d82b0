#!/usr/bin/env python3
"""Translation overhead of the native adapters (Anthropic, Gemini) against the OpenAI fast path,
per request and per streamed chunk, measured in one gateway process in one run.

    python3 bench/adapters.py [--requests 2000] [--rounds 5] [--skip-build]

One `fake-upstream` binary speaks all three wire formats; two of them run, one streaming answers in
4 chunks and one in 64. The gateway (release build, trace storage off so only the data plane is
measured) has one route per (provider kind, fake). For each round and each route, REQUESTS
sequential keep-alive calls are made (non-streaming, and streaming); the gateway's CPU time is
read from /proc/PID/task/*/schedstat (nanoseconds, all threads) before and after. Reported: the
median over rounds of CPU per request, and per streamed chunk ((64-chunk stream - 4-chunk
stream) / 60). The gateway is pinned to CPU 0, the fakes and this client to CPU 1.
"""
import argparse
import glob
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import wait_up  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
GW_PORT, FAKE4, FAKE64 = 19410, 19421, 19422
KINDS = ["openai", "anthropic", "gemini"]
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}


def cpu_ns(pid):
    total = 0
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(f) as fh:
                total += int(fh.read().split()[0])
        except OSError:
            pass
    return total


def config():
    out = ["[server]", 'auth = "off"', f"port = {GW_PORT}", "drain_delay_ms = 0",
           "[store]", "traces = false"]
    for kind in KINDS:
        for chunks, port in ((4, FAKE4), (64, FAKE64)):
            base = f"http://127.0.0.1:{port}/" + ("v1beta" if kind == "gemini" else "v1")
            pid = f"{kind}{chunks}"
            out += [f"[providers.{pid}]", f'kind = "{kind}"', f'base_url = "{base}"',
                    f'models = ["{MODELS[kind]}"]', 'credential = "env::BENCH_KEY"',
                    f"[targets.{pid}]", f'provider = "{pid}"', f'model = "{MODELS[kind]}"',
                    f"[routes.{pid}]", f'targets = ["{pid}"]']
    return "\n".join(out) + "\n"


def load(route, n, stream):
    # A long prompt so the 64-chunk answer has 64 pieces.
    body = json.dumps({
        "model": f"route::{route}", "stream": stream,
        "messages": [{"role": "user", "content": "benchmark " * 40}],
    }).encode()
    c = http.client.HTTPConnection("127.0.0.1", GW_PORT)
    for _ in range(n):
        c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
        r = c.getresponse()
        data = r.read()
        assert r.status == 200, (r.status, data[:300])
        if stream:
            assert data.endswith(b"data: [DONE]\n\n"), data[-200:]
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip-build", action="store_true")
    a = ap.parse_args()
    if not a.skip_build:
        subprocess.run(["cargo", "build", "--release", "-p", "signalbox", "-p", "fake-upstream"],
                       cwd=ROOT, check=True)
    os.sched_setaffinity(0, {1})
    tmp = tempfile.mkdtemp()
    with open(os.path.join(tmp, "gw.toml"), "w") as f:
        f.write(config())
    env = dict(os.environ, BENCH_KEY="sk-bench", SIGNALBOX_LOG="warn")
    procs = []
    try:
        for chunks, port in ((4, FAKE4), (64, FAKE64)):
            procs.append(subprocess.Popen(
                ["taskset", "-c", "1", f"{REL}/fake-upstream", "--port", str(port),
                 "--chunks", str(chunks)], stdout=subprocess.DEVNULL))
        gw = subprocess.Popen(
            ["taskset", "-c", "0", f"{REL}/signalbox", "serve", "--config", f"{tmp}/gw.toml",
             "--data-dir", f"{tmp}/data"], env=env, stdout=subprocess.DEVNULL)
        procs.append(gw)
        for port in (FAKE4, FAKE64):
            wait_up(f"http://127.0.0.1:{port}/v1/models")
        wait_up(f"http://127.0.0.1:{GW_PORT}/health")
        cases = [(k, c, s) for k in KINDS for (c, s) in ((4, False), (4, True), (64, True))]
        for k, c, s in cases:  # warm up: connections, allocator, caches
            load(f"{k}{c}", 200, s)
        per = {case: [] for case in cases}
        for _ in range(a.rounds):
            for case in cases:
                k, c, s = case
                before = cpu_ns(gw.pid)
                load(f"{k}{c}", a.requests, s)
                per[case].append((cpu_ns(gw.pid) - before) / a.requests / 1000)
        med = {case: statistics.median(v) for case, v in per.items()}
        cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": ")
        print(f"machine: {cpu}, {os.cpu_count()} cores; {a.rounds} rounds x {a.requests} "
              "sequential keep-alive requests per case; gateway pinned to CPU 0\n")
        print("| provider kind | CPU/request, plain (µs) | vs OpenAI | CPU/request, streamed 4 chunks (µs) "
              "| CPU per streamed chunk (µs) | vs OpenAI |")
        print("|---|---|---|---|---|---|")
        base_req = med[("openai", 4, False)]
        base_chunk = (med[("openai", 64, True)] - med[("openai", 4, True)]) / 60
        for k in KINDS:
            req = med[(k, 4, False)]
            chunk = (med[(k, 64, True)] - med[(k, 4, True)]) / 60
            print(f"| {k} | {req:.1f} | {req / base_req:.2f}x (+{req - base_req:.1f}) | "
                  f"{med[(k, 4, True)]:.1f} | {chunk:.2f} | {chunk / base_chunk:.2f}x |")
        print("\nspread (min-max over rounds, µs/request):")
        for case, v in per.items():
            print(f"  {case[0]:9} {case[1]:2} chunks {'stream' if case[2] else 'plain '}: "
                  f"{min(v):.1f}-{max(v):.1f}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    sys.exit(main())
