//! In-process roles: a main served on a loopback port (bound to port 0), subs driven by fixed
//! statistics, raw signed requests, polling.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use airclass_node::clock::Instant;

use airclass_node::app_token::{token_sha256_hex, AppTokenCheck};
use airclass_node::clock::unix_now;
use airclass_node::cluster::auth::{self, ClusterSecret};
use airclass_node::cluster::discovery::DiscoveryEvent;
use airclass_node::cluster::main::{spawn_ticker, Main, MainSettings};
use airclass_node::cluster::node::StatsSource;
use airclass_node::cluster::protocol::{
    LivekitHealth, NodeInfo, NodeMode, NodeStats, PortRange, PROTOCOL_VERSION,
};
use airclass_node::cluster::store::Store;
use airclass_node::cluster::sub::{SubHandle, SubSettings};
use airclass_node::config::Secret;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::support::node::{API_KEY, API_SECRET, APP_TOKEN, CLUSTER_SECRET as SECRET};
pub use crate::support::{figure, http};

pub const CLUSTER: &str = "airclass-test";

/// The daemon's own Redis connection to a test `redis-server` on loopback.
pub fn redis_conn(r: &crate::support::redis::Redis) -> airclass_node::redis_conn::RedisConn {
    let t = airclass_node::config::RedisTarget {
        address: format!("127.0.0.1:{}", r.port),
        username: None,
        db: 0,
        tls: false,
    };
    airclass_node::redis_conn::RedisConn::open(&t, None).unwrap()
}

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn secret() -> ClusterSecret {
    ClusterSecret::from_text(SECRET).unwrap()
}

pub fn stats(sysload: f64, rooms: &[&str]) -> NodeStats {
    NodeStats {
        cpu_percent: 12.5,
        memory_used_bytes: 1 << 30,
        memory_total_bytes: 8 << 30,
        load1: sysload * 4.0,
        sysload,
        num_cpus: 4,
        rooms: rooms.len() as u32,
        participants: 3 * rooms.len() as u32,
        livekit_health: LivekitHealth::Healthy,
        room_names: rooms.iter().map(|r| r.to_string()).collect(),
        livekit_node_id: None,
    }
}

/// Statistics that can be changed while a sub runs.
pub fn stats_source(rx: watch::Receiver<NodeStats>) -> StatsSource {
    Arc::new(move || {
        let s = rx.borrow().clone();
        Box::pin(async move { s })
    })
}

pub fn info(name: &str, mode: NodeMode, api_url: &str, lk_port: u16) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        mode,
        protocol_version: PROTOCOL_VERSION,
        software_version: "test".into(),
        api_url: api_url.into(),
        livekit_url: format!("ws://127.0.0.1:{lk_port}"),
        rtc_range: PortRange {
            start: 50000,
            end: 50020,
        },
    }
}

pub fn settings(heartbeat: Duration) -> MainSettings {
    MainSettings {
        heartbeat,
        local_livekit_port: 1,
        ..MainSettings::defaults(CLUSTER, "main", API_KEY, Secret::new(API_SECRET))
    }
}

/// A main serving its routes on 127.0.0.1, with its ticker.
pub struct MainServer {
    pub main: Arc<Main>,
    pub url: String,
    pub port: u16,
    pub stats: watch::Sender<NodeStats>,
    serve: tokio::task::JoinHandle<()>,
    cancel: CancellationToken,
}

impl MainServer {
    pub async fn start(heartbeat: Duration, store: Option<Store>) -> Self {
        Self::start_on(0, heartbeat, store).await
    }

    pub async fn start_on(port: u16, heartbeat: Duration, store: Option<Store>) -> Self {
        Self::serve(port, 1, heartbeat, store).await
    }

    /// A main whose own LiveKit answers (or not) on `livekit_port`.
    pub async fn start_with_livekit(
        livekit_port: u16,
        heartbeat: Duration,
        store: Option<Store>,
    ) -> Self {
        Self::serve(0, livekit_port, heartbeat, store).await
    }

    async fn serve(
        port: u16,
        livekit_port: u16,
        heartbeat: Duration,
        store: Option<Store>,
    ) -> Self {
        init();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let check = AppTokenCheck::from_hex(&token_sha256_hex(APP_TOKEN)).unwrap();
        let settings = MainSettings {
            local_livekit_port: livekit_port,
            ..settings(heartbeat)
        };
        let main = Main::new(settings, Some(secret()), Some(check), store);
        let (stats_tx, stats_rx) = watch::channel(stats(0.1, &[]));
        let info = info("main", NodeMode::Main, &url, 7880);
        main.register_self(info.clone(), stats(0.1, &[]));
        let cancel = CancellationToken::new();
        spawn_ticker(
            main.clone(),
            info,
            stats_source(stats_rx),
            None,
            &TaskTracker::new(),
            cancel.clone(),
        );
        let app: axum::Router = airclass_node::api::cluster_routes(&main);
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MainServer {
            main,
            url,
            port,
            stats: stats_tx,
            serve,
            cancel,
        }
    }

    /// Crash: the listener and every connection go away at once.
    pub async fn kill(self) -> u16 {
        self.cancel.cancel();
        self.serve.abort();
        let _ = self.serve.await;
        self.port
    }

    pub fn state_of(&self, node: &str) -> Option<String> {
        self.main
            .nodes()
            .into_iter()
            .find(|n| n.name == node)
            .map(|n| format!("{:?}", n.state).to_lowercase())
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::get(format!("{}{path}", self.url)).await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }
}

pub fn sub_settings(name: &str, main_url: Option<String>, heartbeat: Duration) -> SubSettings {
    SubSettings {
        cluster_id: CLUSTER.into(),
        identity: format!("id-{name}-{}", rand::random::<u32>()),
        info: info(
            name,
            NodeMode::Sub,
            &format!("http://127.0.0.1:1/{name}"),
            7890,
        ),
        main_url,
        heartbeat,
        discovery_timeout: Duration::from_millis(500),
        secret: secret(),
    }
}

/// A sub loop with changeable statistics.
pub struct Sub {
    pub handle: Arc<SubHandle>,
    pub status: watch::Receiver<String>,
    pub stats: watch::Sender<NodeStats>,
    cancel: CancellationToken,
}

impl Sub {
    pub fn start(
        settings: SubSettings,
        st: NodeStats,
        browse: Option<mpsc::UnboundedReceiver<DiscoveryEvent>>,
    ) -> Self {
        init();
        let (stats_tx, stats_rx) = watch::channel(st);
        let (status_tx, status_rx) = watch::channel(String::new());
        let cancel = CancellationToken::new();
        let handle = SubHandle::start(
            settings,
            stats_source(stats_rx),
            browse,
            status_tx,
            http(),
            &TaskTracker::new(),
            cancel.clone(),
        );
        Sub {
            handle,
            status: status_rx,
            stats: stats_tx,
            cancel,
        }
    }

    /// A sub of `m` (its URL given, no discovery) heartbeating every `m`'s heartbeat.
    pub fn of(m: &MainServer, name: &str, st: NodeStats) -> Self {
        let heartbeat = m.main.settings().heartbeat;
        Self::start(sub_settings(name, Some(m.url.clone()), heartbeat), st, None)
    }

    /// Stop without saying goodbye (a crash, as main sees it).
    pub fn kill(&self) {
        self.cancel.cancel();
    }

    pub fn status_text(&self) -> String {
        self.status.borrow().clone()
    }
}

/// Poll `f` every 20 ms until it is true; the time it took, or None after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f().await {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A raw signed POST: `ts` and `nonce` as given (None = now / fresh), signed with `key`.
pub async fn post_signed(
    base: &str,
    path: &str,
    body: &[u8],
    node: &str,
    key: &ClusterSecret,
    ts: Option<u64>,
    nonce: Option<&str>,
) -> (u16, serde_json::Value) {
    let ts = ts.unwrap_or_else(unix_now);
    let nonce = nonce
        .map(str::to_owned)
        .unwrap_or_else(|| auth::new_nonce(&mut rand::thread_rng()));
    let sig = auth::sign(key, "POST", path, ts, &nonce, body);
    let r = http()
        .post(format!("{base}{path}"))
        .header(auth::HEADER_NODE, node)
        .header(auth::HEADER_TIMESTAMP, ts.to_string())
        .header(auth::HEADER_NONCE, nonce)
        .header(auth::HEADER_SIGNATURE, sig)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// `POST /api/rooms/{room}/join` with an optional bearer token.
pub async fn join(
    base: &str,
    room: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    init();
    let mut rb = CLIENT
        // shared by tests on different runtimes: no pooled connection may outlive its runtime
        .get_or_init(|| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap()
        })
        .post(format!("{base}/api/rooms/{room}/join"))
        .json(&body);
    if let Some(t) = token {
        rb = rb.header("authorization", format!("Bearer {t}"));
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}
