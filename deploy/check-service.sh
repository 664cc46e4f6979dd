#!/usr/bin/env bash
# Boot the service under a real systemd and check that the hardened unit lets the daemon work.
#
#   sudo deploy/check-service.sh            # about 90 s with the root cached, 3 minutes the first time
#   sudo deploy/check-service.sh --rebuild  # build the Debian 12 root and the wheels again
#   sudo deploy/check-service.sh --keep     # leave the container's files in CACHE/run for a look
#
# A Debian 12 root (debootstrap, from apt's own Debian mirror; cached with the wheels in
# ${AURICLE_CHECK_CACHE:-/var/cache/auricle-systemd-check}) is booted with `systemd-nspawn --boot`
# (private network: loopback only) over a fresh overlay; this checkout (tracked and untracked
# files, not .git) is installed in it by deploy/install-service.sh as on a Pi (pip reads the
# cached wheels, nothing is downloaded at check time); a mosquitto runs in the container.
# Checks: READY=1 (the example config, then a WAV file in a loop), watchdog pings, the process's
# user, seccomp and capabilities, status, health, events and clips, kill -9 restarts it, a stopped
# daemon is killed by the watchdog, the state directory is the only writable place, the unit's
# device policy refuses non-sound devices, a config error is not restarted (exit 2) and its reason is
# retained on the broker. One ok/FAIL/skip line each (docs/daemon.md).
# What it needs and lacks (systemd-container, debootstrap, util-linux) apt installs first, waiting for a
# held package lock (deploy/lib/apt.sh); where there is no apt it names them in one line and exits 3.
# Exit status: 0 all checks passed, 1 a check failed, 2 usage, 3 this machine cannot run the check.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${AURICLE_CHECK_CACHE:-/var/cache/auricle-systemd-check}"
suite=bookworm
rebuild=no keep=no
for arg in "$@"; do
  case "$arg" in
    --rebuild) rebuild=yes ;;
    --keep) keep=yes ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf 'check-service: %s\n' "$*" >&2; }
cannot() { say "cannot run here: $*"; exit 3; }
[ -f "$src/deploy/install-service.sh" ] && [ -f "$src/pyproject.toml" ] || cannot "$src is not an auricle checkout"
[ "$(id -u)" -eq 0 ] || cannot "run as root (sudo $0)"
# shellcheck source=deploy/lib/apt.sh
. "$src/deploy/lib/apt.sh"

need_tools() {
  # need_tools TOOL:PACKAGE...: apt installs the packages of the tools that are missing (waiting for a
  # held package lock); without apt, one line lists them
  local pair tools=() debs=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null && continue
    tools+=("${pair%%:*}")
    case " ${debs[*]} " in *" ${pair#*:} "*) ;; *) debs+=("${pair#*:}") ;; esac
  done
  [ "${#tools[@]}" -eq 0 ] && return 0
  have_apt || cannot "${tools[*]} missing and no apt here to install them: install ${debs[*]} (Debian package names)"
  apt_install "${debs[@]}" || cannot "apt-get could not install ${debs[*]} (for ${tools[*]})"
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || cannot "${pair%%:*} is still missing after installing ${pair#*:}"
  done
}
need_tools systemd-nspawn:systemd-container nsenter:util-linux flock:util-linux mount:mount

mkdir -p "$cache"
exec 9>"$cache/lock"
flock -n 9 || cannot "another check is running ($cache/lock)"
base="$cache/base" wheels="$cache/wheels" run="$cache/run" logs="$cache/logs"
stamp_base="debootstrap $suite minbase v1"
packages=systemd,systemd-sysv,dbus,procps,python3,python3-venv,libportaudio2,libsndfile1,mosquitto,mosquitto-clients
started=$SECONDS
failed=0
nspawn_pid="" leader=""

# ---- the root and the wheels (cached) ------------------------------------------------------

debian_mirror() {
  # apt's own source for the suite, so that a mirror configured here is used; else debootstrap's default
  command -v apt-get >/dev/null || return 0
  apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 2>/dev/null | awk -v s="$suite" '$1 == s { print $2; exit }'
}

build_base() {
  if [ "$rebuild" = no ] && [ "$(cat "$base/.auricle-check" 2>/dev/null)" = "$stamp_base" ]; then return 0; fi
  need_tools debootstrap:debootstrap
  say "building a Debian 12 root in $base (a few minutes, once)"
  rm -rf "$base" "$base.tmp" "$wheels"
  local mirror
  mirror="$(debian_mirror)"
  # shellcheck disable=SC2086  # an empty mirror is no argument: debootstrap's default
  nice debootstrap --variant=minbase --include="$packages" "$suite" "$base.tmp" $mirror >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; cannot "debootstrap failed (log: $cache/debootstrap.log)"; }
  echo auricle-check >"$base.tmp/etc/hostname"
  # no login prompts or timers in a container that only runs the service
  for unit in console-getty.service getty@.service apt-daily.timer apt-daily-upgrade.timer \
    dpkg-db-backup.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$base.tmp/etc/systemd/system/$unit"
  done
  echo "$stamp_base" >"$base.tmp/.auricle-check"
  mv "$base.tmp" "$base"
}

requirements() {
  # what an editable install of auricle[edge] needs: the edge extra, the dependencies and the build backend
  python3 - "$src/pyproject.toml" <<'EOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
reqs = project["project"].get("dependencies", []) + project["project"]["optional-dependencies"]["edge"]
print("\n".join(reqs + project["build-system"]["requires"]))
EOF
}

build_wheels() {
  local want
  want="$(sha256sum "$src/pyproject.toml" | cut -d' ' -f1)"
  if [ "$rebuild" = no ] && [ "$(cat "$wheels/.auricle-check" 2>/dev/null)" = "$want" ]; then return 0; fi
  # the host's pip (its index, proxy and certificates), for the root's Python: wheels only
  local python version
  python="${PYTHON:-python3}"
  version="$(readlink "$base/usr/bin/python3")" version="${version#python}"
  if ! "$python" -m pip --version >/dev/null 2>&1 && [ -z "${PYTHON:-}" ] && have_apt; then apt_install python3-pip; fi
  "$python" -m pip --version >/dev/null 2>&1 || cannot "no pip for $python here to download wheels (set PYTHON=)"
  say "downloading wheels for auricle[edge], Python $version (once per pyproject.toml)"
  rm -rf "$wheels" && mkdir -p "$wheels"
  requirements >"$wheels/requirements.txt"
  "$python" -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version "$version" \
    -d "$wheels" -r "$wheels/requirements.txt" >"$cache/wheels.log" 2>&1 \
    || { tail -n 20 "$cache/wheels.log" >&2; cannot "pip download failed (log: $cache/wheels.log)"; }
  echo "$want" >"$wheels/.auricle-check"
}

# ---- the container ---------------------------------------------------------------------------

teardown() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    in_ct journalctl --no-pager -o short-monotonic >"$logs/journal.txt" 2>&1 || true
    kill -TERM "$nspawn_pid" 2>/dev/null || true   # nspawn asks the container's systemd to power off
    for _ in $(seq 1 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
    wait "$nspawn_pid" 2>/dev/null || true
  fi
  if [ -n "$leader" ] && grep -qE '^NSpid:.*[[:space:]]1$' "/proc/$leader/status" 2>/dev/null; then
    kill -KILL "$leader" 2>/dev/null || true   # the container outlived nspawn: end its PID namespace
  fi
  mountpoint -q "$run/root" && umount "$run/root"
  [ "$keep" = yes ] || rm -rf "$run"
}
trap teardown EXIT

in_ct() {
  # run a command in the booted container, as root, with a clean environment
  nsenter --target "$leader" --mount --uts --ipc --net --pid --cgroup --root --wd \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 "$@"
}

find_leader() {
  # the container's PID 1: the child of systemd-nspawn that its own PID namespace calls 1
  local pid
  for pid in $(cat /proc/"$nspawn_pid"/task/*/children 2>/dev/null); do
    grep -qE '^NSpid:.*[[:space:]]1$' "/proc/$pid/status" 2>/dev/null && { echo "$pid"; return 0; }
  done
  return 1
}

boot() {
  if mountpoint -q "$run/root"; then umount "$run/root"; fi
  rm -rf "$run" "$logs" && mkdir -p "$run/upper" "$run/work" "$run/root" "$logs"
  mount -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/work" "$run/root" \
    || cannot "overlayfs mount failed"
  # this checkout as a person would copy it to a Pi (no .git: install-service.sh copies it as it is); a tracked
  # file deleted in the working tree is left out (an `a || b && c` there ended the loop, and the script, with 1)
  mkdir -p "$run/root/root/auricle"
  if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$src" && git ls-files -z --cached --others --exclude-standard \
      | while IFS= read -r -d '' f; do if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi; done \
      | tar --null -T - -c) | tar -x -C "$run/root/root/auricle"
  else
    tar -C "$src" --exclude=./.git --exclude='./.venv*' -c . | tar -x -C "$run/root/root/auricle"
  fi
  mkdir -p "$run/root/var/cache/auricle-wheels"
  say "booting the container"
  # cgroup v2 as on Raspberry Pi OS (under a hybrid host the container's v1 devices and memory controllers
  # are read-only: DeviceAllow would silently do nothing), and no seccomp filter of nspawn's own: it
  # refuses bpf(), which DevicePolicy= needs on cgroup v2; the unit's own SystemCallFilter= still applies
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 SYSTEMD_SECCOMP=0 systemd-nspawn -D "$run/root" --boot --register=no --keep-unit --private-network --console=pipe \
    --machine=auricle-check --bind-ro="$wheels:/var/cache/auricle-wheels" </dev/null >"$logs/console.log" 2>&1 &
  nspawn_pid=$!
  local state="" t0=$SECONDS
  for _ in $(seq 1 120); do
    kill -0 "$nspawn_pid" 2>/dev/null || { tail -n 30 "$logs/console.log" >&2; cannot "systemd-nspawn --boot exited"; }
    [ -n "$leader" ] || leader="$(find_leader || true)"
    if [ -n "$leader" ]; then
      state="$(in_ct systemctl is-system-running 2>/dev/null || true)"
      case "$state" in running|degraded) break ;; esac
    fi
    sleep 0.5
  done
  case "$state" in
    running) say "systemd booted in $((SECONDS - t0)) s" ;;
    degraded) say "systemd booted, degraded: $(in_ct systemctl --failed --plain --no-legend | tr '\n' ' ')" ;;
    *) tail -n 30 "$logs/console.log" >&2; cannot "the container's systemd did not finish booting (state: ${state:-none})" ;;
  esac
}

# ---- checks ----------------------------------------------------------------------------------

ok() { printf 'ok    %s\n' "$*"; }
bad() { printf 'FAIL  %s\n' "$*"; failed=1; }
prop() { in_ct systemctl show -P "$1" auricle.service; }
main_pid() {
  # the daemon's PID in the container; fails when it has none (a kill of PID 0 would hit this script)
  local pid
  pid="$(prop MainPID)"
  [ "${pid:-0}" -gt 0 ] && echo "$pid"
}

wait_active() {
  # wait_active SECONDS: until the unit is active (for Type=notify: READY=1 received) and running
  local _
  for _ in $(seq 1 $(($1 * 2))); do
    [ "$(prop ActiveState)/$(prop SubState)" = active/running ] && return 0
    sleep 0.5
  done
  return 1
}

sub_one() {
  # sub_one TOPIC SECONDS: the next message on TOPIC (not a retained one), or nothing
  in_ct mosquitto_sub -h 127.0.0.1 -t "$1" -C 1 -W "$2" -R 2>/dev/null || true
}

install() {
  say "installing with deploy/install-service.sh (pip reads the cached wheels only)"
  local t0=$SECONDS
  if in_ct env PIP_NO_INDEX=1 PIP_FIND_LINKS=/var/cache/auricle-wheels bash /root/auricle/deploy/install-service.sh \
    >"$logs/install.log" 2>&1; then
    ok "deploy/install-service.sh installed and started the service ($((SECONDS - t0)) s)"
  else
    tail -n 30 "$logs/install.log"
    bad "deploy/install-service.sh failed (log: $logs/install.log)"
    return 1
  fi
}

check_example_config() {
  if wait_active 60; then
    ok "READY=1 with the example config (deploy/config.example.yaml: demo clip, the local broker)"
  else
    bad "not ready with the example config: $(prop ActiveState)/$(prop SubState)"
  fi
}

configure() {
  # audio from a WAV file in a loop, the container's broker, a clip per event; ALSA device nodes for
  # BindPaths=-/dev/snd (there is no sound card: the nodes show what the device policy lets through)
  in_ct /opt/auricle/.venv/bin/python -c '
from pathlib import Path
from edge.audio.demo import demo_samples, write_wav
write_wav(Path("/usr/local/share/auricle-check/demo.wav"), demo_samples())'
  in_ct chmod 644 /usr/local/share/auricle-check/demo.wav   # written 0600 by root: the daemon's user reads it
  in_ct sh -c 'mkdir -p /dev/snd && mknod -m 660 /dev/snd/controlC0 c 116 0 && mknod -m 660 /dev/snd/pcmC0D0c c 116 24 \
    && mknod -m 666 /dev/snd/not-sound c 10 200 && chgrp audio /dev/snd/*'
  in_ct sh -c 'cat >/etc/auricle/config.yaml' <<'EOF'
audio:
  source: file
  file: /usr/local/share/auricle-check/demo.wav
  loop: true
mqtt:
  host: 127.0.0.1
  device_id: check
  health_interval_s: 5
recording:
  enabled: true
  dir: /var/lib/auricle/clips
  pre_roll_s: 0.5
  post_roll_s: 0.5
EOF
  local t0=$SECONDS
  in_ct systemctl restart auricle.service || true   # returns once READY=1 arrives (or the start fails)
  if [ "$(prop ActiveState)" = active ]; then
    ok "READY=1 with audio from a WAV file and the broker (systemctl restart returned after $((SECONDS - t0)) s, active/$(prop SubState))"
  else
    bad "restart with the check config: $(prop ActiveState)/$(prop SubState) $(prop Result)"
  fi
}

check_watchdog() {
  # systemd stamps WatchdogTimestamp on every WATCHDOG=1 it accepts
  local usec now stamps=() _
  usec="$(prop WatchdogUSec)"
  for _ in $(seq 1 50); do
    now="$(prop WatchdogTimestampMonotonic)"
    if [ "${#stamps[@]}" -eq 0 ] || [ "$now" != "${stamps[-1]}" ]; then stamps+=("$now"); fi
    [ "${#stamps[@]}" -ge 3 ] && break
    sleep 0.2
  done
  if [ "${usec:-0}" != 0 ] && [ "${#stamps[@]}" -ge 3 ] && [ "${stamps[1]}" -gt 0 ]; then
    ok "watchdog armed (WatchdogUSec=$usec) and pinged: WATCHDOG=1 received every $(((stamps[2] - stamps[1]) / 1000)) ms"
  else
    bad "no watchdog pings: WatchdogUSec=$usec, WatchdogTimestampMonotonic ${stamps[*]}"
  fi
}

check_process() {
  # what the kernel says about the running daemon: its user and groups, seccomp, no capabilities, nice
  local pid status audio nice
  pid="$(main_pid)" || { bad "process: the service has no main process"; return 0; }
  status="$(in_ct cat "/proc/$pid/status")"
  audio="$(in_ct getent group audio | cut -d: -f3)"
  nice="$(in_ct ps -o ni= -p "$pid" | tr -d ' ')"
  if printf '%s\n' "$status" | grep -qE "^Uid:[[:space:]]+$(in_ct id -u auricle)[[:space:]]" \
    && printf '%s\n' "$status" | grep -E '^Groups:' | grep -qw "$audio" \
    && printf '%s\n' "$status" | grep -qE '^Seccomp:[[:space:]]+2$' \
    && printf '%s\n' "$status" | grep -qE '^NoNewPrivs:[[:space:]]+1$' \
    && printf '%s\n' "$status" | grep -qE '^CapEff:[[:space:]]+0+$' \
    && printf '%s\n' "$status" | grep -qE '^CapBnd:[[:space:]]+0+$' && [ "$nice" = -5 ]; then
    ok "the daemon runs as auricle with the audio group, a seccomp filter (SystemCallFilter=), no new privileges, no capabilities, nice -5"
  else
    bad "the daemon's process: nice $nice; $(printf '%s\n' "$status" | grep -E '^(Uid|Groups|Seccomp|NoNewPrivs|CapEff|CapBnd):' | tr '\n\t' '  ')"
  fi
  if in_ct grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
    [ "$(in_ct cat /sys/fs/cgroup/system.slice/auricle.service/memory.max)" = 268435456 ] \
      && ok "MemoryMax=256M is the service cgroup's memory.max" || bad "MemoryMax=256M is not in the service cgroup's memory.max"
  else
    printf 'skip  MemoryMax=256M: the container has no memory controller (this host binds it to cgroup v1), so it is not enforced here\n'
  fi
}

check_events() {
  local event status health
  status="$(in_ct mosquitto_sub -h 127.0.0.1 -t auricle/check/status -C 1 -W 10 2>/dev/null || true)"
  [ "$status" = online ] && ok "status 'online' retained on the broker" || bad "status on the broker: '${status}'"
  health="$(sub_one auricle/check/health 15)"
  case "$health" in *'"hops"'*) ok "health published: ${health:0:120}" ;; *) bad "no health message within 15 s" ;; esac
  event="$(sub_one auricle/check/event 40)"
  case "$event" in *'"label"'*) ok "event published: ${event:0:160}" ;; *) bad "no event within 40 s of the looping demo clip" ;; esac
}

check_kill9() {
  local pid restarts t0=$SECONDS
  pid="$(main_pid)" || { bad "kill -9: the service has no main process"; return 0; }
  restarts="$(prop NRestarts)"
  in_ct kill -9 "$pid"
  for _ in $(seq 1 60); do
    [ "$(prop NRestarts)" -gt "$restarts" ] && [ "$(prop MainPID)" != "$pid" ] && break
    sleep 0.5
  done
  if [ "$(prop NRestarts)" -gt "$restarts" ] && wait_active 60; then
    ok "kill -9 of PID $pid: restarted and READY=1 again after $((SECONDS - t0)) s (NRestarts=$(prop NRestarts), PID $(prop MainPID))"
  else
    bad "after kill -9: NRestarts=$(prop NRestarts), $(prop ActiveState)/$(prop SubState)"
    return 0
  fi
  local event
  event="$(sub_one auricle/check/event 40)"
  case "$event" in *'"label"'*) ok "events again after the restart: ${event:0:100}" ;; *) bad "no event within 40 s of the restart" ;; esac
}

check_hang() {
  # a daemon that stops pinging (SIGSTOP) is killed by systemd's watchdog and started again
  local pid restarts limit=90 t0=$SECONDS
  pid="$(main_pid)" || { bad "SIGSTOP: the service has no main process"; return 0; }
  restarts="$(prop NRestarts)"
  in_ct kill -STOP "$pid"
  for _ in $(seq 1 $((limit * 2))); do
    [ "$(prop NRestarts)" -gt "$restarts" ] && break
    sleep 0.5
  done
  if [ "$(prop NRestarts)" -gt "$restarts" ] && in_ct journalctl -u auricle.service --no-pager -q | grep -q 'Watchdog timeout' \
    && wait_active 60; then
    ok "a stopped daemon (SIGSTOP) was killed by the watchdog and restarted after $((SECONDS - t0)) s"
  else
    bad "SIGSTOP: no watchdog restart within ${limit} s (NRestarts=$(prop NRestarts))"
  fi
}

check_filesystem() {
  local pid uid gid writable unexpected clips p
  pid="$(main_pid)" || { bad "file system: the service has no main process"; return 0; }
  uid="$(in_ct id -u auricle)" gid="$(in_ct id -g auricle)"
  for _ in $(seq 1 40); do   # a clip appears once its event has ended
    clips="$(in_ct sh -c 'ls /var/lib/auricle/clips/*.wav 2>/dev/null | wc -l')"
    [ "$clips" -gt 0 ] && break
    sleep 0.5
  done
  [ "$clips" -gt 0 ] && ok "the daemon wrote $clips clip(s) in /var/lib/auricle/clips" || bad "no clip in /var/lib/auricle/clips"
  # the daemon's own view of the file system: its mount namespace, as its user (sockets and device
  # nodes are not storage: a socket on a read-only file system still connects)
  in_ct sh -c 'echo system >/tmp/.auricle-check-system'
  writable="$(in_ct nsenter --target "$pid" --mount --setuid "$uid" --setgid "$gid" \
    find / \( -path /proc -o -path /sys \) -prune -o ! -type l ! -type s ! -type c -writable -print 2>/dev/null || true)"
  unexpected="$(printf '%s\n' "$writable" | grep -vE '^((/var/lib/auricle|/tmp|/var/tmp)(/.*)?|/dev/mqueue)$' | grep -v '^$' || true)"
  if [ -z "$unexpected" ] && printf '%s\n' "$writable" | grep -qx /var/lib/auricle; then
    ok "writable for the daemon: /var/lib/auricle, its private /tmp and /var/tmp, /dev/mqueue; nothing else ($(printf '%s\n' "$writable" | wc -l) paths)"
  else
    bad "writable for the daemon beyond its state: $(printf '%s\n' "$unexpected" | head -n 10 | tr '\n' ' ')"
  fi
  if in_ct nsenter --target "$pid" --mount test -e /tmp/.auricle-check-system; then
    bad "the daemon's /tmp is the system's"
  else
    ok "the daemon's /tmp is its own (PrivateTmp=)"
  fi
  in_ct rm -f /tmp/.auricle-check-system
  # read-only by the sandbox, not by file permissions: root in the daemon's namespace cannot write either
  local out written=""
  for p in /etc/auricle /opt/auricle /usr/local /var/lib /var/log /run /run/lock /dev/shm /root /home; do
    out="$(in_ct nsenter --target "$pid" --mount touch "$p/.auricle-check" 2>&1 || true)"
    case "$out" in
      *'Read-only file system'*|*'Permission denied'*) ;;
      *)
        written="$written $p${out:+ ($out)}"
        in_ct nsenter --target "$pid" --mount rm -f "$p/.auricle-check" || true ;;
    esac
  done
  if [ -z "$written" ]; then
    ok "root in the daemon's namespace cannot write /etc/auricle, /opt/auricle, /usr/local, /var/lib, /var/log, /run, /run/lock, /dev/shm (read-only), /root, /home (hidden)"
  else
    bad "root in the daemon's mount namespace can write:$written"
  fi
  [ "$(in_ct nsenter --target "$pid" --mount ls /dev/snd 2>/dev/null | wc -l)" -gt 0 ] \
    && ok "BindPaths=-/dev/snd: the sound device nodes are in the daemon's private /dev" \
    || bad "no /dev/snd in the daemon's private /dev"
}

device_probe() {
  # device_probe [EXTRA -p PROPERTIES]: open the /dev/snd nodes under the unit's own [Service] sandbox
  # (systemd-run: the probe is in a real cgroup, as the daemon is); one "NAME opened|ERRNO" line each
  local props=() line
  while IFS= read -r line; do props+=(-p "$line"); done < <(in_ct awk '
    /^\[/ { section = $0; next }
    section == "[Service]" && /^[A-Za-z]+=/ && $0 !~ /^(Type|NotifyAccess|ExecStart|WatchdogSec|Restart|RestartSec|RestartPreventExitStatus|TimeoutStartSec|TimeoutStopSec)=/' \
    /etc/systemd/system/auricle.service)
  in_ct systemd-run --quiet --wait --pipe --collect "${props[@]}" "$@" /opt/auricle/.venv/bin/python -c '
import errno, os
for name in ("controlC0", "pcmC0D0c", "not-sound"):
    try:
        os.close(os.open("/dev/snd/" + name, os.O_RDWR))
        print(name, "opened")
    except OSError as exc:
        print(name, errno.errorcode[exc.errno])
' 2>&1 || true
}

check_devices() {
  # no sound card here: a node of an allowed device fails in its driver (ENXIO/ENODEV), a refused one
  # with EPERM before any driver is asked
  local out control passes='(ENXIO|ENODEV|opened)'
  out="$(device_probe)"
  if printf '%s\n' "$out" | grep -qx 'not-sound EPERM'; then
    ok "under the unit's sandbox a non-sound device node (10:200) in /dev/snd gets EPERM (DevicePolicy=closed)"
  else
    bad "device policy: a non-sound device node: $(printf '%s\n' "$out" | tr '\n' ' ')"
  fi
  if grep -qw alsa /proc/devices; then
    if printf '%s\n' "$out" | grep -qE "^controlC0 $passes\$" && printf '%s\n' "$out" | grep -qE "^pcmC0D0c $passes\$"; then
      ok "DeviceAllow=char-alsa: the ALSA nodes pass the device policy ($(printf '%s\n' "$out" | head -n 2 | tr '\n' ' '))"
    else
      bad "DeviceAllow=char-alsa refuses ALSA nodes: $(printf '%s\n' "$out" | tr '\n' ' ')"
    fi
  else
    # char-alsa is looked up in /proc/devices: without a sound driver it names no device at all
    control="$(device_probe -p 'DeviceAllow=/dev/snd/controlC0 rw')"
    if printf '%s\n' "$control" | grep -qE "^controlC0 $passes\$" && printf '%s\n' "$control" | grep -qx 'not-sound EPERM'; then
      ok "the device policy is enforced here: with DeviceAllow=/dev/snd/controlC0 added, that node passes, 10:200 still gets EPERM"
    else
      bad "the device policy control: $(printf '%s\n' "$control" | tr '\n' ' ')"
    fi
    printf 'skip  DeviceAllow=char-alsa: this kernel has no sound driver ("alsa" is not in /proc/devices), so char-alsa names no device and the ALSA nodes get EPERM; check it on a Pi\n'
  fi
}

check_config_error() {
  # a config error (exit 2) is not restarted every 3 s (RestartPreventExitStatus=2): the unit stays failed and
  # the retained status/reason on the broker says why; with the good config back it starts again
  local started state="" again reason t0 _
  in_ct cp /etc/auricle/config.yaml /etc/auricle/config.yaml.good
  in_ct mosquitto_pub -h 127.0.0.1 -t auricle/check/status/reason -r -n   # no stale reason
  # audio.gate_dbfs out of range; the mqtt section is good, so the daemon can still reach the broker
  in_ct sh -c 'cat >/etc/auricle/config.yaml' <<'CONFIG'
audio:
  source: file
  file: /usr/local/share/auricle-check/demo.wav
  loop: true
  gate_dbfs: 3
mqtt:
  host: 127.0.0.1
  device_id: check
CONFIG
  in_ct systemctl restart auricle.service 2>/dev/null || true   # returns once the start has failed
  started="$(prop ExecMainStartTimestampMonotonic)"
  for _ in $(seq 1 20); do   # 10 s: RestartSec=3 would have started it again by then
    state="$(prop ActiveState)/$(prop SubState)"
    case "$state" in activating/* | active/*) break ;; esac
    [ "$(prop ExecMainStartTimestampMonotonic)" = "$started" ] || break
    sleep 0.5
  done
  again=no
  [ "$(prop ExecMainStartTimestampMonotonic)" = "$started" ] || again=yes
  case "$state/$(prop ExecMainStatus)/$again" in
    failed/*/2/no | inactive/*/2/no)
      ok "a config error (exit 2) is not restarted: $state for 10 s, NRestarts=$(prop NRestarts) (RestartPreventExitStatus=2)" ;;
    *) bad "a config error: $state, exit status $(prop ExecMainStatus), started again: $again, NRestarts=$(prop NRestarts)" ;;
  esac
  reason="$(in_ct mosquitto_sub -h 127.0.0.1 -t auricle/check/status/reason -C 1 -W 5 2>/dev/null || true)"
  case "$reason" in
    *audio.gate_dbfs*) ok "the retained status/reason names the config error: ${reason:0:160}" ;;
    '') bad "no retained status/reason on the broker within 5 s of the config error" ;;
    *) bad "the retained status/reason does not name the config error (audio.gate_dbfs): ${reason:0:160}" ;;
  esac
  in_ct mv /etc/auricle/config.yaml.good /etc/auricle/config.yaml
  t0=$SECONDS
  in_ct systemctl restart auricle.service || true
  if wait_active 60; then
    ok "the good config back: systemctl restart, READY=1 again after $((SECONDS - t0)) s"
  else
    bad "the good config back: $(prop ActiveState)/$(prop SubState) $(prop Result)"
  fi
}

check_journal() {
  local exposure denied
  exposure="$(in_ct systemd-analyze security auricle.service 2>/dev/null | sed -n 's/.*Overall exposure level for auricle.service: \([0-9.]*\).*/\1/p')"
  [ -n "$exposure" ] && ok "systemd-analyze security on the running unit: exposure $exposure" || bad "systemd-analyze security gave no exposure"
  in_ct journalctl -u auricle.service --no-pager -o cat >"$logs/auricle.log" 2>&1 || true
  denied="$(grep -E 'Operation not permitted|Permission denied|Read-only file system|Traceback' "$logs/auricle.log" | head -n 5 || true)"
  [ -z "$denied" ] && ok "the daemon's journal has no denied operation or traceback" || bad "the daemon's journal: $denied"
}

build_base
build_wheels
boot
if install; then
  check_example_config
  configure
  check_watchdog
  check_process
  check_events
  check_filesystem
  check_devices
  check_kill9
  check_hang
  check_config_error
  check_journal
fi
in_ct journalctl -u auricle.service --no-pager -o short-monotonic >"$logs/auricle.log" 2>&1 || true
if [ "$failed" -eq 0 ]; then
  say "all checks passed in $((SECONDS - started)) s"
else
  say "FAILED (logs: $logs)"
fi
exit "$failed"
