#!/usr/bin/env bash
# Instructions per request (valgrind callgrind), Signalbox vs the minimal proxy, one run.
# Usage: bench/callgrind.sh [REQUESTS]   (needs valgrind and curl; uses target/release)
#        C=64 bench/callgrind.sh [SECONDS]   (under load: wrk -c64 for SECONDS, default 8; needs wrk)
# Each proxy runs under callgrind twice: once idle (start, then stop) and once serving
# REQUESTS sequential non-streaming chat requests (or, with C set, as many as `wrk -cC` gets
# through in SECONDS, both on CPU 0 and 1 apart); per request = (loaded - idle) / requests.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${C:-1}
if [ "$C" -gt 1 ]; then N=${1:-8}; else N=${1:-2000}; fi
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
load() { # url model name: serves the requests, writes how many to $OUT/name.n
  local body="{\"model\":\"$2\",\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}"
  if [ "$C" -gt 1 ]; then
    printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = %s\n' "'$body'" > "$OUT/post.lua"
    taskset -c 1 wrk -t1 -c"$C" -d"${N}s" -s "$OUT/post.lua" "$1" > "$OUT/$3.wrk"
    grep -q "Non-2xx" "$OUT/$3.wrk" && { cat "$OUT/$3.wrk" >&2; exit 1; }
    grep -oE "^ *[0-9]+ requests in" "$OUT/$3.wrk" | grep -oE "[0-9]+" | head -1 > "$OUT/$3.n"
    return
  fi
  python3 - "$1" "$body" "$N" <<'PY'
import http.client, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1]); body = sys.argv[2].encode(); n = int(sys.argv[3])
c = http.client.HTTPConnection(u.hostname, u.port)
for _ in range(n):
    c.request("POST", u.path, body, {"content-type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
  echo "$N" > "$OUT/$3.n"
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
  local pin=(); [ "$C" -gt 1 ] && pin=(taskset -c 0)
  "${pin[@]}" valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.$loaded.out" "$@" >/dev/null 2>&1 &
  local pid=$!
  sleep 1
  if [ "$name" = mp ]; then wait_up http://127.0.0.1:19110/v1/models; else wait_up http://127.0.0.1:19310/health; fi
  if [ "$loaded" = 1 ]; then
    if [ "$name" != mp ]; then load http://127.0.0.1:19310/v1/chat/completions route::bench "$name"
    else load http://127.0.0.1:19110/v1/chat/completions gpt-4o "$name"; fi
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
python3 - "$gi" "$gl" "$ni" "$nl" "$mi" "$ml" "$(cat "$OUT/gw.n")" "$(cat "$OUT/gwn.n")" "$(cat "$OUT/mp.n")" "$C" <<'PY'
import sys
gi, gl, ni, nl, mi, ml, gn, nn, mn, c = map(int, sys.argv[1:])
g, t, m = (gl - gi) / gn, (nl - ni) / nn, (ml - mi) / mn
if c > 1:
    print(f"requests: wrk -c{c} (minimal proxy {mn}, stored {gn}, off {nn} requests)")
else:
    print(f"requests: {gn} sequential, keep-alive")
print(f"minimal proxy:                  {m:,.0f} instructions/request")
print(f"Signalbox, traces stored:       {g:,.0f} instructions/request ({g / m:.2f}x)")
print(f"Signalbox, [store] traces=false: {t:,.0f} instructions/request ({t / m:.2f}x)")
PY
