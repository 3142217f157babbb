//! `zoo.cfg` and `myid`: the server's configuration.
//!
//! Corral reads the same configuration files as Apache ZooKeeper: a `java.util.Properties`-style
//! `zoo.cfg` (the keys of ZooKeeper's `QuorumPeerConfig`, plus the system properties ZooKeeper
//! lets you put in the file) and, for a member of an ensemble, the `myid` file in `dataDir`.
//!
//! [`Config::parse`] is pure (text in, [`Config`] or [`ConfigError`] out) so that every rule can be
//! unit-tested; [`Config::load`] reads the file and `myid` around it. Errors name the file, the
//! 1-based line and the reason (`conf/zoo.cfg:7: tickTime: "abc" is not a number`).
//!
//! Keys Corral does not use are not errors, as in ZooKeeper (which turns them into `zookeeper.*`
//! system properties): they are collected in [`Config::unknown_keys`] for the caller to warn about.
//! Other non-fatal findings (a value ZooKeeper silently corrects, a single `server.N` line that
//! ZooKeeper ignores, ...) end up in [`Config::warnings`].
//!
//! Deliberate differences from ZooKeeper, all in the direction of failing loudly:
//! - garbage in a boolean or numeric *system-property* key (`extendedTypesEnabled=yes`,
//!   `jute.maxbuffer=1M`) is an error; ZooKeeper silently falls back to the default there;
//! - a repeated `server.N` line, and two servers sharing a host:port (including on loopback, which
//!   ZooKeeper exempts from its check), are errors;
//! - hierarchical quorums (`group.N`, `weight.N`), `dynamicConfigFile` and multiple addresses per
//!   server (`a:1:2|b:1:2`) are not supported and rejected rather than ignored;
//! - client addresses (`clientPortAddress`, the client part of `server.N`) must be IP literals
//!   (or `localhost`): the parser does no name resolution.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

/// ZooKeeper's default `tickTime` (ms) when the key is absent.
pub const DEFAULT_TICK_TIME_MS: u32 = 3000;
/// Default `maxClientCnxns` (per client IP).
pub const DEFAULT_MAX_CLIENT_CNXNS: u32 = 60;
/// Default `snapCount`: transactions between snapshots.
pub const DEFAULT_SNAP_COUNT: u32 = 100_000;
/// Default `preAllocSize` in KiB: log segments are preallocated (and rolled) at 64 MiB.
pub const DEFAULT_PRE_ALLOC_SIZE_KB: u64 = 65_536;
/// Default `znode.container.checkIntervalMs`, as in ZooKeeper.
pub const DEFAULT_CONTAINER_CHECK_INTERVAL_MS: u64 = 60_000;
/// ZooKeeper resets a smaller `snapCount` to this.
pub const MIN_SNAP_COUNT: u32 = 2;
/// Default and minimum `autopurge.snapRetainCount`.
pub const MIN_SNAP_RETAIN_COUNT: u32 = 3;
/// Default `jute.maxbuffer` (0xfffff bytes).
pub const DEFAULT_JUTE_MAX_BUFFER_BYTES: u32 = 0xfffff;
/// With `extendedTypesEnabled` (TTL nodes) a server id may not exceed this.
pub const MAX_EXTENDED_SERVER_ID: u64 = 254;
/// Server ids above this do not fit in the top byte of a session id.
pub const MAX_SESSION_SAFE_SERVER_ID: u64 = 255;

/// Every four-letter word ZooKeeper knows; `4lw.commands.whitelist=*` enables them all.
pub const KNOWN_FOUR_LETTER_WORDS: &[&str] = &[
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "hash", "isro", "mntr", "ruok", "srst",
    "srvr", "stat", "stmk", "wchc", "wchp", "wchs",
];

/// Whether a server votes (participant) or only follows (observer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PeerType {
    #[default]
    Participant,
    Observer,
}

impl PeerType {
    /// The number ZooKeeper prints for `peerType` in `conf` (the Java enum ordinal).
    pub fn ordinal(self) -> u8 {
        match self {
            PeerType::Participant => 0,
            PeerType::Observer => 1,
        }
    }

    fn parse(s: &str) -> Option<PeerType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "participant" => Some(PeerType::Participant),
            "observer" => Some(PeerType::Observer),
            _ => None,
        }
    }
}

impl fmt::Display for PeerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerType::Participant => "participant",
            PeerType::Observer => "observer",
        })
    }
}

/// One `server.N=host:quorumPort:electionPort[:participant|:observer][;[clientHost:]clientPort]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// N in `server.N`.
    pub id: u64,
    /// Host name or IP literal (IPv6 without the brackets), unresolved.
    pub host: String,
    /// Port followers connect to the leader on.
    pub quorum_port: u16,
    /// Port for leader election.
    pub election_port: u16,
    pub role: PeerType,
    /// The client part (3.5+ form); host defaults to 0.0.0.0 when only a port is given.
    pub client_addr: Option<SocketAddr>,
    /// 1-based line of the config file it came from.
    pub line: usize,
}

impl ServerSpec {
    /// `host:port` of the quorum port (IPv6 hosts in brackets).
    pub fn quorum_endpoint(&self) -> String {
        format!("{}:{}", bracket_host(&self.host), self.quorum_port)
    }

    /// `host:port` of the election port (IPv6 hosts in brackets).
    pub fn election_endpoint(&self) -> String {
        format!("{}:{}", bracket_host(&self.host), self.election_port)
    }

    /// The value part as ZooKeeper prints it in `conf`'s membership section
    /// (`host:quorum:election:role[;clientHost:clientPort]`).
    pub fn to_zk_string(&self) -> String {
        let mut s = format!(
            "{}:{}:{}:{}",
            bracket_host(&self.host),
            self.quorum_port,
            self.election_port,
            self.role
        );
        if let Some(c) = self.client_addr {
            s.push(';');
            s.push_str(&c.to_string());
        }
        s
    }
}

fn bracket_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// One `key=value` as read from the file, in file order (values trimmed, escapes resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// 1-based line the entry starts on.
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// Why a configuration could not be used. Every variant's message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A problem on one line: `conf/zoo.cfg:7: tickTime: "abc" is not a number`.
    #[error("{file}:{line}: {reason}")]
    Line {
        file: String,
        line: usize,
        reason: String,
    },
    /// A problem with the file as a whole, e.g. `conf/zoo.cfg: dataDir is not set`.
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
    /// The config file could not be read.
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The `myid` file is missing, unreadable, malformed or names no configured server.
    #[error("{}: {reason}", path.display())]
    MyId { path: PathBuf, reason: String },
}

/// The effective configuration of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Name of the file it was parsed from, as used in messages.
    pub source_name: String,
    /// `tickTime`: the basic time unit; heartbeats, limits and default session bounds derive from it.
    pub tick_time_ms: u32,
    /// `dataDir` (required) as given: a relative path is relative to the current directory.
    pub data_dir: PathBuf,
    /// `dataLogDir`, defaults to `data_dir`.
    pub data_log_dir: PathBuf,
    /// `clientPort`; `None` if absent (then the port may come from this server's `server.N`).
    pub client_port: Option<u16>,
    /// `clientPortAddress`; `None` = all interfaces (0.0.0.0). Only valid with `clientPort`.
    pub client_port_address: Option<IpAddr>,
    /// `clientPortListenBacklog`; `None` = the OS default (ZooKeeper's -1).
    pub client_port_listen_backlog: Option<u32>,
    /// `maxClientCnxns`: concurrent connections per client IP; 0 = unlimited.
    pub max_client_cnxns: u32,
    /// `minSessionTimeout`, default 2 × tickTime.
    pub min_session_timeout_ms: u32,
    /// `maxSessionTimeout`, default 20 × tickTime.
    pub max_session_timeout_ms: u32,
    /// `initLimit` in ticks; 0 = not set (an error in quorum mode).
    pub init_limit_ticks: u32,
    /// `syncLimit` in ticks; 0 = not set (an error in quorum mode).
    pub sync_limit_ticks: u32,
    /// `snapCount` (also `zookeeper.snapCount`): transactions between snapshots, at least 2.
    pub snap_count: u32,
    /// `preAllocSize` (also `zookeeper.preAllocSize`), in KiB: the size log segments are
    /// preallocated to and rolled at.
    pub pre_alloc_size_kb: u64,
    /// `znode.container.checkIntervalMs`: how often empty containers and expired TTL nodes are
    /// looked for.
    pub container_check_interval_ms: u64,
    /// `autopurge.snapRetainCount`, at least 3 (smaller values are raised, with a warning).
    pub autopurge_snap_retain_count: u32,
    /// `autopurge.purgeInterval`: a bare number is hours; `ms`/`s`/`m`/`h`/`d` suffixes are
    /// accepted as by ZooKeeper 3.9+. Zero = no automatic purge.
    pub autopurge_purge_interval: Duration,
    /// `4lw.commands.whitelist` expanded: `*` = [`KNOWN_FOUR_LETTER_WORDS`]; `srvr` is always
    /// included (as in ZooKeeper); when absent, only `srvr`.
    pub four_letter_words: BTreeSet<String>,
    /// `jute.maxbuffer`: largest request/znode payload accepted.
    pub jute_max_buffer_bytes: u32,
    /// `extendedTypesEnabled` / `zookeeper.extendedTypesEnabled`: TTL nodes allowed.
    pub extended_types_enabled: bool,
    /// `DigestAuthenticationProvider.superDigest` / `superDigest`: `user:base64(sha1(user:pw))`.
    pub super_digest: Option<String>,
    /// `standaloneEnabled` (default true): with it, a single participant line means standalone.
    pub standalone_enabled: bool,
    /// This server's role: from its `server.N` line in quorum mode (a contradicting `peerType`
    /// only causes a warning, as in ZooKeeper), else `peerType` (default participant).
    pub peer_type: PeerType,
    /// Contents of `dataDir/myid`; set by [`Config::load`] / [`Config::apply_my_id`] in quorum mode.
    pub my_id: Option<u64>,
    /// All `server.N` lines, sorted by id.
    pub servers: Vec<ServerSpec>,
    /// Every `key=value` in file order, as read.
    pub entries: Vec<ConfigEntry>,
    /// (line, key) of every key Corral does not use; the caller should warn about each.
    pub unknown_keys: Vec<(usize, String)>,
    /// Non-fatal findings, already prefixed with `file:line:`; the caller should log them.
    pub warnings: Vec<String>,
}

/// Keys ZooKeeper only knows as system properties: in zoo.cfg ZooKeeper prefixes unknown keys
/// with `zookeeper.`, so both spellings are accepted here.
fn canonical_key(key: &str) -> &str {
    match key {
        "zookeeper.4lw.commands.whitelist" => "4lw.commands.whitelist",
        "zookeeper.extendedTypesEnabled" => "extendedTypesEnabled",
        "zookeeper.snapCount" => "snapCount",
        "zookeeper.preAllocSize" => "preAllocSize",
        "zookeeper.znode.container.checkIntervalMs" => "znode.container.checkIntervalMs",
        "zookeeper.DigestAuthenticationProvider.superDigest" | "superDigest" => {
            "DigestAuthenticationProvider.superDigest"
        }
        other => other,
    }
}

/// Holds the file name so that errors and warnings can be built tersely.
struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, line: usize, reason: impl Into<String>) -> ConfigError {
        ConfigError::Line {
            file: self.file.to_string(),
            line,
            reason: reason.into(),
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            reason: reason.into(),
        }
    }

    fn warning(&self, line: usize, msg: impl fmt::Display) -> String {
        format!("{}:{}: {}", self.file, line, msg)
    }
}

/// Parses a Java `int` the way `Integer.parseInt` does, with our wording for errors.
fn parse_i32(key: &str, value: &str) -> Result<i32, String> {
    value.parse::<i32>().map_err(|_| {
        if value.parse::<i128>().is_ok() {
            format!("{key}: \"{value}\" is out of range for a 32-bit integer")
        } else {
            format!("{key}: \"{value}\" is not a number")
        }
    })
}

/// A Java `int` that must be >= `min`.
fn parse_u32_min(key: &str, value: &str, min: u32) -> Result<u32, String> {
    let n = parse_i32(key, value)?;
    match u32::try_from(n) {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("{key}: \"{value}\" must be at least {min}")),
    }
}

/// `Integer.getInteger` accepts decimal, `0x`/`#` hex and leading-zero octal.
fn parse_java_decoded_u32(key: &str, value: &str) -> Result<u32, String> {
    let (digits, radix) = if let Some(h) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .or_else(|| value.strip_prefix('#'))
    {
        (h, 16)
    } else if value.len() > 1 && value.starts_with('0') {
        (&value[1..], 8)
    } else {
        (value, 10)
    };
    let n = i64::from_str_radix(digits, radix)
        .map_err(|_| format!("{key}: \"{value}\" is not a number"))?;
    if n <= 0 || n > i64::from(i32::MAX) {
        return Err(format!(
            "{key}: \"{value}\" must be between 1 and {}",
            i32::MAX
        ));
    }
    u32::try_from(n).map_err(|_| format!("{key}: \"{value}\" is out of range"))
}

/// A port number; 0 only if `allow_zero` (an ephemeral client port, useful in tests).
fn parse_port(key: &str, value: &str, allow_zero: bool) -> Result<u16, String> {
    let n: i64 = value
        .parse()
        .map_err(|_| format!("{key}: \"{value}\" is not a port number"))?;
    let lo = if allow_zero { 0 } else { 1 };
    match u16::try_from(n) {
        Ok(p) if i64::from(p) >= lo => Ok(p),
        _ => Err(format!(
            "{key}: port {value} is out of range ({lo}..=65535)"
        )),
    }
}

/// `true`/`false`, case-insensitive. ZooKeeper's own keys reject anything else the same way.
fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(format!(
            "{key}: \"{value}\" is not a boolean (use true or false)"
        ))
    }
}

/// An IP literal or `localhost`; the parser resolves no names.
fn parse_ip(key: &str, host: &str) -> Result<IpAddr, String> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().map_err(|_| {
        format!("{key}: \"{host}\" is not an IP address (host names are not resolved here)")
    })
}

/// `autopurge.purgeInterval`: a bare number is hours; otherwise `Nms`, `Ns`, `Nm`, `Nh`, `Nd`.
/// Negative values mean "off", as in ZooKeeper.
fn parse_purge_interval(key: &str, value: &str) -> Result<Duration, String> {
    let bad = || format!("{key}: \"{value}\" is not a time interval (e.g. 24, 30m, 12h, 1d)");
    let (num, unit_ms): (&str, u64) = if value.ends_with(|c: char| c.is_ascii_digit()) {
        (value, 3_600_000)
    } else if let Some(n) = value
        .strip_suffix("ms")
        .or_else(|| value.strip_suffix("MS"))
    {
        (n, 1)
    } else {
        let mut chars = value.chars();
        let suffix = chars.next_back().ok_or_else(bad)?;
        let unit = match suffix.to_ascii_uppercase() {
            'S' => 1_000,
            'M' => 60_000,
            'H' => 3_600_000,
            'D' => 86_400_000,
            _ => return Err(bad()),
        };
        (chars.as_str(), unit)
    };
    let n = parse_i32(key, num).map_err(|_| bad())?;
    let n = u64::try_from(n).unwrap_or(0);
    Ok(Duration::from_millis(n * unit_ms))
}

/// `user:base64digest`.
fn parse_super_digest(key: &str, value: &str) -> Result<String, String> {
    let bad =
        |why: &str| format!("{key}: \"{value}\" {why} (expected user:base64(sha1(user:password)))");
    let (user, digest) = value.split_once(':').ok_or_else(|| bad("has no ':'"))?;
    if user.is_empty() || digest.is_empty() {
        return Err(bad("has an empty user or digest"));
    }
    base64::engine::general_purpose::STANDARD
        .decode(digest)
        .map_err(|_| bad("has a digest that is not base64"))?;
    Ok(value.to_string())
}

/// Splits `host:p1:p2...` or `[v6]:p1:p2...` into host and the rest, like ZooKeeper's
/// `ConfigUtils.getHostAndPort`.
fn split_host_and_ports(s: &str) -> Result<Vec<&str>, String> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or_else(|| format!("\"{s}\" starts with '[' but has no matching ']'"))?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        if after.is_empty() {
            return Ok(vec![host]);
        }
        let ports = after
            .strip_prefix(':')
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("\"{s}\" has no port after \"]:\""))?;
        let mut parts = vec![host];
        parts.extend(ports.split(':'));
        Ok(parts)
    } else {
        Ok(s.split(':').collect())
    }
}

const SERVER_FORMAT: &str =
    "host:quorumPort:electionPort[:participant|:observer][;[clientHost:]clientPort]";

fn parse_server(key: &str, id: u64, value: &str, line: usize) -> Result<ServerSpec, String> {
    let wrong = || format!("{key}: \"{value}\" is not of the form {SERVER_FORMAT}");
    let parts: Vec<&str> = value.split(';').collect();
    if parts.len() > 3 {
        return Err(wrong());
    }
    let server_part = parts[0].trim();
    if server_part.contains('|') {
        return Err(format!(
            "{key}: multiple addresses per server (\"|\") are not supported"
        ));
    }
    let sp = split_host_and_ports(server_part).map_err(|e| format!("{key}: {e}"))?;
    if !(3..=4).contains(&sp.len()) {
        return Err(wrong());
    }
    let host = sp[0].trim();
    if host.is_empty() {
        return Err(format!("{key}: \"{value}\" has an empty host"));
    }
    let quorum_port = parse_port(&format!("{key} quorum port"), sp[1].trim(), false)?;
    let election_port = parse_port(&format!("{key} election port"), sp[2].trim(), false)?;
    if quorum_port == election_port {
        return Err(format!(
            "{key}: quorum port and election port must differ (both are {quorum_port})"
        ));
    }
    let role = match sp.get(3) {
        None => PeerType::Participant,
        Some(t) => PeerType::parse(t).ok_or_else(|| {
            format!("{key}: unknown peer type \"{t}\" (use participant or observer)")
        })?,
    };
    let client_addr = match parts.get(1).map(|c| c.trim()).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let cp = split_host_and_ports(c).map_err(|e| format!("{key}: {e}"))?;
            let what = format!("{key} client");
            let (ip, port) = match cp.as_slice() {
                [port] => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), *port),
                [h, port] => (parse_ip(&what, h.trim())?, *port),
                _ => return Err(wrong()),
            };
            Some(SocketAddr::new(ip, parse_port(&what, port.trim(), false)?))
        }
    };
    Ok(ServerSpec {
        id,
        host: host.to_string(),
        quorum_port,
        election_port,
        role,
        client_addr,
        line,
    })
}

/// One logical line of a Properties file: key, value and the line it starts on.
struct RawEntry {
    line: usize,
    key: String,
    value: String,
    /// The key was not followed by '=' or ':' (only whitespace, or nothing).
    no_separator: bool,
}

/// The line as written, for messages.
fn lines_text(e: &RawEntry) -> String {
    if e.value.is_empty() {
        e.key.clone()
    } else {
        format!("{} {}", e.key, e.value)
    }
}

/// Resolves Properties escapes (`\t`, `\n`, `\r`, `\f`, `\uXXXX`, `\x` = `x`).
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let cp = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("malformed \\uxxxx escape \"\\u{hex}\""))?;
                out.push(cp);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// Splits a `java.util.Properties` text into entries: `#`/`!` comments, blank lines, `key=value`,
/// `key: value` or `key value`, backslash line continuation and escapes. Keys and values are
/// trimmed, as ZooKeeper does.
fn read_properties(text: &str, ctx: &Ctx<'_>) -> Result<Vec<RawEntry>, ConfigError> {
    let is_ws = |c: char| c == ' ' || c == '\t' || c == '\u{c}';
    let mut out = Vec::new();
    // Java ends lines at "\n", "\r" or "\r\n".
    let mut lines = text
        .split('\n')
        .flat_map(|l| {
            let l = l.strip_suffix('\r').unwrap_or(l);
            l.split('\r')
        })
        .enumerate();
    while let Some((idx, raw)) = lines.next() {
        let line_no = idx + 1;
        let first = raw.trim_start_matches(is_ws);
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        // Join continuation lines (an odd number of trailing backslashes).
        let mut logical = String::new();
        let mut cur = first;
        loop {
            let trailing = cur.chars().rev().take_while(|&c| c == '\\').count();
            if trailing % 2 == 1 {
                logical.push_str(&cur[..cur.len() - 1]);
                match lines.next() {
                    Some((_, next)) => cur = next.trim_start_matches(is_ws),
                    None => break,
                }
            } else {
                logical.push_str(cur);
                break;
            }
        }
        // The key ends at the first unescaped '=', ':' or whitespace.
        let mut key_end = logical.len();
        let mut escaped = false;
        for (i, c) in logical.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '=' || c == ':' || is_ws(c) {
                key_end = i;
                break;
            }
        }
        let raw_key = &logical[..key_end];
        let mut rest = logical[key_end..].trim_start_matches(is_ws);
        let mut no_separator = true;
        if let Some(r) = rest.strip_prefix(['=', ':']) {
            rest = r.trim_start_matches(is_ws);
            no_separator = false;
        }
        let key = unescape(raw_key).map_err(|e| ctx.err(line_no, e))?;
        let value = unescape(rest).map_err(|e| ctx.err(line_no, e))?;
        out.push(RawEntry {
            line: line_no,
            key: key.trim().to_string(),
            value: value.trim().to_string(),
            no_separator,
        });
    }
    Ok(out)
}

impl Config {
    /// Parses the text of a zoo.cfg. Pure: no file is read, `myid` is not consulted (see
    /// [`Config::apply_my_id`]). `source_name` is used in messages.
    pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let ctx = Ctx { file: source_name };
        let raw = read_properties(text, &ctx)?;

        let mut tick_time_ms = DEFAULT_TICK_TIME_MS;
        let mut data_dir: Option<PathBuf> = None;
        let mut data_log_dir: Option<PathBuf> = None;
        let mut client_port = None;
        let mut client_port_address = None;
        let mut client_port_listen_backlog = None;
        let mut max_client_cnxns = DEFAULT_MAX_CLIENT_CNXNS;
        let mut min_session: Option<u32> = None;
        let mut max_session: Option<u32> = None;
        let mut init_limit_ticks = 0;
        let mut sync_limit_ticks = 0;
        let mut snap_count = DEFAULT_SNAP_COUNT;
        let mut pre_alloc_size_kb = DEFAULT_PRE_ALLOC_SIZE_KB;
        let mut container_check_interval_ms = DEFAULT_CONTAINER_CHECK_INTERVAL_MS;
        let mut snap_retain = MIN_SNAP_RETAIN_COUNT;
        let mut purge_interval = Duration::ZERO;
        let mut whitelist: Option<String> = None;
        let mut jute_max_buffer_bytes = DEFAULT_JUTE_MAX_BUFFER_BYTES;
        let mut extended_types_enabled = false;
        let mut super_digest = None;
        let mut standalone_enabled = true;
        let mut peer_type: Option<(usize, PeerType)> = None;
        let mut servers: Vec<ServerSpec> = Vec::new();
        let mut server_lines: HashMap<u64, usize> = HashMap::new();
        let mut unknown_keys = Vec::new();
        let mut warnings = Vec::new();
        let mut last_line: HashMap<&'static str, usize> = HashMap::new();

        for e in &raw {
            let (line, v) = (e.line, e.value.as_str());
            let key = canonical_key(&e.key);
            let err = |reason: String| ctx.err(line, reason);
            match key {
                "tickTime" => {
                    let n = parse_i32(key, v).map_err(err)?;
                    tick_time_ms = u32::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
                        err(format!(
                            "{key}: \"{v}\" must be a positive number of milliseconds"
                        ))
                    })?;
                    last_line.insert("tickTime", line);
                }
                "dataDir" | "dataLogDir" => {
                    if v.is_empty() {
                        return Err(err(format!("{key} is empty")));
                    }
                    let slot = if key == "dataDir" {
                        &mut data_dir
                    } else {
                        &mut data_log_dir
                    };
                    *slot = Some(PathBuf::from(v));
                }
                "clientPort" => {
                    client_port = Some(parse_port(key, v, true).map_err(err)?);
                    last_line.insert("clientPort", line);
                }
                "clientPortAddress" => {
                    client_port_address = Some(parse_ip(key, v).map_err(err)?);
                    last_line.insert("clientPortAddress", line);
                }
                "clientPortListenBacklog" => {
                    let n = parse_i32(key, v).map_err(err)?;
                    client_port_listen_backlog = u32::try_from(n).ok().filter(|&n| n > 0);
                }
                "maxClientCnxns" => max_client_cnxns = parse_u32_min(key, v, 0).map_err(err)?,
                "minSessionTimeout" | "maxSessionTimeout" => {
                    // -1 is ZooKeeper's explicit "use the default".
                    let n = parse_i32(key, v).map_err(err)?;
                    let val = match n {
                        -1 => None,
                        n => Some(u32::try_from(n).map_err(|_| {
                            err(format!("{key}: \"{v}\" must be a number of milliseconds (or -1 for the default)"))
                        })?),
                    };
                    if key == "minSessionTimeout" {
                        min_session = val;
                        last_line.insert("minSessionTimeout", line);
                    } else {
                        max_session = val;
                        last_line.insert("maxSessionTimeout", line);
                    }
                }
                "initLimit" => init_limit_ticks = parse_u32_min(key, v, 0).map_err(err)?,
                "syncLimit" => sync_limit_ticks = parse_u32_min(key, v, 0).map_err(err)?,
                "preAllocSize" => {
                    let n = parse_i32(key, v).map_err(err)?;
                    pre_alloc_size_kb = match u64::try_from(n) {
                        Ok(n) if n >= 4 => n,
                        _ => return Err(err(format!("{key}: {n} KiB is too small (at least 4)"))),
                    };
                }
                "znode.container.checkIntervalMs" => {
                    let n = parse_i32(key, v).map_err(err)?;
                    container_check_interval_ms = match u64::try_from(n) {
                        Ok(n) if n > 0 => n,
                        _ => return Err(err(format!("{key}: must be a positive number of ms"))),
                    };
                }
                "snapCount" => {
                    let n = parse_i32(key, v).map_err(err)?;
                    snap_count = match u32::try_from(n) {
                        Ok(n) if n >= MIN_SNAP_COUNT => n,
                        _ => {
                            warnings.push(ctx.warning(
                                line,
                                format_args!("snapCount {n} is below {MIN_SNAP_COUNT}; using {MIN_SNAP_COUNT}"),
                            ));
                            MIN_SNAP_COUNT
                        }
                    };
                }
                "autopurge.snapRetainCount" => {
                    let n = parse_i32(key, v).map_err(err)?;
                    snap_retain = match u32::try_from(n) {
                        Ok(n) if n >= MIN_SNAP_RETAIN_COUNT => n,
                        _ => {
                            warnings.push(ctx.warning(
                                line,
                                format_args!("autopurge.snapRetainCount {n} is below {MIN_SNAP_RETAIN_COUNT}; using {MIN_SNAP_RETAIN_COUNT}"),
                            ));
                            MIN_SNAP_RETAIN_COUNT
                        }
                    };
                }
                "autopurge.purgeInterval" => {
                    purge_interval = parse_purge_interval(key, v).map_err(err)?
                }
                "4lw.commands.whitelist" => whitelist = Some(v.to_string()),
                "jute.maxbuffer" => {
                    jute_max_buffer_bytes = parse_java_decoded_u32(key, v).map_err(err)?
                }
                "extendedTypesEnabled" => {
                    extended_types_enabled = parse_bool(&e.key, v).map_err(err)?
                }
                "DigestAuthenticationProvider.superDigest" => {
                    super_digest = Some(parse_super_digest(&e.key, v).map_err(err)?)
                }
                "standaloneEnabled" => standalone_enabled = parse_bool(key, v).map_err(err)?,
                "peerType" => {
                    let t = PeerType::parse(v).ok_or_else(|| {
                        err(format!(
                            "peerType: \"{v}\" is not a peer type (use participant or observer)"
                        ))
                    })?;
                    peer_type = Some((line, t));
                }
                "electionAlg" => {
                    if parse_i32(key, v).map_err(err)? != 3 {
                        return Err(err(format!(
                            "electionAlg: \"{v}\" is not supported; only 3 (fast leader election) is"
                        )));
                    }
                }
                "dynamicConfigFile" => {
                    return Err(err(
                        "dynamicConfigFile is not supported; put the server.N lines in this file"
                            .to_string(),
                    ));
                }
                k if k.starts_with("server.") => {
                    let id_str = &k["server.".len()..];
                    let id: u64 = id_str.parse().map_err(|_| {
                        err(format!(
                            "{k}: \"{id_str}\" is not a server id (a non-negative integer)"
                        ))
                    })?;
                    if let Some(first) = server_lines.get(&id) {
                        return Err(err(format!(
                            "{k}: server id {id} is already defined on line {first}"
                        )));
                    }
                    let spec = parse_server(k, id, v, line).map_err(err)?;
                    if spec.id > MAX_SESSION_SAFE_SERVER_ID {
                        warnings.push(ctx.warning(
                            line,
                            format_args!("server id {id} is above {MAX_SESSION_SAFE_SERVER_ID}; session ids of different servers may collide"),
                        ));
                    }
                    server_lines.insert(id, line);
                    servers.push(spec);
                }
                k if k.starts_with("group") || k.starts_with("weight") => {
                    return Err(err(format!(
                        "{k}: hierarchical quorums (group/weight) are not supported"
                    )));
                }
                // java.util.Properties would read "some words here" as key "some"; for a key
                // nobody knows that is almost always a typo, so say so instead of ignoring it.
                _ if e.no_separator => {
                    return Err(ctx.err(
                        line,
                        format!("\"{}\" is not a key=value line", lines_text(e)),
                    ));
                }
                _ => unknown_keys.push((line, e.key.clone())),
            }
        }

        // Whole-file checks.
        let data_dir = data_dir.ok_or_else(|| ctx.invalid("dataDir is not set"))?;
        let data_log_dir = data_log_dir.unwrap_or_else(|| data_dir.clone());

        if client_port.is_none() {
            if let Some(&line) = last_line.get("clientPortAddress") {
                return Err(ctx.err(line, "clientPortAddress is set but clientPort is not set"));
            }
        }

        let min_session_timeout_ms = min_session.unwrap_or(tick_time_ms.saturating_mul(2));
        let max_session_timeout_ms = max_session.unwrap_or(tick_time_ms.saturating_mul(20));
        if min_session_timeout_ms > max_session_timeout_ms {
            let line = [
                last_line.get("minSessionTimeout"),
                last_line.get("maxSessionTimeout"),
                last_line.get("tickTime"),
            ]
            .into_iter()
            .flatten()
            .max()
            .copied()
            .unwrap_or(0);
            return Err(ctx.err(
                line,
                format!(
                    "minSessionTimeout ({min_session_timeout_ms} ms) must not be larger than maxSessionTimeout ({max_session_timeout_ms} ms)"
                ),
            ));
        }

        let mut four_letter_words = BTreeSet::new();
        if let Some(list) = &whitelist {
            for w in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                if w == "*" {
                    four_letter_words.extend(KNOWN_FOUR_LETTER_WORDS.iter().map(|s| s.to_string()));
                } else {
                    four_letter_words.insert(w.to_string());
                }
            }
        }
        // ZooKeeper always enables srvr (zkServer.sh status depends on it).
        four_letter_words.insert("srvr".to_string());

        servers.sort_by_key(|s| s.id);
        check_endpoints(&servers, &ctx)?;

        let voters = servers
            .iter()
            .filter(|s| s.role == PeerType::Participant)
            .count();
        let observers = servers.len() - voters;
        let first_server_line = servers.iter().map(|s| s.line).min().unwrap_or(0);
        if voters == 0 && observers > 0 {
            return Err(ctx.err(
                first_server_line,
                "observers without participants: at least one server.N must be a participant",
            ));
        }
        if voters == 0 && !standalone_enabled {
            return Err(
                ctx.invalid("standaloneEnabled=false needs at least one participant server.N line")
            );
        }
        if voters == 1 && standalone_enabled {
            if observers > 0 {
                return Err(ctx.err(
                    first_server_line,
                    "observers need a quorum: configure at least two participants (or standaloneEnabled=false)",
                ));
            }
            warnings.push(ctx.warning(
                first_server_line,
                "only one server specified; running standalone and ignoring it (as ZooKeeper does; set standaloneEnabled=false for a one-node ensemble)",
            ));
        }

        let config = Config {
            source_name: source_name.to_string(),
            tick_time_ms,
            data_dir,
            data_log_dir,
            client_port,
            client_port_address,
            client_port_listen_backlog,
            max_client_cnxns,
            min_session_timeout_ms,
            max_session_timeout_ms,
            init_limit_ticks,
            sync_limit_ticks,
            snap_count,
            pre_alloc_size_kb,
            container_check_interval_ms,
            autopurge_snap_retain_count: snap_retain,
            autopurge_purge_interval: purge_interval,
            four_letter_words,
            jute_max_buffer_bytes,
            extended_types_enabled,
            super_digest,
            standalone_enabled,
            peer_type: peer_type.map(|(_, t)| t).unwrap_or_default(),
            my_id: None,
            servers,
            entries: raw
                .into_iter()
                .map(|r| ConfigEntry {
                    line: r.line,
                    key: r.key,
                    value: r.value,
                })
                .collect(),
            unknown_keys,
            warnings,
        };

        if config.is_quorum() {
            if config.init_limit_ticks == 0 {
                return Err(ctx.invalid("initLimit is not set (required with server.N lines)"));
            }
            if config.sync_limit_ticks == 0 {
                return Err(ctx.invalid("syncLimit is not set (required with server.N lines)"));
            }
        }
        Ok(config)
    }

    /// Reads and parses the config file, then (in quorum mode) `dataDir/myid`.
    ///
    /// A relative `dataDir` is used as given, i.e. relative to the current directory, as
    /// ZooKeeper does. In standalone mode `myid` is not read.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // Properties files are ISO-8859-1 in Java; take UTF-8 when it is valid, else Latin-1.
        let text = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
        };
        let mut config = Config::parse(&text, &path.display().to_string())?;
        if config.is_quorum() {
            let myid_path = config.myid_path();
            let ids = config.server_id_list();
            let myid_text = match std::fs::read_to_string(&myid_path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(ConfigError::MyId {
                        path: myid_path,
                        reason: format!(
                            "myid file is missing; {} has server.N lines, so this file must hold this server's id (one of {ids})",
                            config.source_name
                        ),
                    })
                }
                Err(e) => {
                    return Err(ConfigError::MyId {
                        path: myid_path,
                        reason: format!("cannot read myid file: {e}"),
                    })
                }
            };
            let id = parse_myid(&myid_text, &myid_path)?;
            config.apply_my_id(id, &myid_path)?;
        }
        Ok(config)
    }

    /// Sets this server's id (the contents of `myid_path`) and checks it against the server
    /// lines: it must be one of them, fit extended types, and agree with `clientPort`. Sets
    /// `peer_type` from this server's line. Ignored (returns Ok) in standalone mode.
    pub fn apply_my_id(&mut self, id: u64, myid_path: &Path) -> Result<(), ConfigError> {
        if !self.is_quorum() {
            return Ok(());
        }
        let myid_err = |reason: String| ConfigError::MyId {
            path: myid_path.to_path_buf(),
            reason,
        };
        let Some(me) = self.servers.iter().find(|s| s.id == id).cloned() else {
            return Err(myid_err(format!(
                "myid {id} is not among the server ids in {} ({})",
                self.source_name,
                self.server_id_list()
            )));
        };
        if self.extended_types_enabled && id > MAX_EXTENDED_SERVER_ID {
            return Err(myid_err(format!(
                "myid {id}: with extendedTypesEnabled the server id cannot be larger than {MAX_EXTENDED_SERVER_ID}"
            )));
        }
        if let (Some(port), Some(addr)) = (self.client_port, me.client_addr) {
            let ip = self
                .client_port_address
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let conflict = if ip.is_unspecified() {
                port != addr.port()
            } else {
                SocketAddr::new(ip, port) != addr
            };
            if conflict {
                let line = self
                    .entries
                    .iter()
                    .rev()
                    .find(|e| e.key == "clientPort")
                    .map_or(me.line, |e| e.line);
                return Err(ConfigError::Line {
                    file: self.source_name.clone(),
                    line,
                    reason: format!(
                        "client address {} (clientPort/clientPortAddress) differs from {addr} in server.{id} on line {}",
                        SocketAddr::new(ip, port),
                        me.line
                    ),
                });
            }
        }
        if let Some(e) = self.entries.iter().rev().find(|e| e.key == "peerType") {
            if self.peer_type != me.role {
                self.warnings.push(format!(
                    "{}:{}: peerType {} contradicts server.{id} ({}); using {}",
                    self.source_name, e.line, self.peer_type, me.role, me.role
                ));
            }
        }
        self.peer_type = me.role;
        self.my_id = Some(id);
        Ok(())
    }

    /// True unless this server runs as a member of an ensemble. As in ZooKeeper, that is when
    /// there are no `server.N` lines, and also when there is exactly one participant and
    /// `standaloneEnabled` is true (ZooKeeper logs an error and runs standalone).
    pub fn is_standalone(&self) -> bool {
        !self.is_quorum()
    }

    /// ZooKeeper's `isDistributed()`: more than one voter, or any voter with standaloneEnabled=false.
    pub fn is_quorum(&self) -> bool {
        let voters = self.voters().count();
        voters > 1 || (voters >= 1 && !self.standalone_enabled)
    }

    /// The participants (voting members).
    pub fn voters(&self) -> impl Iterator<Item = &ServerSpec> {
        self.servers
            .iter()
            .filter(|s| s.role == PeerType::Participant)
    }

    /// The observers.
    pub fn observers(&self) -> impl Iterator<Item = &ServerSpec> {
        self.servers.iter().filter(|s| s.role == PeerType::Observer)
    }

    /// This server's own `server.N` line (quorum mode, after `myid` was applied).
    pub fn my_server(&self) -> Option<&ServerSpec> {
        let id = self.my_id?;
        if !self.is_quorum() {
            return None;
        }
        self.servers.iter().find(|s| s.id == id)
    }

    /// Where to listen for clients: the client part of this server's `server.N` line if it has
    /// one, else `clientPortAddress` (default 0.0.0.0) with `clientPort`. `None` when no client
    /// port is configured; the caller should treat that as an error.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        if let Some(addr) = self.my_server().and_then(|s| s.client_addr) {
            return Some(addr);
        }
        let ip = self
            .client_port_address
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.client_port.map(|p| SocketAddr::new(ip, p))
    }

    /// Tick duration.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(u64::from(self.tick_time_ms))
    }

    /// Is this four-letter word allowed by `4lw.commands.whitelist`?
    pub fn four_letter_word_enabled(&self, word: &str) -> bool {
        self.four_letter_words.contains(word)
    }

    /// `dataDir/myid`.
    pub fn myid_path(&self) -> PathBuf {
        self.data_dir.join("myid")
    }

    fn server_id_list(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The `key=value` lines of the `conf` four-letter word, in ZooKeeper 3.8/3.9's order:
    /// clientPort, secureClientPort, dataDir, dataDirSize, dataLogDir, dataLogSize, tickTime,
    /// maxClientCnxns, minSessionTimeout, maxSessionTimeout, clientPortListenBacklog, serverId,
    /// and in quorum mode initLimit, syncLimit, electionAlg, electionPort, quorumPort, peerType.
    ///
    /// Placeholders the caller should override: `clientPort` is the configured port (-1 if none;
    /// ZooKeeper prints the bound port), `dataDirSize` and `dataLogSize` are "0" (ZooKeeper prints
    /// the byte size of the files in the snapshot / log directory). Directories are made absolute
    /// and get ZooKeeper's `version-2` suffix. In quorum mode ZooKeeper then prints a line
    /// `membership: ` followed by [`Config::membership_text`].
    pub fn conf_lines(&self) -> Vec<(String, String)> {
        let abs = |p: &Path| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .join("version-2")
                .display()
                .to_string()
        };
        let mut v: Vec<(&str, String)> = vec![
            (
                "clientPort",
                self.client_addr()
                    .map_or("-1".to_string(), |a| a.port().to_string()),
            ),
            ("secureClientPort", "-1".to_string()),
            ("dataDir", abs(&self.data_dir)),
            ("dataDirSize", "0".to_string()),
            ("dataLogDir", abs(&self.data_log_dir)),
            ("dataLogSize", "0".to_string()),
            ("tickTime", self.tick_time_ms.to_string()),
            ("maxClientCnxns", self.max_client_cnxns.to_string()),
            ("minSessionTimeout", self.min_session_timeout_ms.to_string()),
            ("maxSessionTimeout", self.max_session_timeout_ms.to_string()),
            (
                "clientPortListenBacklog",
                self.client_port_listen_backlog
                    .map_or("-1".to_string(), |b| b.to_string()),
            ),
        ];
        if let Some(me) = self.my_server() {
            v.push(("serverId", me.id.to_string()));
            v.push(("initLimit", self.init_limit_ticks.to_string()));
            v.push(("syncLimit", self.sync_limit_ticks.to_string()));
            v.push(("electionAlg", "3".to_string()));
            v.push(("electionPort", me.election_port.to_string()));
            v.push(("quorumPort", me.quorum_port.to_string()));
            v.push(("peerType", me.role.ordinal().to_string()));
        } else {
            v.push(("serverId", "0".to_string()));
        }
        v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// In quorum mode, what ZooKeeper's `conf` prints after `membership: `: one
    /// `server.N=host:quorum:election:role[;client]` line per server and `version=0`
    /// (the caller substitutes the current config version, in hex, if it tracks one).
    pub fn membership_text(&self) -> Option<String> {
        if !self.is_quorum() {
            return None;
        }
        let mut s = String::new();
        for srv in &self.servers {
            s.push_str(&format!("server.{}={}\n", srv.id, srv.to_zk_string()));
        }
        s.push_str("version=0");
        Some(s)
    }
}

/// Parses the contents of a `myid` file: a decimal server id on the first line (surrounding
/// whitespace allowed).
pub fn parse_myid(text: &str, path: &Path) -> Result<u64, ConfigError> {
    let first = text.lines().next().unwrap_or("").trim();
    let err = |reason: String| ConfigError::MyId {
        path: path.to_path_buf(),
        reason,
    };
    if first.is_empty() {
        return Err(err(
            "myid file is empty; it must hold this server's id".to_string()
        ));
    }
    first.parse().map_err(|_| {
        err(format!(
            "myid \"{first}\" is not a server id (a non-negative integer)"
        ))
    })
}

/// No two endpoints (quorum, election, client ports of all servers) may be the same host:port.
/// A client address on 0.0.0.0 counts as being on the server's own host.
fn check_endpoints(servers: &[ServerSpec], ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    let mut seen: HashMap<(String, u16), (u64, &'static str)> = HashMap::new();
    for s in servers {
        let host = s.host.to_ascii_lowercase();
        let mut eps = vec![
            ((host.clone(), s.quorum_port), "quorum port"),
            ((host.clone(), s.election_port), "election port"),
        ];
        if let Some(c) = s.client_addr {
            let h = if c.ip().is_unspecified() {
                host.clone()
            } else {
                c.ip().to_string()
            };
            eps.push(((h, c.port()), "client port"));
        }
        for (ep, what) in eps {
            if let Some((other, other_what)) = seen.get(&ep) {
                return Err(ctx.err(
                    s.line,
                    format!(
                        "server.{}: {what} {}:{} is already used as the {other_what} of server.{other}",
                        s.id,
                        bracket_host(&ep.0),
                        ep.1
                    ),
                ));
            }
            seen.insert(ep, (s.id, what));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "conf/test.cfg";

    fn parse(text: &str) -> Config {
        match Config::parse(text, FILE) {
            Ok(c) => c,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    /// Parses, expects an error, returns its message.
    fn parse_err(text: &str) -> String {
        match Config::parse(text, FILE) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Asserts that the error for `text` is on `line` and mentions `reason`.
    fn assert_line_err(text: &str, line: usize, reason: &str) {
        let msg = parse_err(text);
        let prefix = format!("{FILE}:{line}: ");
        assert!(
            msg.starts_with(&prefix),
            "{msg:?} should start with {prefix:?}"
        );
        assert!(msg.contains(reason), "{msg:?} should contain {reason:?}");
    }

    const QUORUM: &str = "dataDir=/d\ninitLimit=10\nsyncLimit=5\n\
        server.1=10.0.0.1:2888:3888\n\
        server.2=10.0.0.2:2888:3888\n\
        server.3=10.0.0.3:2888:3888\n";

    #[test]
    fn defaults() {
        let c = parse("dataDir=/var/zk\n");
        assert_eq!(c.source_name, FILE);
        assert_eq!(c.tick_time_ms, 3000);
        assert_eq!(c.tick(), Duration::from_secs(3));
        assert_eq!(c.data_dir, PathBuf::from("/var/zk"));
        assert_eq!(c.data_log_dir, PathBuf::from("/var/zk"));
        assert_eq!(c.client_port, None);
        assert_eq!(c.client_port_address, None);
        assert_eq!(c.client_addr(), None);
        assert_eq!(c.client_port_listen_backlog, None);
        assert_eq!(c.max_client_cnxns, 60);
        assert_eq!(c.min_session_timeout_ms, 6000);
        assert_eq!(c.max_session_timeout_ms, 60000);
        assert_eq!(c.init_limit_ticks, 0);
        assert_eq!(c.sync_limit_ticks, 0);
        assert_eq!(c.snap_count, 100_000);
        assert_eq!(c.autopurge_snap_retain_count, 3);
        assert_eq!(c.autopurge_purge_interval, Duration::ZERO);
        assert_eq!(c.four_letter_words, BTreeSet::from(["srvr".to_string()]));
        assert!(c.four_letter_word_enabled("srvr"));
        assert!(!c.four_letter_word_enabled("ruok"));
        assert_eq!(c.jute_max_buffer_bytes, 1_048_575);
        assert!(!c.extended_types_enabled);
        assert_eq!(c.super_digest, None);
        assert!(c.standalone_enabled);
        assert_eq!(c.peer_type, PeerType::Participant);
        assert_eq!(c.my_id, None);
        assert!(c.servers.is_empty());
        assert!(c.is_standalone());
        assert!(!c.is_quorum());
        assert!(c.unknown_keys.is_empty());
        assert!(c.warnings.is_empty());
        assert_eq!(c.membership_text(), None);
    }

    #[test]
    fn every_key() {
        let c = parse(
            "tickTime=2000\n\
             dataDir=data\n\
             dataLogDir=/fast/log\n\
             clientPort=2181\n\
             clientPortAddress=127.0.0.1\n\
             clientPortListenBacklog=128\n\
             maxClientCnxns=0\n\
             minSessionTimeout=1000\n\
             maxSessionTimeout=90000\n\
             initLimit=10\n\
             syncLimit=5\n\
             snapCount=5000\n\
             autopurge.snapRetainCount=7\n\
             autopurge.purgeInterval=24\n\
             4lw.commands.whitelist=ruok, stat ,mntr,,\n\
             jute.maxbuffer=4194304\n\
             extendedTypesEnabled=TRUE\n\
             DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n\
             standaloneEnabled=true\n\
             peerType=observer\n\
             electionAlg=3\n",
        );
        assert_eq!(c.tick_time_ms, 2000);
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.data_log_dir, PathBuf::from("/fast/log"));
        assert_eq!(c.client_port, Some(2181));
        assert_eq!(c.client_port_address, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(c.client_addr(), Some("127.0.0.1:2181".parse().unwrap()));
        assert_eq!(c.client_port_listen_backlog, Some(128));
        assert_eq!(c.max_client_cnxns, 0);
        assert_eq!(c.min_session_timeout_ms, 1000);
        assert_eq!(c.max_session_timeout_ms, 90000);
        assert_eq!(c.init_limit_ticks, 10);
        assert_eq!(c.sync_limit_ticks, 5);
        assert_eq!(c.snap_count, 5000);
        assert_eq!(c.autopurge_snap_retain_count, 7);
        assert_eq!(c.autopurge_purge_interval, Duration::from_secs(24 * 3600));
        let words: Vec<&str> = c.four_letter_words.iter().map(String::as_str).collect();
        assert_eq!(words, ["mntr", "ruok", "srvr", "stat"]);
        assert_eq!(c.jute_max_buffer_bytes, 4_194_304);
        assert!(c.extended_types_enabled);
        assert_eq!(
            c.super_digest.as_deref(),
            Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=")
        );
        assert_eq!(c.peer_type, PeerType::Observer);
        assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
        assert_eq!(c.entries.len(), 21);
        assert_eq!(
            c.entries[0],
            ConfigEntry {
                line: 1,
                key: "tickTime".into(),
                value: "2000".into()
            }
        );
    }

    #[test]
    fn alternative_key_spellings() {
        let c = parse(
            "dataDir=/d\n\
             zookeeper.extendedTypesEnabled=true\n\
             zookeeper.4lw.commands.whitelist=*\n\
             zookeeper.snapCount=10\n\
             superDigest=admin:YWJj\n",
        );
        assert!(c.extended_types_enabled);
        assert_eq!(c.four_letter_words.len(), KNOWN_FOUR_LETTER_WORDS.len());
        assert_eq!(c.snap_count, 10);
        assert_eq!(c.super_digest.as_deref(), Some("admin:YWJj"));
        let c = parse("dataDir=/d\nzookeeper.DigestAuthenticationProvider.superDigest=a:YWJj\n");
        assert_eq!(c.super_digest.as_deref(), Some("a:YWJj"));
    }

    #[test]
    fn whitelist_star_enables_all_known_words() {
        let c = parse("dataDir=/d\n4lw.commands.whitelist=*\n");
        for w in KNOWN_FOUR_LETTER_WORDS {
            assert!(c.four_letter_word_enabled(w), "{w}");
        }
        assert!(!c.four_letter_word_enabled("xyzw"));
        // srvr is enabled even when the list leaves it out, as in ZooKeeper.
        let c = parse("dataDir=/d\n4lw.commands.whitelist=ruok\n");
        assert!(c.four_letter_word_enabled("srvr"));
        assert!(c.four_letter_word_enabled("ruok"));
        assert!(!c.four_letter_word_enabled("stat"));
    }

    #[test]
    fn session_timeouts_derive_from_tick_time() {
        let c = parse("tickTime=100\ndataDir=/d\n");
        assert_eq!(
            (c.min_session_timeout_ms, c.max_session_timeout_ms),
            (200, 2000)
        );
        // -1 is ZooKeeper's explicit "default"; order in the file does not matter.
        let c = parse("minSessionTimeout=-1\nmaxSessionTimeout=5000\ntickTime=100\ndataDir=/d\n");
        assert_eq!(
            (c.min_session_timeout_ms, c.max_session_timeout_ms),
            (200, 5000)
        );
    }

    #[test]
    fn purge_interval_units() {
        let d = |v: &str| {
            parse(&format!("dataDir=/d\nautopurge.purgeInterval={v}\n")).autopurge_purge_interval
        };
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("-1"), Duration::ZERO);
        assert_eq!(d("2"), Duration::from_secs(7200));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("30s"), Duration::from_secs(30));
        assert_eq!(d("30m"), Duration::from_secs(1800));
        assert_eq!(d("12h"), Duration::from_secs(12 * 3600));
        assert_eq!(d("1d"), Duration::from_secs(86400));
        assert_line_err(
            "dataDir=/d\nautopurge.purgeInterval=1w\n",
            2,
            "is not a time interval",
        );
        assert_line_err(
            "dataDir=/d\nautopurge.purgeInterval=h\n",
            2,
            "is not a time interval",
        );
    }

    #[test]
    fn jute_maxbuffer_accepts_java_integer_forms() {
        let j = |v: &str| parse(&format!("dataDir=/d\njute.maxbuffer={v}\n")).jute_max_buffer_bytes;
        assert_eq!(j("0x400000"), 0x40_0000);
        assert_eq!(j("#100"), 0x100);
        assert_eq!(j("010"), 8);
        assert_line_err(
            "dataDir=/d\njute.maxbuffer=1M\n",
            2,
            "jute.maxbuffer: \"1M\" is not a number",
        );
        assert_line_err("dataDir=/d\njute.maxbuffer=0\n", 2, "must be between 1 and");
    }

    #[test]
    fn values_zookeeper_corrects_become_warnings() {
        let c = parse("dataDir=/d\nautopurge.snapRetainCount=1\nsnapCount=1\n");
        assert_eq!(c.autopurge_snap_retain_count, 3);
        assert_eq!(c.snap_count, 2);
        assert_eq!(c.warnings.len(), 2);
        assert!(
            c.warnings[0].starts_with("conf/test.cfg:2: "),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings[1].starts_with("conf/test.cfg:3: "),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn words_without_a_separator_are_an_error_for_unknown_keys() {
        let err = Config::parse("dataDir=/d\nthis line has no equals sign\n", "zoo.cfg")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("zoo.cfg:2: "), "{err}");
        assert!(err.contains("not a key=value line"), "{err}");
        let err = Config::parse("dataDir=/d\nbare\n", "zoo.cfg").unwrap_err();
        assert!(err.to_string().starts_with("zoo.cfg:2: "), "{err}");
    }

    #[test]
    fn comments_blank_lines_and_separators() {
        let c = parse(
            "# a comment\n\
             \n\
             \t   \n\
             ! also a comment\n\
             \x20  # indented comment\n\
             dataDir = /d  \n\
             tickTime: 1000\n\
             clientPort 2181\n\
             maxClientCnxns\t=\t7\r\n\
             initLimit=3\r\
             syncLimit=2\n\
             longKey=first \\\n\
             \x20     second\n\
             unicode=caf\\u00e9\n\
             empty=\n",
        );
        assert_eq!(c.data_dir, PathBuf::from("/d"));
        assert_eq!(c.tick_time_ms, 1000);
        assert_eq!(c.client_port, Some(2181));
        assert_eq!(c.max_client_cnxns, 7);
        assert_eq!(c.init_limit_ticks, 3);
        assert_eq!(c.sync_limit_ticks, 2);
        let get = |k: &str| {
            c.entries
                .iter()
                .find(|e| e.key == k)
                .map(|e| (e.line, e.value.clone()))
        };
        assert_eq!(get("dataDir"), Some((6, "/d".to_string())));
        assert_eq!(get("syncLimit"), Some((11, "2".to_string())));
        assert_eq!(get("longKey"), Some((12, "first second".to_string())));
        assert_eq!(get("unicode"), Some((14, "café".to_string())));
        assert_eq!(get("empty"), Some((15, String::new())));
        assert_eq!(
            c.unknown_keys,
            vec![
                (12, "longKey".to_string()),
                (14, "unicode".to_string()),
                (15, "empty".to_string()),
            ]
        );
    }

    #[test]
    fn later_key_wins_like_properties() {
        let c = parse("dataDir=/a\ntickTime=1000\ntickTime=2000\ndataDir=/b\n");
        assert_eq!(c.tick_time_ms, 2000);
        assert_eq!(c.data_dir, PathBuf::from("/b"));
        assert_eq!(c.entries.len(), 4);
    }

    #[test]
    fn unknown_keys_are_collected_not_errors() {
        let c = parse(
            "admin.serverPort=8080\n\
             dataDir=/d\n\
             metricsProvider.className=x.y.Z\n\
             # comment\n\
             localSessionsEnabled=notabool\n",
        );
        assert_eq!(
            c.unknown_keys,
            vec![
                (1, "admin.serverPort".to_string()),
                (3, "metricsProvider.className".to_string()),
                (5, "localSessionsEnabled".to_string()),
            ]
        );
    }

    #[test]
    fn server_lines_old_form() {
        let c = parse(QUORUM);
        assert!(c.is_quorum());
        assert!(!c.is_standalone());
        assert_eq!(c.servers.len(), 3);
        assert_eq!(
            c.servers[0],
            ServerSpec {
                id: 1,
                host: "10.0.0.1".into(),
                quorum_port: 2888,
                election_port: 3888,
                role: PeerType::Participant,
                client_addr: None,
                line: 4,
            }
        );
        assert_eq!(c.voters().count(), 3);
        assert_eq!(c.observers().count(), 0);
        assert_eq!(c.servers[2].quorum_endpoint(), "10.0.0.3:2888");
        assert_eq!(c.servers[2].election_endpoint(), "10.0.0.3:3888");
    }

    #[test]
    fn server_lines_new_form_and_observer() {
        let c = parse(
            "dataDir=/d\ninitLimit=10\nsyncLimit=5\n\
             server.3=zk3.example.com:2888:3888:OBSERVER;2181\n\
             server.1=zk1.example.com:2888:3888:participant;10.0.0.1:2181\n\
             server.2 = zk2.example.com:2888:3888 ; 0.0.0.0:2181\n\
             server.4=[fe80::1]:2888:3888:participant;[::1]:2181\n\
             server.5=zk5:2888:3888;\n\
             server.6=zk6:2888:3888;;3181\n",
        );
        let ids: Vec<u64> = c.servers.iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6], "sorted by id");
        let s = |id: u64| c.servers.iter().find(|s| s.id == id).unwrap();
        assert_eq!(s(1).host, "zk1.example.com");
        assert_eq!(s(1).client_addr, Some("10.0.0.1:2181".parse().unwrap()));
        assert_eq!(s(2).client_addr, Some("0.0.0.0:2181".parse().unwrap()));
        assert_eq!(s(3).role, PeerType::Observer);
        assert_eq!(s(3).client_addr, Some("0.0.0.0:2181".parse().unwrap()));
        assert_eq!(s(4).host, "fe80::1");
        assert_eq!(s(4).client_addr, Some("[::1]:2181".parse().unwrap()));
        assert_eq!(s(4).quorum_endpoint(), "[fe80::1]:2888");
        assert_eq!(s(5).client_addr, None);
        assert_eq!(s(6).client_addr, None);
        assert_eq!(c.voters().count(), 5);
        assert_eq!(c.observers().map(|s| s.id).collect::<Vec<_>>(), [3]);
        assert_eq!(
            s(3).to_zk_string(),
            "zk3.example.com:2888:3888:observer;0.0.0.0:2181"
        );
        assert_eq!(s(5).to_zk_string(), "zk5:2888:3888:participant");
    }

    #[test]
    fn my_id_selects_role_and_client_addr() {
        let text = "dataDir=/d\ninitLimit=10\nsyncLimit=5\npeerType=participant\n\
             server.1=127.0.0.1:2888:3888;127.0.0.1:2181\n\
             server.2=127.0.0.1:2889:3889;127.0.0.1:2182\n\
             server.3=127.0.0.1:2890:3890:observer;127.0.0.1:2183\n";
        let mut c = parse(text);
        assert_eq!(c.client_addr(), None, "no myid yet");
        c.apply_my_id(2, Path::new("/d/myid")).unwrap();
        assert_eq!(c.my_id, Some(2));
        assert_eq!(c.my_server().map(|s| s.id), Some(2));
        assert_eq!(c.client_addr(), Some("127.0.0.1:2182".parse().unwrap()));
        assert_eq!(c.peer_type, PeerType::Participant);
        assert!(c.warnings.is_empty());

        let mut c = parse(text);
        c.apply_my_id(3, Path::new("/d/myid")).unwrap();
        assert_eq!(c.peer_type, PeerType::Observer);
        assert_eq!(c.warnings.len(), 1, "peerType contradicts server.3");
        assert!(c.warnings[0].starts_with("conf/test.cfg:4: peerType participant"));
    }

    #[test]
    fn client_port_from_static_config_in_quorum_mode() {
        // Old form: no client part, the client address comes from clientPort.
        let mut c = parse(&format!("clientPort=2181\n{QUORUM}"));
        c.apply_my_id(1, Path::new("/d/myid")).unwrap();
        assert_eq!(c.client_addr(), Some("0.0.0.0:2181".parse().unwrap()));
        // Both given and agreeing: fine.
        let mut c = parse(
            "clientPort=2181\ndataDir=/d\ninitLimit=1\nsyncLimit=1\n\
             server.1=a:1:2;2181\nserver.2=b:1:2;2181\n",
        );
        c.apply_my_id(1, Path::new("/d/myid")).unwrap();
        assert_eq!(c.client_addr(), Some("0.0.0.0:2181".parse().unwrap()));
    }

    #[test]
    fn client_port_conflict_with_server_line() {
        let mut c = parse(
            "clientPort=2180\ndataDir=/d\ninitLimit=1\nsyncLimit=1\n\
             server.1=a:1:2;2181\nserver.2=b:1:2;2181\n",
        );
        let e = c
            .apply_my_id(1, Path::new("/d/myid"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("conf/test.cfg:1: "), "{e}");
        assert!(
            e.contains("differs from 0.0.0.0:2181 in server.1 on line 5"),
            "{e}"
        );

        let mut c = parse(
            "clientPort=2181\nclientPortAddress=127.0.0.2\ndataDir=/d\ninitLimit=1\nsyncLimit=1\n\
             server.1=a:1:2;127.0.0.1:2181\nserver.2=b:1:2;2181\n",
        );
        let e = c
            .apply_my_id(1, Path::new("/d/myid"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("127.0.0.2:2181"), "{e}");
    }

    #[test]
    fn my_id_not_among_servers() {
        let mut c = parse(QUORUM);
        let e = c
            .apply_my_id(7, Path::new("/d/myid"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/d/myid: myid 7 is not among the server ids in conf/test.cfg (1, 2, 3)"
        );
    }

    #[test]
    fn extended_types_limit_server_id() {
        let text = "dataDir=/d\ninitLimit=1\nsyncLimit=1\nextendedTypesEnabled=true\n\
             server.255=a:1:2\nserver.2=b:1:2\n";
        let mut c = parse(text);
        let e = c
            .apply_my_id(255, Path::new("/d/myid"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be larger than 254"), "{e}");
        let mut c = parse(text);
        c.apply_my_id(2, Path::new("/d/myid")).unwrap();
    }

    #[test]
    fn large_server_id_warns() {
        let c = parse("dataDir=/d\ninitLimit=1\nsyncLimit=1\nserver.1000=a:1:2\nserver.2=b:1:2\n");
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].starts_with("conf/test.cfg:4: server id 1000"));
    }

    #[test]
    fn single_server_line_means_standalone() {
        let mut c = parse("dataDir=/d\nclientPort=2181\nserver.1=a:2888:3888\n");
        assert!(c.is_standalone());
        assert_eq!(c.servers.len(), 1);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].starts_with("conf/test.cfg:3: only one server"));
        // myid is ignored in standalone mode.
        c.apply_my_id(9, Path::new("/d/myid")).unwrap();
        assert_eq!(c.my_id, None);
        assert_eq!(c.client_addr(), Some("0.0.0.0:2181".parse().unwrap()));
        // With standaloneEnabled=false it is a one-node ensemble.
        let c = parse(
            "dataDir=/d\nstandaloneEnabled=false\ninitLimit=1\nsyncLimit=1\nserver.1=a:2888:3888\n",
        );
        assert!(c.is_quorum());
    }

    #[test]
    fn myid_file_contents() {
        let p = Path::new("/d/myid");
        assert_eq!(parse_myid("3\n", p).unwrap(), 3);
        assert_eq!(parse_myid("  12  \r\nignored\n", p).unwrap(), 12);
        let e = parse_myid("", p).unwrap_err().to_string();
        assert_eq!(
            e,
            "/d/myid: myid file is empty; it must hold this server's id"
        );
        let e = parse_myid("one\n", p).unwrap_err().to_string();
        assert!(
            e.starts_with("/d/myid: myid \"one\" is not a server id"),
            "{e}"
        );
        assert!(parse_myid("-1", p).is_err());
    }

    // ---- validation errors: each names file:line and the reason ----

    #[test]
    fn error_missing_data_dir() {
        assert_eq!(
            parse_err("tickTime=2000\n"),
            "conf/test.cfg: dataDir is not set"
        );
        assert_line_err("dataDir=\n", 1, "dataDir is empty");
        assert_line_err("dataDir=/d\ndataLogDir=\n", 2, "dataLogDir is empty");
    }

    #[test]
    fn error_bad_numbers() {
        assert_line_err(
            "dataDir=/d\n\n\ntickTime=abc\n",
            4,
            "tickTime: \"abc\" is not a number",
        );
        assert_line_err(
            "dataDir=/d\ntickTime=0\n",
            2,
            "tickTime: \"0\" must be a positive number",
        );
        assert_line_err("dataDir=/d\ntickTime=-5\n", 2, "must be a positive number");
        assert_line_err(
            "dataDir=/d\ntickTime=3000000000\n",
            2,
            "out of range for a 32-bit integer",
        );
        assert_line_err(
            "dataDir=/d\nmaxClientCnxns=-1\n",
            2,
            "maxClientCnxns: \"-1\" must be at least 0",
        );
        assert_line_err(
            "dataDir=/d\nmaxClientCnxns=lots\n",
            2,
            "maxClientCnxns: \"lots\" is not a number",
        );
        assert_line_err(
            "dataDir=/d\nminSessionTimeout=-2\n",
            2,
            "minSessionTimeout: \"-2\" must be",
        );
        assert_line_err("dataDir=/d\nmaxSessionTimeout=1.5\n", 2, "is not a number");
        assert_line_err(
            "dataDir=/d\ninitLimit=x\n",
            2,
            "initLimit: \"x\" is not a number",
        );
        assert_line_err(
            "dataDir=/d\nsyncLimit=-1\n",
            2,
            "syncLimit: \"-1\" must be at least 0",
        );
        assert_line_err(
            "dataDir=/d\nsnapCount=many\n",
            2,
            "snapCount: \"many\" is not a number",
        );
        assert_line_err(
            "dataDir=/d\nautopurge.snapRetainCount=x\n",
            2,
            "is not a number",
        );
        assert_line_err(
            "dataDir=/d\nclientPortListenBacklog=x\n",
            2,
            "is not a number",
        );
    }

    #[test]
    fn error_bad_ports() {
        assert_line_err(
            "dataDir=/d\nclientPort=70000\n",
            2,
            "clientPort: port 70000 is out of range (0..=65535)",
        );
        assert_line_err("dataDir=/d\nclientPort=-1\n", 2, "out of range");
        assert_line_err(
            "dataDir=/d\nclientPort=http\n",
            2,
            "clientPort: \"http\" is not a port number",
        );
        assert_line_err(
            "dataDir=/d\nserver.1=a:0:3888\n",
            2,
            "server.1 quorum port: port 0 is out of range (1..=65535)",
        );
        assert_line_err(
            "dataDir=/d\nserver.1=a:2888:99999\n",
            2,
            "server.1 election port: port 99999 is out of range",
        );
        assert_line_err(
            "dataDir=/d\nserver.1=a:2888:3888;65536\n",
            2,
            "server.1 client: port 65536 is out of range",
        );
    }

    #[test]
    fn error_bad_booleans() {
        assert_line_err(
            "dataDir=/d\nextendedTypesEnabled=yes\n",
            2,
            "extendedTypesEnabled: \"yes\" is not a boolean",
        );
        assert_line_err(
            "dataDir=/d\nzookeeper.extendedTypesEnabled=1\n",
            2,
            "zookeeper.extendedTypesEnabled: \"1\" is not a boolean",
        );
        assert_line_err(
            "dataDir=/d\nstandaloneEnabled=\n",
            2,
            "standaloneEnabled: \"\" is not a boolean",
        );
    }

    #[test]
    fn error_bad_addresses_and_types() {
        assert_line_err(
            "dataDir=/d\nclientPort=1\nclientPortAddress=zk.example\n",
            3,
            "clientPortAddress: \"zk.example\" is not an IP address",
        );
        assert_line_err(
            "dataDir=/d\nclientPortAddress=127.0.0.1\n",
            2,
            "clientPortAddress is set but clientPort is not set",
        );
        assert_line_err(
            "dataDir=/d\npeerType=leader\n",
            2,
            "peerType: \"leader\" is not a peer type",
        );
        assert_line_err(
            "dataDir=/d\nelectionAlg=1\n",
            2,
            "electionAlg: \"1\" is not supported",
        );
        assert_line_err(
            "dataDir=/d\nDigestAuthenticationProvider.superDigest=nocolon\n",
            2,
            "has no ':'",
        );
        assert_line_err(
            "dataDir=/d\nsuperDigest=super:not base64!\n",
            2,
            "superDigest: \"super:not base64!\" has a digest that is not base64",
        );
        assert_line_err("dataDir=/d\nsuperDigest=:YWJj\n", 2, "empty user");
        assert_line_err("dataDir=/d\nx=\\u00zz\n", 2, "malformed \\uxxxx escape");
    }

    #[test]
    fn error_unsupported_features() {
        assert_line_err(
            "dataDir=/d\ndynamicConfigFile=/x\n",
            2,
            "dynamicConfigFile is not supported",
        );
        assert_line_err("dataDir=/d\ngroup.1=1:2:3\n", 2, "hierarchical quorums");
        assert_line_err("dataDir=/d\nweight.1=1\n", 2, "hierarchical quorums");
        assert_line_err(
            "dataDir=/d\nserver.1=a:1:2|b:1:2\n",
            2,
            "multiple addresses per server",
        );
    }

    #[test]
    fn error_malformed_server_lines() {
        let fmt = "is not of the form host:quorumPort:electionPort";
        assert_line_err("dataDir=/d\nserver.1=a:2888\n", 2, fmt);
        assert_line_err("dataDir=/d\nserver.1=a:1:2:observer:x\n", 2, fmt);
        assert_line_err("dataDir=/d\nserver.1=a:1:2;b:c:3\n", 2, fmt);
        assert_line_err("dataDir=/d\nserver.1=a:1:2;1;2;3\n", 2, fmt);
        assert_line_err("dataDir=/d\nserver.1=:1:2\n", 2, "has an empty host");
        assert_line_err(
            "dataDir=/d\nserver.1=a:x:2\n",
            2,
            "server.1 quorum port: \"x\" is not a port number",
        );
        assert_line_err(
            "dataDir=/d\nserver.1=a:1:2:voter\n",
            2,
            "server.1: unknown peer type \"voter\"",
        );
        assert_line_err(
            "dataDir=/d\nserver.1=a:2888:2888\n",
            2,
            "quorum port and election port must differ",
        );
        assert_line_err(
            "dataDir=/d\nserver.x=a:1:2\n",
            2,
            "server.x: \"x\" is not a server id",
        );
        assert_line_err("dataDir=/d\nserver.-1=a:1:2\n", 2, "is not a server id");
        assert_line_err(
            "dataDir=/d\nserver.1=[::1:2888:3888\n",
            2,
            "has no matching ']'",
        );
        assert_line_err(
            "dataDir=/d\nserver.1=a:1:2;host.name:2181\n",
            2,
            "server.1 client: \"host.name\" is not an IP address",
        );
    }

    #[test]
    fn error_duplicate_server_ids() {
        assert_line_err(
            "dataDir=/d\nserver.1=a:1:2\nserver.2=b:1:2\nserver.01=c:1:2\n",
            4,
            "server.01: server id 1 is already defined on line 2",
        );
    }

    #[test]
    fn error_duplicate_endpoints() {
        assert_line_err(
            "dataDir=/d\nserver.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2888:3889\n",
            3,
            "server.2: quorum port 127.0.0.1:2888 is already used as the quorum port of server.1",
        );
        assert_line_err(
            "dataDir=/d\nserver.1=h:2888:3888\nserver.2=H:3888:3999\n",
            3,
            "server.2: quorum port h:3888 is already used as the election port of server.1",
        );
        // A wildcard client address counts as the server's own host.
        assert_line_err(
            "dataDir=/d\nserver.1=10.0.0.1:2888:3888;2181\nserver.2=10.0.0.2:2888:3888;10.0.0.1:2181\n",
            3,
            "server.2: client port 10.0.0.1:2181 is already used as the client port of server.1",
        );
        // Same server: client port on its own quorum port.
        assert_line_err(
            "dataDir=/d\nserver.1=10.0.0.1:2888:3888;2888\n",
            2,
            "client port 10.0.0.1:2888 is already used as the quorum port of server.1",
        );
        // Different hosts may use the same ports.
        parse(QUORUM);
    }

    #[test]
    fn error_no_voters() {
        assert_line_err(
            "dataDir=/d\n\nserver.1=a:1:2:observer\nserver.2=b:1:2:observer\n",
            3,
            "observers without participants",
        );
        assert_line_err(
            "dataDir=/d\nserver.1=a:1:2\nserver.2=b:1:2:observer\n",
            2,
            "observers need a quorum",
        );
        assert_eq!(
            parse_err("dataDir=/d\nstandaloneEnabled=false\n"),
            "conf/test.cfg: standaloneEnabled=false needs at least one participant server.N line"
        );
    }

    #[test]
    fn error_limits_required_in_quorum_mode() {
        let servers = "server.1=a:1:2\nserver.2=b:1:2\n";
        assert_eq!(
            parse_err(&format!("dataDir=/d\nsyncLimit=5\n{servers}")),
            "conf/test.cfg: initLimit is not set (required with server.N lines)"
        );
        assert_eq!(
            parse_err(&format!("dataDir=/d\ninitLimit=5\n{servers}")),
            "conf/test.cfg: syncLimit is not set (required with server.N lines)"
        );
    }

    #[test]
    fn error_min_session_timeout_above_max() {
        assert_line_err(
            "dataDir=/d\nminSessionTimeout=5000\nmaxSessionTimeout=4000\n",
            3,
            "minSessionTimeout (5000 ms) must not be larger than maxSessionTimeout (4000 ms)",
        );
        // Against the default max (20 × tickTime).
        assert_line_err(
            "dataDir=/d\ntickTime=100\nminSessionTimeout=5000\n",
            3,
            "must not be larger than maxSessionTimeout (2000 ms)",
        );
    }

    #[test]
    fn conf_lines_standalone() {
        let c = parse("dataDir=/var/zk\ntickTime=2000\nclientPort=2181\n");
        let lines = c.conf_lines();
        let keys: Vec<&str> = lines.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "clientPort",
                "secureClientPort",
                "dataDir",
                "dataDirSize",
                "dataLogDir",
                "dataLogSize",
                "tickTime",
                "maxClientCnxns",
                "minSessionTimeout",
                "maxSessionTimeout",
                "clientPortListenBacklog",
                "serverId"
            ]
        );
        let get = |k: &str| {
            lines
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("clientPort"), Some("2181"));
        assert_eq!(get("secureClientPort"), Some("-1"));
        assert_eq!(get("dataDir"), Some("/var/zk/version-2"));
        assert_eq!(get("dataLogDir"), Some("/var/zk/version-2"));
        assert_eq!(get("minSessionTimeout"), Some("4000"));
        assert_eq!(get("maxSessionTimeout"), Some("40000"));
        assert_eq!(get("clientPortListenBacklog"), Some("-1"));
        assert_eq!(get("serverId"), Some("0"));
        // A relative dataDir is shown absolute.
        let c = parse("dataDir=data\n");
        let lines = c.conf_lines();
        let dir = &lines[2].1;
        assert!(
            Path::new(dir).is_absolute() && dir.ends_with("data/version-2"),
            "{dir}"
        );
        assert_eq!(lines[0].1, "-1", "no client port");
    }

    #[test]
    fn conf_lines_quorum() {
        let mut c = parse(include_str!("../conf/ensemble/zoo2.cfg"));
        c.apply_my_id(2, Path::new("data/ensemble/2/myid")).unwrap();
        let lines = c.conf_lines();
        let tail: Vec<(&str, &str)> = lines[11..]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            tail,
            [
                ("serverId", "2"),
                ("initLimit", "10"),
                ("syncLimit", "5"),
                ("electionAlg", "3"),
                ("electionPort", "3889"),
                ("quorumPort", "2889"),
                ("peerType", "0"),
            ]
        );
        assert_eq!(lines[0], ("clientPort".to_string(), "2182".to_string()));
        assert_eq!(
            c.membership_text().as_deref(),
            Some(
                "server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\n\
                 server.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182\n\
                 server.3=127.0.0.1:2890:3890:participant;127.0.0.1:2183\n\
                 version=0"
            )
        );
    }

    #[test]
    fn shipped_zoo_cfg_parses() {
        let c = match Config::parse(include_str!("../conf/zoo.cfg"), "conf/zoo.cfg") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert!(c.is_standalone());
        assert_eq!(c.client_addr(), Some("127.0.0.1:2181".parse().unwrap()));
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.tick_time_ms, 2000);
        assert_eq!((c.init_limit_ticks, c.sync_limit_ticks), (10, 5));
        assert_eq!(c.max_client_cnxns, 60);
        assert_eq!(c.four_letter_words.len(), KNOWN_FOUR_LETTER_WORDS.len());
        assert!(c.extended_types_enabled);
        assert_eq!(c.autopurge_purge_interval, Duration::ZERO);
        assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn shipped_ensemble_configs_parse() {
        let files = [
            include_str!("../conf/ensemble/zoo1.cfg"),
            include_str!("../conf/ensemble/zoo2.cfg"),
            include_str!("../conf/ensemble/zoo3.cfg"),
        ];
        for (i, text) in files.iter().enumerate() {
            let id = i as u64 + 1;
            let name = format!("conf/ensemble/zoo{id}.cfg");
            let mut c = match Config::parse(text, &name) {
                Ok(c) => c,
                Err(e) => panic!("{e}"),
            };
            assert!(c.is_quorum(), "{name}");
            assert_eq!(c.data_dir, PathBuf::from(format!("data/ensemble/{id}")));
            assert_eq!(c.voters().count(), 3);
            assert!(c.unknown_keys.is_empty() && c.warnings.is_empty(), "{name}");
            let myid = c.myid_path();
            assert_eq!(myid, PathBuf::from(format!("data/ensemble/{id}/myid")));
            c.apply_my_id(id, &myid).unwrap();
            let me = c.my_server().unwrap();
            assert_eq!(me.quorum_port, 2887 + id as u16);
            assert_eq!(me.election_port, 3887 + id as u16);
            assert_eq!(
                c.client_addr(),
                Some(SocketAddr::from(([127, 0, 0, 1], 2180 + id as u16)))
            );
        }
    }

    // ---- load(): the file system parts ----

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn load_standalone_ignores_myid() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("myid"), "garbage").unwrap();
        let cfg = write(
            tmp.path(),
            "zoo.cfg",
            &format!("dataDir={}\nclientPort=2181\n", data.display()),
        );
        let c = Config::load(&cfg).unwrap();
        assert!(c.is_standalone());
        assert_eq!(c.my_id, None);
        assert_eq!(c.source_name, cfg.display().to_string());
    }

    #[test]
    fn load_quorum_reads_myid() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let text = format!(
            "dataDir={}\ninitLimit=5\nsyncLimit=2\n\
             server.1=127.0.0.1:2888:3888;127.0.0.1:2181\n\
             server.2=127.0.0.1:2889:3889;127.0.0.1:2182\n\
             server.3=127.0.0.1:2890:3890;127.0.0.1:2183\n",
            data.display()
        );
        let cfg = write(tmp.path(), "zoo.cfg", &text);
        let myid = data.join("myid");

        let e = Config::load(&cfg).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: myid file is missing", myid.display())),
            "{e}"
        );
        assert!(e.contains("(one of 1, 2, 3)"), "{e}");

        std::fs::write(&myid, "x\n").unwrap();
        let e = Config::load(&cfg).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}: myid \"x\" is not a server id",
                myid.display()
            )),
            "{e}"
        );

        std::fs::write(&myid, "4\n").unwrap();
        let e = Config::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("myid 4 is not among the server ids"), "{e}");

        std::fs::write(&myid, "3\n").unwrap();
        let c = Config::load(&cfg).unwrap();
        assert_eq!(c.my_id, Some(3));
        assert_eq!(c.client_addr(), Some("127.0.0.1:2183".parse().unwrap()));
    }

    #[test]
    fn load_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope.cfg");
        let e = Config::load(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: cannot read config file", missing.display())),
            "{e}"
        );

        let cfg = write(tmp.path(), "zoo.cfg", "# c\ndataDir=/d\ntickTime=abc\n");
        let e = Config::load(&cfg).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("{}:3: tickTime: \"abc\" is not a number", cfg.display())
        );
    }

    #[test]
    fn load_accepts_latin1() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("zoo.cfg");
        std::fs::write(&p, b"dataDir=/d\nname=caf\xe9\n").unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.entries[1].value, "café");
    }
}
