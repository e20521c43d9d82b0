#!/usr/bin/env python3
"""Trace recording cost, and trace queries over a large store.

    python3 bench/traces.py [--skip-build] [--duration 10] [--rows 1000000] [--rounds 2]

1. Overhead: the same gateway and route (to the fake upstream) with trace storage on (the
   default: SQLite in the data directory) and off (`[store] traces = false`: records still feed
   metrics), alternated `--rounds` times in one run. wrk -c1 for latency, -c64 for throughput
   and CPU per request (gateway pinned to CPU 0, fake upstream and wrk to CPU 1).
2. Queries: `--rows` synthetic traces over 30 days (10 routes, 3 providers, 5% errors) written
   straight into SQLite and into PostgreSQL (scripts/pg.sh), then the query API timed: median
   of 5 calls each.

Prints a Markdown report (also bench/out/traces.md). Needs wrk, taskset, PostgreSQL.
"""
import argparse
import http.client
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import REL, ROOT, cpu_seconds, gateway_config, sh, wait_up, wrk  # noqa: E402

FAKE_PORT, GW_PORT = 19700, 19710

PASSWORD = "bench-admin-password"
MASTER_KEY = "8ZVtb3NHl0cXv9bpZ7mYl3f1w2a8oJm0k4s6xkU1v2Q="
ROUTES = [f"route:r{i}" for i in range(10)]
PROVIDERS = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4"), ("local", "llama3.1")]


def config(tmp, traces):
    path = os.path.join(tmp, f"traces-{traces}.toml")
    with open(path, "w") as f:
        # The port is given on the command line (serve --port).
        f.write(gateway_config(GW_PORT, FAKE_PORT, not traces))
    return path


def serve(cfg, data, port, db=None):
    args = ["taskset", "-c", "0", f"{REL}/signalbox", "serve", "--config", cfg, "--data-dir", data, "--port", str(port)]
    if db:
        args += ["--db", db]
    env = dict(os.environ, BENCH_KEY="sk-bench", SIGNALBOX_LOG="warn", SIGNALBOX_ADMIN_PASSWORD=PASSWORD,
               SIGNALBOX_MASTER_KEY=MASTER_KEY)
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{port}/health")
    return p


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()


def overhead(tmp, duration, rounds):
    res = {True: [], False: []}
    for r in range(rounds):
        for traces in (True, False):
            p = serve(config(tmp, traces), os.path.join(tmp, f"data-{traces}-{r}"), GW_PORT)
            url = f"http://127.0.0.1:{GW_PORT}/v1/chat/completions"
            wrk(url, "route::bench", 1, 2, tmp)
            c1 = wrk(url, "route::bench", 1, duration, tmp)
            before = cpu_seconds(p.pid)
            c64 = wrk(url, "route::bench", 64, duration, tmp)
            cpu_us = (cpu_seconds(p.pid) - before) / c64["requests"] * 1e6
            res[traces].append({"p50": c1["p50"], "p99": c1["p99"], "rps": c64["rps"], "cpu_us": cpu_us,
                                "non2xx": c1["non2xx"] + c64["non2xx"]})
            stop(p)
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("p50", "p99", "rps", "cpu_us", "non2xx")}
           for k, v in res.items()}
    return med


def synthetic(n, now_ms):
    rnd = random.Random(7)
    span = 30 * 86_400_000
    for i in range(n):
        prov, model = PROVIDERS[i % 3]
        err = rnd.random() < 0.05
        inp, out = rnd.randint(10, 2000), rnd.randint(1, 800)
        yield (
            f"bench-{i:08d}", "default", now_ms - rnd.randint(0, span), None, "key_bench", "chat", "route::x",
            "route", ROUTES[i % 10], 1, None, ("A" if i % 2 else "B"), None, prov, "t", model, 1,
            '[{"provider":"%s","target":"t","model":"%s","status":200,"retry":0,"degraded":false,"latency_ms":1.0}]' % (prov, model),
            502 if err else 200, "upstream" if err else None, rnd.uniform(50, 3000), rnd.uniform(20, 500) if i % 4 == 0 else None,
            inp, out, 0, 0, (inp * 2.5 + out * 10) / 1e6, 1 if i % 4 == 0 else 0, f"user-{i % 1000}", None, None,
        )


COLS = ("id, project, at, client_request_id, key_id, endpoint, requested_model, layer, route, route_version, "
        "assigned_variant, serving_variant, sticky_source, provider, target, model, attempt_count, attempts_json, "
        "status, error_code, latency_ms, ttft_ms, input_tokens, output_tokens, cached_tokens, reasoning_tokens, "
        "cost_usd, stream, user_id, session_id, trace_id")


def fill_sqlite(path, n, now_ms):
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    marks = ",".join("?" * 31)
    db.executemany(f"INSERT INTO traces ({COLS}) VALUES ({marks})", synthetic(n, now_ms))
    db.commit()
    db.close()


def fill_postgres(url, n, now_ms):
    # COPY from a CSV stream: the fast path.
    import csv
    import io
    proc = subprocess.Popen(["psql", url, "-qc", f"COPY traces ({COLS}) FROM STDIN WITH (FORMAT csv)"],
                            stdin=subprocess.PIPE, text=True)
    buf = io.StringIO()
    w = csv.writer(buf)
    for row in synthetic(n, now_ms):
        w.writerow(["" if v is None else v for v in row])
        if buf.tell() > 1 << 20:
            proc.stdin.write(buf.getvalue())
            buf.seek(0)
            buf.truncate()
    proc.stdin.write(buf.getvalue())
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("COPY failed")
    sh(["psql", url, "-qc", "ANALYZE traces"])


def timed_queries(port, now_ms, rows):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/admin/v1/login", body=json.dumps({"username": "admin", "password": PASSWORD}),
              headers={"content-type": "application/json"})
    tok = json.loads(c.getresponse().read())["token"]
    hour, day = now_ms - 3_600_000, now_ms - 86_400_000
    queries = [
        ("newest 50", "/admin/v1/projects/default/traces?limit=50"),
        ("newest 50 of one route", "/admin/v1/projects/default/traces?route=r3&limit=50"),
        ("errors, newest 50", "/admin/v1/projects/default/traces?status=error&limit=50"),
        ("one trace by id", f"/admin/v1/projects/default/traces/bench-{rows // 2:08d}"),
        ("aggregate by route, last hour", f"/admin/v1/projects/default/traces/aggregate?by=route&from={hour}"),
        ("aggregate by variant of one route, last 24 h", f"/admin/v1/projects/default/traces/aggregate?by=variant&route=r3&from={day}"),
        ("aggregate by provider, last 24 h", f"/admin/v1/projects/default/traces/aggregate?by=provider&from={day}"),
        ("aggregate by route, all 30 days", "/admin/v1/projects/default/traces/aggregate?by=route"),
    ]
    out = []
    for name, path in queries:
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            c.request("GET", path, headers={"authorization": f"Bearer {tok}"})
            r = c.getresponse()
            body = r.read()
            ts.append((time.perf_counter() - t0) * 1000)
            if r.status != 200:
                raise SystemExit(f"{path}: {r.status} {body[:200]}")
        out.append((name, statistics.median(ts)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--queries-only", action="store_true", help="skip the on/off overhead part")
    a = ap.parse_args()
    if not a.skip_build:
        subprocess.run(["cargo", "build", "--release", "-p", "signalbox", "-p", "fake-upstream"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="sbx-traces-")
    lines = [f"Machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}", ""]
    fake = subprocess.Popen(["taskset", "-c", "1", f"{REL}/fake-upstream", "--port", str(FAKE_PORT)],
                            stdout=subprocess.DEVNULL)
    try:
        if a.queries_only:
            raise StopIteration
        wait_up(f"http://127.0.0.1:{FAKE_PORT}/v1/models")
        med = overhead(tmp, a.duration, a.rounds)
        on, off = med[True], med[False]
        lines += [f"Trace storage on vs off, `route::bench` to the fake upstream, medians of {a.rounds} alternating rounds, wrk {a.duration}s:", "",
                  "| measure | traces stored (SQLite) | traces off | on / off |", "|---|---|---|---|",
                  f"| latency p50, c=1 (ms) | {on['p50']:.3f} | {off['p50']:.3f} | {on['p50'] / off['p50']:.2f}x |",
                  f"| latency p99, c=1 (ms) | {on['p99']:.3f} | {off['p99']:.3f} | {on['p99'] / off['p99']:.2f}x |",
                  f"| requests/s, c=64 | {on['rps']:.0f} | {off['rps']:.0f} | {on['rps'] / off['rps']:.2f}x |",
                  f"| gateway CPU per request, c=64 (µs) | {on['cpu_us']:.1f} | {off['cpu_us']:.1f} | {on['cpu_us'] / off['cpu_us']:.2f}x |",
                  f"| non-2xx | {on['non2xx']:.0f} | {off['non2xx']:.0f} | |", ""]
    except StopIteration:
        pass
    finally:
        stop(fake)

    now_ms = int(time.time() * 1000)
    results = {}
    # SQLite: let serve create and migrate the store, then fill it directly.
    cfg = config(tmp, True)
    data = os.path.join(tmp, "query-sqlite")
    p = serve(cfg, data, GW_PORT)
    stop(p)
    t0 = time.time()
    fill_sqlite(os.path.join(data, "signalbox.db"), a.rows, now_ms)
    fill_s = time.time() - t0
    p = serve(cfg, data, GW_PORT)
    try:
        results["SQLite"] = timed_queries(GW_PORT, now_ms, a.rows)
    finally:
        stop(p)
    # PostgreSQL.
    pg = subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "start"], check=True, text=True,
                        capture_output=True).stdout.strip()
    try:
        sh(["psql", pg, "-qc", "CREATE DATABASE bench_traces"])
        db = pg.rsplit("/", 1)[0] + "/bench_traces"
        p = serve(cfg, os.path.join(tmp, "query-pg"), GW_PORT, db)
        stop(p)
        t0 = time.time()
        fill_postgres(db, a.rows, now_ms)
        fill_p = time.time() - t0
        p = serve(cfg, os.path.join(tmp, "query-pg"), GW_PORT, db)
        try:
            results["PostgreSQL"] = timed_queries(GW_PORT, now_ms, a.rows)
        finally:
            stop(p)
    finally:
        subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "stop"], check=False)
    lines += [f"Trace query API over {a.rows:,} traces spread over 30 days (filled in {fill_s:.0f} s on SQLite, "
              f"{fill_p:.0f} s on PostgreSQL), median of 5 calls, ms:", "",
              "| query | SQLite | PostgreSQL |", "|---|---|---|"]
    for (name, s_ms), (_, p_ms) in zip(results["SQLite"], results["PostgreSQL"]):
        lines.append(f"| {name} | {s_ms:.1f} | {p_ms:.1f} |")
    report = "\n".join(lines)
    print(report)
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "traces.md"), "w") as f:
        f.write(report + "\n")


if __name__ == "__main__":
    main()
