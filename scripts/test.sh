#!/usr/bin/env bash
# The one command that runs every test: builds the workspace, runs the Rust tests, then the end-to-end tests
# (integration-tests/: the real `airlock` binary in front of a fake Hub, driven by the real huggingface_hub).
# Needs only the repo, Rust and Python 3.11; the Python test dependencies go into .venv (created if missing).
# Extra arguments go to pytest, e.g. `scripts/test.sh -k protocol -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo build --workspace"
cargo build --workspace
# With Garage installed the S3 half of the blob-store conformance suite and test_s3_store.py must run:
# a missing or broken Garage then fails the run instead of skipping.
if [ -z "${AIRLOCK_GARAGE_BIN:-}" ] && command -v garage >/dev/null 2>&1; then
  export AIRLOCK_GARAGE_BIN="$(command -v garage)"
fi
if [ -n "${AIRLOCK_GARAGE_BIN:-}" ]; then
  export AIRLOCK_REQUIRE_GARAGE="${AIRLOCK_REQUIRE_GARAGE:-1}"
fi
echo "==> cargo test --workspace"
cargo test --workspace

VENV="${AIRLOCK_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  python3 -m venv "$VENV"
fi
echo "==> pip install -r integration-tests/requirements.txt"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r integration-tests/requirements.txt

# The benign scan corpus is written at test time by the real numpy/pandas/scikit-learn/transformers
# (integration-tests/corpus/), current and previous major versions, each in its own venv. A venv is
# reinstalled only when its requirements file changed (a stamp holds the file's hash).
corpus_venv() {
  local dir=$1 req=$2 stamp
  stamp=$(sha256sum "$req" | cut -d' ' -f1)
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$dir/.requirements-sha256" 2>/dev/null)" != "$stamp" ]; then
    echo "==> $dir: pip install -r $req"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$stamp" >"$dir/.requirements-sha256"
  fi
}
corpus_venv .venv-corpus integration-tests/corpus/requirements.txt
corpus_venv .venv-corpus-prev integration-tests/corpus/requirements-previous.txt
export AIRLOCK_CORPUS_PYTHON="${AIRLOCK_CORPUS_PYTHON:-$PWD/.venv-corpus/bin/python}"
export AIRLOCK_CORPUS_PREV_PYTHON="${AIRLOCK_CORPUS_PREV_PYTHON:-$PWD/.venv-corpus-prev/bin/python}"

echo "==> pytest integration-tests"
export AIRLOCK_BIN="${AIRLOCK_BIN:-$PWD/target/debug/airlock}"
"$VENV/bin/python" -m pytest integration-tests -q "$@"
