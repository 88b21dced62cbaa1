//! TEST DOUBLE: `livekit-standin`, a stand-in for livekit-server 1.13.5 used only by
//! airclass-node's tests. It is never packaged (not in the .deb, not in the Nix package).
//! It mimics what a supervisor sees (CONTRACT.md §15): strict config, env overrides, console
//! log lines, bind order and errors, exit codes, `/` health, Twirp RoomService, Redis `nodes`
//! and signal-driven drain, plus `STANDIN_*` misbehaviour switches (see README.md here).

mod config;
mod http;
mod log;
mod pjson;
mod redisio;
mod state;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::{io_reason, CliValues, Udp};
use crate::state::{Shared, VERSION};

/// Flags accepted like livekit-server's (urfave/cli); unknown flags are reported on stdout.
#[derive(Debug, Parser)]
#[command(
    name = "livekit-server",
    disable_version_flag = true,
    disable_help_subcommand = true
)]
struct Cli {
    /// path to LiveKit config file
    #[arg(long)]
    config: Option<String>,
    /// LiveKit config in YAML, typically passed in as an environment var in a container
    #[arg(long = "config-body")]
    config_body: Option<String>,
    /// path to file that contains API keys/secrets
    #[arg(long = "key-file")]
    key_file: Option<String>,
    /// api keys (key: secret\n)
    #[arg(long)]
    keys: Option<String>,
    /// region of the current node
    #[arg(long)]
    region: Option<String>,
    /// IP address of the current node
    #[arg(long = "node-ip")]
    node_ip: Option<String>,
    /// UDP port(s) to use for WebRTC traffic
    #[arg(long = "udp-port")]
    udp_port: Option<String>,
    /// host (incl. port) to redis server
    #[arg(long = "redis-host")]
    redis_host: Option<String>,
    /// password to redis
    #[arg(long = "redis-password")]
    redis_password: Option<String>,
    /// tls cert file for TURN server
    #[arg(long = "turn-cert")]
    turn_cert: Option<String>,
    /// tls key file for TURN server
    #[arg(long = "turn-key")]
    turn_key: Option<String>,
    /// IP address to listen on, use flag multiple times to specify multiple addresses
    #[arg(long)]
    bind: Vec<String>,
    /// write cpu profile to `file`
    #[arg(long)]
    cpuprofile: Option<String>,
    /// write memory profile to `file`
    #[arg(long)]
    memprofile: Option<String>,
    /// sets log-level to debug, console formatter, and /debug/pprof. insecure for production
    #[arg(long)]
    dev: bool,
    #[arg(long = "disable-strict-config", hide = true)]
    disable_strict_config: bool,
    /// print the version
    #[arg(long, short = 'v')]
    version: bool,
    /// generated flag for config key `port`
    #[arg(long, hide = true)]
    port: Option<String>,
    /// generated flag for config key `rtc.tcp_port`
    #[arg(long = "rtc.tcp_port", hide = true)]
    rtc_tcp_port: Option<String>,
}

impl Cli {
    fn values(&self) -> CliValues {
        CliValues {
            config: self.config.clone(),
            config_body: self.config_body.clone(),
            key_file: self.key_file.clone(),
            keys: self.keys.clone(),
            region: self.region.clone(),
            node_ip: self.node_ip.clone(),
            udp_port: self.udp_port.clone(),
            redis_host: self.redis_host.clone(),
            redis_password: self.redis_password.clone(),
            bind: self.bind.clone(),
            dev: self.dev,
            disable_strict_config: self.disable_strict_config,
            port: self.port.clone(),
            rtc_tcp_port: self.rtc_tcp_port.clone(),
        }
    }
}

/// Why the stand-in stops before being ready; printed on stdout, exit 0 (CONTRACT §6).
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("unable to connect to redis: {0}")]
    Redis(#[from] redisio::RedisLinkError),
    #[error("listen {proto} {addr}: bind: {reason}")]
    Bind {
        proto: &'static str,
        addr: String,
        reason: String,
    },
    #[error("{0}")]
    Simulated(String),
    #[error("could not start runtime: {0}")]
    Runtime(String),
}

/// Prints a startup error the way livekit-server does (stdout) and exits 0.
fn fail_start(err: &StartError) -> ! {
    println!("{err}");
    std::process::exit(0);
}

fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::{ContextKind, ErrorKind};
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => print!("{e}"),
                ErrorKind::UnknownArgument => {
                    let arg = e
                        .get(ContextKind::InvalidArg)
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    let name = arg.trim_start_matches('-');
                    let name = name.split('=').next().unwrap_or(name);
                    println!("Incorrect Usage: flag provided but not defined: -{name}");
                }
                _ => println!("{}", e.render()),
            }
            std::process::exit(0);
        }
    };
    if cli.version {
        println!("livekit-server version {VERSION}");
        std::process::exit(0);
    }
    let cfg = match config::load(&cli.values(), &config::ProcessEnv) {
        Ok(c) => c,
        Err(e) => fail_start(&StartError::Config(e)),
    };
    log::configure(
        cfg.log_json,
        log::Level::parse(&cfg.log_level).unwrap_or(log::Level::Info),
    );
    if cfg.development {
        log::info("server/main.go:285", "starting in development mode", &[]);
    }
    for (level, msg) in &cfg.warnings {
        log::log(*level, "config/config.go:740", msg, &[]);
    }
    if let Some(v) = std::env::var_os("STANDIN_EXIT0_AT_START") {
        if !v.is_empty() && v != "0" {
            let v = v.to_string_lossy();
            let msg = if v == "1" || v == "true" {
                "could not validate RTC config: livekit-standin simulated startup failure (STANDIN_EXIT0_AT_START)"
                    .to_string()
            } else {
                v.into_owned()
            };
            fail_start(&StartError::Simulated(msg));
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail_start(&StartError::Runtime(e.to_string())),
    };
    let code = runtime.block_on(run(cfg));
    std::process::exit(code);
}

fn num_cpus() -> u32 {
    if let Ok(v) = std::env::var("LIVEKIT_CPU_REQUEST") {
        if let Ok(f) = v.trim().parse::<f64>() {
            return (f as u32).max(1);
        }
    }
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

fn bind_error(proto: &'static str, addr: String, e: &std::io::Error) -> StartError {
    StartError::Bind {
        proto,
        addr,
        reason: io_reason(e),
    }
}

/// Shutdown requests from signals: 0 none, 1 graceful drain, 2 force.
type Level = watch::Receiver<u8>;

/// Counts SIGTERM/SIGINT/SIGQUIT: 1st drains, 2nd forces, later ones are ignored.
fn spawn_signal_loop(tx: watch::Sender<u8>, ignore_all: bool) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    tokio::spawn(async move {
        let mut count: u8 = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "terminated",
                _ = int.recv() => "interrupt",
                _ = quit.recv() => "quit",
            };
            if ignore_all {
                log::log(
                    log::Level::Warn,
                    "standin/main.rs:1",
                    "stand-in ignoring signal (STANDIN_IGNORE_SIGTERM)",
                    &[("signal", name.into())],
                );
                continue;
            }
            count = count.saturating_add(1);
            if count <= 2 {
                log::info(
                    "server/main.go:322",
                    "exit requested, shutting down",
                    &[("signal", name.into()), ("force", (count == 2).into())],
                );
                let _ = tx.send(count);
            }
            // 3rd and later: caught and never acted on.
        }
    });
    Ok(())
}

async fn wait_level(rx: &mut Level, at_least: u8) {
    loop {
        if *rx.borrow_and_update() >= at_least {
            return;
        }
        if rx.changed().await.is_err() {
            // Sender gone: never happens while the signal task lives; park forever.
            std::future::pending::<()>().await;
        }
    }
}

async fn run(cfg: config::Effective) -> i32 {
    let ignore_all = env_flag("STANDIN_IGNORE_SIGTERM");
    let (sig_tx, mut sig_rx) = watch::channel(0u8);
    if ignore_all {
        // Register at once so no signal can take the default action (only SIGKILL ends us).
        if let Err(e) = spawn_signal_loop(sig_tx.clone(), true) {
            println!("could not install signal handlers: {e}");
            return 0;
        }
    }
    if let Some(ms) = env_u64("STANDIN_START_DELAY_MS") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    // Routing: Redis or single node.
    let redis = if cfg.redis_configured() {
        log::info(
            "redis/redis.go:142",
            "connecting to redis",
            &[
                ("simple", true.into()),
                ("addr", cfg.redis.address.clone().into()),
            ],
        );
        let mut link = match redisio::RedisLink::new(&cfg.redis) {
            Ok(l) => l,
            Err(e) => fail_start(&StartError::Redis(e)),
        };
        if let Err(e) = link.ping().await {
            fail_start(&StartError::Redis(e));
        }
        match link.remove_dead_nodes(state::now_secs()).await {
            Ok(n) if n > 0 => log::info(
                "routing/redisrouter.go:260",
                "removed dead nodes",
                &[("count", n.into())],
            ),
            _ => {}
        }
        Some(link)
    } else {
        log::info(
            "routing/interfaces.go:181",
            "using single-node routing",
            &[],
        );
        None
    };
    let shared = Arc::new(Shared::new(cfg, redis, num_cpus()));
    let cfg = &shared.cfg;

    if cfg.use_external_ip {
        log::info(
            "rtcconfig/webrtc_config.go:115",
            "using external IPs",
            &[("ips", json!([cfg.node_ip]))],
        );
    }

    // ICE/TCP and UDP mux listeners (InitializeServer), all interfaces for TCP.
    let mut rtc_tcp = None;
    if cfg.tcp_port != 0 {
        match TcpListener::bind(("0.0.0.0", cfg.tcp_port as u16)).await {
            Ok(l) => rtc_tcp = Some(l),
            Err(e) => fail_start(&bind_error("tcp", format!(":{}", cfg.tcp_port), &e)),
        }
    }
    let mut udp_mux = None;
    if let Udp::Mux(start, _) = cfg.udp {
        match UdpSocket::bind(("127.0.0.1", start as u16)).await {
            Ok(s) => udp_mux = Some(s),
            Err(e) => fail_start(&bind_error("udp", format!("127.0.0.1:{start}"), &e)),
        }
    }

    if !ignore_all {
        if let Err(e) = spawn_signal_loop(sig_tx.clone(), false) {
            println!("could not install signal handlers: {e}");
            return 0;
        }
    }

    // Register the node before HTTP is bound (a deferred unregister removes it on failure).
    shared.publish_node().await;

    if env_flag("STANDIN_HANG") {
        log::log(
            log::Level::Warn,
            "standin/main.rs:1",
            "stand-in hanging before the ready line (STANDIN_HANG)",
            &[],
        );
        wait_level(&mut sig_rx, 1).await;
        unregister(&shared).await;
        return 0;
    }

    // HTTP listeners, one per bind address (wildcard when none).
    let addrs: Vec<String> = if cfg.bind_addresses.is_empty() {
        vec![String::new()]
    } else {
        cfg.bind_addresses.clone()
    };
    let mut http_listeners = Vec::new();
    for a in &addrs {
        let host = if a.is_empty() { "0.0.0.0" } else { a.as_str() };
        let sock: SocketAddr = match format!("{host}:{}", cfg.port)
            .parse()
            .or_else(|_| format!("[{host}]:{}", cfg.port).parse())
        {
            Ok(s) => s,
            Err(_) => fail_start(&StartError::Bind {
                proto: "tcp",
                addr: format!("{a}:{}", cfg.port),
                reason: "invalid address".into(),
            }),
        };
        match TcpListener::bind(sock).await {
            Ok(l) => http_listeners.push(l),
            Err(e) => {
                unregister(&shared).await;
                let shown = if a.contains(':') {
                    format!("[{a}]")
                } else {
                    a.clone()
                };
                fail_start(&bind_error("tcp", format!("{shown}:{}", cfg.port), &e));
            }
        }
    }
    let mut prom_listeners = Vec::new();
    if cfg.prometheus_port != 0 {
        for a in &addrs {
            let host = if a.is_empty() { "0.0.0.0" } else { a.as_str() };
            let target = if host.contains(':') {
                format!("[{host}]:{}", cfg.prometheus_port)
            } else {
                format!("{host}:{}", cfg.prometheus_port)
            };
            match TcpListener::bind(target).await {
                Ok(l) => prom_listeners.push(l),
                Err(e) => {
                    unregister(&shared).await;
                    fail_start(&bind_error(
                        "tcp",
                        format!("{a}:{}", cfg.prometheus_port),
                        &e,
                    ));
                }
            }
        }
    }

    // The ready line: after every listener is bound, before Serve.
    let mut fields: Vec<(&str, Value)> = vec![
        ("portHttp", cfg.port.into()),
        ("nodeID", shared.node_id.clone().into()),
        ("nodeIP", cfg.node_ip.clone().into()),
        ("version", VERSION.into()),
    ];
    if !cfg.bind_addresses.is_empty() {
        fields.push(("bindAddresses", json!(cfg.bind_addresses)));
    }
    if cfg.tcp_port != 0 {
        fields.push(("rtc.portTCP", cfg.tcp_port.into()));
    }
    match cfg.udp {
        Udp::IceRange(a, b) => fields.push(("rtc.portICERange", json!([a, b]))),
        Udp::Mux(a, 0) => fields.push(("rtc.portUDP", a.into())),
        Udp::Mux(a, b) => fields.push(("rtc.portUDP", json!([a, b]))),
    }
    if cfg.prometheus_port != 0 {
        fields.push(("portPrometheus", cfg.prometheus_port.into()));
    }
    if !cfg.region.is_empty() {
        fields.push(("region", cfg.region.clone().into()));
    }
    log::info("service/server.go:292", "starting LiveKit server", &fields);

    // Serve.
    let (stop_http_tx, stop_http_rx) = watch::channel(false);
    let mut servers = Vec::new();
    for l in http_listeners {
        let mut stop = stop_http_rx.clone();
        let app = http::router(shared.clone());
        servers.push(tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        }));
    }
    for l in prom_listeners {
        let mut stop = stop_http_rx.clone();
        let app = http::prometheus_router(shared.clone());
        servers.push(tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        }));
    }
    // Accept and drop ICE/TCP connections; keep the UDP mux socket open.
    let rtc_task = tokio::spawn(async move {
        let _udp = udp_mux;
        match rtc_tcp {
            Some(l) => loop {
                if let Ok((stream, _)) = l.accept().await {
                    drop(stream);
                }
            },
            None => std::future::pending::<()>().await,
        }
    });

    // Stats ticker: 2 s.
    let ticker_shared = shared.clone();
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(2));
        interval.tick().await;
        loop {
            interval.tick().await;
            ticker_shared.stats_tick().await;
        }
    });

    // Pre-seeded fake participants: STANDIN_PARTICIPANTS="room=2,other=1".
    if let Ok(spec) = std::env::var("STANDIN_PARTICIPANTS") {
        for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
            let (room, n) = item.split_once('=').unwrap_or((item, "1"));
            let n = n.trim().parse::<usize>().unwrap_or(1);
            let room_rec = shared.set_fake_participants(room.trim(), n);
            shared.store_room(&room_rec).await;
        }
    }

    // Simulated crash after being ready.
    if let Some(ms) = env_u64("STANDIN_CRASH_AFTER_MS") {
        let code = env_u64("STANDIN_CRASH_CODE").unwrap_or(2) as i32;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            eprintln!(
                "panic: livekit-standin simulated crash (STANDIN_CRASH_AFTER_MS={ms})\n\n\
                 goroutine 1 [running]:\nmain.main()\n\t/standin/cmd/server/main.go:1 +0x1d"
            );
            std::process::exit(code);
        });
    }

    // Graceful drain on the 1st signal; the 2nd forces.
    wait_level(&mut sig_rx, 1).await;
    shared.draining.store(true, Ordering::Relaxed);
    shared.publish_node().await;
    let mut last_log: Option<Instant> = None;
    while *sig_rx.borrow() < 2 && shared.total_participants() > 0 {
        if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            log::info(
                "service/server.go:350",
                "waiting for participants to exit",
                &[("participants", shared.total_participants().into())],
            );
            last_log = Some(Instant::now());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = wait_level(&mut sig_rx, 2) => {}
        }
    }
    ticker.abort();
    unregister(&shared).await;
    let _ = stop_http_tx.send(true);
    let all = futures_join(servers);
    let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
    rtc_task.abort();
    log::info("service/server.go:371", "server stopped", &[]);
    0
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
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
