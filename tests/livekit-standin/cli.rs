//! Command line of the livekit-server stand-in (TEST DOUBLE): the real server's flags
//! (urfave/cli names), and its answer to an unknown flag (usage + reason on stdout,
//! `Incorrect Usage: …` on stderr, exit 0).

use clap::Parser;

use crate::config::CliValues;

/// Flags accepted like livekit-server's (urfave/cli); unknown flags are reported on stdout.
#[derive(Debug, Parser)]
#[command(
    name = "livekit-server",
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct Cli {
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
    pub version: bool,
    /// generated flag for config key `port`
    #[arg(long, hide = true)]
    port: Option<String>,
    /// generated flag for config key `rtc.tcp_port`
    #[arg(long = "rtc.tcp_port", hide = true)]
    rtc_tcp_port: Option<String>,
}

impl Cli {
    pub fn values(&self) -> CliValues {
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

/// The usage text printed before the reason of an unknown flag (abridged).
const USAGE: &str = "NAME:\n   livekit-server - High performance WebRTC server\n\n\
USAGE:\n   livekit-server [global options] [command [command options]]\n\n\
VERSION:\n   1.13.5 (livekit-standin, a test double)\n";

/// Parses the command line, or answers like the real server and exits 0.
pub fn parse_or_exit() -> Cli {
    use clap::error::{ContextKind, ErrorKind};
    let e = match Cli::try_parse() {
        Ok(cli) => return cli,
        Err(e) => e,
    };
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => print!("{e}"),
        ErrorKind::UnknownArgument => {
            let arg = e
                .get(ContextKind::InvalidArg)
                .map(|v| v.to_string())
                .unwrap_or_default();
            let name = arg.trim_start_matches('-');
            let name = name.split('=').next().unwrap_or(name);
            let reason = format!("flag provided but not defined: -{name}");
            eprintln!("Incorrect Usage: {reason}\n");
            println!("{USAGE}{reason}");
        }
        _ => println!("{}", e.render()),
    }
    std::process::exit(0);
}
