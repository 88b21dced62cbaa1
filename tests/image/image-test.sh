#!/bin/bash
# tests/image/image-test.sh - the `image` stage of scripts/test.sh: build the appliance image
# (scripts/image.sh) and boot it (tests/image/vmtest.py) in a network namespace of its own.
#
#   sudo tests/image/image-test.sh           build (or reuse) the image, boot four VMs, check
#   IMAGE_ACCEL=tcg|kvm|auto                 force the accelerator (default auto: KVM when it can
#                                            run OVMF here, else software emulation, said which)
#   IMAGE_TEST_TIMEOUT=2700                  whole-test budget in seconds
#   KEEP=1                                   keep the work folder (consoles, disks, logs)
#
# Installs what it needs with apt (qemu, OVMF, mtools, dosfstools, dnsmasq, ...). Everything the
# VMs send stays on a bridge inside the namespace `acimg`: no route leads out of it.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
NETNS=${IMAGE_NETNS:-acimg}
WORK=${IMAGE_WORK:-/var/tmp/airclass-image-test}
T0=$SECONDS
say() { printf '[image-test %4ss] %s\n' "$((SECONDS - T0))" "$*" >&2; }

[[ $EUID == 0 ]] || { say "run as root (debootstrap, chroot, network namespace, tap devices)"; exit 1; }

need_pkgs=(qemu-system-x86 qemu-utils ovmf mtools dosfstools dnsmasq-base openssh-client debootstrap
           fdisk e2fsprogs iproute2 python3)
missing=()
for p in "${need_pkgs[@]}"; do dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "apt-get install ${missing[*]}"
  apt-get update -q > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" > /dev/null
fi

t=$SECONDS
raw=$(scripts/image.sh | tail -1) && [[ -f $raw ]] || { say "scripts/image.sh failed"; exit 1; }
qcow2=${raw%.raw}.qcow2
build_s=$((SECONDS - t))
say "image: $raw (built or reused in ${build_s}s)"
echo "FIGURE image build (scripts/image.sh, this run): ${build_s} s"
info=${raw%.raw}.info
echo "FIGURE image size: raw $(( $(grep '^raw_bytes=' "$info" | cut -d= -f2) >> 20 )) MiB" \
  "(allocated $(( $(grep '^raw_allocated_bytes=' "$info" | cut -d= -f2) >> 20 )) MiB), qcow2" \
  "$(( $(grep '^qcow2_bytes=' "$info" | cut -d= -f2) >> 20 )) MiB (compressed)"

cleanup() {
  if [[ -n ${PY_PID:-} ]] && kill -0 "$PY_PID" 2> /dev/null; then kill "$PY_PID" 2> /dev/null; wait "$PY_PID" 2> /dev/null; fi
  [[ -e /run/netns/$NETNS ]] && ip netns del "$NETNS"
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ -e /run/netns/$NETNS ]] && { say "removing a leftover network namespace $NETNS"; ip netns del "$NETNS"; }
rm -rf "$WORK"; mkdir -p "$WORK"
ip netns add "$NETNS"
say "booting the VMs in network namespace $NETNS (work folder $WORK)"
rc=0
timeout -k 30 "${IMAGE_TEST_TIMEOUT:-2700}" nsenter --net="/run/netns/$NETNS" \
  python3 tests/image/vmtest.py --raw "$raw" --qcow2 "$qcow2" --work "$WORK" --accel "${IMAGE_ACCEL:-auto}" &
PY_PID=$!
wait "$PY_PID" || rc=$?
PY_PID=
if [[ $rc != 0 ]]; then
  say "FAIL (rc=$rc); consoles: $WORK/console-*.log (KEEP=1 keeps them)"
  for f in "$WORK"/console-*.log; do
    [[ -f $f ]] || continue
    echo "---- last lines of $(basename "$f")"; tail -c 3000 "$f" | tr -d '\033' | tail -15
  done
fi
say "total $((SECONDS - T0)) s"
exit "$rc"
