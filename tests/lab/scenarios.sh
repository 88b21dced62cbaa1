#!/bin/bash
# tests/lab/scenarios.sh - setup and the fifteen scenarios of the three-node lab (sourced by
# tests/lab/lab.sh after tests/lab/lib.sh), with the real livekit-server on every node. Each
# scenario function sets FIG (the measured figure, or what went wrong) and returns 0 (PASS) or 1
# (FAIL). Helpers run commands inside the nodes with a timeout, so a hung node cannot hang the
# lab; in-node HTTP and signing is done by tests/lab/labctl.py (copied into every node). The
# media clients (tests/media/media_client.py, tests/lab/lab_client.py) and the placement proof
# (tests/lab/placement.py) run on the host side with the media venv, in lab host namespaces.

# ------------------------------------------------------------------ lab constants
HB=1                 # cluster.heartbeat_secs in the lab
DEAD_MISSED=3        # cluster.dead_after_missed
LAB_WATCHDOG=6       # WatchdogSec= of the lab drop-in
PIN=0.1              # sysload pinned through the drill file for placement checks
NODES=(main node-1 node-2)
declare -A API_PORT=([main]=8000 [node-1]=8001 [node-2]=8002 [node-3]=8003)
declare -A LK_PORT=([main]=7880 [node-1]=7890 [node-2]=7900 [node-3]=7910)
CTL=/usr/local/lib/aclab/labctl.py
TOKEN=/etc/airclass/secrets/app-token

ip_of() { echo "${LAB_IP[$1]}"; }
api() { echo "http://${LAB_IP[$1]}:${API_PORT[$1]}"; }
main_api() { api main; }
# XT SECONDS NODE cmd...   X with a timeout
XT() {
  local s=$1 n=$2; shift 2
  timeout -k 2 "$s" nsenter -t "$(lab_leader "$n")" -a \
    env -i PATH="$LAB_CPATH" HOME=/root TERM=dumb LANG=C.UTF-8 "$@"
}
ctl() { local n=$1; shift; XT 90 "$n" python3 "$CTL" "$@"; }
# jget JSON EXPR   evaluate a python expression over the parsed JSON `j`
jget() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); r=eval(sys.argv[2]); print(json.dumps(r) if isinstance(r,(dict,list,bool)) or r is None else r)' "$1" "$2"; }
now() { echo "$EPOCHREALTIME"; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN{exit !(a<=b)}'; }   # a <= b (floats)
save() { cat > "$LOGS/$1"; }
lk_pid() { local j; j=$(XT 5 "$1" curl -sf "$(api "$1")/api/node") && jget "$j" 'j["livekit"]["pid"]'; }
# wait_lk_ready NODE TIMEOUT   until the node's /api/node says LiveKit is ready
wait_lk_ready() {
  local i j
  for ((i = 0; i < $2 * 10; i++)); do
    j=$(XT 5 "$1" curl -sf "$(api "$1")/api/node") && [[ $(jget "$j" 'j["livekit"]["state"]') == ready ]] && return 0
    sleep 0.1
  done
  return 1
}
unit_prop() { XT 10 "$1" systemctl show -P "$3" "airclass-node@$2"; }
# redis_pong NODE   main's Redis answers PING from NODE
redis_pong() {
  [[ $(XT 5 "$1" bash -c "exec 3<>/dev/tcp/$(ip_of main)/6379 && printf 'PING\r\n' >&3 && head -c5 <&3" 2>/dev/null) == +PONG ]]
}
lk_url() { echo "http://${LAB_IP[$1]}:${LK_PORT[$1]}"; }
# lk_node_id NODE [INSTANCE]   LiveKit's node id from the last ready line of the unit's journal
# (a restarted LiveKit gets a new id; other lines, e.g. CreateRoom requests, name other ids)
lk_node_id() {
  XT 10 "$1" journalctl --no-pager -o cat -u "airclass-node@${2:-$1}" LIVEKIT=1 \
    | grep 'starting LiveKit server' | tail -1 | grep -oE '"nodeID": "[A-Za-z0-9_]+"' | cut -d'"' -f4
}
lk_ids_json() {  # {"main": "ND_..", ...} of the three nodes
  local n sep="" o="{"
  for n in "${NODES[@]}"; do o+="$sep\"$n\": \"$(lk_node_id "$n")\""; sep=", "; done
  echo "$o}"
}
ips_json() { local n sep="" o="{"; for n in "${NODES[@]}"; do o+="$sep\"$n\": \"${LAB_IP[$n]}\""; sep=", "; done; echo "$o}"; }
# twirp NODE METHOD BODY   a RoomService call to NODE's LiveKit (from inside NODE)
twirp() { ctl "$1" twirp "$(lk_url "$1")" "$2" "$3"; }
# proof NAMED_JSON OUTFILE   the placement proof (tests/lab/placement.py) over LiveKit's records
proof() {
  ip netns exec "$LAB_NETNS" timeout 30 "$LAB_PY" "$HERE/placement.py" --redis "$(ip_of main):6379" \
    --named "$1" --ids "$(lk_ids_json)" --ips "$(ips_json)" > "$LOGS/$2"
}

# ------------------------------------------------------------------ setup
node_toml() {  # node_toml NAME MODE IP
  cat <<EOF
# lab: written by tests/lab/scenarios.sh
[node]
mode = "$2"
advertise_address = "$3"

[livekit]
node_ip = "$3"

[redis]
url = "redis://$(ip_of main):6379"

[cluster]
heartbeat_secs = $HB
dead_after_missed = $DEAD_MISSED
EOF
}

install_node() {  # in parallel per node
  local n=$1
  XT 10 "$n" mkdir -p /usr/local/lib/aclab /usr/local/bin || return 1
  put "$n" /var/tmp/airclass-node.deb < "$LAB_DEB" || return 1
  put "$n" /usr/local/bin/livekit-server < "$LAB_LIVEKIT" || return 1
  put "$n" "$CTL" < "$HERE/labctl.py" || return 1
  XT 10 "$n" chmod 0755 /usr/local/bin/livekit-server || return 1
  XT 120 "$n" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /var/tmp/airclass-node.deb \
    > "$LOGS/apt-$n.log" 2>&1 || { tail -20 "$LOGS/apt-$n.log" >&2; return 1; }
  XT 10 "$n" dpkg-query -W -f='${Status} ${Version}\n' airclass-node >> "$LOGS/apt-$n.log"
  [[ $(XT 10 "$n" livekit-server --version) == "$LAB_LK_VERSION" ]] \
    || { lab_log "setup: $n: livekit-server --version is not '$LAB_LK_VERSION'"; return 1; }
}

setup_nodes() {
  local t=$EPOCHREALTIME n pids=() rc=0 p
  for n in "${NODES[@]}"; do install_node "$n" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  [[ $rc == 0 ]] || { lab_log "setup: apt-get install failed"; return 1; }
  lab_log "setup: .deb installed with apt in ${NODES[*]} ($(lab_el "$t")s): $(tail -1 "$LOGS/apt-main.log")"
  # Redis on main, reachable from the subs; the subs use main's Redis only
  XT 10 main sed -i -e 's/^bind .*/bind 0.0.0.0/' -e 's/^protected-mode .*/protected-mode no/' \
    /etc/redis/redis.conf || return 1
  XT 30 main systemctl restart redis-server || return 1
  for n in node-1 node-2; do XT 30 "$n" systemctl disable --now -q redis-server || return 1; done
  # the real livekit-server PINGs Redis at startup and exits ("unable to connect to redis") when
  # it cannot: the subs start only once main's Redis answers them
  for n in node-1 node-2; do
    wait_for 15 redis_pong "$n" || { lab_log "setup: main's Redis not reachable from $n in 15 s"; return 1; }
  done
  # the same secrets everywhere: main's, as generated by its postinst (owner and modes kept)
  for n in node-1 node-2; do
    XT 10 main tar -C /etc/airclass/secrets -cf - . | XT 10 "$n" tar -C /etc/airclass/secrets -xpf - \
      || return 1
  done
  local sums=() m
  for n in "${NODES[@]}"; do
    m=$(XT 10 "$n" sh -c 'cd /etc/airclass/secrets && stat -c "%n %U:%G %a" * && sha256sum *' | sha256sum)
    sums+=("${m%% *}")
  done
  [[ ${sums[0]} == "${sums[1]}" && ${sums[0]} == "${sums[2]}" ]] \
    || { lab_log "setup: secrets differ between nodes"; return 1; }
  lab_log "setup: secrets of main copied to the subs: $(XT 5 main sh -c 'cd /etc/airclass/secrets && stat -c "%n=%U:%G/%a" *' | tr '\n' ' ')"
  # per-instance configuration (no main_url: subs find main over mDNS) and the lab drop-in
  for n in "${NODES[@]}"; do
    local mode=sub; [[ $n == main ]] && mode=main
    XT 5 "$n" mkdir -p /etc/airclass/nodes /etc/systemd/system/airclass-node@.service.d || return 1
    node_toml "$n" "$mode" "$(ip_of "$n")" | put "$n" "/etc/airclass/nodes/$n.toml" || return 1
    printf '# lab only: detect a hung daemon faster than the unit default (30 s)\n[Service]\nWatchdogSec=%ss\n' \
      "$LAB_WATCHDOG" | put "$n" /etc/systemd/system/airclass-node@.service.d/50-lab.conf || return 1
    XT 30 "$n" systemctl daemon-reload || return 1
    XT 30 "$n" airclass-node check --instance "$n" > "$LOGS/check-$n.log" 2>&1 \
      || { cat "$LOGS/check-$n.log" >&2; lab_log "setup: airclass-node check --instance $n failed"; return 1; }
  done
  return 0
}

# start_failed NODE: show the unit's last journal lines; SETUP_WHY = the daemon's last error
start_failed() {
  local j
  j=$(XT 10 "$1" journalctl --no-pager -o cat -n 15 -u "airclass-node@$1" --output-fields=MESSAGE,ERROR)
  printf '%s\n' "$j" >&2
  SETUP_WHY="airclass-node@$1 did not start: $(XT 10 "$1" journalctl --no-pager -o cat -p err -n 3 \
    -u "airclass-node@$1" --output-fields=MESSAGE,ERROR | grep -v '^airclass-node@' | tr '\n' ' ')"
}

T_START=""
start_cluster() {
  local n r
  T_START=$(now)
  XT 60 main systemctl start airclass-node@main || { start_failed main; return 1; }
  lab_log "start: airclass-node@main active after $(dt "$T_START" "$(now)")s"
  for n in node-1 node-2; do XT 60 "$n" systemctl start --no-block "airclass-node@$n" || return 1; done
  for n in node-1 node-2; do
    local i
    for i in $(seq 300); do
      r=$(XT 5 "$n" systemctl is-active "airclass-node@$n") && break
      [[ $r == failed ]] && break
      sleep 0.1
    done
    [[ $r == active ]] || { start_failed "$n"; return 1; }
  done
  lab_log "start: airclass-node@{main,node-1,node-2} active after $(dt "$T_START" "$(now)")s"
}

collect_logs() {
  local n
  for n in "${NODES[@]}"; do
    [[ -f $LAB_RUN/$n/leader.pid ]] && lab_alive "$(lab_leader "$n")" || continue
    XT 20 "$n" journalctl --no-pager -o short-precise -u 'airclass-node@*' > "$LOGS/journal-$n.log" 2>&1 || true
    XT 20 "$n" journalctl --no-pager -o verbose -u 'airclass-node@*' > "$LOGS/journal-verbose-$n.log" 2>&1 || true
  done
}

# pin_load VALUE NODE...   write the sysload drill file of each node's instance (empty VALUE: remove)
pin_load() {
  local v=$1 n; shift
  for n in "$@"; do
    if [[ -z $v ]]; then XT 5 "$n" rm -f "/run/airclass/$n/sysload-override"
    else printf '%s\n' "$v" | put "$n" "/run/airclass/$n/sysload-override"; fi
  done
}
# wait_load VALUE TIMEOUT NODE...   until main's table shows that sysload for every node
wait_load() {
  local v=$1 to=$2 n i j ok; shift 2
  for ((i = 0; i < to * 10; i++)); do
    j=$(ctl main nodes "$(main_api)" 2>/dev/null) || { sleep 0.1; continue; }
    ok=1
    for n in "$@"; do
      [[ $(jget "$j" "(j['nodes'] or {}).get('$n',{}).get('sysload')") == "$v" ]] || ok=0
    done
    [[ $ok == 1 ]] && return 0
    sleep 0.1
  done
  return 1
}

# fresh_rooms PREFIX COUNT NODE NEED NODES...   COUNT names of which at least NEED would go to
# NODE by rendezvous over NODES (so "avoids NODE" checks are not vacuous)
fresh_rooms() {
  local prefix=$1 count=$2 node=$3 need=$4; shift 4
  python3 - "$prefix" "$count" "$node" "$need" "$@" <<'EOF'
import hashlib, sys
prefix, count, node, need, nodes = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5:]
score = lambda r, n: int.from_bytes(hashlib.sha256(r.encode() + b"\0" + n.encode()).digest()[:8], "big")
win = lambda r, ns: max(sorted(ns), key=lambda n: score(r, n))
hit = [f"{prefix}-{i}" for i in range(10000) if win(f"{prefix}-{i}", nodes) == node][:need]
rest = [f"{prefix}-x{i}" for i in range(count - len(hit))]
print(" ".join(hit + rest))
EOF
}

# ------------------------------------------------------------------ scenarios
# 1. Cluster forms; avahi-browse on node-2 sees the three _airclass._tcp services.
s1() {
  local r t_formed out i t
  r=$(ctl main wait "$(main_api)" "main=alive,node-1=alive,node-2=alive" 40) \
    || { FIG="not formed in 40 s: $(jget "$r" 'j["nodes"]')"; return 1; }
  echo "$r" | save s1-wait.json
  t_formed=$(dt "$T_START" "$(jget "$r" 'j["t"]')")
  t=$(now)
  local want="main=${LAB_IP[main]}:8000:main node-1=${LAB_IP[node-1]}:8001:sub node-2=${LAB_IP[node-2]}:8002:sub"
  local res=""
  for i in $(seq 20); do
    out=$(XT 15 node-2 avahi-browse -rtp _airclass._tcp 2>/dev/null) || true
    res=$(python3 - "$want" "$out" <<'EOF'
import sys
want = dict(w.split("=", 1) for w in sys.argv[1].split())
seen = {}
for line in sys.argv[2].splitlines():
    f = line.split(";")
    if len(f) < 10 or f[0] != "=":
        continue
    txt = dict(kv.strip('"').split("=", 1) for kv in f[9].split('" "') if "=" in kv)
    node = txt.get("node")
    if node and txt.get("cluster") == "airclass" and txt.get("proto") == "1":
        seen[node] = f"{f[7]}:{f[8]}:{txt.get('role')}"
ok = all(seen.get(n) == v for n, v in want.items())
print(("OK " if ok else "MISSING ") + " ".join(f"{k}={v}" for k, v in sorted(seen.items())))
EOF
)
    [[ $res == OK* ]] && break
    sleep 0.5
  done
  echo "$out" | save s1-avahi.txt
  # the real LiveKit of every node advertises the container's address (never loopback: ICE drops
  # loopback candidates), as its ready line says
  local n ips="" ipok=1 nip
  for n in "${NODES[@]}"; do
    nip=$(XT 10 "$n" journalctl --no-pager -o cat -u "airclass-node@$n" LIVEKIT=1 | grep 'starting LiveKit server' | tail -1 | grep -oE '"nodeIP": "[^"]*"' | cut -d'"' -f4)
    ips+=" $n=$nip"; [[ $nip == "${LAB_IP[$n]}" ]] || ipok=0
  done
  FIG="3 alive ${t_formed}s after start; avahi on node-2: ${res#* } ($(dt "$t" "$(now)")s); LiveKit nodeIP$ips"
  [[ $ipok == 1 ]] || FIG+="; FAIL: a LiveKit nodeIP is not its container's address"
  [[ $res == OK* && $ipok == 1 ]]
}

# 2. Placement: 50 rooms spread, sticky, tokens valid on the node they name.
S2_ROOMS=()
s2() {
  local rooms=() i r1 r2 verdict
  for i in $(seq -w 1 50); do rooms+=("class-$i"); done
  S2_ROOMS=("${rooms[@]}")
  pin_load "$PIN" "${NODES[@]}"
  wait_load "$PIN" 10 "${NODES[@]}" || { FIG="main never saw the pinned sysload $PIN"; return 1; }
  local t=$(now)
  r1=$(ctl main join "$(main_api)" "$TOKEN" "${rooms[@]}") || true
  local t_join=$(dt "$t" "$(now)")
  r2=$(ctl main join "$(main_api)" "$TOKEN" "${rooms[@]}") || true
  echo "$r1" | save s2-joins.json; echo "$r2" | save s2-joins-again.json
  verdict=$(python3 - "$r1" "$r2" "${LAB_IP[main]}" "${LAB_IP[node-1]}" "${LAB_IP[node-2]}" <<'EOF'
import hashlib, json, sys
r1, r2 = json.loads(sys.argv[1])["rooms"], json.loads(sys.argv[2])["rooms"]
url = {"main": f"ws://{sys.argv[3]}:7880", "node-1": f"ws://{sys.argv[4]}:7890", "node-2": f"ws://{sys.argv[5]}:7900"}
score = lambda r, n: int.from_bytes(hashlib.sha256(r.encode() + b"\0" + n.encode()).digest()[:8], "big")
win = lambda r: max(sorted(url), key=lambda n: score(r, n))
bad = []
cnt = {n: 0 for n in url}
valid = same = hashed = 0
for room, a in r1.items():
    b = r2.get(room, {})
    if a.get("node") in cnt: cnt[a["node"]] += 1
    if a.get("valid") and a.get("claim_room") == room and a.get("claim_join") and a.get("url") == url.get(a.get("node")): valid += 1
    else: bad.append(f"{room}:{a}")
    if a.get("node") == b.get("node") and b.get("valid"): same += 1
    else: bad.append(f"{room}: {a.get('node')} then {b.get('node')}")
    if a.get("node") == win(room): hashed += 1
    else: bad.append(f"{room}: {a.get('node')} but rendezvous says {win(room)}")
ok = len(r1) == 50 and valid == 50 and same == 50 and hashed == 50 and min(cnt.values()) >= 5
spread = " ".join(f"{k}={v}" for k, v in cnt.items())
print(("PASS " if ok else "FAIL ") + f"spread {spread}; sticky {same}/50; tokens valid on their node {valid}/50; rendezvous {hashed}/50"
      + ("" if ok else "; " + "; ".join(bad[:3])))
EOF
)
  FIG="${verdict#* }; 50 joins in ${t_join}s"
  [[ $verdict == PASS* ]]
}

# proof_fig FILE   the placement proof's figure from placement.py's JSON
proof_fig() {
  python3 - "$LOGS/$1" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
bad = [f"{r} named {d['named']} but LiveKit: {d['host_by_id'] or ('no record' if d['node_id'] is None else d['node_id'])}"
       for r, d in sorted(j["detail"].items()) if not d["ok"]]
print(f"{j['as_named']}/{j['rooms']} rooms hosted (LiveKit room_node_map + nodes) on the node main named; "
      f"{j['not_in_livekit']} unknown to LiveKit, {j['elsewhere']} on another node; LiveKit hosts: "
      + " ".join(f"{k}={v}" for k, v in sorted(j["livekit_hosts"].items()))
      + (f"; e.g. {'; '.join(bad[:3])}" if bad else ""))
EOF
}

# 2p. Placement proof for scenario 2's 50 rooms: LiveKit's own records host each room on the node
#     main named. Expected to FAIL until main creates the room on the chosen node (CreateRoom
#     node_id) before it answers: joins alone create nothing in LiveKit.
s2p() {
  [[ -s $LOGS/s2-joins.json ]] || { FIG="scenario 2 did not run"; return 1; }
  local named rc=0
  named=$(jget "$(cat "$LOGS/s2-joins.json")" '{k: v.get("node") for k, v in j["rooms"].items()}')
  proof "$named" s2p-placement.json || rc=$?
  [[ -s $LOGS/s2p-placement.json ]] || { FIG="placement.py failed (rc $rc)"; return 1; }
  FIG="$(proof_fig s2p-placement.json)"
  [[ $rc == 0 ]] || FIG+=" -- LiveKit places rooms itself: main's choice is advisory until main creates each room on the node it names (issue 9)"
  return $rc
}

# 3. Logs: the unit's journal has daemon lines and LiveKit lines.
s3() {
  local all lk lkstart daemon
  all=$(XT 10 node-1 journalctl --no-pager -o json -u airclass-node@node-1 | python3 -c '
import json, sys
d = l = 0
for line in sys.stdin:
    e = json.loads(line)
    if e.get("_PID") == "1": continue
    if e.get("LIVEKIT") == "1": l += 1
    else: d += 1
print(d, l)')
  read -r daemon lk <<<"$all"
  lkstart=$(XT 10 node-1 journalctl --no-pager -o cat -u airclass-node@node-1 LIVEKIT=1 | grep -c '^\[LiveKit\].*starting LiveKit server' || true)
  local inst
  inst=$(XT 10 node-1 journalctl --no-pager -o cat -u airclass-node@node-1 INSTANCE=node-1 | wc -l)
  XT 10 node-1 journalctl --no-pager -o short-precise -u airclass-node@node-1 | tail -40 | save s3-journal-tail.txt
  FIG="daemon lines $daemon (INSTANCE=node-1: $inst), LiveKit lines $lk ([LiveKit] ready lines $lkstart)"
  [[ $daemon -gt 0 && $lk -gt 0 && $lkstart -ge 1 && $inst -gt 0 ]]
}

# helper for 4 and 5: inject a fault into node-1's LiveKit and watch the recovery
lk_fault() {  # lk_fault SIGNAL JSONFILE -> sets R, T0, OLDPID
  OLDPID=$(lk_pid node-1) || return 1
  ctl node-1 watch-lk "$(api node-1)" "$OLDPID" 40 --main "$(main_api)" --name node-1 > "$LOGS/$2" &
  local w=$!
  sleep 0.5
  T0=$(now)
  XT 5 node-1 kill "-$1" "$OLDPID" || { wait $w; return 1; }
  wait $w; R=$(cat "$LOGS/$2")
}

# 4. Child crash: kill -9 of node-1's livekit -> restarted, node stays alive in main's table.
s4() {
  local before after
  before=$(XT 5 node-1 curl -sf "$(api node-1)/api/node") || return 1
  lk_fault KILL s4-watch.json || { FIG="could not kill livekit (pid ${OLDPID:-?})"; return 1; }
  local ok det heal ms
  ok=$(jget "$R" 'j["ok"]'); ms=$(jget "$R" '",".join(j["main_states"])')
  if [[ $ok != true ]]; then FIG="not healthy again in 40 s: $(jget "$R" 'j["states"]')"; return 1; fi
  det=$(dt "$T0" "$(jget "$R" 'j["detected"]')"); heal=$(dt "$T0" "$(jget "$R" 'j["healthy"]')")
  FIG="healthy again ${heal}s after kill -9 (exit seen ${det}s; pid $OLDPID -> $(jget "$R" 'j["new_pid"]'), restarts $(jget "$before" 'j["livekit"]["restarts"]') -> $(jget "$R" 'j["restarts"]')); node-1 in main's table: $ms"
  [[ $ms == alive ]]
}

# 5. Hung child: SIGSTOP of node-1's livekit -> detected and restarted.
s5() {
  lk_fault STOP s5-watch.json || { FIG="could not stop livekit (pid ${OLDPID:-?})"; return 1; }
  local ok det heal gone
  ok=$(jget "$R" 'j["ok"]')
  if [[ $ok != true ]]; then FIG="not restarted in 40 s: $(jget "$R" 'j["states"]')"; return 1; fi
  det=$(dt "$T0" "$(jget "$R" 'j["detected"]')"); heal=$(dt "$T0" "$(jget "$R" 'j["healthy"]')")
  sleep 0.5
  if XT 5 node-1 test -e "/proc/$OLDPID"; then gone="old pid $OLDPID still exists ($(XT 5 node-1 cat /proc/"$OLDPID"/status | grep State))"
  else gone="stopped process gone"; fi
  FIG="hang detected ${det}s after SIGSTOP, healthy again ${heal}s (new pid $(jget "$R" 'j["new_pid"]')); $gone; main: $(jget "$R" '",".join(j["main_states"])')"
  [[ $gone == "stopped process gone" ]]
}

# 6. Hung daemon: SIGSTOP of node-1's airclass-node -> watchdog kills, systemd restarts, node rejoins.
s6() {
  local mpid since t_restart="" i p st r wd t_wd
  mpid=$(unit_prop node-1 node-1 MainPID) || return 1
  [[ $mpid -gt 1 ]] || { FIG="no MainPID"; return 1; }
  since=$(date +%s)
  T0=$(now)
  XT 5 node-1 kill -STOP "$mpid" || return 1
  for ((i = 0; i < 600; i++)); do
    p=$(unit_prop node-1 node-1 MainPID); st=$(unit_prop node-1 node-1 ActiveState)
    if [[ $p != "$mpid" && $p -gt 1 && $st == active ]]; then t_restart=$(now); break; fi
    sleep 0.1
  done
  [[ -n $t_restart ]] || { FIG="unit not restarted within 60 s (MainPID $p, $st)"; return 1; }
  wd=$(XT 10 node-1 journalctl --no-pager -o short-unix -u airclass-node@node-1 --since "@$since" | grep -m1 'Watchdog timeout') || true
  XT 10 node-1 journalctl --no-pager -o short-precise -u airclass-node@node-1 --since "@$since" | save s6-journal.txt
  [[ -n $wd ]] || { FIG="restarted after $(dt "$T0" "$t_restart")s but no 'Watchdog timeout' in the journal"; return 1; }
  t_wd=$(dt "$T0" "${wd%% *}")
  # the last ping came at most WatchdogSec/2 before the SIGSTOP: timeout within WatchdogSec (+1 s)
  le "$t_wd" "$((LAB_WATCHDOG + 1))" || { FIG="watchdog fired only ${t_wd}s after SIGSTOP (WatchdogSec=${LAB_WATCHDOG}s)"; return 1; }
  r=$(ctl main wait "$(main_api)" "node-1=alive" 30) || { FIG="watchdog after ${t_wd}s, restarted, but node-1 not alive in main: $(jget "$r" 'j["nodes"]')"; return 1; }
  FIG="watchdog fired ${t_wd}s after SIGSTOP (WatchdogSec=${LAB_WATCHDOG}s), unit active again $(dt "$T0" "$t_restart")s, node-1 alive in main $(dt "$T0" "$(jget "$r" 'j["t"]')")s; journal: '$(echo "${wd#* }" | sed 's/^[^:]*: //')'"
  pin_load "" node-1
}

# 7. Graceful stop: node-2 leaves main's table at once, LiveKit got SIGTERM, firewall rules gone.
s7() {
  local since w r t_stop tr lk nft ok=1 why=""
  ctl main wait "$(main_api)" "node-2=left|absent" 20 > "$LOGS/s7-wait.json" &
  w=$!
  sleep 0.5
  since=$(date +%s)
  T0=$(now)
  XT 60 node-2 systemctl stop airclass-node@node-2 || { why+=" stop failed;"; ok=0; }
  t_stop=$(dt "$T0" "$(now)")
  wait $w; r=$(cat "$LOGS/s7-wait.json")
  if [[ $(jget "$r" 'j["ok"]') != true ]]; then FIG="node-2 still listed: $(jget "$r" 'j["nodes"]')"; return 1; fi
  local t_left; t_left=$(dt "$T0" "$(jget "$r" 'j["t"]')")
  tr=$(jget "$r" '"->".join(s for _, n, s in j["transitions"] if n == "node-2")')
  [[ $tr == "alive->left" || $tr == "alive->absent" ]] || { why+=" states $tr (left only after missed heartbeats?);"; ok=0; }
  le "$t_left" "$(awk -v h=$HB 'BEGIN{print h*1.5}')" || { why+=" left only after ${t_left}s;"; ok=0; }
  # the real server's own line (cmd/server/main.go of v1.13.5: logger.Infow("exit requested,
  # shutting down", "signal", sig, "force", force)), forwarded with LIVEKIT=1; and the LiveKit that
  # said it is the real one (its ready line says version 1.13.5, the stand-in's says -standin)
  lk=$(XT 10 node-2 journalctl --no-pager -o cat -u airclass-node@node-2 LIVEKIT=1 --since "@$since" | grep -m1 'exit requested') || true
  [[ $lk == *"server/main.go:"*"exit requested, shutting down"*'"signal": "terminated"'*'"force": false'* ]] \
    || { why+=" no SIGTERM line from the real LiveKit;"; ok=0; }
  local ver; ver=$(XT 10 node-2 journalctl --no-pager -o cat -u airclass-node@node-2 LIVEKIT=1 | grep 'starting LiveKit server' | tail -1 | grep -oE '"version": "[^"]*"')
  [[ $ver == '"version": "'"${LAB_LK_VERSION##* }"'"' ]] || { why+=" the LiveKit that stopped says $ver;"; ok=0; }
  lk=$(sed -E 's/^\[LiveKit\] //; s/^[0-9TZ:.-]+\s+//' <<<"$lk")
  if XT 5 node-2 nft list table inet airclass_node_2 >/dev/null 2>&1; then why+=" nft table airclass_node_2 still there;"; ok=0; nft="present"; else nft="gone"; fi
  XT 10 node-2 journalctl --no-pager -o short-precise -u airclass-node@node-2 --since "@$since" | save s7-journal.txt
  # back for the next scenarios
  local t1; t1=$(now)
  XT 60 node-2 systemctl start airclass-node@node-2 || { why+=" restart failed;"; ok=0; }
  r=$(ctl main wait "$(main_api)" "node-2=alive" 30) || { why+=" did not rejoin;"; ok=0; }
  FIG="left main's table ${t_left}s after stop ($tr; stop took ${t_stop}s); real LiveKit ($ver) logged: '${lk:-none}'; nft table $nft; rejoined $(dt "$t1" "$(jget "$r" 'j["t"]')")s after start${why:+; FAIL:$why}"
  [[ $ok == 1 ]]
}

# 8. Node loss: cut node-2's link -> dead within the window; new rooms avoid it; restore -> rejoins.
s8() {
  local w r t_dead t_susp window rooms j bad verdict t1 ok=1 why=""
  pin_load "$PIN" "${NODES[@]}"
  wait_load "$PIN" 10 "${NODES[@]}" || { FIG="main never saw the pinned sysload"; return 1; }
  ctl main wait "$(main_api)" "node-2=dead" 20 > "$LOGS/s8-wait.json" &
  w=$!
  sleep 0.5
  T0=$(now)
  ip -n "$LAB_NETNS" link set vb-node-2 down || { wait $w; return 1; }
  wait $w; r=$(cat "$LOGS/s8-wait.json")
  if [[ $(jget "$r" 'j["ok"]') != true ]]; then
    ip -n "$LAB_NETNS" link set vb-node-2 up
    FIG="node-2 not dead in 20 s: $(jget "$r" 'j["transitions"]')"; return 1
  fi
  t_dead=$(dt "$T0" "$(jget "$r" 'j["t"]')")
  t_susp=$(jget "$r" '[t for t, n, s in j["transitions"] if s == "suspect"][:1]')
  t_susp=$( [[ $t_susp == "[]" ]] && echo "-" || dt "$T0" "${t_susp//[\[\]]/}")
  window=$(awk -v h=$HB -v m=$DEAD_MISSED 'BEGIN{print h*m + h/2}')
  # dead at most `window` after the last heartbeat (which came before the cut); slack: 4 evaluations
  # per heartbeat + polling
  le "$t_dead" "$(awk -v w="$window" -v h=$HB 'BEGIN{print w + h*0.75}')" || { why+=" dead only after ${t_dead}s;"; ok=0; }
  le "$(awk -v w="$window" -v h=$HB 'BEGIN{print w - h - 0.3}')" "$t_dead" || { why+=" dead too early (${t_dead}s);"; ok=0; }
  rooms=$(fresh_rooms loss 20 node-2 8 main node-1 node-2)
  # shellcheck disable=SC2086
  j=$(ctl main join "$(main_api)" "$TOKEN" $rooms) || true
  echo "$j" | save s8-joins.json
  verdict=$(python3 - "$j" <<'EOF'
import hashlib, json, sys
r = json.loads(sys.argv[1])["rooms"]
score = lambda x, n: int.from_bytes(hashlib.sha256(x.encode() + b"\0" + n.encode()).digest()[:8], "big")
win = lambda x: max(["main", "node-1"], key=lambda n: score(x, n))
bad = [f"{k}:{v.get('node')}" for k, v in r.items() if v.get("node") != win(k) or not v.get("valid")]
print(("PASS " if not bad and len(r) == 20 else "FAIL ") + f"{20 - len(bad)}/20 new rooms on main/node-1 by rendezvous (8 would hash to node-2)" + (f" bad: {bad[:4]}" if bad else ""))
EOF
)
  [[ $verdict == PASS* ]] || { why+=" placement;"; ok=0; }
  t1=$(now)
  ip -n "$LAB_NETNS" link set vb-node-2 up || { why+=" link up failed;"; ok=0; }
  r=$(ctl main wait "$(main_api)" "node-2=alive" 30) || { why+=" not back;"; ok=0; }
  local back lkback="not ready in 30 s"; back=$(dt "$t1" "$(jget "$r" 'j["t"]')")
  # LiveKit on node-2 lost main's Redis meanwhile: let it become ready again before moving on
  wait_lk_ready node-2 30 && lkback="$(dt "$t1" "$(now)")s" || { why+=" node-2's LiveKit not ready again;"; ok=0; }
  FIG="dead ${t_dead}s after the cut (suspect ${t_susp}s; window ${window}s after the last heartbeat); ${verdict#* }; rejoined ${back}s after restore, its LiveKit ready ${lkback}${why:+; FAIL:$why}"
  [[ $ok == 1 ]]
}

# 9. Main loss: subs keep LiveKit healthy and retry; main back -> both subs within one heartbeat.
s9() {
  local ok=1 why="" t_stop s1 s2 p1 p2 st1 st2 r t_up back
  wait_lk_ready node-1 20 && wait_lk_ready node-2 20 || { FIG="precondition: the subs' LiveKit is not ready"; return 1; }
  T0=$(now)
  XT 60 main systemctl stop airclass-node@main || { FIG="stop failed"; return 1; }
  t_stop=$(now)
  ctl node-1 sample "$(api node-1)" 4 > "$LOGS/s9-node-1.json" & p1=$!
  ctl node-2 sample "$(api node-2)" 4 > "$LOGS/s9-node-2.json" & p2=$!
  wait $p1; wait $p2
  s1=$(cat "$LOGS/s9-node-1.json"); s2=$(cat "$LOGS/s9-node-2.json")
  [[ $(jget "$s1" 'j["ok"]') == true && $(jget "$s2" 'j["ok"]') == true ]] \
    || { why+=" LiveKit not steadily ready: node-1 $(jget "$s1" 'j["states"]') node-2 $(jget "$s2" 'j["states"]');"; ok=0; }
  st1=$(unit_prop node-1 node-1 StatusText); st2=$(unit_prop node-2 node-2 StatusText)
  [[ $(unit_prop node-1 node-1 ActiveState) == active && $(unit_prop node-2 node-2 ActiveState) == active ]] \
    || { why+=" a sub unit is not active;"; ok=0; }
  [[ $st1 != *"registered with main"* && $st2 != *"registered with main"* ]] \
    || { why+=" subs still claim to be registered;"; ok=0; }
  XT 60 main systemctl start airclass-node@main || { FIG="main did not start again"; return 1; }
  t_up=$(now)
  r=$(ctl main wait "$(main_api)" "main=alive,node-1=alive,node-2=alive" 20) || { why+=" subs not back in 20 s: $(jget "$r" 'j["transitions"]');"; ok=0; }
  back=$(dt "$t_up" "$(jget "$r" 'j["t"]')")
  le "$back" "$(awk -v h=$HB 'BEGIN{print h + 1.0}')" || { why+=" back only after ${back}s;"; ok=0; }
  FIG="main down $(dt "$t_stop" "$t_up")s: subs' LiveKit ready in $(jget "$s1" 'j["polls"]')+$(jget "$s2" 'j["polls"]') polls; sub status '$st1'; both subs back ${back}s after main's READY${why:+; FAIL:$why}"
  [[ $ok == 1 ]]
}

# 10. Overload: node-1 over sysload_limit -> new rooms avoid it; its existing rooms stay.
s10() {
  local ok=1 why="" existing=() r j t_seen rooms verdict
  pin_load "$PIN" "${NODES[@]}"
  wait_load "$PIN" 10 "${NODES[@]}" || { FIG="main never saw the pinned sysload"; return 1; }
  # three rooms that live on node-1: created in the real LiveKit through RoomService CreateRoom
  # with node-1's LiveKit node id (LiveKit's own record then says node-1; empty rooms live for
  # empty_timeout)
  existing=($(fresh_rooms live 3 node-1 3 main node-1 node-2))
  local e nid1
  nid1=$(lk_node_id node-1); [[ -n $nid1 ]] || { FIG="no LiveKit node id in node-1's journal"; return 1; }
  for e in "${existing[@]}"; do
    twirp node-1 CreateRoom "{\"name\":\"$e\",\"node_id\":\"$nid1\",\"empty_timeout\":120}" >> "$LOGS/s10-create.json" \
      || { FIG="CreateRoom $e on node-1 failed: $(tail -1 "$LOGS/s10-create.json")"; return 1; }
  done
  local i seen=0
  for ((i = 0; i < 100; i++)); do
    j=$(ctl main nodes "$(main_api)") || true
    [[ $(jget "$j" "set('${existing[*]}'.split()) <= set(j['nodes']['node-1']['rooms'] or [])") == true ]] && { seen=1; break; }
    sleep 0.1
  done
  [[ $seen == 1 ]] || { FIG="main never saw node-1's rooms ${existing[*]}: $(jget "$j" 'j["nodes"]["node-1"]')"; return 1; }
  # who reports them (LiveKit's ListRooms is cluster-wide with Redis: a node that reports every
  # live room as its own makes main's sticky rule answer by name order)
  local reporters
  reporters=$(jget "$j" "','.join(n for n, v in sorted(j['nodes'].items()) if '${existing[0]}' in (v.get('rooms') or []))")
  T0=$(now)
  pin_load 0.95 node-1
  wait_load 0.95 15 node-1 || { FIG="main never saw node-1's sysload 0.95"; return 1; }
  t_seen=$(dt "$T0" "$(now)")
  rooms=$(fresh_rooms ovl 20 node-1 8 main node-1 node-2)
  # shellcheck disable=SC2086
  j=$(ctl main join "$(main_api)" "$TOKEN" "${existing[@]}" $rooms) || true
  echo "$j" | save s10-joins.json
  verdict=$(python3 - "$j" "${existing[*]}" <<'EOF'
import hashlib, json, sys
r = json.loads(sys.argv[1])["rooms"]
existing = sys.argv[2].split()
score = lambda x, n: int.from_bytes(hashlib.sha256(x.encode() + b"\0" + n.encode()).digest()[:8], "big")
win = lambda x: max(["main", "node-2"], key=lambda n: score(x, n))
stay = [k for k in existing if r.get(k, {}).get("node") == "node-1"]
new = {k: v for k, v in r.items() if k not in existing}
avoid = [k for k, v in new.items() if v.get("node") == win(k) and v.get("valid")]
ok = len(stay) == len(existing) and len(avoid) == len(new) == 20
print(("PASS " if ok else "FAIL ") + f"new rooms off node-1 {len(avoid)}/20 (8 would hash to it); existing rooms still on node-1 {len(stay)}/{len(existing)}"
      + ("" if ok else f" (main named: {dict((k, r.get(k, {}).get('node')) for k in existing)}"
         + f"; new rooms not off node-1: {[k for k in new if k not in avoid][:4]})"))
EOF
)
  [[ $verdict == PASS* ]] || { why+=" placement;"; ok=0; }
  # clean up: delete the rooms, unpin
  for e in "${existing[@]}"; do twirp node-1 DeleteRoom "{\"room\":\"$e\"}" >> "$LOGS/s10-delete.json" || true; done
  pin_load "" "${NODES[@]}"
  FIG="rooms created on node-1's LiveKit (CreateRoom node_id), reported in heartbeats by $reporters; main saw node-1 at sysload 0.95 (limit 0.7) after ${t_seen}s; ${verdict#* }${why:+; FAIL:$why}"
  [[ $ok == 1 ]]
}

# 11. Bad actors: wrong-secret requests and a replayed heartbeat are refused and change nothing;
#     a node with a wrong cluster secret never joins and says why.
s11() {
  local ok=1 why="" hb reg a b rp st0 st1 n1 s3txt wrong=/var/tmp/lab-wrong-secret
  XT 5 main sh -c "head -c 36 /dev/urandom | base64 | tr -dc A-Za-z0-9 > $wrong" || return 1
  st0=$(XT 5 main curl -sf "$(main_api)/api/cluster/status") || return 1
  # (a) a heartbeat for node-1 with an absurd load, and a register of a stranger, wrong secret
  hb='{"name":"node-1","identity":"0123456789abcdef0123456789abcdef","stats":{"cpu_percent":1.0,"memory_used_bytes":1,"memory_total_bytes":2,"load1":19.0,"sysload":9.5,"num_cpus":2,"rooms":0,"participants":0,"livekit_health":"healthy","room_names":[]}}'
  reg='{"cluster_id":"airclass","identity":"fedcba9876543210fedcba9876543210","node":{"name":"node-8","mode":"sub","protocol_version":1,"software_version":"lab","api_url":"http://192.0.2.8:8008","livekit_url":"ws://192.0.2.8:7960","rtc_range":{"start":58000,"end":58020}},"stats":{"cpu_percent":1.0,"memory_used_bytes":1,"memory_total_bytes":2,"load1":0.0,"sysload":0.0,"num_cpus":2,"rooms":0,"participants":0,"livekit_health":"healthy","room_names":[]}}'
  a=$(ctl main send "$(main_api)" /api/cluster/heartbeat "$hb" "$wrong")
  b=$(ctl main send "$(main_api)" /api/cluster/register "$reg" "$wrong")
  n1=$(ctl main nodes "$(main_api)")
  [[ $(jget "$a" 'j["status"]') == 401 && $(jget "$a" 'j["body"]') == *bad_signature* ]] || { why+=" wrong-secret heartbeat: $(jget "$a" 'j["status"]');"; ok=0; }
  [[ $(jget "$b" 'j["status"]') == 401 && $(jget "$b" 'j["body"]') == *bad_signature* ]] || { why+=" wrong-secret register: $(jget "$b" 'j["status"]');"; ok=0; }
  [[ $(jget "$n1" "j['nodes']['node-1']['sysload']") != 9.5 && $(jget "$n1" "'node-8' in j['nodes']") == false ]] \
    || { why+=" a refused request changed the table;"; ok=0; }
  # (b) a replayed heartbeat (a fake node-9 registered with the right secret, then left)
  rp=$(ctl main replay "$(main_api)" /etc/airclass/secrets/cluster-secret node-9) || { why+=" replay: $rp;"; ok=0; }
  echo "$rp" | save s11-replay.json
  # (c) node-3 on node-2's container with a wrong cluster secret (its own credential drop-in)
  XT 5 node-2 sh -c "head -c 36 /dev/urandom | base64 | tr -dc A-Za-z0-9 > /etc/airclass/lab-wrong-cluster-secret && chown root:airclass /etc/airclass/lab-wrong-cluster-secret && chmod 0640 /etc/airclass/lab-wrong-cluster-secret" || return 1
  XT 5 node-2 mkdir -p /etc/systemd/system/airclass-node@node-3.service.d
  printf '[Service]\nLoadCredential=\nLoadCredential=livekit-api-key:/etc/airclass/secrets/livekit-api-key\nLoadCredential=livekit-api-secret:/etc/airclass/secrets/livekit-api-secret\nLoadCredential=cluster-secret:/etc/airclass/lab-wrong-cluster-secret\nLoadCredential=app-token-sha256:/etc/airclass/secrets/app-token.sha256\n' \
    | put node-2 /etc/systemd/system/airclass-node@node-3.service.d/60-wrong-secret.conf
  node_toml node-3 sub "${LAB_IP[node-2]}" | put node-2 /etc/airclass/nodes/node-3.toml
  XT 30 node-2 systemctl daemon-reload
  ctl main wait "$(main_api)" "node-3=alive|suspect|dead|left" 8 > "$LOGS/s11-node3.json" &
  local w=$!
  T0=$(now)
  XT 60 node-2 systemctl start airclass-node@node-3 || { why+=" node-3 did not start;"; ok=0; }
  wait $w && { why+=" node-3 joined: $(cat "$LOGS/s11-node3.json");"; ok=0; }
  s3txt=$(unit_prop node-2 node-3 StatusText)
  [[ $s3txt == *401* || $s3txt == *signature* ]] || { why+=" node-3 status does not say why: '$s3txt';"; ok=0; }
  XT 10 node-2 journalctl --no-pager -o short-precise -u airclass-node@node-3 | save s11-node3-journal.txt
  XT 60 node-2 systemctl stop airclass-node@node-3
  st1=$(XT 5 main curl -sf "$(main_api)/api/cluster/status") || true
  local refused
  refused=$(python3 - "$st0" "$st1" <<'EOF'
import json, sys
a, b = (json.loads(x).get("refused", {}) for x in sys.argv[1:3])
print(" ".join(f"{k}+{b.get(k, 0) - a.get(k, 0)}" for k in sorted(set(a) | set(b)) if b.get(k, 0) != a.get(k, 0)) or "none counted")
EOF
)
  FIG="wrong secret: heartbeat $(jget "$a" 'j["status"]'), register $(jget "$b" 'j["status"]'), table unchanged; replay: $(jget "$rp" 'j["replay"][0]') $(jget "$rp" 'j["replay"][1][:40]') (sysload stayed $(jget "$rp" 'j["sysload_after"]')); node-3 (wrong cluster secret) not joined after $(dt "$T0" "$(now)")s, status '$s3txt'; main refused: $refused${why:+; FAIL:$why}"
  [[ $ok == 1 ]]
}

# 12. Security: online exposure = offline exposure; LiveKit has no capabilities; nft = port plan.
s12() {
  local ok=1 why="" on off pid caps ports nftj verdict
  on=$(XT 30 node-1 systemd-analyze security --no-pager airclass-node@node-1.service | tail -1)
  off=$(systemd-analyze security --offline=true --no-pager "$ROOT/systemd/airclass-node@.service" | tail -1)
  local von voff
  von=$(grep -oE 'service: [0-9.]+' <<<"$on" | cut -d' ' -f2); voff=$(grep -oE 'service: [0-9.]+' <<<"$off" | cut -d' ' -f2)
  [[ -n $von && $von == "$voff" ]] || { why+=" exposure online '$von' vs offline '$voff';"; ok=0; }
  pid=$(lk_pid node-1) || return 1
  caps=$(XT 5 node-1 grep '^Cap' "/proc/$pid/status" | tr -s '\t ' ' ' | tr '\n' ' ')
  [[ $(grep -oE '[0-9a-f]{16}' <<<"$caps" | sort -u) == 0000000000000000 && $(grep -c . <<<"$(grep -oE 'Cap[A-Za-z]+' <<<"$caps")") == 5 ]] \
    || { why+=" livekit caps: $caps;"; ok=0; }
  ports=$(XT 10 node-1 airclass-node ports --instance node-1 --json)
  nftj=$(XT 10 node-1 nft -j list table inet airclass_node_1)
  local tables
  tables=$(XT 10 node-1 nft list tables | tr '\n' ' ')
  verdict=$(python3 - "$ports" "$nftj" <<'EOF'
import json, sys
p = json.loads(sys.argv[1]); n = json.loads(sys.argv[2])["nftables"]
want = {"tcp": {(p["livekit_port"],) * 2, (p["rtc_tcp_port"],) * 2, (p["api_port"],) * 2},
        "udp": {(p["rtc_udp_start"], p["rtc_udp_end"]), (p["mdns_port"],) * 2}}
if p.get("livekit_metrics_port"):  # LiveKit's own Prometheus port, opened with the node's ports
    want["tcp"].add((p["livekit_metrics_port"],) * 2)
got, chains, other = {}, [], []
for o in n:
    if "chain" in o:
        c = o["chain"]; chains.append(f'{c["name"]}:{c.get("hook")}:{c.get("policy")}')
    if "rule" in o:
        ex = o["rule"]["expr"]
        m = [e["match"] for e in ex if "match" in e]
        if len(m) != 1 or not any("accept" in e for e in ex):
            other.append(json.dumps(ex)); continue
        proto = m[0]["left"]["payload"]["protocol"]
        right = m[0]["right"]
        items = right["set"] if isinstance(right, dict) and "set" in right else [right]
        s = got.setdefault(proto, set())
        for it in items:
            if isinstance(it, dict) and "range" in it: s.add(tuple(it["range"]))
            else: s.add((it, it))
ok = got == want and not other and chains == ["input:input:accept"]
fmt = lambda d: " ".join(f"{k} {','.join(str(a) if a == b else f'{a}-{b}' for a, b in sorted(v))}" for k, v in sorted(d.items()))
print(("PASS " if ok else "FAIL ") + f"nft accepts {fmt(got)}" + ("" if ok else f" want {fmt(want)} chains {chains} other {other}"))
EOF
)
  [[ $verdict == PASS* ]] || { why+=" nft;"; ok=0; }
  [[ $tables == "table inet airclass_node_1 " ]] || { why+=" tables in node-1: $tables;"; ok=0; }
  FIG="exposure in node $von = offline $voff; livekit pid $pid CapInh/Prm/Eff/Bnd/Amb all 0; ${verdict#* } (= ports --json)${why:+; FAIL:$why}"
  [[ $ok == 1 ]]
}

# ------------------------------------------------------------------ real media (13-15)
MC=$ROOT/tests/media/media_client.py
LC=$HERE/lab_client.py
app_token_file() { echo "/proc/$(lab_leader main)/root$TOKEN"; }
# mclient CLIENT ROLE HOST ROOM IDENTITY TONE COLOR SECONDS OUT [option...]   one participant on a
# lab host, in the background (pid in MC_PID), joining through main's POST /api/rooms/ROOM/join;
# CLIENT is tests/media/media_client.py or tests/lab/lab_client.py. JSON result in $LOGS/OUT.json.
mclient() {
  local cl=$1 role=$2 host=$3 room=$4 id=$5 tone=$6 color=$7 secs=$8 out=$9; shift 9
  H "$host" timeout -k 5 "$(awk -v s="$secs" 'BEGIN{print int(s + 60)}')" "$LAB_PY" "$cl" \
    --main "$(main_api)" --app-token-file "$(app_token_file)" --room "$room" --identity "$id" \
    --role "$role" --duration "$secs" --tone-hz "$tone" --color "$color" "$@" \
    > "$LOGS/$out.json" 2> "$LOGS/$out.log" &
  MC_PID=$!
}
# snapshot FILE   LiveKit's room_node_map and nodes now (tests/lab/placement.py --save), and the
# LiveKit node ids of the three nodes now
snapshot() {
  ip netns exec "$LAB_NETNS" timeout 30 "$LAB_PY" "$HERE/placement.py" --redis "$(ip_of main):6379" \
    --save "$LOGS/$1" && lk_ids_json > "$LOGS/$1.ids"
}

# 13. Real media across the lab network through main's join: teachers on the teacher host publish a
#     tone and a video, students on the students host receive them; two rooms, on two subs.
S13_NAMED=""
s13() {
  local ok=1 why="" ra rb who
  pin_load "$PIN" "${NODES[@]}"
  wait_load "$PIN" 10 "${NODES[@]}" || { FIG="main never saw the pinned sysload"; return 1; }
  ra=$(fresh_rooms media-a 1 node-1 1 main node-1 node-2); rb=$(fresh_rooms media-b 1 node-2 1 main node-1 node-2)
  local -A pid=()
  mclient "$MC" publish teacher "$ra" teacher-a 440 200,40,40 18 s13-teacher-a; pid[teacher-a]=$MC_PID
  mclient "$MC" publish teacher "$rb" teacher-b 660 40,60,200 18 s13-teacher-b; pid[teacher-b]=$MC_PID
  sleep 2
  for who in stu-a1 stu-a2; do
    mclient "$MC" subscribe students "$ra" "$who" 440 200,40,40 8 "s13-$who" --expect; pid[$who]=$MC_PID
  done
  mclient "$MC" subscribe students "$rb" stu-b1 660 40,60,200 8 s13-stu-b1 --expect; pid[stu-b1]=$MC_PID
  sleep 6   # the rooms are live now: LiveKit's own placement records
  snapshot s13-livekit.json || { why+=" could not read LiveKit's records;"; ok=0; }
  for who in "${!pid[@]}"; do wait "${pid[$who]}" || true; done
  local verdict
  verdict=$(python3 - "$LOGS" "$ra" "$rb" <<'EOF'
import json, os, sys
logs, ra, rb = sys.argv[1:4]
def res(who):
    try:
        lines = [l for l in open(os.path.join(logs, f"s13-{who}.json")) if l.startswith("{")]
        return json.loads(lines[-1])
    except (OSError, ValueError, IndexError):
        return {"error": "no result (see s13-%s.log)" % who}
rooms = {ra: ("teacher-a", ["stu-a1", "stu-a2"]), rb: ("teacher-b", ["stu-b1"])}
ok, figs, named = True, [], {}
for room, (t, studs) in rooms.items():
    tr = res(t)
    named[room] = tr.get("node")
    if "error" in tr:
        ok = False; figs.append(f"{t}: {tr['error'][:200]}")
    for s in studs:
        r = res(s)
        a, v = r.get("audio", {}), r.get("video", {})
        good = r.get("rc", 0) == 0 and not r.get("problems") and "error" not in r
        ok &= good
        ice = ",".join(sorted({pc["remote"] for pc in (r.get("ice") or {}).values() if isinstance(pc, dict) and "remote" in pc})) or "?"
        figs.append(f"{s} ({room} via {r.get('node')}): audio {a.get('frames')} frames rms {a.get('rms')}/{tr.get('sent_rms')} "
                    f"tone {a.get('tone_fraction')} at {a.get('peak_hz')} Hz, video {v.get('frames')} frames {v.get('sizes')} "
                    f"rgb {v.get('mean_rgb')}, media from {ice}"
                    + ("" if good else f" PROBLEMS {r.get('problems')} {r.get('error', '')[:300]}"))
print(json.dumps({"ok": ok, "named": named, "fig": "; ".join(figs)}))
EOF
)
  S13_NAMED=$(jget "$verdict" 'j["named"]')
  [[ $(jget "$verdict" 'j["ok"]') == True || $(jget "$verdict" 'j["ok"]') == true ]] || { why+=" media;"; ok=0; }
  FIG="teacher host ${LAB_IP[teacher]}, students host ${LAB_IP[students]}: $(jget "$verdict" 'j["fig"]')${why:+; FAIL:$why}"
  pin_load "" "${NODES[@]}"
  [[ $ok == 1 ]]
}

# 13p. Placement proof for the media rooms: LiveKit's records (read while the rooms were live)
#      host each room on the node main named its teacher, main named the same node to every
#      student of the room, and every participant's media (ICE remote address) goes to that node.
#      Expected to FAIL until main creates the room on the chosen node and learns a node's own
#      rooms from LiveKit's per-node records (issue 9).
s13p() {
  [[ -s $LOGS/s13-livekit.json && -n $S13_NAMED ]] || { FIG="scenario 13 left no records"; return 1; }
  local rc=0 path
  ip netns exec "$LAB_NETNS" timeout 30 "$LAB_PY" "$HERE/placement.py" --snapshot "$LOGS/s13-livekit.json" \
    --named "$S13_NAMED" --ids "$(cat "$LOGS/s13-livekit.json.ids")" --ips "$(ips_json)" > "$LOGS/s13p-placement.json" || rc=$?
  [[ -s $LOGS/s13p-placement.json ]] || { FIG="placement.py failed (rc $rc)"; return 1; }
  path=$(python3 - "$LOGS" "$S13_NAMED" "$(ips_json)" <<'EOF'
import glob, json, os, sys
logs, named, ips = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
host = {r: d["host_by_id"] for r, d in json.load(open(os.path.join(logs, "s13p-placement.json")))["detail"].items()}
by_ip = {v: k for k, v in ips.items()}
good = total = 0
bad, split = [], []
for f in sorted(glob.glob(os.path.join(logs, "s13-*.json"))):
    if "livekit" in f:
        continue
    lines = [l for l in open(f) if l.startswith("{")]
    if not lines:
        continue
    r = json.loads(lines[-1])
    want = named.get(r.get("room"))  # what main told the room's teacher
    if r.get("node") != want:
        split.append(f"{r.get('identity')} was sent to {r.get('node')}"
                     + (" (where LiveKit put the room)" if r.get("node") == host.get(r.get("room")) else
                        f" (LiveKit hosts the room on {host.get(r.get('room'))})"))
    for side, pc in (r.get("ice") or {}).items():
        if isinstance(pc, dict) and "remote" in pc:
            total += 1
            ip = pc["remote"].split(":")[0]
            if by_ip.get(ip) == want:
                good += 1
            else:
                bad.append(f"{r.get('identity')} {side} -> {ip} ({by_ip.get(ip, '?')}), main named {want}")
ok = total and good == total and not split
print(("OK " if ok else "BAD ") + f"media path: {good}/{total} transports to the node main named" + (f" ({'; '.join(bad[:3])})" if bad else "")
      + ("; every participant of a room was sent to its teacher's node" if not split else
         f"; students sent elsewhere than their teacher: {', '.join(split)} (teachers: {named})"))
EOF
)
  FIG="$(proof_fig s13p-placement.json); ${path#* }"
  local prc=$rc
  [[ $path == OK* ]] || rc=1
  [[ $prc == 0 ]] || FIG+=" -- LiveKit places rooms itself: main's choice is advisory until main creates each room on the node it names (issue 9)"
  [[ $path == *"(LiveKit hosts the room on"* ]] && FIG+=" -- every node's heartbeat lists every live room (LiveKit's ListRooms is cluster-wide with Redis), so main's sticky rule answers by name order (issue 9)"
  return $rc
}

# 14. Redis outage under the real LiveKit: stop redis-server on main -> every node degraded (its
#     unit's STATUS and GET /api/node), LiveKit neither restarted nor replaced; start it again ->
#     every node healthy by itself; the recovery time.
s14() {
  local ok=1 why="" n apis=() r0 r1 t_stop t_start st deg="" rec="" health
  for n in "${NODES[@]}"; do wait_lk_ready "$n" 20 || { FIG="precondition: $n's LiveKit not ready"; return 1; }; apis+=("$(api "$n")"); done
  local -A pid0=() nr0=()
  for n in "${NODES[@]}"; do pid0[$n]=$(lk_pid "$n"); nr0[$n]=$(unit_prop "$n" "$n" NRestarts); done
  t_stop=$(now)
  XT 30 main systemctl stop redis-server || { FIG="systemctl stop redis-server failed"; return 1; }
  r0=$(ctl main until degraded 30 "${apis[@]}") || { why+=" not all degraded in 30 s: $(jget "$r0" 'j["seen"]');"; ok=0; }
  echo "$r0" | save s14-degraded.json
  for n in "${NODES[@]}"; do
    deg+=" $n $(dt "$t_stop" "$(jget "$r0" "j['t'].get('$(api "$n")', 0)")")s"
  done
  sleep 3   # stays degraded, nothing restarts
  st=$(unit_prop node-1 node-1 StatusText)
  local sts=""; for n in "${NODES[@]}"; do sts+="$n: '$(unit_prop "$n" "$n" StatusText)' "; done
  echo "$sts" | save s14-status.txt
  [[ $st == *degraded* ]] || { why+=" node-1 STATUS does not say degraded: '$st';"; ok=0; }
  for n in main node-2; do [[ $(unit_prop "$n" "$n" StatusText) == *degraded* ]] || { why+=" $n STATUS not degraded;"; ok=0; }; done
  health=$(ctl main nodes "$(main_api)" 2>/dev/null) && health=$(jget "$health" '" ".join("%s=%s" % (k, v.get("health")) for k, v in sorted(j["nodes"].items()) if k in ("main", "node-1", "node-2"))')
  t_start=$(now)
  XT 30 main systemctl start redis-server || { FIG="systemctl start redis-server failed"; return 1; }
  r1=$(ctl main until ready 60 "${apis[@]}") || { why+=" not all healthy 60 s after Redis returned: $(jget "$r1" 'j["seen"]');"; ok=0; }
  echo "$r1" | save s14-recovered.json
  local worst=0 v
  for n in "${NODES[@]}"; do
    v=$(dt "$t_start" "$(jget "$r1" "j['t'].get('$(api "$n")', 0)")"); rec+=" $n ${v}s"
    awk -v a="$v" -v b="$worst" 'BEGIN{exit !(a>b)}' && worst=$v
  done
  local same=""
  for n in "${NODES[@]}"; do
    [[ $(lk_pid "$n") == "${pid0[$n]}" ]] || { why+=" $n LiveKit pid ${pid0[$n]} -> $(lk_pid "$n");"; ok=0; }
    [[ $(unit_prop "$n" "$n" NRestarts) == "${nr0[$n]}" ]] || { why+=" $n NRestarts ${nr0[$n]} -> $(unit_prop "$n" "$n" NRestarts);"; ok=0; }
    same+=" $n=${pid0[$n]}"
  done
  local hr; hr=$(jget "$r0" '" ".join(sorted(set(str(s) for a in j["seen"].values() for s in a["restarts"])))')
  FIG="Redis stopped: degraded after$deg (node-1 STATUS '$st'); main's table: $health; LiveKit pids unchanged ($same), NRestarts unchanged, LiveKit restarts seen: $hr; Redis started: healthy after$rec (all ${worst}s)${why:+; FAIL:$why}"
  [[ $ok == 1 ]]
}

# 15. Drain with real participants: node-2 hosts a live room (a teacher publishing, two students
#     receiving); `systemctl stop airclass-node@node-2` -> how long, what the participants see,
#     and nothing left behind (process, nft table, main's table, LiveKit's Redis records).
s15() {
  local ok=1 why="" room nid2 who t_stop t0 left procs nft rec j
  room=$(fresh_rooms drain 1 node-2 1 main node-1 node-2)
  nid2=$(lk_node_id node-2); [[ -n $nid2 ]] || { FIG="no LiveKit node id in node-2's journal"; return 1; }
  # LiveKit hosts the room on node-2 whatever main answers (main itself will do this, issue 9)
  twirp node-2 CreateRoom "{\"name\":\"$room\",\"node_id\":\"$nid2\",\"empty_timeout\":60}" > "$LOGS/s15-create.json" \
    || { FIG="CreateRoom on node-2 failed: $(cat "$LOGS/s15-create.json")"; return 1; }
  local -A pid=()
  rm -f "$LOGS"/s15-*.ready
  mclient "$LC" publish teacher "$room" teacher-d 440 200,40,40 60 s15-teacher-d --stay 90 --ready-file "$LOGS/s15-teacher-d.ready"; pid[teacher-d]=$MC_PID
  sleep 2
  for who in stu-d1 stu-d2; do
    mclient "$LC" subscribe students "$room" "$who" 440 200,40,40 60 "s15-$who" --stay 90 --ready-file "$LOGS/s15-$who.ready"; pid[$who]=$MC_PID
  done
  local i; for ((i = 0; i < 300; i++)); do
    [[ -e $LOGS/s15-teacher-d.ready && -e $LOGS/s15-stu-d1.ready && -e $LOGS/s15-stu-d2.ready ]] && break; sleep 0.1
  done
  [[ $i -lt 300 ]] || { why+=" the room never went live (ready files: $(ls "$LOGS" | grep -c 's15-.*ready'));"; ok=0; }
  twirp node-2 ListParticipants "{\"room\":\"$room\"}" > "$LOGS/s15-participants.json" || true
  local np; np=$(jget "$(cat "$LOGS/s15-participants.json")" '",".join(p["identity"] for p in j["body"].get("participants", []))' 2>/dev/null || echo "?")
  snapshot s15-before.json || true
  local host_before; host_before=$(jget "$(cat "$LOGS/s15-before.json")" "j['room_node_map'].get('$room')")
  [[ $host_before == "$nid2" ]] || { why+=" LiveKit hosts $room on $host_before, not node-2 ($nid2);"; ok=0; }
  local since; since=$(date +%s)
  ctl main wait "$(main_api)" "node-2=left|absent" 40 > "$LOGS/s15-wait.json" &
  local w=$!
  t0=$(now)
  XT 90 node-2 systemctl stop airclass-node@node-2 || { why+=" stop failed;"; ok=0; }
  t_stop=$(dt "$t0" "$(now)")
  wait $w; left=$(cat "$LOGS/s15-wait.json")
  # participants the server disconnected have left by now; LiveKit may also have moved some (a
  # resume through another node's signal connection re-creates the room there): those stay
  # until told to leave, 8 s after the stop returned
  for ((i = 0; i < 80; i++)); do
    local alive=0; for who in "${!pid[@]}"; do lab_alive "${pid[$who]}" && alive=1; done
    [[ $alive == 0 ]] && break; sleep 0.1
  done
  for who in "${!pid[@]}"; do lab_alive "${pid[$who]}" && kill -TERM "${pid[$who]}" 2>/dev/null; done
  for who in "${!pid[@]}"; do wait "${pid[$who]}" || true; done
  # what the participants saw
  local seen
  seen=$(python3 - "$LOGS" "$t0" <<'EOF'
import json, os, sys
logs, t0 = sys.argv[1], float(sys.argv[2])
out, ok = [], True
for who in ("teacher-d", "stu-d1", "stu-d2"):
    try:
        r = json.loads([l for l in open(os.path.join(logs, f"s15-{who}.json")) if l.startswith("{")][-1])
    except (OSError, ValueError, IndexError):
        out.append(f"{who}: no result"); ok = False; continue
    evs = [(t, n, x) for t, n, x in r.get("events", []) if n != "connection_state"]
    ev = ",".join(f"{n}{'(' + x + ')' if x else ''}@{t - t0:+.1f}s" for t, n, x in evs)
    frames = f", {r['audio'].get('frames')} audio/{r['video'].get('frames')} video frames before" if "audio" in r else ""
    # the drain reached the participant: the server disconnected it or its connection was moved
    # (reconnecting), within the drain budget + 10 s
    hit = next(((t, n, x) for t, n, x in evs if n in ("disconnected", "reconnecting") and 0 <= t - t0 <= 20), None)
    moved = any(n == "reconnected" for _, n, _ in evs)
    ok &= hit is not None and "error" not in r
    what = ("no sign of the drain" if hit is None else
            f"{hit[1]}{'(' + hit[2] + ')' if hit[2] else ''} {hit[0] - t0:.1f}s after stop"
            + (" then reconnected (LiveKit moved it)" if moved else ""))
    out.append(f"{who} (via {r.get('node')}): {what}{frames}; events {ev or 'none'}")
print(("OK " if ok else "BAD ") + "; ".join(out))
EOF
)
  [[ $seen == OK* ]] || { why+=" a participant saw nothing of the drain;"; ok=0; }
  # nothing left behind
  procs=$(XT 5 node-2 pgrep -a livekit-server || true)
  [[ -z $procs ]] || { why+=" livekit-server still running: $procs;"; ok=0; }
  if XT 5 node-2 nft list table inet airclass_node_2 >/dev/null 2>&1; then nft=present; why+=" nft table left;"; ok=0; else nft=gone; fi
  [[ $(jget "$left" 'j["ok"]') == true ]] || { why+=" node-2 still in main's table;"; ok=0; }
  snapshot s15-after.json || true
  rec=$(python3 - "$LOGS/s15-after.json" "$room" "$nid2" <<'EOF'
import json, sys
j, room, nid = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
left = []
if j["room_node_map"].get(room) == nid: left.append(f"room_node_map[{room}] = node-2's {nid}")
if nid in j["nodes"]: left.append(f"nodes[{nid}]")
now = j["room_node_map"].get(room)
again = f" ({room} re-created on {j['nodes'].get(now, now)} by the moved participants)" if now and now != nid else ""
print(("OK none of node-2's" if not left else "BAD " + ", ".join(left)) + again)
EOF
)
  [[ $rec == OK* ]] || { why+=" Redis records left: ${rec#* };"; ok=0; }
  local jr; jr=$(XT 10 node-2 journalctl --no-pager -o cat -u airclass-node@node-2 --since "@$since" \
    | grep -E 'SIGTERM sent|second SIGTERM|SIGKILL|waiting for participants|exit requested|LiveKit exited|stopped' | sed -E 's/^\[LiveKit\] [0-9TZ:.-]+\s+INFO\s+livekit\s+//' | cut -c1-110 | paste -sd'|' -)
  XT 10 node-2 journalctl --no-pager -o short-precise -u airclass-node@node-2 --since "@$since" | save s15-journal.txt
  # back for what follows
  local t1; t1=$(now)
  XT 60 node-2 systemctl start airclass-node@node-2 || { why+=" restart failed;"; ok=0; }
  j=$(ctl main wait "$(main_api)" "node-2=alive" 30) || { why+=" did not rejoin;"; ok=0; }
  FIG="room $room hosted by node-2's LiveKit with participants [$np]; systemctl stop took ${t_stop}s (left main's table $(dt "$t0" "$(jget "$left" 'j["t"]')")s); participants: ${seen#* }; left behind: livekit-server ${procs:-none}, nft table $nft, Redis ${rec#* }; journal: $jr; rejoined $(dt "$t1" "$(jget "$j" 'j["t"]')")s after start${why:+; FAIL:$why}"
  [[ $ok == 1 ]]
}

# 16. Log flood under the real journald (the unit's LogRateLimit* as shipped): 60000 refused
#     requests at main (wrong application token, unsigned heartbeats with an 8 KiB header,
#     unknown paths) while node-2 leaves and rejoins and main's LiveKit is killed and replaced:
#     main's journal keeps node-2's state changes and LiveKit's own lines, journald suppresses
#     nothing of the unit, and the refusals add a few short summary lines. (A line per refusal
#     would pass the unit's LogRateLimitBurst=50000 per 30 s, and journald would drop the rest.)
s16() {
  local ok=1 why="" since f fl lines bytes sup st lk old oldid newid refused per
  since=$(date +%s); sleep 1
  ctl main flood "$(main_api)" 60000 > "$LOGS/s16-flood.json" &
  f=$!
  sleep 1
  XT 60 node-2 systemctl stop airclass-node@node-2 || { why+=" stop of node-2 failed;"; ok=0; }
  old=$(lk_pid main); oldid=$(lk_node_id main)
  XT 5 main kill -9 "$old" || { why+=" could not kill main's LiveKit ($old);"; ok=0; }
  XT 60 node-2 systemctl start airclass-node@node-2 || { why+=" start of node-2 failed;"; ok=0; }
  ctl main wait "$(main_api)" "node-2=alive" 30 > "$LOGS/s16-back.json" || { why+=" node-2 did not rejoin;"; ok=0; }
  local i; for ((i = 0; i < 400; i++)); do [[ $(lk_pid main) != "$old" ]] && break; sleep 0.1; done
  wait_lk_ready main 40 || { why+=" main's LiveKit not ready again;"; ok=0; }
  wait $f || { why+=" flood: $(cat "$LOGS/s16-flood.json");"; ok=0; }
  fl=$(cat "$LOGS/s16-flood.json")
  sleep 11   # one more summary window, so the flood's last summary line is in
  XT 10 main journalctl --no-pager -o short-precise -u airclass-node@main --since "@$since" | save s16-journal.txt
  lines=$(wc -l < "$LOGS/s16-journal.txt"); bytes=$(wc -c < "$LOGS/s16-journal.txt")
  # node-2's leave, then its return, in that order
  st=$(XT 10 main journalctl --no-pager -o cat -u airclass-node@main --since "@$since" NODE=node-2 \
    | sed -n '/node left the cluster/,$p' | grep -cE 'node left the cluster|node registered|node is back' || true)
  # the replacement LiveKit's own ready line (a new node id)
  newid=$(lk_node_id main)
  lk=$(XT 10 main journalctl --no-pager -o cat -u airclass-node@main --since "@$since" LIVEKIT=1 | grep 'starting LiveKit server' | grep -c "\"nodeID\": \"$newid\"" || true)
  [[ -n $newid && $newid != "$oldid" ]] || { why+=" no ready line of a new LiveKit (id $oldid -> ${newid:-none});"; ok=0; }
  sup=$(XT 10 main journalctl --no-pager -o cat --since "@$since" | grep -c 'Suppressed.*airclass-node@main' || true)
  refused=$(jget "$fl" 'sum(v for k, v in j["counts"].items() if k.startswith("4"))')
  per=$(awk -v b="$bytes" -v n="$refused" 'BEGIN{printf "%.2f", (n > 0 ? b / n : b)}')
  [[ $st -ge 2 ]] || { why+=" node-2's state changes missing from main's journal ($st lines);"; ok=0; }
  [[ $lk -ge 1 ]] || { why+=" no 'starting LiveKit server' line from main's new LiveKit;"; ok=0; }
  [[ $sup == 0 ]] || { why+=" journald suppressed messages of the unit ($sup lines say so);"; ok=0; }
  [[ $refused -ge 59000 ]] || { why+=" only $refused of 60000 requests refused;"; ok=0; }
  le "$per" 5 || { why+=" $per bytes of journal per refused request;"; ok=0; }
  FIG="$refused refused requests in $(jget "$fl" 'j["secs"]')s ($(jget "$fl" '" ".join(f"{k}:{v}" for k, v in sorted(j["counts"].items()))')) while node-2 left and rejoined and main's LiveKit was killed: main's journal $lines lines / $bytes bytes in all ($per bytes per refused request), node-2 left+rejoined lines $st, the new LiveKit's ready line ($oldid -> $newid) $lk, journald 'Suppressed' lines $sup${why:+; FAIL:$why}"
  [[ $ok == 1 ]]
}

SCENARIOS=(
  "1|cluster forms|s1"
  "2|placement|s2"
  "2p|placement proof (LiveKit)|s2p"
  "3|logs|s3"
  "4|child crash|s4"
  "5|hung child|s5"
  "6|hung daemon (watchdog)|s6"
  "7|graceful stop|s7"
  "8|node loss|s8"
  "9|main loss|s9"
  "10|overload|s10"
  "11|bad actors|s11"
  "12|security|s12"
  "13|real media via main|s13"
  "13p|placement proof (media)|s13p"
  "14|Redis outage|s14"
  "15|drain with participants|s15"
  "16|log flood (journald)|s16"
)
run_scenarios() {
  local s id title fn t rc
  for s in "${SCENARIOS[@]}"; do
    IFS='|' read -r id title fn <<<"$s"
    if [[ -n ${LAB_ONLY:-} && " $LAB_ONLY " != *" ${id%p} "* ]]; then continue; fi
    lab_log "== scenario $id: $title"
    FIG=""; t=$EPOCHREALTIME
    if "$fn"; then rc=PASS; else rc=FAIL; fi
    lab_log "$rc scenario $id ($(lab_el "$t")s): $FIG"
    row "$id" "$title" "$rc" "$FIG"
  done
}
