#!/usr/bin/env python3
"""media_client.py - one real WebRTC participant (LiveKit Python SDK) that publishes or receives
synthetic media and prints what happened as one JSON line on stdout.

  publish:    a sine tone (48 kHz mono, 10 ms frames) and a solid-colour video track
              (WIDTHxHEIGHT RGBA at FPS, no simulcast so every subscriber gets the sent size)
  subscribe:  counts the audio and video frames of every remote track it is sent, measures the
              audio RMS and the tone (strongest frequency, share of the power near --tone-hz)
              and the video frame sizes and mean colour

  media_client.py --url ws://10.78.0.11:7890 --token JWT --role subscribe --duration 8 \
      --tone-hz 440 --width 320 --height 240 [--expect]
  media_client.py --main http://10.213.0.10:8000 --app-token-file FILE --room algebra-101 \
      --identity kim --role subscribe        (asks main's POST /api/rooms/ROOM/join first)

With --expect the exit status says whether the received media matched what a publisher started
with the same --tone-hz/--amplitude/--width/--height/--color sends (0 yes, 1 no); without it the
status is 0 unless connecting failed. A connection failure exits 2. Logs go to stderr. Reusable by
any tier (tests/media, benches/capacity.py, the lab): it needs only the URL and a token.
"""

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter

import numpy as np
from livekit import rtc

SAMPLE_RATE = 48000
FRAME_SAMPLES = SAMPLE_RATE // 100  # 10 ms


def log(msg):
    print(f"[media_client] {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="LiveKit URL, e.g. ws://10.78.0.10:7880 (with --token)")
    p.add_argument("--token", help="LiveKit access token (from main's join)")
    p.add_argument("--main", help="instead of --url/--token: ask this main (e.g. "
                   "http://10.213.0.10:8000) with POST /api/rooms/ROOM/join")
    p.add_argument("--room", help="with --main: the room")
    p.add_argument("--identity", help="with --main: the participant identity")
    p.add_argument("--app-token-file", help="with --main: file holding the application token")
    p.add_argument("--role", required=True, choices=["publish", "subscribe"])
    p.add_argument("--duration", type=float, default=8.0, help="seconds of media (default 8)")
    p.add_argument("--tone-hz", type=float, default=440.0, help="tone frequency (default 440)")
    p.add_argument("--amplitude", type=float, default=0.5, help="tone peak, 0..1 of full scale")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--color", default="200,40,40", help="video colour R,G,B (default 200,40,40)")
    p.add_argument("--connect-timeout", type=float, default=20.0)
    p.add_argument("--expect", action="store_true", help="exit 1 unless the media received matches")
    p.add_argument("--wait-tracks", type=float, default=15.0,
                   help="subscribe: seconds to wait for the first track (default 15)")
    a = p.parse_args(argv)
    if a.main:
        if not (a.room and a.identity and a.app_token_file):
            p.error("--main needs --room, --identity and --app-token-file")
    elif not (a.url and a.token):
        p.error("give --url and --token, or --main with --room/--identity/--app-token-file")
    a.rgb = tuple(int(c) for c in a.color.split(","))
    if len(a.rgb) != 3 or not all(0 <= c <= 255 for c in a.rgb):
        p.error("--color must be R,G,B with each 0..255")
    if not 0 < a.amplitude <= 1:
        p.error("--amplitude must be in (0, 1]")
    return a


def join_via_main(args):
    """Ask main where the room is: its answer gives the LiveKit URL and a token."""
    import urllib.parse
    import urllib.request

    app_token = open(args.app_token_file).read().strip()
    role = "teacher" if args.role == "publish" else "student"
    body = json.dumps({"identity": args.identity, "name": args.identity, "role": role}).encode()
    url = f"{args.main.rstrip('/')}/api/rooms/{urllib.parse.quote(args.room, safe='')}/join"
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {app_token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        answer = json.loads(r.read())
    args.url, args.token = answer["livekit_url"], answer["token"]
    return answer["node"]


def expected_rms(amplitude):
    """RMS, in int16 units, of a sine with peak `amplitude` of full scale."""
    return amplitude * 32767 / math.sqrt(2)


async def selected_pair(room):
    """The nominated ICE candidate pair (local/remote address, protocol, type) per transport."""
    try:
        stats = await room.get_rtc_stats()
    except Exception as e:  # stats are informative only
        return {"error": str(e)}
    out = {}
    for side, lst in (("publisher", stats.publisher_stats), ("subscriber", stats.subscriber_stats)):
        cands, pair = {}, None
        for s in lst:
            kind = s.WhichOneof("stats")
            if kind in ("local_candidate", "remote_candidate"):
                entry = getattr(s, kind)
                cands[entry.rtc.id] = entry.candidate
            elif kind == "candidate_pair":
                cp = s.candidate_pair.candidate_pair
                traffic = cp.bytes_received + cp.bytes_sent
                if cp.nominated or (pair is None or traffic > pair.bytes_received + pair.bytes_sent):
                    pair = cp if (pair is None or not pair.nominated) else pair
        if pair is not None:
            lc, rc = cands.get(pair.local_candidate_id), cands.get(pair.remote_candidate_id)
            out[side] = {
                "local": f"{lc.address}:{lc.port}/{lc.protocol}" if lc else pair.local_candidate_id,
                "remote": f"{rc.address}:{rc.port}/{rc.protocol}" if rc else pair.remote_candidate_id,
                "remote_type": rtc.stats.IceCandidateType.Name(rc.candidate_type) if rc else "?",
            }
    return out


async def connect(args):
    room = rtc.Room()
    t0 = time.monotonic()
    opts = rtc.RoomOptions(auto_subscribe=True, connect_timeout=args.connect_timeout)
    await asyncio.wait_for(room.connect(args.url, args.token, opts), args.connect_timeout + 5)
    return room, (time.monotonic() - t0) * 1000


# ------------------------------------------------------------------------------- publish
async def tone_task(source, args, stop, counter):
    t = np.arange(FRAME_SAMPLES)
    peak = args.amplitude * 32767
    n = 0
    while not stop.is_set():
        phase = 2 * math.pi * args.tone_hz * (t + n * FRAME_SAMPLES) / SAMPLE_RATE
        frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, FRAME_SAMPLES)
        np.frombuffer(frame.data, dtype=np.int16)[:] = (peak * np.sin(phase)).astype(np.int16)
        await source.capture_frame(frame)  # paces itself: the source queue plays in real time
        n += 1
        counter["audio"] = n


async def video_task(source, args, stop, counter):
    rgba = np.empty((args.height, args.width, 4), dtype=np.uint8)
    rgba[:, :, :3] = args.rgb
    rgba[:, :, 3] = 255
    frame = rtc.VideoFrame(args.width, args.height, rtc.VideoBufferType.RGBA, rgba.tobytes())
    period, n, t0 = 1.0 / args.fps, 0, time.monotonic()
    while not stop.is_set():
        source.capture_frame(frame, timestamp_us=int(n * period * 1e6))
        n += 1
        counter["video"] = n
        await asyncio.sleep(max(0.0, t0 + n * period - time.monotonic()))


async def publish(room, args):
    lp = room.local_participant
    asrc = rtc.AudioSource(SAMPLE_RATE, 1)
    vsrc = rtc.VideoSource(args.width, args.height)
    atrack = rtc.LocalAudioTrack.create_audio_track("tone", asrc)
    vtrack = rtc.LocalVideoTrack.create_video_track("pattern", vsrc)
    await lp.publish_track(atrack, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    await lp.publish_track(vtrack, rtc.TrackPublishOptions(
        source=rtc.TrackSource.SOURCE_CAMERA, simulcast=False))
    stop, counter = asyncio.Event(), {"audio": 0, "video": 0}
    tasks = [asyncio.create_task(tone_task(asrc, args, stop, counter)),
             asyncio.create_task(video_task(vsrc, args, stop, counter))]
    await asyncio.sleep(args.duration)
    pair = await selected_pair(room)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "audio_frames_sent": counter["audio"], "video_frames_sent": counter["video"],
        "tone_hz": args.tone_hz, "sent_rms": round(expected_rms(args.amplitude), 1),
        "width": args.width, "height": args.height, "color": list(args.rgb), "ice": pair,
    }


# ----------------------------------------------------------------------------- subscribe
class AudioStats:
    def __init__(self):
        self.frames, self.first_ms, self.chunks, self.rates = 0, None, [], Counter()

    def add(self, frame, since_ms):
        self.frames += 1
        if self.first_ms is None:
            self.first_ms = since_ms
        self.rates[frame.sample_rate] += 1
        samples = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            samples = samples[:: frame.num_channels]
        self.chunks.append(samples.copy())

    def summary(self, tone_hz):
        out = {"frames": self.frames, "first_frame_ms": self.first_ms,
               "sample_rates": dict(self.rates)}
        if not self.chunks:
            return out
        # skip the first 0.5 s (jitter buffer fills, codec warms up), keep at most the last 4 s
        pcm = np.concatenate(self.chunks).astype(np.float64)[SAMPLE_RATE // 2:][-4 * SAMPLE_RATE:]
        if len(pcm) < SAMPLE_RATE // 4:
            return out
        out["rms"] = round(float(np.sqrt(np.mean(pcm ** 2))), 1)
        spec = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
        freqs = np.fft.rfftfreq(len(pcm), 1 / SAMPLE_RATE)
        spec[freqs < 20] = 0  # DC and rumble
        total = float(spec.sum()) or 1.0
        out["peak_hz"] = round(float(freqs[int(np.argmax(spec))]), 1)
        near = np.abs(freqs - tone_hz) <= 25
        out["tone_fraction"] = round(float(spec[near].sum()) / total, 4)
        out["analysed_s"] = round(len(pcm) / SAMPLE_RATE, 2)
        return out


class VideoStats:
    def __init__(self):
        self.frames, self.first_ms, self.sizes, self.colors = 0, None, Counter(), []

    def add(self, frame, since_ms):
        self.frames += 1
        if self.first_ms is None:
            self.first_ms = since_ms
        self.sizes[f"{frame.width}x{frame.height}"] += 1
        if self.frames % 10 == 1:  # sample the colour of every tenth frame (conversion costs CPU)
            rgba = frame.convert(rtc.VideoBufferType.RGBA)
            px = np.frombuffer(rgba.data, dtype=np.uint8).reshape(-1, 4)
            self.colors.append(px[:, :3].mean(axis=0))

    def summary(self):
        out = {"frames": self.frames, "first_frame_ms": self.first_ms, "sizes": dict(self.sizes)}
        if self.colors:
            out["mean_rgb"] = [round(float(c), 1) for c in np.mean(self.colors[-20:], axis=0)]
        return out


async def drain_audio(track, stats, t0, deadline):
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    try:
        async for ev in stream:
            stats.add(ev.frame, round((time.monotonic() - t0) * 1000))
            if time.monotonic() >= deadline:
                break
    finally:
        await stream.aclose()


async def drain_video(track, stats, t0, deadline):
    stream = rtc.VideoStream(track)
    try:
        async for ev in stream:
            stats.add(ev.frame, round((time.monotonic() - t0) * 1000))
            if time.monotonic() >= deadline:
                break
    finally:
        await stream.aclose()


async def subscribe(room, args, t0):
    audio, video, tasks, got_track = AudioStats(), VideoStats(), [], asyncio.Event()
    deadline = [None]
    publishers = set()

    def start(track, participant):
        if deadline[0] is None:
            deadline[0] = time.monotonic() + args.duration
        publishers.add(participant.identity)
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.append(asyncio.create_task(drain_audio(track, audio, t0, deadline[0])))
        elif track.kind == rtc.TrackKind.KIND_VIDEO:
            tasks.append(asyncio.create_task(drain_video(track, video, t0, deadline[0])))
        got_track.set()

    room.on("track_subscribed", lambda track, _pub, participant: start(track, participant))
    for p in room.remote_participants.values():  # tracks subscribed before the handler existed
        for pub in p.track_publications.values():
            if pub.track is not None and pub.subscribed:
                start(pub.track, p)
    try:
        await asyncio.wait_for(got_track.wait(), args.wait_tracks)
    except asyncio.TimeoutError:
        return {"error": f"no track within {args.wait_tracks} s", "audio": audio.summary(args.tone_hz),
                "video": video.summary(), "publishers": sorted(publishers)}
    await asyncio.sleep(max(0.0, deadline[0] - time.monotonic()) + 0.5)
    pair = await selected_pair(room)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"audio": audio.summary(args.tone_hz), "video": video.summary(),
            "publishers": sorted(publishers), "ice": pair}


def verdict(res, args):
    """Problems with what a subscriber received, compared with what the publisher sends."""
    problems = []
    a, v = res.get("audio", {}), res.get("video", {})
    want = expected_rms(args.amplitude)
    if a.get("frames", 0) < 50:
        problems.append(f"audio: {a.get('frames', 0)} frames (< 50)")
    rms = a.get("rms")
    if rms is None or not 0.5 * want <= rms <= 1.5 * want:
        problems.append(f"audio: RMS {rms} not within 50% of the sent {want:.0f}")
    if a.get("tone_fraction", 0) < 0.8:
        problems.append(f"audio: only {a.get('tone_fraction')} of the power near {args.tone_hz} Hz "
                        f"(peak at {a.get('peak_hz')} Hz)")
    size = f"{args.width}x{args.height}"
    if v.get("sizes", {}).get(size, 0) < 10:
        problems.append(f"video: {v.get('sizes', {}).get(size, 0)} frames of {size} (< 10); "
                        f"sizes seen {v.get('sizes')}")
    rgb = v.get("mean_rgb")
    if rgb is None or max(abs(x - y) for x, y in zip(rgb, args.rgb)) > 25:
        problems.append(f"video: mean colour {rgb}, sent {list(args.rgb)} (tolerance 25)")
    return problems


async def main(argv):
    args = parse_args(argv)
    t0 = time.monotonic()
    res = {"role": args.role}
    try:
        if args.main:
            res["node"] = join_via_main(args)
        res["url"] = args.url
        room, res["connect_ms"] = await connect(args)
    except Exception as e:
        res["error"] = f"connect failed: {type(e).__name__}: {e}"
        print(json.dumps(res), flush=True)
        return 2
    res["identity"] = room.local_participant.identity
    res["room"] = room.name
    log(f"{res['identity']} connected to {args.url} room {room.name} in {res['connect_ms']:.0f} ms")
    try:
        if args.role == "publish":
            res.update(await publish(room, args))
        else:
            res.update(await subscribe(room, args, t0))
    finally:
        await room.disconnect()
    rc = 0
    if args.role == "subscribe" and args.expect:
        res["problems"] = verdict(res, args)
        rc = 1 if res["problems"] or "error" in res else 0
    res["connect_ms"] = round(res["connect_ms"])
    print(json.dumps(res), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
