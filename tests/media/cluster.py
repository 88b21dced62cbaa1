"""cluster.py - a real AirClass cluster for the media tier and the capacity bench: one
redis-server and one `airclass-node` daemon per test host, each daemon in its own network
namespace (made by tests/media/netns.sh), each supervising the real livekit-server with
`node.advertise_address` and `livekit.node_ip` set to its namespace address.

The caller runs inside a namespace of the same bridge (the client host) and reaches the nodes
only over that bridge. Nothing here listens on or dials outside the test namespaces.

    c = Cluster(work_dir, tag, daemon, livekit, hosts={"main": "10.78.0.10", ...})
    c.start(); c.wait_formed()
    answer = c.join("physics-101", "teacher-1", "teacher")   # main's POST /api/rooms/{room}/join
    c.livekit_rooms()                                        # LiveKit's own Redis records
    c.stop()
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

REDIS_PORT = 6379
# the design's port plan: main 7880/8000, node-N 7880+10N / 8000+N (airclass-node ports)
API_PORT = {"main": 8000}
LIVEKIT_PORT = {"main": 7880}
for _n in range(1, 16):
    API_PORT[f"node-{_n}"] = 8000 + _n
    LIVEKIT_PORT[f"node-{_n}"] = 7880 + 10 * _n


class ClusterError(Exception):
    pass


def http(method, url, body=None, token=None, timeout=5.0):
    """(status, parsed JSON or text) of one request; status 0 when nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read().decode(errors="replace"), e.code
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def decode_node(raw):
    """(id, ip) of a protobuf `livekit.Node` (fields 1 and 2, both strings) from LiveKit's
    `nodes` hash; only the wire format is needed, not LiveKit's generated code."""
    out, i = {}, 0
    while i < len(raw):
        key, i = _varint(raw, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(raw, i)
        elif wire == 2:
            n, i = _varint(raw, i)
            if field in (1, 2):
                out[field] = raw[i:i + n].decode(errors="replace")
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"protobuf wire type {wire} in a livekit.Node record")
    return out.get(1, ""), out.get(2, "")


def _varint(b, i):
    shift = val = 0
    while True:
        c = b[i]
        i += 1
        val |= (c & 0x7F) << shift
        if c < 0x80:
            return val, i
        shift += 7


class Cluster:
    def __init__(self, work, tag, daemon, livekit, hosts, port_mode="mux", heartbeat=2):
        self.work, self.tag, self.daemon, self.livekit = work, tag, daemon, livekit
        self.hosts = dict(hosts)  # name -> ip; the first one is main
        self.main = next(iter(self.hosts))
        self.port_mode, self.heartbeat = port_mode, heartbeat
        self.procs = {}
        self.redis_ip = self.hosts[self.main]
        os.makedirs(work, exist_ok=True)

    # ------------------------------------------------------------------ config
    def write_config(self):
        sec = os.path.join(self.work, "secrets")
        subprocess.run([self.daemon, "secrets", "init", "--dir", sec], check=True,
                       stdout=subprocess.DEVNULL)
        self.app_token = open(os.path.join(sec, "app-token")).read().strip()
        nodes = os.path.join(self.work, "nodes")
        os.makedirs(nodes, exist_ok=True)
        with open(os.path.join(self.work, "airclass.toml"), "w") as f:
            f.write(f"""# written by tests/media/cluster.py: one daemon per test namespace
[livekit]
binary = "{self.livekit}"
api_key_file = "{sec}/livekit-api-key"
api_secret_file = "{sec}/livekit-api-secret"
port_mode = "{self.port_mode}"
drain_timeout_secs = 3
[redis]
url = "redis://{self.redis_ip}:{REDIS_PORT}"
[cluster]
id = "media-{self.tag}"
secret_file = "{sec}/cluster-secret"
heartbeat_secs = {self.heartbeat}
mdns = false
[api]
app_token_sha256_file = "{sec}/app-token.sha256"
""")
        main_url = f"http://{self.hosts[self.main]}:{API_PORT[self.main]}"
        for name, ip in self.hosts.items():
            mode = "main" if name == self.main else "sub"
            with open(os.path.join(nodes, f"{name}.toml"), "w") as f:
                f.write(f'[node]\nmode = "{mode}"\nadvertise_address = "{ip}"\n'
                        f'[livekit]\nnode_ip = "{ip}"\n[api]\nbind = "{ip}"\n')
                if mode == "sub":
                    f.write(f'[cluster]\nmain_url = "{main_url}"\n')

    # ------------------------------------------------------------------ processes
    def netns(self, host):
        return ["ip", "netns", "exec", f"{self.tag}-{host}"]

    def spawn(self, key, host, argv, env=None):
        log = open(os.path.join(self.work, f"{key}.log"), "w")
        p = subprocess.Popen(self.netns(host) + argv, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.procs[key] = p
        return p

    def start(self):
        self.write_config()
        self.spawn("redis", self.main, ["redis-server", "--bind", self.redis_ip, "--port",
                                        str(REDIS_PORT), "--save", "", "--appendonly", "no",
                                        "--protected-mode", "no"])
        self.wait_redis()  # a clustered daemon exits 1 when Redis is unreachable at its start
        for name in self.hosts:
            env = dict(os.environ, RUNTIME_DIRECTORY=os.path.join(self.work, "run", name),
                       RUST_LOG="info")
            for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LIVEKIT_BINARY"):
                env.pop(k, None)
            self.spawn(name, name, [self.daemon, "--config", os.path.join(self.work, "airclass.toml"),
                                    "--nodes-dir", os.path.join(self.work, "nodes"),
                                    "run", "--instance", name], env=env)

    def wait_redis(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with socket.create_connection((self.redis_ip, REDIS_PORT), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise ClusterError(f"redis-server did not answer on {self.redis_ip}:{REDIS_PORT} in {timeout} s:\n"
                           f"{self.log('redis')[-2000:]}")

    def log(self, key):
        try:
            return open(os.path.join(self.work, f"{key}.log"), errors="replace").read()
        except OSError:
            return ""

    def check_alive(self):
        for key, p in self.procs.items():
            if p.poll() is not None:
                raise ClusterError(f"{key} exited with {p.returncode}; its log:\n{self.log(key)[-3000:]}")

    def wait_formed(self, timeout=90):
        """Until main lists every host alive with healthy LiveKit, and each LiveKit said its node id."""
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            self.check_alive()
            st, nodes = http("GET", f"{self.api(self.main)}/api/cluster/nodes")
            if st == 200 and isinstance(nodes, list):
                healthy = {n["name"] for n in nodes if n.get("state") == "alive"
                           and (n.get("stats") or {}).get("livekit_health") == "healthy"}
                last = sorted(healthy)
                if healthy >= set(self.hosts) and all(self.livekit_node_id(h) for h in self.hosts):
                    return nodes
            time.sleep(0.3)
        raise ClusterError(f"cluster not formed in {timeout} s (healthy: {last}); main's log:\n"
                           f"{self.log(self.main)[-3000:]}")

    def stop(self):
        for key, p in self.procs.items():
            if p.poll() is None and key != "redis":
                p.send_signal(signal.SIGTERM)
        for key, p in self.procs.items():
            if key != "redis":
                self._reap(p)
        if "redis" in self.procs:
            self.procs["redis"].send_signal(signal.SIGTERM)
            self._reap(self.procs["redis"])

    @staticmethod
    def _reap(p, grace=20):
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    # ------------------------------------------------------------------ queries
    def api(self, host):
        return f"http://{self.hosts[host]}:{API_PORT[host]}"

    def join(self, room, identity, role, name=""):
        """Main's answer to POST /api/rooms/{room}/join (raises on anything but 200)."""
        url = f"{self.api(self.main)}/api/rooms/{urllib.request.quote(room, safe='')}/join"
        st, body = http("POST", url, {"identity": identity, "name": name, "role": role},
                        token=self.app_token)
        if st != 200 or not isinstance(body, dict):
            raise ClusterError(f"join {room} as {identity}: HTTP {st}: {body}")
        return body

    def livekit_node_id(self, host):
        """The LiveKit node id of `host`, from the ready line its daemon forwarded (the last one:
        a restarted LiveKit gets a new id)."""
        ids = [m.group(1) for line in self.log(host).splitlines() if "starting LiveKit server" in line
               for m in [re.search(r'"nodeID": "([A-Za-z0-9_]+)"', line)] if m]
        return ids[-1] if ids else None  # other lines name other nodes' ids (CreateRoom requests)

    def livekit_rooms(self):
        """LiveKit's own placement records: {room: {"node_id", "ip", "host"}} from the Redis hashes
        `room_node_map` (room -> node id) and `nodes` (node id -> livekit.Node)."""
        import redis  # from the media venv

        r = redis.Redis(host=self.redis_ip, port=REDIS_PORT, socket_timeout=5)
        by_ip = {ip: h for h, ip in self.hosts.items()}
        by_id = {self.livekit_node_id(h): h for h in self.hosts}
        nodes = {}
        for nid, raw in r.hgetall("nodes").items():
            node_id, ip = decode_node(raw)
            nodes[nid.decode()] = {"id": node_id, "ip": ip}
        out = {}
        for room, nid in r.hgetall("room_node_map").items():
            nid = nid.decode()
            ip = nodes.get(nid, {}).get("ip")
            out[room.decode()] = {"node_id": nid, "ip": ip, "host_by_ip": by_ip.get(ip),
                                  "host_by_ready_line": by_id.get(nid)}
        return out

    def pid_of(self, key):
        return self.procs[key].pid

    def livekit_pid(self, host):
        """The livekit-server child of `host`'s daemon (None if there is none)."""
        d, kids = self.procs[host].pid, []
        try:
            for task in os.listdir(f"/proc/{d}/task"):  # a child is listed under the thread that forked it
                kids += open(f"/proc/{d}/task/{task}/children").read().split()
        except OSError:
            return None
        for k in kids:
            try:
                if "livekit" in open(f"/proc/{k}/comm").read():
                    return int(k)
            except OSError:
                pass
        return None
