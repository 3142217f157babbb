//! Replication: leader election, the ZAB atomic broadcast core and the peer transport.
//!
//! The election and ZAB cores are pure state machines (events in, commands out) tested
//! deterministically; the transport is the thin tokio layer that carries their messages
//! between members.

pub mod election;
pub mod transport;
