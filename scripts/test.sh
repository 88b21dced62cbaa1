#!/bin/bash
# scripts/test.sh - the test command (README quick start; .ci/run calls it). Run as root.
#
# Installs what the tests need (Debian packages, cargo-deb), then runs every tier:
#   deps                         apt packages, cargo tools, the real livekit-server (scripts/livekit.sh:
#                                pinned `go install`, cached; the first build takes minutes)
#   fmt, clippy                  code hygiene
#   unit + integration tests     cargo nextest: pure cores, the real daemon with the LiveKit
#                                stand-in, the LiveKit contract suite (tests/contract: the real
#                                livekit-server and the stand-in, rendered configs in private
#                                netns), the in-process/multi-process cluster with a real
#                                redis-server, nftables in a private netns, tests/observe
#                                (/metrics parsed by the Prometheus parser, the dashboard's
#                                queries, `airclass-node status`, journald fields)
#   browser                      the status page in headless Chromium against a real
#                                three-node cluster (real livekit-server), screenshots in target/
#   quickstart                   scripts/local-cluster.sh --once (the README's main job)
#   media                        tests/media/run.sh: real WebRTC media (LiveKit's Python SDK)
#                                through a real three-node cluster in private netns; placement
#   systemd hardening            systemd-analyze security --offline (exposure <= 1.5) + verify
#   nix                          nix-instantiate --parse of every .nix file, port plan vs daemon
#   deb + lintian                scripts/build-deb.sh, 0 errors / 0 warnings
#   deb in a container           tests/lab/deb-test.sh (one booted Debian node, real systemd,
#                                the real livekit-server)
#   three-node lab               tests/lab/lab.sh (three booted nodes with the real livekit-server:
#                                faults, real media, Redis outage, drain, placement proof; figures)
#   image                        tests/image/image-test.sh: the appliance disk image built
#                                (scripts/image.sh) and booted, four qemu VMs (OVMF; KVM when it
#                                works, else TCG) in a private network namespace
# Ends with one line "N passed, N failed".
#   SKIP="lab deb-container" scripts/test.sh    skip stages by name
set -Euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOGDIR=${LOGDIR:-$ROOT/target/test-logs}
mkdir -p "$LOGDIR"
SKIP=${SKIP:-}
T0=$EPOCHREALTIME
declare -a RESULTS=()
PASSED=0
FAILED=0

el() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f", b-a}'; }
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

stage() {  # stage NAME CMD...
  local name=$1; shift
  if [[ " $SKIP " == *" $name "* ]]; then
    RESULTS+=("SKIP  $name (SKIP=$SKIP)"); say "$name: skipped"; return 0
  fi
  say "$name"
  local t=$EPOCHREALTIME rc=0
  "$@" 2>&1 | tee "$LOGDIR/$name.log" || rc=${PIPESTATUS[0]}
  if [[ $rc == 0 ]]; then
    RESULTS+=("PASS  $name ($(el "$t") s)"); PASSED=$((PASSED + 1))
  else
    RESULTS+=("FAIL  $name ($(el "$t") s, rc=$rc, log $LOGDIR/$name.log)"); FAILED=$((FAILED + 1))
  fi
}

# The whole run writes about 10 GiB (debug and release builds, the lab's and the image's disks).
# A full disk fails every later stage with a confusing "No space left on device": refuse early.
disk_check() {
  local need_gib=${AIRCLASS_MIN_FREE_GIB:-10} d avail
  for d in "$ROOT/target" "${AIRCLASS_CACHE:-/var/tmp/airclass-cache}" /var/tmp; do
    mkdir -p "$d" 2>/dev/null || true
    avail=$(df --output=avail -BG "$d" 2>/dev/null | tail -1 | tr -dc 0-9)
    if [[ -n $avail && $avail -lt $need_gib ]]; then
      echo "not enough free disk at $d: ${avail} GiB free, the test command needs ${need_gib} GiB"
      echo "  fix: free space there (old target/ dirs: cargo clean; old images: rm -r ${AIRCLASS_CACHE:-/var/tmp/airclass-cache}/image),"
      echo "  or set AIRCLASS_MIN_FREE_GIB if you know the run needs less"
      return 1
    fi
  done
  echo "free disk: $(df --output=avail -BG "$ROOT/target" | tail -1 | tr -d ' ') at target/"
}

# Cargo's build output is cached across clones (as the Go build, the Debian base and the image
# are): target/debug and target/release are links into $AIRCLASS_CACHE/cargo-target, so a second
# run from a fresh clone rebuilds only this crate, not its ~300 dependencies (cargo keys those by
# version, features and profile, not by the checkout's path). Logs and screenshots stay in
# target/. AIRCLASS_BUILD_CACHE=0 builds in place; a target/debug that already exists is used.
link_build_cache() {
  [[ ${AIRCLASS_BUILD_CACHE:-1} == 1 ]] || { echo "build cache off: building in target/"; return 0; }
  local c=${AIRCLASS_CACHE:-/var/tmp/airclass-cache}/cargo-target p gib
  mkdir -p "$c" target
  gib=$(du -s -BG "$c" 2>/dev/null | cut -f1 | tr -dc 0-9)
  if [[ -n $gib && $gib -gt ${AIRCLASS_BUILD_CACHE_MAX_GIB:-16} ]]; then
    echo "build cache $c is ${gib} GiB (over ${AIRCLASS_BUILD_CACHE_MAX_GIB:-16}): emptied"
    rm -rf "${c:?}"/*
  fi
  for p in debug release; do
    if [[ -e target/$p || -L target/$p ]]; then echo "target/$p: $(readlink -f "target/$p")"; continue; fi
    mkdir -p "$c/$p" && ln -s "$c/$p" "target/$p" && echo "target/$p -> $c/$p (build cache)"
  done
}

install_deps() {
  [[ $EUID == 0 ]] || { echo "run as root (apt-get, nftables, containers)"; return 1; }
  disk_check || return 1
  link_build_cache || return 1
  local pkgs=(redis-server nftables systemd-container debootstrap lintian nix-bin avahi-utils
              iproute2 curl python3 python3-venv dpkg-dev gzip util-linux procps
              chromium chromium-driver)
  local missing=()
  local p
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "apt-get install ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # the tests start their own redis-server on free ports; a system one is not needed
  if ! cargo deb --version 2>/dev/null | grep -qE 'cargo-deb (3\.([89]|[1-9][0-9])|[4-9])'; then
    echo "cargo install cargo-deb ^3.8"
    cargo install -q cargo-deb --version '^3.8' --locked
  fi
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "cargo install cargo-nextest"
    cargo install -q cargo-nextest --locked
  fi
  # the Prometheus project's own exposition parser (tests/observe), in a cached venv
  local venv=${AIRCLASS_CACHE:-/var/tmp/airclass-cache}/venv-metrics
  if ! "$venv/bin/python" -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
    echo "pip install prometheus-client into $venv"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q 'prometheus-client==0.26.0' || return 1
  fi
  # The real livekit-server (pinned, built with `go install`, cached under $AIRCLASS_CACHE).
  # Not fatal here: without Go and without a cached binary the real-server tests fail and say
  # how to get one (tests/common/real_livekit.rs).
  local t=$SECONDS
  if scripts/livekit.sh >/dev/null; then
    echo "FIGURE livekit-server install: $((SECONDS - t)) s ($(scripts/livekit.sh --path))"
  else
    echo "WARNING: no real livekit-server (see above); the tests that run it will fail saying how to get one"
  fi
  echo "dependencies present"
}

security_check() {
  local unit=systemd/airclass-node@.service
  systemd-analyze security --offline=true --threshold=15 --no-pager "$unit" | tail -3 || return 1
  local out; out=$(systemd-analyze security --offline=true --no-pager "$unit" | tail -1)
  echo "FIGURE systemd exposure: $out"
}

nextest() {
  rm -f target/test-logs/figures.txt
  cargo nextest run --locked --no-fail-fast --lib --tests -E 'not binary(browser)'
  local rc=$?
  [[ -f target/test-logs/figures.txt ]] && sed "s/^/FIGURE /" target/test-logs/figures.txt
  return $rc
}

stage deps install_deps
[[ $FAILED == 0 ]] || { printf '%s\n' "${RESULTS[@]}"; echo "0 passed, 1 failed"; exit 1; }
stage fmt cargo fmt --check
stage clippy cargo clippy --locked --all-targets -- -D warnings
stage tests nextest
stage browser cargo nextest run --locked --test browser --no-capture
stage quickstart scripts/local-cluster.sh --once
stage media tests/media/run.sh
stage systemd-security security_check
[[ -x scripts/nix-check.sh ]] && stage nix scripts/nix-check.sh
stage deb env LINTIAN=1 scripts/build-deb.sh
[[ -x tests/lab/deb-test.sh ]] && stage deb-container tests/lab/deb-test.sh
[[ -x tests/lab/lab.sh ]] && stage lab tests/lab/lab.sh
[[ -x tests/image/image-test.sh ]] && stage image tests/image/image-test.sh

echo
echo "---------------- summary ($(el "$T0") s)"
grep -h '^FIGURE\|FIGURE ' "$LOGDIR"/*.log 2>/dev/null | sed 's/^.*FIGURE /FIGURE /' | sort -u | head -60 || true
for r in "${RESULTS[@]}"; do  # the end of each failed stage's log, named
  [[ $r == FAIL* ]] || continue
  n=${r#FAIL  }; n=${n%% *}
  echo "---------------- last lines of $n ($LOGDIR/$n.log)"
  grep -v '^\s*PASS \[' "$LOGDIR/$n.log" 2>/dev/null | tail -n 25 || true
done
echo "---------------- stages"
# last, so the tail of the output (what CI keeps) names every stage and how it ended
printf '%s\n' "${RESULTS[@]}"
echo "$PASSED passed, $FAILED failed"
[[ $FAILED == 0 ]]
