# The benchmark gateway's config, shared by bench/callgrind.sh, bench/profile.sh, bench/run.py and bench/traces.py: auth off,
# no drain delay, one route `bench` to the fake upstream's gpt-4o.
# Usage (after sourcing): gateway_config PORT UPSTREAM_PORT [off]   ("off": trace storage off)
gateway_config() {
  if [ "${3:-}" = off ]; then printf '[store]\ntraces = false\n'; fi
  cat <<T
[server]
auth = "off"
port = $1
drain_delay_ms = 0
[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:$2/v1"
models = ["gpt-4o"]
credential = "env::BENCH_KEY"
[targets.t]
provider = "up"
model = "gpt-4o"
[routes.bench]
targets = ["t"]
T
}
