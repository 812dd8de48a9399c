#!/usr/bin/env bash
# Airlock under load (a measurement, not a test; issue 12 "Load"). In one run:
#   1. a small approved file (4 KiB, warm) through Airlock's /resolve vs Debian nginx (sendfile on) serving
#      the very same promoted blob file, `wrk -c 256`;
#   2. a metadata endpoint (/api/models/<repo>/revision/main), `wrk -c 256`;
#   3. Airlock's RSS under that load (VmHWM from /proc/<pid>/status and VmRSS sampled every 0.1 s).
# Targets: downloads >= 0.5x nginx, 0 errors, RSS <= 64 MB.
#
# Usage: bench/load-bench.sh   (env: LOAD_SECS=30 LOAD_CONNS=256 LOAD_THREADS=2 BENCH_DIR=/tmp/airlock-load;
#                              AIRLOCK_BIN skips the release build)
# Needs wrk and nginx (.ci/run installs both); everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${LOAD_SECS:-30}
CONNS=${LOAD_CONNS:-256}
THREADS=${LOAD_THREADS:-2}
DIR=${BENCH_DIR:-/tmp/airlock-load}
PY=${BENCH_PYTHON:-$ROOT/.venv/bin/python}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'load-bench: %s\n' "$*" >&2; exit 1; }

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
calc() { awk "BEGIN { print $* }"; }
jget() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }
# wrk's summary -> "<req/s> <errors>" (errors: socket errors plus non-2xx/3xx answers).
wrk_run() { # url
  local out rps errs
  out=$(wrk -t "$THREADS" -c "$CONNS" -d "${SECS}s" --latency "$1")
  printf '%s\n' "$out" >>"$DIR/wrk.log"
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  errs=$(awk '/Socket errors:/ {gsub(",", ""); s = $4 + $6 + $8 + $10} /Non-2xx or 3xx/ {n = $5} END {print s + n}' <<<"$out")
  echo "$rps $errs"
}

# ---- prerequisites -------------------------------------------------------------------------------------
command -v wrk >/dev/null || die "wrk is not installed (.ci/run installs it)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx is not installed (.ci/run installs it)"
[ -x "$PY" ] || { log "creating .venv"; python3 -m venv "$ROOT/.venv"; PY=$ROOT/.venv/bin/python; }
"$PY" -m pip install --quiet --disable-pip-version-check -r integration-tests/requirements.txt
if [ -n "${AIRLOCK_BIN:-}" ]; then
  AIRLOCK=$AIRLOCK_BIN
else
  log "cargo build --release -p web"
  cargo build --release -p web
  AIRLOCK=$ROOT/target/release/airlock
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

rm -rf "$DIR"
mkdir -p "$DIR"
"$PY" - "$DIR/repos.json" <<'PYEOF'
import json, sys
files = {"config.json": {"text": json.dumps({"pad": "x" * 4000})}}
json.dump([{"repo": "bench/small", "files": files}], open(sys.argv[1], "w"))
PYEOF

log "starting the fake Hub"
"$PY" integration-tests/fake_hub.py --repos "$DIR/repos.json" --no-xet --info-file "$DIR/hub.json" \
  >"$DIR/hub.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do [ -f "$DIR/hub.json" ] && break; sleep 0.1; done
[ -f "$DIR/hub.json" ] || die "fake Hub did not start: $(cat "$DIR/hub.log")"
HUB=$(jget '["hub"]' <"$DIR/hub.json")
CDN_PORT=$(jget '["cdn_port"]' <"$DIR/hub.json")

APORT=$(free_port)
cat >"$DIR/airlock.toml" <<TOML
listen = "127.0.0.1:$APORT"
data_dir = "$DIR/airlock-data"
[huggingface]
upstream = "$HUB"
redirect_hosts = ["127.0.0.1:$CDN_PORT"]
[policy]
mode = "allowlist"
[[policy.allow]]
hf = "bench/*"
TOML
log "starting airlock ($AIRLOCK) on 127.0.0.1:$APORT"
RUST_LOG=warn "$AIRLOCK" serve --config "$DIR/airlock.toml" >"$DIR/airlock.log" 2>&1 &
APID=$!
PIDS+=($APID)
wait_http "http://127.0.0.1:$APORT/healthz" 30 || die "airlock did not answer /healthz: $(tail -20 "$DIR/airlock.log")"
A_FILE="http://127.0.0.1:$APORT/bench/small/resolve/main/config.json"
A_META="http://127.0.0.1:$APORT/api/models/bench/small/revision/main"
for _ in $(seq 100); do
  st=$(curl -s -o "$DIR/first.json" -w '%{http_code}' "$A_FILE")
  [ "$st" = 200 ] && break
  sleep 0.2
done
[ "$st" = 200 ] || die "warm-up GET through Airlock answered $st"
SHA=$(sha256sum "$DIR/first.json" | cut -d' ' -f1)
BLOB=$(find "$DIR/airlock-data/blobs" -type f -name "$SHA" | head -1)
[ -n "$BLOB" ] || die "no promoted blob named $SHA"
curl -fsS -o /dev/null "$A_META" || die "metadata GET through Airlock failed"

NPORT=$(free_port)
mkdir -p "$DIR/nginx/logs"
cat >"$DIR/nginx/nginx.conf" <<NGX
user root;
worker_processes auto;
worker_rlimit_nofile 65536;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NPORT;
    location = /blob { alias $BLOB; default_type application/octet-stream; }
  }
}
NGX
"$NGINX" -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" || die "nginx failed to start"
N_FILE="http://127.0.0.1:$NPORT/blob"
wait_http "$N_FILE" 10 || die "nginx does not serve the blob"

"$PY" bench/hf_bench.py rss "$APID" "$DIR/rss.json" &
PIDS+=($!)
IDLE_KB=$(awk '/^VmRSS:/ {print $2}' "/proc/$APID/status")

log "wrk -c $CONNS -d ${SECS}s: nginx file, Airlock file, Airlock metadata"
read -r N_RPS N_ERR < <(wrk_run "$N_FILE")
read -r A_RPS A_ERR < <(wrk_run "$A_FILE")
read -r M_RPS M_ERR < <(wrk_run "$A_META")

touch "$DIR/rss.json.stop"
sleep 0.3
PEAK_KB=$(jget '["peak_rss_kb"]' <"$DIR/rss.json")
HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/$APID/status")
[ "$HWM" -gt "$PEAK_KB" ] && PEAK_KB=$HWM
AUDIT_LINES=$(wc -l <"$DIR/airlock-data/audit.log" 2>/dev/null || echo 0)
{
  echo
  echo "Airlock load benchmark — wrk -t $THREADS -c $CONNS -d ${SECS}s, $(nproc) cores, $(date -u +%FT%TZ)"
  printf '%-40s %12s %12s %8s %s\n' "measure" "Airlock" "nginx" "ratio" "target"
  printf '%-40s %9.0f/s  %9.0f/s  %7.2fx %s\n' "4 KiB file, req/s (errors $A_ERR / $N_ERR)" "$A_RPS" "$N_RPS" \
    "$(calc "$A_RPS / $N_RPS")" ">= 0.5x, 0 errors"
  printf '%-40s %9.0f/s  %12s %8s %s\n' "metadata (revision/main), req/s (errors $M_ERR)" "$M_RPS" "-" "-" "0 errors"
  printf '%-40s %9.1f MB %12s %8s %s\n' "Airlock peak RSS (idle $((IDLE_KB / 1024)) MB)" "$(calc "$PEAK_KB / 1024")" \
    "-" "-" "<= 64 MB"
  echo "audit log lines after the run: $AUDIT_LINES (downloads are folded per client, file and window)"
} | tee "$DIR/report.txt"
