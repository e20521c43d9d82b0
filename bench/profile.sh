#!/usr/bin/env bash
# Where Signalbox's CPU goes under load: perf samples (cpu-clock) per thread and per symbol.
# Usage: bench/profile.sh [SECONDS] [CONNS] [stored|off]   (needs perf, wrk; uses target/release)
# Signalbox runs on CPU 0; the fake upstream and wrk on CPU 1, as in bench/run.py. Prints the
# requests served, the CPU time a request (utime+stime / requests), the share of samples of
# each thread (by name) and the top symbols. Keeps perf.data in $KEEP (or a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${2:-64}
TRACES=${3:-stored}
REL=target/release
OUT=${KEEP:-$(mktemp -d)}
mkdir -p "$OUT"
. bench/gateway-config.sh
gateway_config 19410 19411 "$TRACES" > "$OUT/gw.toml"
cat > "$OUT/req.lua" <<'L'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"route::bench","messages":[{"role":"user","content":"hello there"}]}'
L
rm -rf "$OUT/data"
taskset -c 1 "$REL/fake-upstream" --port 19411 >/dev/null &
FAKE=$!
BENCH_KEY=sk-bench SIGNALBOX_LOG=warn taskset -c 0 "$REL/signalbox" serve --config "$OUT/gw.toml" \
  --data-dir "$OUT/data" >/dev/null 2>&1 &
GW=$!
trap 'kill $FAKE $GW 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:19410/health && break; sleep 0.1; done
# HOOK (optional) runs here with $GW set, e.g. to change a thread's scheduling policy.
[ -n "${HOOK:-}" ] && eval "$HOOK"
# Warm up (and grow the trace table a little) before measuring.
taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$OUT/req.lua" http://127.0.0.1:19410/v1/chat/completions >/dev/null
cpu() { awk '{print $14+$15}' "/proc/$GW/stat"; }
before=$(cpu)
perf record -F 2000 -g -p "$GW" -o "$OUT/perf.data" -- sleep "$SECS" >/dev/null 2>&1 &
PERF=$!
reqs=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$OUT/req.lua" \
  http://127.0.0.1:19410/v1/chat/completions | awk '/requests in/ {print $1}')
wait $PERF || true
after=$(cpu)
tick=$(getconf CLK_TCK)
echo "requests: $reqs; CPU a request: $(echo "($after - $before) * 1000000 / $tick / $reqs" | bc -l | cut -c1-6) µs (traces $TRACES, c=$CONNS)"
echo "traces: $(curl -s http://127.0.0.1:19410/metrics | grep -E '^signalbox_traces_(written|dropped)_total' | tr '\n' ' ')"
echo "RSS after: $(awk '/VmRSS/ {print $2/1024 " MB"}' /proc/$GW/status)"
echo "--- samples by thread"
perf report -i "$OUT/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8
echo "--- top symbols"
perf report -i "$OUT/perf.data" --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -${TOP:-30}
