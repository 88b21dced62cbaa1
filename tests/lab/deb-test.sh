#!/bin/bash
# tests/lab/deb-test.sh - the airclass-node .deb in a booted Debian 12 container (systemd-nspawn).
#
# Builds (or reuses) the .deb, gets the real livekit-server v1.13.5 (scripts/livekit.sh: built
# once with Go, cached), boots ONE node from the cached base (tests/lab/lib.sh), installs the
# package with apt, and checks what issue 4 asks: user, secrets and modes, target without
# instances, systemd-analyze verify/security, start with the real livekit-server as
# /usr/local/bin/livekit-server, the nftables table, no capabilities in LiveKit, journal fields,
# drain on stop (the real server's own SIGTERM line), exit 78 without restart loop,
# upgrade/reinstall keeps keys and restarts running instances, remove stops them, purge removes
# /etc/airclass. Prints a results table with timings; tears everything down (trap), also on
# failure or timeout. The LiveKit stand-in is not used.
#
# Usage (root):  timeout -k 30 1200 tests/lab/deb-test.sh
#   DEB=path.deb        use this .deb instead of running scripts/build-deb.sh
#   LIVEKIT=path        use this livekit-server (must say the pinned version) instead of
#                       scripts/livekit.sh
#   HOLD=N              keep the node up N seconds before teardown (debugging:
#                       nsenter -t "$(cat $LAB/run-acdeb/main/leader.pid)" -a bash)
#   tests/lab/deb-test.sh cleanup     remove leftovers of a killed run
# Lab variables (LAB, LAB_BASE, LAB_REBUILD, ...): see tests/lab/lib.sh.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
# shellcheck source=tests/lab/lib.sh
source tests/lab/lib.sh
LAB_NETNS=${LAB_NETNS:-acdeb}
LAB_SUBNET=${LAB_SUBNET:-10.77.1}
lab_init
if [[ ${1:-} == cleanup ]]; then lab_teardown; exit $?; fi
lab_require_tools
N=main            # node name = instance name
UNIT=airclass-node@$N.service
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# ------------------------------------------------------------------ artefacts (host)
build_artefacts() {
  if [[ -z ${DEB:-} ]]; then
    lab_log "building the .deb (scripts/build-deb.sh)"
    DEB=$(scripts/build-deb.sh 2> "$LAB/logs/build-deb.log" | tail -1) \
      || { tail -20 "$LAB/logs/build-deb.log" >&2; return 1; }
  fi
  [[ -f $DEB ]] || { lab_log "no .deb at '$DEB'"; return 1; }
  if [[ -z ${LIVEKIT:-} ]]; then
    lab_log "the real livekit-server (scripts/livekit.sh)"
    LIVEKIT=$(scripts/livekit.sh 2> "$LAB/logs/livekit.log") || {
      cat "$LAB/logs/livekit.log" >&2
      lab_log "no real livekit-server: scripts/livekit.sh needs Go (apt-get install golang-go) or a binary at $(scripts/livekit.sh --path)"
      return 1; }
  fi
  [[ -x $LIVEKIT ]] || { lab_log "no livekit-server at '$LIVEKIT'"; return 1; }
  LK_VERSION=$("$LIVEKIT" --version 2>&1 | head -1)
  [[ $LK_VERSION == "livekit-server version $(scripts/livekit.sh --version)" ]] \
    || { lab_log "'$LIVEKIT --version' says '$LK_VERSION', not the pinned real server"; return 1; }
  lab_log "deb: $DEB ($(du -h "$DEB" | cut -f1)); livekit-server: $LIVEKIT ($LK_VERSION)"
}

c_security_offline() {  # host, on the source unit: exposure <= 1.5
  local out
  out=$(systemd-analyze security --offline=true --threshold=15 --no-pager systemd/airclass-node@.service 2>&1) \
    || { echo "$out" | tail -15 >&2; return 1; }
  lab_log "  host: $(echo "$out" | tail -1)"
}
c_lintian() {
  command -v lintian >/dev/null || { lab_log "  lintian not installed"; return 1; }
  local out rc=0
  out=$(lintian --fail-on error,warning "$DEB" 2>&1) || rc=$?
  out=$(grep -v 'running with root privileges' <<<"$out" || true)
  [[ -n $out ]] && printf '  | %s\n' "$out" >&2
  lab_log "  lintian: $(grep -c '^E:' <<<"$out" || true) errors, $(grep -c '^W:' <<<"$out" || true) warnings"
  [[ $rc == 0 ]]
}

# ------------------------------------------------------------------ checks (node)
c_install() {
  put "$N" /var/tmp/airclass-node.deb < "$DEB"
  X "$N" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /var/tmp/airclass-node.deb \
    > "$LAB/logs/deb-install.log" 2>&1 || { tail -20 "$LAB/logs/deb-install.log" >&2; return 1; }
  grep -E '^(Setting up|airclass-node:)' "$LAB/logs/deb-install.log" | sed 's/^/  | /' >&2
  [[ $(X "$N" dpkg-query -W -f='${db:Status-Status}' airclass-node) == installed ]]
}
c_user() {
  local pw; pw=$(X "$N" getent passwd airclass) || return 1
  lab_log "  passwd: $pw"
  local uid; uid=$(cut -d: -f3 <<<"$pw")
  [[ $uid -lt 1000 && $pw == *nologin* ]] && X "$N" getent group airclass >/dev/null
}
stat_of() { X "$N" stat -c '%U:%G %a' "$1"; }
c_secrets() {
  local S=/etc/airclass/secrets f ok=0 v
  [[ $(stat_of $S) == "root:airclass 750" ]] || { lab_log "  $S: $(stat_of $S)"; ok=1; }
  for f in livekit-api-key livekit-api-secret cluster-secret app-token.sha256; do
    [[ $(stat_of $S/$f) == "root:airclass 640" ]] || { lab_log "  $f: $(stat_of $S/$f)"; ok=1; }
  done
  [[ $(stat_of $S/app-token) == "root:root 600" ]] || { lab_log "  app-token: $(stat_of $S/app-token)"; ok=1; }
  v=$(get "$N" $S/livekit-api-key); [[ $v =~ ^API[A-Za-z0-9]{12}$ ]] || { lab_log "  bad api key format"; ok=1; }
  v=$(get "$N" $S/livekit-api-secret); [[ ${#v} -ge 32 ]] || { lab_log "  api secret ${#v} chars"; ok=1; }
  v=$(get "$N" $S/cluster-secret); [[ ${#v} -ge 32 ]] || { lab_log "  cluster secret ${#v} chars"; ok=1; }
  v=$(printf '%s' "$(get "$N" $S/app-token)" | sha256sum | cut -d' ' -f1)
  [[ $v == "$(get "$N" $S/app-token.sha256)" ]] || { lab_log "  app-token.sha256 mismatch"; ok=1; }
  lab_log "  $(X "$N" ls -l $S | tail -n +2 | awk '{print $1, $3":"$4, $NF}' | tr '\n' ';')"
  return $ok
}
c_target_no_instance() {
  local en act units
  en=$(X "$N" systemctl is-enabled airclass-node.target || true)
  act=$(X "$N" systemctl is-active airclass-node.target || true)
  units=$(X "$N" systemctl list-units --all --plain --no-legend 'airclass-node@*' || true)
  lab_log "  airclass-node.target: $en/$act; instances: ${units:-none}"
  [[ $en == enabled && -z $units ]] && X "$N" test -f /usr/lib/systemd/system/airclass-node@.service
}
c_conffiles() {
  local cf; cf=$(X "$N" dpkg-query -W -f='${Conffiles}' airclass-node)
  lab_log "  conffiles:$(awk '{print " "$1}' <<<"$cf" | tr -d '\n')"
  [[ $cf == *"/etc/airclass/airclass.toml"* ]]
}
c_livekit() {
  put "$N" /usr/local/bin/livekit-server < "$LIVEKIT"
  X "$N" chmod 755 /usr/local/bin/livekit-server
  local v; v=$(X "$N" livekit-server --version)
  lab_log "  in the node: $v"
  [[ $v == "$LK_VERSION" ]]
}
c_verify() {
  local out
  out=$(X "$N" systemd-analyze verify "$UNIT" 2>&1) || { echo "$out" >&2; return 1; }
  [[ -z $out ]] || { echo "$out" | sed 's/^/  | /' >&2; return 1; }
}
c_security_node() {
  local out
  out=$(X "$N" systemd-analyze security --no-pager --threshold=15 "$UNIT" 2>&1) \
    || { echo "$out" | tail -15 >&2; return 1; }
  lab_log "  node: $(echo "$out" | tail -1)"
}
START_S=""
c_start() {
  local t=$EPOCHREALTIME
  X "$N" systemctl start "$UNIT" || {
    X "$N" journalctl -q -u "$UNIT" --no-pager -n 30 | sed 's/^/  | /' >&2; return 1; }
  START_S=$(lab_el "$t")
  lab_log "  systemctl start returned after ${START_S}s (Type=notify: READY=1)"
  [[ $(X "$N" systemctl is-active "$UNIT") == active ]]
}
c_nft_present() {
  local out; out=$(X "$N" nft list table inet airclass_main) || return 1
  printf '%s\n' "$out" | sed 's/^/  | /' >&2
  [[ $out == *"7880"* && $out == *"50000-50020"* ]]
}
c_metrics() {  # GET /metrics under the unit's sandbox; LiveKit's own metrics on the plan's 6789
  local m n; m=$(X "$N" curl -sf http://127.0.0.1:8000/metrics) || return 1
  grep -E '^(airclass_livekit_state\{state="ready"\}|process_open_fds|process_max_fds) ' <<<"$m" | sed 's/^/  | /' >&2
  n=$(X "$N" curl -sf http://127.0.0.1:6789/metrics | grep -c '^livekit_') || true
  lab_log "  LiveKit's own metrics on 6789: ${n:-0} livekit_ samples"
  grep -qx 'airclass_livekit_state{state="ready"} 1' <<<"$m" && [[ ${n:-0} -gt 0 ]] \
    && awk '$1=="process_open_fds"{o=$2} $1=="process_max_fds"{x=$2} END{exit !(o>0 && x>o)}' <<<"$m"
}
lk_pid() { X "$N" pgrep -x livekit-server | head -1; }
c_caps() {
  local lp mp ok=0 k v
  lp=$(lk_pid); mp=$(X "$N" systemctl show -P MainPID "$UNIT")
  [[ -n $lp ]] || { lab_log "  no livekit-server process"; return 1; }
  for k in CapInh CapPrm CapEff CapBnd CapAmb; do
    v=$(X "$N" awk -v k="$k:" '$1==k{print $2}' /proc/$lp/status)
    lab_log "  livekit-server pid $lp $k=$v"
    [[ $v =~ ^0+$ ]] || ok=1
  done
  v=$(X "$N" awk '$1=="CapEff:"{print $2}' /proc/$mp/status)
  lab_log "  airclass-node pid $mp CapEff=$v; users: $(X "$N" ps -o user= -p "$mp","$lp" | tr '\n' ' ')"
  [[ $v =~ ^0+$ ]] || ok=1
  return $ok
}
c_journal() {
  local all lk lk_msgs daemon_msgs
  sleep 1
  all=$(X "$N" journalctl -q -u "$UNIT" -o cat --no-pager)
  lk=$(X "$N" journalctl -q -u "$UNIT" LIVEKIT=1 -o cat --no-pager)
  lk_msgs=$(grep -c . <<<"$lk" || true)
  # the daemon's own lines: entries of the unit without LIVEKIT=1
  daemon_msgs=$(X "$N" journalctl -q -u "$UNIT" -o json --no-pager | python3 -c '
import json, sys
n = 0
for line in sys.stdin:
    e = json.loads(line)
    if e.get("LIVEKIT") != "1" and e.get("_PID") != "1": n += 1
print(n)')
  lab_log "  journal: $(grep -c . <<<"$all") lines for the unit, $lk_msgs with LIVEKIT=1, $daemon_msgs from airclass-node"
  grep -m3 . <<<"$lk" | sed 's/^/  | LIVEKIT=1: /' >&2
  [[ $all == *"starting LiveKit server"* && $lk == *"starting LiveKit server"* && $lk_msgs -lt $(grep -c . <<<"$all") \
     && $daemon_msgs -gt 0 ]] || return 1
  # nothing of the daemon's own in the LIVEKIT=1 view
  local own; own=$(X "$N" journalctl -q -u "$UNIT" LIVEKIT=1 -o json --no-pager | python3 -c '
import json, sys
print(sum(1 for l in sys.stdin if json.loads(l).get("LIVEKIT") != "1"))')
  [[ $own == 0 ]]
}
STOP_S=""
c_stop_drain() {
  local t=$EPOCHREALTIME since
  since=$(X "$N" date '+%Y-%m-%d %H:%M:%S')
  X "$N" systemctl stop "$UNIT" || return 1
  STOP_S=$(lab_el "$t")
  local j; j=$(X "$N" journalctl -q -u "$UNIT" --since "$since" -o cat --no-pager)
  grep -iE 'exit requested|drain|stopp' <<<"$j" | head -5 | sed 's/^/  | /' >&2
  lab_log "  systemctl stop took ${STOP_S}s; state $(X "$N" systemctl is-active "$UNIT" || true)"
  # LiveKit's own line (cmd/server/main.go of the real server), forwarded with LIVEKIT=1
  local lk; lk=$(X "$N" journalctl -q -u "$UNIT" LIVEKIT=1 --since "$since" -o cat --no-pager | grep -m1 'exit requested') || true
  lab_log "  LiveKit: ${lk:-no SIGTERM line}"
  [[ $lk == *"server/main.go:"*"exit requested, shutting down"*'"signal": "terminated"'* ]] || return 1
  [[ $j == *"LiveKit stopped"* ]] || return 1
  [[ $(X "$N" systemctl show -P Result "$UNIT") == success ]]
}
c_nft_gone() {
  if X "$N" nft list table inet airclass_main >/dev/null 2>&1; then return 1; fi
  lab_log "  tables left: $(X "$N" nft list tables | tr '\n' ' ')"
}
c_config_error() {
  # from a clean state: stopped, failure state and restart counter reset
  X "$N" systemctl stop "$UNIT" 2>/dev/null || true
  X "$N" systemctl reset-failed "$UNIT" 2>/dev/null || true
  X "$N" mkdir -p /etc/airclass/nodes
  printf '[node]\nno_such_key = 1\n' | put "$N" /etc/airclass/nodes/main.toml
  local rc=0 t=$EPOCHREALTIME
  X "$N" systemctl start "$UNIT" 2>/dev/null || rc=$?
  lab_log "  systemctl start -> rc=$rc after $(lab_el "$t")s"
  sleep 7   # RestartSec=5s: a restart would have happened by now
  local res main nr act
  res=$(X "$N" systemctl show -P Result "$UNIT")
  main=$(X "$N" systemctl show -P ExecMainStatus "$UNIT")
  nr=$(X "$N" systemctl show -P NRestarts "$UNIT")
  act=$(X "$N" systemctl is-active "$UNIT" || true)
  lab_log "  Result=$res ExecMainStatus=$main NRestarts=$nr state=$act"
  X "$N" journalctl -q -u "$UNIT" -o cat --no-pager | grep -m3 -E 'no_such_key|error' | sed 's/^/  | /' >&2
  X "$N" rm -f /etc/airclass/nodes/main.toml
  X "$N" systemctl reset-failed "$UNIT" 2>/dev/null || true
  [[ $rc != 0 && $main == 78 && $nr == 0 && $act == failed ]]
}
unit_active() { [[ $(X "$N" systemctl is-active "$UNIT" 2>/dev/null) == active ]]; }
c_enable_via_target() {  # an enabled instance is started by the target (as at boot)
  X "$N" systemctl enable -q "$UNIT" || return 1
  local wants; wants=$(X "$N" ls /etc/systemd/system/airclass-node.target.wants/ 2>/dev/null | tr '\n' ' ')
  X "$N" systemctl stop "$UNIT"
  X "$N" systemctl start airclass-node.target || return 1
  wait_for 30 unit_active || return 1
  lab_log "  airclass-node.target.wants: $wants-> $UNIT $(X "$N" systemctl is-active "$UNIT") after starting the target"
  [[ $wants == *"$UNIT"* ]]
}
sums() { X "$N" sh -c 'cd /etc/airclass/secrets && sha256sum * | sort'; }
c_reinstall() {
  X "$N" systemctl start "$UNIT" || return 1
  local before after pid0 pid1 toml0 toml1
  before=$(sums); pid0=$(X "$N" systemctl show -P MainPID "$UNIT")
  printf '\n# local edit kept across upgrades\n' | X "$N" tee -a /etc/airclass/airclass.toml >/dev/null
  toml0=$(X "$N" sha256sum /etc/airclass/airclass.toml)
  X "$N" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall /var/tmp/airclass-node.deb \
    > "$LAB/logs/deb-reinstall.log" 2>&1 || { tail -20 "$LAB/logs/deb-reinstall.log" >&2; return 1; }
  wait_for 30 unit_active || true
  after=$(sums); pid1=$(X "$N" systemctl show -P MainPID "$UNIT")
  toml1=$(X "$N" sha256sum /etc/airclass/airclass.toml)
  lab_log "  secrets equal: $([[ $before == "$after" ]] && echo yes || echo NO); config edit kept: $([[ $toml0 == "$toml1" ]] && echo yes || echo NO); MainPID $pid0 -> $pid1 ($(X "$N" systemctl is-active "$UNIT"))"
  [[ $before == "$after" && $toml0 == "$toml1" && $pid1 != "$pid0" && $pid1 != 0 ]]
}
c_remove_stops() {
  [[ $(X "$N" systemctl is-active "$UNIT") == active ]] || X "$N" systemctl start "$UNIT" || return 1
  X "$N" env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q airclass-node > "$LAB/logs/deb-remove.log" 2>&1 \
    || { tail -20 "$LAB/logs/deb-remove.log" >&2; return 1; }
  local act tbl=absent; act=$(X "$N" systemctl is-active "$UNIT" || true)
  X "$N" nft list table inet airclass_main >/dev/null 2>&1 && tbl=present
  lab_log "  after remove: $UNIT $act (Result=$(X "$N" systemctl show -P Result "$UNIT")); nft table $tbl; secrets kept: $(X "$N" test -f /etc/airclass/secrets/cluster-secret && echo yes || echo no)"
  X "$N" journalctl -q -u "$UNIT" -n 12 -o cat --no-pager | sed 's/^/  | /' >&2
  [[ $act == inactive && $tbl == absent ]] && X "$N" test -f /etc/airclass/secrets/cluster-secret
}
c_purge() {
  X "$N" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q airclass-node > "$LAB/logs/deb-purge.log" 2>&1 \
    || { tail -20 "$LAB/logs/deb-purge.log" >&2; return 1; }
  if X "$N" test -e /etc/airclass; then X "$N" find /etc/airclass | sed 's/^/  | left: /' >&2; return 1; fi
  lab_log "  /etc/airclass removed; package state: $(X "$N" dpkg-query -W -f='${db:Status-Abbrev}' airclass-node 2>/dev/null || echo gone)"
}

# ------------------------------------------------------------------ main
lab_traps
lab_check "build .deb + real livekit-server" build_artefacts || true
if [[ $LAB_FAILED == 1 ]]; then lab_teardown; lab_report; exit 1; fi
lab_check "systemd-analyze security --offline --threshold=15 (host)" c_security_offline
lab_check "lintian: 0 errors, 0 warnings" c_lintian
lab_build_base
lab_net_up
lab_boot "$N"

lab_check "apt-get install ./airclass-node_*.deb (offline)" c_install
if [[ $(X "$N" dpkg-query -W -f='${db:Status-Status}' airclass-node 2>/dev/null) == installed ]]; then
  lab_check "system user airclass (sysusers)" c_user
  lab_check "secrets: owners, modes, formats" c_secrets
  lab_check "target enabled, no instance started" c_target_no_instance
  lab_check "airclass.toml is a conffile" c_conffiles
  lab_check "real livekit-server as /usr/local/bin/livekit-server" c_livekit
  lab_check "systemd-analyze verify $UNIT (node)" c_verify
  lab_check "systemd-analyze security $UNIT <= 1.5 (node)" c_security_node
  lab_check "systemctl start $UNIT -> active" c_start
  if [[ $(X "$N" systemctl is-active "$UNIT" 2>/dev/null) == active ]]; then
    lab_check "nft table inet airclass_main present" c_nft_present
    lab_check "no capabilities: livekit-server and daemon" c_caps
    lab_check "GET /metrics under the sandbox; LiveKit's metrics on 6789" c_metrics
    lab_check "journal: LiveKit lines, LIVEKIT=1 filter" c_journal
    lab_check "systemctl stop: LiveKit drained, clean stop" c_stop_drain
    lab_check "nft table gone after stop" c_nft_gone
  else
    lab_skip "running-instance checks" "instance not active"
  fi
  lab_check "config error: exit 78, no restart loop" c_config_error
  lab_check "enabled instance started by airclass-node.target" c_enable_via_target
  lab_check "reinstall keeps keys+config, restarts instance" c_reinstall
  lab_check "apt-get remove stops instances" c_remove_stops
  lab_check "apt-get purge removes /etc/airclass" c_purge
fi
if [[ ${HOLD:-0} -gt 0 ]]; then lab_log "holding ${HOLD}s"; sleep "$HOLD" & wait $!; fi
lab_teardown || true
[[ $LAB_LEFTOVERS == " none" ]] || LAB_FAILED=1
[[ -n $START_S ]] && LAB_TIMING[start]="${START_S}s"
[[ -n $STOP_S ]] && LAB_TIMING[stop]="${STOP_S}s"
lab_report
for k in start stop; do [[ -n ${LAB_TIMING[$k]:-} ]] && printf 'time %-9s %s\n' "$k" "${LAB_TIMING[$k]}"; done
exit $LAB_FAILED
