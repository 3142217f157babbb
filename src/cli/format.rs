//! Output formatting that mirrors Apache ZooKeeper's `zkCli.sh`: stat blocks, ACL permission
//! strings, watch events (`WATCHER::`), prompt states, `config -c`, and Java's
//! `Date.toString()` rendering of timestamps (in UTC). Pure functions, so the layouts can be
//! unit-tested without a server.

use std::fmt::Write as _;

use zookeeper_client::{Acl, EventType, Permission, SessionState, Stat, WatchedEvent};

/// Renders a stat the way zkCli's `StatPrinter` does, one `name = value` line each.
pub fn stat_text(stat: &Stat) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "cZxid = 0x{:x}", stat.czxid);
    let _ = writeln!(s, "ctime = {}", java_date(stat.ctime));
    let _ = writeln!(s, "mZxid = 0x{:x}", stat.mzxid);
    let _ = writeln!(s, "mtime = {}", java_date(stat.mtime));
    let _ = writeln!(s, "pZxid = 0x{:x}", stat.pzxid);
    let _ = writeln!(s, "cversion = {}", stat.cversion);
    let _ = writeln!(s, "dataVersion = {}", stat.version);
    let _ = writeln!(s, "aclVersion = {}", stat.aversion);
    let _ = writeln!(s, "ephemeralOwner = 0x{:x}", stat.ephemeral_owner);
    let _ = writeln!(s, "dataLength = {}", stat.data_length);
    let _ = writeln!(s, "numChildren = {}", stat.num_children);
    s
}

/// Permission letters in zkCli's order (`cdrwa`).
pub fn perms_text(p: Permission) -> String {
    [
        (Permission::CREATE, 'c'),
        (Permission::DELETE, 'd'),
        (Permission::READ, 'r'),
        (Permission::WRITE, 'w'),
        (Permission::ADMIN, 'a'),
    ]
    .into_iter()
    .filter(|(bit, _)| p.has(*bit))
    .map(|(_, c)| c)
    .collect()
}

/// Renders one ACL entry as zkCli's `getAcl` does: `'scheme,'id` then `: perms`.
pub fn acl_text(acl: &Acl) -> String {
    format!(
        "'{},'{}\n: {}\n",
        acl.scheme(),
        acl.id(),
        perms_text(acl.permission())
    )
}

/// Milliseconds since the epoch as Java's `Date.toString()` in UTC,
/// e.g. `Tue Nov 24 21:44:40 UTC 2026`.
pub fn java_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // 1970-01-01 was a Thursday; rem_euclid keeps both indexes in range.
    let dow = DAYS[days.rem_euclid(7) as usize];
    let mon = MONTHS[(month - 1).rem_euclid(12) as usize];
    format!(
        "{dow} {mon} {day:02} {:02}:{:02}:{:02} UTC {year}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Java's `Watcher.Event.KeeperState` name of a session state.
pub fn keeper_state(state: SessionState) -> &'static str {
    match state {
        SessionState::Disconnected => "Disconnected",
        SessionState::SyncConnected => "SyncConnected",
        SessionState::AuthFailed => "AuthFailed",
        SessionState::ConnectedReadOnly => "ConnectedReadOnly",
        SessionState::Expired => "Expired",
        SessionState::Closed => "Closed",
    }
}

/// Java's `Watcher.Event.EventType` name (`None` for session events).
pub fn event_type(t: EventType) -> &'static str {
    match t {
        EventType::Session => "None",
        EventType::NodeCreated => "NodeCreated",
        EventType::NodeDeleted => "NodeDeleted",
        EventType::NodeDataChanged => "NodeDataChanged",
        EventType::NodeChildrenChanged => "NodeChildrenChanged",
    }
}

/// A watch notification as zkCli 3.9 prints it: a blank line, `WATCHER::`, a blank line and
/// `WatchedEvent state:S type:T path:P zxid: Z` (path `null` and zxid -1 for session events).
pub fn event_block(state: &str, event_type: &str, path: Option<&str>, zxid: i64) -> String {
    format!(
        "\nWATCHER::\n\nWatchedEvent state:{state} type:{event_type} path:{} zxid: {zxid}\n",
        path.unwrap_or("null")
    )
}

/// [`event_block`] for an event delivered by the client library.
pub fn watched_event_block(ev: &WatchedEvent) -> String {
    let (state, path) = match ev.event_type {
        EventType::Session => (keeper_state(ev.session_state), None),
        // Node events carry no session state; they arrive on a connected session.
        _ => ("SyncConnected", Some(ev.path.as_str())),
    };
    event_block(state, event_type(ev.event_type), path, ev.zxid)
}

/// The state word in zkCli's prompt (Java's `ZooKeeper.States`), or `CLOSED` without a session.
pub fn prompt_state(state: Option<SessionState>) -> &'static str {
    match state {
        None | Some(SessionState::Closed) | Some(SessionState::Expired) => "CLOSED",
        Some(SessionState::SyncConnected) => "CONNECTED",
        Some(SessionState::Disconnected) => "CONNECTING",
        Some(SessionState::ConnectedReadOnly) => "CONNECTEDREADONLY",
        Some(SessionState::AuthFailed) => "AUTH_FAILED",
    }
}

/// `config -c`: the config version and the client addresses of the `server.N` lines,
/// `version host:port,host:port` (servers in id order).
pub fn client_config(config: &str) -> String {
    let mut version = "";
    let mut servers: Vec<(u64, String)> = Vec::new();
    for line in config.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key == "version" {
            version = value;
        }
        let Some(id) = key.strip_prefix("server.") else {
            continue;
        };
        let Some((_, client)) = value.split_once(';') else {
            continue;
        };
        let addr = match client.rsplit_once(':') {
            Some((host, port)) => format!("{host}:{port}"),
            None => format!("0.0.0.0:{client}"),
        };
        servers.push((id.parse().unwrap_or(u64::MAX), addr));
    }
    servers.sort();
    let addrs: Vec<String> = servers.into_iter().map(|(_, a)| a).collect();
    format!("{version} {}", addrs.join(","))
}

/// Node data as one printable line: UTF-8 (lossy) with control characters and backslashes
/// escaped, so an event stays on its line.
pub fn one_line(data: &[u8]) -> String {
    let mut s = String::new();
    for c in String::from_utf8_lossy(data).chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{{{:x}}}", u32::from(c));
            }
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_date_matches_java() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(1_795_556_680_000), "Tue Nov 24 21:44:40 UTC 2026");
    }

    #[test]
    fn event_layout_like_zkcli() {
        assert_eq!(
            event_block("SyncConnected", "NodeDataChanged", Some("/x"), 7),
            "\nWATCHER::\n\nWatchedEvent state:SyncConnected type:NodeDataChanged path:/x zxid: 7\n"
        );
        assert_eq!(
            event_block("Closed", "None", None, -1),
            "\nWATCHER::\n\nWatchedEvent state:Closed type:None path:null zxid: -1\n"
        );
    }

    #[test]
    fn client_config_lists_client_ports() {
        let cfg = "server.2=h2:2888:3888:participant;127.0.0.1:2182\n\
                   server.1=h1:2888:3888:participant;2181\nversion=100000000\n";
        assert_eq!(client_config(cfg), "100000000 0.0.0.0:2181,127.0.0.1:2182");
        assert_eq!(client_config(""), " ");
    }

    #[test]
    fn one_line_escapes_controls() {
        assert_eq!(one_line(b"a b"), "a b");
        assert_eq!(one_line(b"a\nb\\"), "a\\nb\\\\");
        assert_eq!(one_line(&[0x01]), "\\u{1}");
    }

    #[test]
    fn perms_in_zkcli_order() {
        assert_eq!(perms_text(Permission::ALL), "cdrwa");
        assert_eq!(perms_text(Permission::READ | Permission::ADMIN), "ra");
    }
}
