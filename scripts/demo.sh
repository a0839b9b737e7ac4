#!/usr/bin/env bash
# Set up, then train the small default: three_hoppers with gradient-guided specialization.
# Extra arguments go to `mt-specialize train` (e.g. --samples 3M).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
out=runs/demo_three_hoppers_$(date +%Y%m%d-%H%M%S)
exec .venv/bin/mt-specialize train three_hoppers --method gradient_guided --joint-samples 400k \
  --split-fraction 0.25 --seed 1 \
  --samples 1M --out "$out" "$@"
