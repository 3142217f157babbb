//! Replication between Corral servers: the ZAB protocol core (`zab`, pure, no I/O), the zxid
//! layout (`zxid`), and their deterministic simulation test (`sim`, tests only).
//!
//! The core is driven by a runtime that owns sockets, disks and the election; see `zab` for
//! the events it takes and the commands it returns.

pub mod zab;
pub mod zxid;

#[cfg(test)]
mod sim;
