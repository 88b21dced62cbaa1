//! The control API's connections: a cap, who makes room when it is reached, and the counters.
//!
//! Every accepted connection is registered with its source address. It is *waiting* while the
//! server waits for its client (a TLS handshake, a request head or body, an idle keep-alive, a
//! slow reader of an answer) and *busy* while the server works on a request. At the cap one
//! waiting connection is closed to make room: the oldest of the source address that has the
//! most waiting connections, or — when no address has more than one — the oldest of all. So
//! thousands of slow or idle connections cannot lock a normal client out: from fewer addresses
//! than connections, the attacker's own connections go first; from as many addresses as
//! connections, a normal request (read in milliseconds) is long done before it would be the
//! oldest. Only when every connection is busy is a newcomer refused (`503 busy`, counted).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::sync::lock;

/// Counters of the control API's connections (also shown in `GET /api/node` as `api`).
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    /// Closed to make room for a newcomer at the cap (they were waiting for their client).
    pub evicted: AtomicU64,
    /// Newcomers refused at the cap because every connection was busy.
    pub refused_busy: AtomicU64,
    /// Request heads (or idle keep-alives) that took longer than `api.header_timeout_secs`.
    pub header_timeouts: AtomicU64,
    /// TLS handshakes that failed or took longer than `api.header_timeout_secs`.
    pub tls_failed: AtomicU64,
    /// Requests not read and answered within `api.request_timeout_secs`.
    pub request_timeouts: AtomicU64,
    /// Connections on which no byte moved for `api.request_timeout_secs`.
    pub stalled: AtomicU64,
    /// Requests that were not valid HTTP/1.1 (answered with a JSON 400/414/431).
    pub bad_http: AtomicU64,
    /// `accept` failing for want of file handles (EMFILE/ENFILE: the daemon's own fault).
    pub fd_exhausted: AtomicU64,
}

impl Counters {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot for `GET /api/node`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub open: usize,
    pub max_connections: usize,
    pub accepted: u64,
    pub evicted: u64,
    pub refused_busy: u64,
    pub header_timeouts: u64,
    pub tls_failed: u64,
    pub request_timeouts: u64,
    pub stalled: u64,
    pub bad_http: u64,
    pub fd_exhausted: u64,
}

#[derive(Debug)]
struct Entry {
    close: CancellationToken,
    peer: IpAddr,
    /// `Some(seq)` while waiting for the client (its place in the queues).
    waiting: Option<u64>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    next_seq: u64,
    open: HashMap<u64, Entry>,
    /// seq → id of every waiting connection, oldest first.
    waiting: BTreeMap<u64, u64>,
    /// Per source address: seq → id of its waiting connections.
    by_peer: HashMap<IpAddr, BTreeMap<u64, u64>>,
    /// (waiting connections, address), to find the heaviest address.
    weights: BTreeSet<(usize, IpAddr)>,
}

impl Registry {
    fn unqueue(&mut self, peer: IpAddr, seq: u64) {
        self.waiting.remove(&seq);
        let Some(q) = self.by_peer.get_mut(&peer) else {
            return;
        };
        let before = q.len();
        q.remove(&seq);
        let after = q.len();
        self.weights.remove(&(before, peer));
        if after == 0 {
            self.by_peer.remove(&peer);
        } else {
            self.weights.insert((after, peer));
        }
    }

    fn enqueue(&mut self, peer: IpAddr, seq: u64, id: u64) {
        self.waiting.insert(seq, id);
        let q = self.by_peer.entry(peer).or_default();
        let before = q.len();
        q.insert(seq, id);
        self.weights.remove(&(before, peer));
        self.weights.insert((before + 1, peer));
    }

    fn set_waiting(&mut self, id: u64, waiting: bool) {
        let seq = self.next_seq;
        let Some(e) = self.open.get_mut(&id) else {
            return;
        };
        let (peer, old) = (e.peer, e.waiting.take());
        if waiting {
            e.waiting = Some(seq);
            self.next_seq += 1;
        }
        if let Some(old) = old {
            self.unqueue(peer, old);
        }
        if waiting {
            self.enqueue(peer, seq, id);
        }
    }

    /// The connection to close at the cap: the oldest waiting one of the heaviest address, or
    /// the oldest of all when no address waits with more than one.
    fn victim(&self) -> Option<u64> {
        match self.weights.last() {
            Some(&(n, peer)) if n > 1 => self.by_peer.get(&peer)?.values().next().copied(),
            _ => self.waiting.values().next().copied(),
        }
    }

    /// Close the chosen waiting connection; false when none is waiting.
    fn evict_one(&mut self) -> bool {
        let Some(id) = self.victim() else {
            return false;
        };
        if let Some(e) = self.open.remove(&id) {
            if let Some(seq) = e.waiting {
                self.unqueue(e.peer, seq);
            }
            e.close.cancel();
        }
        true
    }

    fn remove(&mut self, id: u64) {
        if let Some(e) = self.open.remove(&id) {
            if let Some(seq) = e.waiting {
                self.unqueue(e.peer, seq);
            }
        }
    }
}

/// The registry of open connections under one cap.
#[derive(Debug)]
pub struct Connections {
    cap: usize,
    registry: Mutex<Registry>,
    pub counters: Counters,
}

/// Why a newcomer was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Admitted without closing anyone.
    Free,
    /// Admitted after closing a waiting connection.
    Evicted,
}

impl Connections {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Connections {
            cap: cap.max(1),
            registry: Mutex::new(Registry::default()),
            counters: Counters::default(),
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Register a newcomer from `peer` (waiting from the start); `None` when every connection
    /// is busy.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<(ConnHandle, Admission)> {
        let mut r = lock(&self.registry);
        let mut how = Admission::Free;
        if r.open.len() >= self.cap {
            if !r.evict_one() {
                drop(r);
                Counters::inc(&self.counters.refused_busy);
                return None;
            }
            Counters::inc(&self.counters.evicted);
            how = Admission::Evicted;
        }
        let id = r.next_id;
        r.next_id += 1;
        let close = CancellationToken::new();
        r.open.insert(
            id,
            Entry {
                close: close.clone(),
                peer,
                waiting: None,
            },
        );
        r.set_waiting(id, true);
        drop(r);
        Counters::inc(&self.counters.accepted);
        let handle = ConnHandle {
            id,
            close,
            conns: self.clone(),
        };
        Some((handle, how))
    }

    /// Close a waiting connection as at the cap (to free a file handle); false if none waits.
    pub fn evict_one(&self) -> bool {
        let done = lock(&self.registry).evict_one();
        if done {
            Counters::inc(&self.counters.evicted);
        }
        done
    }

    pub fn open(&self) -> usize {
        lock(&self.registry).open.len()
    }

    pub fn snapshot(&self) -> Snapshot {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            open: self.open(),
            max_connections: self.cap,
            accepted: get(&c.accepted),
            evicted: get(&c.evicted),
            refused_busy: get(&c.refused_busy),
            header_timeouts: get(&c.header_timeouts),
            tls_failed: get(&c.tls_failed),
            request_timeouts: get(&c.request_timeouts),
            stalled: get(&c.stalled),
            bad_http: get(&c.bad_http),
            fd_exhausted: get(&c.fd_exhausted),
        }
    }
}

/// One registered connection; dropping it unregisters it.
#[derive(Debug)]
pub struct ConnHandle {
    id: u64,
    /// Cancelled when the connection is evicted.
    pub close: CancellationToken,
    conns: Arc<Connections>,
}

impl ConnHandle {
    /// The server works on a request now (not evictable).
    pub fn busy(&self) {
        lock(&self.conns.registry).set_waiting(self.id, false);
    }

    /// The server waits for the client again (evictable, newest in line).
    pub fn waiting(&self) {
        lock(&self.conns.registry).set_waiting(self.id, true);
    }

    /// Is the server working on a request of this connection?
    pub fn is_busy(&self) -> bool {
        lock(&self.conns.registry)
            .open
            .get(&self.id)
            .is_some_and(|e| e.waiting.is_none())
    }

    pub fn counters(&self) -> &Counters {
        &self.conns.counters
    }

    /// The registry this connection belongs to.
    pub fn registry(&self) -> Arc<Connections> {
        self.conns.clone()
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        lock(&self.conns.registry).remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn at_the_cap_the_longest_waiting_makes_room() {
        let c = Connections::new(3);
        let (a, how) = c.admit(ip(1)).unwrap();
        assert_eq!(how, Admission::Free);
        let (b, _) = c.admit(ip(2)).unwrap();
        let (d, _) = c.admit(ip(3)).unwrap();
        // a is served (busy), b waits longest, d waits
        a.busy();
        let (e, how) = c.admit(ip(4)).unwrap();
        assert_eq!(how, Admission::Evicted);
        assert!(b.close.is_cancelled(), "b waited longest");
        assert!(!a.close.is_cancelled() && !d.close.is_cancelled());
        assert_eq!(c.open(), 3);
        // d goes back to waiting after a request: now e has waited longest
        d.busy();
        d.waiting();
        let (_f, _) = c.admit(ip(5)).unwrap();
        assert!(e.close.is_cancelled());
        assert!(!d.close.is_cancelled());
        assert_eq!(c.snapshot().evicted, 2);
        drop(b);
        drop(e);
        assert_eq!(c.open(), 3);
    }

    #[test]
    fn the_address_with_most_waiting_connections_goes_first() {
        let c = Connections::new(4);
        let (normal, _) = c.admit(ip(1)).unwrap(); // oldest of all
        let attack: Vec<_> = (0..3).map(|_| c.admit(ip(9)).unwrap().0).collect();
        let (_newcomer, how) = c.admit(ip(2)).unwrap();
        assert_eq!(how, Admission::Evicted);
        assert!(
            !normal.close.is_cancelled(),
            "one connection from its own address stays"
        );
        assert!(
            attack[0].close.is_cancelled(),
            "the heaviest address's oldest goes"
        );
        assert!(!attack[1].close.is_cancelled());
    }

    #[test]
    fn all_busy_means_the_newcomer_is_refused_and_counted() {
        let c = Connections::new(2);
        let (a, _) = c.admit(ip(1)).unwrap();
        let (b, _) = c.admit(ip(1)).unwrap();
        a.busy();
        b.busy();
        assert!(a.is_busy());
        assert!(c.admit(ip(2)).is_none());
        assert_eq!(c.snapshot().refused_busy, 1);
        drop(a);
        assert!(c.admit(ip(2)).is_some(), "a closed: room again");
    }

    #[test]
    fn dropping_unregisters() {
        let c = Connections::new(8);
        let handles: Vec<_> = (0..8).map(|i| c.admit(ip(i)).unwrap().0).collect();
        assert_eq!(c.open(), 8);
        drop(handles);
        assert_eq!(c.open(), 0);
        assert!(!c.evict_one());
        let r = lock(&c.registry);
        assert!(r.waiting.is_empty() && r.by_peer.is_empty() && r.weights.is_empty());
    }
}
