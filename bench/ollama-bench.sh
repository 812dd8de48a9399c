#!/usr/bin/env bash
# Airlock Ollama benchmark (a measurement, not a test). In one run, on the same 1 GiB GGUF layer:
#   the ollama pull pattern (shared/docs/ollama-protocol.md §1.3) — HEAD for the size, one GET whose answer carries
#   Location, then 11 parallel 100 MB Range GETs of that URL (curl to /dev/null) — through a warm Airlock (release
#   build) vs straight from docker-registry. distribution answers a blob GET with a plain 200 and no Location (trap 1),
#   so on its side the "direct URL" is the blob URL itself: same bytes, same ranges, one fewer round trip.
# Reported: MB/s (MB = 10^6 bytes, median of BENCH_RUNS), Airlock's peak RSS (VmHWM, reset after the cold fetch so
# the warm-serving peak shows separately), CPU-seconds per GiB served by each server (utime+stime from
# /proc/<pid>/stat around its own runs only), and the ratios.
# Targets (issue 4): throughput >= 0.9x docker-registry, Airlock RSS <= 64 MB, CPU-s/GiB <= docker-registry's.
#
# Usage: bench/ollama-bench.sh   (env: BENCH_SIZE_MB=1024 BENCH_RUNS=5 BENCH_DIR=/tmp/airlock-ollama-bench;
#                                 AIRLOCK_BIN skips the release build)
# Installs docker-registry from Debian if missing; everything on 127.0.0.1; the registry is our own instance.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${BENCH_SIZE_MB:-1024}
RUNS=${BENCH_RUNS:-5}
DIR=${BENCH_DIR:-/tmp/airlock-ollama-bench}
PY=${BENCH_PYTHON:-python3}
NAME=library/bench
MIN_PART=100000000  # download.go: parts of size/16 clamped to [100 MB, 1000 MB]
MAX_PART=1000000000

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ollama-bench: %s\n' "$*" >&2; exit 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
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
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of the whole process (all threads)
kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# ---- prerequisites -------------------------------------------------------------------------------------
if ! command -v docker-registry >/dev/null; then
  log "installing docker-registry"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null; }
fi
REGISTRY_BIN=$(command -v docker-registry || echo /usr/bin/docker-registry)
if [ -n "${AIRLOCK_BIN:-}" ]; then
  AIRLOCK=$AIRLOCK_BIN
else
  log "cargo build --release -p web"
  cargo build --release -p web
  AIRLOCK=$ROOT/target/release/airlock
fi
TICK=$(getconf CLK_TCK)

rm -rf "$DIR"
mkdir -p "$DIR"
BIG=$DIR/model.gguf
TOTAL=$((SIZE_MB * 1024 * 1024))
log "writing a ${SIZE_MB} MiB GGUF (one F32 tensor of random data)"
"$PY" bench/ollama_bench.py gguf-header "$TOTAL" >"$BIG"
head -c "$((TOTAL - $(stat -c %s "$BIG")))" /dev/urandom >>"$BIG"

# ---- docker-registry ------------------------------------------------------------------------------------
RPORT=$(free_port)
cat >"$DIR/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/registry
http:
  addr: 127.0.0.1:$RPORT
EOF
"$REGISTRY_BIN" serve "$DIR/registry.yml" >"$DIR/registry.log" 2>&1 &
RPID=$!
PIDS+=($RPID)
wait_http "http://127.0.0.1:$RPORT/v2/" 30 || die "docker-registry did not start: $(tail -5 "$DIR/registry.log")"
log "pushing $NAME:latest into docker-registry"
PUSHED=$("$PY" bench/ollama_bench.py push "http://127.0.0.1:$RPORT" "$NAME" latest "$BIG")
MODEL=$(jget '["model"]' <<<"$PUSHED")
BYTES=$(jget '["size"]' <<<"$PUSHED")
rm -f "$BIG" # the registry holds the bytes now; keep one copy on disk

# ---- Airlock (release) ----------------------------------------------------------------------------------
APORT=$(free_port)
cat >"$DIR/airlock.toml" <<EOF
listen = "127.0.0.1:$APORT"
data_dir = "$DIR/airlock-data"
[ollama]
upstream = "http://127.0.0.1:$RPORT"
redirect_hosts = []
[policy]
mode = "allowlist"
[[policy.allow]]
ollama = "$NAME"
EOF
log "starting airlock on 127.0.0.1:$APORT"
RUST_LOG=warn "$AIRLOCK" serve --config "$DIR/airlock.toml" >"$DIR/airlock.log" 2>&1 &
APID=$!
PIDS+=($APID)
wait_http "http://127.0.0.1:$APORT/healthz" 30 || die "airlock did not answer /healthz: $(tail -20 "$DIR/airlock.log")"
AIRLOCK_IDLE_KB=$(kb "$APID" VmRSS)

A_BLOB="http://127.0.0.1:$APORT/v2/$NAME/blobs/$MODEL"
R_BLOB="http://127.0.0.1:$RPORT/v2/$NAME/blobs/$MODEL"
ACCEPT="Accept: application/vnd.docker.distribution.manifest.v2+json"

# ---- cold fetch (warm-up, reported for information) ------------------------------------------------------
log "cold: Airlock fetches, verifies and scans the ${SIZE_MB} MiB layer"
t0=$(date +%s.%N)
curl -fsS -o /dev/null -H "$ACCEPT" "http://127.0.0.1:$APORT/v2/$NAME/manifests/latest" || die "manifest through Airlock failed"
for _ in $(seq 60); do # a blob GET waits up to 25 s, then 503 + Retry-After
  code=$(curl -sS -o /dev/null -w '%{http_code}' "$A_BLOB") || true
  [ "$code" = 307 ] && break
  [ "$code" = 503 ] || die "cold blob GET answered $code: $(tail -5 "$DIR/airlock.log")"
done
[ "$code" = 307 ] || die "Airlock never finished the cold fetch"
COLD=$(calc "$(date +%s.%N) - $t0")
COLD_HWM_KB=$(kb "$APID" VmHWM)
GOT=$(curl -fsS -L "$A_BLOB" | sha256sum | cut -d' ' -f1)
[ "sha256:$GOT" = "$MODEL" ] || die "Airlock served wrong bytes: sha256:$GOT, want $MODEL"
# Reset the peak-RSS counters (clear_refs 5), so VmHWM below covers warm serving only.
echo 5 >"/proc/$APID/clear_refs" 2>/dev/null || true
echo 5 >"/proc/$RPID/clear_refs" 2>/dev/null || true

# ---- the ollama pattern ---------------------------------------------------------------------------------
# pull URL -> wall seconds. HEAD (Content-Length), one GET for the Location (Airlock: 307 to the other hostname;
# distribution: 200 without Location, so its blob URL is used), then the parts in parallel (at most 16).
pull() {
  local url=$1 t0 size loc code part off n=0 pids=() outs=() i got=0
  t0=$(date +%s.%N)
  size=$(curl -fsS -I "$url" | tr -d '\r' | awk 'tolower($1) == "content-length:" {print $2}')
  [ "$size" = "$BYTES" ] || die "HEAD $url: Content-Length '$size', want $BYTES"
  read -r code loc < <(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}\n' "$url")
  case "$code" in
    307) ;;
    200) loc=$url ;;
    *) die "GET $url answered $code" ;;
  esac
  part=$((size / 16)); [ "$part" -lt "$MIN_PART" ] && part=$MIN_PART; [ "$part" -gt "$MAX_PART" ] && part=$MAX_PART
  for ((off = 0; off < size; off += part)); do
    local end=$((off + part - 1)); [ "$end" -ge "$size" ] && end=$((size - 1))
    curl -sS -o /dev/null -w '%{http_code} %{size_download}\n' -r "$off-$end" "$loc" >"$DIR/part-$n" &
    pids+=($!); n=$((n + 1))
  done
  for p in "${pids[@]}"; do wait "$p" || die "a range GET of $loc failed"; done
  for ((i = 0; i < n; i++)); do
    read -r code got_i <"$DIR/part-$i"
    [ "$code" = 206 ] || die "range part $i of $loc answered $code"
    got=$((got + got_i))
  done
  [ "$got" = "$size" ] || die "parts of $loc added up to $got bytes, want $size"
  calc "$(date +%s.%N) - $t0"
}

log "warm: the ollama pattern, Airlock vs docker-registry (x$RUNS, alternating which goes first)"
a_t=() r_t=() A_CPU=0 R_CPU=0
run_registry() {
  local c0 t
  c0=$(cpu_ticks "$RPID"); t=$(pull "$R_BLOB") || die "pull from docker-registry failed"
  R_CPU=$((R_CPU + $(cpu_ticks "$RPID") - c0)); r_t+=("$t")
}
run_airlock() {
  local c0 t
  c0=$(cpu_ticks "$APID"); t=$(pull "$A_BLOB") || die "pull through Airlock failed"
  A_CPU=$((A_CPU + $(cpu_ticks "$APID") - c0)); a_t+=("$t")
}
for r in $(seq "$RUNS"); do
  if [ $((r % 2)) = 1 ]; then run_registry; run_airlock; else run_airlock; run_registry; fi
done
PARTS=$(ls "$DIR"/part-* | wc -l)
A=$(printf '%s\n' "${a_t[@]}" | median)
R=$(printf '%s\n' "${r_t[@]}" | median)
A_HWM_KB=$(kb "$APID" VmHWM)
R_HWM_KB=$(kb "$RPID" VmHWM)
GIB_SERVED=$(calc "$RUNS * $BYTES / 1073741824")
A_CPU_GIB=$(calc "$A_CPU / $TICK / $GIB_SERVED")
R_CPU_GIB=$(calc "$R_CPU / $TICK / $GIB_SERVED")

# ---- report ---------------------------------------------------------------------------------------------
mbs() { calc "$BYTES / 1000000 / $1"; }
{
  echo
  echo "Airlock Ollama benchmark — ${SIZE_MB} MiB GGUF layer, $PARTS parallel Range parts, median of $RUNS runs," \
    "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
  printf '%-48s %12s %14s %8s %s\n' "measure" "Airlock" "docker-registry" "ratio" "target"
  printf '%-48s %7.0f MB/s %9.0f MB/s %7.2fx %s\n' "ollama pattern, warm (HEAD, GET, ranges)" "$(mbs "$A")" \
    "$(mbs "$R")" "$(calc "$R / $A")" ">= 0.9x"
  printf '%-48s %9.1f MB %11.1f MB %8s %s\n' "peak RSS while serving (VmHWM)" "$(calc "$A_HWM_KB / 1024")" \
    "$(calc "$R_HWM_KB / 1024")" "-" "Airlock <= 64 MB"
  printf '%-48s %9.2f s  %11.2f s  %7.2fx %s\n' "CPU-seconds per GiB served" "$A_CPU_GIB" "$R_CPU_GIB" \
    "$(calc "($R_CPU_GIB > 0) ? $A_CPU_GIB / $R_CPU_GIB : 0")" "<= 1x"
  echo
  echo "cold fetch through Airlock (upstream GET + sha256 + scan + promote): $COLD s;" \
    "Airlock peak RSS during it $(calc "$COLD_HWM_KB / 1024") MB; idle $(calc "$AIRLOCK_IDLE_KB / 1024") MB"
  echo "runs (s): Airlock ${a_t[*]} | docker-registry ${r_t[*]}"
} | tee "$DIR/report.txt"
