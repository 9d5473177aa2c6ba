#!/usr/bin/env bash
# The GPU suite on the device machine (issue 15), run from the repository root there:
#   bash scripts/gpu_suite.sh [extra suite arguments, e.g. --parts machine,pretrain]
# Needs .device/ carried along (python -m src.bench.gpu_prepare makes it on the CPU: wheels and the
# classics_bpe16k token files). Installs the wheels the device image lacks into /tmp/site (nothing
# from a registry: the machine reaches none), then runs the suite with results in $OUT/gpu_suite
# (results.json, summary.md, suite.log, pip.log), which the device tool brings back.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-outputs/gpu_suite}/gpu_suite"
mkdir -p "$out"
if [ ! -d .device/wheels ] || [ ! -f .device/classics_bpe16k/meta.json ]; then
    echo "warning: .device/ is missing or incomplete (python -m src.bench.gpu_prepare, and carry .device)" >&2
fi
py=python3
command -v "$py" >/dev/null || py=python
if ! "$py" -c "import omegaconf" 2>/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .device/wheels/*.whl >"$out/pip.log" 2>&1 || { echo "error: wheel install failed:"; cat "$out/pip.log"; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,temperature.gpu --format=csv 2>&1 | head -3
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
"$py" -m src.bench.gpu_suite --out "$out" --budget-s "${GPU_SUITE_BUDGET_S:-480}" "$@"
