#!/usr/bin/env bash
# Peak memory of `monitor links` and `monitor check` at two corpus sizes: memory should stay flat
# (target: the larger corpus peaks within 1.5x of the smaller one). Peak RSS from /usr/bin/time -f %M.
#
# Usage: bash bench/memory_bench.sh [SMALL] [LARGE] [CHECK_SMALL] [CHECK_LARGE]
#   defaults 10000 100000 for `links`, and the same sizes for `check` unless given.
# The check runs against the local fixture server (python -m tests.server): every generated URL is
# http://127.0.0.1:PORT/hN.bench.test/..., which it answers 404 at once, so the figures show the
# checker's own memory, not the network's. Corpora are generated once into bench/out/memory/.
set -euo pipefail
SMALL=${1:-10000}
LARGE=${2:-100000}
CHECK_SMALL=${3:-$SMALL}
CHECK_LARGE=${4:-$LARGE}
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=bench/out/memory
mkdir -p "$OUT"

server_out="$OUT/server.out"
rm -f "$server_out"
$PY -m tests.server --port "${PORT:-18765}" >"$server_out" 2>&1 &  # fixed port: corpora stay reusable
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q READY "$server_out" 2>/dev/null && break; sleep 0.1; done
PORT=$(awk '/READY/ {print $2}' "$server_out")
[ -n "$PORT" ] || { echo "fixture server did not start" >&2; exit 1; }

corpus() {  # generated once per size (the base URL names the port, so regenerate when it changes)
  local n=$1 dir="$OUT/corpus-$1"
  if [ ! -f "$dir/.port" ] || [ "$(cat "$dir/.port")" != "$PORT" ]; then
    rm -rf "$dir"
    $PY bench/gen_corpus.py "$dir" "$n" --base-url "http://127.0.0.1:$PORT"
    echo "$PORT" >"$dir/.port"
  fi
  echo "$dir"
}

measure() {  # measure LABEL N CMD...: prints "LABEL N peak_kb wall_s" and keeps the peak
  local label=$1 n=$2
  shift 2
  local code=0
  /usr/bin/time -f "%M %e" -o "$OUT/time.txt" "$@" >/dev/null 2>"$OUT/$label-$n.err" || code=$?
  if [ "$code" -ne 0 ] && [ "$code" -ne 2 ]; then  # 2 = the check found broken links, as it should
    echo "$label $n failed with exit $code:" >&2; tail -5 "$OUT/$label-$n.err" >&2; exit 1
  fi
  read -r kb secs < <(tail -n 1 "$OUT/time.txt")  # a non-zero exit adds a line before the figures
  printf "%-6s %7d articles  peak RSS %8.1f MB  wall %7.1f s\n" "$label" "$n" "$(echo "$kb/1024" | bc -l)" "$secs"
  echo "$kb" >"$OUT/$label-$n.kb"
}

for n in "$SMALL" "$LARGE"; do
  dir=$(corpus "$n")
  rm -f "$OUT/links-$n.db"*
  measure links "$n" .venv/bin/monitor --database-url "sqlite:///$PWD/$OUT/links-$n.db" links "$dir" --summary
done

for n in "$CHECK_SMALL" "$CHECK_LARGE"; do
  dir=$(corpus "$n")
  rm -f "$OUT/check-$n.db"*
  cat >"$OUT/check-$n.toml" <<EOF
database_url = "sqlite:///$PWD/$OUT/check-$n.db"
[corpus]
roots = ["$PWD/$dir"]
[safety]
allow_cidrs = ["127.0.0.1/32"]
[http]
concurrency = 128
per_host_concurrency = 128
max_retries = 0
[logging]
format = "json"
level = "warning"
EOF
  measure check "$n" .venv/bin/monitor -c "$OUT/check-$n.toml" check -f json -o "$OUT/check-$n.json"
done

ratio() { echo "scale=2; $(cat "$OUT/$1-$3.kb") / $(cat "$OUT/$1-$2.kb")" | bc; }
echo "links peak ratio ${LARGE}/${SMALL}: $(ratio links "$SMALL" "$LARGE")x (target <= 1.5)"
echo "check peak ratio ${CHECK_LARGE}/${CHECK_SMALL}: $(ratio check "$CHECK_SMALL" "$CHECK_LARGE")x (target <= 1.5)"
