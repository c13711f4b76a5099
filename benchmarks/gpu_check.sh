#!/usr/bin/env bash
# Every GPU check in one call: the `gpu` tests, the rollout-engine decode benchmark and the CUDA side of
# benchmarks/vs_trl.py, each output saved under $OUT (default ./gpu_check_out) with a summary line per part.
#
#   benchmarks/gpu_check.sh                      # on the GPU machine, from the repository root
#   benchmarks/gpu_check.sh --device cpu --quick # the same parts on CPU, short: a rehearsal of this script
#
# The GPU machine is offline and lacks some packages: first, where there is network, run
#   EXTRA_WHEELS="trl xxhash fsspec" ../shared/tools/device-wheels.sh /path/to/venv
# which puts py3.12 wheels in .whl/; this script installs them into /tmp/site when .whl/ is there.
# Each part has its own time limit (seconds; the defaults fit one 10-minute call): PYTEST_S, DECODE_S,
# MAIN_S, SCALING_S. A part that fails or runs out of time is recorded and the next one still runs.
set -uo pipefail
device=cuda
quick=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    *) echo "error: unknown argument $1 (allowed: --device cpu|cuda, --quick)" >&2; exit 2 ;;
  esac
done
case "$device" in cpu|cuda) ;; *) echo "error: --device $device (allowed: cpu, cuda)" >&2; exit 2 ;; esac
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

scale=1
[ "$device" = cpu ] && scale=4   # a CPU rehearsal is slower than the GPU machine: longer limits
part() {  # part NAME LIMIT_S COMMAND...
  local name=$1 limit=$(($2 * scale)); shift 2
  local start=$SECONDS
  echo "== $name (at most ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - start))s" | tee -a "$OUT/summary.txt"
  tail -n 30 "$OUT/$name.txt"
}

{
  date -u; uptime
  [ "$device" = cuda ] && nvidia-smi
  $PY -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"
  $PY -c "import trl; print('trl', trl.__version__)" 2>&1 | tail -1
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ "$device" = cuda ]; then
  part pytest_gpu "${PYTEST_S:-200}" $PY -m pytest -m gpu tests/train -p no:cacheprovider -q -rs
else  # on CPU every gpu test is skipped with its reason; the rehearsal checks the collection and skips
  part pytest_gpu "${PYTEST_S:-120}" $PY -m pytest -m gpu tests/train -p no:cacheprovider -q -rs
fi
if [ ${#quick[@]} -gt 0 ]; then decode=(--prompts 4 --generations 8 --tokens 8 --warmup 1 --repeats 2)
else decode=(--prompts 16 --generations 8 --tokens 64); fi
part decode "${DECODE_S:-80}" $PY benchmarks/rollout_engines.py --device "$device" "${decode[@]}"
if [ ${#quick[@]} -gt 0 ]; then steps=(--quick); else steps=(--steps 8 --warmup 2); fi
part vs_trl "${MAIN_S:-200}" $PY benchmarks/vs_trl.py --device "$device" --tables main,memory "${steps[@]}" \
  --json "$OUT/vs_trl.json"
# Scaling with the hf engine: the static one would compile once per shape (tens of seconds each on CUDA).
part scaling "${SCALING_S:-80}" $PY benchmarks/vs_trl.py --device "$device" --tables scaling --engine hf \
  --steps 8 --warmup 1 "${quick[@]}" --json "$OUT/scaling.json"
echo "== summary"; cat "$OUT/summary.txt"
