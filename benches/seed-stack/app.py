"""BENCHMARK PEER, never shipped: the seed's FastAPI design of main's join path, for the
side-by-side figures of `cargo bench --bench joins` (docs/benchmarks.md).

What the seed document describes (shared/brief/seed.md, seed-original-ko.md): a FastAPI process
whose `ClusterManager` registers sub nodes, takes their statistics from HMAC-SHA256-signed
heartbeats every 5 s, and places a classroom with rendezvous hashing, `hash(stream_id:node_id)`
maximal, among nodes under `sysload_limit` 0.7; the LiveKit token comes from the official Python
`livekit-api` package. This file is that, minimal and in-memory, served by uvicorn (uvloop,
httptools), one worker (the node table lives in the process, as in the seed):

- POST /api/cluster/register, /api/cluster/heartbeat: the same signed requests our main takes
  (HMAC-SHA256 over the canonical string of docs/protocol.md §2, so one bench client drives both);
- POST /api/rooms/{room}/join: Bearer application token (SHA-256 compared in constant time),
  rendezvous over the live registered nodes on every join, an AccessToken with the role's grants.

Configuration from the environment: SEED_SECRET_FILE (cluster secret), SEED_APP_TOKEN_SHA256,
LIVEKIT_API_KEY, LIVEKIT_API_SECRET. Nothing here is used by the product.
"""

import hashlib
import hmac
import os
import time
from datetime import timedelta

from fastapi import FastAPI, HTTPException, Request
from livekit import api

SECRET = open(os.environ["SEED_SECRET_FILE"], "rb").read().strip()
APP_TOKEN_SHA256 = os.environ["SEED_APP_TOKEN_SHA256"]
API_KEY = os.environ["LIVEKIT_API_KEY"]
API_SECRET = os.environ["LIVEKIT_API_SECRET"]
SYSLOAD_LIMIT = 0.7
HEARTBEAT_SECS = 5
DEAD_AFTER = 3 * HEARTBEAT_SECS + HEARTBEAT_SECS / 2
MAX_SKEW = 30

app = FastAPI()
nodes = {}  # name -> {"info": ..., "stats": ..., "last_seen": monotonic seconds}
seen_nonces = {}  # nonce -> expiry (unix seconds)


def verify(request: Request, body: bytes) -> None:
    h = request.headers
    ts, nonce, sig = h.get("x-airclass-timestamp"), h.get("x-airclass-nonce"), h.get("x-airclass-signature")
    if not (ts and nonce and sig and h.get("x-airclass-node")):
        raise HTTPException(401, "bad_signature")
    if abs(int(ts) - time.time()) > MAX_SKEW:
        raise HTTPException(401, "skew")
    canonical = "\n".join(
        ["AIRCLASS-HMAC-SHA256", request.method, request.url.path, ts, nonce, hashlib.sha256(body).hexdigest()]
    )
    want = hmac.new(SECRET, canonical.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, sig):
        raise HTTPException(401, "bad_signature")
    now = time.time()
    if nonce in seen_nonces:
        raise HTTPException(401, "replay")
    if len(seen_nonces) > 100_000:
        for n in [n for n, exp in seen_nonces.items() if exp < now]:
            del seen_nonces[n]
    seen_nonces[nonce] = int(ts) + MAX_SKEW


@app.post("/api/cluster/register")
async def register(request: Request):
    body = await request.body()
    verify(request, body)
    msg = await request.json()
    nodes[msg["node"]["name"]] = {"info": msg["node"], "stats": msg["stats"], "last_seen": time.monotonic()}
    return {"accepted": True, "heartbeat_secs": HEARTBEAT_SECS, "main_name": "main", "protocol_version": 1}


@app.post("/api/cluster/heartbeat")
async def heartbeat(request: Request):
    body = await request.body()
    verify(request, body)
    msg = await request.json()
    node = nodes.get(msg["name"])
    if node is None:
        raise HTTPException(404, "unknown_node")
    node["stats"], node["last_seen"] = msg["stats"], time.monotonic()
    return {"accepted": True, "heartbeat_secs": HEARTBEAT_SECS}


def rendezvous(room: str):
    """hash(stream_id:node_id), the highest wins; nodes under the sysload limit first."""
    now = time.monotonic()
    alive = [(n, v) for n, v in nodes.items() if now - v["last_seen"] < DEAD_AFTER]
    under = [(n, v) for n, v in alive if v["stats"]["sysload"] < SYSLOAD_LIMIT] or alive
    best, best_score = None, -1
    for name, v in under:
        score = int.from_bytes(hashlib.sha256(f"{room}:{name}".encode()).digest()[:8], "big")
        if score > best_score:
            best, best_score = (name, v), score
    return best


@app.post("/api/rooms/{room}/join")
async def join(room: str, request: Request):
    auth = request.headers.get("authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else ""
    if not hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), APP_TOKEN_SHA256):
        raise HTTPException(401, "unauthorized")
    req = await request.json()
    chosen = rendezvous(room)
    if chosen is None:
        raise HTTPException(503, "no_node")
    name, node = chosen
    teacher = req.get("role") == "teacher"
    grants = api.VideoGrants(room_join=True, room=room, can_publish=teacher, can_subscribe=True, can_publish_data=True)
    jwt = (
        api.AccessToken(API_KEY, API_SECRET)
        .with_identity(req["identity"])
        .with_name(req.get("name", ""))
        .with_ttl(timedelta(hours=6))
        .with_grants(grants)
        .to_jwt()
    )
    return {
        "room": room,
        "node": name,
        "livekit_url": node["info"]["livekit_url"],
        "token": jwt,
        "expires_at": int(time.time()) + 6 * 3600,
    }
