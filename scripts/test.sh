#!/usr/bin/env bash
# The one command that runs every test: builds the workspace, runs the Rust tests, then the end-to-end tests
# (integration-tests/: the real `airlock` binary in front of a fake Hub, driven by the real huggingface_hub).
# Needs only the repo, Rust and Python 3.11; the Python test dependencies go into .venv (created if missing).
# Extra arguments go to pytest, e.g. `scripts/test.sh -k protocol -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo build --workspace"
cargo build --workspace
echo "==> cargo test --workspace"
cargo test --workspace

VENV="${AIRLOCK_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  python3 -m venv "$VENV"
fi
echo "==> pip install -r integration-tests/requirements.txt"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r integration-tests/requirements.txt

echo "==> pytest integration-tests"
export AIRLOCK_BIN="${AIRLOCK_BIN:-$PWD/target/debug/airlock}"
"$VENV/bin/python" -m pytest integration-tests -q "$@"
