//! Main's membership table: which nodes exist, what they report and whether they are Alive,
//! Suspect, Dead or Left. Pure: every call takes `now` (on the one clock, `crate::clock`, so
//! paused-time tests drive it); no tasks, no I/O.
//!
//! Timing (all measured from the node's last register or heartbeat, `last_seen`):
//! - Suspect once `elapsed ≥ heartbeat + grace` (one heartbeat missed);
//! - Dead once `elapsed ≥ dead_after_missed × heartbeat + grace`;
//! - a Dead or Left node is forgotten (removed) `forget_after` after it became Dead or Left.
//!
//! `grace` (default `heartbeat / 2`) absorbs send jitter and network delay so a node that
//! heartbeats on time never flaps to Suspect. States only move towards Dead in [`Membership::tick`];
//! only a register or heartbeat brings a node back to Alive. Call `tick` often (every
//! `heartbeat / 4` or so): detection lags by at most one tick period.
//!
//! Identity: each sub process draws a random identity at start. A name held by a live (Alive or
//! Suspect) node cannot be taken by another identity; a Dead or Left node's name can.
//!
//! Bounds (a registered node may be hostile): at most [`MAX_NODES`] entries (a newcomer to a
//! full table takes the place of the longest-dead Dead or Left node, else it is refused
//! `table_full`); of each node's reported room names main keeps the first [`MAX_KEPT_ROOMS`]
//! within [`MAX_KEPT_ROOM_BYTES`] (the rest are counted in `rooms_dropped`; LiveKit's own
//! `room_node_map` still places them); [`MAX_RECENT`] recent placements. Every string is
//! bounded by the protocol's validation, so a node's record is a few KiB at most.
//!
//! Joins read the table without copying it: rooms and LiveKit node ids are indexed (a placed
//! room is found in O(1)), and [`Membership::slots`] hands out the placement candidates as one
//! shared list whose loads and states heartbeats update in place, so rendezvous hashing runs
//! without the table's lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::placement::{self, Candidate, CandidateView, Choice, Liveness};
use super::protocol::{
    ErrorCode, NodeInfo, NodeState, NodeStats, NodeView, RoomView, PROTOCOL_VERSION,
};
use crate::clock::Instant;

/// Most nodes the table holds, main included.
pub const MAX_NODES: usize = 1024;
/// Most room names main keeps per node.
pub const MAX_KEPT_ROOMS: usize = 64;
/// Most bytes of room names main keeps per node.
pub const MAX_KEPT_ROOM_BYTES: usize = 2048;
/// Most recent placements remembered (rooms placed but not yet in a heartbeat).
pub const MAX_RECENT: usize = 65_536;

/// Timings of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipConfig {
    heartbeat: Duration,
    grace: Duration,
    dead_after_missed: u32,
    forget_after: Duration,
    max_nodes: usize,
}

impl Default for MembershipConfig {
    /// 5 s heartbeats, grace 2.5 s, dead after 3 missed, forgotten after 300 s, 1024 nodes.
    fn default() -> Self {
        MembershipConfig::new(Duration::from_secs(5), 3, Duration::from_secs(300))
    }
}

impl MembershipConfig {
    /// `heartbeat` is clamped to ≥ 1 ms and `dead_after_missed` to ≥ 1; grace is `heartbeat / 2`.
    pub fn new(heartbeat: Duration, dead_after_missed: u32, forget_after: Duration) -> Self {
        let heartbeat = heartbeat.max(Duration::from_millis(1));
        MembershipConfig {
            heartbeat,
            grace: heartbeat / 2,
            dead_after_missed: dead_after_missed.max(1),
            forget_after,
            max_nodes: MAX_NODES,
        }
    }

    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn with_max_nodes(mut self, max_nodes: usize) -> Self {
        self.max_nodes = max_nodes;
        self
    }

    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// Silence after which a node is Suspect.
    pub fn suspect_after(&self) -> Duration {
        self.heartbeat.saturating_add(self.grace)
    }

    /// Silence after which a node is Dead.
    pub fn dead_after(&self) -> Duration {
        self.heartbeat
            .saturating_mul(self.dead_after_missed)
            .saturating_add(self.grace)
    }

    pub fn forget_after(&self) -> Duration {
        self.forget_after
    }

    /// How long a placement is remembered before the node's heartbeat reports the room.
    pub fn recent_for(&self) -> Duration {
        self.heartbeat.saturating_mul(3)
    }
}

/// A node as placement sees it, shared with joins: heartbeats update load and state in place.
#[derive(Debug)]
pub struct Slot {
    name: Box<str>,
    sysload: AtomicU64,
    liveness: AtomicU8,
}

fn liveness_of(s: NodeState) -> Liveness {
    match s {
        NodeState::Alive => Liveness::Alive,
        NodeState::Suspect => Liveness::Suspect,
        NodeState::Dead | NodeState::Left => Liveness::Down,
    }
}

impl Slot {
    fn new(name: &str, sysload: f64, state: NodeState) -> Self {
        let s = Slot {
            name: name.into(),
            sysload: AtomicU64::new(0),
            liveness: AtomicU8::new(0),
        };
        s.set(sysload, state);
        s
    }

    fn set(&self, sysload: f64, state: NodeState) {
        self.sysload.store(sysload.to_bits(), Ordering::Relaxed);
        self.set_state(state);
    }

    fn set_state(&self, state: NodeState) {
        let v = match liveness_of(state) {
            Liveness::Alive => 0,
            Liveness::Suspect => 1,
            Liveness::Down => 2,
        };
        self.liveness.store(v, Ordering::Relaxed);
    }
}

impl CandidateView for Slot {
    fn name(&self) -> &str {
        &self.name
    }

    fn sysload(&self) -> f64 {
        f64::from_bits(self.sysload.load(Ordering::Relaxed))
    }

    fn liveness(&self) -> Liveness {
        match self.liveness.load(Ordering::Relaxed) {
            0 => Liveness::Alive,
            1 => Liveness::Suspect,
            _ => Liveness::Down,
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    pub info: Arc<NodeInfo>,
    pub identity: String,
    /// As reported, room names bounded (see the module documentation).
    pub stats: Arc<NodeStats>,
    /// Room names reported beyond what main keeps.
    pub rooms_dropped: u32,
    pub state: NodeState,
    pub last_seen: Instant,
    /// When `state` was entered.
    pub state_since: Instant,
    pub registered_at: Instant,
    slot: Arc<Slot>,
}

impl NodeEntry {
    fn set_state(&mut self, state: NodeState, now: Instant) {
        self.state = state;
        self.state_since = now;
        self.slot.set_state(state);
    }
}

/// What a successful register did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The name was unknown.
    New,
    /// Same identity registered again (e.g. after main restarted or the node was declared dead).
    Refreshed { previous: NodeState },
    /// A new process took over the name of a Dead or Left node.
    Replaced { previous: NodeState },
}

impl RegisterOutcome {
    /// The state the node was in before (`None`: new to the table).
    pub fn previous(self) -> Option<NodeState> {
        match self {
            RegisterOutcome::New => None,
            RegisterOutcome::Refreshed { previous } | RegisterOutcome::Replaced { previous } => {
                Some(previous)
            }
        }
    }
}

/// A state change, for logging. `to == None` means the node was forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub name: String,
    pub from: NodeState,
    pub to: Option<NodeState>,
}

/// Why a membership call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("node name {name:?} is held by a live node with another identity")]
    NameTaken { name: String },
    #[error("node {name:?} is not registered (register again)")]
    UnknownNode { name: String },
    #[error("node {name:?} is registered with another identity")]
    IdentityMismatch { name: String },
    #[error("protocol version {got} is not supported (this main speaks {want})")]
    UnsupportedVersion { got: u32, want: u32 },
    #[error(
        "membership table is full: {max} nodes, every one alive or suspect (a cluster has at \
         most {max} nodes; a dead or left node's place is reused)"
    )]
    TableFull { max: usize },
}

impl MembershipError {
    /// The wire error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            MembershipError::NameTaken { .. } | MembershipError::IdentityMismatch { .. } => {
                ErrorCode::NameTaken
            }
            MembershipError::UnknownNode { .. } => ErrorCode::UnknownNode,
            MembershipError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            MembershipError::TableFull { .. } => ErrorCode::TableFull,
        }
    }
}

/// Node counts per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub alive: u32,
    pub suspect: u32,
    pub dead: u32,
    pub left: u32,
}

/// Keep the first names within [`MAX_KEPT_ROOMS`] and [`MAX_KEPT_ROOM_BYTES`]; how many dropped.
fn bound_rooms(stats: &mut NodeStats) -> u32 {
    let (mut n, mut bytes) = (0usize, 0usize);
    let before = stats.room_names.len();
    stats.room_names.retain(|r| {
        let keep = n < MAX_KEPT_ROOMS && bytes + r.len() <= MAX_KEPT_ROOM_BYTES;
        if keep {
            n += 1;
            bytes += r.len();
        }
        keep
    });
    u32::try_from(before - stats.room_names.len()).unwrap_or(u32::MAX)
}

/// name lists in an index, kept sorted (usually one name).
fn index_add(index: &mut HashMap<String, Vec<String>>, key: &str, name: &str) {
    let names = index.entry(key.to_owned()).or_default();
    if let Err(i) = names.binary_search_by(|n| n.as_str().cmp(name)) {
        names.insert(i, name.to_owned());
    }
}

fn index_remove(index: &mut HashMap<String, Vec<String>>, key: &str, name: &str) {
    if let Some(names) = index.get_mut(key) {
        names.retain(|n| n != name);
        if names.is_empty() {
            index.remove(key);
        }
    }
}

/// The table itself, ordered by node name.
#[derive(Debug, Clone)]
pub struct Membership {
    cfg: MembershipConfig,
    nodes: BTreeMap<String, NodeEntry>,
    /// room → the nodes whose kept room names include it.
    rooms: HashMap<String, Vec<String>>,
    /// LiveKit node id → the nodes that report it.
    livekit_ids: HashMap<String, Vec<String>>,
    /// room → (node, placed at): joins placed before the node's heartbeat reports the room.
    recent: HashMap<String, (String, Instant)>,
    /// Placement candidates, by name; rebuilt when a node is added or forgotten.
    slots: Arc<[Arc<Slot>]>,
}

impl Membership {
    pub fn new(cfg: MembershipConfig) -> Self {
        Membership {
            cfg,
            nodes: BTreeMap::new(),
            rooms: HashMap::new(),
            livekit_ids: HashMap::new(),
            recent: HashMap::new(),
            slots: Arc::from(Vec::new()),
        }
    }

    pub fn config(&self) -> &MembershipConfig {
        &self.cfg
    }

    fn rebuild_slots(&mut self) {
        self.slots = self.nodes.values().map(|e| e.slot.clone()).collect();
    }

    /// Index `stats` (the node's new report) in place of `old`.
    fn reindex(&mut self, name: &str, old: Option<&NodeStats>, new: Option<&NodeStats>) {
        let (old_rooms, new_rooms) = (
            old.map_or(&[][..], |s| &s.room_names[..]),
            new.map_or(&[][..], |s| &s.room_names[..]),
        );
        if old_rooms != new_rooms {
            for r in old_rooms {
                index_remove(&mut self.rooms, r, name);
            }
            for r in new_rooms {
                index_add(&mut self.rooms, r, name);
            }
        }
        let (old_id, new_id) = (
            old.and_then(|s| s.livekit_node_id.as_deref()),
            new.and_then(|s| s.livekit_node_id.as_deref()),
        );
        if old_id != new_id {
            if let Some(id) = old_id {
                index_remove(&mut self.livekit_ids, id, name);
            }
            if let Some(id) = new_id {
                index_add(&mut self.livekit_ids, id, name);
            }
        }
    }

    /// Make room for a newcomer in a full table: forget the longest-dead Dead or Left node.
    fn make_room(&mut self) -> Result<(), MembershipError> {
        if self.nodes.len() < self.cfg.max_nodes {
            return Ok(());
        }
        let oldest = self
            .nodes
            .values()
            .filter(|e| !e.state.is_live())
            .min_by_key(|e| e.state_since)
            .map(|e| e.info.name.clone());
        match oldest {
            Some(name) => {
                self.forget(&name);
                Ok(())
            }
            None => Err(MembershipError::TableFull {
                max: self.cfg.max_nodes,
            }),
        }
    }

    fn forget(&mut self, name: &str) {
        if let Some(e) = self.nodes.remove(name) {
            self.reindex(name, Some(&e.stats), None);
            self.rebuild_slots();
        }
    }

    /// Add or refresh a node (see the module documentation for the identity rules).
    pub fn register(
        &mut self,
        info: NodeInfo,
        identity: &str,
        mut stats: NodeStats,
        now: Instant,
    ) -> Result<RegisterOutcome, MembershipError> {
        if info.protocol_version != PROTOCOL_VERSION {
            return Err(MembershipError::UnsupportedVersion {
                got: info.protocol_version,
                want: PROTOCOL_VERSION,
            });
        }
        let outcome = match self.nodes.get(&info.name) {
            None => RegisterOutcome::New,
            Some(e) if e.identity == identity => RegisterOutcome::Refreshed { previous: e.state },
            Some(e) if e.state.is_live() => {
                return Err(MembershipError::NameTaken { name: info.name })
            }
            Some(e) => RegisterOutcome::Replaced { previous: e.state },
        };
        if outcome == RegisterOutcome::New {
            self.make_room()?;
        }
        let rooms_dropped = bound_rooms(&mut stats);
        // A refresh by the same process keeps its registration time (and, if it was Alive,
        // the time it became Alive); anything else starts afresh.
        let old = self.nodes.get(&info.name);
        let (registered_at, state_since) = match (outcome, old) {
            (RegisterOutcome::Refreshed { previous }, Some(e)) => {
                let since = if previous == NodeState::Alive {
                    e.state_since
                } else {
                    now
                };
                (e.registered_at, since)
            }
            _ => (now, now),
        };
        let slot = match old {
            Some(e) => e.slot.clone(),
            None => Arc::new(Slot::new(&info.name, stats.sysload, NodeState::Alive)),
        };
        slot.set(stats.sysload, NodeState::Alive);
        let old_stats = old.map(|e| e.stats.clone());
        let name = info.name.clone();
        self.reindex(&name, old_stats.as_deref(), Some(&stats));
        let entry = NodeEntry {
            info: Arc::new(info),
            identity: identity.to_owned(),
            stats: Arc::new(stats),
            rooms_dropped,
            state: NodeState::Alive,
            last_seen: now,
            state_since,
            registered_at,
            slot,
        };
        self.nodes.insert(name, entry);
        if outcome == RegisterOutcome::New {
            self.rebuild_slots();
        }
        Ok(outcome)
    }

    /// Record a heartbeat. Returns the node's state before it (anything but Alive means it came
    /// back). `UnknownNode` tells the sub to register again.
    pub fn heartbeat(
        &mut self,
        name: &str,
        identity: &str,
        mut stats: NodeStats,
        now: Instant,
    ) -> Result<NodeState, MembershipError> {
        let unknown = || MembershipError::UnknownNode {
            name: name.to_owned(),
        };
        let e = self.nodes.get_mut(name).ok_or_else(unknown)?;
        if e.state == NodeState::Left {
            return Err(unknown());
        }
        if e.identity != identity {
            return Err(if e.state.is_live() {
                MembershipError::IdentityMismatch {
                    name: name.to_owned(),
                }
            } else {
                unknown()
            });
        }
        let previous = e.state;
        if previous != NodeState::Alive {
            e.set_state(NodeState::Alive, now);
        }
        e.rooms_dropped = bound_rooms(&mut stats);
        e.slot.set(stats.sysload, NodeState::Alive);
        e.last_seen = e.last_seen.max(now);
        let old = std::mem::replace(&mut e.stats, Arc::new(stats));
        let new = e.stats.clone();
        self.reindex(name, Some(&old), Some(&new));
        Ok(previous)
    }

    /// Mark a node Left at once: it gets no rooms and is forgotten after `forget_after`.
    /// Returns the transition, or `None` if it had already left.
    pub fn leave(
        &mut self,
        name: &str,
        identity: &str,
        now: Instant,
    ) -> Result<Option<Transition>, MembershipError> {
        let e = self
            .nodes
            .get_mut(name)
            .ok_or_else(|| MembershipError::UnknownNode {
                name: name.to_owned(),
            })?;
        if e.identity != identity {
            return Err(MembershipError::IdentityMismatch {
                name: name.to_owned(),
            });
        }
        self.recent.retain(|_, (n, _)| n != name);
        let Some(e) = self.nodes.get_mut(name) else {
            return Ok(None);
        };
        if e.state == NodeState::Left {
            return Ok(None);
        }
        let from = e.state;
        e.set_state(NodeState::Left, now);
        Ok(Some(Transition {
            name: name.to_owned(),
            from,
            to: Some(NodeState::Left),
        }))
    }

    /// Age every node: Alive → Suspect → Dead by silence, Dead/Left → forgotten by time; forget
    /// placements older than [`MembershipConfig::recent_for`].
    pub fn tick(&mut self, now: Instant) -> Vec<Transition> {
        let (suspect_after, dead_after) = (self.cfg.suspect_after(), self.cfg.dead_after());
        let mut out = Vec::new();
        for (name, e) in &mut self.nodes {
            let silent = now.saturating_duration_since(e.last_seen);
            let next = match e.state {
                NodeState::Alive | NodeState::Suspect if silent >= dead_after => NodeState::Dead,
                NodeState::Alive if silent >= suspect_after => NodeState::Suspect,
                s => s,
            };
            if next != e.state {
                out.push(Transition {
                    name: name.clone(),
                    from: e.state,
                    to: Some(next),
                });
                e.set_state(next, now);
            }
        }
        let forget_after = self.cfg.forget_after;
        let expired: Vec<(String, NodeState)> = self
            .nodes
            .values()
            .filter(|e| {
                !e.state.is_live() && now.saturating_duration_since(e.state_since) >= forget_after
            })
            .map(|e| (e.info.name.clone(), e.state))
            .collect();
        for (name, from) in expired {
            self.forget(&name);
            out.push(Transition {
                name,
                from,
                to: None,
            });
        }
        let keep = self.cfg.recent_for();
        self.recent
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < keep);
        out
    }

    pub fn get(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes.get(name)
    }

    /// Does the table hold `name` with `identity` (a member, for the replay budgets)?
    pub fn is_member(&self, name: &str, identity: &str) -> bool {
        self.nodes.get(name).is_some_and(|e| e.identity == identity)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Alive and Suspect nodes, by name.
    pub fn live_nodes(&self) -> impl Iterator<Item = &NodeEntry> {
        self.nodes.values().filter(|e| e.state.is_live())
    }

    pub fn counts(&self) -> StateCounts {
        let mut c = StateCounts::default();
        for e in self.nodes.values() {
            match e.state {
                NodeState::Alive => c.alive += 1,
                NodeState::Suspect => c.suspect += 1,
                NodeState::Dead => c.dead += 1,
                NodeState::Left => c.left += 1,
            }
        }
        c
    }

    /// Placement candidates (copies): Alive → Alive, Suspect → Suspect, Dead/Left → Down.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.nodes
            .values()
            .map(|e| Candidate {
                name: e.info.name.clone(),
                sysload: e.stats.sysload,
                liveness: liveness_of(e.state),
            })
            .collect()
    }

    /// The same candidates without a copy: one shared list, its entries updated in place.
    pub fn slots(&self) -> Arc<[Arc<Slot>]> {
        self.slots.clone()
    }

    /// Of `names`, the Alive one first, else a Suspect one (by name either way).
    fn first_live<'a>(&'a self, names: &'a [String]) -> Option<&'a str> {
        let state = |n: &str| self.nodes.get(n).map(|e| e.state);
        let pick = |want: NodeState| {
            names
                .iter()
                .find(|n| state(n) == Some(want))
                .map(String::as_str)
        };
        pick(NodeState::Alive).or_else(|| pick(NodeState::Suspect))
    }

    /// The live node that reports `room` as live on it (Alive before Suspect, then by name).
    pub fn room_node(&self, room: &str) -> Option<&str> {
        self.first_live(self.rooms.get(room)?)
    }

    /// The live node whose LiveKit currently has the id `livekit_node_id` (from its heartbeats).
    pub fn node_by_livekit_id(&self, livekit_node_id: &str) -> Option<&str> {
        let names = self.livekit_ids.get(livekit_node_id)?;
        names
            .iter()
            .find(|n| self.nodes.get(*n).is_some_and(|e| e.state.is_live()))
            .map(String::as_str)
    }

    /// Remember that `room` was just placed on `node` (until its heartbeat reports it).
    pub fn note_placement(&mut self, room: &str, node: &str, now: Instant) {
        if let Some(e) = self.recent.get_mut(room) {
            if e.0 != node {
                node.clone_into(&mut e.0);
            }
            e.1 = now;
        } else if self.recent.len() < MAX_RECENT {
            self.recent.insert(room.to_owned(), (node.to_owned(), now));
        }
    }

    /// Where `room` is known to be: the live node that reports it, else a live node main placed
    /// it on within [`MembershipConfig::recent_for`] (that placement's time is refreshed).
    pub fn known_host(&mut self, room: &str, now: Instant) -> Option<&NodeEntry> {
        if let Some(n) = self.room_node(room) {
            return self.nodes.get(n);
        }
        let (node, at) = self.recent.get_mut(room)?;
        let e = self
            .nodes
            .get(node.as_str())
            .filter(|e| e.state.is_live())?;
        *at = now;
        Some(e)
    }

    /// Where `room` goes: its current live node if any, else rendezvous placement.
    pub fn place(&self, room: &str, sysload_limit: f64) -> Option<Choice> {
        placement::choose_with_existing(
            room,
            self.room_node(room),
            &self.candidates(),
            sysload_limit,
        )
    }

    /// Every room reported by a live node, labelled by node.
    pub fn rooms(&self) -> Vec<RoomView> {
        self.live_nodes()
            .flat_map(|e| {
                e.stats.room_names.iter().map(|r| RoomView {
                    name: r.clone(),
                    node: e.info.name.clone(),
                    num_participants: None,
                })
            })
            .collect()
    }

    /// The table as the API shows it (copies; see [`Membership::view_rows`]).
    pub fn snapshot(&self, now: Instant) -> Vec<NodeView> {
        self.view_rows(now)
            .into_iter()
            .map(|r| NodeView {
                name: r.info.name.clone(),
                state: r.state,
                info: (*r.info).clone(),
                stats: (*r.stats).clone(),
                last_seen_ms: r.last_seen_ms,
            })
            .collect()
    }

    /// The table as the API shows it, sharing the records (no copy under the lock).
    pub fn view_rows(&self, now: Instant) -> Vec<ViewRow> {
        self.nodes
            .values()
            .map(|e| ViewRow {
                state: e.state,
                info: e.info.clone(),
                stats: e.stats.clone(),
                last_seen_ms: u64::try_from(now.saturating_duration_since(e.last_seen).as_millis())
                    .unwrap_or(u64::MAX),
                rooms_dropped: e.rooms_dropped,
            })
            .collect()
    }
}

/// One row of the table as the API shows it; serialises exactly as a [`NodeView`].
#[derive(Debug, Clone)]
pub struct ViewRow {
    pub state: NodeState,
    pub info: Arc<NodeInfo>,
    pub stats: Arc<NodeStats>,
    pub last_seen_ms: u64,
    pub rooms_dropped: u32,
}

impl serde::Serialize for ViewRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let n = 5 + usize::from(self.rooms_dropped > 0);
        let mut st = s.serialize_struct("NodeView", n)?;
        st.serialize_field("name", &self.info.name)?;
        st.serialize_field("state", &self.state)?;
        st.serialize_field("info", &*self.info)?;
        st.serialize_field("stats", &*self.stats)?;
        st.serialize_field("last_seen_ms", &self.last_seen_ms)?;
        if self.rooms_dropped > 0 {
            st.serialize_field("rooms_dropped", &self.rooms_dropped)?;
        }
        st.end()
    }
}

#[cfg(test)]
mod tests;
