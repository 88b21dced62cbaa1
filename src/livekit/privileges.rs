//! Capabilities: the LiveKit child must hold none.
//!
//! Capabilities are inherited per thread at `fork`, so they are dropped once, in the main
//! thread, before the async runtime (and so any thread or child) exists: the bounding set
//! (which caps what any exec'd program can gain, even as root), the ambient set and the
//! inheritable set. The daemon itself needs no capability either: firewall changes run in a
//! separate `ExecStartPre=+` command.

use caps::{CapSet, Capability};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot clear the {set} capability set: {source}")]
    Clear {
        set: &'static str,
        source: caps::errors::CapsError,
    },
    #[error("cannot drop {cap} from the bounding set: {source}")]
    Bounding {
        cap: Capability,
        source: caps::errors::CapsError,
    },
}

/// Drop bounding, ambient and inheritable capabilities of the calling thread (and so of every
/// thread and child created after it). Returns how many bounding capabilities were dropped.
pub fn drop_for_children() -> Result<usize, PrivilegeError> {
    caps::clear(None, CapSet::Ambient).map_err(|source| PrivilegeError::Clear {
        set: "ambient",
        source,
    })?;
    // capset(2) is in systemd's @privileged set, which the unit filters (EPERM): call it only
    // when there is something to clear (or the set cannot be read).
    let inheritable_set = caps::read(None, CapSet::Inheritable).map_or(true, |s| !s.is_empty());
    if inheritable_set {
        caps::clear(None, CapSet::Inheritable).map_err(|source| PrivilegeError::Clear {
            set: "inheritable",
            source,
        })?;
    }
    let bounding = caps::read(None, CapSet::Bounding).unwrap_or_default();
    let mut dropped = 0;
    for cap in bounding {
        caps::drop(None, CapSet::Bounding, cap)
            .map_err(|source| PrivilegeError::Bounding { cap, source })?;
        dropped += 1;
    }
    Ok(dropped)
}
