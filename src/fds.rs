//! File handles: the soft `RLIMIT_NOFILE` raised to the hard one at start, and telling "this
//! process ran out of file handles" (EMFILE/ENFILE: a local fault of the daemon) apart from
//! every other I/O error, in accept, in the LiveKit probe's connect and in spawn.
//!
//! Running out of handles says nothing about LiveKit (a separate process with its own table):
//! the supervisor must not kill a healthy LiveKit because its own probe socket could not be
//! opened, and a restart that cannot spawn for want of a handle spends no restart budget.

use std::error::Error;
use std::io;

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The file handle limits before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimits {
    /// The soft limit the process was started with.
    pub soft_before: u64,
    /// The soft limit now (the hard one, unless raising it failed).
    pub soft: u64,
    pub hard: u64,
}

/// Why the soft limit could not be read or raised.
#[derive(Debug, thiserror::Error)]
pub enum FdLimitError {
    #[error("cannot read RLIMIT_NOFILE: {0}")]
    Read(#[source] Errno),
    #[error("cannot raise the soft RLIMIT_NOFILE from {soft} to the hard limit {hard}: {source}")]
    Raise {
        soft: u64,
        hard: u64,
        #[source]
        source: Errno,
    },
}

/// Raise the soft `RLIMIT_NOFILE` to the hard one (no call when they are equal, as under the
/// unit's `LimitNOFILE=`).
pub fn raise_nofile() -> Result<NofileLimits, FdLimitError> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(FdLimitError::Read)?;
    if soft >= hard {
        return Ok(NofileLimits {
            soft_before: soft,
            soft,
            hard,
        });
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|source| FdLimitError::Raise {
        soft,
        hard,
        source,
    })?;
    Ok(NofileLimits {
        soft_before: soft,
        soft: hard,
        hard,
    })
}

/// The current soft `RLIMIT_NOFILE` (None when it cannot be read).
pub fn soft_limit() -> Option<u64> {
    getrlimit(Resource::RLIMIT_NOFILE).ok().map(|(s, _)| s)
}

/// Is `e` "too many open files" (this process: EMFILE, or the whole system: ENFILE)?
pub fn is_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(n) if n == Errno::EMFILE as i32 || n == Errno::ENFILE as i32)
}

/// Does any error in `e`'s source chain say "too many open files"? (A reqwest error wraps
/// hyper's, which wraps the connector's `io::Error`.)
pub fn chain_is_exhaustion(e: &(dyn Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<io::Error>().is_some_and(is_exhaustion) {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_is_emfile_or_enfile_only() {
        assert!(is_exhaustion(&io::Error::from_raw_os_error(
            Errno::EMFILE as i32
        )));
        assert!(is_exhaustion(&io::Error::from_raw_os_error(
            Errno::ENFILE as i32
        )));
        assert!(!is_exhaustion(&io::Error::from_raw_os_error(
            Errno::ECONNREFUSED as i32
        )));
        assert!(!is_exhaustion(&io::Error::other("x")));
    }

    #[test]
    fn exhaustion_found_through_a_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] io::Error);
        let e = Outer(io::Error::from_raw_os_error(Errno::EMFILE as i32));
        assert!(chain_is_exhaustion(&e));
        let e = Outer(io::Error::from_raw_os_error(Errno::ECONNREFUSED as i32));
        assert!(!chain_is_exhaustion(&e));
    }
}
