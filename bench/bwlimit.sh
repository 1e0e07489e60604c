#!/usr/bin/env bash
# Measures `--bwlimit` (max_bandwidth): the rate stor's CLI actually moves bytes at
# under a limit, for one large upload and download, for 100 files at once sharing
# the limit, and with different limits up and down — against SeaweedFS (started
# through scripts/with-servers.sh) and the local store. Each run moves about five
# seconds' worth at its limit; the table shows the measured rate and how far it is
# from the limit (the token bucket starts with 50 ms of burst, and the process's
# start-up counts against it, so a few per cent under is expected; over is a bug).
#
#   bench/bwlimit.sh                  # debug binary (target/debug/stor), built if needed
#   STOR_BIN=target/release/stor bench/bwlimit.sh
#
# The pass/fail figure (within 10 % of the limit) is for the note, not a test: the
# library's tests check the bucket's arithmetic on a paused clock instead.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "${STOR_TEST_SEAWEEDFS:-}" ]; then
  [ -n "${STOR_BIN:-}" ] || (cd "$ROOT" && cargo build -q -p stor-cli)
  exec "$ROOT/scripts/with-servers.sh" "$0" "$@"
fi
BIN="${STOR_BIN:-$TARGET/debug/stor}"
export AWS_ACCESS_KEY_ID=$STOR_TEST_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$STOR_TEST_SECRET_ACCESS_KEY
export AWS_ENDPOINT_URL=$STOR_TEST_SEAWEEDFS AWS_REGION=us-east-1
WORK="$(mktemp -d /tmp/stor-bwlimit.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
export STOR_LOCAL_ROOT="$WORK/store"

MIB=$((1 << 20))
head -c $((100 * MIB)) /dev/urandom >"$WORK/big.bin"
mkdir -p "$WORK/many"
for i in $(seq -w 1 100); do head -c $MIB /dev/urandom >"$WORK/many/f$i"; done
# A bucket of its own per run, so a rerun on the same server starts clean.
BK="bwlimit-$(date +%s)"
"$BIN" -q mb "s3://$BK"
"$BIN" -q mb local://bwlimit

printf '%-34s %-13s %9s %8s %10s %8s\n' case limit MiB seconds "MiB/s" "vs limit"
measure() { # label limit_mib bytes command...
  local label=$1 limit=$2 bytes=$3; shift 3
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  awk -v l="$label" -v lim="$limit" -v b="$bytes" -v t0="$t0" -v t1="$t1" -v a="$LIMIT_ARG" 'BEGIN {
    s = t1 - t0; r = b / 1048576 / s
    printf "%-34s %-13s %9.0f %8.2f %10.2f %+7.1f%%\n", l, a, b / 1048576, s, r, (r / lim - 1) * 100
  }'
}
big=$((100 * MIB))
LIMIT_ARG=20MiB
measure "upload 100 MiB, one file"      20 $big "$BIN" -q --bwlimit 20MiB cp "$WORK/big.bin" s3://$BK/big.bin
measure "download 100 MiB, one object"  20 $big "$BIN" -q --bwlimit 20MiB cp s3://$BK/big.bin "$WORK/big.out"
rm -f "$WORK/big.out"
measure "upload 100 x 1 MiB, 10 at once" 20 $big "$BIN" -q --bwlimit 20MiB cp -r "$WORK/many" s3://$BK/many/
measure "download 100 x 1 MiB"          20 $big "$BIN" -q --bwlimit 20MiB cp -r s3://$BK/many/ "$WORK/many.out"
rm -rf "$WORK/many.out"
LIMIT_ARG=8MiB:40MiB
head -c $((40 * MIB)) /dev/urandom >"$WORK/mid.bin"
measure "upload 40 MiB at 8 (8:40)"      8 $((40 * MIB)) "$BIN" -q --bwlimit 8MiB:40MiB cp "$WORK/mid.bin" s3://$BK/mid.bin
LIMIT_ARG=8MiB:40MiB
measure "download 100 MiB at 40 (8:40)" 40 $big "$BIN" -q --bwlimit 8MiB:40MiB cp s3://$BK/big.bin "$WORK/big.out"
rm -f "$WORK/big.out"
LIMIT_ARG=20MiB
measure "local store: upload 100 MiB"   20 $big "$BIN" -q --bwlimit 20MiB cp "$WORK/big.bin" local://bwlimit/big.bin
