#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (idempotently), then
# runs formatting, lints and every test. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies"
# The client SDKs of the black-box compatibility suite (crates/server/tests/it/sdk.rs), pinned:
# the OpenAI Python SDK in tests/sdk/requirements.txt, the OpenAI Node SDK and the Vercel AI SDK
# in tests/sdk/node/package-lock.json. Each is installed only when missing or not the pinned one.
openai_pin="$(sed -n 's/^openai==//p' tests/sdk/requirements.txt)"
if ! python3 -c "import sys, openai; sys.exit(openai.__version__ != '$openai_pin')" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
fi
if ! node tests/sdk/node/check_install.mjs 2>/dev/null; then
  npm ci --prefix tests/sdk/node --no-audit --no-fund
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
