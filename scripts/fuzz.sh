#!/usr/bin/env bash
# Runs the scanner's cargo-fuzz targets (fuzz/): the dispatcher and the pickle, zip, safetensors,
# GGUF and npy parsers. The property is "no panic, no unbounded allocation, no timeout" on any input.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET…]   (default: 60 s each, every target)
#        scripts/fuzz.sh 0 http   (the HTTP route/header parsers; FUZZ_EXECS per parser, default 10 M)
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly-only flags (-Zsanitizer);
# on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them, which this script sets unless told otherwise.
# Seeds come from the labelled corpus (verifier/tests/fixtures/scan-corpus) so the fuzzer starts
# from real formats. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-60}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(scan_any pickle zip safetensors gguf npy)
fi
# The HTTP route and header parsers of the front doors live in the `airlock` binary crate, which a
# cargo-fuzz crate cannot link: they are fuzzed by a stable `cargo test` harness (web/src/parse_fuzz.rs),
# FUZZ_EXECS inputs per parser (default 10 M), release build.
if [ "${TARGETS[*]}" = "http" ]; then
  echo "==> fuzz the HTTP route/header parsers, ${FUZZ_EXECS:-10000000} inputs each"
  AIRLOCK_FUZZ_EXECS=${FUZZ_EXECS:-10000000} cargo test --release -p web --bin airlock parse_fuzz -- --nocapture --test-threads 1
  exit $?
fi
command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo-fuzz missing: cargo install cargo-fuzz" >&2; exit 2; }
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}
SEEDS=verifier/tests/fixtures/scan-corpus/corpus

seed() { # target -> seed directory (inputs with the routing prefix stripped where the target adds it)
  local t=$1 dir=fuzz/corpus/$1
  mkdir -p "$dir"
  [ -n "$(ls -A "$dir")" ] && return
  case $t in
    scan_any) find "$SEEDS" -type f -exec cp {} "$dir/" \; ;;
    pickle) for f in "$SEEDS"/pickle/* "$SEEDS"/benign_pickle/*; do tail -c +3 "$f" > "$dir/$(basename "$f")"; done ;;
    zip) for f in "$SEEDS"/torch/*.pt "$SEEDS"/benign_torch/*.pt "$SEEDS"/archive/*; do tail -c +5 "$f" > "$dir/$(basename "$f")"; done ;;
    gguf) for f in "$SEEDS"/gguf/* "$SEEDS"/benign_gguf/*; do tail -c +5 "$f" > "$dir/$(basename "$f")"; done ;;
    npy) for f in "$SEEDS"/numpy/*.npy "$SEEDS"/benign_numpy/*.npy; do tail -c +7 "$f" > "$dir/$(basename "$f")"; done ;;
    safetensors) for f in "$SEEDS"/safetensors/* "$SEEDS"/benign_safetensors/*; do
        { head -c 8 "$f"; tail -c +10 "$f"; } > "$dir/$(basename "$f")"; done ;;
  esac
}

status=0
for t in "${TARGETS[@]}"; do
  seed "$t"
  echo "==> fuzz $t for ${SECS}s"
  # -rss_limit_mb catches unbounded allocation; -timeout catches runaway loops.
  if ! (cd fuzz && cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$SECS" -rss_limit_mb=1024 -timeout=10 -max_len=65536); then
    echo "fuzz.sh: $t found a failure (see fuzz/artifacts/$t/)" >&2
    status=1
  fi
done
exit $status
