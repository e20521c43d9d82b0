#!/usr/bin/env python3
"""How fast an admin change serves, and whether applying changes moves data-plane latency.

    python3 bench/live_apply.py [--skip-build] [--iterations 100] [--duration 10]

1. Single node (SQLite): time from sending an admin write (repointing a route) to the first
   request served by the new config, on the same node.
2. Two nodes on one PostgreSQL (started with scripts/pg.sh): write on node A, poll node B.
3. Data-plane latency (wrk, concurrency 1, gateway pinned to CPU 0, wrk to CPU 1) with no
   changes, then with the route repointed every 100 ms during the run.

Prints a Markdown report (also bench/out/live_apply.md). Needs wrk, taskset, PostgreSQL.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import ROOT, REL, sh, wait_up, wrk  # noqa: E402

PASSWORD = "bench-admin-password"
# Nodes sharing one store share its master key.
MASTER_KEY = "8ZVtb3NHl0cXv9bpZ7mYl3f1w2a8oJm0k4s6xkU1v2Q="
CONFIG = '[server]\nauth = "off"\n[providers.demo]\nkind = "mock"\nmodels = ["echo-1", "echo-2"]\n'


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, method, path, body=None, token=None):
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)


def start_node(tmp, name, port, db=None, cpu="0"):
    data = os.path.join(tmp, name)
    cfg = os.path.join(tmp, "signalbox.toml")
    args = ["taskset", "-c", cpu, os.path.join(REL, "signalbox"), "serve", "--config", cfg,
            "--port", str(port), "--data-dir", data]
    if db:
        args += ["--db", db]
    env = dict(os.environ, SIGNALBOX_ADMIN_PASSWORD=PASSWORD, SIGNALBOX_LOG="warn", SIGNALBOX_MASTER_KEY=MASTER_KEY)
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{port}/health")
    return p


def login(port):
    c = Client(port)
    s, b = c.call("POST", "/admin/v1/login", {"username": "admin", "password": PASSWORD})
    assert s == 200, b
    return b["token"]


def setup_route(port, token):
    c = Client(port)
    for t, m in (("t1", "echo-1"), ("t2", "echo-2")):
        s, b = c.call("PUT", f"/admin/v1/projects/default/targets/{t}", {"model": m, "provider": "demo"}, token)
        assert s in (200, 201), b
    s, b = c.call("PUT", "/admin/v1/projects/default/routes/r", {"targets": ["t1"]}, token)
    assert s in (200, 201), b


def chat_model(c):
    s, b = c.call("POST", "/v1/chat/completions", {"model": "route::r", "messages": [{"role": "user", "content": "hi"}]})
    return b.get("model") if s == 200 else None


def measure_apply(write_port, read_port, token, iterations):
    w, r = Client(write_port), Client(read_port)
    write_ms, served_ms = [], []
    for i in range(iterations):
        target, model = ("t2", "echo-2") if i % 2 == 0 else ("t1", "echo-1")
        t0 = time.perf_counter()
        s, b = w.call("PUT", "/admin/v1/projects/default/routes/r", {"targets": [target]}, token)
        assert s == 200, b
        write_ms.append((time.perf_counter() - t0) * 1000)
        while chat_model(r) != model:
            if time.perf_counter() - t0 > 10:
                raise SystemExit("the change never served")
        served_ms.append((time.perf_counter() - t0) * 1000)
    return write_ms, served_ms


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def dataplane(port, tok, duration, tmp, wrk_cpus):
    """wrk -c1 on route::r with no changes, then while the route is repointed every 1 s and every
    100 ms. Returns [(label, changes, wrk result)]."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    out = [("none", 0, wrk(url, "route::r", 1, duration, tmp, cpus=wrk_cpus))]
    for label, interval in (("every 1 s", 1.0), ("every 100 ms", 0.1)):
        stop = threading.Event()
        flips = [0]

        def flipper():
            c = Client(port)
            i = 0
            while not stop.is_set():
                c.call("PUT", "/admin/v1/projects/default/routes/r",
                       {"targets": ["t2" if i % 2 == 0 else "t1"]}, tok)
                flips[0] += 1
                i += 1
                stop.wait(interval)

        th = threading.Thread(target=flipper)
        th.start()
        r = wrk(url, "route::r", 1, duration, tmp, cpus=wrk_cpus)
        stop.set()
        th.join()
        out.append((label, flips[0], r))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--duration", type=int, default=10)
    a = ap.parse_args()
    if not a.skip_build:
        subprocess.run(["cargo", "build", "--release", "-p", "signalbox"], check=True, cwd=ROOT)
    tmp = tempfile.mkdtemp(prefix="sbx-live-")
    with open(os.path.join(tmp, "signalbox.toml"), "w") as f:
        f.write(CONFIG)
    procs = []
    lines = ["# Live apply", "", f"Machine: {os.cpu_count()} cores; {a.iterations} changes per measure.", ""]
    try:
        # 1. Single node, SQLite.
        p = start_node(tmp, "single", 19300)
        procs.append(p)
        tok = login(19300)
        setup_route(19300, tok)
        w, s = measure_apply(19300, 19300, tok, a.iterations)
        lines += ["| measure | median ms | p99 ms | max ms |", "|---|---|---|---|",
                  f"| single node (SQLite): admin write answered | {statistics.median(w):.1f} | {pct(w, 99):.1f} | {max(w):.1f} |",
                  f"| single node (SQLite): write sent -> first request on the new config | {statistics.median(s):.1f} | {pct(s, 99):.1f} | {max(s):.1f} |"]

        # 3. Data-plane latency without and with changes (on the single node), pinned.
        runs = dataplane(19300, tok, a.duration, tmp, "1")
        p.terminate()
        p.wait()
        procs.remove(p)
        # ... and unpinned: gateway and wrk share both cores as the scheduler sees fit.
        p = start_node(tmp, "single", 19300, cpu="0-1")
        procs.append(p)
        tok = login(19300)
        runs_free = dataplane(19300, tok, a.duration, tmp, "0-1")
        p.terminate()
        p.wait()
        procs.remove(p)

        # 2. Two nodes on one PostgreSQL.
        pg = subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "start"], check=True, text=True,
                            capture_output=True).stdout.strip()
        try:
            sh(["psql", pg, "-qc", "CREATE DATABASE bench_live"])
            db = pg.rsplit("/", 1)[0] + "/bench_live"
            pa = start_node(tmp, "a", 19301, db, cpu="0")
            pb = start_node(tmp, "b", 19302, db, cpu="1")
            procs += [pa, pb]
            tok = login(19301)
            setup_route(19301, tok)
            time.sleep(1)
            w2, s2 = measure_apply(19301, 19302, tok, a.iterations)
            lines += [f"| two nodes (PostgreSQL): write on A answered | {statistics.median(w2):.1f} | {pct(w2, 99):.1f} | {max(w2):.1f} |",
                      f"| two nodes (PostgreSQL): write sent on A -> first request on the new config at B | {statistics.median(s2):.1f} | {pct(s2, 99):.1f} | {max(s2):.1f} |"]
        finally:
            for q in procs:
                q.terminate()
                q.wait()
            procs.clear()
            subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "stop"], check=False)

        lines += ["", f"Data plane, `route::r` (mock target), wrk -c1 {a.duration}s:", "",
                  "| placement | changes | p50 ms | p99 ms | req/s | non-2xx | p50 vs none | p99 vs none |",
                  "|---|---|---|---|---|---|---|---|"]
        for placement, rs in (("gateway CPU 0, wrk CPU 1", runs), ("unpinned", runs_free)):
            base = rs[0][2]
            for label, flips, r in rs:
                lines.append(f"| {placement} | {label} ({flips} changes) | {r['p50']:.3f} | {r['p99']:.3f} | "
                             f"{r['rps']:.0f} | {r['non2xx']} | {r['p50'] / base['p50']:.2f}x | {r['p99'] / base['p99']:.2f}x |")
    finally:
        for q in procs:
            q.terminate()
    report = "\n".join(lines)
    print(report)
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "live_apply.md"), "w") as f:
        f.write(report + "\n")


if __name__ == "__main__":
    main()
