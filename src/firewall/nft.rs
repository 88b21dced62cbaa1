//! Runs the `nft` binary: applies a JSON batch on stdin (`nft -j -f -`) and lists tables.
//! Owns process spawning and error capture only; what to apply comes from `rules.rs`.

use std::io::Write;
use std::process::{Command, Stdio};

use nftables::schema::{NfListObject, NfObject, Nftables};

use super::FirewallError;

/// The `nft` executable, looked up in `PATH` (systemd's default PATH includes /usr/sbin).
/// `AIRCLASS_NFT` overrides it (tests, unusual layouts).
fn program() -> String {
    std::env::var("AIRCLASS_NFT")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "nft".to_owned())
}

fn spawn_error(program: &str, e: std::io::Error) -> FirewallError {
    if e.kind() == std::io::ErrorKind::NotFound {
        FirewallError::NftMissing {
            program: program.to_owned(),
        }
    } else {
        FirewallError::Spawn {
            program: program.to_owned(),
            source: e,
        }
    }
}

/// Applies `batch` atomically with `nft -j -f -`, capturing nft's diagnostics.
pub fn apply(batch: &Nftables<'_>, action: &'static str) -> Result<(), FirewallError> {
    let payload = serde_json::to_vec(batch).map_err(FirewallError::Json)?;
    let program = program();
    let mut child = Command::new(&program)
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(&program, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&payload)
            .map_err(|e| FirewallError::Spawn {
                program: program.clone(),
                source: e,
            })?;
    }
    let out = child.wait_with_output().map_err(|e| FirewallError::Spawn {
        program: program.clone(),
        source: e,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FirewallError::NftFailed {
            action,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Runs `nft ARGS` and returns its stdout.
pub fn run(args: &[&str], action: &'static str) -> Result<String, FirewallError> {
    let program = program();
    let out = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(&program, e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(FirewallError::NftFailed {
            action,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Whether table `inet NAME` exists (from `nft -j list tables inet`).
pub fn inet_table_exists(name: &str) -> Result<bool, FirewallError> {
    let json = run(&["-j", "list", "tables", "inet"], "listing tables")?;
    let parsed: Nftables<'_> = serde_json::from_str(&json).map_err(FirewallError::Json)?;
    Ok(parsed
        .objects
        .iter()
        .any(|o| matches!(o, NfObject::ListObject(NfListObject::Table(t)) if t.name == name)))
}
