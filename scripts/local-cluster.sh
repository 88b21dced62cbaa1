#!/bin/bash
# scripts/local-cluster.sh - the quick start's main job: a local three-node AirClass cluster
# (main, node-1, node-2 as three airclass-node processes, one redis-server), printed as a table
# with one example join, and how to join a room with real media. Ctrl-C stops everything.
#
#   scripts/local-cluster.sh           run until Ctrl-C
#   scripts/local-cluster.sh --once    start, print, prove media once (real server), stop
#                                      (used by the test command)
#
# LiveKit, first found: $LIVEKIT_BINARY; /usr/local/bin/livekit-server; the pinned build of
# scripts/livekit.sh (built with Go when Go is present, cached). Otherwise the TEST STAND-IN
# (target/debug/livekit-standin), announced loudly: it is a test double and carries no media
# (LIVEKIT_BINARY=target/debug/livekit-standin picks it on purpose).
#
# Where the cluster lives. WebRTC needs a non-loopback address (ICE drops loopback candidates,
# CONTRACT.md §16), so with the real server the three nodes run inside a private network
# namespace `airclass-local` joined to this machine by one veth pair: the host side
# `airclass-local0` is 10.213.0.1/24, the namespace side 10.213.0.10 (AIRCLASS_LOCAL_SUBNET
# changes 10.213.0). A browser or the Python SDK on this machine reaches ws://10.213.0.10:7880 and
# its media through that veth; the namespace has no default route, so the cluster can send
# nothing past this machine. Both disappear when the script stops. (A dummy interface would put
# the cluster in the host's own namespace, where LiveKit would also offer the machine's real
# addresses as candidates.) With the stand-in the cluster stays on 127.0.0.1 (no media anyway).
# Needs root for the namespace, and for apt-get when redis-server is missing.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ONCE=0
[[ ${1:-} == --once ]] && ONCE=1
NS=airclass-local
VETH=airclass-local0
SUBNET=${AIRCLASS_LOCAL_SUBNET:-10.213.0}

say() { printf '\033[1m[local-cluster]\033[0m %s\n' "$*"; }
die() { say "ERROR: $*"; exit 1; }

if ! command -v redis-server >/dev/null; then
  say "redis-server missing: apt-get install -y redis-server"
  [[ $EUID == 0 ]] || die "run as root or install redis-server first"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null
fi
command -v curl >/dev/null || die "curl is needed"
command -v cargo >/dev/null || die "cargo (Rust) is needed: https://rustup.rs"

say "building airclass-node (and the LiveKit stand-in)"
cargo build -q --locked --bin airclass-node --bin livekit-standin
BIN=$PWD/target/debug/airclass-node

find_livekit() {  # prints the real server's path, or nothing
  local lk=${LIVEKIT_BINARY:-}
  if [[ -n $lk ]]; then [[ -x $lk ]] || die "LIVEKIT_BINARY=$lk is not executable"; echo "$lk"; return; fi
  [[ -x /usr/local/bin/livekit-server ]] && { echo /usr/local/bin/livekit-server; return; }
  lk=$(scripts/livekit.sh --path)
  if [[ -x $lk ]] || command -v go >/dev/null; then
    scripts/livekit.sh || die "scripts/livekit.sh failed (see above)"
  fi
}
LK=$(find_livekit)
REAL=0
[[ $LK == *livekit-standin ]] && LK=""   # LIVEKIT_BINARY=.../livekit-standin: the stand-in on purpose
if [[ -n $LK ]]; then
  REAL=1
  say "LiveKit: $LK ($("$LK" --version 2>/dev/null | head -1))"
  [[ $EUID == 0 ]] || die "real media needs a private network namespace: run as root (or LIVEKIT_BINARY=$PWD/target/debug/livekit-standin for the stand-in on loopback)"
  command -v ip >/dev/null || die "iproute2 is needed: apt-get install -y iproute2"
  ADDR=$SUBNET.10
  RUN=(ip netns exec "$NS")
else
  LK=$PWD/target/debug/livekit-standin
  printf '\n\033[1;33m%s\033[0m\n\n' "!!! No livekit-server (no Go to build it, no binary): using the TEST STAND-IN ($LK). It mimics LiveKit's config, health and RoomService for testing; it carries NO MEDIA. Install Go (apt-get install golang-go) and rerun, or put livekit-server at /usr/local/bin/livekit-server, for a real cluster. !!!"
  ADDR=127.0.0.1
  RUN=()
fi
API=http://$ADDR:8000

W=$(mktemp -d /tmp/airclass-local.XXXXXX)
PIDS=()
REDIS_PID=""
NET_UP=0
cleanup() {
  trap - EXIT INT TERM
  say "stopping the cluster"
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ -n $REDIS_PID ]] && { kill -TERM "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; }
  if [[ $NET_UP == 1 ]]; then
    ip netns del "$NS" 2>/dev/null || true   # takes the veth pair with it
    say "removed network namespace $NS and $VETH"
  fi
  say "stopped; logs were in $W (removed)"
  rm -rf "$W"
}

net_up() {  # the private namespace and its veth to this machine
  [[ -e /run/netns/$NS ]] && die "network namespace $NS exists (another local cluster running? else: ip netns del $NS)"
  ip -4 addr show | grep -q "inet $SUBNET\." && die "$SUBNET.0/24 is in use on this machine: set AIRCLASS_LOCAL_SUBNET (e.g. 10.214.0)"
  [[ -z $(ip -4 route show "$SUBNET.0/24") ]] || die "a route to $SUBNET.0/24 exists: set AIRCLASS_LOCAL_SUBNET"
  NET_UP=1
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  ip link add "$VETH" type veth peer name eth0 netns "$NS"
  ip addr add "$SUBNET.1/24" dev "$VETH"
  ip link set "$VETH" up
  ip -n "$NS" addr add "$ADDR/24" dev eth0
  ip -n "$NS" link set eth0 up
  say "network namespace $NS: cluster address $ADDR; this machine reaches it as $SUBNET.1 via $VETH (no route out)"
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [[ $REAL == 1 ]]; then
  net_up
else
  for p in 6390 6789 6790 6791 7880 7881 7890 7891 7900 7901 8000 8001 8002; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use (another cluster running?)"; fi
  done
fi

"${RUN[@]}" redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no >"$W/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do  # a clustered daemon exits 1 when Redis is unreachable at its start
  [[ $("${RUN[@]}" redis-cli -p 6390 ping 2>/dev/null) == PONG ]] && break
  kill -0 "$REDIS_PID" 2>/dev/null || { cat "$W/redis.log"; die "redis-server exited"; }
  sleep 0.1
done
"$BIN" secrets init --dir "$W/secrets" >/dev/null
mkdir -p "$W/nodes"
cat >"$W/airclass.toml" <<EOF
# local three-node cluster on $ADDR (written by scripts/local-cluster.sh)
[node]
advertise_address = "$ADDR"
[livekit]
binary = "$LK"
api_key_file = "$W/secrets/livekit-api-key"
api_secret_file = "$W/secrets/livekit-api-secret"
node_ip = "$ADDR"
drain_timeout_secs = 3
[redis]
url = "redis://127.0.0.1:6390"
[cluster]
id = "local-demo"
secret_file = "$W/secrets/cluster-secret"
heartbeat_secs = 2
mdns = false
[api]
bind = "$ADDR"
app_token_sha256_file = "$W/secrets/app-token.sha256"
EOF
printf '[node]\nmode = "main"\n' >"$W/nodes/main.toml"
for n in node-1 node-2; do
  printf '[node]\nmode = "sub"\n[cluster]\nmain_url = "%s"\n' "$API" >"$W/nodes/$n.toml"
done
for n in main node-1 node-2; do
  RUNTIME_DIRECTORY=$W/run/$n "${RUN[@]}" "$BIN" --config "$W/airclass.toml" --nodes-dir "$W/nodes" \
    run --instance "$n" >"$W/$n.log" 2>&1 &
  PIDS+=($!)
  say "started $n (pid $!, log $W/$n.log)"
done

say "waiting until main lists three live nodes"
t0=$EPOCHREALTIME
ok=0
for _ in $(seq 300); do
  live=$(curl -sf "$API/api/cluster/nodes" 2>/dev/null | grep -o '"state":"alive"' | wc -l || true)
  if [[ ${live:-0} -ge 3 ]]; then ok=1; break; fi
  for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || { tail -20 "$W"/*.log; die "a node exited"; }; done
  sleep 0.1
done
[[ $ok == 1 ]] || { tail -20 "$W"/*.log; die "the cluster did not form within 30 s"; }
say "cluster formed in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}') s"

echo
curl -sf "$API/api/cluster/nodes" | python3 -c '
import json, sys
nodes = json.load(sys.stdin)
row = "{:8} {:5} {:7} {:22} {:12} {:>7} {:>5}"
print(row.format("node", "mode", "state", "livekit", "rtc udp", "sysload", "rooms"))
for n in nodes:
    s, i = n.get("stats") or {}, n.get("info") or {}
    r = i.get("rtc_range") or {}
    rtc = "{}-{}".format(r.get("start", "?"), r.get("end", "?"))
    print(row.format(n.get("name", "?"), i.get("mode", "?"), n.get("state", "?"), i.get("livekit_url", "?"), rtc, "{:.2f}".format(s.get("sysload", 0)), s.get("rooms", 0)))
' || curl -s "$API/api/cluster/nodes"
echo
TOKEN_FILE=$W/secrets/app-token
say "example join: POST /api/rooms/algebra-101/join (role student)"
echo "  curl -H \"Authorization: Bearer \$(cat $TOKEN_FILE)\" -d '{\"identity\":\"kim\",\"name\":\"Kim\",\"role\":\"student\"}' $API/api/rooms/algebra-101/join"
curl -sf -H "Authorization: Bearer $(cat "$TOKEN_FILE")" -H 'Content-Type: application/json' \
  -d '{"identity":"kim","name":"Kim","role":"student"}' "$API/api/rooms/algebra-101/join" \
  | python3 -c 'import json,sys; j=json.load(sys.stdin); j["token"]=j["token"][:24]+"…"; print(json.dumps(j, indent=2))' \
  || die "the example join failed"
echo
say "airclass-node status --url http://$ADDR:8001   (asks node-1, then its main)"
rc=0; "$BIN" status --url "http://$ADDR:8001" || rc=$?
[[ $rc -le 1 ]] || die "status says the cluster is down (exit $rc)"
echo
say "status page: $API/status   metrics: $API/metrics"
curl -sf "$API/metrics" | grep -E '^airclass_cluster_nodes' || die "main serves no cluster metrics"
echo

if [[ $REAL == 1 ]]; then
  PY=$(tests/media/venv.sh) || die "tests/media/venv.sh could not make the SDK's venv (see above)"
  CLIENT="ip netns exec $NS $PY $PWD/tests/media/media_client.py --main $API --app-token-file $TOKEN_FILE --room algebra-101"
  say "join algebra-101 with real media (LiveKit's Python SDK; run each in its own terminal):"
  echo "  teacher (a 440 Hz tone + a red 320x240 video):"
  echo "    $CLIENT --identity ada --role publish --duration 600"
  echo "  student (prints frames received, tone RMS and frequency, video size):"
  echo "    $CLIENT --identity kim --role subscribe --duration 20 --expect"
  echo "  Any LiveKit client works too: ask main for a token as in the curl above and connect to its"
  echo "  livekit_url (ws://$ADDR:PORT, reachable from this machine via $VETH). A browser page"
  echo "  needs the livekit-client JavaScript SDK; LiveKit's hosted Meet needs the internet."
  echo
fi

if [[ $ONCE == 1 ]]; then
  if [[ $REAL == 1 ]]; then
    say "--once: proving media once (one teacher publishes 8 s, one student receives 4 s)"
    $CLIENT --identity once-teacher --role publish --duration 8 >"$W/pub.json" 2>"$W/pub.err" &
    PUB=$!
    sleep 1
    rc=0
    $CLIENT --identity once-student --role subscribe --duration 4 --expect >"$W/sub.json" 2>"$W/sub.err" || rc=$?
    wait "$PUB" || true
    python3 - "$W/sub.json" "$rc" <<'EOF' || { tail -n 15 "$W/sub.err" "$W/pub.err" "$W/main.log"; die "--once: the student did not receive the teacher's media"; }
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
a, v = r.get("audio", {}), r.get("video", {})
print(f"FIGURE quickstart media: node {r.get('node')}: student received {a.get('frames')} audio frames "
      f"(RMS {a.get('rms')}, {a.get('peak_hz')} Hz, tone share {a.get('tone_fraction')}) and "
      f"{v.get('frames')} video frames {v.get('sizes')} via {r.get('ice')}")
if sys.argv[2] != "0":
    print("problems:", r.get("problems"), r.get("error"))
    sys.exit(1)
EOF
  fi
  say "--once: done"
  exit 0
fi
say "running; Ctrl-C stops the cluster. Try: curl $API/api/cluster/status"
wait "${PIDS[0]}" || true
