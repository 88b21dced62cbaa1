#!/bin/bash
# tests/media/run.sh - the media tier (a stage of scripts/test.sh): real WebRTC media through a
# real three-node AirClass cluster. Installs its own dependencies or fails saying how to get them:
#   - livekit-server v1.13.5       scripts/livekit.sh (builds it with Go once, then cached)
#   - LiveKit's Python SDK         tests/media/venv.sh (pinned, cached venv)
#   - redis-server, iproute2       apt-get (as root)
#   - airclass-node                cargo build (target/debug)
# Topology (tests/media/netns.sh): namespaces TAG-main 10.78.0.10, TAG-node-1 .11, TAG-node-2 .12,
# TAG-client .100 on one bridge in TAG-sw; no route out, no loopback candidates. The scenario is
# tests/media/classroom.py, run inside TAG-client. Needs root.
#
#   tests/media/run.sh            run it; KEEP=1 keeps the work directory (logs) afterwards
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
say() { printf '\033[1m[media]\033[0m %s\n' "$*"; }
die() { say "ERROR: $*"; exit 1; }

[[ $EUID == 0 ]] || die "needs root (network namespaces): sudo $0"
for t in ip redis-server; do
  command -v "$t" >/dev/null && continue
  pkg=$([[ $t == ip ]] && echo iproute2 || echo redis-server)
  say "$t is missing: apt-get install -y $pkg"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null || die "apt-get install $pkg failed"
done
LK=$(scripts/livekit.sh) || die "no livekit-server: scripts/livekit.sh needs Go (apt-get install golang-go) or a binary at $(scripts/livekit.sh --path)"
PY=$(tests/media/venv.sh) || die "no Python venv with LiveKit's SDK (tests/media/venv.sh says why above)"
say "building airclass-node"
cargo build -q --locked --bin airclass-node || die "cargo build failed"
DAEMON=$ROOT/target/debug/airclass-node

TAG=acm$$
SUBNET=${MEDIA_SUBNET:-10.78.0}
WORK=$(mktemp -d /tmp/airclass-media.XXXXXX)
cleanup() {
  tests/media/netns.sh down "$TAG" || true
  if [[ ${KEEP:-0} == 1 ]]; then say "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
tests/media/netns.sh up "$TAG" "$SUBNET" main:10 node-1:11 node-2:12 client:100
say "namespaces $TAG-{main,node-1,node-2,client} on $SUBNET.0/24 (bridge in $TAG-sw, no route out)"
say "livekit-server: $LK ($("$LK" --version 2>&1 | head -1))"
rc=0
tests/media/netns.sh exec "$TAG" client "$PY" tests/media/classroom.py --work "$WORK" --tag "$TAG" \
  --daemon "$DAEMON" --livekit "$LK" --subnet "$SUBNET" || rc=$?
if [[ $rc != 0 ]]; then
  for f in "$WORK"/main.log "$WORK"/node-1.log "$WORK"/node-2.log; do
    [[ -f $f ]] && { say "last lines of $f"; tail -15 "$f"; }
  done
fi
exit $rc
