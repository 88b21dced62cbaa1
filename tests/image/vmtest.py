#!/usr/bin/env python3
"""tests/image/vmtest.py - the appliance image, proven by booting it (issue 11).

Runs inside the network namespace that tests/image/image-test.sh creates (nothing here reaches
beyond it): a bridge with dnsmasq as DHCP server, one tap device per VM, and four qemu VMs with
OVMF (UEFI firmware, no boot entries: the image boots from its removable fallback path):

  main     raw image copied onto a 4 GiB disk; per-key SMBIOS credentials (node, cluster,
           static address, the cluster's secrets, SSH key)
  node-1   raw image copied onto a 4 GiB disk; airclass.node= and airclass.redis= on the kernel
           command line (written into the ESP's boot entry), secrets and SSH key in the SMBIOS
           credential airclass.provision (a whole provision.toml); DHCP
  node-2   qcow2 image (overlay, 4 GiB); everything in airclass/provision.toml on a USB stick
           labelled AIRCLASS; DHCP
  unprov   qcow2 image (overlay); only an SSH key (so the test can look inside); DHCP

Checks: provisioning of each, the cluster found over mDNS (no main_url anywhere), a join on main
returning a node and a token that node's LiveKit accepts (/rtc/validate), daemon and LiveKit
lines in `journalctl -u airclass-node@node-1`, main's Redis refusing clients without the
password, no baked identity (host keys and machine ids differ), the root file system grown to
the disk, the stick's provision.toml gone from the FAT medium (its secrets in no byte of it),
powering off node-2 removes it from placement, and the unprovisioned VM's "needs provisioning"
state (console banner, `systemctl status airclass-provision`, no node unit, nothing failed).
Prints FIGURE lines: accelerator, boot-to-READY per VM, image sizes. Exit 0 only if all pass.
"""

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

SUBNET = "10.80.0"
BRIDGE_IP = f"{SUBNET}.1"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")
T0 = time.monotonic()
RESULTS = []


def log(msg):
    print(f"[vmtest {time.monotonic() - T0:7.1f}s] {msg}", flush=True)


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def check(name, fn):
    t = time.monotonic()
    try:
        detail = fn()
        RESULTS.append(("PASS", name, time.monotonic() - t, detail or ""))
        log(f"PASS {name}{': ' + detail if detail else ''}")
    except Exception as e:  # a failed check is reported, the others still run
        RESULTS.append(("FAIL", name, time.monotonic() - t, str(e)))
        log(f"FAIL {name}: {e}")


def wait_for(what, fn, timeout, every=2.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # not yet
            last = e
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout}s (last error: {last})")


# ------------------------------------------------------------------ accelerator
def kvm_works():
    """/dev/kvm may exist and still be unable to run OVMF (nested or paravirtual KVM)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm missing or not accessible"
    p = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "kvm", "-machine", "q35", "-cpu", "host", "-m", "128",
         "-display", "none", "-nodefaults", "-serial", "none", "-monitor", "none",
         "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=8)
        return False, f"qemu with KVM exited {p.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}"
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return True, "KVM runs OVMF"


# ------------------------------------------------------------------ VMs
class VM:
    def __init__(self, name, idx, work, accel, disk, fmt, ip):
        self.name, self.idx, self.work, self.accel = name, idx, work, accel
        self.disk, self.fmt, self.ip = disk, fmt, ip
        self.mac = f"52:54:00:80:00:{idx:02x}"
        self.tap = f"actap{idx}"
        self.creds = {}
        self.extra = []
        self.lines = []
        self.proc = None
        self.t_start = None
        self.console = open(os.path.join(work, f"console-{name}.log"), "wb")
        self.qmp_path = os.path.join(work, f"qmp-{name}.sock")

    def smbios(self):
        if not self.creds:
            return []
        vals = ",".join(
            "value=io.systemd.credential.binary:%s=%s" % (k, base64.b64encode(v.encode()).decode())
            for k, v in sorted(self.creds.items()))
        return ["-smbios", f"type=11,{vals}"]

    def start(self):
        vars_fd = os.path.join(self.work, f"vars-{self.name}.fd")
        shutil.copy(OVMF_VARS, vars_fd)
        run(["ip", "tuntap", "add", "dev", self.tap, "mode", "tap"])
        run(["ip", "link", "set", self.tap, "master", "br0", "up"])
        cpu = "host" if self.accel == "kvm" else "max"
        cmd = ["qemu-system-x86_64", "-name", self.name, "-machine", "q35", "-accel", self.accel,
               "-cpu", cpu, "-smp", "1", "-m", "1024", "-nodefaults", "-display", "none",
               "-serial", "stdio", "-monitor", "none", "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
               "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
               "-drive", f"if=pflash,format=raw,file={vars_fd}",
               "-drive", f"file={self.disk},if=virtio,format={self.fmt},cache=unsafe",
               "-device", "virtio-rng-pci",
               "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
               "-device", f"virtio-net-pci,netdev=n0,mac={self.mac}"] + self.smbios() + self.extra
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=open(os.path.join(self.work, f"qemu-{self.name}.log"), "w"))
        threading.Thread(target=self._read, daemon=True).start()
        log(f"{self.name}: qemu started ({self.accel}, {self.fmt} disk, mac {self.mac})")

    def _read(self):
        buf = b""
        for chunk in iter(lambda: self.proc.stdout.read1(4096), b""):
            self.console.write(chunk)
            self.console.flush()
            buf += chunk
            *done, buf = buf.split(b"\n")
            now = time.monotonic() - self.t_start
            for raw in done:
                self.lines.append((now, ANSI.sub(b"", raw).decode("utf-8", "replace")))

    def console_time(self, pattern):
        rx = re.compile(pattern)
        for t, line in list(self.lines):
            if rx.search(line):
                return t
        return None

    def wait_console(self, pattern, timeout):
        return wait_for(f"{self.name} console /{pattern}/", lambda: self.console_time(pattern), timeout, 1)

    def console_text(self):
        return "\n".join(line for _, line in self.lines)

    def ssh(self, command, timeout=60, check_rc=True):
        r = subprocess.run(
            ["ssh", "-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
             f"root@{self.ip}", command], capture_output=True, text=True, timeout=timeout)
        if check_rc and r.returncode != 0:
            raise RuntimeError(f"{self.name}: `{command}` exited {r.returncode}: {(r.stderr or r.stdout).strip()[-400:]}")
        return r.stdout

    def qmp(self, command):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.qmp_path)
        f = s.makefile("rw")
        f.readline()
        for c in ({"execute": "qmp_capabilities"}, {"execute": command}):
            f.write(json.dumps(c) + "\n")
            f.flush()
            f.readline()
        s.close()

    def power_off(self, timeout=180):
        self.qmp("system_powerdown")
        self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        run(["ip", "link", "del", self.tap], check=False)


# ------------------------------------------------------------------ disks
def esp_offset(raw):
    out = run(["sfdisk", "--json", raw]).stdout
    part = json.loads(out)["partitiontable"]["partitions"][0]
    return part["start"] * 512


def raw_disk(image, path, size="4G"):
    run(["cp", "--sparse=always", image, path])
    run(["truncate", "-s", size, path])  # as if written to a bigger disk: the GPT's backup is not at the end


def edit_cmdline(raw, extra):
    """Append kernel parameters to the boot entry on the ESP (mtools, no mount)."""
    img = f"{raw}@@{esp_offset(raw)}"
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    names = run(["mdir", "-b", "-i", img, "::/loader/entries"], env=env).stdout.split()
    entry = [n for n in names if n.endswith(".conf")][0].split("/")[-1]
    text = run(["mtype", "-i", img, f"::/loader/entries/{entry}"], env=env).stdout
    text = re.sub(r"(?m)^(options\s+.*)$", lambda m: m.group(1) + " " + extra, text)
    local = raw + ".entry"
    with open(local, "w") as f:
        f.write(text)
    run(["mcopy", "-o", "-i", img, local, f"::/loader/entries/{entry}"], env=env)
    return text


def qcow2_disk(image_qcow2, path, size="4G"):
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", image_qcow2, "-F", "qcow2", path, size])


def usb_stick(path, provision_text):
    run(["truncate", "-s", "64M", path])
    run(["mkfs.vfat", "-n", "AIRCLASS", path])
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    local = path + ".toml"
    with open(local, "w") as f:
        f.write(provision_text)
    run(["mmd", "-i", path, "::/airclass"], env=env)
    run(["mcopy", "-i", path, local, "::/airclass/provision.toml"], env=env)
    os.unlink(local)


# ------------------------------------------------------------------ HTTP
def http(method, url, body=None, headers=None, timeout=10):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


API = f"http://{SUBNET}.10:8000"


def alive_nodes():
    code, text = http("GET", f"{API}/api/cluster/nodes")
    if code != 200:
        raise RuntimeError(f"cluster/nodes answered {code}")
    data = json.loads(text)
    nodes = data["nodes"] if isinstance(data, dict) else data
    return sorted(n["name"] for n in nodes if n.get("state") == "alive")


KEY = ""


def redis_ping(host, password=None):
    s = socket.create_connection((host, 6379), timeout=5)
    if password:
        s.sendall(f"AUTH {password}\r\n".encode())
        s.recv(100)
    s.sendall(b"PING\r\n")
    out = s.recv(200).decode()
    s.close()
    return out.strip()


# ------------------------------------------------------------------ the test
def make_secrets():
    """The cluster's secrets, made now: none of them exists anywhere before this run."""
    return {
        "livekit_api_key": "API" + secrets.token_hex(6),
        "livekit_api_secret": secrets.token_urlsafe(32),
        "cluster_secret": secrets.token_urlsafe(32),
        "redis_password": secrets.token_urlsafe(24),
        "app_token": secrets.token_urlsafe(32),
    }


def toml_doc(fields, sec, pubkey, with_app_token=False):
    lines = [f'{k} = {json.dumps(v)}' for k, v in fields.items()]
    lines.append("\n[secrets]")
    for k, v in sec.items():
        if k != "app_token" or with_app_token:
            lines.append(f"{k} = {json.dumps(v)}")
    lines.append("\n[access]")
    lines.append(f"ssh_authorized_keys = [{json.dumps(pubkey)}]")
    return "\n".join(lines) + "\n"


def build_vms(a, work, sec, pubkey):
    cluster = "imgtest"
    main = VM("main", 0x10, work, a.accel, os.path.join(work, "main.raw"), "raw", f"{SUBNET}.10")
    raw_disk(a.raw, main.disk)
    main.creds = {f"airclass.{k}": v for k, v in sec.items()}
    main.creds.update({"airclass.node": "main", "airclass.cluster_id": cluster,
                       "airclass.address": f"{SUBNET}.10/24", "airclass.ssh_authorized_keys": pubkey})

    n1 = VM("node-1", 0x11, work, a.accel, os.path.join(work, "node-1.raw"), "raw", f"{SUBNET}.11")
    raw_disk(a.raw, n1.disk)
    entry = edit_cmdline(n1.disk, f"airclass.node=node-1 airclass.cluster={cluster} airclass.redis=redis://{SUBNET}.10:6379")
    log("node-1: boot entry now: " + [l for l in entry.splitlines() if l.startswith("options")][0])
    n1.creds = {"airclass.provision": toml_doc({}, sec, pubkey)}

    n2 = VM("node-2", 0x12, work, a.accel, os.path.join(work, "node-2.qcow2"), "qcow2", f"{SUBNET}.12")
    qcow2_disk(a.qcow2, n2.disk)
    stick = os.path.join(work, "stick-node-2.img")
    usb_stick(stick, toml_doc({"node": "node-2", "cluster_id": cluster,
                               "redis_url": f"redis://{SUBNET}.10:6379"}, sec, pubkey))
    n2.extra = ["-device", "qemu-xhci", "-drive", f"if=none,id=stick,format=raw,file={stick}",
                "-device", "usb-storage,drive=stick,removable=on"]
    n2.stick = stick

    un = VM("unprov", 0x20, work, a.accel, os.path.join(work, "unprov.qcow2"), "qcow2", f"{SUBNET}.20")
    qcow2_disk(a.qcow2, un.disk)
    un.creds = {"airclass.ssh_authorized_keys": pubkey}
    return main, n1, n2, un


def dnsmasq(work, vms):
    cmd = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--interface=br0",
           "--bind-interfaces", f"--dhcp-range={SUBNET}.100,{SUBNET}.200,255.255.255.0,1h",
           f"--dhcp-leasefile={work}/dnsmasq.leases", f"--pid-file={work}/dnsmasq.pid",
           f"--log-facility={work}/dnsmasq.log", "--log-dhcp", "--dhcp-authoritative",
           "--dhcp-option=option:router", "--dhcp-option=option:dns-server"]
    cmd += [f"--dhcp-host={v.mac},{v.ip}" for v in vms if v.name != "main"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


KSTAMP = re.compile(r"^\[\s*(\d+\.\d+)\]")


def kernel_start(vm):
    """Host seconds from qemu start to the kernel's start: for every kernel line on the serial
    console, its arrival time minus its kernel timestamp; lines never arrive early, so the
    smallest difference is the closest (firmware, systemd-boot and loading the kernel)."""
    diffs = [t - float(m.group(1)) for t, line in list(vm.lines) if (m := KSTAMP.match(line))]
    return min(diffs) if diffs else None


def node_active(vm):
    return vm.ssh(f"systemctl is-active airclass-node@{vm.name}.service", check_rc=False).strip() == "active"


def boot_figure(vm, accel):
    """boot-to-READY: qemu start -> the node unit active (Type=notify: READY=1 received)."""
    unit = f"airclass-node@{vm.name}.service"
    mono = int(vm.ssh(f"systemctl show -P ActiveEnterTimestampMonotonic {unit}").strip() or 0) / 1e6
    k = kernel_start(vm)
    total = k + mono
    return (f"FIGURE image boot-to-READY {vm.name}: {total:.1f} s ({accel}, 1 vCPU, 1 GiB: firmware + "
            f"systemd-boot + kernel load {k:.1f} s, then kernel start to READY {mono:.1f} s)")


def cluster_checks(main, n1, n2, sec):
    token = sec["app_token"]

    def provisioned():
        out = []
        for vm in (main, n1, n2):
            host = vm.ssh("hostname").strip()
            state = vm.ssh(f"systemctl is-active airclass-node@{vm.name}.service", check_rc=False).strip()
            if host != f"airclass-{vm.name}" or state != "active":
                raise AssertionError(f"{vm.name}: host name {host!r}, unit {state}")
            out.append(f"{vm.name}: {host}, active")
        cfg = n1.ssh("cat /etc/airclass/nodes/node-1.toml")
        if "main_url" in cfg or 'mode = "sub"' not in cfg:
            raise AssertionError(f"node-1's config: {cfg}")
        return "; ".join(out)
    check("provisioned: main (credentials), node-1 (kernel command line + credential), node-2 (USB stick)", provisioned)

    def sysload_pin():
        # TCG makes every VM look busy (load1 of an emulated CPU); the daemon's drill file pins the
        # reported sysload so that placement can choose any node (the lab does the same).
        for vm in (main, n1, n2):
            vm.ssh(f"echo 0.1 > /run/airclass/{vm.name}/sysload-override")

        def pinned():  # main sees the subs' new sysload with their next heartbeat
            code, text = http("GET", f"{API}/api/cluster/nodes")
            data = json.loads(text) if code == 200 else []
            nodes = data["nodes"] if isinstance(data, dict) else data
            return len(nodes) == 3 and all(abs(n["stats"]["sysload"] - 0.1) < 1e-6 for n in nodes)
        wait_for("every node reporting sysload 0.1 to main", pinned, 120)
        return "sysload pinned at 0.1 via /run/airclass/NODE/sysload-override (test setting), seen by main"
    def mdns_cluster():
        names = wait_for("node-1 and node-2 alive at main", lambda: (lambda n: n if {"node-1", "node-2"} <= set(n) else None)(alive_nodes()), 300)
        return f"alive at main: {names} (subs have no main_url: found over mDNS)"
    check("cluster forms over mDNS", mdns_cluster)
    check("test setting: sysload pinned", sysload_pin)

    placed = {}

    def joins():
        for i in range(12):
            room = f"class-{i}"
            code, text = http("POST", f"{API}/api/rooms/{room}/join", {"identity": f"u{i}", "name": "U", "role": "student"},
                              {"Authorization": f"Bearer {token}"})
            if code != 200:
                raise AssertionError(f"join {room}: {code} {text}")
            j = json.loads(text)
            url = j["livekit_url"].replace("ws://", "http://").rstrip("/")
            c2, t2 = http("GET", f"{url}/rtc/validate?access_token={j['token']}")
            if c2 != 200:
                raise AssertionError(f"{j['node']}'s LiveKit at {url} refused the token: {c2} {t2[:200]}")
            bad = j["token"][:-4] + ("AAAA" if not j["token"].endswith("AAAA") else "BBBB")
            c3, _ = http("GET", f"{url}/rtc/validate?access_token={bad}")
            if c3 == 200:
                raise AssertionError(f"{url} accepted a tampered token")
            placed[room] = j["node"]
        if len(set(placed.values())) < 2:
            raise AssertionError(f"all 12 rooms on one node ({placed}): the subs' LiveKit was not exercised")
        code, _ = http("POST", f"{API}/api/rooms/x/join", {"identity": "m", "role": "student"}, {"Authorization": "Bearer wrong"})
        if code != 401:
            raise AssertionError(f"a wrong app token got {code}")
        return f"12 rooms placed on {sorted(set(placed.values()))}, every token valid on its node's LiveKit (/rtc/validate), tampered ones refused, wrong app token 401"
    check("join on main returns a node and a token valid on it", joins)

    def journal():
        daemon = n1.ssh("journalctl -b -u airclass-node@node-1 --no-pager -o cat | grep -v '^\\[LiveKit\\]' | head -40")
        lk = n1.ssh("journalctl -b -u airclass-node@node-1 LIVEKIT=1 --no-pager -o cat | head -20")
        if "LiveKit started" not in daemon and "registered" not in daemon:
            raise AssertionError(f"no daemon lines: {daemon[:600]}")
        if not lk.strip():
            raise AssertionError("no LIVEKIT=1 lines")
        return f"{len(daemon.splitlines())} daemon lines, {len(lk.splitlines())}+ LiveKit lines; e.g. {lk.splitlines()[0][:100]!r}"
    check("journalctl -u airclass-node@node-1 shows daemon and LiveKit lines", journal)

    def redis_password():
        no = redis_ping(f"{SUBNET}.10")
        yes = redis_ping(f"{SUBNET}.10", sec["redis_password"])
        if not no.startswith("-NOAUTH") or yes != "+PONG":
            raise AssertionError(f"without password {no!r}, with {yes!r}")
        return f"main's Redis on the LAN: {no.split()[0]} without the password, +PONG with it"
    check("main's Redis is on the LAN with a password", redis_password)

    def secret_files():
        out = n1.ssh("stat -c '%n %U:%G %a' /etc/airclass/secrets/*")
        bad = [l for l in out.splitlines() if not l.endswith("root:airclass 640")]
        if bad:
            raise AssertionError(f"modes: {bad}")
        return f"{len(out.splitlines())} files root:airclass 0640 on node-1"
    check("secrets are 0640 root:airclass files", secret_files)

    def nothing_baked():
        keys = {vm.name: vm.ssh("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").split()[1] for vm in (main, n1, n2)}
        ids = {vm.name: vm.ssh("cat /etc/machine-id").strip() for vm in (main, n1, n2)}
        if len(set(keys.values())) != 3 or len(set(ids.values())) != 3:
            raise AssertionError(f"shared identity: host keys {keys}, machine ids {ids}")
        return "SSH host keys and machine ids differ on all three"
    check("no identity baked into the image", nothing_baked)

    def grown():
        out = {}
        for vm in (main, n1, n2):
            size = int(vm.ssh("findmnt -bno SIZE /").strip())
            if size < 3 * 2**30:
                raise AssertionError(f"{vm.name}: / is {size} bytes on a 4 GiB disk")
            out[vm.name] = f"{size / 2**30:.1f} GiB"
        return f"root file system on a 4 GiB disk: {out}"
    check("root grows to the disk at first boot", grown)
    return placed


def power_off_checks(main, n2, sec):
    token = sec["app_token"]

    def off():
        t = time.monotonic()
        n2.power_off()
        names = wait_for("node-2 gone from main's alive list", lambda: (lambda n: n if "node-2" not in n else None)(alive_nodes()), 120)
        for i in range(12):
            code, text = http("POST", f"{API}/api/rooms/after-{i}/join", {"identity": f"v{i}", "role": "student"},
                              {"Authorization": f"Bearer {token}"})
            if code != 200 or json.loads(text)["node"] == "node-2":
                raise AssertionError(f"join after power-off: {code} {text[:200]}")
        return f"powered off (ACPI) and gone from placement in {time.monotonic() - t:.1f}s; alive {names}; 12 new rooms none on node-2"
    check("powering off node-2 removes it from placement", off)

    def stick():
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        listing = run(["mdir", "-b", "-i", n2.stick, "::/airclass"], env=env).stdout
        data = open(n2.stick, "rb").read()
        leaked = [k for k in ("livekit_api_secret", "cluster_secret", "redis_password") if sec[k].encode() in data]
        if "provision.toml" in listing or "provisioned.txt" not in listing or leaked:
            raise AssertionError(f"stick: {listing.split()}; secrets still in its bytes: {leaked}")
        return f"stick now holds {[x.split('/')[-1] for x in listing.split()]}; none of the secrets in any of its {len(data) >> 20} MiB"
    check("the used provision.toml is gone from the FAT stick (zeros, then deleted)", stick)


def unprovisioned_checks(un):
    def state():
        banner = un.wait_console(r"NOT PROVISIONED", 60)
        text = un.console_text()
        if "- node:" not in text:
            raise AssertionError("the console banner does not list what is missing")
        status = un.ssh("systemctl status airclass-provision --no-pager -l", check_rc=False)
        units = un.ssh("systemctl list-units --all --no-legend --plain 'airclass-node@*'").strip()
        running = un.ssh("systemctl is-system-running", check_rc=False).strip()
        failed = un.ssh("systemctl --failed --no-legend --plain", check_rc=False).strip()
        if "needs provisioning" not in status or "node:" not in status:
            raise AssertionError(f"systemctl status airclass-provision: {status[-600:]}")
        if units or running != "running" or failed:
            raise AssertionError(f"node units {units!r}, system {running!r}, failed {failed!r}")
        return f"console banner at {banner:.0f}s names the missing node name; systemctl status airclass-provision says so; no node unit, system {running}"
    check("an unprovisioned VM boots to 'needs provisioning'", state)


def on_term(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through main()'s finally: every VM is stopped


def main():
    global KEY
    signal.signal(signal.SIGTERM, on_term)
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--qcow2", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"])
    ap.add_argument("--boot-timeout", type=int, default=900)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    if a.accel == "auto":
        ok, why = kvm_works()
        a.accel = "kvm" if ok else "tcg"
        log(f"accelerator: {a.accel} ({why})")
    print(f"FIGURE image accelerator: {a.accel}", flush=True)
    KEY = os.path.join(a.work, "id_ed25519")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", KEY, "-C", "vmtest"])
    pubkey = open(KEY + ".pub").read().strip()
    sec = make_secrets()
    run(["ip", "link", "add", "br0", "type", "bridge"])
    run(["ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", "br0"])
    run(["ip", "link", "set", "lo", "up"])
    run(["ip", "link", "set", "br0", "up"])
    vms = build_vms(a, a.work, sec, pubkey)
    main_vm, n1, n2, un = vms
    dhcp = dnsmasq(a.work, vms)
    try:
        for vm in vms:
            vm.start()
        for vm in vms:
            wait_for(f"{vm.name} SSH", lambda vm=vm: vm.ssh("true", timeout=20) == "", a.boot_timeout, 5)
            log(f"{vm.name}: SSH up at {time.monotonic() - vm.t_start:.0f}s after qemu start")
        for vm in (main_vm, n1, n2):
            wait_for(f"{vm.name}: airclass-node@{vm.name} active", lambda vm=vm: node_active(vm), a.boot_timeout, 3)
        for vm in (main_vm, n1, n2):
            try:
                print(boot_figure(vm, a.accel), flush=True)
            except Exception as e:
                print(f"FIGURE image boot-to-READY {vm.name}: not measured ({e})", flush=True)
        cluster_checks(main_vm, n1, n2, sec)
        unprovisioned_checks(un)
        power_off_checks(main_vm, n2, sec)
    finally:
        for vm in vms:
            vm.stop()
        dhcp.terminate()
        dhcp.wait()
    width = max(len(r[1]) for r in RESULTS)
    print()
    for res, name, dur, detail in RESULTS:
        print(f"{res}  {name:<{width}}  {dur:6.1f}s  {detail}")
    failed = sum(1 for r in RESULTS if r[0] == "FAIL")
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
