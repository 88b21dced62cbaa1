#!/usr/bin/env python3
"""benches/capacity.py - how many real participants one node carries, in `mux` and in `range`
port mode. A benchmark: it prints figures and asserts nothing. Run it with benches/capacity.sh
(which makes the namespaces, the venv and the build), never directly.

Per mode: one airclass-node (main, a cluster of one) with the real livekit-server in its own
network namespace; a teacher (tests/media/media_client.py, another process) publishes a tone and
a WIDTHxHEIGHT video at FPS into one room; subscribers join through main's
`POST /api/rooms/{room}/join`, STEP at a time, all in this process (LiveKit's Python SDK, one
`Room` each, every audio and video frame received and counted). After each step it waits,
then measures a WINDOW: audio samples and video frames per subscriber, the ICE transport each
one uses (UDP or TCP), UDP sockets LiveKit holds, CPU (% of one core) and RSS of LiveKit, of
the daemon, of the teacher and of this process (the subscribers), and the machine's load.
It stops at the first join failure, at the first subscriber short of frames (audio < 90 % or
video < 80 % of what was sent in the window), or at --max. A subscriber whose media runs over
ICE/TCP (range mode: no UDP port left in the range) is counted and reported, not a stop.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "media"))
from cluster import Cluster, ClusterError  # noqa: E402
from livekit import rtc  # noqa: E402

CLIENT = os.path.join(HERE, "..", "tests", "media", "media_client.py")
ROOM = "capacity"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime
    except (OSError, IndexError):
        return None


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_busy():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v), idle


class Sub:
    """One subscriber: a Room and the frames it has received."""

    def __init__(self, identity):
        self.identity, self.room, self.samples, self.video = identity, rtc.Room(), 0, 0
        self.tasks, self.transport = [], "?"

    async def connect(self, url, token):
        self.room.on("track_subscribed", lambda track, *_: self._start(track))
        await asyncio.wait_for(self.room.connect(url, token, rtc.RoomOptions(auto_subscribe=True)), 25)

    def _start(self, track):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self.tasks.append(asyncio.create_task(self._audio(track)))
        elif track.kind == rtc.TrackKind.KIND_VIDEO:
            self.tasks.append(asyncio.create_task(self._video(track)))

    async def _audio(self, track):
        async for ev in rtc.AudioStream(track, sample_rate=48000, num_channels=1, frame_size_ms=50):
            self.samples += ev.frame.samples_per_channel

    async def _video(self, track):
        async for _ev in rtc.VideoStream(track):
            self.video += 1

    async def ice(self):
        try:
            st = await self.room.get_rtc_stats()
        except Exception:
            return "?"
        protos = set()
        for s in list(st.publisher_stats) + list(st.subscriber_stats):
            if s.WhichOneof("stats") == "candidate_pair":
                cp = s.candidate_pair.candidate_pair
                if cp.nominated and cp.bytes_received > 0:
                    protos.add(cp.local_candidate_id)
        cands = {}
        for s in list(st.publisher_stats) + list(st.subscriber_stats):
            if s.WhichOneof("stats") == "local_candidate":
                cands[s.local_candidate.rtc.id] = s.local_candidate.candidate.protocol
        found = sorted({cands.get(c, "?") for c in protos})
        return "+".join(found) or "none"

    async def close(self):
        for t in self.tasks:
            t.cancel()
        try:
            await asyncio.wait_for(self.room.disconnect(), 5)
        except Exception:
            pass


def livekit_udp_sockets(c):
    """UDP sockets in the node's namespace (LiveKit is the only UDP user there: mDNS is off), as
    "N (range ports: A IPv4, B IPv6)", B being link-local: pion binds one socket per address
    of each interface, per PeerConnection, from the design's main range 50000-50020."""
    out = subprocess.run(c.netns(c.main) + ["ss", "-Huan"], capture_output=True, text=True).stdout
    v4, v6 = set(), set()
    for line in out.splitlines():
        if line.strip():
            addr, port = line.split()[3].rsplit(":", 1)
            if 50000 <= int(port) <= 50020:
                (v6 if addr.startswith("[") else v4).add(int(port))
    return f"{len(out.splitlines())} (range ports: {len(v4)} IPv4, {len(v6)} IPv6)"


async def measure(c, subs, window, procs):
    before = {k: cpu_ticks(p) for k, p in procs.items()}
    m0, t0 = machine_busy(), time.monotonic()
    s0 = {s.identity: (s.samples, s.video) for s in subs}
    await asyncio.sleep(window)
    dt = time.monotonic() - t0
    m1 = machine_busy()
    cpu = {}
    for k, p in procs.items():
        a, b = before[k], cpu_ticks(p)
        cpu[k] = None if a is None or b is None else round(100 * (b - a) / TICK / dt, 1)
    got = {s.identity: ((s.samples - s0[s.identity][0]) / dt, (s.video - s0[s.identity][1]) / dt)
           for s in subs}
    total, idle = m1[0] - m0[0], m1[1] - m0[1]
    return {"per_sub": got, "cpu": cpu, "rss": {k: rss_kib(p) for k, p in procs.items()},
            "machine_busy_pct": round(100 * (total - idle) / max(total, 1), 1),
            "load1": float(open("/proc/loadavg").read().split()[0]), "udp_sockets": livekit_udp_sockets(c)}


async def add_subs(c, subs, n, failures):
    new = []
    for _ in range(n):
        ident = f"student-{len(subs) + len(new) + 1}"
        s = Sub(ident)
        try:
            a = c.join(ROOM, ident, "student")
            await s.connect(a["livekit_url"], a["token"])
            new.append(s)
        except Exception as e:
            failures.append(f"{ident}: {type(e).__name__}: {e}")
            await s.close()
    subs.extend(new)
    return new


def row(mode, n, m, args, transports):
    a_rates = [v[0] for v in m["per_sub"].values()]
    v_rates = [v[1] for v in m["per_sub"].values()]
    short = [k for k, (a, v) in m["per_sub"].items()
             if a < 0.9 * 48000 or v < 0.8 * args.fps]
    r = {"mode": mode, "participants": n + 1, "subscribers": n,
         "audio_min_pct": round(100 * min(a_rates) / 48000, 1) if a_rates else None,
         "video_min_fps": round(min(v_rates), 1) if v_rates else None,
         "short": short, "transports": transports, **m}
    r.pop("per_sub")
    return r


def print_row(r):
    cpu, rss = r["cpu"], r["rss"]
    print(f"  {r['mode']:5} participants {r['participants']:3}  audio min {r['audio_min_pct']}%  "
          f"video min {r['video_min_fps']} fps  udp sockets {r['udp_sockets']}  "
          f"livekit {cpu.get('livekit')}% {rss.get('livekit')} KiB  daemon {cpu.get('daemon')}% "
          f"{rss.get('daemon')} KiB  teacher {cpu.get('teacher')}%  subscribers {cpu.get('subscribers')}%  "
          f"machine {r['machine_busy_pct']}% load1 {r['load1']}  transports {r['transports']}"
          + (f"  SHORT {r['short']}" if r["short"] else ""), flush=True)


async def run_mode(args, mode):
    ip = f"{args.subnet}.10"
    c = Cluster(os.path.join(args.work, mode), args.tag, args.daemon, args.livekit, {"main": ip},
                port_mode=mode)
    rows, failures, subs, teacher = [], [], [], None
    try:
        c.start()
        await asyncio.get_running_loop().run_in_executor(None, c.wait_formed)
        t = c.join(ROOM, "teacher", "teacher")
        teacher = subprocess.Popen([sys.executable, CLIENT, "--url", t["livekit_url"], "--token", t["token"],
                                    "--role", "publish", "--duration", "3600", "--fps", str(args.fps),
                                    "--width", str(args.width), "--height", str(args.height)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(3)
        procs = {"livekit": c.livekit_pid(c.main), "daemon": c.pid_of(c.main),
                 "teacher": teacher.pid, "subscribers": os.getpid()}
        deadline = time.monotonic() + args.time_limit
        while len(subs) < args.max_n and time.monotonic() < deadline:
            await add_subs(c, subs, min(args.step_n, args.max_n - len(subs)), failures)
            await asyncio.sleep(args.settle)
            transports = {}
            for s in subs:
                if s.transport in ("?", "none"):
                    s.transport = await s.ice()
                transports[s.transport] = transports.get(s.transport, 0) + 1
            m = await measure(c, subs, args.window, procs)
            r = row(mode, len(subs), m, args, transports)
            r["join_failures"] = list(failures)
            rows.append(r)
            print_row(r)
            if failures or r["short"]:
                break
    except ClusterError as e:
        print(f"  {mode}: cluster failed: {e}", flush=True)
        failures.append(f"the node did not start: {str(e).splitlines()[0]}")
    finally:
        for s in subs:
            await s.close()
        if teacher:
            teacher.kill()
            teacher.wait()
        c.stop()
    return rows, failures


def verdict(rows, failures):
    """(participants carried, participants carried all on UDP, what stopped the ramp)."""
    ok = [r for r in rows if not r["short"] and not r["join_failures"]]
    reached = ok[-1]["participants"] if ok else 0
    on_udp = [r for r in ok if not any("tcp" in k for k in r["transports"])]
    udp = on_udp[-1]["participants"] if on_udp else 0
    why = "reached --max or the time limit"
    if failures:
        why = f"join failure: {failures[0]}"
    elif rows and rows[-1]["short"]:
        why = f"frame loss: {rows[-1]['short'][:3]} short of frames"
    return reached, udp, why


def main(argv):
    p = argparse.ArgumentParser()
    for k in ("work", "tag", "daemon", "livekit", "subnet"):
        p.add_argument(f"--{k}", required=True)
    p.add_argument("--modes", default="mux,range")
    p.add_argument("--max", type=int, default=48, help="mux: most subscribers (default 48)")
    p.add_argument("--step", type=int, default=4, help="mux: subscribers added per step (default 4)")
    p.add_argument("--range-max", type=int, default=25, help="range: most subscribers (default 25)")
    p.add_argument("--range-step", type=int, default=1, help="range: per step (default 1)")
    p.add_argument("--settle", type=float, default=4.0)
    p.add_argument("--window", type=float, default=6.0)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds per mode")
    args = p.parse_args(argv)
    summary = {}
    for mode in args.modes.split(","):
        if mode not in ("mux", "range"):
            p.error(f"--modes: {mode} is not mux or range")
        args.max_n, args.step_n = (args.range_max, args.range_step) if mode == "range" else (args.max, args.step)
        print(f"== {mode}: one node, one room, a teacher {args.width}x{args.height}@{args.fps} + tone, "
              f"+{args.step_n} subscribers per step (max {args.max_n})", flush=True)
        rows, failures = asyncio.run(run_mode(args, mode))
        reached, udp, why = verdict(rows, failures)
        summary[mode] = {"participants_reached": reached, "all_on_udp_up_to": udp,
                         "stopped_by": why, "rows": rows}
        print(f"FIGURE capacity {mode}: {reached} participants (teacher + {max(reached - 1, 0)} "
              f"subscribers) carried, all on UDP up to {udp}; stopped by {why}", flush=True)
    with open(os.path.join(args.work, "capacity.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"results: {os.path.join(args.work, 'capacity.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
