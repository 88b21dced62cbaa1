//! `airclass-node provision --print-for node-N` on main: a complete `provision.toml` for a new
//! sub of this cluster (cluster id, main's Redis, the cluster's secrets, root's SSH keys), to
//! put on a USB stick or the new node's EFI partition. It prints secrets, on request only.

use std::net::IpAddr;

use super::apply::{Layout, AUTHORIZED_KEYS, STATE};
use super::keys::{Key, Origin};
use super::plan::SecretFile;
use super::sources::parse_doc;

/// Why no file can be printed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{0:?} is not a sub node name; use node-1 … node-15")]
    Name(String),
    #[error("this machine is not a provisioned main ({0})")]
    NotMain(String),
    #[error("secret {0} is missing on this main; provisioning makes it at boot")]
    Secret(String),
    #[error("no IPv4 address found for main; give --main-address")]
    NoAddress,
}

/// The first non-loopback IPv4 address of this machine.
pub fn first_ipv4() -> Option<IpAddr> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The provision.toml for sub `node` of the main provisioned under `l`.
pub fn sub_file(
    l: &Layout,
    node: &str,
    main_address: Option<IpAddr>,
) -> Result<String, TemplateError> {
    if crate::config::ports::node_index(node).is_none_or(|i| !(1..=15).contains(&i)) {
        return Err(TemplateError::Name(node.to_string()));
    }
    let state = std::fs::read_to_string(l.path(STATE))
        .map_err(|e| TemplateError::NotMain(format!("{STATE}: {e}")))?;
    let me =
        parse_doc(&state, Origin::Earlier).map_err(|e| TemplateError::NotMain(e.to_string()))?;
    if me.get(Key::Mode) != Some("main") {
        return Err(TemplateError::NotMain(format!(
            "{STATE} says mode {:?}",
            me.get(Key::Mode)
        )));
    }
    let secret = |f: SecretFile| -> Result<String, TemplateError> {
        std::fs::read_to_string(l.secret(f))
            .map(|s| s.trim().to_string())
            .map_err(|_| TemplateError::Secret(f.file_name().into()))
    };
    let addr = main_address
        .or_else(first_ipv4)
        .ok_or(TemplateError::NoAddress)?;
    let host = match addr {
        IpAddr::V6(a) => format!("[{a}]"),
        IpAddr::V4(a) => a.to_string(),
    };
    let keys: Vec<String> = std::fs::read_to_string(l.path(AUTHORIZED_KEYS))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .map(q)
        .collect();
    let mdns = me.get(Key::Mdns) != Some("false");
    let main_url = format!("main_url = {}", q(&format!("http://{host}:8000")));
    Ok(format!(
        "# provision.toml for {node} of cluster {cluster}, written by `airclass-node provision --print-for {node}`\n\
         # on main. It holds the cluster's secrets: keep it on the stick only until {node} has booted once.\n\
         node = {n}\nmode = \"sub\"\ncluster_id = {c}\nredis_url = {r}\n{mu}\n\n[secrets]\n\
         livekit_api_key = {k}\nlivekit_api_secret = {s}\ncluster_secret = {cs}\nredis_password = {rp}\n\n\
         [access]\nssh_authorized_keys = [{keys}]\n",
        cluster = me.get(Key::ClusterId).unwrap_or("airclass"),
        n = q(node),
        c = q(me.get(Key::ClusterId).unwrap_or("airclass")),
        r = q(&format!("redis://{host}:6379")),
        mu = if mdns { format!("# {main_url}    (main is found over mDNS)") } else { main_url },
        k = q(&secret(SecretFile::LivekitApiKey)?),
        s = q(&secret(SecretFile::LivekitApiSecret)?),
        cs = q(&secret(SecretFile::ClusterSecret)?),
        rp = q(&secret(SecretFile::RedisPassword)?),
        keys = keys.join(", "),
    ))
}
