#!/usr/bin/env bash
# Airlock HF benchmark (a measurement, not a test). In one run, on the same 1 GiB file:
#   1. cold path: hf_hub_download through Airlock (fetch + verify + promote + serve) vs directly from the fake Hub
#   2. warm serving: Airlock (release build) vs nginx (sendfile on, 127.0.0.1, the very same blob file),
#      1 stream and 16 parallel Range streams (curl to /dev/null)
#   3. Airlock's peak RSS (VmHWM from /proc/<pid>/status, plus VmRSS sampled every 0.1 s)
#   4. upstream requests for a 6-file snapshot_download through Airlock vs directly against the fake Hub
# Targets (issue 2): warm >= 0.9x nginx, RSS <= 64 MB, cold <= 1.2x direct, upstream requests <= direct.
#
# Usage: bench/hf-bench.sh   (env: BENCH_SIZE_MB=1024 BENCH_RUNS=3 BENCH_DIR=/tmp/airlock-bench; AIRLOCK_BIN skips the build)
# Installs nginx from Debian if missing; builds `airlock` in release mode; everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${BENCH_SIZE_MB:-1024}
RUNS=${BENCH_RUNS:-3}
DIR=${BENCH_DIR:-/tmp/airlock-bench}
PY=${BENCH_PYTHON:-$ROOT/.venv/bin/python}
STREAMS=16

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'hf-bench: %s\n' "$*" >&2; exit 1; }

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$DIR/nginx/nginx.pid" ]; then kill "$(cat "$DIR/nginx/nginx.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url, seconds
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

# ---- prerequisites -------------------------------------------------------------------------------------
[ -x "$PY" ] || { log "creating .venv"; python3 -m venv "$ROOT/.venv"; PY=$ROOT/.venv/bin/python; }
"$PY" -m pip install --quiet --disable-pip-version-check -r integration-tests/requirements.txt
if ! command -v nginx >/dev/null; then
  log "installing nginx"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -n "${AIRLOCK_BIN:-}" ]; then
  AIRLOCK=$AIRLOCK_BIN # e.g. a release build made elsewhere
else
  log "cargo build --release -p web"
  cargo build --release -p web
  AIRLOCK=$ROOT/target/release/airlock
fi

rm -rf "$DIR"
mkdir -p "$DIR"
BIG=$DIR/big.bin
log "writing a ${SIZE_MB} MiB safetensors file of random data"
# A valid safetensors header, so Airlock's content scanner sees a model file, then random tensor bytes.
"$PY" -c "import sys; sys.path.insert(0, 'integration-tests'); from fake_hub import safetensors_header
sys.stdout.buffer.write(safetensors_header($SIZE_MB * 1024 * 1024))" >"$BIG"
head -c "$((SIZE_MB * 1024 * 1024 - $(stat -c %s "$BIG")))" /dev/urandom >>"$BIG"
BIG_SHA=$(sha256sum "$BIG" | cut -d' ' -f1)
BYTES=$(stat -c %s "$BIG")

# six-file repo: 3 regular (json) + 3 LFS files of 1 MiB
"$PY" - "$DIR/repos.json" <<'EOF'
import json, sys
files = {f"config-{i}.json": {"text": json.dumps({"i": i, "pad": "x" * 300})} for i in range(3)}
files.update({f"model-0000{i}.safetensors": {"size": 1 << 20, "seed": f"six-{i}"} for i in range(3)})
json.dump([{"repo": "bench/six", "files": files}], open(sys.argv[1], "w"))
EOF

# ---- fake Hub (Xet metadata off, so the direct client downloads over plain HTTP like Airlock does) ---------
log "starting the fake Hub (hashing the big file)"
"$PY" integration-tests/fake_hub.py --repo bench/big --serve-file "$BIG=model.safetensors" \
  --repos "$DIR/repos.json" --no-xet --page-size 50 --info-file "$DIR/hub.json" >"$DIR/hub.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 600); do [ -f "$DIR/hub.json" ] && break; sleep 0.1; done
[ -f "$DIR/hub.json" ] || die "fake Hub did not start: $(cat "$DIR/hub.log")"
HUB=$(jget '["hub"]' <"$DIR/hub.json")
CDN_PORT=$(jget '["cdn_port"]' <"$DIR/hub.json")

# ---- Airlock (release) ----------------------------------------------------------------------------------
APORT=$(free_port)
cat >"$DIR/airlock.toml" <<EOF
listen = "127.0.0.1:$APORT"
data_dir = "$DIR/airlock-data"
[huggingface]
upstream = "$HUB"
redirect_hosts = ["127.0.0.1:$CDN_PORT"]
[policy]
mode = "allowlist"
[[policy.allow]]
hf = "bench/*"
EOF
log "starting airlock on 127.0.0.1:$APORT"
RUST_LOG=warn "$AIRLOCK" serve --config "$DIR/airlock.toml" >"$DIR/airlock.log" 2>&1 &
APID=$!
PIDS+=($APID)
wait_http "http://127.0.0.1:$APORT/healthz" 30 || die "airlock did not answer /healthz: $(tail -20 "$DIR/airlock.log")"
"$PY" bench/hf_bench.py rss "$APID" "$DIR/rss.json" &
PIDS+=($!)
AIRLOCK_IDLE_KB=$(awk '/^VmRSS:/ {print $2}' "/proc/$APID/status")

client() { # endpoint, home, args...
  local ep=$1 home=$2
  shift 2
  env -u HF_HUB_DISABLE_XET HF_ENDPOINT="$ep" HF_HOME="$home" HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HUB_DISABLE_PROGRESS_BARS=1 "$PY" bench/hf_bench.py "$@"
}

# ---- 1. cold path vs direct -----------------------------------------------------------------------------
# Direct first: both then read the source file from a warm page cache.
log "cold: direct from the fake Hub (x$RUNS)"
direct_times=()
for r in $(seq "$RUNS"); do
  out=$(client "$HUB" "$DIR/home-direct-$r" download bench/big model.safetensors)
  [ "$(jget '["sha256"]' <<<"$out")" = "$BIG_SHA" ] || die "direct download: wrong bytes"
  direct_times+=("$(jget '["seconds"]' <<<"$out")")
  rm -rf "$DIR/home-direct-$r"
done
log "cold: through Airlock (x$RUNS, Airlock's store emptied between runs)"
cold_times=()
for r in $(seq "$RUNS"); do
  if [ "$r" -gt 1 ]; then # restart Airlock on an empty store, keeping the RSS sampler on the first process
    kill "$APID"; wait "$APID" 2>/dev/null || true
    rm -rf "$DIR/airlock-data"
    RUST_LOG=warn "$AIRLOCK" serve --config "$DIR/airlock.toml" >>"$DIR/airlock.log" 2>&1 &
    APID=$!
    PIDS+=($APID)
    wait_http "http://127.0.0.1:$APORT/healthz" 30 || die "airlock restart failed"
    "$PY" bench/hf_bench.py rss "$APID" "$DIR/rss-$r.json" &
    PIDS+=($!)
  fi
  out=$(client "http://127.0.0.1:$APORT" "$DIR/home-cold-$r" download bench/big model.safetensors) ||
    die "cold download through Airlock failed: $out $(tail -20 "$DIR/airlock.log")"
  [ "$(jget '["sha256"]' <<<"$out")" = "$BIG_SHA" ] || die "cold download through Airlock: wrong bytes"
  cold_times+=("$(jget '["seconds"]' <<<"$out")")
  rm -rf "$DIR/home-cold-$r"
done
DIRECT=$(printf '%s\n' "${direct_times[@]}" | median)
COLD=$(printf '%s\n' "${cold_times[@]}" | median)

# ---- 2. warm serving vs nginx on the same blob -----------------------------------------------------------
BLOB=$(find "$DIR/airlock-data/blobs" -type f -name "$BIG_SHA" | head -1)
[ -n "$BLOB" ] || die "no promoted blob named $BIG_SHA under $DIR/airlock-data/blobs"
NPORT=$(free_port)
mkdir -p "$DIR/nginx/logs"
cat >"$DIR/nginx/nginx.conf" <<EOF
user root;
worker_processes auto;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  server {
    listen 127.0.0.1:$NPORT;
    location = /blob { alias $BLOB; default_type application/octet-stream; }
  }
}
EOF
"$NGINX" -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" || die "nginx failed to start"
wait_http "http://127.0.0.1:$NPORT/blob" 10 >/dev/null || true
A_URL="http://127.0.0.1:$APORT/bench/big/resolve/main/model.safetensors"
N_URL="http://127.0.0.1:$NPORT/blob"
curl -fsS -o /dev/null "$A_URL" || die "warm GET through Airlock failed"

one_stream() { curl -fsS -o /dev/null -w '%{time_total}\n' "$1"; }
parallel_ranges() { # url -> wall seconds for STREAMS parallel Range GETs covering the file
  local url=$1 step=$(((BYTES + STREAMS - 1) / STREAMS)) i a b t0 t1 pids=()
  t0=$(date +%s.%N)
  for ((i = 0; i < STREAMS; i++)); do
    a=$((i * step)); b=$(((i + 1) * step - 1)); [ "$b" -ge "$BYTES" ] && b=$((BYTES - 1))
    curl -fsS -o /dev/null -r "$a-$b" "$url" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || die "a range stream failed on $url"; done
  t1=$(date +%s.%N)
  calc "$t1 - $t0"
}
log "warm: 1 stream and $STREAMS range streams, Airlock vs nginx (x$RUNS, alternating)"
a1=() n1=() a16=() n16=()
for r in $(seq "$RUNS"); do
  n1+=("$(one_stream "$N_URL")"); a1+=("$(one_stream "$A_URL")")
  n16+=("$(parallel_ranges "$N_URL")"); a16+=("$(parallel_ranges "$A_URL")")
done
A1=$(printf '%s\n' "${a1[@]}" | median); N1=$(printf '%s\n' "${n1[@]}" | median)
A16=$(printf '%s\n' "${a16[@]}" | median); N16=$(printf '%s\n' "${n16[@]}" | median)

# ---- 4. upstream requests for a 6-file snapshot ---------------------------------------------------------
log "snapshot of bench/six: direct vs through Airlock (upstream requests)"
"$PY" bench/hf_bench.py reset "$HUB" >/dev/null
client "$HUB" "$DIR/home-six-direct" snapshot bench/six >/dev/null
"$PY" bench/hf_bench.py stats "$HUB" >"$DIR/six-direct.json"
"$PY" bench/hf_bench.py reset "$HUB" >/dev/null
client "http://127.0.0.1:$APORT" "$DIR/home-six-airlock" snapshot bench/six >"$DIR/six-airlock-client.json" ||
  die "snapshot through Airlock failed"
"$PY" bench/hf_bench.py stats "$HUB" >"$DIR/six-airlock.json"
UP_DIRECT=$(jget '["total"]' <"$DIR/six-direct.json")
UP_AIRLOCK=$(jget '["total"]' <"$DIR/six-airlock.json")

# ---- 3. RSS ---------------------------------------------------------------------------------------------
touch "$DIR/rss.json.stop"
sleep 0.3
PEAK_KB=0
for f in "$DIR"/rss*.json; do
  k=$(jget '["vmhwm_kb"]' <"$f"); s=$(jget '["peak_rss_kb"]' <"$f")
  [ "$k" -gt "$PEAK_KB" ] && PEAK_KB=$k
  [ "$s" -gt "$PEAK_KB" ] && PEAK_KB=$s
done
HWM_NOW=$(awk '/^VmHWM:/ {print $2}' "/proc/$APID/status")
[ "$HWM_NOW" -gt "$PEAK_KB" ] && PEAK_KB=$HWM_NOW

# ---- report ---------------------------------------------------------------------------------------------
MIB=$(calc "$BYTES / 1048576")
mibs() { calc "$MIB / $1"; }
ratio() { calc "$1 / $2"; }
{
  echo
  echo "Airlock HF benchmark — ${SIZE_MB} MiB file, median of $RUNS runs, $(nproc) cores, $(date -u +%FT%TZ)"
  printf '%-44s %12s %12s %8s %s\n' "measure" "Airlock" "reference" "ratio" "target"
  printf '%-44s %9.1f s  %9.1f s  %7.2fx %s\n' "cold hf_hub_download (Airlock vs direct)" "$COLD" "$DIRECT" \
    "$(ratio "$COLD" "$DIRECT")" "<= 1.2x"
  printf '%-44s %7.0f MiB/s %7.0f MiB/s %7.2fx %s\n' "warm, 1 stream (Airlock vs nginx)" "$(mibs "$A1")" \
    "$(mibs "$N1")" "$(ratio "$N1" "$A1")" ">= 0.9x"
  printf '%-44s %7.0f MiB/s %7.0f MiB/s %7.2fx %s\n' "warm, $STREAMS Range streams (Airlock vs nginx)" \
    "$(mibs "$A16")" "$(mibs "$N16")" "$(ratio "$N16" "$A16")" ">= 0.9x"
  printf '%-44s %9.1f MB %12s %8s %s\n' "Airlock peak RSS (VmHWM; idle $((AIRLOCK_IDLE_KB / 1024)) MB)" \
    "$(calc "$PEAK_KB / 1024")" "-" "-" "<= 64 MB"
  printf '%-44s %12s %12s %7.2fx %s\n' "upstream requests, 6-file snapshot" "$UP_AIRLOCK" "$UP_DIRECT" \
    "$(ratio "$UP_AIRLOCK" "$UP_DIRECT")" "<= 1x"
  echo
  echo "runs (s): cold ${cold_times[*]} | direct ${direct_times[*]} | A1 ${a1[*]} | N1 ${n1[*]} | A16 ${a16[*]} | N16 ${n16[*]}"
  echo "upstream requests through Airlock: $(jget '["by_route"]' <"$DIR/six-airlock.json")"
  echo "upstream requests direct:          $(jget '["by_route"]' <"$DIR/six-direct.json")"
} | tee "$DIR/report.txt"
