#!/usr/bin/env python3
"""Benchmark Signalbox against calling the fake upstream directly and against a minimal
hyper forwarding proxy, all in one run on this machine.

    python3 bench/run.py [--duration 10] [--rounds 1] [--skip-build]

With --rounds N the latency, throughput and CPU measures are taken N times, the three setups
in turn (the order rotating each round), and each cell is the median of the N rounds; the
ratio column is the median of the per-round ratios. This VM's noise moves whole minutes of
runs together, so interleaved rounds compare like with like.

Then, per round, bench/minproxy's `paired` client calls the three setups in turn at c=1 (a
fresh random order each cycle), so their latencies and the proxies' CPU per request are
measured over the same seconds: the steadiest wall-clock comparison this VM allows; and
both proxies are loaded together (wrk c=64 on each) for their CPU per request under load.

Processes are pinned: the proxy under test on CPU 0; the fake upstream and the load generator
(wrk) on CPU 1. With --unpinned the proxies run on both CPUs, as a deployment does (tokio then
starts two worker threads in each). Prints a Markdown report (also written to bench/out/report.md).
Needs: wrk (apt-get install wrk), curl, taskset.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
FAKE_PORT, MIN_PORT, GW_PORT = 19000, 19100, 19200


def gateway_config(port, upstream_port, traces_off):
    """The benchmark gateway's config, from bench/gateway-config.sh (one source for every
    benchmark script)."""
    script = os.path.join(ROOT, "bench", "gateway-config.sh")
    return subprocess.run(
        ["bash", "-c", '. "$0"; gateway_config "$1" "$2" "$3"', script,
         str(port), str(upstream_port), "off" if traces_off else ""],
        capture_output=True, text=True, check=True).stdout
TICK = os.sysconf("SC_CLK_TCK")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def wait_up(url, timeout=20):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def to_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n if unit == "ms" else n * 1000


def lua_script(lua_dir, model):
    """A wrk script posting the benchmark's chat request for `model`; returns its path."""
    lua = os.path.join(lua_dir, f"{model.replace(':', '_')}.lua")
    body = '{"model":"%s","messages":[{"role":"user","content":"hello there"}]}' % model
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write("wrk.body = '%s'\n" % body)
    return lua


def wrk(url, model, conns, duration, lua_dir, stream=False, cpus="1"):
    lua = lua_script(lua_dir, model)
    out = sh(["taskset", "-c", cpus, "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "-s", lua, url])
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "p50": to_ms(lat["50"]),
        "p99": to_ms(lat["99"]),
        "rps": rps,
        "requests": reqs,
        "non2xx": int(errors.group(1)) if errors else 0,
    }


def paired(targets, cycles):
    """One run of bench/minproxy's `paired` client (CPU 1): the three setups called in turn,
    in a fresh random order each cycle, one request at a time over keep-alive connections.
    Returns each setup's latency percentiles (µs) and the proxies' CPU per request over the
    same seconds."""
    specs = [f"{name}={url.split('//', 1)[1]}={model}" for name, (url, model, p) in targets.items()]
    procs = {name: p for name, (url, model, p) in targets.items() if p}
    before = {name: cpu_seconds(p.pid) for name, p in procs.items()}
    out = sh(["taskset", "-c", "1", f"{REL}/paired", str(cycles)] + specs)
    after = {name: cpu_seconds(p.pid) for name, p in procs.items()}
    lat = json.loads(out)
    sent = cycles + cycles // 10 + 100  # the client's warm-up cycles count for CPU too
    return lat, {name: (after[name] - before[name]) / sent * 1e6 for name in procs}


def together(targets, duration, lua_dir):
    """Both proxies loaded at once, wrk c=64 on each (both wrk on CPU 1, both proxies on CPU
    0): each one's CPU per request, measured over the same seconds."""
    names = ("minproxy", "signalbox")
    runs, before = {}, {}
    for name in names:
        url, model, p = targets[name]
        lua = lua_script(lua_dir, model)
        before[name] = cpu_seconds(p.pid)
        runs[name] = subprocess.Popen(
            ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{duration}s", "-s", lua, url],
            stdout=subprocess.PIPE, text=True)
    cpu = {}
    for name in names:
        out = runs[name].communicate()[0]
        served = int(re.search(r"(\d+) requests in", out).group(1))
        cpu[name] = (cpu_seconds(targets[name][2].pid) - before[name]) / served * 1e6
    return cpu


def paired_rounds(targets, cycles, rounds, duration, lua_dir):
    """`paired` run `rounds` times; per round the Signalbox / minimal proxy ratios of added
    latency (over direct) at p50 and p99, and of CPU per request; then both proxies loaded
    together at c=64 for their CPU per request."""
    per = {"add_p50": [], "add_p99": [], "cpu": [], "mp_add_p50": [], "sb_add_p50": [],
           "mp_cpu": [], "sb_cpu": [], "cpu64": [], "mp_cpu64": [], "sb_cpu64": []}
    for _ in range(rounds):
        both = together(targets, duration, lua_dir)
        per["cpu64"].append(both["signalbox"] / both["minproxy"])
        per["mp_cpu64"].append(both["minproxy"])
        per["sb_cpu64"].append(both["signalbox"])
        lat, cpu = paired(targets, cycles)
        add = lambda name, q: lat[name][q] - lat["direct"][q]
        for q in ("p50", "p99"):
            per[f"add_{q}"].append(add("signalbox", q) / max(add("minproxy", q), 1e-9))
        per["mp_add_p50"].append(add("minproxy", "p50"))
        per["sb_add_p50"].append(add("signalbox", "p50"))
        per["cpu"].append(cpu["signalbox"] / cpu["minproxy"])
        per["mp_cpu"].append(cpu["minproxy"])
        per["sb_cpu"].append(cpu["signalbox"])
    return per


def ttfb(url, model, n=200):
    body = '{"model":"%s","stream":true,"messages":[{"role":"user","content":"hello there"}]}' % model
    times = []
    for _ in range(n):
        out = sh(["curl", "-s", "-o", "/dev/null", "-w", "%{time_starttransfer}", "-H",
                  "content-type: application/json", "-d", body, url])
        times.append(float(out) * 1000)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--traces", choices=["stored", "off"], default="stored",
                    help="Signalbox's trace storage ([store] traces); records feed metrics either way")
    ap.add_argument("--paired-cycles", type=int, default=20000,
                    help="cycles of the paired c=1 client per round (each cycle calls all three)")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--unpinned", action="store_true",
                    help="start both proxies without taskset (as deployed: both cores, so two "
                         "tokio workers each); the fake upstream and the clients stay on CPU 1")
    a = ap.parse_args()
    on_cpu0 = [] if a.unpinned else ["taskset", "-c", "0"]
    for tool in ("wrk", "curl", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (apt-get install -y wrk curl util-linux)")
    if not a.skip_build:
        subprocess.run(["cargo", "build", "--release", "-p", "signalbox", "-p", "fake-upstream", "-p", "minproxy"],
                       cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp()
    cfg = os.path.join(tmp, "bench.toml")
    with open(cfg, "w") as f:
        f.write(gateway_config(GW_PORT, FAKE_PORT, a.traces == "off"))
    env = dict(os.environ, BENCH_KEY="sk-bench", SIGNALBOX_LOG="warn")
    procs = []
    try:
        procs.append(subprocess.Popen(["taskset", "-c", "1", f"{REL}/fake-upstream", "--port", str(FAKE_PORT)],
                                      stdout=subprocess.DEVNULL))
        mp = subprocess.Popen(on_cpu0 + [f"{REL}/minproxy", f"127.0.0.1:{MIN_PORT}",
                               f"127.0.0.1:{FAKE_PORT}"], stdout=subprocess.DEVNULL)
        gw = subprocess.Popen(on_cpu0 + [f"{REL}/signalbox", "serve", "--config", cfg,
                               "--data-dir", os.path.join(tmp, "data")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs += [mp, gw]
        wait_up(f"http://127.0.0.1:{FAKE_PORT}/v1/models")
        wait_up(f"http://127.0.0.1:{MIN_PORT}/v1/models")
        wait_up(f"http://127.0.0.1:{GW_PORT}/health")
        time.sleep(0.5)
        idle = {"minproxy": rss_mb(mp.pid), "signalbox": rss_mb(gw.pid)}
        targets = {
            "direct": (f"http://127.0.0.1:{FAKE_PORT}/v1/chat/completions", "gpt-4o", None),
            "minproxy": (f"http://127.0.0.1:{MIN_PORT}/v1/chat/completions", "gpt-4o", mp),
            "signalbox": (f"http://127.0.0.1:{GW_PORT}/v1/chat/completions", "route::bench", gw),
        }
        served = {"minproxy": 0, "signalbox": 0}
        rounds = {name: [] for name in targets}
        names = list(targets)
        for r in range(a.rounds):
            for name in names[r % 3:] + names[:r % 3]:
                url, model, p = targets[name]
                wrk(url, model, 1, 2, tmp)  # warm-up
                c1 = wrk(url, model, 1, a.duration, tmp)
                before = cpu_seconds(p.pid) if p else 0
                c64 = wrk(url, model, 64, a.duration, tmp)
                after = cpu_seconds(p.pid) if p else 0
                cpu_us = (after - before) / c64["requests"] * 1e6 if p else float("nan")
                if p:
                    served[name] += c64["requests"] + c1["requests"]
                rounds[name].append({"c1": c1, "c64": c64, "cpu_us": cpu_us})
        res = {}
        for name, rs in rounds.items():
            med = lambda f: statistics.median(f(x) for x in rs)
            res[name] = {
                "c1": {k: med(lambda x: x["c1"][k]) for k in ("p50", "p99")},
                "c64": {k: med(lambda x: x["c64"][k]) for k in ("p99", "rps", "non2xx")},
                "cpu_us": med(lambda x: x["cpu_us"]),
            }
        # Per-round ratios, Signalbox / minimal proxy (added latency over direct, same round).
        per_round = {"cpu": [], "add_p50": [], "add_p99": [], "rps": []}
        for dr, mr, sr in zip(rounds["direct"], rounds["minproxy"], rounds["signalbox"]):
            per_round["cpu"].append(sr["cpu_us"] / mr["cpu_us"])
            for k in ("p50", "p99"):
                added = lambda x: x["c1"][k] - dr["c1"][k]
                per_round[f"add_{k}"].append(added(sr) / max(added(mr), 1e-9))
            per_round["rps"].append(sr["c64"]["rps"] / mr["c64"]["rps"])
        for name, (url, model, p) in targets.items():
            res[name]["ttfb"] = ttfb(url, model)
        pair = paired_rounds(targets, a.paired_cycles, a.rounds, a.duration, tmp)
        # Top up to at least 100k requests through each proxy before reading RSS.
        for name in ("minproxy", "signalbox"):
            url, model, p = targets[name]
            while served[name] < 100_000:
                served[name] += wrk(url, model, 64, 5, tmp)["requests"]
        after_rss = {"minproxy": rss_mb(mp.pid), "signalbox": rss_mb(gw.pid)}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    d, m, s = res["direct"], res["minproxy"], res["signalbox"]
    add = lambda r, k: r["c1"][k] - d["c1"][k]
    cpu = open("/proc/cpuinfo").read()
    model_name = re.search(r"model name\s*:\s*(.*)", cpu)
    lines = [
        f"Machine: {os.cpu_count()} CPUs, {model_name.group(1) if model_name else 'unknown CPU'}; "
        f"{time.strftime('%Y-%m-%d')}; duration {a.duration}s per run; {a.rounds} round(s); Signalbox traces {a.traces}"
        f"{'; proxies unpinned' if a.unpinned else ''}",
        "",
        "| measure | direct to fake | minimal proxy | Signalbox | Signalbox / minimal proxy |",
        "|---|---|---|---|---|",
        f"| latency p50, c=1 (ms) | {d['c1']['p50']:.3f} | {m['c1']['p50']:.3f} | {s['c1']['p50']:.3f} | |",
        f"| latency p99, c=1 (ms) | {d['c1']['p99']:.3f} | {m['c1']['p99']:.3f} | {s['c1']['p99']:.3f} | |",
        f"| added latency p50, c=1 (ms) | – | {add(m, 'p50'):.3f} | {add(s, 'p50'):.3f} | {add(s, 'p50') / max(add(m, 'p50'), 1e-9):.2f}x |",
        f"| added latency p99, c=1 (ms) | – | {add(m, 'p99'):.3f} | {add(s, 'p99'):.3f} | {add(s, 'p99') / max(add(m, 'p99'), 1e-9):.2f}x |",
        f"| requests/s, c=64 | {d['c64']['rps']:.0f} | {m['c64']['rps']:.0f} | {s['c64']['rps']:.0f} | {s['c64']['rps'] / m['c64']['rps']:.2f}x |",
        f"| latency p99, c=64 (ms) | {d['c64']['p99']:.3f} | {m['c64']['p99']:.3f} | {s['c64']['p99']:.3f} | {s['c64']['p99'] / m['c64']['p99']:.2f}x |",
        f"| CPU per request, c=64 (µs) | – | {m['cpu_us']:.1f} | {s['cpu_us']:.1f} | {s['cpu_us'] / m['cpu_us']:.2f}x |",
        f"| streaming time to first byte, median of 200 (ms) | {d['ttfb']:.3f} | {m['ttfb']:.3f} | {s['ttfb']:.3f} | {s['ttfb'] / m['ttfb']:.2f}x |",
        f"| RSS idle (MB) | – | {idle['minproxy']:.1f} | {idle['signalbox']:.1f} | |",
        f"| RSS after ≥100k requests (MB) | – | {after_rss['minproxy']:.1f} ({served['minproxy']} req) | {after_rss['signalbox']:.1f} ({served['signalbox']} req) | |",
        f"| non-2xx responses | {d['c64']['non2xx']} | {m['c64']['non2xx']} | {s['c64']['non2xx']} | |",
    ]
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
    med = statistics.median
    lines += [
        "",
        f"Paired, c=1 (bench/minproxy `paired`, {a.paired_cycles} cycles a round, {a.rounds} round(s)): "
        "the three setups called in turn, in a fresh random order each cycle, so all of them "
        "meet the same moments of this VM's noise. Signalbox / minimal proxy per round:",
        "",
        f"- added latency p50: {fmt(pair['add_p50'])} (median {med(pair['add_p50']):.2f}x; "
        f"{med(pair['sb_add_p50']):.1f} against {med(pair['mp_add_p50']):.1f} µs)",
        f"- added latency p99: {fmt(pair['add_p99'])} (median {med(pair['add_p99']):.2f}x)",
        f"- CPU per request at c=1: {fmt(pair['cpu'])} (median {med(pair['cpu']):.2f}x; "
        f"{med(pair['sb_cpu']):.1f} against {med(pair['mp_cpu']):.1f} µs)",
        f"- CPU per request at c=64, both proxies loaded together (wrk c=64 on each): "
        f"{fmt(pair['cpu64'])} (median {med(pair['cpu64']):.2f}x; "
        f"{med(pair['sb_cpu64']):.1f} against {med(pair['mp_cpu64']):.1f} µs)",
    ]
    if a.rounds > 1:
        lines += [
            "",
            f"Cells are medians of {a.rounds} interleaved rounds. Per-round ratios, Signalbox / minimal proxy:",
            "",
            f"- CPU per request, c=64: {fmt(per_round['cpu'])} (median {statistics.median(per_round['cpu']):.2f}x)",
            f"- added latency p50, c=1: {fmt(per_round['add_p50'])} (median {statistics.median(per_round['add_p50']):.2f}x)",
            f"- added latency p99, c=1: {fmt(per_round['add_p99'])} (median {statistics.median(per_round['add_p99']):.2f}x)",
            f"- requests/s, c=64: {fmt(per_round['rps'])} (median {statistics.median(per_round['rps']):.2f}x)",
        ]
    report = "\n".join(lines)
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "report.md"), "w") as f:
        f.write(report + "\n")
    print(report)


if __name__ == "__main__":
    sys.exit(main())
