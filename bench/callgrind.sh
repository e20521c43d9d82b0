#!/usr/bin/env bash
# Instructions per request (valgrind callgrind), Signalbox vs the minimal proxy, one run.
# Usage: bench/callgrind.sh [REQUESTS]   (needs valgrind and curl; uses target/release)
# Each proxy runs under callgrind twice: once idle (start, then stop) and once serving
# REQUESTS sequential non-streaming chat requests; per request = (loaded - idle) / REQUESTS.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
REL=target/release
KEEP=${KEEP:-}
OUT=${KEEP:-$(mktemp -d)}
. bench/gateway-config.sh
gateway_config 19310 19011 > "$OUT/gw.toml"
# The same with trace storage off (records still feed metrics).
gateway_config 19310 19011 off > "$OUT/gw-notrace.toml"
"$REL/fake-upstream" --port 19011 >/dev/null &
FAKE=$!
trap 'kill $FAKE 2>/dev/null || true' EXIT

wait_up() { for _ in $(seq 1 200); do curl -s -m 2 -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }
load() { # url model
  local body="{\"model\":\"$2\",\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}"
  python3 - "$1" "$body" "$N" <<'PY'
import http.client, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1]); body = sys.argv[2].encode(); n = int(sys.argv[3])
c = http.client.HTTPConnection(u.hostname, u.port)
for _ in range(n):
    c.request("POST", u.path, body, {"content-type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
}
# Stop a proxy: SIGINT, repeated every 5 s (valgrind now and then loses the first signal sent
# to an idle multi-threaded process; the repeat only matters then).
stop() {
  kill -INT "$1"
  for _ in $(seq 1 50); do
    sleep 0.1
    kill -0 "$1" 2>/dev/null || { wait "$1" || true; return 0; }
  done
  stop "$1"
}
run() { # name loaded(0/1) cmd...
  local name=$1 loaded=$2; shift 2
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.$loaded.out" "$@" >/dev/null 2>&1 &
  local pid=$!
  sleep 1
  if [ "$name" = mp ]; then wait_up http://127.0.0.1:19110/v1/models; else wait_up http://127.0.0.1:19310/health; fi
  if [ "$loaded" = 1 ]; then
    if [ "$name" != mp ]; then load http://127.0.0.1:19310/v1/chat/completions route::bench
    else load http://127.0.0.1:19110/v1/chat/completions gpt-4o; fi
  fi
  stop $pid
  grep -E '^(summary|totals):' "$OUT/$name.$loaded.out" | head -1 | awk '{print $2}'
}
wait_up http://127.0.0.1:19011/v1/models
export BENCH_KEY=sk-bench SIGNALBOX_LOG=warn
# Create the store (first start, argon2 included) before measuring, so both runs reuse it.
"$REL/signalbox" keys list --config "$OUT/gw.toml" --data-dir "$OUT/data" >/dev/null 2>&1
gi=$(run gw 0 "$REL/signalbox" serve --config "$OUT/gw.toml" --data-dir "$OUT/data")
gl=$(run gw 1 "$REL/signalbox" serve --config "$OUT/gw.toml" --data-dir "$OUT/data")
ni=$(run gwn 0 "$REL/signalbox" serve --config "$OUT/gw-notrace.toml" --data-dir "$OUT/data")
nl=$(run gwn 1 "$REL/signalbox" serve --config "$OUT/gw-notrace.toml" --data-dir "$OUT/data")
mi=$(run mp 0 "$REL/minproxy" 127.0.0.1:19110 127.0.0.1:19011)
ml=$(run mp 1 "$REL/minproxy" 127.0.0.1:19110 127.0.0.1:19011)
python3 - "$gi" "$gl" "$ni" "$nl" "$mi" "$ml" "$N" <<'PY'
import sys
gi, gl, ni, nl, mi, ml, n = map(int, sys.argv[1:])
g, t, m = (gl - gi) / n, (nl - ni) / n, (ml - mi) / n
print(f"requests: {n} sequential, keep-alive")
print(f"minimal proxy:                  {m:,.0f} instructions/request")
print(f"Signalbox, traces stored:       {g:,.0f} instructions/request ({g / m:.2f}x)")
print(f"Signalbox, [store] traces=false: {t:,.0f} instructions/request ({t / m:.2f}x)")
PY
