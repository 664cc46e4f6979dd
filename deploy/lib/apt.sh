# shellcheck shell=bash
# apt for the deploy scripts (sourced): every apt-get call goes through apt_get, which waits for a
# held package lock instead of failing at once.
#
#   apt_install PKG...   install the packages that are not installed (apt-get update, then install)
#   apt_get ARGS...      apt-get ARGS, with sudo when not root
#
# On a Raspberry Pi's first boot apt-daily and unattended-upgrades hold apt's locks for minutes, and
# a plain apt-get exits 100 ("E: Could not get lock /var/lib/dpkg/lock-frontend"). apt 2.6 waits for
# the dpkg lock when asked (-o DPkg::Lock::Timeout=N) but not for the lists lock (apt-get update) or
# the archives lock (downloads): measured, those fail at once whatever the option says. So apt is its
# own probe: a first try that does not wait; when it fails on a lock, one line says so and it is
# tried again (waiting inside apt for the dpkg lock, every 2 s for the others) until
# AURICLE_APT_LOCK_TIMEOUT seconds (600) have passed. A failed try changed nothing: apt takes its
# locks before it does anything.

_apt_say() { printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2; }

_apt_holder() {
  # _apt_holder ERRFILE: who holds the lock, from apt's own message ("It is held by process 812 (unattended-upgr)")
  local who
  who="$(sed -n 's/^E: Could not get lock .* It is held by \(process [0-9]* ([^)]*)\).*/\1/p' "$1" | head -n 1)"
  printf '%s' "${who:-another apt}"
}

apt_get() {
  # apt_get ARGS...: apt-get ARGS (sudo when not root; C messages, no questions), waiting for a held lock
  local limit="${AURICLE_APT_LOCK_TIMEOUT:-600}" sudo="" err rc said=no wait_s=0 deadline
  case "$limit" in '' | *[!0-9]*)
    _apt_say "AURICLE_APT_LOCK_TIMEOUT is seconds to wait for the package lock, not '$limit'"
    return 2 ;;
  esac
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  err="$(mktemp)"
  deadline=$((SECONDS + limit))
  while :; do
    rc=0
    $sudo env LC_ALL=C DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$wait_s" "$@" 2>"$err" || rc=$?
    if [ "$rc" -eq 0 ] || ! grep -q '^E: Could not get lock' "$err"; then break; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      _apt_say "the package lock is still held after $limit s (AURICLE_APT_LOCK_TIMEOUT waits longer)"
      break
    fi
    if [ "$said" = no ]; then
      _apt_say "waiting up to $limit s for the package lock (held by $(_apt_holder "$err"): another apt, e.g. unattended-upgrades at first boot)"
      said=yes
    fi
    sleep "$((deadline - SECONDS < 2 ? deadline - SECONDS : 2))"
    wait_s=$((deadline - SECONDS > 0 ? deadline - SECONDS : 0))
  done
  cat "$err" >&2
  rm -f "$err"
  return "$rc"
}

apt_install() {
  # apt_install PKG...: install those of PKG that dpkg does not list as installed; nothing to do, no apt
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  _apt_say "installing system packages: ${missing[*]}"
  apt_get update -qq || return
  apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

have_apt() { command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; }
