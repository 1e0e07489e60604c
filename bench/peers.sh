#!/usr/bin/env bash
# stor's CLI side by side with s5cmd, rclone, the aws cli and the aioboto3 reference,
# on one SeaweedFS on 127.0.0.1: W1 upload 512 MiB, W2 download it, W3/W4 1000 x 64 KiB
# up/down, W5 list 10 000 keys, W6 presign 10 000 URLs. Contenders interleaved, several
# runs, medians, ratios to the fastest peer, peak RSS and CPU.
#
#   bench/peers.sh                                    # all workloads, 3 reps (~15 min)
#   PEERBENCH_WORKLOADS=W5,W6 PEERBENCH_REPS=5 bench/peers.sh
#
# Uses the shared harness (../shared/peerbench, or $PEERBENCH_DIR) with this repo's
# release binary as the `stor` contender. Results: $OUT_DIR (default
# /tmp/stor-bench/<date>): results.md, results.json. Also runs the in-process presign
# benchmark (criterion) unless BENCH_SKIP_CRITERION=1.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
: "${PEERBENCH_DIR:=$ROOT/../shared/peerbench}"
: "${OUT_DIR:=/tmp/stor-bench/$(date +%Y%m%d-%H%M%S)}"
export OUT_DIR

[ -x /usr/bin/time ] || { echo "installing GNU time (/usr/bin/time)"; apt-get install -y -q time >/dev/null; }
[ -f "$PEERBENCH_DIR/run.sh" ] || { echo "no peerbench at $PEERBENCH_DIR (set PEERBENCH_DIR)" >&2; exit 1; }

cd "$ROOT"
cargo build --release -q -p stor-cli
BIN="$ROOT/target/release/stor"

if [ "${BENCH_SKIP_CRITERION:-0}" != 1 ]; then
  echo "== in-process presign (criterion, one core)"
  taskset -c 0 cargo bench -q -p stor --bench presign 2>&1 | grep -E "presign|thrpt" || true
fi

echo "== peers (results in $OUT_DIR)"
PROJECT_BIN="$BIN" PROJECT_NAME=stor bash "$PEERBENCH_DIR/run.sh"
