#!/usr/bin/env python3
"""tests/lab/lab_client.py - a participant that stays in its room until the room goes away, for the
lab's drain scenario (15): tests/media/media_client.py's connection, publisher and frame counters,
plus what the participant sees of the server (connection events, the disconnect reason).

Runs with the media venv's python (tests/media/venv.sh). Takes media_client.py's options (--main,
--room, --identity, --app-token-file, --role, --tone-hz, ...) and:

  --stay SECONDS   the longest time to stay (default 60); the client leaves earlier when the
                   room disconnects it
  --ready-file F   written once the client publishes (teacher) or has received audio and video
                   frames (student), so the lab knows the room is live before it stops the node
  SIGTERM          leave now and print the result (for a participant that LiveKit moved to
                   another node and that would otherwise stay)

Prints one JSON line: node, url, connect_ms, the events seen (unix time, name, detail) and the
disconnect reason (a livekit DisconnectReason name) with its time, and for a student the audio/video
frames received before the end. Exit 0 when it connected, 2 when connecting failed.
"""

import asyncio
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "media"))
import media_client as mc  # noqa: E402
from livekit import rtc  # noqa: E402


def own_args(argv):
    """Split --stay/--ready-file off; the rest are media_client.py's options."""
    stay, ready, rest, i = 60.0, None, [], 0
    while i < len(argv):
        if argv[i] == "--stay":
            stay, i = float(argv[i + 1]), i + 2
        elif argv[i] == "--ready-file":
            ready, i = argv[i + 1], i + 2
        else:
            rest.append(argv[i])
            i += 1
    return stay, ready, rest


def mark_ready(path):
    if path:
        with open(path + ".tmp", "w") as f:
            f.write(f"{time.time()}\n")
        os.replace(path + ".tmp", path)


def watch(room, events, gone):
    def ev(name, detail=""):
        events.append([round(time.time(), 3), name, detail])

    def disconnected(reason):
        name = rtc.DisconnectReason.Name(reason) if isinstance(reason, int) else str(reason)
        ev("disconnected", name)
        gone.set()

    room.on("reconnecting", lambda: ev("reconnecting"))
    room.on("reconnected", lambda: ev("reconnected"))
    room.on("disconnected", disconnected)
    room.on("participant_disconnected", lambda p: ev("participant_disconnected", p.identity))
    room.on("connection_state_changed",
            lambda s: ev("connection_state", rtc.ConnectionState.Name(s) if isinstance(s, int) else str(s)))


async def student(room, ready, t0, box):
    audio, video, tasks = mc.AudioStats(), mc.VideoStats(), []
    box["audio"], box["video"] = audio, video
    far = time.monotonic() + 3600

    def start(track, _pub, _participant):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.append(asyncio.create_task(mc.drain_audio(track, audio, t0, far)))
        elif track.kind == rtc.TrackKind.KIND_VIDEO:
            tasks.append(asyncio.create_task(mc.drain_video(track, video, t0, far)))

    room.on("track_subscribed", start)
    for p in room.remote_participants.values():
        for pub in p.track_publications.values():
            if pub.track is not None and pub.subscribed:
                start(pub.track, pub, p)
    try:
        while not (audio.frames and video.frames):
            await asyncio.sleep(0.1)
        mark_ready(ready)
        await asyncio.Event().wait()  # until cancelled: the room went away or --stay ran out
    finally:
        for t in tasks:
            t.cancel()


async def run(argv):
    stay, ready, rest = own_args(argv)
    args = mc.parse_args(rest)
    args.duration = stay
    res, events, gone = {"role": args.role}, [], asyncio.Event()
    t0 = time.monotonic()
    try:
        if args.main:
            res["node"] = mc.join_via_main(args)
        res["url"] = args.url
        room, ms = await mc.connect(args)
    except Exception as e:  # noqa: BLE001 - reported, not raised
        res["error"] = f"connect failed: {type(e).__name__}: {e}"
        print(json.dumps(res), flush=True)
        return 2
    res["connect_ms"], res["identity"], res["room"] = round(ms), room.local_participant.identity, room.name
    watch(room, events, gone)
    box = {}
    if args.role == "publish":
        work = asyncio.create_task(mc.publish(room, args))
        asyncio.get_running_loop().call_later(2.0, mark_ready, ready)
    else:
        work = asyncio.create_task(student(room, ready, t0, box))
    waiter = asyncio.create_task(gone.wait())
    term = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, term.set)
    terminated = asyncio.create_task(term.wait())
    await asyncio.wait({work, waiter, terminated}, timeout=stay, return_when=asyncio.FIRST_COMPLETED)
    res["left"] = ("disconnected by the server" if gone.is_set() else "SIGTERM" if term.is_set()
                   else f"--stay {stay} s ran out")
    for t in (work, waiter, terminated):
        t.cancel()
    try:
        await work
    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the room may be gone already
        pass
    if box:
        res["audio"], res["video"] = box["audio"].summary(args.tone_hz), box["video"].summary()
    res["events"] = events
    res["disconnect"] = next(([t, d] for t, n, d in events if n == "disconnected"), None)
    if not gone.is_set():
        await room.disconnect()
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(run(sys.argv[1:])))
