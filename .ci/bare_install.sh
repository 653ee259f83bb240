#!/usr/bin/env bash
# The bare install, as a new user meets it: a fresh venv with only `pip install .` (no extras;
# torch pinned as the Makefile pins it) runs `rnnkit train` for each task, `evaluate`, `predict`,
# `doctor` and `export` on small generated files. Nothing may end in a traceback: a missing
# optional package is one line saying how to install it. Also checks the Python floor: pip on
# Python 3.10 refuses the package with its own message (skipped where no 3.10 is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "bare install: FAIL: $*" >&2; exit 1; }

"$PYTHON" -m venv "$WORK/venv"
PIP="$WORK/venv/bin/pip"
"$PIP" install -q torch==2.13.0 >"$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; fail "pip install torch"; }
"$PIP" install -q "$ROOT" >"$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; fail "pip install ."; }
for extra in matplotlib onnx onnxruntime keras h5py tensorboard triton; do
    if "$WORK/venv/bin/python" -c "import $extra" 2>/dev/null; then
        fail "the bare install has $extra, an optional package"
    fi
done
RNNKIT="$WORK/venv/bin/rnnkit"

cd "$WORK"
"$WORK/venv/bin/python" - <<'EOF'
import math, random
random.seed(0)
with open("series.csv", "w") as f:
    f.write("day,temp,wind\n")
    for t in range(300):
        f.write(f"{t},{10 + 5 * math.sin(t / 7) + random.random():.3f},{random.random():.3f}\n")
with open("reviews.csv", "w") as f:
    f.write("text,label\n")
    for i in range(120):
        good = i % 2 == 0
        words = ["great", "fine", "loved"] if good else ["awful", "bad", "boring"]
        f.write(f"the film was {random.choice(words)} and {random.choice(words)},"
                f"{'pos' if good else 'neg'}\n")
with open("corpus.txt", "w") as f:
    f.write("the quick brown fox jumps over the lazy dog. " * 60)
with open("pairs.tsv", "w") as f:
    for _ in range(200):
        a, b = random.randint(0, 99), random.randint(0, 99)
        f.write(f"{a}+{b}\t{a + b}\n")
EOF

# run EXPECTED_STATUS LOG COMMAND...: the status must match and no output may hold a traceback
run() {
    local want=$1 log=$2; shift 2
    set +e
    "$@" >"$log" 2>&1
    local got=$?
    set -e
    if grep -q "Traceback" "$log"; then cat "$log" >&2; fail "traceback from: $*"; fi
    if [ "$got" != "$want" ]; then cat "$log" >&2; fail "exit status $got (expected $want) from: $*"; fi
}
common=(--epochs 1 --batch-size 32 --quiet)
run 0 f.log "$RNNKIT" train --task forecast --data series.csv --target temp --lookback 12 \
    --season 7 --model gru:8 --out runs/f "${common[@]}"
run 0 c.log "$RNNKIT" train --task classify --data reviews.csv --maxlen 8 --model lstm:8 \
    --out runs/c "${common[@]}"
run 0 g.log "$RNNKIT" train --task generate --data corpus.txt --seq-len 16 --model lstm:16 \
    --sample-length 20 --out runs/g "${common[@]}"
run 0 s.log "$RNNKIT" train --task seq2seq --data pairs.tsv --model gru:8 --decoder gru:8 \
    --out runs/s "${common[@]}"
for log in f.log c.log g.log s.log; do
    n=$(grep -c "plots skipped (matplotlib is not installed): pip install 'rnnkit\[plots\]'" "$log" || true)
    [ "$n" = 1 ] || { cat "$log" >&2; fail "$log: expected one line saying plots were skipped, got $n"; }
done
test -f runs/f/metrics.json && test -f runs/c/model/model.safetensors || fail "no run written"
run 0 e.log "$RNNKIT" evaluate runs/f --data series.csv --json
grep -q '"model"' e.log || fail "evaluate printed no metrics"
run 0 p.log "$RNNKIT" predict runs/c --data reviews.csv --out preds.csv
run 0 gen.log "$RNNKIT" generate runs/g --prompt "the " --length 10 --seed 1
run 0 d.log "$RNNKIT" doctor --task forecast --data series.csv --target temp --lookback 12 \
    --model gru:8 --probe-steps 2
run 2 x.log "$RNNKIT" export runs/f --format onnx --out f.onnx
grep -q "needs the optional package 'onnx'.*pip install 'rnnkit\[export\]'" x.log \
    || { cat x.log >&2; fail "export without onnx: no install hint"; }

# The floor pyproject claims (>= 3.11): pip on 3.10 must refuse before installing anything.
PY310=""
if command -v pyenv >/dev/null; then  # pyenv's shims exist for versions that are not active
    PY310=$(ls -d "$(pyenv root)"/versions/3.10*/bin/python 2>/dev/null | head -1 || true)
fi
if [ -z "$PY310" ] && python3.10 --version >/dev/null 2>&1; then
    PY310=$(command -v python3.10)
fi
if [ -n "$PY310" ]; then
    run 1 floor.log "$PY310" -m pip install --no-deps --target "$WORK/py310" "$ROOT"
    grep -q "requires a different Python" floor.log || { cat floor.log >&2; fail "3.10 not refused"; }
    echo "bare install: Python 3.10 refused as pyproject says (>=3.11)"
else
    echo "bare install: no Python 3.10 here; floor check skipped"
fi
echo "bare install: ok (train x4, evaluate, predict, generate, doctor, export hint)"
