//! Room placement by rendezvous (highest-random-weight) hashing. Pure: no I/O, no clock, no
//! randomness; the same inputs give the same node on every build and every machine.
//!
//! `score(room, node)` is the first 8 bytes, read big-endian as a `u64`, of
//! `SHA-256(room_utf8 ‖ 0x00 ‖ node_utf8)`. Node names never contain NUL (see
//! `protocol::validate_node_name`), so the encoding is unambiguous. The room goes to the node with
//! the highest score; equal scores go to the lexicographically smallest node name.
//!
//! Eligibility, in order (like LiveKit's system-load selector, which falls back to every
//! available node when all are over the limit):
//! 1. Alive nodes with `sysload < limit` (a NaN sysload counts as overloaded);
//! 2. otherwise every Alive node;
//! 3. otherwise every Suspect node;
//! 4. otherwise nothing (`None`).
//!
//! [`choose_with_existing`] first keeps a room on the node where it is already live (Alive or
//! Suspect), whatever its load, so a classroom is never split across two nodes.

use sha2::{Digest, Sha256};

/// Placement-relevant liveness of a candidate node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Missed a heartbeat: keeps its rooms; new rooms only when no node is Alive.
    Suspect,
    /// Dead, left or otherwise unusable: never chosen.
    Down,
}

impl Liveness {
    fn is_live(self) -> bool {
        matches!(self, Liveness::Alive | Liveness::Suspect)
    }
}

/// A node that might host a room.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    /// `load1 / num_cpus` as last reported.
    pub sysload: f64,
    pub liveness: Liveness,
}

impl Candidate {
    /// An Alive candidate.
    pub fn alive(name: impl Into<String>, sysload: f64) -> Self {
        Candidate {
            name: name.into(),
            sysload,
            liveness: Liveness::Alive,
        }
    }
}

/// Why a node was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The room is already live there.
    Sticky,
    /// Highest score among Alive nodes under the sysload limit.
    UnderLimit,
    /// Every Alive node is at or over the limit: highest score among all Alive nodes.
    AllOverloaded,
    /// No Alive node: highest score among Suspect nodes.
    SuspectOnly,
}

/// The outcome of a placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub node: String,
    pub score: u64,
    pub reason: Reason,
}

/// Rendezvous score of `node` for `room` (see the module documentation).
pub fn score(room: &str, node: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(room.as_bytes())
        .chain_update([0u8])
        .chain_update(node.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Does `(name_a, score_a)` rank above `(name_b, score_b)`? Higher score, then smaller name.
fn ranks_above(name_a: &str, score_a: u64, name_b: &str, score_b: u64) -> bool {
    score_a > score_b || (score_a == score_b && name_a < name_b)
}

fn best<'a>(room: &str, it: impl Iterator<Item = &'a Candidate>) -> Option<(&'a Candidate, u64)> {
    it.map(|c| (c, score(room, &c.name)))
        .fold(None, |acc, (c, s)| match acc {
            Some((b, bs)) if !ranks_above(&c.name, s, &b.name, bs) => Some((b, bs)),
            _ => Some((c, s)),
        })
}

/// Choose a node for a new room (no stickiness). `None` when no candidate is live.
pub fn choose(room: &str, candidates: &[Candidate], sysload_limit: f64) -> Option<Choice> {
    let alive = || candidates.iter().filter(|c| c.liveness == Liveness::Alive);
    let pick = |found: Option<(&Candidate, u64)>, reason| {
        found.map(|(c, score)| Choice {
            node: c.name.clone(),
            score,
            reason,
        })
    };
    pick(
        best(room, alive().filter(|c| c.sysload < sysload_limit)),
        Reason::UnderLimit,
    )
    .or_else(|| pick(best(room, alive()), Reason::AllOverloaded))
    .or_else(|| {
        let suspect = candidates
            .iter()
            .filter(|c| c.liveness == Liveness::Suspect);
        pick(best(room, suspect), Reason::SuspectOnly)
    })
}

/// Choose a node for `room`, keeping it on `existing_node` when that node is a live candidate.
pub fn choose_with_existing(
    room: &str,
    existing_node: Option<&str>,
    candidates: &[Candidate],
    sysload_limit: f64,
) -> Option<Choice> {
    if let Some(existing) = existing_node {
        if candidates
            .iter()
            .any(|c| c.name == existing && c.liveness.is_live())
        {
            return Some(Choice {
                node: existing.to_owned(),
                score: score(room, existing),
                reason: Reason::Sticky,
            });
        }
    }
    choose(room, candidates, sysload_limit)
}

/// Deterministic candidates for benchmarks: `node-0 … node-(n-1)`, sysload cycling 0.0…0.9
/// (so 30 % are over the default 0.7 limit), all Alive.
pub fn synthetic_candidates(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate::alive(format!("node-{i}"), (i % 10) as f64 / 10.0))
        .collect()
}

/// Benchmark body: place `rooms` rooms (`room-0`, `room-1`, …) on `nodes`, returning a
/// checksum of the winning scores so the work cannot be optimised away. Time it from the caller.
pub fn bench_place_rooms(nodes: &[Candidate], rooms: usize, sysload_limit: f64) -> u64 {
    (0..rooms).fold(0u64, |acc, i| {
        let room = format!("room-{i}");
        acc ^ choose(&room, nodes, sysload_limit).map_or(0, |c| c.score)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    // Computed independently with Python:
    // int.from_bytes(hashlib.sha256(room.encode() + b"\0" + node.encode()).digest()[:8], "big")
    const GOLDEN: [(&str, &str, u64); 8] = [
        ("physics-101", "main", 5349033575531640053),
        ("physics-101", "node-1", 5472566872636905298),
        ("physics-101", "node-2", 15259590332721934056),
        ("maths", "main", 8267939721281924467),
        ("maths", "node-1", 12869513388362640313),
        ("maths", "node-2", 7092727381855334216),
        ("", "", 7940984811893783192),
        ("Ünïcødé room", "node-15", 9088443950904899757),
    ];

    fn three() -> Vec<Candidate> {
        ["main", "node-1", "node-2"]
            .iter()
            .map(|n| Candidate::alive(*n, 0.1))
            .collect()
    }

    #[test]
    fn golden_scores() {
        for (room, node, want) in GOLDEN {
            assert_eq!(score(room, node), want, "score({room:?}, {node:?})");
        }
        assert_eq!(score("physics-101", "node-2"), 0xd3c4_f48f_0fe0_2ee8);
    }

    #[test]
    fn golden_choices() {
        // physics-101: node-2 has the highest score; maths: node-1.
        let c = choose("physics-101", &three(), 0.7).unwrap();
        assert_eq!((c.node.as_str(), c.reason), ("node-2", Reason::UnderLimit));
        assert_eq!(choose("maths", &three(), 0.7).unwrap().node, "node-1");
    }

    #[test]
    fn overloaded_winner_is_skipped_then_fallback() {
        let mut c = three();
        c[2].sysload = 0.9; // node-2, physics-101's favourite
        let got = choose("physics-101", &c, 0.7).unwrap();
        assert_eq!(
            (got.node.as_str(), got.reason),
            ("node-1", Reason::UnderLimit)
        );
        for x in &mut c {
            x.sysload = 0.7; // "at the limit" counts as overloaded
        }
        let got = choose("physics-101", &c, 0.7).unwrap();
        assert_eq!(
            (got.node.as_str(), got.reason),
            ("node-2", Reason::AllOverloaded)
        );
        c[2].sysload = f64::NAN;
        c[0].sysload = 0.1;
        assert_eq!(choose("physics-101", &c, 0.7).unwrap().node, "main");
    }

    #[test]
    fn liveness_rules() {
        let mut c = three();
        c[2].liveness = Liveness::Down;
        assert_eq!(choose("physics-101", &c, 0.7).unwrap().node, "node-1");
        c[0].liveness = Liveness::Suspect;
        c[1].liveness = Liveness::Suspect;
        let got = choose("physics-101", &c, 0.7).unwrap();
        assert_eq!(
            (got.node.as_str(), got.reason),
            ("node-1", Reason::SuspectOnly)
        );
        c[0].liveness = Liveness::Down;
        c[1].liveness = Liveness::Down;
        assert_eq!(choose("physics-101", &c, 0.7), None);
        assert_eq!(choose("physics-101", &[], 0.7), None);
    }

    #[test]
    fn sticky_rules() {
        let mut c = three();
        c[0].sysload = 5.0;
        let got = choose_with_existing("physics-101", Some("main"), &c, 0.7).unwrap();
        assert_eq!((got.node.as_str(), got.reason), ("main", Reason::Sticky));
        c[0].liveness = Liveness::Suspect;
        assert_eq!(
            choose_with_existing("physics-101", Some("main"), &c, 0.7)
                .unwrap()
                .node,
            "main"
        );
        c[0].liveness = Liveness::Down;
        let got = choose_with_existing("physics-101", Some("main"), &c, 0.7).unwrap();
        assert_eq!(
            (got.node.as_str(), got.reason),
            ("node-2", Reason::UnderLimit)
        );
        let got = choose_with_existing("physics-101", Some("gone"), &c, 0.7).unwrap();
        assert_eq!(got.node, "node-2");
    }

    #[test]
    fn ties_go_to_the_smaller_name() {
        assert!(ranks_above("a", 5, "b", 5));
        assert!(!ranks_above("b", 5, "a", 5));
        assert!(ranks_above("z", 6, "a", 5));
        assert!(!ranks_above("a", 4, "z", 5));
        assert!(!ranks_above("a", 5, "a", 5));
        // Duplicate names give equal scores; the choice is still deterministic.
        let same = vec![Candidate::alive("x", 0.0), Candidate::alive("x", 0.5)];
        assert_eq!(choose("r", &same, 0.7).unwrap().node, "x");
    }

    fn counts(nodes: &[Candidate], rooms: usize) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for i in 0..rooms {
            let c = choose(&format!("room-{i}"), nodes, 0.7).unwrap();
            *m.entry(c.node).or_insert(0) += 1;
        }
        m
    }

    #[test]
    fn balance_across_fixed_clusters() {
        for n in [3usize, 5, 10] {
            let nodes: Vec<_> = (0..n)
                .map(|i| Candidate::alive(format!("node-{i}"), 0.0))
                .collect();
            let rooms = 20_000;
            let m = counts(&nodes, rooms);
            let expect = rooms as f64 / n as f64;
            assert_eq!(m.len(), n);
            for (node, k) in m {
                let dev = (k as f64 - expect).abs() / expect;
                assert!(
                    dev < 0.10,
                    "{n} nodes: {node} got {k}, expected {expect:.0}"
                );
            }
        }
    }

    #[test]
    fn synthetic_candidates_shape() {
        let c = synthetic_candidates(100);
        assert_eq!(c.len(), 100);
        assert_eq!(c.iter().filter(|c| c.sysload >= 0.7).count(), 30);
        let got = choose("room", &c, 0.7).unwrap();
        assert_eq!(got.reason, Reason::UnderLimit);
        let want = (0..50).fold(0, |acc, i| {
            acc ^ choose(&format!("room-{i}"), &c, 0.7).unwrap().score
        });
        assert_eq!(bench_place_rooms(&c, 50, 0.7), want);
        assert_ne!(want, 0);
    }

    fn node_set() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set("node-[0-9]{1,3}", 2..12)
            .prop_map(|s| s.into_iter().collect())
    }

    fn rooms() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[a-z0-9 _-]{1,24}", 1..150)
    }

    fn alive(names: &[String]) -> Vec<Candidate> {
        names
            .iter()
            .map(|n| Candidate::alive(n.clone(), 0.0))
            .collect()
    }

    proptest! {
        #[test]
        fn deterministic_and_order_independent(names in node_set(), rooms in rooms(), rot in 0usize..12) {
            let c = alive(&names);
            let mut rotated = c.clone();
            rotated.rotate_left(rot % c.len());
            rotated.reverse();
            for r in &rooms {
                let a = choose(r, &c, 0.7);
                prop_assert_eq!(&a, &choose(r, &c, 0.7));
                prop_assert_eq!(&a, &choose(r, &rotated, 0.7));
            }
        }

        #[test]
        fn sticky_while_membership_stable(names in node_set(), rooms in rooms(), joiner in "node-[0-9]{4}") {
            let c = alive(&names);
            for r in &rooms {
                let first = choose(r, &c, 0.7).unwrap().node;
                prop_assert_eq!(&choose_with_existing(r, Some(&first), &c, 0.7).unwrap().node, &first);
                // A newcomer does not steal a live room either.
                let mut grown = c.clone();
                grown.push(Candidate::alive(joiner.clone(), 0.0));
                prop_assert_eq!(&choose_with_existing(r, Some(&first), &grown, 0.7).unwrap().node, &first);
            }
        }

        #[test]
        fn leaving_moves_only_the_leavers_rooms(names in node_set(), rooms in rooms(), k in 0usize..12) {
            let before = alive(&names);
            let gone = names[k % names.len()].clone();
            let after: Vec<_> = before.iter().filter(|c| c.name != gone).cloned().collect();
            for r in &rooms {
                let b = choose(r, &before, 0.7).unwrap().node;
                let a = choose(r, &after, 0.7).unwrap().node;
                if b == gone {
                    prop_assert_ne!(&a, &gone);
                } else {
                    prop_assert_eq!(&a, &b, "room {:?} moved though {} left", r, gone);
                }
                // Marking it Down is the same as removing it.
                let mut down = before.clone();
                down.iter_mut().filter(|c| c.name == gone).for_each(|c| c.liveness = Liveness::Down);
                prop_assert_eq!(&choose(r, &down, 0.7).unwrap().node, &a);
            }
        }

        #[test]
        fn joining_moves_only_rooms_that_now_prefer_the_joiner(names in node_set(), rooms in rooms(),
                                                              joiner in "node-[0-9]{4}") {
            let before = alive(&names);
            let mut after = before.clone();
            after.push(Candidate::alive(joiner.clone(), 0.0));
            for r in &rooms {
                let b = choose(r, &before, 0.7).unwrap().node;
                let a = choose(r, &after, 0.7).unwrap().node;
                let (sb, sj) = (score(r, &b), score(r, &joiner));
                let joiner_wins = sj > sb || (sj == sb && joiner < b);
                if joiner_wins {
                    prop_assert_eq!(&a, &joiner);
                } else {
                    prop_assert_eq!(&a, &b);
                }
            }
        }

        #[test]
        fn overloaded_avoided_unless_all_are(loads in proptest::collection::vec(0.0f64..1.5, 2..10),
                                              rooms in rooms()) {
            let c: Vec<_> = loads.iter().enumerate()
                .map(|(i, l)| Candidate::alive(format!("node-{i}"), *l)).collect();
            let any_under = loads.iter().any(|l| *l < 0.7);
            for r in &rooms {
                let got = choose(r, &c, 0.7).unwrap();
                let load = c.iter().find(|x| x.name == got.node).unwrap().sysload;
                if any_under {
                    prop_assert!(load < 0.7);
                    prop_assert_eq!(got.reason, Reason::UnderLimit);
                    // ... and it is the best-scoring node among those under the limit.
                    let under: Vec<_> = c.iter().filter(|x| x.sysload < 0.7).cloned().collect();
                    prop_assert_eq!(&choose(r, &under, f64::INFINITY).unwrap().node, &got.node);
                } else {
                    prop_assert_eq!(got.reason, Reason::AllOverloaded);
                    prop_assert_eq!(&choose(r, &c, f64::INFINITY).unwrap().node, &got.node);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn balance_for_random_names(names in proptest::collection::btree_set("[a-z]{3,10}", 4..5)) {
            let names: BTreeSet<String> = names;
            let c: Vec<_> = names.iter().map(|n| Candidate::alive(n.clone(), 0.0)).collect();
            let m = counts(&c, 4000);
            let expect = 4000.0 / c.len() as f64;
            for (node, k) in m {
                prop_assert!((k as f64 - expect).abs() / expect < 0.2, "{} got {}", node, k);
            }
        }
    }
}
