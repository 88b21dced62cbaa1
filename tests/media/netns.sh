#!/bin/bash
# tests/media/netns.sh - private test hosts for real WebRTC media: one network namespace per host,
# each with an `eth0` (veth) on one bridge that lives in a namespace of its own. No namespace has
# a default route, so nothing can leave the machine; no address is loopback, so ICE host
# candidates work (CONTRACT.md §16: loopback candidates are forbidden by ICE).
#
#   netns.sh up TAG SUBNET HOST:OCTET...   e.g. netns.sh up acm1 10.78.0 main:10 node-1:11 client:100
#                                          creates TAG-sw (bridge br0, SUBNET.1/24) and TAG-HOST with
#                                          eth0 = SUBNET.OCTET/24 (idempotent per host: fails if it exists)
#   netns.sh down TAG                      deletes every namespace named TAG-* (processes inside are
#                                          killed first: `ip netns pids`)
#   netns.sh exec TAG HOST CMD...          runs CMD inside TAG-HOST
#
# Host names are at most 12 characters (the bridge port is called v-HOST, interface names fit 15).
# Needs root and iproute2.
set -Eeuo pipefail

die() { echo "netns.sh: $*" >&2; exit 1; }
[[ $EUID == 0 ]] || die "needs root (ip netns add)"
command -v ip >/dev/null || die "iproute2 is missing: apt-get install -y iproute2"

up() {
  local tag=$1 subnet=$2; shift 2
  local sw=$tag-sw
  if [[ ! -e /run/netns/$sw ]]; then
    ip netns add "$sw"
    ip -n "$sw" link set lo up
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" addr add "$subnet.1/24" dev br0
    ip -n "$sw" link set br0 up
  fi
  local spec host octet ns
  for spec in "$@"; do
    host=${spec%%:*}; octet=${spec##*:}
    [[ ${#host} -le 12 ]] || die "host name $host is longer than 12 characters"
    [[ $octet =~ ^[0-9]+$ && $octet -ge 2 && $octet -le 254 ]] || die "bad octet in $spec"
    ns=$tag-$host
    [[ -e /run/netns/$ns ]] && die "namespace $ns exists already (netns.sh down $tag)"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$sw" link add "v-$host" type veth peer name eth0 netns "$ns"
    ip -n "$sw" link set "v-$host" master br0 up
    ip -n "$ns" addr add "$subnet.$octet/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
}

down() {
  local tag=$1 ns pid
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$tag-" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

case ${1:-} in
  up) [[ $# -ge 4 ]] || die "usage: netns.sh up TAG SUBNET HOST:OCTET..."; shift; up "$@" ;;
  down) [[ $# -eq 2 ]] || die "usage: netns.sh down TAG"; down "$2" ;;
  exec) [[ $# -ge 4 ]] || die "usage: netns.sh exec TAG HOST CMD..."; t=$2 h=$3; shift 3
        exec ip netns exec "$t-$h" "$@" ;;
  *) die "usage: netns.sh up|down|exec ..." ;;
esac
