#!/usr/bin/env bash
# Set everything up and run the whole test suite: ruff, mypy, the import contracts, pytest.
# Exits non-zero when any of them fails.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
deploy/setup.sh dev || exit 1
venv="${AURICLE_VENV:-$root/.venv}"
status=0
run() { printf '\n== %s\n' "$*" >&2; "$@" || status=1; }
run "$venv/bin/ruff" check .
run "$venv/bin/ruff" format --check .
run "$venv/bin/mypy"
run "$venv/bin/lint-imports"
run "$venv/bin/python" -m pytest "$@"
[ "$status" -eq 0 ] && echo "all checks passed" >&2 || echo "FAILED" >&2
exit "$status"
