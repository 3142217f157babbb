//! Replication between Corral servers: leader election (`election`, pure), the ZAB atomic
//! broadcast core (`zab`, pure, no I/O), the zxid layout (`zxid`), the peer transport
//! (`transport`, the thin tokio layer carrying their messages), and the deterministic
//! simulation of the ZAB core (`sim`, tests only).
//!
//! The cores take events and return commands; a runtime that owns sockets, disks and timers
//! drives them (not wired into the server yet).

pub mod election;
pub mod transport;
pub mod zab;
pub mod zxid;

#[cfg(test)]
mod sim;
