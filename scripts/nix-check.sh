#!/usr/bin/env bash
# Offline Nix checks (no network, no nixpkgs needed):
#  1. `nix-instantiate --parse` on every tracked .nix file;
#  2. nix/ports.nix (pure Nix port plan) against `airclass-node ports --instance NAME --json`
#     for main and node-1 … node-15, compared as JSON objects; names without a derived plan
#     (node-0, node-16, node-01, edge) must yield null in Nix and an error from the daemon;
#     and in the plan both agree on, no two ports of any two of those 16 nodes are the same
#     (TCP: LiveKit, ICE/TCP, control API, LiveKit's metrics; every port of each RTC UDP range).
# Env: AIRCLASS_NODE_BIN (default target/debug/airclass-node), NIX_CHECK_NO_INSTALL=1 to never
# run apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "nix-check: FAIL: $*" >&2; exit 1; }

if ! command -v nix-instantiate >/dev/null 2>&1; then
    if [ "${NIX_CHECK_NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
        echo "nix-check: nix-instantiate missing, installing nix-bin" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q nix-bin >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q nix-bin >/dev/null; } \
            || fail "apt-get install nix-bin failed"
    fi
    command -v nix-instantiate >/dev/null 2>&1 || fail "nix-instantiate not found (apt-get install nix-bin)"
fi
command -v python3 >/dev/null 2>&1 || fail "python3 not found"

# Nix wants a writable state/cache dir even for --parse/--eval; keep it private and temporary.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export NIX_STATE_DIR="$work/state" NIX_LOG_DIR="$work/log" XDG_CACHE_HOME="$work/cache"
export NIX_CONFIG="sandbox = false"
export NIX_PATH=""

# 1. parse every tracked .nix file (untracked ones too when not in a git checkout)
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.nix')
else
    mapfile -t files < <(find . -name '*.nix' -not -path './target/*' | sort)
fi
[ "${#files[@]}" -gt 0 ] || fail "no .nix files found"
parsed=0
for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    nix-instantiate --parse "$f" >/dev/null 2>"$work/parse.err" \
        || { cat "$work/parse.err" >&2; fail "$f does not parse"; }
    parsed=$((parsed + 1))
done

# 2. port plan: Nix vs the daemon
bin="${AIRCLASS_NODE_BIN:-target/debug/airclass-node}"
[ -x "$bin" ] || fail "$bin not found or not executable (build it: cargo build --bin airclass-node, or set AIRCLASS_NODE_BIN)"

names=(main)
for n in $(seq 1 15); do names+=("node-$n"); done
bad_names=(node-0 node-16 node-01 edge)

# The daemon reads an explicit, empty configuration so that nothing on this machine
# (/etc/airclass) can change its answer.
: >"$work/airclass.toml"
mkdir -p "$work/nodes"

nix_list=$(printf '"%s" ' "${names[@]}")
nix-instantiate --eval --strict --json \
    -E "builtins.fromJSON ((import ./nix/ports.nix).json [ $nix_list ])" >"$work/nix.json" \
    2>"$work/nix.err" || { cat "$work/nix.err" >&2; fail "evaluating nix/ports.nix failed"; }
bad_list=$(printf '"%s" ' "${bad_names[@]}")
nix-instantiate --eval --strict --json \
    -E "map (import ./nix/ports.nix).derive [ $bad_list ]" >"$work/nix-bad.json" \
    2>"$work/nix.err" || { cat "$work/nix.err" >&2; fail "evaluating nix/ports.nix failed"; }

: >"$work/daemon.jsonl"
for name in "${names[@]}"; do
    if ! env -u AIRCLASS_CONFIG -u AIRCLASS_NODES_DIR -u LIVEKIT_PORT -u LIVEKIT_RTC_PORT_START \
        -u LIVEKIT_RTC_PORT_END -u NODE_NAME -u MODE \
        "$bin" --config "$work/airclass.toml" --nodes-dir "$work/nodes" \
        ports --instance "$name" --json >"$work/one.json" 2>"$work/one.err"; then
        cat "$work/one.err" >&2
        fail "'$bin ports --instance $name --json' failed"
    fi
    tr -d '\n' <"$work/one.json" >>"$work/daemon.jsonl"
    echo >>"$work/daemon.jsonl"
done
rejected=0
for name in "${bad_names[@]}"; do
    if env -u AIRCLASS_CONFIG -u AIRCLASS_NODES_DIR -u LIVEKIT_PORT -u LIVEKIT_RTC_PORT_START \
        -u LIVEKIT_RTC_PORT_END -u NODE_NAME -u MODE \
        "$bin" --config "$work/airclass.toml" --nodes-dir "$work/nodes" \
        ports --instance "$name" --json >"$work/one.json" 2>/dev/null; then
        fail "daemon derived ports for '$name' ($(cat "$work/one.json")), nix/ports.nix says it has no plan"
    fi
    rejected=$((rejected + 1))
done

python3 - "$work/nix.json" "$work/daemon.jsonl" "$work/nix-bad.json" <<'PY'
import json, sys
nix = json.load(open(sys.argv[1]))
daemon = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
bad = json.load(open(sys.argv[3]))
errors = []
if any(x is not None for x in bad):
    errors.append(f"nix/ports.nix derived a plan for a name without one: {bad}")
if len(nix) != len(daemon):
    errors.append(f"{len(nix)} plans from Nix, {len(daemon)} from the daemon")
for n, d in zip(nix, daemon):
    if n != d:
        keys = sorted(set(n) | set(d))
        diff = ", ".join(f"{k}: nix={n.get(k)!r} daemon={d.get(k)!r}" for k in keys if n.get(k) != d.get(k))
        errors.append(f"{n.get('instance')}: {diff}")
owner = {}
for plan in nix:
    name = plan.get("instance")
    uses = [(k, plan.get(k)) for k in ("livekit_port", "rtc_tcp_port", "api_port", "livekit_metrics_port")]
    uses += [("rtc_udp", p) for p in range(plan.get("rtc_udp_start", 0), plan.get("rtc_udp_end", -1) + 1)]
    for what, port in uses:
        if port in owner:
            errors.append(f"port {port} is both {owner[port]} and {name}.{what}")
        owner[port] = f"{name}.{what}"
if errors:
    print("nix-check: port plan MISMATCH between nix/ports.nix and the daemon, or ports used twice:", file=sys.stderr)
    for e in errors:
        print("  " + e, file=sys.stderr)
    sys.exit(1)
PY

echo "nix-check: ok: parsed $parsed .nix files; port plan identical for ${#names[@]} instances (main, node-1..node-15), no port used twice; ${rejected} underivable names rejected by both"
