//! Corral: a ZooKeeper-compatible coordination service.
//!
//! Data flows one way: a connection decodes frames (`jute`), the server's request pipeline
//! orders them per session, writes become transactions that the tree (`tree`) applies, and
//! replies and watch events go back out through the connection.

pub mod alloc;
pub mod bench;
pub mod cli;
pub mod config;
pub mod import;
pub mod jute;
pub mod quorum;
pub mod server;
pub mod storage;
pub mod tools;
pub mod tree;
pub mod zkdata;
