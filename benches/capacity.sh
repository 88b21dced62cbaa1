#!/bin/bash
# benches/capacity.sh - the capacity benchmark (not a test: figures only, no assertions):
# how many real participants one node carries in `mux` and in `range` port mode.
# See benches/capacity.py for what is measured; docs/benchmarks.md for the figures.
#
#   benches/capacity.sh [--modes mux,range] [--max 48 --step 4] [--range-max 25 --range-step 1] [--window 6]
#       (arguments go to benches/capacity.py; results also in target/bench/capacity.json)
#
# Same dependencies and topology as tests/media/run.sh: root, the real livekit-server
# (scripts/livekit.sh), the SDK venv (tests/media/venv.sh), one node namespace TAG-main
# (10.79.0.10) and one client namespace (10.79.0.100) on a private bridge, no route out.
# Uses target/release/airclass-node when built (cargo build --release), else target/debug.
# Takes about 4 minutes per mode (defaults). The machine's other load shows in the `machine` and `load1` columns.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
say() { printf '\033[1m[capacity]\033[0m %s\n' "$*"; }
die() { say "ERROR: $*"; exit 1; }
[[ $EUID == 0 ]] || die "needs root (network namespaces)"
command -v redis-server >/dev/null || die "redis-server is missing: apt-get install -y redis-server"
LK=$(scripts/livekit.sh) || die "no livekit-server (scripts/livekit.sh says why above)"
PY=$(tests/media/venv.sh) || die "no SDK venv (tests/media/venv.sh says why above)"
DAEMON=${DAEMON:-$ROOT/target/release/airclass-node}
if [[ ! -x $DAEMON ]]; then
  DAEMON=$ROOT/target/debug/airclass-node
  cargo build -q --locked --bin airclass-node
  say "using the debug build of airclass-node (cargo build --release for release figures)"
fi
TAG=acb$$
SUBNET=${CAPACITY_SUBNET:-10.79.0}
WORK=$(mktemp -d /tmp/airclass-capacity.XXXXXX)
trap 'tests/media/netns.sh down "$TAG"; rm -rf "$WORK"' EXIT
tests/media/netns.sh up "$TAG" "$SUBNET" main:10 client:100
say "livekit-server $("$LK" --version 2>&1 | head -1); daemon $DAEMON; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
tests/media/netns.sh exec "$TAG" client "$PY" benches/capacity.py --work "$WORK" --tag "$TAG" \
  --daemon "$DAEMON" --livekit "$LK" --subnet "$SUBNET" "$@"
mkdir -p target/bench
cp "$WORK/capacity.json" target/bench/capacity.json
say "saved target/bench/capacity.json"
