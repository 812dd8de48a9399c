#!/usr/bin/env bash
# Scanner comparison (a measurement, not a test): runs `airlock scan` and the popular model
# scanners (picklescan, modelscan, fickling, modelaudit; latest from PyPI, in .venv-scanners)
# over the same labelled corpus in one run, and prints detected / missed / false alarms / errors
# and wall time per tool. Then times `airlock scan` on a 2 GiB PyTorch-zip checkpoint and a 2 GiB
# safetensors file against `sha256sum` of the same files.
#
# Definitions: every tool is run once per file (that is how a mirror would call it). "detected" =
# malicious file flagged; "missed" = malicious file not flagged (an error counts as missed);
# "false alarm" = benign file flagged; "errors" = runs that crashed, timed out or refused to scan
# (modelscan's "no supported files", exit 3, counts as not flagged, not as an error).
#
# The labelled corpus is joined by the benign files the real libraries write (numpy, pandas,
# scikit-learn, scipy, joblib, transformers, the standard library; integration-tests/corpus/
# gen_benign.py, run with .venv-corpus and .venv-corpus-prev as scripts/test.sh creates them).
# Peers start one process per file, which takes seconds each, so REAL_SAMPLE (default 8) files
# of each of its directories are used; REAL_SAMPLE=0 takes all of them; NO_REAL_CORPUS=1 skips it.
#
# Usage: bench/scan-compare.sh   (env: CORPUS=dir with labels.csv; AIRLOCK_BIN=… skips the build;
#        SCANNERS_VENV=.venv-scanners; BIG_DIR=/tmp/airlock-scan-bench; BIG_MB=2048; SKIP_BIG=1;
#        REAL_SAMPLE=8; NO_REAL_CORPUS=1)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CORPUS=${CORPUS:-$ROOT/verifier/tests/fixtures/scan-corpus}
VENV=${SCANNERS_VENV:-$ROOT/.venv-scanners}
BIG_DIR=${BIG_DIR:-/tmp/airlock-scan-bench}
BIG_MB=${BIG_MB:-2048}
TIMEOUT=${TOOL_TIMEOUT:-120}

log() { printf '==> %s\n' "$*" >&2; }

if [ -z "${AIRLOCK_BIN:-}" ]; then
  log "cargo build --release -p web"
  cargo build --release -p web >&2
  AIRLOCK_BIN=$ROOT/target/release/airlock
  [ -n "${CARGO_TARGET_DIR:-}" ] && AIRLOCK_BIN=$CARGO_TARGET_DIR/release/airlock
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
log "pip install picklescan modelscan fickling modelaudit"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade picklescan modelscan fickling modelaudit >&2
for t in picklescan modelscan fickling modelaudit; do
  v=$("$VENV/bin/python" -m pip show "$t" 2>/dev/null | awk '/^Version:/{print $2}')
  log "$t $v"
done

# verdict TOOL FILE -> prints flagged|clean|error
verdict() {
  local tool=$1 f=$2 rc=0
  case $tool in
    airlock) "$AIRLOCK_BIN" scan --no-progress "$f" >/dev/null 2>&1 || rc=$?
      case $rc in 0) echo clean ;; 1) echo flagged ;; *) echo error ;; esac ;;
    picklescan) timeout "$TIMEOUT" "$VENV/bin/picklescan" --path "$f" >/dev/null 2>&1 || rc=$?
      case $rc in 0) echo clean ;; 1) echo flagged ;; *) echo error ;; esac ;;
    modelscan) timeout "$TIMEOUT" "$VENV/bin/modelscan" -p "$f" >/dev/null 2>&1 || rc=$?
      case $rc in 0|3) echo clean ;; 1) echo flagged ;; *) echo error ;; esac ;;
    fickling) timeout "$TIMEOUT" "$VENV/bin/fickling" --check-safety "$f" >/dev/null 2>&1 || rc=$?
      case $rc in 0) echo clean ;; 1) echo flagged ;; *) echo error ;; esac ;;
    # Without PROMPTFOO_DISABLE_TELEMETRY modelaudit retries its analytics upload for ~40 s per
    # run on an offline machine.
    modelaudit) PROMPTFOO_DISABLE_TELEMETRY=1 timeout "$TIMEOUT" "$VENV/bin/modelaudit" scan "$f" >/dev/null 2>&1 || rc=$?
      case $rc in 0) echo clean ;; 1) echo flagged ;; *) echo error ;; esac ;;
  esac
}

if [ -z "${NO_REAL_CORPUS:-}" ]; then
  COMBINED=$BIG_DIR/combined
  log "generating the real-library benign corpus into $COMBINED"
  rm -rf "$COMBINED" "$BIG_DIR/real"
  mkdir -p "$COMBINED/corpus"
  cp -r "$CORPUS/corpus" "$COMBINED/corpus/labelled"
  awk -F, 'BEGIN{OFS=","} NR==1{print; next} {$1="labelled/"$1; print}' "$CORPUS/labels.csv" >"$COMBINED/labels.csv"
  "$ROOT/.venv-corpus/bin/python" "$ROOT/integration-tests/corpus/gen_benign.py" "$BIG_DIR/real" --set current >&2
  "$ROOT/.venv-corpus-prev/bin/python" "$ROOT/integration-tests/corpus/gen_benign.py" "$BIG_DIR/real" --set previous >&2
  cat "$BIG_DIR"/real/manifest-*.txt | sort | awk -F/ -v n="${REAL_SAMPLE:-8}" '{k=$1; c[k]++; if (n == 0 || c[k] <= n) print}' |
    while read -r f; do
      mkdir -p "$(dirname "$COMBINED/corpus/real/$f")"
      cp "$BIG_DIR/real/$f" "$COMBINED/corpus/real/$f"
      echo "real/$f,benign,${f%%/*},real_library,,,written by the real library"
    done >>"$COMBINED/labels.csv"
  CORPUS=$COMBINED
fi

RESULTS=$(mktemp)
printf '%-11s %9s %7s %13s %7s %9s %12s\n' tool detected missed "false alarms" errors "wall s" "files/s" >"$RESULTS"
mal=$(awk -F, 'NR>1 && $2=="malicious"' "$CORPUS/labels.csv" | wc -l)
ben=$(awk -F, 'NR>1 && $2=="benign"' "$CORPUS/labels.csv" | wc -l)
PER_FILE=$BIG_DIR/per-file.tsv
mkdir -p "$BIG_DIR"
: >"$PER_FILE"
for tool in airlock picklescan modelscan fickling modelaudit; do
  log "running $tool over $((mal + ben)) files"
  det=0 miss=0 fa=0 err=0
  start=$(date +%s.%N)
  while IFS=, read -r file label _rest; do
    [ "$file" = file ] && continue
    v=$(verdict "$tool" "$CORPUS/corpus/$file")
    printf '%s\t%s\t%s\t%s\n' "$tool" "$file" "$label" "$v" >>"$PER_FILE"
    [ "$v" = error ] && err=$((err + 1))
    if [ "$label" = malicious ]; then
      if [ "$v" = flagged ]; then det=$((det + 1)); else miss=$((miss + 1)); fi
    elif [ "$v" = flagged ]; then
      fa=$((fa + 1))
    fi
  done <"$CORPUS/labels.csv"
  end=$(date +%s.%N)
  wall=$(echo "$end - $start" | bc)
  rate=$(echo "scale=1; ($mal + $ben) / $wall" | bc)
  printf '%-11s %4d/%-4d %7d %8d/%-4d %7d %9.2f %12s\n' "$tool" "$det" "$mal" "$miss" "$fa" "$ben" "$err" "$wall" "$rate" >>"$RESULTS"
done
log "one airlock process over the whole corpus"
start=$(date +%s.%N)
"$AIRLOCK_BIN" scan --no-progress "$CORPUS/corpus" >/dev/null 2>&1 || true
end=$(date +%s.%N)
one_shot=$(echo "$end - $start" | bc)

echo
echo "Corpus: $CORPUS ($mal malicious, $ben benign); per-file verdicts in $PER_FILE"
cat "$RESULTS"
printf 'airlock, one process for the whole corpus: %.3f s\n' "$one_shot"
rm -f "$RESULTS"

if [ -n "${SKIP_BIG:-}" ]; then
  exit 0
fi
log "building ${BIG_MB} MiB test checkpoints in $BIG_DIR"
"$VENV/bin/python" - "$BIG_DIR" "$BIG_MB" <<'PY'
import json, os, struct, sys, zipfile, zlib
out, mb = sys.argv[1], int(sys.argv[2])
size = mb << 20
n = 16
chunk = size // n
blk = os.urandom(1 << 20)
def fill(w, nbytes):
    while nbytes:
        k = min(nbytes, len(blk)); w.write(blk[:k]); nbytes -= k
# safetensors: n F32 tensors, contiguous
hdr = {f"t{i}": {"dtype": "F32", "shape": [chunk // 4], "data_offsets": [i * chunk, (i + 1) * chunk]} for i in range(n)}
h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
with open(f"{out}/big.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h); fill(f, n * chunk)
# PyTorch zip: the layout torch.save writes (data.pkl with persistent storage ids + stored
# storages). The pickle is *written* with stand-ins for torch's globals; nothing is loaded.
import collections, pickle, types
torch_mod = types.ModuleType("torch"); utils_mod = types.ModuleType("torch._utils")
sys.modules["torch"] = torch_mod; sys.modules["torch._utils"] = utils_mod
class FloatStorage: pass
FloatStorage.__module__ = "torch"; torch_mod.FloatStorage = FloatStorage
def _rebuild_tensor_v2(*a): pass
_rebuild_tensor_v2.__module__ = "torch._utils"; utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
class StorageRef:
    def __init__(self, key, numel): self.key, self.numel = key, numel
class Tensor:
    def __init__(self, key, numel): self.ref = StorageRef(key, numel); self.numel = numel
    def __reduce__(self):
        return (_rebuild_tensor_v2, (self.ref, 0, (self.numel,), (1,), False, collections.OrderedDict()))
class P(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None
import io
buf = io.BytesIO()
P(buf, protocol=2).dump(collections.OrderedDict((f"t{i}", Tensor(str(i), chunk // 4)) for i in range(n)))
pk = buf.getvalue()
with zipfile.ZipFile(f"{out}/big.pt", "w", zipfile.ZIP_STORED, allowZip64=True) as z:
    z.writestr("archive/data.pkl", bytes(pk))
    z.writestr("archive/version", "3\n")
    for i in range(n):
        with z.open(f"archive/data/{i}", "w", force_zip64=True) as w:
            fill(w, chunk)
PY
for f in big.pt big.safetensors; do
  cat "$BIG_DIR/$f" >/dev/null  # warm the page cache so both timings read from memory
  s=$(date +%s.%N); sha256sum "$BIG_DIR/$f" >/dev/null; e=$(date +%s.%N); sha=$(echo "$e - $s" | bc)
  s=$(date +%s.%N); rc=0; "$AIRLOCK_BIN" scan --no-progress "$BIG_DIR/$f" >"$BIG_DIR/$f.report" 2>&1 || rc=$?; e=$(date +%s.%N); sc=$(echo "$e - $s" | bc)
  printf '%-16s %6d MiB  sha256 %7.3f s  airlock scan %7.3f s (%s%% of sha256, exit %d)\n' "$f" "$(( $(stat -c %s "$BIG_DIR/$f") >> 20 ))" "$sha" "$sc" "$(echo "scale=2; 100 * $sc / $sha" | bc)" "$rc"
done
