#!/usr/bin/env bash
# Set up auricle on a fresh Debian / Raspberry Pi OS machine: system packages
# (when missing) and the Python environment in .venv.
#
#   deploy/setup.sh [edge|train|dev]     (default: edge)
#
# edge  - what the device needs: the daemon, its runtime and audio/MQTT libs
# train - edge + TensorFlow and the training tools (desktop)
# dev   - train + test tools, mosquitto and PulseAudio for the integration
#         tests, and a second venv with the oldest supported LiteRT runtime
set -euo pipefail

extras="${1:-edge}"
case "$extras" in edge|train|dev) ;; *) echo "usage: $0 [edge|train|dev]" >&2; exit 2 ;; esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${AURICLE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
oldest_litert="1.4.0"   # keep in step with README "Supported platforms"

log() { printf 'setup: %s\n' "$*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

system_packages() {
  local pkgs=(libportaudio2 libsndfile1)
  "$python" -c "import ensurepip, venv" 2>/dev/null || pkgs+=(python3-venv python3-pip)
  command -v "$python" >/dev/null || pkgs+=(python3)
  if [ "$extras" = dev ] || [ "${AURICLE_WITH_SERVICES:-0}" = 1 ]; then
    pkgs+=(mosquitto mosquitto-clients pulseaudio pulseaudio-utils libasound2-plugins)
  fi
  if command -v dpkg-query >/dev/null; then
    apt_install "${pkgs[@]}"
  else
    log "not a Debian system: make sure these are installed: ${pkgs[*]}"
  fi
}

python_env() {
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    "$python" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  log "installing auricle[$extras] into $venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[$extras]"
}

compat_env() {
  # The oldest runtime we claim to support, to check shipped models against it.
  local compat="$root/.venv-compat"
  if ! "$compat/bin/python" -c "import ai_edge_litert" 2>/dev/null; then
    log "creating $compat with ai-edge-litert==$oldest_litert"
    "$python" -m venv "$compat"
    "$compat/bin/python" -m pip install -q --disable-pip-version-check "ai-edge-litert==$oldest_litert" numpy
  fi
}

system_packages
python_env
[ "$extras" = dev ] && compat_env
log "ready: $venv ($extras)"
