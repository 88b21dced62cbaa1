//! Everything about the `livekit-server` child: its config, its process, its health, its rooms.
//!
//! - [`render`]: pure rendering of `livekit.yaml` and the key file, atomic writes.
//! - [`supervisor`]: spawn, ready, health, restart with backoff (waiting for Redis while it is
//!   down), graceful stop.
//! - [`backoff`]: the pure restart schedule and restart budget.
//! - [`health`]: the `GET /` probe and its classification.
//! - [`output`]: forwarding the child's output into our log without blocking it.
//! - [`privileges`]: dropping capabilities before any child is spawned.
//! - [`rooms`]: LiveKit's RoomService (ListRooms) through the official `livekit-api` crate.

pub mod backoff;
pub mod health;
pub mod output;
pub mod privileges;
pub mod render;
pub mod rooms;
pub mod supervisor;

pub use supervisor::{LivekitState, LivekitStatus, Supervisor, SupervisorConfig};
