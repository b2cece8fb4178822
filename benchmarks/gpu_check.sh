#!/usr/bin/env bash
# The GPU figures and checks of issue #14 in one device call, about 6 minutes on one H200 (docs/benchmarks.md):
#   1. benchmarks/cuda_checks.py   compiled == eager, bf16 vs float32 losses, GPU vs CPU augmentation, prefetch
#   2. benchmarks/pipeline.py      loader / step / both, bound and MFU, for the CoCLR, CACL and STiCA paper presets
#   3. benchmarks/backbones.py     backbone throughput against torchvision's twins
# Everything lands in $OUT (the device tool's output folder; ./gpu_check_out elsewhere): gpu_check.log, summary.json
# (each stage's status and seconds, the machine) and one JSON per stage: 7 files, under the tool's 8. The pipeline
# JSONs are written after each of their parts, so a stage stopped by its time limit still leaves what it measured.
#
# On the device machine, which lacks decord and av: run /work/shared/tools/device-prepare.sh in the checkout first
# (wheels in .whl/, test media in .media/), then call the device with carry [".whl", ".media"] and
#   bash benchmarks/gpu_check.sh
# The script installs .whl/*.whl into a temporary site itself when decord or av cannot be imported.
# Here, on a CPU, `bash benchmarks/gpu_check.sh --cpu-dry-run` runs the same plumbing with tiny settings.
# Stage time limits (seconds) and the recipes can be changed: CHECKS_S, PIPELINE_S, BACKBONES_S, RECIPES, WORKERS, STEPS.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dry=0
if [ "${1:-}" = "--cpu-dry-run" ]; then dry=1; fi
OUT=${OUT:-$root/gpu_check_out}
mkdir -p "$OUT"
log=$OUT/gpu_check.log
: > "$log"
say() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$log"; }
python=${PYTHON:-python3}
if [ -x "$root/.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then python=$root/.venv/bin/python; fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

# -- what the device image lacks: decord and av, as wheels from device-prepare.sh ----------------------------------
if ! "$python" -c "import decord, av" 2>/dev/null; then
  if ! ls "$root"/.whl/*.whl >/dev/null 2>&1; then
    say "FAILED: decord/av cannot be imported and there is no .whl/ here; run /work/shared/tools/device-prepare.sh" \
        "in the checkout and carry .whl"
    exit 2
  fi
  site=$(mktemp -d)
  "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$root"/.whl/*.whl >>"$log" 2>&1 \
    || { say "FAILED: installing .whl/*.whl"; exit 2; }
  export PYTHONPATH="$PYTHONPATH:$site"
  say "installed $(ls "$root"/.whl | tr '\n' ' ')"
fi

# -- CUDA, or stop at once -----------------------------------------------------------------------------------------
if [ $dry = 0 ]; then
  if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >>"$log" 2>&1; then
    say "FAILED: CUDA is not available to torch here (no GPU, or a CPU-only torch): nothing was measured." \
        "On a CPU, use --cpu-dry-run."
    exit 3
  fi
  device=cuda
  CHECKS_S=${CHECKS_S:-80} PIPELINE_S=${PIPELINE_S:-85} BACKBONES_S=${BACKBONES_S:-40}
  workers=${WORKERS:-15} steps=${STEPS:-20}
  checks_args=() pipeline_args=() backbones_args=(--batch 32 --rounds 5)
else
  device=cpu
  CHECKS_S=${CHECKS_S:-120} PIPELINE_S=${PIPELINE_S:-120} BACKBONES_S=${BACKBONES_S:-120}
  workers=${WORKERS:-1} steps=${STEPS:-2}
  checks_args=(--quick) pipeline_args=(--tiny --threads 1) backbones_args=(--batch 1 --frames 4 --size 32
    --rounds 1 --threads 1 --models r3d_18)
fi
recipes=${RECIPES:-coclr cacl stica}

# -- the stages: each under its own time limit, each recorded, a failure does not stop the next -----------------------
stages=()
run() {  # name, limit (s), command...
  local name=$1 limit=$2 start rc
  shift 2
  say "$name: $*"
  start=$(date +%s)
  timeout "$limit" "$@" >>"$log" 2>&1
  rc=$?
  stages+=("{\"stage\": \"$name\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - start )), \"timed_out\": $( [ $rc = 124 ] && echo true || echo false)}")
  say "$name: exit $rc after $(( $(date +%s) - start )) s"
}
run checks "$CHECKS_S" "$python" benchmarks/cuda_checks.py --device $device "${checks_args[@]}" --json "$OUT/checks.json"
for recipe in $recipes; do
  run "pipeline_$recipe" "$PIPELINE_S" "$python" benchmarks/pipeline.py --recipe "$recipe" --device $device \
    --workers "$workers" --steps "$steps" "${pipeline_args[@]}" --json "$OUT/pipeline_$recipe.json"
done
run backbones "$BACKBONES_S" "$python" benchmarks/backbones.py --device $device "${backbones_args[@]}" \
  --json "$OUT/backbones.json"

# -- summary.json: the stages and the machine ----------------------------------------------------------------------
machine=$("$python" - <<'PY' 2>>"$log"
import json, os, platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": gpu, "cpus": os.cpu_count(),
                  "platform": platform.platform()}))
PY
)
failed=0
for s in "${stages[@]}"; do case $s in *'"rc": 0,'*) ;; *) failed=1 ;; esac; done
(IFS=,; echo "{\"dry_run\": $( [ $dry = 1 ] && echo true || echo false ), \"machine\": ${machine:-null}," \
  "\"stages\": [${stages[*]}]}") > "$OUT/summary.json"
say "done: $OUT/summary.json ($( [ $failed = 0 ] && echo 'all stages passed' || echo 'some stages FAILED'))"
exit $failed
