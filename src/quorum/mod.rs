//! Replication between Corral servers: leader election (`election`, pure), the ZAB atomic
//! broadcast core (`zab`, pure, no I/O), the zxid layout (`zxid`), the peer transport
//! (`transport`, the thin tokio layer carrying their messages), and the deterministic
//! simulation of the ZAB core (`sim`, tests only).
//!
//! The core is driven by a runtime that owns sockets, disks and the election; see `zab` for
//! the events it takes and the commands it returns. What the runtime owes the core:
//!
//! - execute commands in the order given; log commands (`Persist`, `Truncate`,
//!   `InstallSnapshot`) strictly in order, reporting `Persisted { up_to }` after fsync (one
//!   report may cover many writes); epoch records durably (temp file, fsync, rename, fsync the
//!   directory), reporting `EpochPersisted`;
//! - on start-up, hand over exactly what is on disk (`PersistentState`) and a fresh
//!   `incarnation`; the tree is rebuilt from the snapshot alone, and log entries after it are
//!   applied again when the core says they are committed (`Apply`);
//! - feed `Tick` at a steady rate, peer frames as `Message`, and the election's outcome as
//!   `BecomeLeader` / `BecomeFollower` / `BecomeObserver`; run an election when the core says
//!   `RoleChanged(Looking)`;
//! - answer `TakeSnapshotForPeer` with `SnapshotReady`, and report local snapshots with
//!   `Compacted` so the core can forget the log before them.

pub mod election;
pub mod transport;
pub mod zab;
pub mod zxid;

#[cfg(test)]
mod sim;
