# NixOS VM test of the appliance's first-boot provisioning (services.airclass-node.provisioning):
# four machines with the same configuration and no instance declared, told at boot who they are,
# as the Debian image test does (tests/image/vmtest.py):
#
#   main    a whole provision.toml in the credential airclass.provision (SMBIOS type 11)
#   node1   airclass.node= and airclass.redis= on the kernel command line, its secrets in the
#           credential airclass.provision
#   node2   per-key credentials airclass.NAME
#   fresh   nothing: must boot to "needs provisioning" and start no node
#
# The secrets are made by the test script when it runs and handed to qemu as SMBIOS type 11
# strings (QEMU_OPTS -smbios type=11,value=io.systemd.credential.binary:NAME=BASE64): none is in
# a derivation.
{
  pkgs,
  airclassModule,
  package ? null,
}:

let
  inherit (pkgs) lib;

  nodeConfig =
    { ... }:
    {
      imports = [ airclassModule ];
      virtualisation.memorySize = 1536;
      services.airclass-node = {
        enable = true;
        provisioning.enable = true;
        settings.cluster.heartbeat_secs = 2;
      } // lib.optionalAttrs (package != null) { inherit package; };
      environment.systemPackages = [
        pkgs.curl
        pkgs.jq
        pkgs.redis
      ];
    };
in
pkgs.testers.runNixOSTest {
  name = "airclass-appliance-provisioning";

  nodes = lib.genAttrs [
    "main"
    "node1"
    "node2"
    "fresh"
  ] (_: nodeConfig);

  testScript =
    { nodes, ... }:
    let
      ip = name: nodes.${name}.networking.primaryIPAddress;
    in
    ''
      import base64
      import json
      import os
      import secrets
      import shlex

      MAIN_IP = "${ip "main"}"
      IP = {"main": MAIN_IP, "node1": "${ip "node1"}", "node2": "${ip "node2"}"}
      APP_TOKEN = secrets.token_urlsafe(32)
      SECRETS = {
          "livekit_api_key": "API" + secrets.token_hex(6),
          "livekit_api_secret": secrets.token_urlsafe(32),
          "cluster_secret": secrets.token_urlsafe(32),
          "redis_password": secrets.token_urlsafe(24),
      }


      def smbios(creds):
          values = ",".join(
              f"value=io.systemd.credential.binary:{k}={base64.b64encode(v.encode()).decode()}"
              for k, v in sorted(creds.items())
          )
          return f"-smbios type=11,{values}"


      def provision_toml(fields, with_token=False):
          # eth0 is QEMU's user network (the same 10.0.2.15 everywhere): pin the test VLAN.
          lines = [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
          lines.append("[secrets]")
          lines += [f"{k} = {json.dumps(v)}" for k, v in SECRETS.items()]
          if with_token:
              lines.append(f"app_token = {json.dumps(APP_TOKEN)}")
          return "\n".join(lines) + "\n"


      def start(machine, opts="", kernel=""):
          os.environ["QEMU_OPTS"] = opts
          os.environ["QEMU_KERNEL_PARAMS"] = kernel
          machine.start()
          os.environ["QEMU_OPTS"] = ""
          os.environ["QEMU_KERNEL_PARAMS"] = ""


      def net(vm):
          return f'\n[network]\ninterface = "eth1"\naddress = "{IP[vm]}/24"\n'


      start(main, smbios({"airclass.provision": provision_toml({"node": "main", "cluster_id": "nixtest"}, True) + net("main")}))
      start(node1, smbios({"airclass.provision": provision_toml({}) + net("node1")}),
            f"airclass.node=node-1 airclass.cluster=nixtest airclass.redis=redis://{MAIN_IP}:6379")
      per_key = {f"airclass.{k}": v for k, v in SECRETS.items()}
      per_key.update({"airclass.node": "node-2", "airclass.cluster_id": "nixtest",
                      "airclass.redis_url": f"redis://{MAIN_IP}:6379", "airclass.interface": "eth1",
                      "airclass.address": IP["node2"] + "/24"})
      start(node2, smbios(per_key))
      start(fresh)

      INSTANCE = {"main": "main", "node1": "node-1", "node2": "node-2"}
      MACHINES = {"main": main, "node1": node1, "node2": node2}

      with subtest("each machine is provisioned and runs its node"):
          for vm, machine in MACHINES.items():
              inst = INSTANCE[vm]
              machine.wait_for_unit(f"airclass-node@{inst}.service", timeout=300)
              assert machine.succeed("hostname").strip() == f"airclass-{inst}"
              machine.succeed(f"echo 0.1 > /run/airclass/{inst}/sysload-override")
              issue = machine.succeed("cat /etc/issue.d/50-airclass.issue")
              assert f"AirClass node {inst}" in issue, issue
          main.succeed("systemctl is-active airclass-redis.service")
          node1.fail("systemctl is-active airclass-redis.service")
          out = node1.succeed("stat -c '%U:%G %a' /etc/airclass/secrets/cluster-secret").strip()
          assert out == "root:airclass 640", out

      with subtest("main's Redis: on the VLAN, only with the password"):
          pw = shlex.quote(SECRETS["redis_password"])
          node1.succeed(f"redis-cli -h {MAIN_IP} -a {pw} --no-auth-warning ping | grep -qx PONG")
          node1.fail(f"redis-cli -h {MAIN_IP} ping | grep -qx PONG")

      with subtest("the cluster forms over mDNS; joins give tokens valid on the chosen node"):
          main.wait_until_succeeds(
              "curl -sf localhost:8000/api/cluster/nodes | jq -e '[.[] | select(.state == \"alive\") | .name] "
              "| contains([\"node-1\", \"node-2\"])'",
              timeout=180,
          )
          placed = set()
          for i in range(12):
              body = shlex.quote(json.dumps({"identity": f"u{i}", "role": "student"}))
              out = main.succeed(
                  f"curl -sf -X POST -H {shlex.quote('Authorization: Bearer ' + APP_TOKEN)} "
                  f"-H 'Content-Type: application/json' -d {body} localhost:8000/api/rooms/class-{i}/join"
              )
              j = json.loads(out)
              placed.add(j["node"])
              url = j["livekit_url"].replace("ws://", "http://")
              main.succeed(f"curl -sf {shlex.quote(url + '/rtc/validate?access_token=' + j['token'])}")
          main.log(f"rooms placed on {sorted(placed)}")

      with subtest("an unprovisioned machine says what is missing and starts nothing"):
          fresh.wait_for_unit("airclass-provision.service")
          issue = fresh.succeed("cat /etc/issue.d/50-airclass.issue")
          assert "NOT PROVISIONED" in issue and "- node:" in issue, issue
          status = fresh.succeed("systemctl status airclass-provision --no-pager -l || true")
          assert "needs provisioning" in status, status
          fresh.fail("systemctl list-units --all --no-legend 'airclass-node@*' | grep -q .")
          fresh.succeed("test \"$(systemctl is-system-running --wait)\" = running")

      with subtest("powering off node2 removes it from placement"):
          node2.shutdown()
          main.wait_until_succeeds(
              "curl -sf localhost:8000/api/cluster/nodes | jq -e '[.[] | select(.state == \"alive\") | .name] "
              "| index(\"node-2\") | not'",
              timeout=60,
          )
    '';
}
