#!/usr/bin/env bash
# Set up auricle on a fresh Debian / Raspberry Pi OS machine: system packages
# (when missing) and the Python environment in .venv.
#
#   deploy/setup.sh [edge|train|dev]     (default: edge)
#
# edge  - what the device needs: the daemon, its runtime and audio/MQTT libs
# train - edge + TensorFlow and the training tools (desktop)
# dev   - train + test tools, mosquitto and PulseAudio for the integration
#         tests, venvs with the oldest LiteRT runtime that gives the newest's events
#         on its default kernels (.venv-compat) and the oldest supported one, which
#         does on model.kernels: builtin (.venv-oldest), and an edge-only venv (.venv-edge)
#
# Missing system packages are installed with apt-get (sudo when not root); a package lock held by
# another apt (unattended-upgrades on a Pi's first boot) is waited for, one line says so, up to
# AURICLE_APT_LOCK_TIMEOUT seconds (600; deploy/lib/apt.sh).
# Python packages are installed once; a later run skips pip unless
# pyproject.toml or the extras changed (so a second start works offline). An install that would not fit
# on the disk is refused first, in one line (deploy/lib/disk.sh), and pip keeps no cache of its own
# (PIP_NO_CACHE_DIR, unless set): TensorFlow's wheels would stay on the disk twice.
set -euo pipefail

extras="${1:-edge}"
case "$extras" in edge|train|dev) ;; *) echo "usage: $0 [edge|train|dev]" >&2; exit 2 ;; esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${AURICLE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
oldest_litert="2.1.3"   # keep in step with README "Supported platforms": the newest's events on XNNPACK
oldest_builtin_litert="1.4.0"   # ... and on the builtin kernels (the oldest supported)

log() { printf 'setup: %s\n' "$*" >&2; }
# apt_install: the missing ones only, waiting for a held package lock (AURICLE_APT_LOCK_TIMEOUT, 600 s)
# shellcheck source=deploy/lib/apt.sh
. "$root/deploy/lib/apt.sh"
# disk_room: refuse an install that will not fit, in one line (deploy/lib/disk.sh)
# shellcheck source=deploy/lib/disk.sh
. "$root/deploy/lib/disk.sh"
export PIP_NO_CACHE_DIR="${PIP_NO_CACHE_DIR:-1}"

# MB an install takes, measured in fresh venvs on x86_64 (.venv dev 2853, the runtime venvs 159-196), a little
# over: the check says why an install will fail, it must never refuse one that would have fitted
venv_mb() { case "$1" in edge) echo 300 ;; *) echo 2900 ;; esac; }
small_venv_mb=220

system_packages() {
  local pkgs=(libportaudio2 libsndfile1)
  "$python" -c "import ensurepip, venv" 2>/dev/null || pkgs+=(python3-venv python3-pip)
  command -v "$python" >/dev/null || pkgs+=(python3)
  if [ "$extras" = dev ] || [ "${AURICLE_WITH_SERVICES:-0}" = 1 ]; then
    pkgs+=(mosquitto mosquitto-clients pulseaudio pulseaudio-utils libasound2-plugins)
  fi
  if have_apt; then
    apt_install "${pkgs[@]}"
  else
    log "not a Debian system: make sure these are installed: ${pkgs[*]}"
  fi
}

stamp_of() {
  # what an install depends on: the extras and pyproject.toml (code is installed editable)
  printf '%s %s\n' "$1" "$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
}

rank() { case "$1" in edge) echo 1 ;; train) echo 2 ;; dev) echo 3 ;; *) echo 0 ;; esac; }

installed_ok() {
  # installed_ok VENV EXTRAS: the venv holds these extras (or more: dev > train > edge) for this pyproject.toml
  local stamp="$1/.auricle-installed" have hash
  [ -f "$stamp" ] || return 1
  read -r have hash <"$stamp" || return 1
  [ "$hash" = "$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)" ] || return 1
  [ "$(rank "$have")" -ge "$(rank "$2")" ] || return 1
  "$1/bin/python" -c "import edge" 2>/dev/null
}

install_into() {
  # install_into VENV EXTRAS NEED_MB: once; again only when pyproject.toml or the extras changed,
  # so a second start needs no network and takes no time
  local target="$1" want="$2" stamp="$1/.auricle-installed"
  installed_ok "$target" "$want" && return 0
  disk_room "$target" "$3" "auricle[$want] in $target" || exit 1
  if [ ! -x "$target/bin/python" ]; then
    log "creating $target"
    "$python" -m venv "$target"
  fi
  log "installing auricle[$want] into $target"
  "$target/bin/python" -m pip install -q --disable-pip-version-check -e "${root}[$want]"
  stamp_of "$want" >"$stamp"
}

python_env() {
  # dev: room for the three runtime venvs too, so a short disk is said before TensorFlow is half installed
  local need
  need="$(venv_mb "$extras")"
  if [ "$extras" = dev ]; then need=$((need + 3 * small_venv_mb)); fi
  install_into "$venv" "$extras" "$need"
}

code_hash() {
  # what a non-editable install holds: every file of the edge package
  (cd "$root" && find edge -type f \( -name '*.py' -o -name '*.auricle' -o -name py.typed \) | LC_ALL=C sort \
    | xargs sha256sum) | sha256sum | cut -d' ' -f1
}

edge_env() {
  # the device's install alone, as a device gets it: auricle[edge] installed from a built wheel (not editable)
  # and no TensorFlow; tests classify FLAC with it, so a room missing from the wheel fails them
  local target="$root/.venv-edge" stamp="$root/.venv-edge/.auricle-wheel" want
  want="$(stamp_of edge | tr -d '\n') $(code_hash)"
  [ -x "$target/bin/auricle" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  disk_room "$target" "$small_venv_mb" "auricle[edge] in $target" || exit 1
  [ -x "$target/bin/python" ] || { log "creating $target"; "$python" -m venv "$target"; }
  log "installing auricle[edge] into $target (not editable)"
  "$target/bin/python" -m pip install -q --disable-pip-version-check "${root}[edge]"
  "$target/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$root"
  printf '%s' "$want" >"$stamp"
}

compat_env() {
  # An older runtime we claim (venv $1, ai-edge-litert $2), with the device code on it (editable
  # auricle[edge]), so the tests can check shipped models' scores and the daemon's events there against
  # the newest runtime.
  local compat="$root/$1" version="$2" stamp="$root/$1/.auricle-compat" want
  want="$(stamp_of edge | tr -d '\n') ai-edge-litert==$version"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && "$compat/bin/python" -c "import ai_edge_litert, edge" 2>/dev/null; then
    return 0
  fi
  disk_room "$compat" "$small_venv_mb" "ai-edge-litert==$version in $compat" || exit 1
  [ -x "$compat/bin/python" ] || { log "creating $compat"; "$python" -m venv "$compat"; }
  log "installing auricle[edge] with ai-edge-litert==$version into $compat"
  "$compat/bin/python" -m pip install -q --disable-pip-version-check "ai-edge-litert==$version" -e "${root}[edge]"
  printf '%s' "$want" >"$stamp"
}

system_packages
python_env
if [ "$extras" = dev ]; then
  compat_env .venv-compat "$oldest_litert"
  compat_env .venv-oldest "$oldest_builtin_litert"
  edge_env
fi
log "ready: $venv ($extras)"
