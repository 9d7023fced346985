#!/usr/bin/env bash
# Train-stage GPU benchmark: fabricate a synthetic corpus of shards, train the contrastive
# CT-report model a few hundred bf16 steps on one GPU, print loader throughput (volumes/s),
# GPU step time (CUDA events, no per-step synchronize) and the share of step time the GPU waited for data.
# Last line: one JSON object with volumes_per_s, step_s, data_wait_share (and more).
#
# Fresh GPU machine (Python 3.12 + CUDA torch preinstalled, nothing of ours): the repository is
# put on PYTHONPATH (no pip install of ctcorpus needed). Extra packages the train stage imports:
#     numpy pyarrow webdataset (+ braceexpand) tokenizers pydantic pyyaml
# Install them from a wheelhouse if the machine is offline:
#     pip install --no-index --find-links WHEELS numpy pyarrow webdataset braceexpand tokenizers pydantic pyyaml
#
# Usage: bench/train_gpu.sh            # GPU, defaults sized to finish in a few minutes on an H200
#        bench/train_gpu.sh --cpu      # tiny CPU smoke run (this machine), slow but complete
#        bench/train_gpu.sh --help     # every knob
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false  # DataLoader workers fork after the tokenizer trained
if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
elif [ -x "$REPO/.venv/bin/python" ]; then
    PY="$REPO/.venv/bin/python"
else
    PY="$(command -v python3)"
fi
missing="$("$PY" - <<'PYCHECK'
import importlib.util
need = ["torch", "numpy", "pyarrow", "webdataset", "tokenizers", "pydantic", "yaml"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PYCHECK
)"
if [ -n "$missing" ]; then
    echo "bench/train_gpu.sh: missing Python packages for $PY: $missing" >&2
    echo "install: $PY -m pip install numpy pyarrow webdataset braceexpand tokenizers pydantic pyyaml" >&2
    exit 2
fi
cd "$REPO"
exec "$PY" "$REPO/bench/train_gpu.py" "$@"
