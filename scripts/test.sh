#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (idempotently), then
# runs formatting, lints and every test. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pip() { python3 -c "import $1" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check "$2"; }

echo "== installing test dependencies"
need_pip openai "openai>=1.40"
if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
export CI="${CI:-true}"      # insta: never write snapshots in CI, fail on a mismatch
export NO_COLOR=1
cargo nextest run --workspace --locked --no-fail-fast
