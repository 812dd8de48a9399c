#!/usr/bin/env bash
# Airlock air-gap benchmark (a measurement, not a test). In one run, over the same 2 GiB model:
#   export: `airlock export` of the model (read the blob, hash, write parts, fsync) vs `tar cf` of the same
#           blob file followed by `sync` of the tar (both end with the bytes durable on disk)
#   import: `airlock import` of that bundle into an empty offline store (read parts in place, hash into
#           quarantine, fsync, scan, promote) vs `sha256sum` over the same part files
# Targets (issue 10): export >= 0.8x tar throughput, import >= 0.8x sha256sum throughput.
#
# Usage: bench/airgap-bench.sh   (env: BENCH_SIZE_MB=2048 BENCH_RUNS=3 BENCH_DIR=/tmp/airlock-airgap-bench;
#        AIRLOCK_BIN skips the release build). Everything on 127.0.0.1; needs ~4x the size in free space.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${BENCH_SIZE_MB:-2048}
RUNS=${BENCH_RUNS:-3}
DIR=${BENCH_DIR:-/tmp/airlock-airgap-bench}
PY=${BENCH_PYTHON:-$ROOT/.venv/bin/python}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'airgap-bench: %s\n' "$*" >&2; exit 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
calc() { awk "BEGIN { print $* }"; }
jget() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }
now() { date +%s.%N; }

[ -x "$PY" ] || { log "creating .venv"; python3 -m venv "$ROOT/.venv"; PY=$ROOT/.venv/bin/python; }
"$PY" -m pip install --quiet --disable-pip-version-check -r integration-tests/requirements.txt
if [ -n "${AIRLOCK_BIN:-}" ]; then
  AIRLOCK=$AIRLOCK_BIN
else
  log "cargo build --release -p web"
  cargo build --release -p web
  AIRLOCK=$ROOT/target/release/airlock
fi

rm -rf "$DIR"
mkdir -p "$DIR"
BIG=$DIR/big.bin
log "writing a ${SIZE_MB} MiB safetensors file of random data"
"$PY" -c "import sys; sys.path.insert(0, 'integration-tests'); from fake_hub import safetensors_header
sys.stdout.buffer.write(safetensors_header($SIZE_MB * 1024 * 1024))" >"$BIG"
head -c "$((SIZE_MB * 1024 * 1024 - $(stat -c %s "$BIG")))" /dev/urandom >>"$BIG"
BYTES=$(stat -c %s "$BIG")

log "starting the fake Hub (hashing the big file)"
"$PY" integration-tests/fake_hub.py --repo bench/big --serve-file "$BIG=model.safetensors" \
  --no-xet --info-file "$DIR/hub.json" >"$DIR/hub.log" 2>&1 &
HUB_PID=$!
PIDS+=($HUB_PID)
for _ in $(seq 600); do [ -f "$DIR/hub.json" ] && break; sleep 0.1; done
[ -f "$DIR/hub.json" ] || die "fake Hub did not start: $(cat "$DIR/hub.log")"
HUB=$(jget '["hub"]' <"$DIR/hub.json")
CDN_PORT=$(jget '["cdn_port"]' <"$DIR/hub.json")

# ---- the connected mirror, holding the model --------------------------------------------------------------
APORT=$(free_port)
cat >"$DIR/connected.toml" <<EOF
listen = "127.0.0.1:$APORT"
data_dir = "$DIR/connected"
[huggingface]
upstream = "$HUB"
redirect_hosts = ["127.0.0.1:$CDN_PORT"]
[policy]
mode = "allowlist"
[[policy.allow]]
hf = "bench/*"
EOF
RUST_LOG=warn "$AIRLOCK" serve --config "$DIR/connected.toml" >"$DIR/connected.log" 2>&1 &
APID=$!
PIDS+=($APID)
wait_http "http://127.0.0.1:$APORT/healthz" 30 || die "airlock did not start: $(tail -20 "$DIR/connected.log")"
log "filling the connected mirror (one download through it)"
env -u HF_HUB_DISABLE_XET HF_ENDPOINT="http://127.0.0.1:$APORT" HF_HOME="$DIR/home" HF_HUB_DISABLE_TELEMETRY=1 \
  HF_HUB_DISABLE_PROGRESS_BARS=1 "$PY" bench/hf_bench.py download bench/big model.safetensors >/dev/null
rm -rf "$DIR/home"
kill "$APID"; wait "$APID" 2>/dev/null || true
kill "$HUB_PID" 2>/dev/null || true
BLOB=$(find "$DIR/connected/blobs" -type f -size +1M | head -1)
[ "$(stat -c %s "$BLOB")" = "$BYTES" ] || die "the model is not in the connected store"

cat >"$DIR/offline.toml" <<EOF
data_dir = "$DIR/offline"
offline = true
[airgap]
trusted_exporters = ["$DIR/connected/mirror.pub"]
EOF

export_s=(); tar_s=(); import_s=(); sum_s=()
for r in $(seq "$RUNS"); do
  log "run $r/$RUNS: tar cf + sync"
  rm -rf "$DIR/tar" "$DIR/bundle" "$DIR/offline"; mkdir -p "$DIR/tar"
  t0=$(now); tar cf "$DIR/tar/model.tar" -C "$(dirname "$BLOB")" "$(basename "$BLOB")"; sync "$DIR/tar/model.tar"; t1=$(now)
  tar_s+=("$(calc "$t1 - $t0")")
  rm -rf "$DIR/tar"
  log "run $r/$RUNS: airlock export"
  t0=$(now); RUST_LOG=warn "$AIRLOCK" export --config "$DIR/connected.toml" --all --out "$DIR/bundle" >/dev/null; t1=$(now)
  export_s+=("$(calc "$t1 - $t0")")
  log "run $r/$RUNS: sha256sum over the parts"
  t0=$(now); sha256sum "$DIR"/bundle/part-* >/dev/null; t1=$(now)
  sum_s+=("$(calc "$t1 - $t0")")
  log "run $r/$RUNS: airlock import"
  t0=$(now); RUST_LOG=warn "$AIRLOCK" import "$DIR/bundle" --config "$DIR/offline.toml" >/dev/null; t1=$(now)
  import_s+=("$(calc "$t1 - $t0")")
done

mb() { calc "$BYTES / 1048576 / $1"; }
T=$(printf '%s\n' "${tar_s[@]}" | median); E=$(printf '%s\n' "${export_s[@]}" | median)
S=$(printf '%s\n' "${sum_s[@]}" | median); I=$(printf '%s\n' "${import_s[@]}" | median)
echo
echo "air-gap benchmark: $((BYTES / 1048576)) MiB model, median of $RUNS run(s)"
printf '  tar cf + sync   %7.2f s  %7.1f MiB/s\n' "$T" "$(mb "$T")"
printf '  airlock export  %7.2f s  %7.1f MiB/s  -> %.2fx tar (target >= 0.8)\n' "$E" "$(mb "$E")" "$(calc "$T / $E")"
printf '  sha256sum       %7.2f s  %7.1f MiB/s\n' "$S" "$(mb "$S")"
printf '  airlock import  %7.2f s  %7.1f MiB/s  -> %.2fx sha256sum (target >= 0.8)\n' "$I" "$(mb "$I")" "$(calc "$S / $I")"
rm -rf "$DIR"
