#!/usr/bin/env bash
# Inventory benchmark: `monitor links` on N generated articles, first (cold) and second
# (unchanged) run, wall time and peak memory from /usr/bin/time.
# Usage: bash bench/links_bench.sh [N]   (default 100000; targets: <120 s and <1 GB first, <15 s second)
set -euo pipefail
N=${1:-100000}
cd "$(dirname "$0")/.."
OUT=bench/out/links-$N
rm -rf "$OUT"; mkdir -p "$OUT"
.venv/bin/python bench/gen_corpus.py "$OUT/corpus" "$N"
DB="sqlite:///$PWD/$OUT/bench.db"
for pass in first second; do
  /usr/bin/time -f "$pass run: %e s wall, %M KB peak RSS" \
    .venv/bin/monitor --database-url "$DB" links "$OUT/corpus" --summary
done
