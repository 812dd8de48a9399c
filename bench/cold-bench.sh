#!/usr/bin/env bash
# Airlock cold-path benchmark (a measurement, not a test; issue 9). In one run, on the same 1 GiB file:
#   1. capped link: the fake Hub's CDN caps every connection at BENCH_RATE_MBS MB/s (a WAN link, a busy CDN
#      edge); a direct single-stream hf_hub_download vs a cold one through Airlock (parallel ranged fetch,
#      verify, promote, serve)
#   2. raw loopback: the same, with no cap
#   3. Airlock's peak RSS during the cold fetches (VmHWM, plus VmRSS sampled every 0.1 s)
# Targets: capped <= 1.0x direct, raw loopback <= 1.2x direct, RSS <= 64 MB. Ratios are against the direct
# download in the same run.
#
# Usage: bench/cold-bench.sh   (env: BENCH_SIZE_MB=1024 BENCH_RATE_MBS=50 BENCH_RUNS=1 BENCH_DIR=/tmp/airlock-cold;
#                               AIRLOCK_BIN skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${BENCH_SIZE_MB:-1024}
RATE_MBS=${BENCH_RATE_MBS:-50}
RUNS=${BENCH_RUNS:-1}
DIR=${BENCH_DIR:-/tmp/airlock-cold}
PY=${BENCH_PYTHON:-$ROOT/.venv/bin/python}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'cold-bench: %s\n' "$*" >&2; exit 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
calc() { awk "BEGIN { print $* }"; }
jget() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

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
BIG_SHA=$(sha256sum "$BIG" | cut -d' ' -f1)

start_hub() { # name, extra args... -> sets HUB_<name> and CDN_<name>
  local name=$1
  shift
  "$PY" integration-tests/fake_hub.py --repo bench/big --serve-file "$BIG=model.safetensors" --no-xet \
    --info-file "$DIR/hub-$name.json" "$@" >"$DIR/hub-$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 600); do [ -f "$DIR/hub-$name.json" ] && break; sleep 0.1; done
  [ -f "$DIR/hub-$name.json" ] || die "fake Hub $name did not start: $(cat "$DIR/hub-$name.log")"
}
log "starting the fake Hubs (capped at $RATE_MBS MB/s per connection, and raw)"
start_hub capped --cdn-rate "$((RATE_MBS * 1000000))"
start_hub raw

client() { # endpoint, home
  env -u HF_HUB_DISABLE_XET HF_ENDPOINT="$1" HF_HOME="$2" HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HUB_DISABLE_PROGRESS_BARS=1 "$PY" bench/hf_bench.py download bench/big model.safetensors
}

APORT=$(free_port)
APID=
start_airlock() { # hub name; a fresh, empty store every time (a cold fetch)
  local hub cdn
  hub=$(jget '["hub"]' <"$DIR/hub-$1.json")
  cdn=$(jget '["cdn_port"]' <"$DIR/hub-$1.json")
  rm -rf "$DIR/airlock-data"
  cat >"$DIR/airlock.toml" <<EOF
listen = "127.0.0.1:$APORT"
data_dir = "$DIR/airlock-data"
[huggingface]
upstream = "$hub"
redirect_hosts = ["127.0.0.1:$cdn"]
[policy]
mode = "allowlist"
[[policy.allow]]
hf = "bench/*"
EOF
  RUST_LOG=warn "$AIRLOCK" serve --config "$DIR/airlock.toml" >>"$DIR/airlock.log" 2>&1 &
  APID=$!
  PIDS+=($APID)
  wait_http "http://127.0.0.1:$APORT/healthz" 30 || die "airlock did not answer /healthz: $(tail -20 "$DIR/airlock.log")"
  "$PY" bench/hf_bench.py rss "$APID" "$DIR/rss-$1-$r.json" &
  PIDS+=($!)
}
stop_airlock() { kill "$APID"; wait "$APID" 2>/dev/null || true; }

declare -A DIRECT COLD
for link in capped raw; do
  d=() c=()
  for r in $(seq "$RUNS"); do
    log "$link: direct single-stream hf_hub_download (run $r)"
    out=$(client "$(jget '["hub"]' <"$DIR/hub-$link.json")" "$DIR/home-direct") || die "direct download failed: $out"
    [ "$(jget '["sha256"]' <<<"$out")" = "$BIG_SHA" ] || die "direct download: wrong bytes"
    d+=("$(jget '["seconds"]' <<<"$out")")
    rm -rf "$DIR/home-direct"
    log "$link: cold hf_hub_download through Airlock (run $r)"
    start_airlock "$link"
    out=$(client "http://127.0.0.1:$APORT" "$DIR/home-cold") ||
      die "cold download through Airlock failed: $out $(tail -20 "$DIR/airlock.log")"
    [ "$(jget '["sha256"]' <<<"$out")" = "$BIG_SHA" ] || die "cold download through Airlock: wrong bytes"
    c+=("$(jget '["seconds"]' <<<"$out")")
    rm -rf "$DIR/home-cold"
    touch "$DIR/rss-$link-$r.json.stop"
    sleep 0.3
    stop_airlock
  done
  DIRECT[$link]=$(printf '%s\n' "${d[@]}" | median)
  COLD[$link]=$(printf '%s\n' "${c[@]}" | median)
  echo "runs (s) $link: direct ${d[*]} | airlock ${c[*]}" >>"$DIR/runs.txt"
done

PEAK_KB=0
for f in "$DIR"/rss-*.json; do
  k=$(jget '["vmhwm_kb"]' <"$f"); s=$(jget '["peak_rss_kb"]' <"$f")
  [ "$k" -gt "$PEAK_KB" ] && PEAK_KB=$k
  [ "$s" -gt "$PEAK_KB" ] && PEAK_KB=$s
done

ratio() { calc "$1 / $2"; }
{
  echo
  echo "Airlock cold-path benchmark — ${SIZE_MB} MiB file, median of $RUNS run(s), $(nproc) cores, $(date -u +%FT%TZ)"
  printf '%-52s %9s %9s %8s %s\n' "measure" "Airlock" "direct" "ratio" "target"
  printf '%-52s %7.1f s %7.1f s %7.2fx %s\n' "cold, link capped at $RATE_MBS MB/s per connection" \
    "${COLD[capped]}" "${DIRECT[capped]}" "$(ratio "${COLD[capped]}" "${DIRECT[capped]}")" "<= 1.0x"
  printf '%-52s %7.1f s %7.1f s %7.2fx %s\n' "cold, raw loopback" \
    "${COLD[raw]}" "${DIRECT[raw]}" "$(ratio "${COLD[raw]}" "${DIRECT[raw]}")" "<= 1.2x"
  printf '%-52s %7.1f MB %9s %8s %s\n' "Airlock peak RSS during the cold fetches" "$(calc "$PEAK_KB / 1024")" \
    "-" "-" "<= 64 MB"
  echo
  cat "$DIR/runs.txt"
} | tee "$DIR/report.txt"
