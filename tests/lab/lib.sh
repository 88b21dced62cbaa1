#!/bin/bash
# tests/lab/lib.sh - reusable systemd-nspawn lab harness (sourced, not run).
#
# Adapted from the verified recipe in shared/lab (lab-recipe.sh + NOTES.md): a cached Debian
# bookworm base rootfs, a private network namespace with a bridge, N booted nodes on overlayfs,
# helpers to run commands in nodes, checks with timings, and a teardown that leaves nothing
# behind (nodes, cgroups, netns, mounts, processes). Needs root and: debootstrap systemd-nspawn
# nsenter unshare ip nft dpkg-deb systemd-analyze.
#
# Typical use:
#   source tests/lab/lib.sh
#   lab_init                       # after setting LAB_* variables you want to change
#   lab_require_tools; lab_traps   # EXIT/INT/TERM -> teardown
#   lab_build_base; lab_net_up
#   lab_add_node main 10.77.0.10; lab_start_node main; lab_wait_node main
#   X main systemctl is-system-running
#   lab_check "some check" my_function
#   lab_teardown; lab_report
#
# Variables (set before lab_init to change):
#   LAB        working folder: base cache, run state, logs      (default /var/tmp/airclass-lab)
#   LAB_BASE   base rootfs cache                                 (default $LAB/base)
#   LAB_REBUILD=1  rebuild the base even if it looks complete
#   LAB_PKGS   comma-separated --include list of the base: the recipe's set plus every Depends
#              of airclass-node's .deb (apt inside the nodes is offline)
#   LAB_NETNS  network namespace name                            (default aclab)
#   LAB_CG     cgroup folder under /sys/fs/cgroup/{systemd,unified}  (default = LAB_NETNS)
#   LAB_RUN    per-run state                                     (default $LAB/run-$LAB_NETNS)
#   LAB_SUBNET first three octets of the lab subnet              (default 10.77.0)
#   LAB_MIRROR Debian mirror for debootstrap
# One lab per LAB_NETNS at a time; different LAB_NETNS values can run side by side.

# ------------------------------------------------------------------ setup
lab_init() {
  LAB=${LAB:-/var/tmp/airclass-lab}
  LAB_BASE=${LAB_BASE:-$LAB/base}
  LAB_REBUILD=${LAB_REBUILD:-0}
  LAB_NETNS=${LAB_NETNS:-aclab}
  LAB_CG=${LAB_CG:-$LAB_NETNS}
  LAB_RUN=${LAB_RUN:-$LAB/run-$LAB_NETNS}
  LAB_SUBNET=${LAB_SUBNET:-10.77.0}
  LAB_BR=br0
  LAB_BR_IP=$LAB_SUBNET.1
  LAB_MIRROR=${LAB_MIRROR:-http://deb.debian.org/debian}
  LAB_SUITE=bookworm
  LAB_STOP_TIMEOUT=${LAB_STOP_TIMEOUT:-20}
  # recipe set + airclass-node Depends (libc6 and libgcc-s1 are in minbase; nftables, systemd)
  # + man-db: `systemd-analyze verify` runs `man` for Documentation=man:airclass-node(8)
  # + ca-certificates (a Depends: the HTTP client loads the system CA store at start)
  LAB_PKGS=${LAB_PKGS:-systemd,systemd-sysv,dbus,iproute2,nftables,redis-server,python3,curl,avahi-daemon,avahi-utils,libnss-mdns,procps,man-db,ca-certificates,libc6,libgcc-s1}
  LAB_CPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  LAB_T0=$EPOCHREALTIME
  LAB_NODES=()
  declare -gA LAB_IP=() LAB_TIMING=()
  LAB_RESULTS=()
  LAB_FAILED=0
  LAB_CLEANED=0
  LAB_LEFTOVERS=""
  mkdir -p "$LAB/logs" "$LAB/build"
}

lab_el() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN{printf "%.1f", b-a}'; }
lab_log() { printf '[%6ss] %s\n' "$(lab_el "$LAB_T0")" "$*" >&2; }
lab_die() { lab_log "FATAL: $*"; exit 1; }

lab_require_tools() {
  [[ $EUID == 0 ]] || lab_die "run as root"
  local c
  for c in debootstrap systemd-nspawn nsenter unshare ip nft dpkg-deb systemd-analyze; do
    command -v "$c" >/dev/null || lab_die "missing $c (apt-get install debootstrap systemd-container nftables iproute2 util-linux)"
  done
  [[ -d /sys/fs/cgroup/systemd && -d /sys/fs/cgroup/unified ]] \
    || lab_die "this harness expects the hybrid cgroup layout (name=systemd + cgroup2 at /sys/fs/cgroup/unified)"
}

# EXIT/INT/TERM -> teardown. timeout(1) signals the whole process group; the trap runs after the
# current foreground child exits (NOTES.md gotcha 17).
lab_traps() {
  trap lab_on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
lab_on_exit() {
  local rc=$?
  lab_teardown
  lab_log "exit rc=$rc total=$(lab_el "$LAB_T0")s"
  exit "$rc"
}

# ------------------------------------------------------------------ small helpers
lab_alive() {  # pid exists and is not a zombie (kill -0 is true for zombies: gotcha 7)
  local s; s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $s && $s != Z && $s != X ]]
}
lab_is_leader() { awk '/^NSpid:/{exit !(NF==3 && $3==1)}' "/proc/$1/status" 2>/dev/null; }
lab_find_leader() {  # container PID 1 = child of systemd-nspawn whose NSpid is "<hostpid> 1"
  local c
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    lab_is_leader "$c" && { echo "$c"; return 0; }
  done
  return 1
}
lab_leader() { cat "$LAB_RUN/$1/leader.pid"; }
# X NODE cmd...   run a command inside a running node (all its namespaces, clean environment)
X() {
  local n=$1; shift
  nsenter -t "$(lab_leader "$n")" -a env -i PATH="$LAB_CPATH" HOME=/root TERM=dumb LANG=C.UTF-8 "$@"
}
# put NODE /path < content     write a file into a running node (never into the upper dir)
put() { cat > "/proc/$(lab_leader "$1")/root$2"; }
# get NODE /path               print a file of a running node
get() { cat "/proc/$(lab_leader "$1")/root$2"; }

# ------------------------------------------------------------------ base rootfs
lab_base_has_pkgs() {  # every LAB_PKGS entry installed in $1
  local p st
  for p in ${LAB_PKGS//,/ }; do
    st=$(dpkg-query --admindir="$1/var/lib/dpkg" -W -f='${db:Status-Status}' "$p" 2>/dev/null) || return 1
    [[ $st == installed ]] || return 1
  done
}
lab_prepare_base() {
  local R=$1
  : > "$R/etc/resolv.conf"               # no DNS in the lab (gotcha 4)
  printf '127.0.0.1 localhost\n::1 localhost\n' > "$R/etc/hosts"
  rm -f "$R/etc/hostname"                # per-node file goes into the overlay upper dir
  : > "$R/etc/machine-id"                # empty: each boot gets a fresh id
  rm -f "$R/var/lib/dbus/machine-id"     # else every node shares one machine-id
  systemctl --root="$R" enable systemd-networkd.service >/dev/null 2>&1
  systemctl --root="$R" mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1
}
lab_build_base() {
  if [[ -d $LAB_BASE && $LAB_REBUILD != 1 ]]; then
    if lab_base_has_pkgs "$LAB_BASE"; then
      lab_log "base: reusing $LAB_BASE"; LAB_TIMING[base]=cached; return 0
    fi
    lab_log "base: $LAB_BASE lacks some of $LAB_PKGS: rebuilding"
  fi
  local t=$EPOCHREALTIME procs
  # never replace a base that a running node (of any lab using it) has as overlay lower dir
  procs=$(ps -eo args)
  [[ $procs == *"systemd-nspawn -D $LAB/"* || $procs == *"lowerdir=$LAB_BASE,"* ]] \
    && lab_die "a lab is running from $LAB; not replacing $LAB_BASE now (retry when it is done)"
  rm -rf "$LAB_BASE.tmp"
  lab_log "base: debootstrap $LAB_SUITE -> $LAB_BASE (log: $LAB/logs/debootstrap.log)"
  debootstrap --variant=minbase --include="$LAB_PKGS" "$LAB_SUITE" "$LAB_BASE.tmp" "$LAB_MIRROR" \
    > "$LAB/logs/debootstrap.log" 2>&1 || lab_die "debootstrap failed, see $LAB/logs/debootstrap.log"
  lab_prepare_base "$LAB_BASE.tmp"
  rm -rf "$LAB_BASE.old"; [[ -d $LAB_BASE ]] && mv "$LAB_BASE" "$LAB_BASE.old"
  mv "$LAB_BASE.tmp" "$LAB_BASE"         # only a complete base ever has the final name
  rm -rf "$LAB_BASE.old"
  LAB_TIMING[base]="$(lab_el "$t")s"
  lab_log "base: ready in ${LAB_TIMING[base]}, $(du -sh "$LAB_BASE" | cut -f1)"
}

# ------------------------------------------------------------------ network
lab_net_up() {
  [[ -e /run/netns/$LAB_NETNS || -d $LAB_RUN ]] \
    && lab_die "leftovers of an earlier run ($LAB_NETNS / $LAB_RUN): run the test's cleanup"
  mkdir -p "$LAB_RUN"
  ip netns add "$LAB_NETNS"
  ip -n "$LAB_NETNS" link set lo up
  ip -n "$LAB_NETNS" link add "$LAB_BR" type bridge    # multicast_snooping default: mDNS works
  ip -n "$LAB_NETNS" addr add "$LAB_BR_IP/24" dev "$LAB_BR"
  ip -n "$LAB_NETNS" link set "$LAB_BR" up
  lab_log "netns $LAB_NETNS: $LAB_BR $LAB_BR_IP/24 (no route out)"
}

# lab_host_up NAME IP   a plain host on the lab bridge: network namespace $LAB_NETNS-NAME (host
# filesystem, no container) with eth0 = IP/24, its peer vh-NAME on br0. For clients that need
# the host's tools (e.g. a Python venv); no route out, like the nodes. Removed by lab_teardown.
lab_host_up() {
  local n=$1 ip=$2 ns=$LAB_NETNS-$1
  [[ ${#n} -le 12 ]] || lab_die "host name $n too long (interface vh-NAME must fit 15 chars)"
  ip netns add "$ns" || return 1
  ip -n "$ns" link set lo up
  ip -n "$LAB_NETNS" link add "vh-$n" type veth peer name eth0 netns "$ns" || return 1
  ip -n "$LAB_NETNS" link set "vh-$n" master "$LAB_BR" up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  LAB_IP[$n]=$ip
}
# H NAME cmd...   run a command on a lab host (its network namespace; host filesystem)
H() { local n=$1; shift; ip netns exec "$LAB_NETNS-$n" "$@"; }
lab_hosts_down() {  # every $LAB_NETNS-* namespace: kill what runs in it, delete it
  local ns pid
  for ns in $(ip netns list | awk '{print $1}'); do
    [[ $ns == "$LAB_NETNS"-* ]] || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
}

# ------------------------------------------------------------------ nodes
# lab_add_node NAME [IP]   register a node (IP default: LAB_SUBNET.(10 + index))
lab_add_node() {
  local n=$1 ip=${2:-$LAB_SUBNET.$((10 + ${#LAB_NODES[@]}))}
  [[ ${#n} -le 12 ]] || lab_die "node name $n too long (interface vb-NAME must fit 15 chars)"
  LAB_NODES+=("$n"); LAB_IP[$n]=$ip
}
lab_hosts_file() {
  local n
  printf '127.0.0.1 localhost\n::1 localhost\n'
  for n in "${LAB_NODES[@]}"; do printf '%s %s\n' "${LAB_IP[$n]}" "$n"; done
}
lab_start_node() {
  local n=$1 d=$LAB_RUN/$1
  mkdir -p "$d/upper/etc/systemd/network" "$d/work" "$d/root"
  echo "$n" > "$d/upper/etc/hostname"
  lab_hosts_file > "$d/upper/etc/hosts"
  printf '[Match]\nName=host0\n\n[Network]\nAddress=%s/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
    "${LAB_IP[$n]}" > "$d/upper/etc/systemd/network/10-host0.network"
  [[ -d /run/systemd/nspawn ]] || mkdir -p /run/systemd/nspawn   # mount point for the per-node tmpfs
  local h; for h in systemd unified; do mkdir -p "/sys/fs/cgroup/$h/$LAB_CG/$n"; done
  (
    # own cgroup per node (gotcha 2), private mount ns for overlay + nspawn state (gotcha 3),
    # nsenter --net rather than "ip netns exec" (gotcha 1)
    echo "$BASHPID" > "/sys/fs/cgroup/systemd/$LAB_CG/$n/cgroup.procs"
    echo "$BASHPID" > "/sys/fs/cgroup/unified/$LAB_CG/$n/cgroup.procs"
    exec unshare --mount --propagation private sh -c '
      mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/root" &&
      mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn &&
      exec nsenter --net="/run/netns/$4" systemd-nspawn -D "$2/root" -M "$3" --boot \
        --register=no --keep-unit --network-bridge="$5" \
        --resolv-conf=off --timezone=off --link-journal=no --console=read-only' \
      sh "$LAB_BASE" "$d" "$n" "$LAB_NETNS" "$LAB_BR"
  ) < /dev/null > "$d/console.log" 2>&1 &
  echo $! > "$d/nspawn.pid"
}
lab_wait_node() {  # -> leader.pid, then block until systemd inside finished booting
  local n=$1 d=$LAB_RUN/$1 p L="" st="" i
  p=$(cat "$d/nspawn.pid")
  for i in $(seq 300); do L=$(lab_find_leader "$p") && break; lab_alive "$p" || break; sleep 0.1; done
  [[ -n $L ]] || { tail -5 "$d/console.log" >&2; lab_die "$n: no container leader (nspawn $p)"; }
  echo "$L" > "$d/leader.pid"
  for i in $(seq 600); do   # "Failed to connect to bus" until PID 1 is ready (gotcha 5)
    st=$(X "$n" systemctl is-system-running --wait 2>/dev/null) || true
    [[ $st == running || $st == degraded ]] && break
    lab_alive "$p" || break; sleep 0.1
  done
  [[ $st == running || $st == degraded ]] || lab_die "$n: did not boot (state '$st')"
  [[ $st == degraded ]] && lab_log "$n: WARNING degraded: $(X "$n" systemctl --failed --plain --no-legend | tr '\n' ' ')"
  lab_log "$n: $st (nspawn=$p leader=$L ip=${LAB_IP[$n]})"
}
# lab_boot NAME...   add (if needed), start and wait for nodes, concurrently
lab_boot() {
  local n t=$EPOCHREALTIME
  for n in "$@"; do [[ -n ${LAB_IP[$n]:-} ]] || lab_add_node "$n"; lab_start_node "$n"; done
  for n in "$@"; do lab_wait_node "$n"; done
  LAB_TIMING[boot]="$(lab_el "$t")s"
  lab_log "$# node(s) booted in ${LAB_TIMING[boot]}"
}
lab_stop_node() {
  local n=$1 d=$LAB_RUN/$1 p L i
  [[ -f $d/nspawn.pid ]] || return 0
  p=$(cat "$d/nspawn.pid"); L=$(cat "$d/leader.pid" 2>/dev/null || true)
  if lab_alive "$p"; then
    kill -TERM "$p" 2>/dev/null || true   # nspawn forwards SIGRTMIN+3: orderly poweroff
    for i in $(seq $((LAB_STOP_TIMEOUT * 10))); do lab_alive "$p" || break; sleep 0.1; done
    if lab_alive "$p"; then
      lab_log "$n: no clean exit after ${LAB_STOP_TIMEOUT}s, SIGKILL"
      [[ -n $L ]] && kill -KILL "$L" 2>/dev/null || true   # PID 1 dies -> whole pid ns dies
      kill -KILL "$p" 2>/dev/null || true
    fi
  fi
  if [[ -n $L ]] && lab_alive "$L" && lab_is_leader "$L"; then   # orphaned node (gotcha 8)
    lab_log "$n: orphaned node (leader $L), SIGRTMIN+3 then SIGKILL"
    kill -s SIGRTMIN+3 "$L" 2>/dev/null || true
    for i in $(seq $((LAB_STOP_TIMEOUT * 10))); do lab_alive "$L" || break; sleep 0.1; done
    lab_alive "$L" && lab_is_leader "$L" && kill -KILL "$L" 2>/dev/null
    for i in $(seq 50); do lab_alive "$L" || break; sleep 0.1; done
  fi
  wait "$p" 2>/dev/null || true
  rm -f "$d/nspawn.pid"
}

# ------------------------------------------------------------------ teardown
# Nodes found from pid files too, so it also cleans up after a killed run.
lab_teardown() {
  [[ $LAB_CLEANED == 1 ]] && return 0; LAB_CLEANED=1
  trap - EXIT INT TERM
  set +e
  local t=$EPOCHREALTIME n d nodes=()
  for d in "$LAB_RUN"/*/; do [[ -f $d/nspawn.pid ]] && nodes+=("$(basename "$d")"); done
  [[ ${#nodes[@]} -gt 0 ]] && lab_log "teardown: stopping ${nodes[*]}"
  local pids=()
  for n in "${nodes[@]}"; do lab_stop_node "$n" & pids+=($!); done
  [[ ${#pids[@]} -gt 0 ]] && wait "${pids[@]}"   # only these: a HOLD sleep may still be a child
  for n in "${nodes[@]}"; do
    [[ -f $LAB_RUN/$n/console.log ]] && cp "$LAB_RUN/$n/console.log" "$LAB/logs/console-$LAB_NETNS-$n.log"
  done
  local h; for h in systemd unified; do
    [[ -d /sys/fs/cgroup/$h/$LAB_CG ]] && find "/sys/fs/cgroup/$h/$LAB_CG" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  lab_hosts_down
  [[ -e /run/netns/$LAB_NETNS ]] && ip netns del "$LAB_NETNS"
  if grep -q " $LAB_RUN/" /proc/mounts; then
    grep " $LAB_RUN/" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l
  fi
  # leftovers (no "cmd | grep -q" with pipefail: gotcha 10)
  local left="" procs links
  [[ -e /run/netns/$LAB_NETNS ]] && left+=" netns"
  local nsl; nsl=$(ip netns list); [[ $'\n'$nsl == *$'\n'"$LAB_NETNS"-* ]] && left+=" host-netns"
  [[ -e /sys/fs/cgroup/systemd/$LAB_CG || -e /sys/fs/cgroup/unified/$LAB_CG ]] && left+=" cgroups"
  grep -q " $LAB_RUN/" /proc/mounts && left+=" mounts"
  procs=$(ps -eo args); [[ $procs == *"systemd-nspawn -D $LAB_RUN/"* ]] && left+=" nspawn-processes"
  links=$(ip -o link); [[ $links == *" vb-"* ]] && left+=" host-veths"
  [[ -z $left ]] && rm -rf "$LAB_RUN"   # keep pid files while anything is left
  LAB_LEFTOVERS=${left:- none}
  LAB_TIMING[teardown]="$(lab_el "$t")s"
  lab_log "teardown done in ${LAB_TIMING[teardown]}; leftovers:$LAB_LEFTOVERS"
  [[ -z $left ]]
}

# ------------------------------------------------------------------ checks and report
# lab_check "name" cmd args...   run a check, record PASS/FAIL with its duration
lab_check() {
  local name=$1; shift; local t=$EPOCHREALTIME
  if "$@"; then LAB_RESULTS+=("PASS|$(lab_el "$t")|$name"); lab_log "PASS $name"
  else LAB_RESULTS+=("FAIL|$(lab_el "$t")|$name"); lab_log "FAIL $name"; LAB_FAILED=1; fi
}
# lab_skip "name" "reason"
lab_skip() { LAB_RESULTS+=("SKIP|0.0|$1 ($2)"); lab_log "SKIP $1: $2"; }
lab_report() {
  local r res dur name pass=0 fail=0 skip=0 k
  printf '\n%-5s %8s  %s\n' result "time(s)" check
  printf '%-5s %8s  %s\n' ----- ------- -----
  for r in "${LAB_RESULTS[@]}"; do
    IFS='|' read -r res dur name <<<"$r"
    printf '%-5s %8s  %s\n' "$res" "$dur" "$name"
    case $res in PASS) pass=$((pass + 1));; FAIL) fail=$((fail + 1));; SKIP) skip=$((skip + 1));; esac
  done
  for k in base boot teardown; do [[ -n ${LAB_TIMING[$k]:-} ]] && printf 'time %-9s %s\n' "$k" "${LAB_TIMING[$k]}"; done
  printf 'total %ss, leftovers:%s\n' "$(lab_el "$LAB_T0")" "${LAB_LEFTOVERS:- (not torn down yet)}"
  printf '%d passed, %d failed, %d skipped\n' "$pass" "$fail" "$skip"
}
# wait_for TIMEOUT_S cmd...   poll every 0.1 s until cmd succeeds
wait_for() {
  local n=$(( $(printf '%.0f' "$(awk -v s="$1" 'BEGIN{print s*10}')") )) i; shift
  for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}
