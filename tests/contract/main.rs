//! The LiveKit contract suite: what airclass-node relies on from livekit-server, checked against
//! **both** the real server (the pinned v1.13.5, `scripts/livekit.sh`) and the stand-in (a TEST
//! DOUBLE, tests/livekit-standin/). Every contract check runs once per server, as the tests
//! `<module>::real::<check>` and `<module>::standin::<check>`, so a failure names its server.
//! Where the two differ the real server wins and the stand-in is corrected (its README lists
//! each correction). Real-only modules: `goldens` (every config our renderer produces, in a
//! network namespace, sockets checked with `ss`) and `stun` (ICE servers handed to clients).
//! `standin_only` covers the stand-in's fault switches, which the real server cannot show.

// Test code: a failed expectation should panic with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

/// `both!(check, …)`: for each `async fn check(server: Server)` of the calling module,
/// generates `real::check` and `standin::check` tests.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::livekit_proc::Server::Real).await
                }
            )*
        }
        mod standin {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::livekit_proc::Server::Standin).await
                }
            )*
        }
    };
}

mod goldens;
mod health;
mod participants;
mod rendered;
mod signals;
mod standin_only;
mod startup;
mod stun;
mod twirp;
