//! What each subcommand does (`main.rs` only parses and maps results to exit codes).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::cli::Cli;
use crate::config::{self, load::Sources, NodeConfig, Problem, Secrets};
use crate::exit;
use crate::livekit::render;

/// The process environment as a map (non-UTF-8 variables are skipped).
pub fn env_map() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Where the config comes from, per the command line.
pub fn sources(cli: &Cli) -> Sources {
    let explicit = cli.config != Path::new("/etc/airclass/airclass.toml");
    Sources {
        config_path: cli.config.clone(),
        config_explicit: explicit,
        nodes_dir: cli.nodes_dir.clone(),
        env: env_map(),
    }
}

fn credentials_dir() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from)
}

fn print_problems(problems: &[Problem]) {
    let mut err = std::io::stderr().lock();
    for p in problems {
        let _ = writeln!(
            err,
            "error: {}: {}: {}\n  fix: {}",
            p.source, p.key, p.problem, p.fix
        );
    }
    let _ = writeln!(
        err,
        "{} problem{} found; nothing was started",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
}

fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// Everything `check` and `run` validate, every stage whatever the earlier ones found (schema,
/// values, then secrets and the LiveKit binary); all problems are printed here.
pub fn validate_all(cli: &Cli, instance: &str) -> Result<(NodeConfig, Secrets, Vec<String>), u8> {
    let runtime = std::env::var("RUNTIME_DIRECTORY").ok();
    let r = config::validate::resolve_all(&sources(cli), instance, runtime.as_deref());
    let (mut problems, mut warnings) = (r.problems, r.warnings);
    let Some(node) = r.node else {
        print_warnings(&warnings);
        print_problems(&problems);
        return Err(exit::CONFIG);
    };
    let secrets = match config::load_secrets(&node, credentials_dir().as_deref(), &mut warnings) {
        Ok(s) => Some(s),
        Err(p) => {
            problems.extend(p);
            None
        }
    };
    if let Err(p) = config::check_binary(&node) {
        problems.push(p);
    }
    print_warnings(&warnings);
    match secrets {
        Some(s) if problems.is_empty() => Ok((node, s, warnings)),
        _ => {
            print_problems(&problems);
            Err(exit::CONFIG)
        }
    }
}

pub fn check(cli: &Cli, instance: &str) -> u8 {
    match validate_all(cli, instance) {
        Ok((node, _, _)) => {
            let p = node.ports;
            let capacity = match node.port_capacity() {
                Some(c) => format!("about {c} participants (range mode)"),
                None => "not port-bound (UDP mux)".into(),
            };
            println!(
                "ok: instance {} ({} mode, node {}): LiveKit :{} tcp :{} udp {}-{}, API :{}; capacity {capacity}; LiveKit binary {}",
                node.instance,
                node.mode.as_str(),
                node.name,
                p.livekit_port,
                p.rtc_tcp_port,
                p.rtc_udp_start,
                p.rtc_udp_end,
                p.api_port,
                node.config.livekit.binary
            );
            exit::OK
        }
        Err(code) => code,
    }
}

pub fn render(cli: &Cli, instance: &str) -> u8 {
    let runtime = std::env::var("RUNTIME_DIRECTORY").ok();
    let (node, warnings) = match config::resolve(&sources(cli), instance, runtime.as_deref()) {
        Ok(x) => x,
        Err(p) => {
            print_problems(&p);
            return exit::CONFIG;
        }
    };
    print_warnings(&warnings);
    let mut w = Vec::new();
    let secrets = config::load_secrets(&node, credentials_dir().as_deref(), &mut w).ok();
    match render::render(&node, secrets.as_ref(), true) {
        Ok(r) => {
            println!("# {}", r.config_path.display());
            print!("{}", r.config_yaml);
            println!("---");
            println!("# {} (mode 0600)", r.keys_path.display());
            print!("{}", r.keys_yaml);
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}

pub fn ports(cli: &Cli, instance: &str, json: bool) -> u8 {
    match config::resolve(&sources(cli), instance, None) {
        Ok((node, _)) => {
            let p = node.ports;
            if json {
                println!("{}", p.to_json(instance));
            } else {
                println!("instance       {instance}");
                println!("livekit port   {}/tcp", p.livekit_port);
                println!("rtc tcp port   {}/tcp", p.rtc_tcp_port);
                println!("rtc udp range  {}-{}/udp", p.rtc_udp_start, p.rtc_udp_end);
                println!("control api    {}/tcp", p.api_port);
                match p.livekit_metrics_port {
                    Some(m) => println!("livekit metrics {m}/tcp"),
                    None => println!("livekit metrics off"),
                }
                println!("mdns           {}/udp", config::ports::MDNS_PORT);
            }
            exit::OK
        }
        Err(p) => {
            print_problems(&p);
            exit::CONFIG
        }
    }
}

/// `status`: ask the daemons, print the table (or JSON) and the verdict; exit 0/1/2.
pub fn status(
    cli: &Cli,
    instance: Option<&str>,
    url: Option<&str>,
    json: bool,
    timeout: std::time::Duration,
) -> u8 {
    use crate::status::{client, report};
    const UNREACHABLE: u8 = 2;
    let local = match url {
        Some(u) => u.to_owned(),
        None => {
            let picked = match instance {
                Some(i) => Ok(i.to_owned()),
                None => client::pick_instance(Path::new("/run/airclass"), &cli.nodes_dir),
            };
            let inst = match picked {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("error: {e}");
                    return UNREACHABLE;
                }
            };
            match config::resolve(&sources(cli), &inst, None) {
                Ok((node, _)) => client::local_api_url(&node),
                Err(p) => {
                    print_problems(&p);
                    eprintln!("(or give the control API with --url http://HOST:PORT)");
                    return UNREACHABLE;
                }
            }
        }
    };
    let http = match crate::tls::http_client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return UNREACHABLE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return UNREACHABLE;
        }
    };
    let answers = rt.block_on(client::gather(&http, &local, timeout));
    let r = report::build(&answers);
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        print!("{}", report::render_table(&r));
    }
    r.exit_code
}

pub fn secrets_init(dir: &Path, group: &str) -> u8 {
    match config::keygen::init_dir(dir, group) {
        Ok(created) if created.is_empty() => {
            println!("all secrets already exist in {}", dir.display());
            exit::OK
        }
        Ok(created) => {
            println!("created in {}: {}", dir.display(), created.join(", "));
            exit::OK
        }
        Err(e) => {
            eprintln!("error: cannot create secrets in {}: {e}", dir.display());
            exit::FAILURE
        }
    }
}

pub fn hash_token() -> u8 {
    let mut s = String::new();
    if std::io::stdin().read_to_string(&mut s).is_err() || s.trim().is_empty() {
        eprintln!("error: give the application token on standard input");
        return exit::USAGE;
    }
    println!("{}", crate::app_token::token_sha256_hex(s.trim()));
    exit::OK
}

/// The man page: generated from the CLI plus configuration, files, environment and exit status.
pub fn man() -> u8 {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd).section("8");
    let mut out = Vec::new();
    if man.render(&mut out).is_err() {
        return exit::FAILURE;
    }
    out.extend_from_slice(MAN_EXTRA.as_bytes());
    let _ = std::io::stdout().write_all(&out);
    exit::OK
}

const MAN_EXTRA: &str = r#".SH CONFIGURATION
The cluster\-wide file /etc/airclass/airclass.toml is read first, then the per\-instance file
/etc/airclass/nodes/NAME.toml (same schema, merged over it), then the environment variables
below. Unknown keys are errors. Sections: [node] (mode, name, livekit_port, rtc_tcp_port,
rtc_udp_start, rtc_udp_end, api_port, advertise_address), [livekit] (binary, url, api_key_file,
api_secret_file, port_mode = mux|range, expected_participants, node_ip, use_external_ip,
stun_servers (STUN servers handed to clients, HOST:PORT; empty = none that leaves the LAN), region,
prometheus_port (LiveKit's own metrics; default 6789+N, 0 = off), log_level, drain_timeout_secs, ready_timeout_secs, health_interval_ms,
health_failures, restart_budget), [redis] (url, password_file), [cluster] (id, secret_file,
main_url, heartbeat_secs, dead_after_missed, forget_after_secs, discovery_timeout_secs,
max_skew_secs, sysload_limit, mdns), [api] (bind, app_token_sha256_file, tls_cert_file,
tls_key_file, max_body_bytes, max_connections, header_timeout_secs, request_timeout_secs,
worker_threads: the daemon's runtime threads, default 1),
[metrics] (listen: empty = GET /metrics on the control API,
HOST:PORT = there only; token_sha256_file: require a bearer token, credential
metrics\-token\-sha256), [grants.teacher] and [grants.student] (can_publish, can_subscribe,
can_publish_data).
.PP
Ports are derived from the node name: main uses LiveKit 7880, ICE/TCP 7881, RTC UDP
50000\-50020, control API 8000 and LiveKit metrics 6789; node\-N uses 7880+10N, 7881+10N,
50000+1000N..+20, 8000+N and 6789+N, except that from node\-12 on LiveKit's two ports are
7900+10N and 7901+10N (clear of the control API ports 8000\-8015).
.SH MONITORING
.B airclass\-node status
asks the local daemon (and, on a sub, main) and prints node, mode, state, address, LiveKit
health and restarts, sysload against the limit, rooms, participants and last heartbeat age, then
a verdict; exit 0 healthy, 1 degraded, 2 down or unreachable. It needs no root.
.PP
Every node serves Prometheus metrics at GET /metrics on its control API port (OpenMetrics or
text 0.0.4); main serves a live status page at GET / and GET /status. A Prometheus scrape
configuration and a Grafana dashboard are in /usr/share/doc/airclass\-node/examples/; the
metric list is in /usr/share/doc/airclass\-node/metrics.md.
.PP
Journal fields: INSTANCE= on every line, NODE= on lines about a peer, ROOM= and OUTCOME= on
joins, FROM= and TO= on membership changes, CODE= on refusals, LIVEKIT=1 on LiveKit's output.
For example:
.nf
  journalctl \-u airclass\-node@main NODE=node\-2
  journalctl \-u airclass\-node@main TO=dead
  journalctl \-u airclass\-node@main ROOM=physics\-101
  journalctl \-u airclass\-node@main CODE=bad_signature
  journalctl \-u airclass\-node@node\-1 LIVEKIT=1
.fi
.SH LIMITS
The control API holds at most api.max_connections (4096) connections, never more than the soft
RLIMIT_NOFILE leaves after 256 handles; at the cap a connection still waiting for its client
(the oldest of the address with most of them) is closed for a newcomer, and when every
connection is busy the newcomer gets 503 busy. A TLS handshake, a request head or an idle
keep\-alive connection gets api.header_timeout_secs (10), a body and its answer
api.request_timeout_secs (30). At start the soft RLIMIT_NOFILE is raised to the hard limit (the
unit sets LimitNOFILE=65536). Running out of file handles is logged as a fault of the daemon,
never counted against LiveKit. Refused requests are counted in /metrics and logged as one
summary line per reason per 10 s; joins are logged at debug. Every error answer is JSON
{"error": CODE, "message": TEXT}. Colour codes only when stderr is a terminal and NO_COLOR is
unset.
.SH ENVIRONMENT
MODE, NODE_NAME, MAIN_NODE_URL, LIVEKIT_PORT, LIVEKIT_RTC_PORT_START, LIVEKIT_RTC_PORT_END,
REDIS_URL, LIVEKIT_BINARY, LIVEKIT_URL override the matching keys. AIRCLASS_CONFIG and
AIRCLASS_NODES_DIR set the file locations; AIRCLASS_FIREWALL=external leaves the firewall to the
host (NixOS). None of them reaches livekit\-server: its environment is scrubbed.
.SH FILES
.TP
/etc/airclass/airclass.toml
cluster\-wide configuration (conffile)
.TP
/etc/airclass/nodes/NAME.toml
per\-instance configuration
.TP
/usr/share/doc/airclass\-node/examples/grafana\-airclass\-cluster.json, prometheus\-airclass\-node.yml
the Grafana dashboard and the Prometheus scrape jobs
.TP
/etc/airclass/secrets/
livekit\-api\-key, livekit\-api\-secret, cluster\-secret, app\-token, app\-token.sha256; passed to
the unit with LoadCredential=
.TP
/run/airclass/NAME/livekit.yaml, livekit\-keys.yaml
LiveKit's rendered config and key file (mode 0600), rewritten at every start
.SH EXIT STATUS
0 success; 1 runtime failure (LiveKit failed to start or keeps failing, Redis unreachable);
2 usage error; 78 configuration error (EX_CONFIG: the unit does not restart on it).
.SH SEE ALSO
systemctl(1), journalctl(1), nft(8)
"#;

/// `firewall open|close|show`: the instance's own nftables table (`firewall` module).
pub fn firewall(cli: &Cli, action: crate::cli::FirewallAction, instance: &str) -> u8 {
    use crate::cli::FirewallAction;
    use crate::firewall;
    let backend =
        match firewall::parse_backend(std::env::var(firewall::BACKEND_ENV).ok().as_deref()) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::CONFIG;
            }
        };
    let result = match action {
        // closing needs no config: it must work even after a failed start
        FirewallAction::Close => firewall::close_with(backend, instance),
        FirewallAction::Show => match firewall::show(instance) {
            Ok(Some(text)) => {
                println!("{text}");
                Ok(())
            }
            Ok(None) => {
                println!("no table {} (ports closed)", firewall::table_name(instance));
                Ok(())
            }
            Err(e) => Err(e),
        },
        FirewallAction::Open => {
            let (node, _) = match config::resolve(&sources(cli), instance, None) {
                Ok(x) => x,
                Err(p) => {
                    print_problems(&p);
                    return exit::CONFIG;
                }
            };
            let spec = firewall::FirewallSpec::for_plan(
                instance,
                &node.ports,
                node.mode.is_clustered() && node.config.cluster.mdns,
            );
            firewall::open_with(backend, &spec)
        }
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: firewall {action:?} for {instance}: {e}");
            match e {
                firewall::FirewallError::InvalidSpec(_) => exit::CONFIG,
                _ => exit::FAILURE,
            }
        }
    }
}
