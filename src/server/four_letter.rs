//! Four-letter words on the client port, laid out exactly as ZooKeeper prints them so that
//! existing scrapers and monitoring scripts parse Corral's output unchanged.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::session::SessionTable;
use super::stats::{ConnStats, ServerStats};
use super::ServerOptions;
use crate::tree::Database;

/// The version string reported by srvr/stat/mntr/envi. Clients parse the leading 3.9.x.
pub const ZK_COMPAT_VERSION: &str = concat!(
    "3.9.3-corral-",
    env!("CARGO_PKG_VERSION"),
    ", built on 1970-01-01 00:00 UTC"
);

/// Every word Corral understands.
pub const WORDS: &[&str] = &[
    "ruok", "srvr", "stat", "conf", "cons", "crst", "dump", "envi", "mntr", "wchs", "wchc", "wchp",
    "dirs", "isro", "srst", "hash",
];

/// Recognises a four-letter word in the first four bytes of a connection.
pub fn word_from_bytes(b: &[u8; 4]) -> Option<&'static str> {
    let s = std::str::from_utf8(b).ok()?;
    WORDS.iter().copied().find(|w| *w == s)
}

/// A read-only view of the server for rendering.
pub struct View<'a> {
    pub opts: &'a ServerOptions,
    pub db: &'a Database,
    pub sessions: &'a SessionTable,
    pub conns: Vec<ConnView<'a>>,
    pub stats: &'a ServerStats,
    pub last_zxid: i64,
    pub started: Instant,
    /// The log failed: the server serves reads only.
    pub read_only: bool,
    /// What this member does in its ensemble.
    pub mode: Mode,
    /// Leader only: its peers as it sees them.
    pub peers: Vec<crate::quorum::zab::PeerStatus>,
}

/// A server's mode as the four-letter words report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Leader,
    Follower,
    Observer,
    /// A quorum member without an established role (looking for a leader or syncing).
    NotServing,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Leader => "leader",
            Mode::Follower => "follower",
            Mode::Observer => "observer",
            Mode::NotServing => "looking",
        }
    }
}

/// What ZooKeeper answers, for words that need a running server, while it has no role.
pub const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests\n";

pub struct ConnView<'a> {
    pub peer: SocketAddr,
    pub session_id: i64,
    pub timeout_ms: i32,
    pub stats: &'a ConnStats,
}

fn millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn conn_line(out: &mut String, c: &ConnView<'_>, brief: bool) {
    let _ = write!(
        out,
        " /{}[{}](queued=0,recved={},sent={}",
        c.peer,
        if c.session_id == 0 { 0 } else { 1 },
        c.stats.received,
        c.stats.sent
    );
    if !brief && c.session_id != 0 {
        let lop = c.stats.last_op.map(|o| o.short_name()).unwrap_or("NA");
        let _ = write!(
            out,
            ",sid=0x{:x},lop={},est={},to={}",
            c.session_id,
            lop,
            millis(c.stats.established),
            c.timeout_ms
        );
        if c.stats.last_cxid >= 0 {
            let _ = write!(out, ",lcxid=0x{:x}", c.stats.last_cxid);
        }
        let _ = write!(
            out,
            ",lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
            c.stats.last_zxid,
            c.stats.last_response.map(millis).unwrap_or(0),
            c.stats.last_latency_ms,
            c.stats.latency.min(),
            format_avg(c.stats.latency.avg()),
            c.stats.latency.max_ms
        );
    }
    out.push(')');
}

/// ZooKeeper prints averages as Java doubles ("0.0", "1.25").
fn format_avg(v: f64) -> String {
    let s = format!("{:.4}", v);
    let s = s.trim_end_matches('0');
    if s.ends_with('.') {
        format!("{s}0")
    } else {
        s.to_string()
    }
}

/// Formats a wall-clock time like Java's `Date.toString()` in UTC.
fn java_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        year
    )
}

fn server_stats(out: &mut String, v: &View<'_>) {
    let s = v.stats;
    let _ = writeln!(
        out,
        "Latency min/avg/max: {}/{}/{}",
        s.latency.min(),
        format_avg(s.latency.avg()),
        s.latency.max_ms
    );
    let _ = writeln!(out, "Received: {}", s.packets_received);
    let _ = writeln!(out, "Sent: {}", s.packets_sent);
    let _ = writeln!(out, "Connections: {}", v.conns.len());
    let _ = writeln!(out, "Outstanding: {}", s.outstanding_requests);
    let _ = writeln!(out, "Zxid: 0x{:x}", v.last_zxid);
    if v.read_only {
        out.push_str("READ-ONLY mode; serving only read-only clients\n");
    }
    let _ = writeln!(out, "Mode: {}", v.mode.name());
    let _ = writeln!(out, "Node count: {}", v.db.node_count());
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Renders a word's full reply.
pub fn render(word: &str, v: &View<'_>) -> String {
    let mut out = String::new();
    if v.mode == Mode::NotServing && !matches!(word, "ruok" | "conf" | "envi" | "isro" | "dirs") {
        return NOT_SERVING.to_string();
    }
    match word {
        "ruok" => out.push_str("imok"),
        "isro" => out.push_str(if v.read_only { "ro" } else { "rw" }),
        "srvr" | "stat" => {
            let _ = writeln!(out, "Zookeeper version: {ZK_COMPAT_VERSION}");
            if word == "stat" {
                out.push_str("Clients:\n");
                for c in &v.conns {
                    conn_line(&mut out, c, true);
                    out.push('\n');
                }
                out.push('\n');
            }
            server_stats(&mut out, v);
        }
        "cons" => {
            for c in &v.conns {
                conn_line(&mut out, c, false);
                out.push('\n');
            }
            out.push('\n');
        }
        "crst" => out.push_str("Connection stats reset.\n"),
        "srst" => out.push_str("Server stats reset.\n"),
        "conf" => {
            for (k, val) in &v.opts.conf_lines {
                let val = match k.as_str() {
                    "dataDirSize" => dir_size(&v.opts.data_dir).to_string(),
                    "dataLogSize" => dir_size(&v.opts.data_log_dir).to_string(),
                    _ => val.clone(),
                };
                let _ = writeln!(out, "{k}={val}");
            }
        }
        "dirs" => {
            let _ = writeln!(out, "datadir_size: {}", dir_size(&v.opts.data_dir));
            let _ = writeln!(out, "logdir_size: {}", dir_size(&v.opts.data_log_dir));
        }
        "envi" => {
            out.push_str("Environment:\n");
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            let cwd = std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let entries = [
                ("zookeeper.version", ZK_COMPAT_VERSION.to_string()),
                ("host.name", host),
                ("corral.version", env!("CARGO_PKG_VERSION").to_string()),
                ("os.name", std::env::consts::OS.to_string()),
                ("os.arch", std::env::consts::ARCH.to_string()),
                ("user.name", std::env::var("USER").unwrap_or_default()),
                ("user.home", std::env::var("HOME").unwrap_or_default()),
                ("user.dir", cwd),
            ];
            for (k, val) in entries {
                let _ = writeln!(out, "{k}={val}");
            }
        }
        "mntr" => {
            let s = v.stats;
            let watches = v.db.watch_count();
            let pairs: Vec<(&str, String)> = vec![
                ("version", ZK_COMPAT_VERSION.to_string()),
                ("server_state", v.mode.name().into()),
                ("avg_latency", format_avg(s.latency.avg())),
                ("max_latency", s.latency.max_ms.to_string()),
                ("min_latency", s.latency.min().to_string()),
                ("packets_received", s.packets_received.to_string()),
                ("packets_sent", s.packets_sent.to_string()),
                ("num_alive_connections", v.conns.len().to_string()),
                ("outstanding_requests", s.outstanding_requests.to_string()),
                ("znode_count", v.db.node_count().to_string()),
                ("watch_count", watches.to_string()),
                ("ephemerals_count", v.db.ephemeral_count().to_string()),
                (
                    "approximate_data_size",
                    v.db.approximate_data_size().to_string(),
                ),
                ("open_file_descriptor_count", open_fds().to_string()),
                ("max_file_descriptor_count", max_fds().to_string()),
                ("last_proposal_size", "-1".into()),
                ("min_proposal_size", "-1".into()),
                ("max_proposal_size", "-1".into()),
                ("global_sessions", v.sessions.len().to_string()),
                ("local_sessions", "0".into()),
                ("uptime", v.started.elapsed().as_millis().to_string()),
                ("data_dir_size", dir_size(&v.opts.data_dir).to_string()),
                ("log_dir_size", dir_size(&v.opts.data_log_dir).to_string()),
                ("last_client_response_size", "-1".into()),
                ("max_client_response_size", "-1".into()),
                ("min_client_response_size", "-1".into()),
            ];
            let mut pairs: Vec<(String, String)> = pairs
                .into_iter()
                .map(|(k, val)| (k.to_string(), val))
                .collect();
            if v.mode == Mode::Leader {
                let voters = v.peers.iter().filter(|p| !p.observer);
                let synced = voters.clone().filter(|p| p.synced).count();
                let observers = v.peers.iter().filter(|p| p.observer && p.synced).count();
                pairs.push(("learners".into(), v.peers.len().to_string()));
                pairs.push(("followers".into(), voters.count().to_string()));
                pairs.push(("synced_followers".into(), synced.to_string()));
                pairs.push(("synced_observers".into(), observers.to_string()));
                pairs.push(("pending_syncs".into(), "0".into()));
                for p in &v.peers {
                    // Corral's own: how far each follower is behind, in transactions.
                    let kind = if p.observer { "observer" } else { "follower" };
                    pairs.push((format!("{kind}_{}_lag_txns", p.id), p.lag_txns.to_string()));
                }
            }
            for (k, val) in pairs {
                let _ = writeln!(out, "zk_{k}\t{val}");
            }
        }
        "wchs" => {
            let by_session = v.db.watches_by_session();
            let _ = writeln!(
                out,
                "{} connections watching {} paths",
                by_session.len(),
                v.db.watched_path_count()
            );
            let _ = writeln!(out, "Total watches:{}", v.db.watch_count());
        }
        "wchc" => {
            for (sid, paths) in v.db.watches_by_session() {
                let _ = writeln!(out, "0x{sid:x}");
                for p in paths {
                    let _ = writeln!(out, "\t{p}");
                }
            }
            out.push('\n');
        }
        "wchp" => {
            for (path, sids) in v.db.watches_by_path() {
                let _ = writeln!(out, "{path}");
                for sid in sids {
                    let _ = writeln!(out, "\t0x{sid:x}");
                }
            }
            out.push('\n');
        }
        "dump" => {
            out.push_str("SessionTracker dump:\n");
            let buckets = v.sessions.expiry_buckets();
            let _ = writeln!(
                out,
                "Session Sets ({})/({}):",
                buckets.len(),
                v.sessions.len()
            );
            let wall_start = SystemTime::now() - v.started.elapsed();
            for (at_ms, ids) in buckets {
                let when = wall_start + Duration::from_millis(at_ms);
                let _ = writeln!(out, "{} expire at {}:", ids.len(), java_date(when));
                for id in ids {
                    let _ = writeln!(out, "\t0x{id:x}");
                }
            }
            let eph = v.db.ephemerals_by_session();
            out.push_str("ephemeral nodes dump:\n");
            let _ = writeln!(out, "Sessions with Ephemerals ({}):", eph.len());
            for (sid, paths) in eph {
                let _ = writeln!(out, "0x{sid:x}:");
                for p in paths {
                    let _ = writeln!(out, "\t{p}");
                }
            }
            out.push_str("Connections dump:\n");
        }
        "hash" => {
            // Digest history is kept only by quorum members; standalone reports none.
        }
        _ => {}
    }
    out
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn max_fds() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_recognised_only_exactly() {
        assert_eq!(word_from_bytes(b"ruok"), Some("ruok"));
        assert_eq!(word_from_bytes(b"mntr"), Some("mntr"));
        assert_eq!(word_from_bytes(b"RUOK"), None);
        assert_eq!(word_from_bytes(&[0, 0, 0, 44]), None);
    }

    #[test]
    fn averages_print_like_java_doubles() {
        assert_eq!(format_avg(0.0), "0.0");
        assert_eq!(format_avg(1.25), "1.25");
        assert_eq!(format_avg(3.0), "3.0");
    }

    #[test]
    fn dates_print_like_java() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_540_000);
        assert_eq!(java_date(t), "Tue Nov 24 17:06:40 UTC 2026");
        assert_eq!(java_date(UNIX_EPOCH), "Thu Jan 01 00:00:00 UTC 1970");
    }
}
