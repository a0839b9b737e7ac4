#!/usr/bin/env bash
# Each run of the paper grid that the revert rule stopped, continued from its last checkpoint to 3M
# counted samples with the rule off (everything else as the grid ran it): does the policy recover
# when its updates go on? Run from the repository root; writes runs/probe_revert_stops/<cell>.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ARCHIVE=results/grid_paper
OUT=runs/probe_revert_stops
mkdir -p "$OUT"
for failure in "$ARCHIVE"/*/*/seed*/failure.json; do
  cell=$(dirname "$failure"); name=${cell#"$ARCHIVE"/}; dir="$OUT/${name//\//_}"
  [ -f "$dir/summary.json" ] && continue
  .venv/bin/python - "$cell/config.yaml" "$dir.yaml" <<'PY'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
config["revert_drop_bound"] = "off"
yaml.safe_dump(config, open(sys.argv[2], "w"), sort_keys=False)
PY
  resume=(); [ -f "$dir/config.yaml" ] && resume=(--resume)
  .venv/bin/mt-specialize train --config "$dir.yaml" --start-from "$cell" --out "$dir" "${resume[@]}"
done
# what the summary reads, kept in git beside this script
for dir in "$OUT"/*/; do
  keep=results/probes/revert_stops/runs/$(basename "$dir"); mkdir -p "$keep"
  cp "$dir"/config.yaml "$dir"/metrics.csv "$dir"/summary.json "$keep"/
done
