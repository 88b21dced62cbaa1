#!/bin/bash
# tests/media/venv.sh - the Python venv of the media clients (LiveKit's Python SDK from PyPI,
# pinned in tests/media/requirements.txt), cached under ${AIRCLASS_CACHE:-/var/tmp/airclass-cache}
# keyed by the requirements' hash, so a second run takes a second. Prints the venv's python.
#
#   PY=$(tests/media/venv.sh)     build or reuse; fails saying what is missing and how to get it
set -Eeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REQ=$HERE/requirements.txt
CACHE=${AIRCLASS_CACHE:-/var/tmp/airclass-cache}
say() { printf '[media-venv] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 is missing: apt-get install -y python3 python3-venv"
KEY=$( (python3 --version; cat "$REQ") | sha256sum | cut -c1-12)
VENV=$CACHE/media-venv/$KEY
if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import livekit.rtc, numpy, redis' 2>/dev/null; then
  say "cached: $VENV"
else
  if ! python3 -c 'import ensurepip' 2>/dev/null; then
    [[ $EUID == 0 ]] || die "python3 cannot create venvs: apt-get install -y python3-venv"
    say "python3 cannot create venvs: apt-get install -y python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null \
      || die "apt-get install python3-venv failed"
  fi
  rm -rf "$VENV.tmp"
  mkdir -p "$(dirname "$VENV")"
  say "creating $VENV (pip install -r $REQ; first time: about a minute)"
  python3 -m venv "$VENV.tmp"
  "$VENV.tmp/bin/pip" install -q --disable-pip-version-check -r "$REQ" \
    || die "pip install failed: is PyPI reachable (pip config list)? packages: $REQ"
  "$VENV.tmp/bin/python" -c 'import livekit.rtc, numpy, redis' \
    || die "the venv was built but 'import livekit.rtc' fails (the livekit wheel needs glibc x86_64/aarch64)"
  rm -rf "$VENV"
  mv "$VENV.tmp" "$VENV"
  say "ready: $VENV"
fi
echo "$VENV/bin/python"
