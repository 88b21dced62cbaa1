//! `airclass-node`: parses the command line, sets up logging and maps results to exit codes.

#![warn(clippy::disallowed_types, clippy::disallowed_methods)]

use std::process::ExitCode;

use clap::Parser;

use airclass_node::cli::{Cli, Command, SecretsCommand};
use airclass_node::{commands, daemon, exit, livekit, logging};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let code = match &cli.command {
        Command::Run(i) => run(&cli, &i.instance),
        Command::Check(i) => commands::check(&cli, &i.instance),
        Command::Render(i) => commands::render(&cli, &i.instance),
        Command::Ports { instance, json } => commands::ports(&cli, &instance.instance, *json),
        Command::Firewall { action, instance } => {
            logging::init(Some(&instance.instance), "info");
            commands::firewall(&cli, *action, &instance.instance)
        }
        Command::Secrets {
            command: SecretsCommand::Init { dir, group },
        } => commands::secrets_init(dir, group),
        Command::Status {
            instance,
            url,
            json,
            timeout_ms,
        } => commands::status(
            &cli,
            instance.as_deref(),
            url.as_deref(),
            *json,
            std::time::Duration::from_millis(*timeout_ms),
        ),
        Command::HashToken => commands::hash_token(),
        Command::Provision(args) => airclass_node::provision::command(args),
        Command::Man => commands::man(),
    };
    ExitCode::from(code)
}

fn run(cli: &Cli, instance: &str) -> u8 {
    // first: a SIGTERM from now on is remembered until the daemon's handlers exist, then it
    // unwinds through the daemon's stop path (never the default action, exit 143)
    let caught = daemon::signals::catch_early();
    logging::init(Some(instance), "info");
    if let Err(e) = caught {
        tracing::warn!(error = %e, "cannot catch SIGTERM/SIGINT before the handlers are installed");
    }
    let (node, secrets, _warnings) = match commands::validate_all(cli, instance) {
        Ok(x) => x,
        Err(code) => return code,
    };
    raise_file_limit();
    // before any thread exists: children inherit no capability
    match livekit::privileges::drop_for_children() {
        Ok(n) => tracing::debug!(bounding_dropped = n, "capabilities dropped for children"),
        Err(e) => {
            tracing::error!(error = %e, "cannot drop capabilities; refusing to start LiveKit with them");
            return exit::FAILURE;
        }
    }
    airclass_node::tls::install_crypto_provider();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(node.config.api.worker_threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return exit::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let shutdown = match daemon::signals::Shutdown::install() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                return Err(None);
            }
        };
        // inside the runtime: the notify thread and the watchdog period come from systemd
        daemon::run(
            node,
            secrets,
            daemon::RunOptions::from_env(),
            shutdown.recv(),
        )
        .await
        .map_err(Some)
    });
    match result {
        Ok(()) => exit::OK,
        Err(None) => exit::FAILURE,
        Err(Some(e)) => {
            tracing::error!(error = %e, "airclass-node failed");
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// The soft file handle limit up to the hard one (systemd's default soft limit is 1024; the
/// unit sets `LimitNOFILE=`): logged either way.
fn raise_file_limit() {
    match airclass_node::fds::raise_nofile() {
        Ok(l) => tracing::info!(
            soft_before = l.soft_before,
            soft = l.soft,
            hard = l.hard,
            "file handle limit (RLIMIT_NOFILE)"
        ),
        Err(e) => tracing::warn!(error = %e, "file handle limit unchanged"),
    }
}
