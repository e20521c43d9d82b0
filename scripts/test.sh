#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (idempotently), then
# runs formatting, lints and every test. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies"
# The client SDKs the tests run, pinned: the Python SDKs in tests/sdk/requirements.txt (OpenAI
# for the black-box compatibility suite, crates/server/tests/it/sdk.rs; OpenAI, Anthropic and
# Google GenAI for the fake upstream's wire formats), the OpenAI Node SDK and the Vercel AI SDK in
# tests/sdk/node/package-lock.json. They are installed only when one is missing or not the pinned one.
if ! python3 - tests/sdk/requirements.txt <<'PY' 2>/dev/null
import sys
from importlib.metadata import PackageNotFoundError, version

for line in open(sys.argv[1]):
    name, sep, pin = line.split("#", 1)[0].strip().partition("==")
    if not sep:
        continue
    try:
        if version(name.strip()) != pin.strip():
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
fi
if ! node tests/check_node_install.mjs tests/sdk/node 2>/dev/null; then
  npm ci --prefix tests/sdk/node --no-audit --no-fund
fi
# The dashboard's browser test (crates/server/tests/it/ui.rs): Debian's chromium, driven by
# playwright-core with axe-core, both pinned in tests/ui/package-lock.json. Nothing downloads a
# browser build: playwright-core ships none, and the test passes /usr/bin/chromium explicitly.
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
fi
if ! node tests/check_node_install.mjs tests/ui 2>/dev/null; then
  npm ci --prefix tests/ui --no-audit --no-fund
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

# A real PostgreSQL on loopback: the store tests run against it and against SQLite.
echo "== starting PostgreSQL (scripts/pg.sh)"
SIGNALBOX_TEST_PG_URL="$(scripts/pg.sh start)"
export SIGNALBOX_TEST_PG_URL
trap 'scripts/pg.sh stop' EXIT

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
export CI="${CI:-true}"      # insta: never write snapshots in CI, fail on a mismatch
export NO_COLOR=1
cargo nextest run --workspace --locked --no-fail-fast
