#!/bin/bash
# scripts/local-cluster.sh - the quick start's main job: a local three-node AirClass cluster on
# loopback (main, node-1, node-2 as three airclass-node processes, one redis-server), printed as
# a table with one example join. Ctrl-C stops everything cleanly.
#
#   scripts/local-cluster.sh           run until Ctrl-C
#   scripts/local-cluster.sh --once    start, print, stop (used by the test command)
#
# LiveKit: /usr/local/bin/livekit-server when installed (or LIVEKIT_BINARY=...); otherwise the
# test stand-in (target/debug/livekit-standin), announced loudly: it is a test double, not LiveKit.
# Installs redis-server with apt-get when it is missing (needs root then).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ONCE=0
[[ ${1:-} == --once ]] && ONCE=1

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

LK=${LIVEKIT_BINARY:-/usr/local/bin/livekit-server}
if [[ -x $LK ]]; then
  say "LiveKit: $LK ($("$LK" --version 2>/dev/null | head -1))"
else
  LK=$PWD/target/debug/livekit-standin
  printf '\n\033[1;33m%s\033[0m\n\n' "!!! livekit-server is not installed: using the TEST STAND-IN ($LK). It mimics LiveKit's config, health and RoomService for testing; it carries no media. Install livekit-server as /usr/local/bin/livekit-server for a real cluster. !!!"
fi

for p in 6390 6789 6790 6791 7880 7881 7890 7891 7900 7901 8000 8001 8002; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use (another cluster running?)"; fi
done

W=$(mktemp -d /tmp/airclass-local.XXXXXX)
PIDS=()
REDIS_PID=""
cleanup() {
  trap - EXIT INT TERM
  say "stopping the cluster"
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ -n $REDIS_PID ]] && { kill -TERM "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; }
  say "stopped; logs were in $W (removed)"
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no >"$W/redis.log" 2>&1 &
REDIS_PID=$!
"$BIN" secrets init --dir "$W/secrets" >/dev/null
mkdir -p "$W/nodes"
cat >"$W/airclass.toml" <<EOF
# local three-node cluster on loopback (written by scripts/local-cluster.sh)
[node]
advertise_address = "127.0.0.1"
[livekit]
binary = "$LK"
api_key_file = "$W/secrets/livekit-api-key"
api_secret_file = "$W/secrets/livekit-api-secret"
node_ip = "127.0.0.1"
[redis]
url = "redis://127.0.0.1:6390"
[cluster]
id = "local-demo"
secret_file = "$W/secrets/cluster-secret"
heartbeat_secs = 2
mdns = false
[api]
bind = "127.0.0.1"
app_token_sha256_file = "$W/secrets/app-token.sha256"
EOF
printf '[node]\nmode = "main"\n' >"$W/nodes/main.toml"
for n in node-1 node-2; do
  printf '[node]\nmode = "sub"\n[cluster]\nmain_url = "http://127.0.0.1:8000"\n' >"$W/nodes/$n.toml"
done
for n in main node-1 node-2; do
  RUNTIME_DIRECTORY=$W/run/$n "$BIN" --config "$W/airclass.toml" --nodes-dir "$W/nodes" run --instance "$n" \
    >"$W/$n.log" 2>&1 &
  PIDS+=($!)
  say "started $n (pid $!, log $W/$n.log)"
done

say "waiting until main lists three live nodes"
t0=$EPOCHREALTIME
ok=0
for _ in $(seq 300); do
  live=$(curl -sf http://127.0.0.1:8000/api/cluster/nodes 2>/dev/null | grep -o '"state":"alive"' | wc -l || true)
  if [[ ${live:-0} -ge 3 ]]; then ok=1; break; fi
  for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || { tail -20 "$W"/*.log; die "a node exited"; }; done
  sleep 0.1
done
[[ $ok == 1 ]] || { tail -20 "$W"/*.log; die "the cluster did not form within 30 s"; }
say "cluster formed in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}') s"

echo
curl -sf http://127.0.0.1:8000/api/cluster/nodes | python3 -c '
import json, sys
nodes = json.load(sys.stdin)
row = "{:8} {:5} {:7} {:22} {:12} {:>7} {:>5}"
print(row.format("node", "mode", "state", "livekit", "rtc udp", "sysload", "rooms"))
for n in nodes:
    s, i = n.get("stats") or {}, n.get("info") or {}
    r = i.get("rtc_range") or {}
    rtc = "{}-{}".format(r.get("start", "?"), r.get("end", "?"))
    print(row.format(n.get("name", "?"), i.get("mode", "?"), n.get("state", "?"), i.get("livekit_url", "?"), rtc, "{:.2f}".format(s.get("sysload", 0)), s.get("rooms", 0)))
' || curl -s http://127.0.0.1:8000/api/cluster/nodes
echo
TOKEN=$(cat "$W/secrets/app-token")
say "example join: POST /api/rooms/algebra-101/join (role student)"
echo "  curl -H 'Authorization: Bearer <app token>' -d '{\"identity\":\"kim\",\"name\":\"Kim\",\"role\":\"student\"}' http://127.0.0.1:8000/api/rooms/algebra-101/join"
curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"identity":"kim","name":"Kim","role":"student"}' http://127.0.0.1:8000/api/rooms/algebra-101/join \
  | python3 -c 'import json,sys; j=json.load(sys.stdin); j["token"]=j["token"][:24]+"…"; print(json.dumps(j, indent=2))' \
  || die "the example join failed"
echo
say "airclass-node status --url http://127.0.0.1:8001   (asks node-1, then its main)"
rc=0; "$BIN" status --url http://127.0.0.1:8001 || rc=$?
[[ $rc -le 1 ]] || die "status says the cluster is down (exit $rc)"
echo
say "status page: http://127.0.0.1:8000/status   metrics: http://127.0.0.1:8000/metrics"
curl -sf http://127.0.0.1:8000/metrics | grep -E '^airclass_cluster_nodes' || die "main serves no cluster metrics"
echo
if [[ $ONCE == 1 ]]; then
  say "--once: done"
  exit 0
fi
say "running; Ctrl-C stops the cluster. Try: curl http://127.0.0.1:8000/api/cluster/status"
wait "${PIDS[0]}" || true
