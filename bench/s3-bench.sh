#!/usr/bin/env bash
# Airlock blob-backend benchmark (a measurement, not a test). In one run, on the same file:
#   warm serving through one replica with `[store] backend = "s3"` (blobs in a single-node Garage on
#   127.0.0.1) vs the same replica build with the local backend (blobs on the data disk): one whole-file
#   stream and 16 parallel Range streams (curl to /dev/null), median of BENCH_RUNS; the ratio s3/local; and
#   the s3 replica with `[store] cache_dir` (hot blobs served from a verified local copy).
#   Each replica's peak RSS (VmHWM) after the warm runs.
# The figures go into the closing note of issue 13; there is no target for this first increment (the
# issue's targets are for three replicas).
#
# Usage: bench/s3-bench.sh   (env: BENCH_SIZE_MB=256 BENCH_RUNS=3 BENCH_DIR=/tmp/airlock-s3-bench;
#        AIRLOCK_BIN skips the release build; AIRLOCK_GARAGE_BIN or garage on PATH). Everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${BENCH_SIZE_MB:-256}
RUNS=${BENCH_RUNS:-3}
DIR=${BENCH_DIR:-/tmp/airlock-s3-bench}
PY=${BENCH_PYTHON:-$ROOT/.venv/bin/python}
GARAGE=${AIRLOCK_GARAGE_BIN:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
STREAMS=16

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 's3-bench: %s\n' "$*" >&2; exit 1; }

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

[ -x "$GARAGE" ] || die "no garage binary (cargo install garage --locked --version 2.5.0 --no-default-features --features bundled-libs,sqlite)"
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

# ---- Garage: one node, one bucket, one key ---------------------------------------------------------------
RPC=$(free_port); S3=$(free_port); ADM=$(free_port)
cat >"$DIR/garage.toml" <<EOF
metadata_dir = "$DIR/garage/meta"
data_dir = "$DIR/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC"
rpc_public_addr = "127.0.0.1:$RPC"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3"
[admin]
api_bind_addr = "127.0.0.1:$ADM"
EOF
g() { "$GARAGE" -c "$DIR/garage.toml" "$@"; }
"$GARAGE" -c "$DIR/garage.toml" server >"$DIR/garage.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do NODE=$(g node id -q 2>/dev/null) && break; sleep 0.1; done
[ -n "${NODE:-}" ] || die "garage did not start: $(tail -20 "$DIR/garage.log")"
g layout assign -z dc1 -c 10G "${NODE%%@*}" >/dev/null
g layout apply --version 1 >/dev/null
g bucket create airlock >/dev/null
KEY=$(g key create bench)
export AWS_ACCESS_KEY_ID=$(awk '/Key ID:/ {print $3}' <<<"$KEY")
export AWS_SECRET_ACCESS_KEY=$(awk '/Secret key:/ {print $3}' <<<"$KEY")
g bucket allow --read --write --owner airlock --key bench >/dev/null

# ---- the fake Hub with one big file -----------------------------------------------------------------------
BIG=$DIR/big.bin
log "writing a ${SIZE_MB} MiB safetensors file of random data"
"$PY" -c "import sys; sys.path.insert(0, 'integration-tests'); from fake_hub import safetensors_header
sys.stdout.buffer.write(safetensors_header($SIZE_MB * 1024 * 1024))" >"$BIG"
head -c "$((SIZE_MB * 1024 * 1024 - $(stat -c %s "$BIG")))" /dev/urandom >>"$BIG"
BYTES=$(stat -c %s "$BIG")
"$PY" integration-tests/fake_hub.py --repo bench/big --serve-file "$BIG=model.safetensors" \
  --no-xet --info-file "$DIR/hub.json" >"$DIR/hub.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 600); do [ -f "$DIR/hub.json" ] && break; sleep 0.1; done
[ -f "$DIR/hub.json" ] || die "fake Hub did not start: $(cat "$DIR/hub.log")"
HUB=$(jget '["hub"]' <"$DIR/hub.json")
CDN_PORT=$(jget '["cdn_port"]' <"$DIR/hub.json")

# ---- two replicas: local blobs, and blobs in Garage ---------------------------------------------------------
declare -A PORT PID
for kind in local s3 s3cache; do
  PORT[$kind]=$(free_port)
  store='[store]
backend = "local"'
  if [ "$kind" != local ]; then
    store="[store]
backend = \"s3\"
bucket = \"airlock\"
endpoint = \"http://127.0.0.1:$S3\"
region = \"garage\""
  fi
  if [ "$kind" = s3cache ]; then
    store="$store
cache_dir = \"$DIR/cache\""
  fi
  cat >"$DIR/$kind.toml" <<EOF
listen = "127.0.0.1:${PORT[$kind]}"
data_dir = "$DIR/$kind-data"
[huggingface]
upstream = "$HUB"
redirect_hosts = ["127.0.0.1:$CDN_PORT"]
[policy]
mode = "allowlist"
[[policy.allow]]
hf = "bench/*"
$store
EOF
  RUST_LOG=warn "$AIRLOCK" serve --config "$DIR/$kind.toml" >"$DIR/$kind.log" 2>&1 &
  PID[$kind]=$!
  PIDS+=(${PID[$kind]})
  wait_http "http://127.0.0.1:${PORT[$kind]}/healthz" 30 || die "airlock ($kind) did not start: $(tail -20 "$DIR/$kind.log")"
  log "filling the $kind replica (one download through it)"
  env -u HF_HUB_DISABLE_XET HF_ENDPOINT="http://127.0.0.1:${PORT[$kind]}" HF_HOME="$DIR/home-$kind" \
    HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1 "$PY" bench/hf_bench.py download bench/big \
    model.safetensors >/dev/null
  rm -rf "$DIR/home-$kind"
done
[ -z "$(find "$DIR/s3-data/blobs" -type f 2>/dev/null)" ] || die "the s3 replica wrote blobs to its data dir"

whole() { # port -> seconds for one full GET
  local t0 t1
  t0=$(now); curl -fsS -o /dev/null "http://127.0.0.1:$1/bench/big/resolve/main/model.safetensors"; t1=$(now)
  calc "$t1 - $t0"
}
ranged() { # port -> seconds for STREAMS parallel Range GETs covering the file
  local part=$((BYTES / STREAMS)) i t0 t1 pids=()
  t0=$(now)
  for ((i = 0; i < STREAMS; i++)); do
    local a=$((i * part)) b=$(((i + 1) * part - 1))
    ((i == STREAMS - 1)) && b=$((BYTES - 1))
    curl -fsS -o /dev/null -r "$a-$b" "http://127.0.0.1:$1/bench/big/resolve/main/model.safetensors" &
    pids+=($!)
  done
  wait "${pids[@]}"
  t1=$(now)
  calc "$t1 - $t0"
}

declare -A W R
for kind in local s3 s3cache; do
  whole "${PORT[$kind]}" >/dev/null # warm-up (and, with the cache, the copy)
  if [ "$kind" = s3cache ]; then
    for _ in $(seq 600); do [ "$(find "$DIR/cache" -type f -size "${BYTES}c" 2>/dev/null | wc -l)" = 1 ] && break; sleep 0.1; done
  fi
  w=(); r=()
  for i in $(seq "$RUNS"); do
    log "run $i/$RUNS: $kind"
    w+=("$(whole "${PORT[$kind]}")")
    r+=("$(ranged "${PORT[$kind]}")")
  done
  W[$kind]=$(printf '%s\n' "${w[@]}" | median)
  R[$kind]=$(printf '%s\n' "${r[@]}" | median)
done
mbs() { calc "$BYTES / 1048576 / $1"; }
hwm() { awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

echo
echo "blob-backend benchmark: $((BYTES / 1048576)) MiB file, warm, one replica each, median of $RUNS run(s)"
printf '  %-30s %9s %9s %9s %9s %9s\n' "" "local" "s3" "s3/local" "s3+cache" "/local"
printf '  %-30s %9.0f %9.0f %9.2f %9.0f %9.2f\n' "1 stream (MiB/s)" "$(mbs "${W[local]}")" "$(mbs "${W[s3]}")" \
  "$(calc "${W[local]} / ${W[s3]}")" "$(mbs "${W[s3cache]}")" "$(calc "${W[local]} / ${W[s3cache]}")"
printf '  %-30s %9.0f %9.0f %9.2f %9.0f %9.2f\n' "$STREAMS Range streams (MiB/s)" "$(mbs "${R[local]}")" \
  "$(mbs "${R[s3]}")" "$(calc "${R[local]} / ${R[s3]}")" "$(mbs "${R[s3cache]}")" "$(calc "${R[local]} / ${R[s3cache]}")"
printf '  %-30s %9s %9s %9s %9s\n' "peak RSS (VmHWM, MB)" "$(hwm "${PID[local]}")" "$(hwm "${PID[s3]}")" "" \
  "$(hwm "${PID[s3cache]}")"
rm -rf "$DIR"
