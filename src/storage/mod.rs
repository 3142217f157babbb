//! Durable storage: the write-ahead transaction log, tree snapshots and small state files.
pub mod atomic;
pub mod snapshot;
pub mod wal;
pub mod writer;
