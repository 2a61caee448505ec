#!/usr/bin/env bash
# Every speed and correctness check that matters on an accelerator, printed as one table.
#   benchmarks/accelerator_check.sh          # on a GPU machine (BERT-base/-large, ResNet-50, bf16)
#   benchmarks/accelerator_check.sh --cpu    # toy sizes on CPU: proves the script runs
# Run from anywhere; it works in the repository it lives in. Details: benchmarks/accelerator_check.py
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m benchmarks.accelerator_check "$@"
