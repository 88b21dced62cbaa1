//! First-boot provisioning of the appliance (`airclass-node provision`, run by
//! `airclass-provision.service` before the node starts): who this machine is and which cluster
//! it joins, from, highest precedence first, systemd credentials (`airclass.NAME` or a whole
//! `airclass.provision` document; SMBIOS type 11, `systemd.set_credential=`, or a unit's
//! `LoadCredential=`), `airclass/provision.toml` on a USB stick labelled `AIRCLASS` or on the EFI
//! system partition, and `airclass.NAME=` on the kernel command line; an earlier provisioning
//! fills what none of them gives.
//!
//! Layout: [`keys`] (the settings), [`sources`] (parsing each source), [`plan`] (merge and
//! validate: pure), [`template`] (a sub's file, printed on main), [`render`] (the files it writes: pure), [`apply`] (writing them, starting
//! the node), [`scrub`] (secrets off FAT), [`cli`] (the command). It writes
//! `/etc/airclass/nodes/NODE.toml`, the secrets (0640 root:airclass), main's Redis config, the
//! hostname `airclass-NODE`, SSH keys or a console password hash for root, a static network
//! when asked, `/etc/issue.d/50-airclass.issue` and `/etc/airclass/appliance.toml` (the
//! non-secret identity), then starts `airclass-node@NODE`. It never logs a secret value.

pub mod apply;
pub mod cli;
pub mod keys;
pub mod plan;
pub mod render;
pub mod scrub;
pub mod sources;
pub mod template;

use std::fmt;

pub use cli::{command, ProvisionArgs};
pub use keys::{Key, Origin, Values};

/// A value (or a source) that cannot be used, with the fix. Never carries the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: Option<Key>,
    pub origin: Origin,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key {
            Some(k) => write!(f, "{}: {}: {}", self.origin, k.toml_path(), self.problem)?,
            None => write!(f, "{}: {}", self.origin, self.problem)?,
        }
        write!(f, "\n  fix: {}", self.fix)
    }
}

impl std::error::Error for Invalid {}

/// Failures while applying a plan (I/O, commands).
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: std::io::Error },
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("cannot generate secrets in {dir}: {error}")]
    Generate { dir: String, error: std::io::Error },
}

impl ProvisionError {
    pub(crate) fn write(path: &std::path::Path, error: std::io::Error) -> Self {
        ProvisionError::Write {
            path: path.display().to_string(),
            error,
        }
    }
    pub(crate) fn read(path: &std::path::Path, error: std::io::Error) -> Self {
        ProvisionError::Read {
            path: path.display().to_string(),
            error,
        }
    }
}
