//! The main/sub cluster. This folder's pure cores own no sockets, tasks or clocks (time and
//! randomness are parameters): `placement` (rendezvous hashing), `membership` (main's node
//! table), `auth` (HMAC request signing, replay cache, application tokens) and `protocol`
//! (versioned wire messages). `docs/protocol.md` describes the protocol in prose.

pub mod auth;
pub mod membership;
pub mod placement;
pub mod protocol;
