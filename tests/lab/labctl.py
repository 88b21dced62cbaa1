#!/usr/bin/env python3
"""tests/lab/labctl.py - in-node client of the three-node lab (tests/lab/lab.sh).

Copied into every lab node and run there with the node's python3 (stdlib only). It talks HTTP
to the airclass-node control APIs and to LiveKit's RoomService over the lab bridge, signs cluster
requests exactly as docs/protocol.md section 2 says (to play the bad actors of scenario 11), and
polls for state changes with 0.1 s resolution. Every command prints one JSON object on stdout
(times are absolute unix seconds: the host shares the kernel clock, so lab.sh subtracts its own
fault-injection timestamp) and exits 0 when its condition held, 1 when not, 2 on usage errors.

  labctl.py nodes MAIN                         main's /api/cluster/nodes, compact
  labctl.py wait MAIN SPEC TIMEOUT [--hold S]  poll until SPEC holds (SPEC: "main=alive,node-2=left|absent")
  labctl.py watch-lk API OLDPID TIMEOUT [--main MAIN --name N]
                                               wait for a LiveKit restart on a node; also record
                                               the worst state main showed for the node meanwhile
  labctl.py join MAIN TOKENFILE ROOM...        join every room, print room -> node/url/token check
  labctl.py send MAIN PATH BODY SECRETFILE [--ts T --nonce N --node NAME]
                                               one signed cluster request; prints status and body
  labctl.py replay MAIN SECRETFILE NAME        register a fake node, capture one heartbeat, send it
                                               twice, show that the replay changed nothing
  labctl.py sample API SECONDS                 LiveKit state/pid of a node over time (all ready?)
  labctl.py place ROOM NODE...                 the rendezvous winner (protocol section 6)
  labctl.py until STATE TIMEOUT API...         poll every node's /api/node until each LiveKit state is
                                               STATE ("ready", "degraded"): the first time per node,
                                               every state, pid and restart count seen meanwhile
  labctl.py flood MAIN N                       N refused requests over keep-alive connections (a wrong
                                               application token, unsigned heartbeats with an 8 KiB
                                               header, unknown paths): answers counted by status
  labctl.py twirp LKURL METHOD BODY            one RoomService call (Twirp JSON) to a LiveKit, signed
                                               with the node's API key/secret (/etc/airclass/secrets):
                                               e.g. CreateRoom '{"name":"r","node_id":"ND_x"}'
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request


def http(method, url, body=None, headers=None, timeout=3.0):
    """(status, text); status 0 and the error text when the connection failed."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except Exception as e:  # noqa: BLE001 - any network failure is a result here
        return 0, f"{type(e).__name__}: {e}"


def get_json(url, timeout=2.0):
    st, txt = http("GET", url, timeout=timeout)
    if st != 200:
        return None
    try:
        return json.loads(txt)
    except ValueError:
        return None


def out(obj, ok=True):
    print(json.dumps(obj, sort_keys=True))
    sys.exit(0 if ok else 1)


def node_table(main):
    """{name: view} from main's /api/cluster/nodes, or None when main does not answer."""
    v = get_json(f"{main}/api/cluster/nodes")
    if v is None:
        return None
    if isinstance(v, dict):  # tolerate {"nodes": [...]}
        v = v.get("nodes", [])
    return {n.get("name"): n for n in v if isinstance(n, dict)}


def brief(table):
    if table is None:
        return None
    res = {}
    for name, n in sorted(table.items()):
        st = n.get("stats") or {}
        res[name] = {
            "state": n.get("state"),
            "sysload": st.get("sysload"),
            "rooms": st.get("room_names"),
            "health": st.get("livekit_health"),
        }
    return res


def parse_spec(spec):
    want = {}
    for part in spec.split(","):
        name, _, states = part.partition("=")
        want[name] = set(states.split("|"))
    return want


def spec_holds(want, table):
    if table is None:
        return False
    for name, states in want.items():
        st = table[name].get("state") if name in table else "absent"
        if st not in states:
            return False
    return True


def cmd_nodes(args):
    t = node_table(args[0])
    out({"t": time.time(), "nodes": brief(t)}, t is not None)


def cmd_wait(args):
    main, spec, timeout = args[0], args[1], float(args[2])
    hold = float(args[4]) if len(args) > 4 and args[3] == "--hold" else 0.0
    want = parse_spec(spec)
    end = time.time() + timeout
    seen = []  # state transitions of the named nodes, with times
    last = {}
    first_ok = None
    table = None
    while time.time() < end:
        table = node_table(main)
        now = time.time()
        if table is not None:
            for name in want:
                st = table[name].get("state") if name in table else "absent"
                if last.get(name) != st:
                    seen.append([round(now, 3), name, st])
                    last[name] = st
        if spec_holds(want, table):
            first_ok = first_ok or now
            if now - first_ok >= hold:
                out({"ok": True, "t": first_ok, "transitions": seen, "nodes": brief(table)})
        else:
            first_ok = None
        time.sleep(0.1)
    out({"ok": False, "t": time.time(), "transitions": seen, "nodes": brief(table)}, False)


def cmd_watch_lk(args):
    api, oldpid, timeout = args[0], int(args[1]), float(args[2])
    main = name = None
    if "--main" in args:
        main = args[args.index("--main") + 1]
        name = args[args.index("--name") + 1]
    t0 = time.time()
    end = t0 + timeout
    detected = None
    states = []
    main_states = set()
    while time.time() < end:
        n = get_json(f"{api}/api/node", timeout=1.0)
        now = time.time()
        if main:
            tab = node_table(main)
            main_states.add((tab or {}).get(name, {}).get("state", "absent") if tab else "main-down")
        if n is None:
            time.sleep(0.1)
            continue
        lk = n.get("livekit", {})
        st, pid = lk.get("state"), lk.get("pid")
        if not states or states[-1][1:] != [st, pid]:
            states.append([round(now, 3), st, pid])
        if detected is None and (st != "ready" or pid != oldpid):
            detected = now
        if st == "ready" and pid not in (None, oldpid) and os.path.exists(f"/proc/{pid}"):
            out({"ok": True, "detected": detected, "healthy": now, "new_pid": pid,
                 "restarts": lk.get("restarts"), "states": states,
                 "main_states": sorted(main_states)})
        time.sleep(0.1)
    out({"ok": False, "detected": detected, "states": states, "main_states": sorted(main_states)}, False)


def cmd_sample(args):
    """Poll a node's /api/node for SECONDS: the LiveKit states and pids seen, failed polls."""
    api, secs = args[0], float(args[1])
    end = time.time() + secs
    states, pids, fails, n = set(), set(), 0, 0
    while time.time() < end:
        j = get_json(f"{api}/api/node", timeout=1.0)
        n += 1
        if j is None:
            fails += 1
        else:
            states.add(j.get("livekit", {}).get("state"))
            pids.add(j.get("livekit", {}).get("pid"))
        time.sleep(0.25)
    ok = fails == 0 and states == {"ready"} and len(pids) == 1
    out({"ok": ok, "polls": n, "failed_polls": fails, "states": sorted(map(str, states)),
         "pids": sorted(map(str, pids))}, ok)


def cmd_until(args):
    want, timeout, apis = args[0], float(args[1]), args[2:]
    end = time.time() + timeout
    first, seen = {}, {a: {"states": [], "pids": [], "restarts": [], "failed_polls": 0} for a in apis}
    while time.time() < end and len(first) < len(apis):
        for a in apis:
            j = get_json(f"{a}/api/node", timeout=1.0)
            now = time.time()
            if j is None:
                seen[a]["failed_polls"] += 1
                continue
            lk = j.get("livekit", {})
            for k, v in (("states", lk.get("state")), ("pids", lk.get("pid")), ("restarts", lk.get("restarts"))):
                if v not in seen[a][k]:
                    seen[a][k].append(v)
            if lk.get("state") == want and a not in first:
                first[a] = now
        time.sleep(0.1)
    ok = len(first) == len(apis)
    out({"ok": ok, "t": first, "seen": seen}, ok)


def jwt_claims(token):
    import base64
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return json.loads(base64.urlsafe_b64decode(payload))
    except Exception:  # noqa: BLE001
        return {}


def cmd_join(args):
    main, tokfile, rooms = args[0], args[1], args[2:]
    with open(tokfile) as f:
        tok = f.read().strip()
    res = {}
    ok = True
    for room in rooms:
        body = json.dumps({"identity": "u-" + room, "name": "U " + room, "role": "student"})
        st, txt = http("POST", f"{main}/api/rooms/{room}/join", body,
                       {"Authorization": f"Bearer {tok}", "Content-Type": "application/json"})
        if st != 200:
            res[room] = {"status": st, "error": txt[:200]}
            ok = False
            continue
        j = json.loads(txt)
        url = j.get("livekit_url", "")
        base = "http" + url[len("ws"):] if url.startswith("ws") else url
        vst, vtxt = http("GET", f"{base}/rtc/validate?access_token={j.get('token', '')}")
        claims = jwt_claims(j.get("token", ""))
        video = claims.get("video", {})
        res[room] = {"node": j.get("node"), "url": url, "valid": vst == 200 and vtxt.strip() == "success",
                     "validate": [vst, vtxt.strip()[:80]], "claim_room": video.get("room"),
                     "claim_join": video.get("roomJoin"), "sub": claims.get("sub")}
    out({"ok": ok, "rooms": res}, ok)


def sign(secret, method, path, ts, nonce, body):
    canon = "\n".join(["AIRCLASS-HMAC-SHA256", method, path, str(ts), nonce,
                       hashlib.sha256(body).hexdigest()])
    return hmac.new(secret, canon.encode(), hashlib.sha256).hexdigest()


def read_secret(path):
    with open(path, "rb") as f:
        return f.read().strip()


def signed(main, path, body, secret, node, ts=None, nonce=None):
    ts = ts if ts is not None else int(time.time())
    nonce = nonce or secrets.token_hex(16)
    b = body.encode() if isinstance(body, str) else body
    h = {"Content-Type": "application/json", "X-Airclass-Node": node,
         "X-Airclass-Timestamp": str(ts), "X-Airclass-Nonce": nonce,
         "X-Airclass-Signature": sign(secret, "POST", path, ts, nonce, b)}
    st, txt = http("POST", f"{main}{path}", b, h)
    return st, txt, ts, nonce


def cmd_send(args):
    main, path, body, secfile = args[:4]
    opt = dict(zip(args[4::2], args[5::2]))
    node = opt.get("--node") or json.loads(body).get("name") or json.loads(body).get("node", {}).get("name", "")
    st, txt, ts, nonce = signed(main, path, body, read_secret(secfile), node,
                                int(opt["--ts"]) if "--ts" in opt else None, opt.get("--nonce"))
    out({"status": st, "body": txt[:300], "ts": ts, "nonce": nonce})


def stats(sysload, rooms=()):
    return {"cpu_percent": 1.0, "memory_used_bytes": 1, "memory_total_bytes": 2, "load1": sysload * 2,
            "sysload": sysload, "num_cpus": 2, "rooms": len(rooms), "participants": 0,
            "livekit_health": "healthy", "room_names": list(rooms)}


def cmd_replay(args):
    """Register a fake node NAME (right secret), send heartbeat A (sysload 0.11), heartbeat B
    (0.22), then A again byte for byte: A's replay must be refused and main must still show 0.22.
    The fake node leaves at the end."""
    main, secfile, name = args[:3]
    sec = read_secret(secfile)
    ident = secrets.token_hex(16)
    reg = json.dumps({"cluster_id": "airclass", "identity": ident, "node": {
        "name": name, "mode": "sub", "protocol_version": 1, "software_version": "lab",
        "api_url": "http://192.0.2.1:8009", "livekit_url": "ws://192.0.2.1:7970",
        "rtc_range": {"start": 59000, "end": 59020}}, "stats": stats(0.5)})
    r = {"register": signed(main, "/api/cluster/register", reg, sec, name)[:2]}
    hb_a = json.dumps({"name": name, "identity": ident, "stats": stats(0.11)}).encode()
    st, txt, ts, nonce = signed(main, "/api/cluster/heartbeat", hb_a, sec, name)
    r["heartbeat_a"] = [st, txt[:200]]
    hb_b = json.dumps({"name": name, "identity": ident, "stats": stats(0.22)})
    r["heartbeat_b"] = signed(main, "/api/cluster/heartbeat", hb_b, sec, name)[:2]
    before = (node_table(main) or {}).get(name, {})
    # the replay: same bytes, same headers (timestamp, nonce, signature)
    h = {"Content-Type": "application/json", "X-Airclass-Node": name,
         "X-Airclass-Timestamp": str(ts), "X-Airclass-Nonce": nonce,
         "X-Airclass-Signature": sign(sec, "POST", "/api/cluster/heartbeat", ts, nonce, hb_a)}
    r["replay"] = list(http("POST", f"{main}/api/cluster/heartbeat", hb_a, h))
    time.sleep(0.3)
    after = (node_table(main) or {}).get(name, {})
    r["sysload_before"] = (before.get("stats") or {}).get("sysload")
    r["sysload_after"] = (after.get("stats") or {}).get("sysload")
    r["last_seen_before"] = before.get("last_seen_ms")
    r["last_seen_after"] = after.get("last_seen_ms")
    r["leave"] = signed(main, "/api/cluster/leave", json.dumps({"name": name, "identity": ident}),
                        sec, name)[:2]
    ok = (r["register"][0] == 200 and r["heartbeat_a"][0] == 200 and r["heartbeat_b"][0] == 200
          and r["replay"][0] == 401 and '"replay"' in r["replay"][1]
          and r["sysload_before"] == 0.22 and r["sysload_after"] == 0.22)
    r["ok"] = ok
    out(r, ok)


def score(room, node):
    return int.from_bytes(hashlib.sha256(room.encode() + b"\0" + node.encode()).digest()[:8], "big")


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def server_token(key, secret, room=None):
    """A short LiveKit access token (HS256 JWT) with the RoomService grants (roomAdmin applies to
    the `room` claim only: ListParticipants needs it)."""
    now = int(time.time())
    head = b64url(b'{"alg":"HS256","typ":"JWT"}')
    video = {"roomCreate": True, "roomList": True, "roomAdmin": True}
    if room:
        video["room"] = room
    body = b64url(json.dumps({"iss": key, "sub": "aclab", "nbf": now - 10, "exp": now + 300,
                              "video": video}).encode())
    sig = b64url(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def cmd_twirp(args):
    lk, method, body = args[:3]
    sec = "/etc/airclass/secrets"
    room = json.loads(body).get("room")
    tok = server_token(read_secret(f"{sec}/livekit-api-key").decode(), read_secret(f"{sec}/livekit-api-secret"),
                       room)
    st, txt = http("POST", f"{lk}/twirp/livekit.RoomService/{method}", body,
                   {"Authorization": f"Bearer {tok}", "Content-Type": "application/json"}, timeout=5.0)
    try:
        parsed = json.loads(txt)
    except ValueError:
        parsed = txt[:300]
    out({"status": st, "body": parsed}, st == 200)


def cmd_flood(args):
    import http.client
    import urllib.parse
    u = urllib.parse.urlsplit(args[0])
    n = int(args[1])
    junk = "x" * 8192
    kinds = [
        ("POST", "/api/rooms/flood/join", '{"identity":"x","role":"student"}',
         {"Authorization": "Bearer wrong-" + junk[:200], "Content-Type": "application/json"}),
        ("POST", "/api/cluster/heartbeat", '{"name":"node-1"}',
         {"Content-Type": "application/json", "X-Junk": junk}),
        ("GET", "/no/such/path/" + junk[:100], None, {}),
    ]
    counts, conn, t0 = {}, None, time.time()
    for i in range(n):
        method, path, body, headers = kinds[i % len(kinds)]
        for attempt in range(2):
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                counts[str(r.status)] = counts.get(str(r.status), 0) + 1
                if (r.getheader("connection") or "").lower() == "close":
                    conn.close()
                    conn = None
                break
            except Exception:  # noqa: BLE001 - a closed connection: open another, once
                conn = None
                if attempt:
                    counts["error"] = counts.get("error", 0) + 1
    out({"sent": n, "counts": counts, "secs": round(time.time() - t0, 2)},
        ok=counts.get("error", 0) == 0)


def cmd_place(args):
    room, nodes = args[0], args[1:]
    print(max(sorted(nodes), key=lambda n: score(room, n)))


CMDS = {"nodes": cmd_nodes, "wait": cmd_wait, "watch-lk": cmd_watch_lk, "join": cmd_join,
        "send": cmd_send, "sample": cmd_sample, "replay": cmd_replay, "place": cmd_place,
        "twirp": cmd_twirp, "until": cmd_until, "flood": cmd_flood}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in CMDS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    CMDS[sys.argv[1]](sys.argv[2:])
