//! The client-facing server: listener, connections, the core that owns the tree, and the
//! four-letter words.
//!
//! `run` binds the client port, starts the core task, and accepts connections until told to
//! stop. Connections are capped per client IP (`maxClientCnxns`), as ZooKeeper does.

pub mod connection;
pub mod core;
pub mod four_letter;
pub mod persist;
pub mod replica;
pub mod session;
pub mod snapshotter;
pub mod start;
pub mod stats;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

/// Capacity of the channel from connections to the core.
pub const CORE_QUEUE_CAPACITY: usize = 8192;

/// Everything the server needs from the configuration, with units in the names.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub client_addr: SocketAddr,
    pub tick_time_ms: u64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// Per client IP; 0 means unlimited.
    pub max_client_cnxns: usize,
    pub jute_max_buffer_bytes: usize,
    /// `None` allows every word.
    pub four_letter_whitelist: Option<HashSet<String>>,
    /// `user:base64(sha1(user:password))` of the super user.
    pub super_digest: Option<String>,
    pub extended_types_enabled: bool,
    pub container_check_interval_ms: u64,
    /// Transactions between snapshots (randomised between half and all of it).
    pub snap_count: u64,
    /// `autopurge.purgeInterval`: how often old snapshots and log segments are deleted
    /// (zero: never).
    pub autopurge_interval: std::time::Duration,
    /// `autopurge.snapRetainCount`: snapshots kept by a purge.
    pub snap_retain_count: usize,
    /// Log segments are preallocated to and rolled at this size.
    pub log_segment_bytes: u64,
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    /// Key/value lines of the `conf` four-letter word.
    pub conf_lines: Vec<(String, String)>,
}

impl ServerOptions {
    pub fn four_letter_allowed(&self, word: &str) -> bool {
        match &self.four_letter_whitelist {
            None => true,
            Some(set) => set.contains(word),
        }
    }
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Counts connections per client IP.
#[derive(Default)]
struct ConnLimiter {
    per_ip: Mutex<hashbrown::HashMap<IpAddr, usize>>,
}

impl ConnLimiter {
    fn try_acquire(&self, ip: IpAddr, max: usize) -> bool {
        let Ok(mut m) = self.per_ip.lock() else {
            return true;
        };
        let n = m.entry(ip).or_insert(0);
        if max != 0 && *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        if let Ok(mut m) = self.per_ip.lock() {
            if let Some(n) = m.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&ip);
                }
            }
        }
    }
}

/// The opened data directories and what was recovered from them.
pub struct Storage {
    pub persistence: persist::Persistence,
    pub recovered: persist::Recovered,
    pub durability: tokio::sync::watch::Receiver<crate::storage::writer::Durability>,
}

/// Opens the data directories and rebuilds the state from them.
pub fn open_storage(opts: &ServerOptions) -> Result<Storage, persist::PersistError> {
    let log_dir = (opts.data_log_dir != opts.data_dir).then_some(opts.data_log_dir.as_path());
    let (persistence, recovered, durability) = persist::Persistence::open(
        &opts.data_dir,
        log_dir,
        opts.log_segment_bytes,
        crate::tree::TreeOptions {
            extended_types_enabled: opts.extended_types_enabled,
        },
    )?;
    Ok(Storage {
        persistence,
        recovered,
        durability,
    })
}

/// Binds the client port with SO_REUSEADDR so a restarted server can bind again at once.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let bind_err = |source| ServerError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_err)?;
    socket.set_reuseaddr(true).map_err(bind_err)?;
    socket.bind(addr).map_err(bind_err)?;
    socket.listen(1024).map_err(bind_err)
}

/// Serves clients on `listener` until `shutdown` fires. `replica`: run as a quorum member
/// (then `storage` holds the snapshot state only; see `persist::QuorumRecovered`).
pub async fn run(
    listener: TcpListener,
    opts: ServerOptions,
    storage: Storage,
    replica: Option<replica::Replica>,
    shutdown: broadcast::Sender<()>,
) -> Result<(), ServerError> {
    let opts = Arc::new(opts);
    let (core_tx, core_rx) = mpsc::channel(CORE_QUEUE_CAPACITY);
    let core = core::Core::with_replica(
        opts.clone(),
        storage.persistence,
        storage.recovered,
        replica,
    );
    let mut core_task = tokio::spawn(core.run(core_rx, shutdown.subscribe(), storage.durability));
    let mut core_done = false;
    let limiter = Arc::new(ConnLimiter::default());
    let mut stop = shutdown.subscribe();
    let mut next_conn_id: u64 = 1;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(v) => v,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                if !limiter.try_acquire(peer.ip(), opts.max_client_cnxns) {
                    warn!(%peer, max = opts.max_client_cnxns, "too many connections from this address; closing");
                    drop(stream);
                    continue;
                }
                let conn_id = next_conn_id;
                next_conn_id += 1;
                let core_tx = core_tx.clone();
                let opts = opts.clone();
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    connection::serve(stream, peer, conn_id, core_tx, opts).await;
                    limiter.release(peer.ip());
                });
            }
            _ = stop.recv() => break,
            _ = &mut core_task => {
                core_done = true;
                warn!("the core stopped; closing the client port");
                break;
            }
        }
    }
    drop(listener);
    info!("client port closed");
    if !core_done {
        let _ = core_task.await;
    }
    Ok(())
}
