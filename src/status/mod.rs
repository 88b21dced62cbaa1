//! Seeing the cluster: `airclass-node status` ([`report`]: ask the local daemon and, on a sub,
//! main; print a table, a verdict and an exit code), the live status page main serves at
//! `GET /` and `/status` ([`page`]), and main's recent membership changes ([`events`]).

pub mod client;
pub mod events;
pub mod page;
pub mod report;
