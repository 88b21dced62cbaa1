#!/bin/bash
# scripts/image.sh - build the appliance disk image: one bootable x86_64 Debian 12 disk for every
# node (raw and qcow2), provisioned at first boot (docs/appliance.md).
#
#   scripts/image.sh              build (or reuse) the image; prints the raw image's path last
#   scripts/image.sh --base-only  only debootstrap (or reuse) the cached Debian base
#   scripts/image.sh --print-key  print the cache key of the current inputs and exit
#
# Inputs: Debian 12 packages (packaging/image/packages.txt) from the apt mirror this machine uses
# (/etc/apt/sources.list*, override with IMAGE_MIRROR), the airclass-node .deb
# (scripts/build-deb.sh, or IMAGE_DEB=path), the real livekit-server (scripts/livekit.sh, or
# IMAGE_LIVEKIT=path) and the files under packaging/image/.
#
# How (and why this way): debootstrap into a folder (root, but no loop device, no mount of the
# image), install the .deb in a chroot with policy-rc.d denying every start, then build the
# file systems as plain files: `mkfs.ext4 -d ROOTFS` for the root, `mkfs.vfat` + mtools
# (`mmd`/`mcopy`) for the EFI system partition, `sfdisk` writes the GPT into the disk file and
# `dd conv=notrunc` puts both file systems at their offsets. Nothing is mounted and no loop or
# nbd device is needed, so it runs in containers and CI runners without /dev/loop*.
# systemd-repart 252 (Debian 12) could format partitions too, but populating them with
# CopyFiles= needs loop devices in 252; mkfs.ext4 -d has no such need.
#
# Boot: UEFI only; systemd-boot at EFI/systemd/ and at the removable fallback path
# EFI/BOOT/BOOTX64.EFI (firmware boots it without any EFI variable), Type #1 entries with the
# entry token "airclass" (/etc/kernel/entry-token), so Debian's kernel-install hooks keep the ESP
# current when apt upgrades the kernel. GPT: ESP (FAT32, 256 MiB) + root (ext4, type
# root-x86-64); at first boot systemd-repart grows the root partition to the disk and
# x-systemd.growfs the file system.
#
# Nothing secret or node-specific is in the image: empty /etc/machine-id, no SSH host keys
# (generated at first boot), no airclass secrets, no random seed, no logs.
#
# Cache: ${AIRCLASS_CACHE:-/var/tmp/airclass-cache}/image/
#   base-KEY/        debootstrapped Debian base (KEY: package list + suite)
#   out/KEY.raw|.qcow2|.info   the finished image (KEY: base, .deb contents, livekit,
#                    packaging/image, this script); a second run with the same inputs only prints
#                    the path. Older bases and images are removed when a new one is made.
# Symlinks to the newest images: target/image/airclass-appliance.{raw,qcow2,info}.
# Env: IMAGE_REBUILD=1 rebuilds the image, IMAGE_REBUILD_BASE=1 also the base; IMAGE_QCOW2=0
# skips the qcow2.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SUITE=bookworm
CACHE=${AIRCLASS_CACHE:-/var/tmp/airclass-cache}
IMG_CACHE=$CACHE/image
ASSETS=$ROOT/packaging/image
ESP_MIB=256
T0=$SECONDS

say() { printf '[image %4ss] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
need() { command -v "$1" >/dev/null || die "missing $1 ($2)"; }

packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' "$ASSETS/packages.txt" | grep -v '^$'; }
sha() { sha256sum | cut -c1-16; }

# The Debian mirror this machine's apt uses (first deb.debian.org-style URI serving SUITE).
mirror() {
  if [[ -n ${IMAGE_MIRROR:-} ]]; then echo "$IMAGE_MIRROR"; return; fi
  local m
  m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | awk '/^URIs:/ {print $2} /^deb / {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' \
      | grep -E '/debian/?$' | head -1)
  echo "${m:-http://deb.debian.org/debian}"
}

base_key() { { echo "$SUITE base v3"; packages; } | sha; }

# Security and point-release updates, the newest kernel only (a kernel ABI bump is a new
# package, hence full-upgrade; the older kernel is purged).
UPGRADE='set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -q --error-on=any
apt-get -y -q full-upgrade
keep=$(dpkg-query -W -f="\${Depends}" linux-image-amd64 | grep -o "linux-image-[0-9][^ ,]*")
for p in $(dpkg-query -W -f="\${Package}\n" "linux-image-[0-9]*" | grep -vx "$keep"); do apt-get -y -q purge "$p"; done'


# ------------------------------------------------------------------ base (cached)
build_base() {
  local key dir
  key=$(base_key); dir=$IMG_CACHE/base-$key
  BASE=$dir
  if [[ -f $dir/.complete && ${IMAGE_REBUILD_BASE:-0} != 1 ]]; then
    say "base: cached $dir"; return 0
  fi
  need debootstrap "apt-get install debootstrap"
  [[ $EUID == 0 ]] || die "debootstrap and chroot need root"
  local m; m=$(mirror)
  rm -rf "$dir.tmp"; mkdir -p "$IMG_CACHE"
  say "base: debootstrap $SUITE from $m ($(packages | wc -l) packages; log $IMG_CACHE/debootstrap.log)"
  debootstrap --variant=minbase --components=main --include="$(packages | paste -sd,)" \
    "$SUITE" "$dir.tmp" "$m" > "$IMG_CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$IMG_CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
  write_sources "$dir.tmp" "$m"
  say "base: apt-get full-upgrade from $SUITE-updates and $SUITE-security"
  in_chroot "$dir.tmp" sh -c "$UPGRADE" >> "$IMG_CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$IMG_CACHE/debootstrap.log" >&2; die "apt-get full-upgrade in the base failed"; }
  in_chroot "$dir.tmp" apt-get clean
  rm -rf "$dir.tmp"/var/lib/apt/lists/*
  touch "$dir.tmp/.complete"
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  find "$IMG_CACHE" -maxdepth 1 -name 'base-*' ! -name "base-$key" -exec rm -rf {} +   # older package lists
  say "base: ready, $(du -sh "$dir" | cut -f1)"
}

write_sources() {  # write_sources ROOTFS MIRROR
  cat > "$1/etc/apt/sources.list" <<EOF
# Debian 12 (bookworm): the appliance is updated with apt like any Debian system.
deb $2 $SUITE main
deb $2 $SUITE-updates main
deb ${2%/debian*}/debian-security $SUITE-security main
EOF
  [[ $2 == *deb.debian.org* ]] || sed -i 's#^deb [^ ]*debian-security#deb http://deb.debian.org/debian-security#' "$1/etc/apt/sources.list"
}

# in_chroot ROOTFS cmd...: run in a chroot with /proc, /sys, /dev and the host's name resolution
# (/etc/hosts, /etc/resolv.conf bound read-only) in a private mount namespace: nothing leaks to
# the host's mounts and nothing of the host's stays in the rootfs.
in_chroot() {
  local r=$1 f; shift
  for f in hosts resolv.conf; do
    [[ -L $r/etc/$f ]] && rm -f "$r/etc/$f"
    [[ -e $r/etc/$f ]] || : > "$r/etc/$f"
  done
  unshare --mount --propagation private sh -c '
    r=$1; shift
    mount -t proc proc "$r/proc" && mount -t sysfs sysfs "$r/sys" && mount --bind /dev "$r/dev" &&
    mount --bind -o ro /etc/hosts "$r/etc/hosts" && mount --bind -o ro /etc/resolv.conf "$r/etc/resolv.conf" &&
    exec chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"' sh "$r" "$@"
}

# ------------------------------------------------------------------ inputs
inputs() {
  if [[ -z ${IMAGE_DEB:-} ]]; then
    say "deb: scripts/build-deb.sh (log target/image-build-deb.log)"
    mkdir -p target
    IMAGE_DEB=$(scripts/build-deb.sh 2> target/image-build-deb.log | tail -1) \
      || { tail -20 target/image-build-deb.log >&2; die "scripts/build-deb.sh failed"; }
  fi
  [[ -f $IMAGE_DEB ]] || die "no .deb at $IMAGE_DEB"
  if [[ -z ${IMAGE_LIVEKIT:-} ]]; then
    IMAGE_LIVEKIT=$(scripts/livekit.sh 2> target/image-livekit.log | tail -1) \
      || { tail -20 target/image-livekit.log >&2; die "scripts/livekit.sh failed"; }
  fi
  [[ -x $IMAGE_LIVEKIT ]] || die "no livekit-server at $IMAGE_LIVEKIT"
}

# What a .deb installs, without its timestamps: control file and a hash per file.
deb_contents() {
  local t; t=$(mktemp -d)
  dpkg-deb -x "$1" "$t" && dpkg-deb -I "$1" control && (cd "$t" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  local rc=$?; rm -rf "$t"; return $rc
}

# The image's cache key: the base, the .deb's contents (its md5sums and control, not its
# timestamps), livekit-server, packaging/image/ and this script.
image_key() {
  {
    base_key
    deb_contents "$IMAGE_DEB"
    sha256sum < "$IMAGE_LIVEKIT"
    (cd "$ASSETS" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    sha256sum < docs/appliance.md
    sha256sum < "$0"
  } | sha
}

# ------------------------------------------------------------------ root file system
make_rootfs() {  # make_rootfs ROOTFS
  local r=$1
  rm -rf "$r"; mkdir -p "$(dirname "$r")"
  say "rootfs: copy of the base"
  cp -a "$BASE" "$r"; rm -f "$r/.complete"
  printf '#!/bin/sh\n# image build: start nothing\nexit 101\n' > "$r/usr/sbin/policy-rc.d"
  chmod 755 "$r/usr/sbin/policy-rc.d"
  say "rootfs: dpkg -i $(basename "$IMAGE_DEB")"
  cp "$IMAGE_DEB" "$r/tmp/airclass-node.deb"
  in_chroot "$r" dpkg -i /tmp/airclass-node.deb > "$WORK/dpkg.log" 2>&1 \
    || { tail -20 "$WORK/dpkg.log" >&2; die "dpkg -i of the .deb failed in the image"; }
  rm -f "$r/tmp/airclass-node.deb"
  install -m 755 "$IMAGE_LIVEKIT" "$r/usr/local/bin/livekit-server"
  "$r/usr/local/bin/livekit-server" --version > /dev/null || die "livekit-server --version failed"
  say "rootfs: appliance files (packaging/image/rootfs)"
  cp -a --no-preserve=ownership "$ASSETS/rootfs/." "$r/"
  install -D -m 644 docs/appliance.md "$r/usr/share/doc/airclass-node/appliance.md"
  systemd_setup "$r"
  scrub "$r"
}

systemd_setup() {
  local r=$1
  # Debian's own redis-server.service would listen on 127.0.0.1:6379 without a password on every
  # node; the appliance runs airclass-redis.service on main only (with a password).
  systemctl --root="$r" mask -q redis-server.service
  # Provisioning replaces systemd-firstboot's interactive prompts.
  systemctl --root="$r" mask -q systemd-firstboot.service
  systemctl --root="$r" mask -q apt-daily.timer apt-daily-upgrade.timer
  systemctl --root="$r" enable -q systemd-networkd.service systemd-resolved.service \
    systemd-timesyncd.service ssh.service airclass-provision.service airclass-redis.service \
    airclass-ssh-keygen.service airclass-node.target
  ln -sf /usr/lib/systemd/system/systemd-repart.service "$r/etc/systemd/system/sysinit.target.wants/systemd-repart.service" 2>/dev/null \
    || { mkdir -p "$r/etc/systemd/system/sysinit.target.wants"; ln -sf /usr/lib/systemd/system/systemd-repart.service "$r/etc/systemd/system/sysinit.target.wants/"; }
  ln -sf ../run/systemd/resolve/stub-resolv.conf "$r/etc/resolv.conf"
}

# Nothing node-specific or secret stays in the image.
scrub() {
  local r=$1
  rm -f "$r/usr/sbin/policy-rc.d"
  rm -rf "$r/etc/airclass/secrets" "$r/etc/airclass/nodes"
  mkdir -p "$r/etc/airclass/nodes"
  : > "$r/etc/machine-id"; rm -f "$r/var/lib/dbus/machine-id"
  rm -f "$r"/etc/ssh/ssh_host_*
  rm -f "$r/var/lib/systemd/random-seed" "$r/var/lib/systemd/credential.secret"
  echo airclass > "$r/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$r/etc/hosts"
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/log/journal/* "$r"/tmp/* "$r"/var/tmp/*
  find "$r/var/log" -type f -exec truncate -s 0 {} +
  mkdir -p "$r/var/log/journal"
}

# ------------------------------------------------------------------ ESP and disk
make_esp() {  # make_esp ROOTFS ESP_IMG ROOT_PARTUUID
  local r=$1 img=$2 kver cmdline
  kver=$(basename "$(ls -d "$r"/lib/modules/* | sort -V | tail -1)")
  [[ -f $r/boot/vmlinuz-$kver && -f $r/boot/initrd.img-$kver ]] || die "no kernel/initrd for $kver in the rootfs"
  cmdline="root=PARTUUID=$3 rw console=tty0 console=ttyS0,115200n8"
  echo "$cmdline" > "$r/etc/kernel/cmdline"
  rm -f "$img"
  mkfs.vfat -C -F 32 -n ESP -i "${3:0:8}" "$img" $((ESP_MIB * 1024)) > /dev/null
  export MTOOLS_SKIP_CHECK=1
  local d
  for d in EFI EFI/BOOT EFI/systemd EFI/Linux loader loader/entries airclass airclass/"$kver"; do
    mmd -i "$img" "::/$d"
  done
  local efi=$r/usr/lib/systemd/boot/efi/systemd-bootx64.efi
  [[ -f $efi ]] || die "systemd-boot missing in the rootfs ($efi)"
  mcopy -i "$img" "$efi" ::/EFI/systemd/systemd-bootx64.efi
  mcopy -i "$img" "$efi" ::/EFI/BOOT/BOOTX64.EFI
  mcopy -i "$img" "$r/boot/vmlinuz-$kver" "::/airclass/$kver/linux"
  mcopy -i "$img" "$r/boot/initrd.img-$kver" "::/airclass/$kver/initrd.img-$kver"
  printf 'timeout 2\neditor yes\n' > "$WORK/loader.conf"
  mcopy -i "$img" "$WORK/loader.conf" ::/loader/loader.conf
  # the same entry Debian's kernel-install (90-loaderentry.install) writes for entry token airclass
  cat > "$WORK/entry.conf" <<EOF
title      AirClass appliance (Debian 12)
version    $kver
machine-id airclass
sort-key   airclass
options    $cmdline
linux      /airclass/$kver/linux
initrd     /airclass/$kver/initrd.img-$kver
EOF
  mcopy -i "$img" "$WORK/entry.conf" "::/loader/entries/airclass-$kver.conf"
  echo "type1" > "$WORK/entries.srel"
  mcopy -i "$img" "$WORK/entries.srel" ::/loader/entries.srel
  mcopy -i "$img" "$ASSETS/esp/README.txt" ::/airclass/README.txt
  mcopy -i "$img" "$ASSETS/esp/provision.toml.example" ::/airclass/provision.toml.example
  KVER=$kver
}

make_disk() {  # make_disk OUT.raw ESP_IMG ROOT_IMG ESP_UUID ROOT_UUID DISK_UUID
  local out=$1 esp=$2 root=$3 esp_mib root_mib total
  esp_mib=$(( $(stat -c %s "$esp") / 1048576 )); root_mib=$(( $(stat -c %s "$root") / 1048576 ))
  total=$(( 1 + esp_mib + root_mib + 1 ))
  rm -f "$out"; truncate -s "${total}M" "$out"
  sfdisk -q "$out" <<EOF
label: gpt
label-id: $6
unit: sectors
first-lba: 2048
start=2048, size=$((esp_mib * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$4, name="ESP"
start=$(( (1 + esp_mib) * 2048 )), size=$((root_mib * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$5, name="root-x86-64"
EOF
  dd if="$esp" of="$out" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$root" of="$out" bs=1M seek=$((1 + esp_mib)) conv=notrunc,sparse status=none
}

build_image() {
  local key=$1 out=$IMG_CACHE/out/$key
  WORK=$IMG_CACHE/work; rm -rf "$WORK"; mkdir -p "$WORK" "$IMG_CACHE/out"
  local r=$WORK/rootfs esp_uuid root_uuid disk_uuid
  esp_uuid=$(cat /proc/sys/kernel/random/uuid); root_uuid=$(cat /proc/sys/kernel/random/uuid)
  disk_uuid=$(cat /proc/sys/kernel/random/uuid)
  make_rootfs "$r"
  cat > "$r/etc/fstab" <<EOF
# <file system>           <mount point> <type> <options>                          <dump> <pass>
PARTUUID=$root_uuid /         ext4   defaults,x-systemd.growfs           0 1
PARTUUID=$esp_uuid /boot/efi vfat   umask=0077,shortname=winnt,nofail  0 2
EOF
  mkdir -p "$r/boot/efi"
  say "esp: systemd-boot, kernel, initrd (mtools)"
  make_esp "$r" "$WORK/esp.img" "$root_uuid"
  local mib; mib=$(du -sm "$r" | cut -f1); mib=$(( mib + mib / 5 + 200 ))
  say "root: mkfs.ext4 -d ($mib MiB, $(du -sh "$r" | cut -f1) of files)"
  mkfs.ext4 -q -d "$r" -L airclass-root -U "$(cat /proc/sys/kernel/random/uuid)" -m 1 \
    -E root_owner=0:0 "$WORK/root.img" "${mib}M" >&2
  say "disk: GPT (sfdisk) + dd"
  make_disk "$out.raw.tmp" "$WORK/esp.img" "$WORK/root.img" "$esp_uuid" "$root_uuid" "$disk_uuid"
  mv "$out.raw.tmp" "$out.raw"
  if [[ ${IMAGE_QCOW2:-1} == 1 ]]; then
    say "qcow2: qemu-img convert -c"
    qemu-img convert -c -f raw -O qcow2 "$out.raw" "$out.qcow2.tmp"; mv "$out.qcow2.tmp" "$out.qcow2"
  fi
  {
    echo "key=$key"
    echo "built=$(date -u +%FT%TZ)"
    echo "debian=$SUITE $(cat "$r/etc/debian_version")"
    echo "kernel=$KVER"
    echo "airclass-node=$(dpkg-deb -f "$IMAGE_DEB" Version)"
    echo "livekit-server=$("$IMAGE_LIVEKIT" --version 2>&1 | head -1)"
    echo "esp_partuuid=$esp_uuid"
    echo "root_partuuid=$root_uuid"
    echo "raw_bytes=$(stat -c %s "$out.raw")"
    echo "raw_allocated_bytes=$(( $(stat -c %b "$out.raw") * 512 ))"
    [[ -f $out.qcow2 ]] && echo "qcow2_bytes=$(stat -c %s "$out.qcow2")"
  } > "$out.info"
  rm -rf "$WORK"
  # only the newest image stays in the cache (each is about 1.1 GiB)
  find "$IMG_CACHE/out" -maxdepth 1 -type f ! -name "$key.*" -delete
}

main() {
  need sfdisk "apt-get install fdisk"; need mkfs.ext4 "apt-get install e2fsprogs"
  need mkfs.vfat "apt-get install dosfstools"; need mcopy "apt-get install mtools"
  need qemu-img "apt-get install qemu-utils"; need dpkg-deb "apt-get install dpkg"
  case ${1:-} in
    --base-only) build_base; echo "$BASE"; return ;;
    --print-key) inputs; image_key; return ;;
    "") ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
  build_base
  inputs
  local key out; key=$(image_key); out=$IMG_CACHE/out/$key
  if [[ -f $out.raw && -f $out.info && ${IMAGE_REBUILD:-0} != 1 ]] \
      && { [[ ${IMAGE_QCOW2:-1} != 1 ]] || [[ -f $out.qcow2 ]]; }; then
    say "image: cached $out.raw"
  else
    build_image "$key"
  fi
  mkdir -p target/image
  local ext; for ext in raw qcow2 info; do
    [[ -f $out.$ext ]] && ln -sfn "$out.$ext" "target/image/airclass-appliance.$ext"
  done
  say "image: $(grep -E '^(raw_bytes|raw_allocated_bytes|qcow2_bytes)=' "$out.info" | tr '\n' ' ')"
  echo "$out.raw"
}

main "$@"
