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

use std::collections::BTreeMap;
use std::time::Duration;

use super::placement::{self, Candidate, Choice, Liveness};
use super::protocol::{
    ErrorCode, NodeInfo, NodeState, NodeStats, NodeView, RoomView, PROTOCOL_VERSION,
};
use crate::clock::Instant;

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
    /// 5 s heartbeats, grace 2.5 s, dead after 3 missed, forgotten after 300 s, 4096 nodes.
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
            max_nodes: 4096,
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
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEntry {
    pub info: NodeInfo,
    pub identity: String,
    pub stats: NodeStats,
    pub state: NodeState,
    pub last_seen: Instant,
    /// When `state` was entered.
    pub state_since: Instant,
    pub registered_at: Instant,
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
    #[error("membership table is full ({max} nodes)")]
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
            MembershipError::TableFull { .. } => ErrorCode::Busy,
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

/// The table itself, ordered by node name.
#[derive(Debug, Clone)]
pub struct Membership {
    cfg: MembershipConfig,
    nodes: BTreeMap<String, NodeEntry>,
}

impl Membership {
    pub fn new(cfg: MembershipConfig) -> Self {
        Membership {
            cfg,
            nodes: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &MembershipConfig {
        &self.cfg
    }

    /// Add or refresh a node (see the module documentation for the identity rules).
    pub fn register(
        &mut self,
        info: NodeInfo,
        identity: &str,
        stats: NodeStats,
        now: Instant,
    ) -> Result<RegisterOutcome, MembershipError> {
        if info.protocol_version != PROTOCOL_VERSION {
            return Err(MembershipError::UnsupportedVersion {
                got: info.protocol_version,
                want: PROTOCOL_VERSION,
            });
        }
        let outcome = match self.nodes.get(&info.name) {
            None if self.nodes.len() >= self.cfg.max_nodes => {
                return Err(MembershipError::TableFull {
                    max: self.cfg.max_nodes,
                })
            }
            None => RegisterOutcome::New,
            Some(e) if e.identity == identity => RegisterOutcome::Refreshed { previous: e.state },
            Some(e) if e.state.is_live() => {
                return Err(MembershipError::NameTaken { name: info.name })
            }
            Some(e) => RegisterOutcome::Replaced { previous: e.state },
        };
        // A refresh by the same process keeps its registration time (and, if it was Alive,
        // the time it became Alive); anything else starts afresh.
        let (registered_at, state_since) = match (outcome, self.nodes.get(&info.name)) {
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
        let entry = NodeEntry {
            info,
            identity: identity.to_owned(),
            stats,
            state: NodeState::Alive,
            last_seen: now,
            state_since,
            registered_at,
        };
        self.nodes.insert(entry.info.name.clone(), entry);
        Ok(outcome)
    }

    /// Record a heartbeat. Returns the node's state before it (anything but Alive means it came
    /// back). `UnknownNode` tells the sub to register again.
    pub fn heartbeat(
        &mut self,
        name: &str,
        identity: &str,
        stats: NodeStats,
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
            e.state = NodeState::Alive;
            e.state_since = now;
        }
        e.stats = stats;
        e.last_seen = e.last_seen.max(now);
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
        if e.state == NodeState::Left {
            return Ok(None);
        }
        let from = e.state;
        e.state = NodeState::Left;
        e.state_since = now;
        Ok(Some(Transition {
            name: name.to_owned(),
            from,
            to: Some(NodeState::Left),
        }))
    }

    /// Age every node: Alive → Suspect → Dead by silence, Dead/Left → forgotten by time.
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
                e.state = next;
                e.state_since = now;
            }
        }
        let forget_after = self.cfg.forget_after;
        self.nodes.retain(|name, e| {
            let expired =
                !e.state.is_live() && now.saturating_duration_since(e.state_since) >= forget_after;
            if expired {
                out.push(Transition {
                    name: name.clone(),
                    from: e.state,
                    to: None,
                });
            }
            !expired
        });
        out
    }

    pub fn get(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes.get(name)
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

    /// Placement candidates: Alive → Alive, Suspect → Suspect, Dead/Left → Down.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.nodes
            .values()
            .map(|e| Candidate {
                name: e.info.name.clone(),
                sysload: e.stats.sysload,
                liveness: match e.state {
                    NodeState::Alive => Liveness::Alive,
                    NodeState::Suspect => Liveness::Suspect,
                    NodeState::Dead | NodeState::Left => Liveness::Down,
                },
            })
            .collect()
    }

    /// The live node that reports `room` as live on it (Alive before Suspect, then by name).
    pub fn room_node(&self, room: &str) -> Option<&str> {
        let hosts = || {
            self.live_nodes()
                .filter(|e| e.stats.room_names.iter().any(|r| r == room))
        };
        hosts()
            .find(|e| e.state == NodeState::Alive)
            .or_else(|| hosts().next())
            .map(|e| e.info.name.as_str())
    }

    /// The live node whose LiveKit currently has the id `livekit_node_id` (from its heartbeats).
    pub fn node_by_livekit_id(&self, livekit_node_id: &str) -> Option<&str> {
        self.live_nodes()
            .find(|e| e.stats.livekit_node_id.as_deref() == Some(livekit_node_id))
            .map(|e| e.info.name.as_str())
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

    /// The table as the API shows it.
    pub fn snapshot(&self, now: Instant) -> Vec<NodeView> {
        self.nodes
            .values()
            .map(|e| NodeView {
                name: e.info.name.clone(),
                state: e.state,
                info: e.info.clone(),
                stats: e.stats.clone(),
                last_seen_ms: u64::try_from(now.saturating_duration_since(e.last_seen).as_millis())
                    .unwrap_or(u64::MAX),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
