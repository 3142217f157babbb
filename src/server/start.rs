//! Start-up: from a zoo.cfg path to a serving standalone server, and clean shutdown on
//! SIGTERM/SIGINT.

use std::path::Path;
use std::time::Instant;

use thiserror::Error;
use tokio::sync::broadcast;
use tracing::{info, warn};

use super::persist::{PersistError, Persistence, Recovered};
use super::replica::{Membership, OnDisk, Replica};
use super::{bind, open_storage, run, ServerError, ServerOptions, Storage};
use crate::config::{Config, ConfigError};

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("{0}: no client port: set clientPort, or give this server's client port in its server.N line")]
    NoClientPort(String),
    #[error(transparent)]
    Replica(#[from] super::replica::ReplicaError),
    #[error(transparent)]
    Storage(#[from] PersistError),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

/// Builds the server's options from a parsed config.
pub fn options_from_config(cfg: &Config) -> Result<ServerOptions, StartError> {
    let client_addr = cfg
        .client_addr()
        .ok_or_else(|| StartError::NoClientPort(cfg.source_name.clone()))?;
    let whitelist = if cfg.four_letter_words.contains("*") {
        None
    } else {
        Some(cfg.four_letter_words.iter().cloned().collect())
    };
    Ok(ServerOptions {
        client_addr,
        tick_time_ms: cfg.tick_time_ms as u64,
        min_session_timeout_ms: cfg.min_session_timeout_ms as i32,
        max_session_timeout_ms: cfg.max_session_timeout_ms as i32,
        max_client_cnxns: cfg.max_client_cnxns as usize,
        jute_max_buffer_bytes: cfg.jute_max_buffer_bytes as usize,
        four_letter_whitelist: whitelist,
        super_digest: cfg.super_digest.clone(),
        extended_types_enabled: cfg.extended_types_enabled,
        container_check_interval_ms: cfg.container_check_interval_ms,
        snap_count: cfg.snap_count as u64,
        log_segment_bytes: cfg.pre_alloc_size_kb * 1024,
        autopurge_interval: cfg.autopurge_purge_interval,
        snap_retain_count: cfg.autopurge_snap_retain_count as usize,
        data_dir: cfg.data_dir.clone(),
        data_log_dir: cfg.data_log_dir.clone(),
        conf_lines: cfg.conf_lines(),
    })
}

/// Opens a quorum member's data: the snapshot state for the core, the log and epochs for ZAB.
fn open_quorum_storage(opts: &ServerOptions) -> Result<(Storage, OnDisk), PersistError> {
    let log_dir = (opts.data_log_dir != opts.data_dir).then_some(opts.data_log_dir.as_path());
    let (persistence, q, durability) = Persistence::open_quorum(
        &opts.data_dir,
        log_dir,
        opts.log_segment_bytes,
        crate::tree::TreeOptions {
            extended_types_enabled: opts.extended_types_enabled,
        },
    )?;
    let storage = Storage {
        persistence,
        recovered: Recovered {
            db: q.db,
            snapshot_zxid: q.snapshot_zxid,
            sessions: q.sessions,
            last_zxid: q.snapshot_zxid,
        },
        durability,
    };
    let disk = OnDisk {
        accepted: q.accepted,
        current_epoch: q.current_epoch,
        snapshot_zxid: q.snapshot_zxid,
        log: q.log,
    };
    Ok((storage, disk))
}

/// Loads the config at `path` and serves until SIGTERM or SIGINT.
pub async fn run_from_config(path: &Path) -> Result<(), StartError> {
    let started = Instant::now();
    let cfg = Config::load(path)?;
    for (line, key) in &cfg.unknown_keys {
        warn!(
            "{}:{}: unknown key '{}' ignored",
            cfg.source_name, line, key
        );
    }
    for w in &cfg.warnings {
        warn!("{}: {}", cfg.source_name, w);
    }
    let opts = options_from_config(&cfg)?;
    let (storage, replica) = if cfg.is_quorum() {
        let membership = Membership::from_config(&cfg)?;
        let (storage, disk) = open_quorum_storage(&opts)?;
        (storage, Some(Replica::start(membership, disk).await?))
    } else {
        (open_storage(&opts)?, None)
    };
    let mode = if replica.is_some() {
        "quorum member"
    } else {
        "standalone"
    };
    let listener = bind(opts.client_addr)?;
    let (shutdown, _) = broadcast::channel(1);
    let signals = shutdown.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(StartError::Signal)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received; shutting down"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT received; shutting down"),
        }
        let _ = signals.send(());
    });
    info!(
        client_addr = %opts.client_addr,
        data_dir = %opts.data_dir.display(),
        tick_time_ms = opts.tick_time_ms,
        min_session_timeout_ms = opts.min_session_timeout_ms,
        max_session_timeout_ms = opts.max_session_timeout_ms,
        max_client_cnxns = opts.max_client_cnxns,
        startup_ms = started.elapsed().as_millis() as u64,
        myid = cfg.my_id.unwrap_or(0),
        "corral {} started as {mode}",
        env!("CARGO_PKG_VERSION")
    );
    run(listener, opts, storage, replica, shutdown).await?;
    info!("stopped");
    Ok(())
}
