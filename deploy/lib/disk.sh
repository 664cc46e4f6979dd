# shellcheck shell=bash
# Free disk for the deploy scripts (sourced): an install that will not fit is refused before pip starts,
# in one line that names the disk, what is free and what is needed.
#
#   disk_room PATH NEED_MB WHAT   0 when the filesystem holding PATH (or its nearest existing parent)
#                                 has NEED_MB free; else one line about WHAT, and 1
#
# pip that runs out of disk halfway ("OSError: [Errno 28] No space left on device") leaves a half-made
# venv and a message about pip, not about the disk; on a Pi's SD card, and on a CI machine that is nearly
# full, that is the first thing a user sees. Where df cannot tell (an unusual filesystem), nothing is refused.

_disk_say() { printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2; }

disk_free_mb() {
  # disk_free_mb PATH: MB free to an unprivileged user on the filesystem holding PATH, or nothing
  local at="$1"
  while [ ! -e "$at" ] && [ "$at" != / ]; do at="$(dirname "$at")"; done
  df -Pm "$at" 2>/dev/null | awk 'NR == 2 && $4 ~ /^[0-9]+$/ { print $4 }'
}

disk_room() {
  local path="$1" need="$2" what="$3" free
  free="$(disk_free_mb "$path")"
  [ -n "$free" ] || return 0
  [ "$free" -ge "$need" ] && return 0
  _disk_say "not enough disk for $what: $free MB free on the disk holding $path, about $need MB needed; free some space and run again"
  return 1
}
