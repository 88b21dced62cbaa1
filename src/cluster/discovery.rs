//! Finding main: every clustered node advertises itself, a sub browses for a main of its cluster.
//!
//! [`Discovery`] is the seam: [`MdnsDiscovery`] speaks real mDNS through `mdns-sd`
//! (service `_airclass._tcp.local.`, instance name = node name, per-instance host name
//! `airclass-<node>.local.` so avahi on the same host sees no host-name conflict, TXT `cluster`,
//! `role`, `node`, `api_port`, `proto`); [`MemoryDiscovery`] is an in-process registry for tests
//! (nodes can be removed to simulate a vanished main).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::protocol::{
    mdns_host_name, MDNS_SERVICE_TYPE, PROTOCOL_VERSION, TXT_API_PORT, TXT_CLUSTER, TXT_NODE,
    TXT_PROTO, TXT_ROLE,
};

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub cluster_id: String,
    /// `main` or `sub`.
    pub role: String,
    pub node: String,
    pub api_port: u16,
    /// IP (or host) peers use to reach the node.
    pub address: String,
    /// `http` or `https` (control API with TLS).
    pub scheme: String,
}

impl Advert {
    pub fn api_url(&self) -> String {
        api_url(&self.scheme, &self.address, self.api_port)
    }
}

/// `SCHEME://HOST:PORT`, with IPv6 literals bracketed.
pub fn api_url(scheme: &str, host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("{scheme}://[{v6}]:{port}"),
        _ => format!("{scheme}://{host}:{port}"),
    }
}

/// A main found by browsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundMain {
    pub node: String,
    pub cluster_id: String,
    /// Control-API base URL, e.g. `http://10.0.0.5:8000`.
    pub api_url: String,
}

/// What a browse reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    Found(FoundMain),
    /// A main stopped advertising (by node name).
    Lost(String),
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("mDNS: {0}")]
    Mdns(String),
}

/// Advertise self; browse for mains of one cluster id.
pub trait Discovery: Send + Sync + fmt::Debug {
    /// Publish (or re-publish) `advert`.
    fn advertise(&self, advert: &Advert) -> Result<(), DiscoveryError>;
    /// Stop publishing `node`.
    fn withdraw(&self, node: &str);
    /// Mains of `cluster_id` (role `main`, protocol 1) as they appear and vanish.
    fn browse(
        &self,
        cluster_id: &str,
    ) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, DiscoveryError>;
    /// Stop everything (threads, sockets). Idempotent.
    fn shutdown(&self);
}

/// In-process discovery for tests: one shared registry, events delivered at once.
#[derive(Debug, Default, Clone)]
pub struct MemoryDiscovery {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    adverts: BTreeMap<String, Advert>,
    browsers: Vec<(String, mpsc::UnboundedSender<DiscoveryEvent>)>,
}

fn found(a: &Advert) -> DiscoveryEvent {
    DiscoveryEvent::Found(FoundMain {
        node: a.node.clone(),
        cluster_id: a.cluster_id.clone(),
        api_url: a.api_url(),
    })
}

impl MemoryDiscovery {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remove a node as if it vanished from the network (same as `withdraw`).
    pub fn remove(&self, node: &str) {
        self.withdraw(node);
    }

    /// Every advert currently published.
    pub fn adverts(&self) -> Vec<Advert> {
        self.lock().adverts.values().cloned().collect()
    }
}

impl Discovery for MemoryDiscovery {
    fn advertise(&self, advert: &Advert) -> Result<(), DiscoveryError> {
        let mut g = self.lock();
        g.adverts.insert(advert.node.clone(), advert.clone());
        if advert.role == "main" {
            g.browsers
                .retain(|(id, tx)| *id != advert.cluster_id || tx.send(found(advert)).is_ok());
        }
        Ok(())
    }

    fn withdraw(&self, node: &str) {
        let mut g = self.lock();
        if let Some(a) = g.adverts.remove(node) {
            if a.role == "main" {
                g.browsers.retain(|(id, tx)| {
                    *id != a.cluster_id || tx.send(DiscoveryEvent::Lost(a.node.clone())).is_ok()
                });
            }
        }
    }

    fn browse(
        &self,
        cluster_id: &str,
    ) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, DiscoveryError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut g = self.lock();
        for a in g.adverts.values() {
            if a.role == "main" && a.cluster_id == cluster_id {
                let _ = tx.send(found(a));
            }
        }
        g.browsers.push((cluster_id.to_owned(), tx));
        Ok(rx)
    }

    fn shutdown(&self) {
        self.lock().browsers.clear();
    }
}

/// Real mDNS through `mdns-sd`. One `ServiceDaemon` (one thread) per process.
pub struct MdnsDiscovery {
    daemon: mdns_sd::ServiceDaemon,
    stopped: Arc<AtomicBool>,
    published: Mutex<BTreeMap<String, String>>,
}

impl fmt::Debug for MdnsDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MdnsDiscovery").finish_non_exhaustive()
    }
}

impl MdnsDiscovery {
    /// On the standard port 5353, every interface.
    pub fn new() -> Result<Self, DiscoveryError> {
        Self::with_port(mdns_sd::MDNS_PORT)
    }

    /// On another UDP port (tests; publisher and browser must agree).
    pub fn with_port(port: u16) -> Result<Self, DiscoveryError> {
        let daemon = mdns_sd::ServiceDaemon::new_with_port(port)
            .map_err(|e| DiscoveryError::Mdns(e.to_string()))?;
        Ok(MdnsDiscovery {
            daemon,
            stopped: Arc::new(AtomicBool::new(false)),
            published: Mutex::new(BTreeMap::new()),
        })
    }
}

/// The `FoundMain` a resolved service stands for, if it is a main of `cluster_id` speaking v1.
fn main_from_service(s: &mdns_sd::ResolvedService, cluster_id: &str) -> Option<FoundMain> {
    let txt = |k| s.get_property_val_str(k);
    if txt(TXT_ROLE)? != "main"
        || txt(TXT_CLUSTER)? != cluster_id
        || txt(TXT_PROTO)? != PROTOCOL_VERSION.to_string()
    {
        return None;
    }
    let node = txt(TXT_NODE)?.to_owned();
    let port = txt(TXT_API_PORT)
        .and_then(|p| p.parse().ok())
        .unwrap_or(s.get_port());
    let mut v4: Vec<_> = s.get_addresses_v4().into_iter().collect();
    v4.sort();
    let host = v4.first()?.to_string();
    Some(FoundMain {
        node,
        cluster_id: cluster_id.to_owned(),
        api_url: api_url("http", &host, port),
    })
}

/// The instance label of an mDNS full name (`node-1._airclass._tcp.local.` → `node-1`).
fn instance_of(fullname: &str) -> &str {
    fullname
        .strip_suffix(MDNS_SERVICE_TYPE)
        .map(|s| s.trim_end_matches('.'))
        .unwrap_or(fullname)
}

impl Discovery for MdnsDiscovery {
    fn advertise(&self, a: &Advert) -> Result<(), DiscoveryError> {
        let props = [
            (TXT_CLUSTER, a.cluster_id.clone()),
            (TXT_ROLE, a.role.clone()),
            (TXT_NODE, a.node.clone()),
            (TXT_API_PORT, a.api_port.to_string()),
            (TXT_PROTO, PROTOCOL_VERSION.to_string()),
        ];
        let host = mdns_host_name(&a.node);
        let info = match a.address.parse::<IpAddr>() {
            Ok(ip) => mdns_sd::ServiceInfo::new(
                MDNS_SERVICE_TYPE,
                &a.node,
                &host,
                ip,
                a.api_port,
                &props[..],
            ),
            Err(_) => mdns_sd::ServiceInfo::new(
                MDNS_SERVICE_TYPE,
                &a.node,
                &host,
                "",
                a.api_port,
                &props[..],
            )
            .map(|i| i.enable_addr_auto()),
        }
        .map_err(|e| DiscoveryError::Mdns(e.to_string()))?;
        let fullname = info.get_fullname().to_owned();
        self.daemon
            .register(info)
            .map_err(|e| DiscoveryError::Mdns(e.to_string()))?;
        tracing::info!(node = %a.node, role = %a.role, host = %host, port = a.api_port, "advertising over mDNS");
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(a.node.clone(), fullname);
        Ok(())
    }

    fn withdraw(&self, node: &str) {
        let fullname = self
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node);
        if let Some(f) = fullname {
            if let Ok(rx) = self.daemon.unregister(&f) {
                let _ = rx.recv_timeout(Duration::from_secs(1));
            }
        }
    }

    fn browse(
        &self,
        cluster_id: &str,
    ) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, DiscoveryError> {
        let events = self
            .daemon
            .browse(MDNS_SERVICE_TYPE)
            .map_err(|e| DiscoveryError::Mdns(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stopped = self.stopped.clone();
        let cluster_id = cluster_id.to_owned();
        std::thread::Builder::new()
            .name("airclass-mdns-browse".into())
            .spawn(move || {
                // fullname → main node name, to report removals
                let mut mains: BTreeMap<String, String> = BTreeMap::new();
                while !stopped.load(Ordering::Relaxed) && !tx.is_closed() {
                    let ev = match events.recv_timeout(Duration::from_millis(200)) {
                        Ok(ev) => ev,
                        Err(mdns_sd::RecvTimeoutError::Timeout) => continue,
                        Err(_) => break,
                    };
                    let out = match ev {
                        mdns_sd::ServiceEvent::ServiceResolved(s) => {
                            main_from_service(&s, &cluster_id).map(|m| {
                                mains.insert(s.get_fullname().to_owned(), m.node.clone());
                                DiscoveryEvent::Found(m)
                            })
                        }
                        mdns_sd::ServiceEvent::ServiceRemoved(_, full) => mains
                            .remove(&full)
                            .or_else(|| Some(instance_of(&full).to_owned()))
                            .map(DiscoveryEvent::Lost),
                        _ => None,
                    };
                    if let Some(o) = out {
                        if tx.send(o).is_err() {
                            break;
                        }
                    }
                }
            })
            .map_err(|e| DiscoveryError::Mdns(format!("cannot start browse thread: {e}")))?;
        Ok(rx)
    }

    fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let names: Vec<String> = self
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for n in names {
            self.withdraw(&n);
        }
        if let Ok(rx) = self.daemon.shutdown() {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for MdnsDiscovery {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn advert(node: &str, role: &str, cluster: &str) -> Advert {
        Advert {
            cluster_id: cluster.into(),
            role: role.into(),
            node: node.into(),
            api_port: 8000,
            address: "127.0.0.1".into(),
            scheme: "http".into(),
        }
    }

    #[tokio::test]
    async fn memory_reports_only_mains_of_the_cluster() {
        let d = MemoryDiscovery::new();
        d.advertise(&advert("main", "main", "other")).unwrap();
        let mut rx = d.browse("airclass").unwrap();
        d.advertise(&advert("node-1", "sub", "airclass")).unwrap();
        assert!(rx.try_recv().is_err());
        d.advertise(&advert("main", "main", "airclass")).unwrap();
        let DiscoveryEvent::Found(m) = rx.recv().await.unwrap() else {
            panic!("expected Found")
        };
        assert_eq!(m.api_url, "http://127.0.0.1:8000");
        d.remove("main");
        assert_eq!(
            rx.recv().await.unwrap(),
            DiscoveryEvent::Lost("main".into())
        );
        // a late browser sees mains already published
        d.advertise(&advert("main", "main", "airclass")).unwrap();
        let mut late = d.browse("airclass").unwrap();
        assert!(matches!(late.recv().await, Some(DiscoveryEvent::Found(_))));
    }

    #[test]
    fn instance_and_url_helpers() {
        assert_eq!(instance_of("node-1._airclass._tcp.local."), "node-1");
        assert_eq!(api_url("http", "::1", 8000), "http://[::1]:8000");
    }
}
