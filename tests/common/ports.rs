//! Ports for daemons under test, reserved once per test process and never probed at random.
//!
//! Blocks of [`BLOCK`] consecutive ports lie below the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`), so no outgoing connection of any program takes
//! them. A block is ours while we hold an exclusive `flock` on its file in
//! `$TMPDIR/airclass-test-ports/`: parallel test processes (nextest runs each test in its own)
//! scan the same blocks in the same order and never share one; the kernel drops the lock when a
//! process dies. A block whose ports something else holds is skipped.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

/// Ports per block: a node's three TCP ports and its 21 RTC UDP ports, with room to spare.
pub const BLOCK: u16 = 32;
const LOWEST: u16 = 20_000;

/// A reserved block; the ports are free for TCP and UDP on every address when it is handed out.
pub struct PortBlock {
    pub start: u16,
    _lock: Flock<File>,
}

impl PortBlock {
    /// The first free block (panics when every block is taken: a leak in the tests).
    pub fn reserve() -> Self {
        let dir = std::env::temp_dir().join("airclass-test-ports");
        std::fs::create_dir_all(&dir).unwrap();
        let top = ephemeral_low().saturating_sub(BLOCK);
        let mut start = LOWEST;
        while start <= top {
            if let Some(lock) = try_lock(dir.join(format!("{start}.lock"))) {
                if (start..start + BLOCK).all(free) {
                    return PortBlock { start, _lock: lock };
                }
            }
            start += BLOCK;
        }
        panic!(
            "no free port block between {LOWEST} and {top} (reserved under {})",
            dir.display()
        );
    }

    /// Port `i` of the block.
    #[allow(dead_code)] // the contract suite takes ports with `take`
    pub fn port(&self, i: u16) -> u16 {
        assert!(i < BLOCK, "port {i} is outside a block of {BLOCK}");
        self.start + i
    }
}

/// Blocks this process holds until it exits, and how many ports of the last one are handed out.
static POOL: Mutex<Vec<(PortBlock, u16)>> = Mutex::new(Vec::new());

/// `n` consecutive ports (`n` ≤ [`BLOCK`]) out of blocks this process reserves and keeps until
/// it exits: for tests that spawn servers with plain port numbers (nextest runs each test in a
/// process of its own, so nothing accumulates).
pub fn take(n: u16) -> u16 {
    assert!(
        (1..=BLOCK).contains(&n),
        "take({n}): between 1 and {BLOCK} ports"
    );
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((block, used)) = pool.last_mut() {
        if *used + n <= BLOCK {
            let first = block.start + *used;
            *used += n;
            return first;
        }
    }
    let block = PortBlock::reserve();
    let first = block.start;
    pool.push((block, n));
    first
}

fn try_lock(path: PathBuf) -> Option<Flock<File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock).ok()
}

/// Free on every address (servers under test bind `0.0.0.0` as well as `127.0.0.1`).
fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
        && std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok()
}

/// The lowest ephemeral port (32768 when the kernel does not say).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(32_768)
}
