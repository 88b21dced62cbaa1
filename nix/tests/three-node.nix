# Three-node NixOS VM test: main, node1, node2 (instances main, node-1, node-2), Redis on main,
# the real LiveKit (pkgs.livekit) on every node, the NixOS firewall on with openFirewall.
#
#   discovery = "mdns"      subs find main over mDNS (UDP 5353 opened by the module)
#   discovery = "main-url"  mDNS off, subs get MAIN_NODE_URL: the fallback for a test network that
#                           does not carry multicast (QEMU's VLAN switch should, but that was not
#                           confirmed where this test was written: no VM could run there)
{
  pkgs,
  airclassModule,
  package ? null,
  discovery ? "mdns",
}:

assert builtins.elem discovery [
  "mdns"
  "main-url"
];

let
  inherit (pkgs) lib;

  # No secret is in this file or in any derivation: the test script makes them when it runs
  # (Python's `secrets`), copies them into each VM with copy_from_host (the driver logs only the
  # paths) and starts the units afterwards. Nothing starts them at boot.
  instanceOf = {
    main = "main";
    node1 = "node-1";
    node2 = "node-2";
  };

  nodeConfig =
    vmName:
    { config, ... }:
    let
      instance = instanceOf.${vmName};
      isMain = vmName == "main";
      ip = config.networking.primaryIPAddress;
    in
    {
      imports = [ airclassModule ];

      virtualisation.memorySize = 1536;
      virtualisation.cores = 2;

      networking.firewall.enable = true;
      environment.systemPackages = [
        pkgs.curl
        pkgs.jq
        pkgs.socat
        pkgs.procps
        pkgs.iproute2
        pkgs.redis # redis-cli: main's Redis refuses clients without the password
      ];

      services.airclass-node = {
        enable = true;
        openFirewall = true;
        secrets.redisPasswordFile = "/etc/airclass/secrets/redis-password";
        settings = {
          cluster = {
            id = "nixos-test";
            heartbeat_secs = 2;
            # Dead only after 60 missed heartbeats (2 min): a node that disappears from the
            # alive list within the test's 30 s window has left on purpose, not timed out.
            dead_after_missed = 60;
            mdns = discovery == "mdns";
          };
          livekit.log_level = "info";
        };
        instances.${instance} = {
          mode = if isMain then "main" else "sub";
          redisUrl = "redis://main:6379";
          mainUrl = if discovery == "main-url" && !isMain then "http://main:8000" else null;
          settings = {
            # eth0 is QEMU's user network (10.0.2.15 on every VM): advertise the test VLAN.
            node.advertise_address = ip;
            # The daemon's test knob: report a fixed low load, so that a busy VM never drops out
            # of placement between two joins and makes the consistency check flaky.
            node.sysload_override = 0.1;
            livekit.node_ip = ip;
          };
        };
      } // lib.optionalAttrs (package != null) { inherit package; };

      # main's Redis, shared by every node: on the test VLAN, never without the password.
      services.redis.servers.airclass = lib.mkIf isMain {
        enable = true;
        port = 6379;
        bind = null;
        openFirewall = true;
        requirePassFile = "/etc/airclass/secrets/redis-password";
      };
      # The secrets arrive after boot: nothing may start before the test script says so.
      systemd.services.redis-airclass = lib.mkIf isMain { wantedBy = lib.mkForce [ ]; };
      systemd.services."airclass-node@${instance}" =
        {
          wantedBy = lib.mkForce [ ];
        }
        // lib.optionalAttrs isMain {
          after = [ "redis-airclass.service" ];
          wants = [ "redis-airclass.service" ];
        };
    };
in
pkgs.testers.runNixOSTest {
  name = "airclass-three-node-${discovery}";

  nodes = lib.genAttrs [
    "main"
    "node1"
    "node2"
  ] nodeConfig;

  testScript = ''
    import hashlib
    import json
    import os
    import secrets
    import shlex
    import tempfile
    import time

    # The cluster's secrets, made now (never part of a derivation).
    APP_TOKEN = secrets.token_urlsafe(32)
    SECRETS = {
        "livekit-api-key": "API" + secrets.token_hex(6),
        "livekit-api-secret": secrets.token_urlsafe(32),
        "cluster-secret": secrets.token_urlsafe(32),
        "redis-password": secrets.token_urlsafe(24),
        "app-token.sha256": hashlib.sha256(APP_TOKEN.encode()).hexdigest(),
    }
    DISCOVERY = "${discovery}"
    API = "http://main:8000"
    INSTANCE = {"main": "main", "node1": "node-1", "node2": "node-2"}
    MACHINES = {"main": main, "node1": node1, "node2": node2}
    HTTP_PORT = {"main": 7880, "node-1": 7890, "node-2": 7900}


    def nodes_json(client):
        out = client.succeed(f"curl -sf {API}/api/cluster/nodes")
        data = json.loads(out)
        return data["nodes"] if isinstance(data, dict) else data


    def alive(client):
        return sorted(n["name"] for n in nodes_json(client) if n.get("state") == "alive")


    def wait_alive(client, expected, present=True, timeout=120):
        deadline = time.monotonic() + timeout
        names = []
        while time.monotonic() < deadline:
            try:
                names = alive(client)
            except Exception as e:  # API not up yet
                client.log(f"cluster/nodes not ready: {e}")
                names = []
            if present and set(expected) <= set(names):
                return names
            if not present and not (set(expected) & set(names)):
                return names
            time.sleep(1)
        raise AssertionError(f"alive nodes {names}; expected {'all of' if present else 'none of'} {expected}")


    def join(client, room, identity, token=APP_TOKEN, expect_ok=True):
        body = json.dumps({"identity": identity, "name": identity.upper(), "role": "student"})
        cmd = (
            f"curl -s -o /tmp/join.out -w '%{{http_code}}' -X POST "
            f"-H {shlex.quote('Authorization: Bearer ' + token)} "
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)} "
            f"{API}/api/rooms/{room}/join"
        )
        code = client.succeed(cmd).strip()
        out = client.succeed("cat /tmp/join.out")
        if not expect_ok:
            assert code in ("401", "403"), f"join with a wrong app token answered {code}: {out}"
            return None
        assert code == "200", f"join {room}/{identity} answered {code}: {out}"
        return json.loads(out)


    def livekit_http(url):
        return url.replace("wss://", "https://").replace("ws://", "http://").rstrip("/")


    def livekit_pid(machine):
        return machine.succeed("pgrep -x livekit-server").split()[0]


    def install_secrets(machine):
        staging = tempfile.mkdtemp()
        machine.succeed("install -d -m 0750 -o root -g airclass /etc/airclass/secrets")
        for name, value in SECRETS.items():
            with open(os.path.join(staging, name), "w") as f:
                f.write(value + "\n")
            machine.copy_from_host(os.path.join(staging, name), f"/etc/airclass/secrets/{name}")
        machine.succeed("chown root:airclass /etc/airclass/secrets/* && chmod 0640 /etc/airclass/secrets/*")


    start_all()
    for machine in MACHINES.values():
        machine.wait_for_unit("multi-user.target")
        install_secrets(machine)

    with subtest("subs tolerate a late Redis on main (no start limit)"):
        # Subs first: main's Redis is not running yet, so each start fails ("Redis ... is
        # unreachable", exit 1) and is restarted every 10 s. The template allows 5 starts in 300 s;
        # the module lifts that for subs, so they keep trying until main is up.
        for vm in ("node1", "node2"):
            MACHINES[vm].succeed(f"systemctl start --no-block airclass-node@{INSTANCE[vm]}.service")
        node1.wait_until_succeeds(
            "test $(systemctl show -P NRestarts airclass-node@node-1.service) -ge 6", timeout=240
        )
        result = node1.succeed("systemctl show -P Result airclass-node@node-1.service").strip()
        assert result != "start-limit-hit", result
        main.succeed("systemctl start airclass-node@main.service")
        main.succeed(
            "redis-cli -a \"$(cat /etc/airclass/secrets/redis-password)\" --no-auth-warning ping | grep -qx PONG"
        )
        main.fail("redis-cli ping | grep -qx PONG")  # never without the password

    with subtest("every node runs its instance with LiveKit"):
        main.wait_for_unit("redis-airclass.service")
        for vm, machine in MACHINES.items():
            inst = INSTANCE[vm]
            machine.wait_for_unit(f"airclass-node@{inst}.service", timeout=240)
            machine.wait_for_open_port(HTTP_PORT[inst])
            machine.succeed("pgrep -x livekit-server")
            # The module's drop-in is in effect: the firewall switch and the store LiveKit.
            env = machine.succeed(f"systemctl show -p Environment airclass-node@{inst}.service")
            assert "AIRCLASS_FIREWALL=external" in env, env
            assert "LIVEKIT_BINARY=/nix/store/" in env, env

    with subtest(f"cluster forms ({DISCOVERY})"):
        names = wait_alive(main, ["node-1", "node-2"])
        main.log(f"alive: {names}")
        # Another node sees the same membership through main's API (TCP 8000 through the firewall).
        wait_alive(node1, ["node-1", "node-2"], timeout=30)

    with subtest("joins are placed consistently and LiveKit accepts the tokens"):
        join(node2, "room-denied", "mallory", token="not-the-app-token", expect_ok=False)
        placed = {}
        for i in range(8):
            room = f"class-{i}"
            a = join(node1, room, "u1")
            b = join(node2, room, "u2")
            assert a["node"] == b["node"], f"{room}: placed on {a['node']} then {b['node']}"
            assert a["node"] in ("main", "node-1", "node-2"), a
            placed[room] = a["node"]
            url = livekit_http(a["livekit_url"])
            for who, j in (("u1", a), ("u2", b)):
                out = main.succeed(f"curl -sf {shlex.quote(url + '/rtc/validate?access_token=' + j['token'])}")
                assert "success" in out, f"{room}/{who}: LiveKit at {url} answered {out!r}"
            # A token LiveKit must refuse: proves /rtc/validate can fail.
            bad = a["token"][:-4] + ("AAAA" if not a["token"].endswith("AAAA") else "BBBB")
            main.fail(f"curl -sf {shlex.quote(url + '/rtc/validate?access_token=' + bad)}")
        main.log(f"placement: {placed}")
        # Placement is stable: asking again gives the same nodes.
        for room, node in placed.items():
            again = join(main, room, "u3")["node"]
            assert again == node, f"{room}: first {node}, now {again}"

    with subtest("journal carries LiveKit's own lines"):
        for vm, machine in MACHINES.items():
            inst = INSTANCE[vm]
            out = machine.succeed(f"journalctl -b -u airclass-node@{inst}.service LIVEKIT=1 -o cat --no-pager")
            assert out.strip(), f"{vm}: no LIVEKIT=1 lines in the journal"
            assert "livekit" in out.lower(), f"{vm}: LIVEKIT=1 lines do not look like LiveKit's: {out[:500]!r}"

    with subtest("kill -9 of LiveKit: the daemon restarts it, the unit stays up"):
        unit = "airclass-node@node-1.service"
        main_pid = node1.succeed(f"systemctl show -p MainPID --value {unit}").strip()
        old = livekit_pid(node1)
        node1.succeed(f"kill -9 {old}")
        node1.wait_until_succeeds(f"pgrep -x livekit-server | grep -vx {old}", timeout=60)
        node1.wait_until_succeeds("curl -sf http://node1:7890/", timeout=60)
        assert node1.succeed(f"systemctl show -p MainPID --value {unit}").strip() == main_pid
        node1.succeed(f"systemctl is-active {unit}")
        # Still placed and served after the restart.
        wait_alive(main, ["node-1"])

    with subtest("firewall admits the RTC UDP range from another node"):
        # LiveKit on node2 owns some ports of its range; listen on the first free one.
        port = int(node2.succeed(
            "for p in $(seq 52000 52020); do "
            "ss -Hlun \"sport = :$p\" | grep -q . || { echo $p; exit 0; }; done; exit 1"
        ).strip())
        closed = 53500  # outside every instance's range: the firewall must drop it
        for p in (port, closed):
            node2.succeed(f"systemd-run --unit udp-{p} $(command -v socat) -u UDP-RECV:{p} OPEN:/tmp/udp-{p},creat,append")
            node2.wait_until_succeeds(f"ss -Hlun 'sport = :{p}' | grep -q .")
        for _ in range(10):
            node1.succeed(f"echo open-{port} | socat -u - UDP-SENDTO:node2:{port}")
            node1.succeed(f"echo closed-{closed} | socat -u - UDP-SENDTO:node2:{closed}")
            if node2.execute(f"grep -q open-{port} /tmp/udp-{port}")[0] == 0:
                break
            time.sleep(1)
        node2.succeed(f"grep -q open-{port} /tmp/udp-{port}")
        node2.fail(f"grep -q closed /tmp/udp-{closed}")
        # TCP: LiveKit's HTTP port of node2 is reachable from node1.
        node1.succeed("curl -sf http://node2:7900/")

    with subtest("graceful stop: node-2 leaves the cluster"):
        node2.succeed("systemctl stop airclass-node@node-2.service")
        node2.fail("pgrep -x livekit-server")
        # dead_after_missed = 60 x 2 s: only an explicit leave gets it out within 30 s.
        wait_alive(main, ["node-2"], present=False, timeout=30)
        wait_alive(main, ["node-1"], timeout=30)
        for i in range(8):
            assert join(node1, f"class-{i}", "u4")["node"] != "node-2"
  '';
}
