//! The replay cache of signed cluster requests, with a budget per sender so that one node's
//! flood cannot lock the others out. Pure: time is a parameter.
//!
//! Every accepted nonce is remembered until its expiry (`timestamp + window`), whoever sent it:
//! a replay is refused whatever budget it comes under. What is bounded is how many unexpired
//! nonces each sender may hold:
//! - a **member** (a name main's table holds with the request's identity) has its own budget of
//!   [`Limits::per_member`] nonces; a member that sends faster than that is refused `busy`, and
//!   nobody else notices;
//! - everyone else (a newcomer's register, a heartbeat main will refuse anyway, a name used with
//!   another identity) is a **stranger**: at most [`Limits::per_stranger`] nonces per name and
//!   [`Limits::strangers`] in all. A flood of invented names can delay newcomers' registrations;
//!   it never touches a member's budget.
//!
//! Memory is bounded by `members × per_member + strangers` entries (1024 × 128 + 4096 by
//! default, about 8 MB at the very worst).

use std::collections::{BTreeMap, HashMap};

use super::AuthError;

/// Who a verified request comes from, as main's table sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender<'a> {
    /// The table holds this name with the request's identity.
    Member(&'a str),
    /// Anyone else, by the name the request carries.
    Stranger(&'a str),
}

/// The budgets (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_member: usize,
    pub per_stranger: usize,
    pub strangers: usize,
}

impl Default for Limits {
    /// 128 per member (a node heartbeating at 1 Hz holds at most ~60 with the 30 s window and
    /// its clock 30 s ahead), 64 per stranger name, 4096 strangers in all.
    fn default() -> Self {
        Limits {
            per_member: 128,
            per_stranger: 64,
            strangers: 4096,
        }
    }
}

impl Limits {
    /// Every budget the same size (small caches in tests).
    pub fn uniform(n: usize) -> Self {
        Limits {
            per_member: n,
            per_stranger: n,
            strangers: n,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Member(Box<str>),
    Stranger(Box<str>),
}

impl Key {
    fn of(s: Sender<'_>) -> Self {
        match s {
            Sender::Member(n) => Key::Member(n.into()),
            Sender::Stranger(n) => Key::Stranger(n.into()),
        }
    }
}

/// Remembered nonces and the budgets they count against.
#[derive(Debug, Default)]
pub struct ReplayCache {
    limits: Limits,
    /// nonce → expiry (unix seconds, inclusive: kept while `now <= expiry`).
    seen: HashMap<[u8; 16], u64>,
    /// expiry → (nonce, budget), for eviction in time order.
    by_expiry: BTreeMap<u64, Vec<([u8; 16], Key)>>,
    /// unexpired nonces per budget (no entry: zero).
    held: HashMap<Key, usize>,
    strangers: usize,
}

impl ReplayCache {
    pub fn new(limits: Limits) -> Self {
        ReplayCache {
            limits,
            ..Default::default()
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Nonces currently remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Unexpired nonces held by `sender`.
    pub fn held_by(&self, sender: Sender<'_>) -> usize {
        self.held.get(&Key::of(sender)).copied().unwrap_or(0)
    }

    /// Forget nonces whose expiry has passed.
    pub fn evict(&mut self, now_unix: u64) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if *entry.key() >= now_unix {
                break;
            }
            for (nonce, key) in entry.remove() {
                self.seen.remove(&nonce);
                if matches!(key, Key::Stranger(_)) {
                    self.strangers -= 1;
                }
                if let Some(n) = self.held.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        self.held.remove(&key);
                    }
                }
            }
        }
    }

    /// Remember `nonce` (valid until `expiry`) under `sender`'s budget: `Replay` when it was
    /// seen, `busy` errors when the budget is spent; nothing changes on an error.
    pub fn admit(
        &mut self,
        nonce: [u8; 16],
        expiry: u64,
        sender: Sender<'_>,
        now_unix: u64,
    ) -> Result<(), AuthError> {
        self.evict(now_unix);
        if self.seen.contains_key(&nonce) {
            return Err(AuthError::Replay);
        }
        let key = Key::of(sender);
        let held = self.held.get(&key).copied().unwrap_or(0);
        let (name, max) = match sender {
            Sender::Member(n) => (n, self.limits.per_member),
            Sender::Stranger(n) => (n, self.limits.per_stranger),
        };
        let stranger = matches!(sender, Sender::Stranger(_));
        if stranger && self.strangers >= self.limits.strangers {
            return Err(AuthError::CacheFull {
                max: self.limits.strangers,
            });
        }
        if held >= max {
            return Err(AuthError::SenderBusy {
                node: name.chars().take(64).collect(),
                max,
            });
        }
        self.strangers += usize::from(stranger);
        self.seen.insert(nonce, expiry);
        self.by_expiry
            .entry(expiry)
            .or_default()
            .push((nonce, key.clone()));
        *self.held.entry(key).or_insert(0) += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn nonce(i: u32) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[..4].copy_from_slice(&i.to_be_bytes());
        n
    }

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn a_flooding_member_spends_only_its_own_budget() {
        let mut c = ReplayCache::new(Limits {
            per_member: 3,
            per_stranger: 2,
            strangers: 4,
        });
        for i in 0..3 {
            c.admit(nonce(i), NOW + 30, Sender::Member("evil"), NOW)
                .unwrap();
        }
        let e = c.admit(nonce(3), NOW + 30, Sender::Member("evil"), NOW);
        assert_eq!(
            e,
            Err(AuthError::SenderBusy {
                node: "evil".into(),
                max: 3
            })
        );
        assert_eq!(e.unwrap_err().code().as_str(), "busy");
        // others are untouched: members and strangers alike
        c.admit(nonce(10), NOW + 30, Sender::Member("node-1"), NOW)
            .unwrap();
        c.admit(nonce(11), NOW + 30, Sender::Stranger("evil"), NOW)
            .unwrap();
        assert_eq!(c.held_by(Sender::Member("evil")), 3);
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn strangers_are_bounded_per_name_and_in_all() {
        let mut c = ReplayCache::new(Limits {
            per_member: 8,
            per_stranger: 2,
            strangers: 3,
        });
        c.admit(nonce(0), NOW, Sender::Stranger("a"), NOW).unwrap();
        c.admit(nonce(1), NOW, Sender::Stranger("a"), NOW).unwrap();
        assert!(matches!(
            c.admit(nonce(2), NOW, Sender::Stranger("a"), NOW),
            Err(AuthError::SenderBusy { max: 2, .. })
        ));
        c.admit(nonce(3), NOW, Sender::Stranger("b"), NOW).unwrap();
        assert_eq!(
            c.admit(nonce(4), NOW, Sender::Stranger("c"), NOW),
            Err(AuthError::CacheFull { max: 3 })
        );
        // a member is not a stranger
        c.admit(nonce(5), NOW, Sender::Member("c"), NOW).unwrap();
        // expiry gives the budgets back
        c.evict(NOW + 1);
        assert!(c.is_empty());
        c.admit(nonce(4), NOW + 31, Sender::Stranger("c"), NOW + 1)
            .unwrap();
        assert_eq!(c.held_by(Sender::Stranger("a")), 0);
    }

    #[test]
    fn a_replay_is_refused_under_any_budget() {
        let mut c = ReplayCache::new(Limits::default());
        c.admit(nonce(7), NOW + 30, Sender::Member("node-1"), NOW)
            .unwrap();
        for s in [
            Sender::Member("node-1"),
            Sender::Member("node-2"),
            Sender::Stranger("x"),
        ] {
            assert_eq!(c.admit(nonce(7), NOW + 30, s, NOW), Err(AuthError::Replay));
        }
        assert_eq!(c.len(), 1);
    }
}
