#!/usr/bin/env bash
# stor's Python package against what Python users have, on one SeaweedFS, in one
# run: the original service's aioboto3 pattern (peerbench's aioboto3_ref.py) and
# obstore. 1000 x 64 KiB up and down with 64 tasks in flight, 512 MiB up and down,
# 10 000 presigned URLs; medians of BENCH_REPS rounds (3) after a warm-up, peak RSS.
#
#   bench/python.sh
#   BENCH_REPS=5 BENCH_WORKLOADS=small-up,small-down bench/python.sh
#
# Builds stor's package in release (thin LTO, as shipped) into its own venv
# ($BENCH_VENV, default /tmp/stor-pybench-venv, from bench/python-requirements.txt)
# and starts SeaweedFS with scripts/with-servers.sh. Data and results.json in
# $BENCH_WORK (default /tmp/stor-pybench).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
: "${BENCH_VENV:=/tmp/stor-pybench-venv}"
: "${PEERBENCH_DIR:=$ROOT/../shared/peerbench}"
export PEERBENCH_DIR
PYTHON="$(command -v python3.11 || command -v python3)"

[ -f "$PEERBENCH_DIR/aioboto3_ref.py" ] || { echo "no aioboto3_ref.py in $PEERBENCH_DIR (set PEERBENCH_DIR)" >&2; exit 1; }
REQ="$HERE/python-requirements.txt"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -f "$BENCH_VENV/.stamp" ] || [ "$(cat "$BENCH_VENV/.stamp")" != "$want" ]; then
  rm -rf "$BENCH_VENV"
  "$PYTHON" -m venv "$BENCH_VENV"
  "$BENCH_VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  echo "$want" > "$BENCH_VENV/.stamp"
fi
echo "== building stor's package (release) into $BENCH_VENV"
(cd "$ROOT" && PATH="$BENCH_VENV/bin:$PATH" "$BENCH_VENV/bin/pip" install -q --disable-pip-version-check \
  --no-build-isolation --force-reinstall --no-deps ./python)
echo "== benchmark"
exec "$ROOT/scripts/with-servers.sh" "$BENCH_VENV/bin/python" "$HERE/python_bench.py"
