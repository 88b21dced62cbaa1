//! TEST DOUBLE: `livekit-standin`, a stand-in for livekit-server 1.13.5 used only by
//! airclass-node's tests. It is never packaged (not in the .deb, not in the Nix package).
//! It mimics what a supervisor sees (CONTRACT.md §15, corrected against the real server by
//! the contract suite tests/contract/): strict config, env overrides, console log lines, bind
//! order and errors, exit codes, `/` health, Twirp RoomService, Redis `nodes` and
//! signal-driven drain, plus `STANDIN_*` misbehaviour switches (see README.md here).

mod cli;
mod config;
mod effective;
mod http;
mod listen;
mod log;
mod pjson;
mod redisio;
mod shutdown;
mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::{Shared, VERSION};

/// Why the stand-in stops before being ready; printed on stdout, exit 0 (CONTRACT §6).
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("unable to connect to redis: {0}")]
    Redis(#[from] redisio::RedisLinkError),
    #[error(transparent)]
    Bind(#[from] listen::BindError),
    #[error("{0}")]
    Simulated(String),
    #[error("could not start runtime: {0}")]
    Runtime(String),
}

/// Prints a startup error the way livekit-server does (stdout) and exits 0.
fn fail_start(err: impl Into<StartError>) -> ! {
    println!("{}", err.into());
    std::process::exit(0);
}

fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn main() {
    let cli = cli::parse_or_exit();
    if cli.version {
        println!("livekit-server version {VERSION}");
        std::process::exit(0);
    }
    let cfg = config::load(&cli.values(), &config::ProcessEnv).unwrap_or_else(|e| fail_start(e));
    let level = log::Level::parse(&cfg.log_level).unwrap_or(log::Level::Info);
    log::configure(cfg.log_json, level);
    if cfg.development {
        log::info("server/main.go:285", "starting in development mode", &[]);
    }
    for (level, msg) in &cfg.warnings {
        log::log(*level, "config/config.go:725", msg, &[]);
    }
    if let Some(v) =
        std::env::var_os("STANDIN_EXIT0_AT_START").filter(|v| !v.is_empty() && v != "0")
    {
        let v = v.to_string_lossy();
        let msg = match v.as_ref() {
            "1" | "true" => "could not validate RTC config: livekit-standin simulated startup failure (STANDIN_EXIT0_AT_START)".to_string(),
            other => other.to_string(),
        };
        fail_start(StartError::Simulated(msg));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail_start(StartError::Runtime(e.to_string())));
    let code = runtime.block_on(run(cfg));
    std::process::exit(code);
}

fn num_cpus() -> u32 {
    if let Some(f) = std::env::var("LIVEKIT_CPU_REQUEST")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return (f as u32).max(1);
    }
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Redis (PING at startup is fatal when it fails, dead nodes removed) or single-node routing.
async fn connect_routing(cfg: &config::Effective) -> Option<redisio::RedisLink> {
    if !cfg.redis_configured() {
        log::info(
            "routing/interfaces.go:181",
            "using single-node routing",
            &[],
        );
        return None;
    }
    let fields = [
        ("simple", true.into()),
        ("addr", cfg.redis.address.clone().into()),
    ];
    log::info("redis/redis.go:145", "connecting to redis", &fields);
    let mut link = redisio::RedisLink::new(&cfg.redis).unwrap_or_else(|e| fail_start(e));
    if let Err(e) = link.ping().await {
        fail_start(e);
    }
    if let Ok(n) = link.remove_dead_nodes(state::now_secs()).await {
        if n > 0 {
            log::info(
                "routing/redisrouter.go:260",
                "removed dead nodes",
                &[("count", n.into())],
            );
        }
    }
    Some(link)
}

async fn run(cfg: config::Effective) -> i32 {
    let ignore_all = env_flag("STANDIN_IGNORE_SIGTERM");
    let (sig_tx, mut sig_rx) = watch::channel(0u8);
    // With the switch, register at once so no signal can take the default action.
    if ignore_all && shutdown::spawn_signal_loop(sig_tx.clone(), true).is_err() {
        println!("could not install signal handlers");
        return 0;
    }
    if let Some(ms) = env_u64("STANDIN_START_DELAY_MS") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let redis = connect_routing(&cfg).await;
    let shared = Arc::new(Shared::new(cfg, redis, num_cpus()));
    if shared.cfg.use_external_ip {
        let ips = json!([shared.cfg.node_ip.primary()]);
        log::info(
            "rtcconfig/webrtc_config.go:105",
            "using external IPs",
            &[("ips", ips)],
        );
    }
    let rtc = listen::bind_rtc(&shared.cfg, shared.num_cpus)
        .await
        .unwrap_or_else(|e| fail_start(e));
    if !ignore_all && shutdown::spawn_signal_loop(sig_tx.clone(), false).is_err() {
        println!("could not install signal handlers");
        return 0;
    }
    // Register the node before HTTP is bound (a deferred unregister removes it on failure).
    shared.publish_node().await;
    if env_flag("STANDIN_HANG") {
        let msg = "stand-in hanging before the ready line (STANDIN_HANG)";
        log::log(log::Level::Warn, "standin/main.rs:1", msg, &[]);
        shutdown::wait_level(&mut sig_rx, 1).await;
        unregister(&shared).await;
        return 0;
    }
    let (http, prom) = bind_http(&shared).await;
    let fields = listen::ready_fields(&shared.cfg, &shared.node_id);
    log::info("service/server.go:292", "starting LiveKit server", &fields);
    let ready_at = Instant::now();
    let (stop_tx, servers) = serve(&shared, http, prom);
    preseed(&shared).await;
    let background = spawn_background(&shared, rtc);
    shutdown::drain(&shared, &mut sig_rx, ready_at).await;
    for task in background {
        task.abort();
    }
    unregister(&shared).await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), join_all(servers)).await;
    0
}

/// HTTP and prometheus listeners; on failure the node is unregistered and the error printed.
async fn bind_http(shared: &Shared) -> (Vec<TcpListener>, Vec<TcpListener>) {
    let cfg = &shared.cfg;
    let http = match listen::bind_tcp_each(cfg, cfg.port).await {
        Ok(l) => l,
        Err(e) => {
            unregister(shared).await;
            fail_start(e)
        }
    };
    let mut prom = Vec::new();
    if cfg.prometheus_port != 0 {
        prom = match listen::bind_tcp_each(cfg, cfg.prometheus_port).await {
            Ok(l) => l,
            Err(e) => {
                unregister(shared).await;
                fail_start(e)
            }
        };
    }
    (http, prom)
}

type Tasks = Vec<tokio::task::JoinHandle<()>>;

/// Serves HTTP and prometheus until the returned sender says stop.
fn serve(
    shared: &Arc<Shared>,
    http: Vec<TcpListener>,
    prom: Vec<TcpListener>,
) -> (watch::Sender<bool>, Tasks) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let all = http
        .into_iter()
        .map(|l| (l, http::router(shared.clone())))
        .chain(
            prom.into_iter()
                .map(|l| (l, http::prometheus_router(shared.clone()))),
        );
    for (l, app) in all {
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let _ = axum::serve(l, app).with_graceful_shutdown(shutdown).await;
        }));
    }
    (stop_tx, tasks)
}

/// `STANDIN_PARTICIPANTS="room=2,other=1"`: fake participants from the ready line on.
async fn preseed(shared: &Shared) {
    let Ok(spec) = std::env::var("STANDIN_PARTICIPANTS") else {
        return;
    };
    for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
        let (room, n) = item.split_once('=').unwrap_or((item, "1"));
        let room = shared.set_fake_participants(room.trim(), n.trim().parse().unwrap_or(1));
        shared.store_room(&room).await;
    }
}

/// ICE/TCP accept loop, the 2 s stats ticker, the crash switch.
fn spawn_background(shared: &Arc<Shared>, rtc: listen::Rtc) -> Tasks {
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(async move {
        let _udp = rtc.udp; // held open
        match rtc.tcp {
            Some(l) => loop {
                if let Ok((stream, _)) = l.accept().await {
                    drop(stream);
                }
            },
            None => std::future::pending::<()>().await,
        }
    }));
    let ticker_shared = shared.clone();
    tasks.push(tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(2));
        interval.tick().await;
        loop {
            interval.tick().await;
            ticker_shared.stats_tick().await;
        }
    }));
    if let Some(ms) = env_u64("STANDIN_CRASH_AFTER_MS") {
        let code = env_u64("STANDIN_CRASH_CODE").unwrap_or(2) as i32;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            eprintln!(
                "panic: livekit-standin simulated crash (STANDIN_CRASH_AFTER_MS={ms})\n\n\
                 goroutine 1 [running]:\nmain.main()\n\t/standin/cmd/server/main.go:1 +0x1d"
            );
            std::process::exit(code);
        }));
    }
    tasks
}

async fn join_all(handles: Tasks) {
    for h in handles {
        let _ = h.await;
    }
}

/// HDEL the node from Redis `nodes`.
async fn unregister(shared: &Shared) {
    if let Some(redis) = &shared.redis {
        let _ = redis.lock().await.hdel("nodes", &shared.node_id).await;
    }
}
