#!/usr/bin/env bash
# Run a benchmark with a background `python -m paper reproduce` grid paused, so the machine is idle:
#   bench/paused.sh .venv/bin/python bench/throughput.py
# The grid and its workers get SIGSTOP before CMD and SIGCONT after it, also when CMD fails or is
# interrupted; their runs just continue (a stopped process loses nothing). Without a grid, CMD simply runs.
set -u
if [ $# -eq 0 ]; then echo "usage: bench/paused.sh CMD [ARGS...]" >&2; exit 2; fi
pids=""
for p in $(pgrep -f "paper reproduce"); do
  # only a grid process itself (argv: python -m paper reproduce ...), never this script or CMD
  mapfile -d '' -t argv < "/proc/$p/cmdline" 2>/dev/null || continue
  [ "$p" != "$$" ] && [[ "${argv[1]:-}" == -m && "${argv[2]:-}" == paper && "${argv[3]:-}" == reproduce ]] || continue
  pids="$pids $p $(pgrep -P "$p" | tr '\n' ' ')"
done
if [ -n "${pids// }" ]; then
  trap 'kill -CONT $pids 2>/dev/null' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  kill -STOP $pids 2>/dev/null
  echo "bench/paused.sh: paused the grid (pids$pids) while the benchmark runs" >&2
  sleep 0.5
fi
"$@"
