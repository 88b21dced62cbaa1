//! A private network namespace for one test: `lo` up plus `lan0` carrying the test's own
//! addresses (a closed classroom LAN with no route anywhere else). `lan0` is one end of a veth
//! pair whose other end (`lan1`, no address) stays in the namespace too, so nothing is added
//! to the host. Deleted on drop. Needs root (`ip netns add`); without it the test fails saying so.

#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (apt-get install iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {} (network namespaces need root: run the tests as root, as scripts/test.sh does)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Netns {
    /// A namespace named `ac-<tag>-<pid>-<n>` whose `lan0` has each of `cidrs` (e.g. `10.77.0.13/24`).
    pub fn create(tag: &str, cidrs: &[&str]) -> Netns {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("ac-{tag}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&[
            "link", "add", "lan0", "type", "veth", "peer", "name", "lan1",
        ]);
        for c in cidrs {
            ns.ip(&["addr", "add", c, "dev", "lan0"]);
        }
        ns.ip(&["link", "set", "lan1", "up"]);
        ns.ip(&["link", "set", "lan0", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}
