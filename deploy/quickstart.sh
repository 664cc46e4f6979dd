#!/usr/bin/env bash
# Set up the device side and run the daemon on built-in defaults: the shipped
# model, the microphone when there is one (otherwise a generated demo clip),
# detections printed to the console (readable on a terminal, JSON lines in a
# pipe or with --json).  Extra arguments go to
# `auricle run` (e.g. --config /etc/auricle/config.yaml).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/deploy/setup.sh" edge
exec "${AURICLE_VENV:-$root/.venv}/bin/auricle" run "$@"
