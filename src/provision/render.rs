//! The texts provisioning writes: the node's config file, main's Redis config, the static
//! network, the console banner (`/etc/issue.d/`) and the non-secret identity file
//! (`/etc/airclass/appliance.toml`, itself a valid `provision.toml` without secrets). Pure.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::plan::{Missing, Mode, Network, Plan, Redis};
use super::Invalid;

/// Where the node's secrets live on the target (paths inside the files we write).
pub const SECRETS_DIR: &str = "/etc/airclass/secrets";

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `/etc/airclass/nodes/NODE.toml`.
pub fn node_toml(p: &Plan) -> String {
    let mut s = format!(
        "# /etc/airclass/nodes/{node}.toml - written by `airclass-node provision` (airclass-provision.service)\n\
         # at every provisioning. Put local settings in /etc/airclass/airclass.toml; the keys below win\n\
         # over it. Check: airclass-node check --instance {node}\n\n[node]\nmode = {mode}\n",
        node = p.node,
        mode = q(p.mode.as_str()),
    );
    if let Some(n) = &p.network {
        let ip = n.address.split('/').next().unwrap_or_default();
        let _ = writeln!(s, "advertise_address = {}", q(ip));
    }
    let redis_url = match &p.redis {
        Redis::None => None,
        Redis::Local => Some("redis://127.0.0.1:6379".to_string()),
        Redis::Remote(u) => Some(u.clone()),
    };
    if let Some(u) = redis_url {
        let _ = write!(
            s,
            "\n[redis]\nurl = {}\npassword_file = {}\n",
            q(&u),
            q(&format!("{SECRETS_DIR}/redis-password"))
        );
    }
    let _ = write!(
        s,
        "\n[cluster]\nid = {}\nmdns = {}\n",
        q(&p.cluster_id),
        p.mdns
    );
    if let (Some(u), Mode::Sub) = (&p.main_url, p.mode) {
        let _ = writeln!(s, "main_url = {}", q(u));
    }
    s
}

/// Main's Redis: on every address, the default user with the password's SHA-256 (ACL), so the
/// file holds no password; LiveKit and airclass-node on every node use the password.
pub fn redis_conf(password: &str) -> String {
    let hash = hex::encode(Sha256::digest(password.as_bytes()));
    format!(
        "# /etc/airclass/redis/redis.conf - main's Redis for the whole cluster (LiveKit and airclass-node\n\
         # of every node), written by `airclass-node provision`. Reachable on the LAN, never without the\n\
         # password: the default user has only its SHA-256 here (secrets/redis-password holds it).\n\
         bind * -::*\nport 6379\nprotected-mode yes\nuser default on #{hash} ~* &* +@all\n\
         dir /var/lib/airclass-redis\nsave \"\"\nappendonly no\nsupervised systemd\ndaemonize no\n\
         loglevel notice\nlogfile \"\"\n"
    )
}

/// `/run/systemd/network/10-airclass-static.network` (rewritten at every boot).
pub fn network_file(n: &Network) -> String {
    let mut s = String::from(
        "# written by `airclass-node provision` (network.address); without it every wired interface\n\
         # uses DHCP (80-airclass-wired.network)\n[Match]\n",
    );
    match &n.interface {
        Some(i) => {
            let _ = writeln!(s, "Name={i}");
        }
        None => s.push_str("Type=ether\n"),
    }
    let _ = write!(s, "\n[Network]\nAddress={}\n", n.address);
    if let Some(g) = &n.gateway {
        let _ = writeln!(s, "Gateway={g}");
    }
    for d in &n.dns {
        let _ = writeln!(s, "DNS={d}");
    }
    s.push_str("LinkLocalAddressing=ipv6\n");
    s
}

/// The console banner of a provisioned node (agetty: `\n` host name, `\4` IPv4 address).
pub fn issue_ready(p: &Plan) -> String {
    format!(
        "AirClass node {node} ({mode}, cluster {cluster}) on \\n, address \\4\n  \
         status: systemctl status airclass-node@{node}    logs: journalctl -u airclass-node@{node}\n\n",
        node = p.node,
        mode = p.mode.as_str(),
        cluster = p.cluster_id,
    )
}

const HOW: &str = "Give them with any of (docs/appliance.md; highest precedence first):\n  \
  - systemd credentials airclass.NAME, e.g. from the hypervisor:\n      \
      -smbios type=11,value=io.systemd.credential:airclass.node=node-1\n  \
  - airclass/provision.toml on a USB stick labelled AIRCLASS or on the EFI partition, then reboot\n  \
  - the kernel command line: airclass.node=node-1 airclass.main=http://MAIN:8000 (no secrets)\n";

/// What is missing and how to provide it.
pub fn issue_needs(missing: &[Missing]) -> String {
    let mut s =
        String::from("This AirClass node (\\n, address \\4) is NOT PROVISIONED. Missing:\n");
    for m in missing {
        let _ = writeln!(s, "  - {}: {}", m.key, m.what);
    }
    s.push_str(HOW);
    s.push_str("Details: systemctl status airclass-provision\n\n");
    s
}

/// Data was given but cannot be used.
pub fn issue_invalid(errors: &[Invalid], running: Option<&str>) -> String {
    let mut s =
        String::from("AirClass PROVISIONING FAILED on \\n: the data given cannot be used:\n");
    for e in errors {
        let _ = writeln!(s, "  - {}", e.to_string().replace('\n', "\n    "));
    }
    s.push_str("Fix it and reboot (or run `airclass-node provision`).\n");
    if let Some(n) = running {
        let _ = writeln!(s, "Still running as {n} from an earlier provisioning.");
    }
    s.push_str("Details: systemctl status airclass-provision\n\n");
    s
}

/// `/etc/airclass/appliance.toml`: the non-secret identity, a valid provision.toml.
pub fn state_toml(p: &Plan, redis_url_given: Option<&str>) -> String {
    let mut s = format!(
        "# /etc/airclass/appliance.toml - this appliance's identity, written by `airclass-node provision`.\n\
         # No secrets. Values given at a later provisioning win; delete this file to start over.\n\
         node = {}\nmode = {}\ncluster_id = {}\nmdns = {}\n",
        q(&p.node),
        q(p.mode.as_str()),
        q(&p.cluster_id),
        p.mdns
    );
    if let Some(u) = &p.main_url {
        let _ = writeln!(s, "main_url = {}", q(u));
    }
    if let Some(u) = redis_url_given {
        let _ = writeln!(s, "redis_url = {}", q(u));
    }
    if let Some(n) = &p.network {
        let _ = write!(s, "\n[network]\naddress = {}\n", q(&n.address));
        if let Some(i) = &n.interface {
            let _ = writeln!(s, "interface = {}", q(i));
        }
        if let Some(g) = &n.gateway {
            let _ = writeln!(s, "gateway = {}", q(g));
        }
        if !n.dns.is_empty() {
            let list: Vec<String> = n.dns.iter().map(|d| q(d)).collect();
            let _ = writeln!(s, "dns = [{}]", list.join(", "));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::keys::{Key, Origin, Values};
    use crate::provision::plan::{plan, OnDisk, Outcome};
    use crate::provision::sources::parse_doc;

    fn ready(doc: &str) -> Plan {
        let v = parse_doc(doc, Origin::EspFile).unwrap();
        match plan(&v, &OnDisk::default()).unwrap() {
            Outcome::Ready(p) => *p,
            Outcome::Needs { missing, .. } => panic!("missing {missing:?}"),
        }
    }

    #[test]
    fn node_file_is_valid_daemon_config() {
        let p = ready("node = \"main\"\ncluster_id = \"school-a\"\n");
        let text = node_toml(&p);
        let c: crate::config::Config = toml::from_str(&text).unwrap();
        assert_eq!(c.node.mode, crate::config::Mode::Main);
        assert_eq!(c.redis.url, "redis://127.0.0.1:6379");
        assert_eq!(
            c.redis.password_file.as_deref(),
            Some("/etc/airclass/secrets/redis-password")
        );
        assert_eq!(c.cluster.id, "school-a");
        assert_eq!(c.cluster.main_url, None);
    }

    #[test]
    fn sub_with_static_address() {
        let p = ready(
            "node = \"node-2\"\nmain_url = \"http://10.0.0.10:8000\"\n[secrets]\nlivekit_api_key = \"APIx\"\n\
             livekit_api_secret = \"s234567890123456789012345678901234\"\ncluster_secret = \"c234567890123456789012345678901234\"\n\
             redis_password = \"r2345678901234567\"\n[network]\naddress = \"10.0.0.12/24\"\ngateway = \"10.0.0.1\"\ndns = [\"10.0.0.1\"]\n",
        );
        let c: crate::config::Config = toml::from_str(&node_toml(&p)).unwrap();
        assert_eq!(c.node.mode, crate::config::Mode::Sub);
        assert_eq!(c.redis.url, "redis://10.0.0.10:6379");
        assert_eq!(c.cluster.main_url.as_deref(), Some("http://10.0.0.10:8000"));
        assert_eq!(c.node.advertise_address.as_deref(), Some("10.0.0.12"));
        let net = network_file(p.network.as_ref().unwrap());
        assert!(
            net.contains("Type=ether")
                && net.contains("Address=10.0.0.12/24")
                && net.contains("Gateway=10.0.0.1")
        );
        // the identity file is itself a provision.toml, without secrets
        let state = state_toml(&p, None);
        let back = parse_doc(&state, Origin::Earlier).unwrap();
        assert_eq!(back.get(Key::Node), Some("node-2"));
        assert_eq!(back.get(Key::Address), Some("10.0.0.12/24"));
        assert!(!back.0.keys().any(|k| k.is_secret()));
        assert!(!state.contains("c234567890"));
    }

    #[test]
    fn redis_conf_has_hash_not_password() {
        let c = redis_conf("correct-horse-battery");
        assert!(!c.contains("correct-horse-battery"));
        assert!(c.contains(&format!(
            "#{}",
            hex::encode(Sha256::digest(b"correct-horse-battery"))
        )));
        assert!(c.contains("bind * -::*"));
    }

    #[test]
    fn issue_texts_name_what_is_missing() {
        let v = Values::default();
        let Outcome::Needs { missing, .. } = plan(&v, &OnDisk::default()).unwrap() else {
            panic!("an empty provisioning is not ready")
        };
        let t = issue_needs(&missing);
        assert!(
            t.contains("NOT PROVISIONED") && t.contains("node:") && t.contains("provision.toml")
        );
        assert!(t.contains("io.systemd.credential:airclass.node="));
    }
}
