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

# The package is built with the features `cargo test` turned on in the dependencies
# it shares (python/Cargo.toml, feature test-build), so it reuses them. Said here
# when the two sets drift apart (the build is then minutes slower, still correct).
features() { cargo tree "$@" -f '{p} [{f}]' --prefix none | sed 's/ (\*)//; s/ (proc-macro)//' | sort -u; }
tests_set=$(features --workspace -e normal,build,dev)
python_set=$(features -p stor-python -e normal,build --features stor-python/test-build)
drift=$(comm -13 <(echo "$tests_set") <(echo "$python_set") | grep -v '^stor-python ' || true)
if [ -n "$drift" ]; then
  say "WARNING: the Python test build's features differ from cargo test's; these crates (and what"
  say "depends on them) compile twice — align python/Cargo.toml's test-build feature:"
  printf '  %s\n' "$drift" >&2
fi

say "building the Python package (maturin, dev profile) into $VENV"
start=$SECONDS
PATH="$VENV/bin:$PATH" MATURIN_PEP517_ARGS="--profile dev --features test-build" "$VENV/bin/pip" install -q \
  --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps ./python
say "built and installed in $((SECONDS - start)) s"

say "pytest python/tests"
# The venv's pytest script, not `python -m pytest`: that would put the current
# directory on sys.path, and python/stor (without the native module) could shadow
# the installed package.
"$VENV/bin/pytest" -q -p no:cacheprovider python/tests
