//! Main's recent membership changes (a node joined, went suspect, died, left, came back, was
//! forgotten), kept in a bounded ring for the status page and `GET /api/cluster/events`, and
//! counted in `airclass_cluster_node_state_changes_total`. One ring per process (a daemon runs
//! one main); the newest change is last.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::cluster::protocol::NodeState;

/// Changes kept.
pub const CAPACITY: usize = 100;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Unix time, milliseconds.
    pub at_ms: u64,
    pub node: String,
    /// `null` when the node was new to the table.
    pub from: Option<&'static str>,
    /// `alive`, `suspect`, `dead`, `left` or `forgotten`.
    pub to: &'static str,
}

static RING: Mutex<VecDeque<Event>> = Mutex::new(VecDeque::new());

/// Record that `node` went from `from` (None: unknown before) to `to` (None: forgotten).
pub fn record(node: &str, from: Option<NodeState>, to: Option<NodeState>) {
    if from.is_some() && from == to {
        return;
    }
    crate::metrics::node_state_changed(to);
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let ev = Event {
        at_ms,
        node: node.to_owned(),
        from: from.map(NodeState::as_str),
        to: to.map(NodeState::as_str).unwrap_or("forgotten"),
    };
    let mut ring = RING.lock().unwrap_or_else(|p| p.into_inner());
    if ring.len() == CAPACITY {
        ring.pop_front();
    }
    ring.push_back(ev);
}

/// The kept changes, oldest first.
pub fn recent() -> Vec<Event> {
    RING.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_ordered() {
        record("ring-a", None, Some(NodeState::Alive));
        record("ring-a", Some(NodeState::Alive), Some(NodeState::Alive));
        record("ring-a", Some(NodeState::Alive), Some(NodeState::Suspect));
        let mine: Vec<_> = recent()
            .into_iter()
            .filter(|e| e.node == "ring-a")
            .collect();
        assert_eq!(mine.len(), 2, "{mine:?}");
        assert_eq!(mine[0].from, None);
        assert_eq!(mine[1].to, "suspect");
        for i in 0..(CAPACITY + 10) {
            record(&format!("ring-b{i}"), Some(NodeState::Dead), None);
        }
        let all = recent();
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all.last().unwrap().node, format!("ring-b{}", CAPACITY + 9));
        assert_eq!(all.last().unwrap().to, "forgotten");
    }
}
