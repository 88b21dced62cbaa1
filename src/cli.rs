//! The command line (clap). Also the source of the man page (`airclass-node man`).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Runs one node of an AirClass live-classroom cluster: renders LiveKit's config, supervises
/// livekit-server, reports health to systemd, opens the node's firewall ports and joins the
/// main/sub cluster.
#[derive(Debug, Parser)]
#[command(name = "airclass-node", version, about, long_about = None)]
pub struct Cli {
    /// Cluster-wide config file (a missing default file means "all defaults").
    #[arg(
        long,
        global = true,
        env = "AIRCLASS_CONFIG",
        default_value = "/etc/airclass/airclass.toml"
    )]
    pub config: PathBuf,
    /// Folder of per-instance files (NAME.toml).
    #[arg(
        long,
        global = true,
        env = "AIRCLASS_NODES_DIR",
        default_value = "/etc/airclass/nodes"
    )]
    pub nodes_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node (the daemon; systemd: ExecStart).
    Run(Instance),
    /// Validate config, secrets and the LiveKit binary; print every problem (exit 0 or 78).
    Check(Instance),
    /// Print the LiveKit config this node would write (secrets redacted).
    Render(Instance),
    /// Print the node's port plan.
    Ports {
        #[command(flatten)]
        instance: Instance,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Open or close the node's ports in its own nftables table (run as root).
    Firewall {
        action: FirewallAction,
        #[command(flatten)]
        instance: Instance,
    },
    /// Manage secret files.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Is the cluster healthy? Ask the local daemon (and, on a sub, main) and print one table:
    /// node, mode, state, address, LiveKit health and restarts, sysload, rooms, participants,
    /// last heartbeat age, then a one-line verdict. Exit 0 healthy, 1 degraded, 2 down or
    /// unreachable. Needs no root: it reads what the daemons serve on their control API.
    Status {
        /// Instance to ask (default: the only one running, or the only NAME.toml).
        #[arg(long, short = 'i')]
        instance: Option<String>,
        /// Ask the control API at this URL instead (e.g. http://10.0.0.5:8001).
        #[arg(long, conflicts_with = "instance")]
        url: Option<String>,
        /// One JSON object (verdict, summary, exit_code, nodes, problems) instead of the table.
        #[arg(long)]
        json: bool,
        /// How long to wait for each answer, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Read an application token on stdin and print its SHA-256 (for app-token.sha256).
    HashToken,
    /// Provision the appliance at boot: node name, mode, cluster and secrets from systemd
    /// credentials (airclass.NAME, airclass.provision), airclass/provision.toml on a USB stick
    /// labelled AIRCLASS or the EFI partition, or airclass.NAME= on the kernel command line.
    Provision(crate::provision::ProvisionArgs),
    /// Print the man page (roff) to stdout.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, clap::Args)]
pub struct Instance {
    /// Instance name (systemd %i), e.g. main or node-1.
    #[arg(long, short = 'i')]
    pub instance: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FirewallAction {
    Open,
    Close,
    Show,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create the secrets that are missing (never overwrites): livekit-api-key,
    /// livekit-api-secret, cluster-secret, app-token, app-token.sha256.
    Init {
        /// Folder for the secret files.
        #[arg(long, default_value = "/etc/airclass/secrets")]
        dir: PathBuf,
        /// Group that may read them (if it exists).
        #[arg(long, default_value = "airclass")]
        group: String,
    },
}
