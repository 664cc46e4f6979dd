#!/usr/bin/env bash
# Install auricle as a systemd service on a Raspberry Pi (run as root):
# code in /opt/auricle, config in /etc/auricle, state in /var/lib/auricle.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo $0)" >&2; exit 2; }
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
install -m 644 "$src/systemd/auricle.service" /etc/systemd/system/auricle.service
systemctl daemon-reload
systemctl enable --now auricle.service
systemctl --no-pager status auricle.service | head -n 5
