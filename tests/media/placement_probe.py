#!/usr/bin/env python3
"""placement_probe.py - a diagnostic, not a test (scripts/test.sh does not run it): does the real
livekit-server put a room on the node that RoomService `CreateRoom` names in `node_id`, and does
the media then go there whichever node's URL the client used?

For each (room, target node, node whose LiveKit receives CreateRoom): CreateRoom with the target's
LiveKit node id (from its ready line), then main's join for a teacher, a 3 s publish, and prints
LiveKit's `room_node_map` right after CreateRoom and after the publish, main's answer and the ICE
address the media used. Run inside the client namespace of a three-node topology:

  tests/media/netns.sh up acp 10.78.5 main:10 node-1:11 node-2:12 client:100
  tests/media/netns.sh exec acp client $(tests/media/venv.sh) tests/media/placement_probe.py \\
      --work $(mktemp -d) --tag acp --subnet 10.78.5 --daemon target/debug/airclass-node \\
      --livekit $(scripts/livekit.sh --path)
  tests/media/netns.sh down acp
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cluster import LIVEKIT_PORT, Cluster, http  # noqa: E402

CASES = [("probe-a", "node-1", "main"), ("probe-b", "node-2", "node-1"), ("probe-c", "main", "node-2")]


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def admin_token(key, secret):
    """A short LiveKit access token with the roomCreate grant (HS256 JWT)."""
    now = int(time.time())
    head = b64(b'{"alg":"HS256","typ":"JWT"}')
    body = b64(json.dumps({"iss": key, "sub": "placement-probe", "nbf": now - 10, "exp": now + 600,
                           "video": {"roomCreate": True}}).encode())
    sig = b64(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def main(argv):
    p = argparse.ArgumentParser()
    for k in ("work", "tag", "subnet", "daemon", "livekit"):
        p.add_argument(f"--{k}", required=True)
    a = p.parse_args(argv)
    hosts = {"main": f"{a.subnet}.10", "node-1": f"{a.subnet}.11", "node-2": f"{a.subnet}.12"}
    c = Cluster(a.work, a.tag, os.path.abspath(a.daemon), a.livekit, hosts)
    try:
        c.start()
        c.wait_formed()
        sec = os.path.join(a.work, "secrets")
        tok = admin_token(open(f"{sec}/livekit-api-key").read().strip(),
                          open(f"{sec}/livekit-api-secret").read().strip())
        ids = {h: c.livekit_node_id(h) for h in hosts}
        print("LiveKit node ids:", ids)
        for room, target, via in CASES:
            url = f"http://{hosts[via]}:{LIVEKIT_PORT[via]}/twirp/livekit.RoomService/CreateRoom"
            st, body = http("POST", url, {"name": room, "node_id": ids[target]}, token=tok)
            time.sleep(0.5)
            before = (c.livekit_rooms().get(room) or {}).get("host_by_ready_line")
            j = c.join(room, f"t-{room}", "teacher")
            out = subprocess.run([sys.executable, os.path.join(HERE, "media_client.py"), "--url",
                                  j["livekit_url"], "--token", j["token"], "--role", "publish",
                                  "--duration", "3"], capture_output=True, text=True).stdout
            ice = json.loads(out.strip().splitlines()[-1]).get("ice")
            after = (c.livekit_rooms().get(room) or {}).get("host_by_ready_line")
            print(f"{room}: CreateRoom(node_id={target}) sent to {via}'s LiveKit -> HTTP {st}; "
                  f"room_node_map: {before} after CreateRoom, {after} after the publish; main named "
                  f"{j['node']}; media went to {ice}")
    finally:
        c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
