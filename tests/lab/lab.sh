#!/bin/bash
# tests/lab/lab.sh - the three-node lab (issues 5 and 9): the whole appliance on real systemd, with
# the real livekit-server, real media and faults.
#
# Builds the .deb (scripts/build-deb.sh), gets the real livekit-server v1.13.5 (scripts/livekit.sh:
# built once with Go, cached) and the media clients' venv (tests/media/venv.sh: LiveKit's Python
# SDK, pinned, cached), boots three Debian containers (main, node-1, node-2) on a private bridge
# with the harness in tests/lab/lib.sh, installs the .deb with apt and the real server as
# /usr/local/bin/livekit-server, shares the secrets, runs Redis on main, starts
# airclass-node@<name> with systemctl (subs find main over mDNS: no main_url), then runs the
# sixteen scenarios of tests/lab/scenarios.sh and tears everything down (also after a failure, a
# signal or the LAB_TIMEOUT watchdog). No scenario uses the LiveKit stand-in. The media clients run
# on two extra lab hosts (network namespaces on the lab bridge: the teacher's and the students').
# Prints a final table (scenario, PASS/FAIL, figure) with the placement proof rows (2p, 13p:
# LiveKit's own Redis records against main's join answers); exits non-zero on any FAIL or leftover.
#
#   sudo tests/lab/lab.sh                      # everything (~3 min with a cached base, livekit-server,
#                                              # venv and an up-to-date release build)
#   LAB_ONLY="1 2 3" sudo tests/lab/lab.sh     # run only some scenarios (setup always runs)
#   LAB_DEB=path.deb LAB_LIVEKIT=path sudo tests/lab/lab.sh   # skip the builds
#   LAB_HOLD=600 sudo tests/lab/lab.sh         # keep the lab up after the scenarios (debugging:
#       nsenter -t "$(cat /var/tmp/airclass-lab/run-aclab3/main/leader.pid)" -a bash)
#   sudo tests/lab/lab.sh cleanup              # after a SIGKILL of the script
#
# Lab-only settings (printed at start): heartbeat 1 s, dead after 3 missed, WatchdogSec=6s drop-in,
# sysload pinned at 0.1 through the drill file for placement checks (/proc/loadavg is host-wide,
# so a measured load would be the same noisy host value in every container).
set -Euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LAB_NETNS=${LAB_NETNS:-aclab3}
LAB_SUBNET=${LAB_SUBNET:-10.78.0}
LAB_TIMEOUT=${LAB_TIMEOUT:-720}    # seconds from the end of the builds to the table (budget: 12 min)
# shellcheck source=tests/lab/lib.sh
source "$HERE/lib.sh"
# shellcheck source=tests/lab/scenarios.sh
source "$HERE/scenarios.sh"
lab_init
LOGS=$LAB/logs/$LAB_NETNS           # this run's evidence: journals, JSON of every check
mkdir -p "$LOGS"

if [[ ${1:-} == cleanup ]]; then
  lab_teardown; exit $?
fi

rm -f "$LOGS"/*   # one run's evidence only
# ------------------------------------------------------------------ results and exit
declare -a ROWS=()
ANY_FAIL=0
WATCHDOG_PID=""
row() {  # row ID TITLE RESULT FIGURE
  ROWS+=("$1|$2|$3|$4")
  [[ $3 == FAIL ]] && ANY_FAIL=1
  printf 'FIGURE lab %s %s: %s %s\n' "$1" "$2" "$3" "$4"
}
print_table() {
  local r id title res fig
  printf '\n%-4s %-28s %-5s %s\n' '#' scenario result figure
  printf '%-4s %-28s %-5s %s\n' --- -------- ------ ------
  for r in "${ROWS[@]}"; do
    IFS='|' read -r id title res fig <<<"$r"
    printf '%-4s %-28s %-5s %s\n' "$id" "$title" "$res" "$fig"
  done
  local k
  for k in deb livekit venv base boot setup scenarios teardown; do [[ -n ${LAB_TIMING[$k]:-} ]] && printf 'time %-9s %s\n' "$k" "${LAB_TIMING[$k]}"; done
  printf 'total %ss, leftovers:%s\n' "$(lab_el "$LAB_T0")" "${LAB_LEFTOVERS:- (not torn down)}"
}
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $WATCHDOG_PID ]]; then
    kill "$WATCHDOG_PID" "$(cat "$LOGS/watchdog-sleep.pid" 2>/dev/null)" 2>/dev/null
    wait "$WATCHDOG_PID" 2>/dev/null
  fi
  [[ $rc != 0 && ${#ROWS[@]} == 0 ]] && row setup "build, boot, install, start" FAIL "${SETUP_WHY:-rc=$rc (see log above)}"
  [[ $rc != 0 && ${#ROWS[@]} != 0 ]] && row - "aborted" FAIL "rc=$rc during the scenarios (signal, LAB_TIMEOUT or a harness error)"
  collect_logs
  lab_teardown
  local left=$?
  print_table
  [[ $left != 0 ]] && { echo "FAIL: leftovers after teardown:$LAB_LEFTOVERS"; ANY_FAIL=1; }
  if [[ $ANY_FAIL != 0 || $rc != 0 ]]; then
    echo "lab: FAIL (rc=$rc; logs in $LOGS)"; exit 1
  fi
  echo "lab: all scenarios passed"; exit 0
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# ------------------------------------------------------------------ build
lab_require_tools
command -v python3 >/dev/null || lab_die "missing python3 on the host"
export CARGO_TARGET_DIR=$ROOT/target
if [[ -z ${LAB_DEB:-} ]]; then
  t=$EPOCHREALTIME
  lab_log "build: scripts/build-deb.sh (log $LOGS/build-deb.log)"
  LAB_DEB=$("$ROOT/scripts/build-deb.sh" 2>"$LOGS/build-deb.log" | tail -1) \
    || { tail -20 "$LOGS/build-deb.log" >&2; lab_die "build-deb.sh failed"; }
  LAB_TIMING[deb]="$(lab_el "$t")s"
fi
[[ -f $LAB_DEB ]] || lab_die "no .deb at '$LAB_DEB'"
if [[ -z ${LAB_LIVEKIT:-} ]]; then
  t=$EPOCHREALTIME
  lab_log "livekit-server: scripts/livekit.sh (the real server, pinned; log $LOGS/livekit.log)"
  LAB_LIVEKIT=$("$ROOT/scripts/livekit.sh" 2>"$LOGS/livekit.log") \
    || { cat "$LOGS/livekit.log" >&2; lab_die "no real livekit-server: scripts/livekit.sh needs Go (apt-get install golang-go) or a binary at $("$ROOT/scripts/livekit.sh" --path)"; }
  LAB_TIMING[livekit]="$(lab_el "$t")s"
fi
[[ -x $LAB_LIVEKIT ]] || lab_die "no livekit-server at '$LAB_LIVEKIT' (scripts/livekit.sh builds it)"
LAB_LK_VERSION=$("$LAB_LIVEKIT" --version 2>&1 | head -1)
[[ $LAB_LK_VERSION == "livekit-server version $("$ROOT/scripts/livekit.sh" --version)" ]] \
  || lab_die "'$LAB_LIVEKIT --version' says '$LAB_LK_VERSION', not the pinned real server (scripts/livekit.sh)"
if [[ -z ${LAB_PY:-} ]]; then
  t=$EPOCHREALTIME
  LAB_PY=$("$ROOT/tests/media/venv.sh" 2>"$LOGS/venv.log") \
    || { cat "$LOGS/venv.log" >&2; lab_die "no Python venv with LiveKit's SDK for the media clients (tests/media/venv.sh says why above)"; }
  LAB_TIMING[venv]="$(lab_el "$t")s"
fi
lab_log "deb: $LAB_DEB; livekit-server: $LAB_LIVEKIT ($LAB_LK_VERSION); media clients: $LAB_PY"

# ------------------------------------------------------------------ base, net, boot
# the lab proper is bounded (the builds are incremental in CI: the deb stage ran before):
# TERM to this script -> trap -> teardown. Node commands all run under timeout(1).
( sleep "$LAB_TIMEOUT" & echo $! > "$LOGS/watchdog-sleep.pid"; wait $!; lab_log "LAB_TIMEOUT ${LAB_TIMEOUT}s reached: aborting"; kill -TERM $$ ) &
WATCHDOG_PID=$!
lab_build_base
lab_net_up
lab_boot main node-1 node-2
# the media clients' hosts on the lab bridge (network namespaces, host filesystem: the venv)
lab_host_up teacher "$LAB_SUBNET.101" && lab_host_up students "$LAB_SUBNET.102" \
  || lab_die "could not add the client hosts to the lab bridge"
lab_log "lab settings: heartbeat ${HB}s, dead after $DEAD_MISSED missed, drop-in WatchdogSec=${LAB_WATCHDOG}s (unit default 30s), sysload pinned at $PIN via the drill file for placement checks"

SETUP_WHY=""
t=$EPOCHREALTIME
setup_nodes || lab_die "setup failed${SETUP_WHY:+: $SETUP_WHY}"
start_cluster || lab_die "the cluster did not start${SETUP_WHY:+: $SETUP_WHY}"
LAB_TIMING[setup]="$(lab_el "$t")s"

# ------------------------------------------------------------------ scenarios
t=$EPOCHREALTIME
run_scenarios
LAB_TIMING[scenarios]="$(lab_el "$t")s"

if [[ -n ${LAB_HOLD:-} ]]; then
  lab_log "LAB_HOLD: lab stays up ${LAB_HOLD}s (main leader $(lab_leader main))"
  sleep "$LAB_HOLD" & wait $!
fi
exit 0
