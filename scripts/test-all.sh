#!/usr/bin/env bash
# Every test: the Rust workspace (cargo test --workspace), then the Python package
# (python/) built and installed into the test venv and run by pytest. Run it under
# scripts/with-servers.sh (the README's test command) so both reach SeaweedFS.
#
# The package is built with the dev profile into the same target dir as the tests,
# so it reuses their compiled dependencies (a release build of aws-sdk-s3 alone
# costs minutes on 2 cores). Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The venv scripts/with-servers.sh made and exported (maturin and pytest are in it).
VENV="${STOR_TEST_VENV:?run under scripts/with-servers.sh, which sets STOR_TEST_VENV}"
say() { printf '[test-all %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

say "cargo test --workspace $*"
cargo test --workspace "$@"

say "building the Python package (maturin, dev profile) into $VENV"
start=$SECONDS
PATH="$VENV/bin:$PATH" MATURIN_PEP517_ARGS="--profile dev" "$VENV/bin/pip" install -q --disable-pip-version-check \
  --no-build-isolation --force-reinstall --no-deps ./python
say "built and installed in $((SECONDS - start)) s"

say "pytest python/tests"
# The venv's pytest script, not `python -m pytest`: that would put the current
# directory on sys.path, and python/stor (without the native module) could shadow
# the installed package.
"$VENV/bin/pytest" -q -p no:cacheprovider python/tests
