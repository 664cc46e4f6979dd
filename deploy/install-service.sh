#!/usr/bin/env bash
# Install auricle as a systemd service on a Raspberry Pi (run as root):
# code in /opt/auricle, config in /etc/auricle, state (over-the-air models, clips) in /var/lib/auricle.
#
#   sudo deploy/install-service.sh                # install, or upgrade in place (safe to run again)
#   sudo deploy/install-service.sh --uninstall    # remove the service and the code; keep config and state
#   sudo deploy/install-service.sh --uninstall --purge   # ... and the config, the state and the user
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
unit=/etc/systemd/system/auricle.service
mode=install purge=no
for arg in "$@"; do
  case "$arg" in
    --uninstall) mode=uninstall ;;
    --purge) purge=yes ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg (see --help)" >&2; exit 2 ;;
  esac
done
[ "$purge" = no ] || [ "$mode" = uninstall ] || { echo "--purge goes with --uninstall" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo $0 $*)" >&2; exit 2; }

systemd_running() {
  # a host booted with systemd; a container or chroot without it has no /run/systemd/system (sd_booted(3))
  [ -d /run/systemd/system ] && command -v systemctl >/dev/null
}

do_uninstall() {
  if [ -f "$unit" ]; then
    if systemd_running; then
      systemctl disable --now auricle.service || true
      rm -f "$unit"
      systemctl daemon-reload
    else
      echo "systemd is not running here: removing the unit file without systemctl"
      rm -f "$unit" "${unit%/*}/multi-user.target.wants/auricle.service"   # what disable would remove
    fi
  fi
  rm -rf /opt/auricle
  if [ "$purge" = yes ]; then
    rm -rf /etc/auricle /var/lib/auricle
    if id auricle >/dev/null 2>&1; then userdel auricle; fi
    echo "auricle removed, with its config, state and user"
  else
    echo "auricle removed; config kept in /etc/auricle, installed models and clips in /var/lib/auricle"
  fi
}

do_install() {
  id auricle >/dev/null 2>&1 || useradd --system --home /var/lib/auricle --shell /usr/sbin/nologin --groups audio auricle
  mkdir -p /opt/auricle /etc/auricle
  if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$src" archive HEAD | tar -x -C /opt/auricle   # tracked files only: no venvs, runs, caches
  else
    cp -a "$src/." /opt/auricle/ && rm -rf /opt/auricle/.venv /opt/auricle/.venv-compat
  fi
  AURICLE_VENV=/opt/auricle/.venv /opt/auricle/deploy/setup.sh edge
  [ -f /etc/auricle/config.yaml ] || install -m 644 "$src/deploy/config.example.yaml" /etc/auricle/config.yaml
  [ -f /etc/auricle/env ] || install -m 600 /dev/null /etc/auricle/env
  /opt/auricle/.venv/bin/auricle run --config /etc/auricle/config.yaml --check
  install -m 644 "$src/systemd/auricle.service" "$unit"
  systemctl daemon-reload
  systemctl enable auricle.service
  systemctl restart auricle.service   # an upgrade runs the new code now; the installed models stay
  systemctl --no-pager status auricle.service | head -n 5
}

"do_$mode"
