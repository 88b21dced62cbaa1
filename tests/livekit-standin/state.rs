//! Node state of the livekit-server stand-in (TEST DOUBLE): node ID, stats freshness, drain
//! flag, in-memory rooms with fake participants, and their mirror in Redis (CONTRACT §4, §8).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use livekit_protocol::{
    participant_info, Node, NodeState, NodeStats, NodeType, ParticipantInfo, Room,
};
use prost::Message;
use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::config::Effective;
use crate::log;
use crate::redisio::RedisLink;

/// Version the stand-in reports.
pub const VERSION: &str = "1.13.5-standin";

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `<prefix>` + 12 random alphanumerics, as livekit's `guid.New`.
pub fn random_id(prefix: &str) -> String {
    let tail: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(12)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}

/// The real room's `ProtoProxy` refresh interval: `num_participants` in ListRooms lags.
const ROOM_UPDATE: Duration = Duration::from_secs(5);

/// One room and its fake participants. `Room.num_participants` is refreshed like the real
/// server's room proto: at once when the last refresh is over 5 s old, else at the room's
/// next 5 s tick (so a join can take up to ~5 s to show in ListRooms).
#[derive(Debug, Clone)]
pub struct RoomEntry {
    pub room: Room,
    pub participants: Vec<ParticipantInfo>,
    created: Instant,
    refreshed_at: Instant,
    dirty_since: Option<Instant>,
    /// `num_participants` last written to Redis `rooms`.
    stored: Option<u32>,
}

impl RoomEntry {
    pub fn new(room: Room) -> Self {
        let now = Instant::now();
        Self {
            room,
            participants: Vec::new(),
            created: now,
            refreshed_at: now,
            dirty_since: None,
            stored: None,
        }
    }

    fn refresh(&mut self, at: Instant) {
        self.room.num_participants = self.participants.len() as u32;
        self.refreshed_at = at;
        self.dirty_since = None;
    }

    /// The participant list changed.
    pub fn mark_dirty(&mut self) {
        let now = Instant::now();
        self.dirty_since.get_or_insert(now);
        if now.duration_since(self.refreshed_at) > ROOM_UPDATE {
            self.refresh(now);
        }
    }

    /// The room as ListRooms shows it now.
    pub fn view(&mut self) -> Room {
        if let Some(since) = self.dirty_since {
            let mut tick = self.created + ROOM_UPDATE;
            while tick <= since || tick.duration_since(self.refreshed_at) < ROOM_UPDATE {
                tick += ROOM_UPDATE;
            }
            if tick <= Instant::now() {
                self.refresh(tick);
            }
        }
        self.room.clone()
    }
}

/// Everything the HTTP handlers, the stats ticker and the shutdown path share.
pub struct Shared {
    pub cfg: Effective,
    pub node_id: String,
    pub started_at: i64,
    pub num_cpus: u32,
    /// `stats.updated_at` (unix s): health is 200 while this is under 4 s old.
    pub stats_updated_at: AtomicI64,
    pub draining: AtomicBool,
    pub force_stale: AtomicBool,
    /// The first `nodes` entry carries only started_at/updated_at; full stats from the 1st tick.
    full_stats: AtomicBool,
    pub rooms: Mutex<BTreeMap<String, RoomEntry>>,
    pub redis: Option<tokio::sync::Mutex<RedisLink>>,
}

impl Shared {
    pub fn new(cfg: Effective, redis: Option<RedisLink>, num_cpus: u32) -> Self {
        let now = now_secs();
        let force_stale =
            std::env::var_os("STANDIN_STALE_HEALTH").is_some_and(|v| !v.is_empty() && v != "0");
        Self {
            cfg,
            node_id: random_id("ND_"),
            started_at: now,
            num_cpus,
            stats_updated_at: AtomicI64::new(now),
            draining: AtomicBool::new(false),
            force_stale: AtomicBool::new(force_stale),
            full_stats: AtomicBool::new(false),
            rooms: Mutex::new(BTreeMap::new()),
            redis: redis.map(tokio::sync::Mutex::new),
        }
    }

    pub fn rooms_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RoomEntry>> {
        // A poisoned lock only means a handler panicked; the data is still usable for a stand-in.
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn total_participants(&self) -> usize {
        self.rooms_lock()
            .values()
            .map(|r| r.participants.len())
            .sum()
    }

    /// The node record written to Redis `nodes`.
    pub fn node_record(&self) -> Node {
        let (num_rooms, num_clients) = {
            let rooms = self.rooms_lock();
            (
                rooms.len() as i32,
                rooms.values().map(|r| r.participants.len() as i32).sum(),
            )
        };
        let load = read_loadavg();
        let updated_at = self.stats_updated_at.load(Ordering::Relaxed);
        #[allow(deprecated)]
        let stats = if !self.full_stats.load(Ordering::Relaxed) {
            NodeStats {
                started_at: self.started_at,
                updated_at,
                ..Default::default()
            }
        } else {
            NodeStats {
                started_at: self.started_at,
                updated_at,
                num_rooms,
                num_clients,
                num_cpus: self.num_cpus,
                load_avg_last1min: load.0,
                load_avg_last5min: load.1,
                load_avg_last15min: load.2,
                ..Default::default()
            }
        };
        let state = if self.draining.load(Ordering::Relaxed) {
            NodeState::ShuttingDown
        } else {
            NodeState::Serving
        };
        Node {
            id: self.node_id.clone(),
            ip: self.cfg.node_ip.primary(),
            num_cpus: self.num_cpus,
            stats: Some(stats),
            r#type: NodeType::Server as i32,
            state: state as i32,
            region: self.cfg.region.clone(),
        }
    }

    /// HSET `nodes` with the current record (errors are logged, not fatal).
    pub async fn publish_node(&self) -> bool {
        let Some(redis) = &self.redis else {
            return true;
        };
        let bytes = self.node_record().encode_to_vec();
        let mut link = redis.lock().await;
        match link.hset("nodes", &self.node_id, &bytes).await {
            Ok(()) => true,
            Err(e) => {
                log::log(
                    log::Level::Warn,
                    "routing/redisrouter.go:162",
                    "could not update node",
                    &[("error", e.to_string().into())],
                );
                false
            }
        }
    }

    /// One stats tick: without Redis always fresh; with Redis only when PING succeeds.
    /// Room counts refreshed since they were last stored are written to Redis `rooms`.
    pub async fn stats_tick(&self) {
        self.full_stats.store(true, Ordering::Relaxed);
        match &self.redis {
            None => self.stats_updated_at.store(now_secs(), Ordering::Relaxed),
            Some(redis) => {
                let ok = redis.lock().await.ping().await.is_ok();
                if ok {
                    self.stats_updated_at.store(now_secs(), Ordering::Relaxed);
                    self.publish_node().await;
                }
            }
        }
        let changed: Vec<Room> = self
            .rooms_lock()
            .values_mut()
            .filter_map(|e| {
                let view = e.view();
                (e.stored != Some(view.num_participants)).then_some(view)
            })
            .collect();
        for room in changed {
            self.store_room(&room).await;
        }
    }

    /// Writes a room to `rooms` and `room_node_map` when Redis is configured.
    pub async fn store_room(&self, room: &Room) {
        if let Some(e) = self.rooms_lock().get_mut(&room.name) {
            e.stored = Some(room.num_participants);
        }
        if let Some(redis) = &self.redis {
            let mut link = redis.lock().await;
            let r1 = link.hset("rooms", &room.name, &room.encode_to_vec()).await;
            let r2 = link
                .hset("room_node_map", &room.name, self.node_id.as_bytes())
                .await;
            if let Some(e) = r1.err().or(r2.err()) {
                log::log(
                    log::Level::Warn,
                    "service/redisstore.go:130",
                    "could not store room",
                    &[
                        ("room", room.name.clone().into()),
                        ("error", e.to_string().into()),
                    ],
                );
            }
        }
    }

    pub async fn forget_room(&self, name: &str) {
        if let Some(redis) = &self.redis {
            let mut link = redis.lock().await;
            let _ = link.hdel("rooms", name).await;
            let _ = link.hdel("room_node_map", name).await;
        }
    }

    /// Builds a new room record with config defaults.
    pub fn new_room(
        &self,
        name: &str,
        empty_timeout: u32,
        departure_timeout: u32,
        max: u32,
        metadata: &str,
    ) -> Room {
        let now_ms = now_millis();
        Room {
            sid: random_id("RM_"),
            name: name.to_string(),
            empty_timeout: if empty_timeout == 0 {
                self.cfg.room_empty_timeout
            } else {
                empty_timeout
            },
            departure_timeout: if departure_timeout == 0 {
                self.cfg.room_departure_timeout
            } else {
                departure_timeout
            },
            max_participants: if max == 0 {
                self.cfg.room_max_participants
            } else {
                max
            },
            creation_time: now_ms / 1000,
            creation_time_ms: now_ms,
            metadata: metadata.to_string(),
            ..Default::default()
        }
    }

    /// Stand-in only: sets the number of fake participants in `room` (creating the room).
    /// Returns the updated room.
    pub fn set_fake_participants(&self, room: &str, count: usize) -> Room {
        self.set_fake_participants_named(room, count, None)
    }

    /// As [`Shared::set_fake_participants`]; new participants are named after `identity`.
    pub fn set_fake_participants_named(
        &self,
        room: &str,
        count: usize,
        identity: Option<&str>,
    ) -> Room {
        let mut rooms = self.rooms_lock();
        let entry = rooms
            .entry(room.to_string())
            .or_insert_with(|| RoomEntry::new(self.new_room(room, 0, 0, 0, "")));
        entry.participants.truncate(count);
        while entry.participants.len() < count {
            let n = entry.participants.len();
            let now_ms = now_millis();
            entry.participants.push(ParticipantInfo {
                sid: random_id("PA_"),
                identity: match (identity, n) {
                    (Some(id), 0) => id.to_string(),
                    (Some(id), n) => format!("{id}-{n}"),
                    (None, n) => format!("standin-participant-{n}"),
                },
                name: format!("Stand-in participant {n}"),
                state: participant_info::State::Active as i32,
                joined_at: now_ms / 1000,
                joined_at_ms: now_ms,
                kind: participant_info::Kind::Standard as i32,
                region: self.cfg.region.clone(),
                ..Default::default()
            });
        }
        entry.mark_dirty();
        entry.view()
    }
}

fn read_loadavg() -> (f32, f32, f32) {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|s| s.parse::<f32>().unwrap_or(0.0));
    (
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    )
}
