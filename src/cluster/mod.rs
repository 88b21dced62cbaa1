//! The main/sub cluster. This folder's pure cores own no sockets, tasks or clocks (time and
//! randomness are parameters): `placement` (rendezvous hashing), `membership` (main's node
//! table), `auth` (HMAC request signing, replay cache, application tokens) and `protocol`
//! (versioned wire messages). `docs/protocol.md` describes the protocol in prose.
//!
//! The async shells: `store` (Redis marker, LiveKit's room map), `discovery` (mDNS and in-memory),
//! `main_role` + `join` (main's endpoints), `sub_role` (register/heartbeat/leave loop) and
//! `runtime` (starting and stopping the role from the daemon).

pub mod auth;
pub mod discovery;
pub mod join;
pub mod link;
pub mod main_role;
pub mod membership;
pub mod placement;
pub mod protocol;
pub mod runtime;
pub mod store;
pub mod sub_role;
