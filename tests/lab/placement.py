#!/usr/bin/env python3
"""tests/lab/placement.py - the lab's placement proof: is every room hosted, according to LiveKit's
own Redis records, on the node main named in its join answer?

Runs on the lab host side with the media venv's python (it has the `redis` package), inside the
lab's network namespace (main's Redis is on the lab bridge). LiveKit keeps `room_node_map` (room ->
LiveKit node id) and `nodes` (node id -> protobuf livekit.Node, decoded with tests/media/cluster.py's
decode_node); a LiveKit node id is matched to a lab node by the `nodeID` of the node's last ready
line in its journal and, independently, by the node IP in the `nodes` record. Both must agree.

  placement.py --redis 10.78.0.10:6379 --named '{"room": "node-1", ...}' \\
      --ids '{"main": "ND_x", ...}' --ips '{"main": "10.78.0.10", ...}'
  placement.py --redis 10.78.0.10:6379 --save snap.json      only record LiveKit's hashes now
  placement.py --snapshot snap.json --named ... --ids ... --ips ...   judge a recorded snapshot

Prints one JSON object: ok, counts, and per room the named node, LiveKit's node id and the lab node
it is (by id and by IP). Exit 0 when every room is hosted where main named it, 1 otherwise.
(--snapshot/--save: the rooms of a media run are live only while its clients are connected, but
main's answers are known only once the clients have finished.)
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "media"))
from cluster import decode_node  # noqa: E402  (reused: the wire format of livekit.Node)


def records(addr):
    """(room -> node id, node id -> ip) from LiveKit's hashes in Redis."""
    import redis

    host, port = addr.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port), socket_timeout=5)
    rooms = {k.decode(): v.decode() for k, v in r.hgetall("room_node_map").items()}
    nodes = {}
    for k, raw in r.hgetall("nodes").items():
        nodes[k.decode()] = decode_node(raw)[1]
    return rooms, nodes


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--redis", help="host:port of the Redis LiveKit uses")
    p.add_argument("--save", help="write LiveKit's records to this file and stop")
    p.add_argument("--snapshot", help="judge the records saved in this file instead of Redis")
    p.add_argument("--named", help="JSON room -> node main named")
    p.add_argument("--ids", help="JSON lab node -> LiveKit node id (ready line)")
    p.add_argument("--ips", help="JSON lab node -> IP")
    a = p.parse_args(argv)
    if a.snapshot:
        snap = json.load(open(a.snapshot))
        room_map, nodes = snap["room_node_map"], snap["nodes"]
    elif a.redis:
        room_map, nodes = records(a.redis)
    else:
        p.error("give --redis or --snapshot")
    if a.save:
        with open(a.save, "w") as f:
            json.dump({"room_node_map": room_map, "nodes": nodes}, f, sort_keys=True)
        return 0
    if not (a.named and a.ids and a.ips):
        p.error("--named, --ids and --ips are needed to judge placement")
    named, ids, ips = json.loads(a.named), json.loads(a.ids), json.loads(a.ips)
    by_id = {v: k for k, v in ids.items() if v}
    by_ip = {v: k for k, v in ips.items()}
    res, good, unknown, wrong = {}, 0, 0, 0
    for room, want in sorted(named.items()):
        nid = room_map.get(room)
        host_id, host_ip = by_id.get(nid), by_ip.get(nodes.get(nid))
        ok = nid is not None and host_id == want and host_ip == want
        good += ok
        unknown += nid is None
        wrong += nid is not None and not ok
        res[room] = {"named": want, "node_id": nid, "ip": nodes.get(nid), "host_by_id": host_id,
                     "host_by_ip": host_ip, "ok": ok}
    spread = {}
    for v in res.values():
        key = v["host_by_id"] or ("not in room_node_map" if v["node_id"] is None else "unknown node")
        spread[key] = spread.get(key, 0) + 1
    ok = good == len(named) > 0
    print(json.dumps({"ok": ok, "rooms": len(named), "as_named": good, "not_in_livekit": unknown,
                      "elsewhere": wrong, "livekit_hosts": spread, "detail": res,
                      "livekit_nodes": nodes}, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
