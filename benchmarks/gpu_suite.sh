#!/usr/bin/env bash
# The GPU suite as one command on a lent GPU machine (benchmarks/gpu_suite.py says what it runs).
#
# It installs the wheels that benchmarks/prepare_gpu_carry.sh put in gpu_carry/wheels, and this
# project from the working tree, into temporary site folders (no index, no dependencies: the
# machine's own torch, numpy, ... stay as they are), puts them on PYTHONPATH and PATH, and runs
# the suite on the carried Fashion-MNIST. Arguments go to gpu_suite.py (e.g. --budget-s 240, or
# --dry-run to try the launcher on a CPU machine).
#
# Device-tool call, after `bash benchmarks/prepare_gpu_carry.sh` here:
#   run(command="bash benchmarks/gpu_suite.sh", carry=["gpu_carry"], timeout_s=590)
# It writes summary.md, summary.json, study.csv, study.log and suite.log into $OUT/gpu
# (./gpu-suite-out/gpu where OUT is unset). Environment: PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CARRY=gpu_carry
RESULTS="${OUT:-gpu-suite-out}/gpu"
mkdir -p "$RESULTS"
LOG="$RESULTS/suite.log"

if ! compgen -G "$CARRY/wheels/*.whl" >/dev/null || [ ! -d "$CARRY/fashion-mnist" ]; then
  echo "gpu_suite.sh: $CARRY/ is missing or incomplete; run bash benchmarks/prepare_gpu_carry.sh" \
    "here and name $CARRY in the call's carry" | tee "$LOG" >&2
  exit 2
fi
SITE=$(mktemp -d /tmp/infoaug-site.XXXXXX)
# Two folders: pip --target skips a bin/ that already exists, and the project's console scripts
# (twin-builder, which infoaug-eval runs) live in the second one.
PIP_INSTALL=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target)
{
  echo "installing $(ls "$CARRY"/wheels | tr '\n' ' ')into $SITE" &&
    "${PIP_INSTALL[@]}" "$SITE/deps" "$CARRY"/wheels/*.whl &&
    echo "installing this project from the working tree" &&
    PYTHONPATH="$SITE/deps" "${PIP_INSTALL[@]}" "$SITE/project" --no-build-isolation .
} 2>&1 | tee "$LOG" || exit 1
export PYTHONPATH="$SITE/project:$SITE/deps" PATH="$SITE/project/bin:$SITE/deps/bin:$PATH"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

"$PY" benchmarks/gpu_suite.py --out "$RESULTS" --data-dir "$CARRY/fashion-mnist" "$@" 2>&1 \
  | tee -a "$LOG"
status=$?
rm -rf "$SITE"
exit $status
