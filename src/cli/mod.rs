//! `corral cli`: a `zkCli.sh`-style command line client, one command per invocation.
//!
//! ```text
//! corral cli [-server host:port[,host:port...]] COMMAND ARGS...
//! ```
//!
//! Commands, options and output follow Apache ZooKeeper 3.8's `zkCli.sh` so scripts written
//! against it keep working: results go to stdout, errors to stderr in zkCli's wording
//! (`Node does not exist: /x`, ...), and the exit code is 0 on success and 1 on any error,
//! including failing to connect. Built on the `zookeeper-client` crate.

pub mod format;

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use clap::Args;
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError};

/// Default connect string, as zkCli.
pub const DEFAULT_SERVER: &str = "127.0.0.1:2181";

/// How long to try to establish a session before giving up.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// How long to wait for the server to acknowledge closing the session.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

/// Arguments of `corral cli`; parsed by hand because zkCli's options are single-dash words
/// (`-server`) and each command has its own.
#[derive(Args, Debug)]
pub struct CliArgs {
    /// `[-server host:port[,host:port...]] COMMAND ARGS...`
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// Everything that can make a command fail.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad command line (unknown command or option, missing argument...).
    #[error("{0}")]
    Usage(String),
    /// Could not establish a session.
    #[error("Unable to connect to {servers}: {reason}")]
    Connect { servers: String, reason: String },
    #[error("Node does not exist: {0}")]
    NoNode(String),
    #[error("Node already exists: {0}")]
    NodeExists(String),
    #[error("version No is not valid : {0}")]
    BadVersion(String),
    #[error("Node not empty: {0}")]
    NotEmpty(String),
    #[error("Insufficient permission : {0}")]
    NoAuth(String),
    #[error("Ephemerals cannot have children: {0}")]
    NoChildrenForEphemerals(String),
    /// Any other server or client error.
    #[error("{op} {path} failed: {source}")]
    Other {
        op: &'static str,
        path: String,
        #[source]
        source: ZkError,
    },
    /// Writing the output failed (e.g. a closed pipe).
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    fn zk(op: &'static str, path: &str, e: ZkError) -> Self {
        let path = path.to_string();
        match e {
            ZkError::NoNode => CliError::NoNode(path),
            ZkError::NodeExists => CliError::NodeExists(path),
            ZkError::BadVersion => CliError::BadVersion(path),
            ZkError::NotEmpty => CliError::NotEmpty(path),
            ZkError::NoAuth => CliError::NoAuth(path),
            ZkError::NoChildrenForEphemerals => CliError::NoChildrenForEphemerals(path),
            source => CliError::Other { op, path, source },
        }
    }
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// One parsed command with its options.
#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    Ls {
        stat: bool,
        recursive: bool,
        path: String,
    },
    Create {
        seq: bool,
        eph: bool,
        container: bool,
        ttl: Option<i64>,
        path: String,
        data: Option<String>,
    },
    Get {
        stat: bool,
        path: String,
    },
    Set {
        stat: bool,
        version: Option<i32>,
        path: String,
        data: String,
    },
    Stat {
        path: String,
    },
    Delete {
        version: Option<i32>,
        path: String,
    },
    DeleteAll {
        path: String,
    },
    GetAcl {
        stat: bool,
        path: String,
    },
    Sync {
        path: String,
    },
    WhoAmI,
}

const COMMANDS: &str = "ZooKeeper -server host:port cmd args\n\
\tcreate [-s] [-e] [-c] [-t ttl] path [data]\n\
\tdelete [-v version] path\n\
\tdeleteall path\n\
\tget [-s] path\n\
\tgetAcl [-s] path\n\
\tls [-s] [-R] path\n\
\tset [-s] [-v version] path data\n\
\tstat path\n\
\tsync path\n\
\twhoami";

/// Splits a command's words into flags (with their values) and positionals.
/// `flags` lists the boolean flags; `valued` those taking a value.
struct Parsed {
    flags: Vec<char>,
    values: Vec<(char, String)>,
    pos: Vec<String>,
}

fn split_opts(
    cmd: &str,
    words: &[String],
    flags: &[char],
    valued: &[char],
) -> Result<Parsed, CliError> {
    let mut p = Parsed {
        flags: vec![],
        values: vec![],
        pos: vec![],
    };
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let mut chars = w.chars();
        match (chars.next(), chars.next(), chars.next()) {
            (Some('-'), Some(c), None) if flags.contains(&c) => p.flags.push(c),
            (Some('-'), Some(c), None) if valued.contains(&c) => {
                let v = it
                    .next()
                    .ok_or_else(|| usage(format!("{cmd}: option -{c} needs a value")))?;
                p.values.push((c, v.clone()));
            }
            (Some('-'), Some(c), _) if !c.is_ascii_digit() && p.pos.is_empty() => {
                return Err(usage(format!("{cmd}: unknown option {w}")));
            }
            _ => p.pos.push(w.clone()),
        }
    }
    Ok(p)
}

impl Parsed {
    fn has(&self, c: char) -> bool {
        self.flags.contains(&c)
    }
    fn value(&self, c: char) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| *k == c)
            .map(|(_, v)| v.as_str())
    }
    fn version(&self) -> Result<Option<i32>, CliError> {
        self.value('v')
            .map(|v| {
                v.parse::<i32>()
                    .map_err(|_| usage(format!("version {v:?} is not a number")))
            })
            .transpose()
    }
    /// Exactly `min..=max` positionals.
    fn positionals(&self, cmd: &str, min: usize, max: usize, syntax: &str) -> Result<(), CliError> {
        if self.pos.len() < min || self.pos.len() > max {
            return Err(usage(format!(
                "{cmd}: wrong number of arguments\nusage: {syntax}"
            )));
        }
        Ok(())
    }
}

fn parse_cmd(name: &str, words: &[String]) -> Result<Cmd, CliError> {
    let cmd = match name {
        "ls" => {
            let p = split_opts(name, words, &['s', 'R', 'w'], &[])?;
            p.positionals(name, 1, 1, "ls [-s] [-R] path")?;
            Cmd::Ls {
                stat: p.has('s'),
                recursive: p.has('R'),
                path: p.pos[0].clone(),
            }
        }
        "create" => {
            let p = split_opts(name, words, &['s', 'e', 'c'], &['t'])?;
            p.positionals(name, 1, 2, "create [-s] [-e] [-c] [-t ttl] path [data]")?;
            let ttl = p
                .value('t')
                .map(|t| {
                    t.parse::<i64>()
                        .map_err(|_| usage(format!("ttl {t:?} is not a number")))
                })
                .transpose()?;
            Cmd::Create {
                seq: p.has('s'),
                eph: p.has('e'),
                container: p.has('c'),
                ttl,
                path: p.pos[0].clone(),
                data: p.pos.get(1).cloned(),
            }
        }
        "get" => {
            let p = split_opts(name, words, &['s', 'w'], &[])?;
            p.positionals(name, 1, 1, "get [-s] path")?;
            Cmd::Get {
                stat: p.has('s'),
                path: p.pos[0].clone(),
            }
        }
        "set" => {
            let p = split_opts(name, words, &['s'], &['v'])?;
            p.positionals(name, 2, 2, "set [-s] [-v version] path data")?;
            Cmd::Set {
                stat: p.has('s'),
                version: p.version()?,
                path: p.pos[0].clone(),
                data: p.pos[1].clone(),
            }
        }
        "stat" => {
            let p = split_opts(name, words, &['w'], &[])?;
            p.positionals(name, 1, 1, "stat path")?;
            Cmd::Stat {
                path: p.pos[0].clone(),
            }
        }
        "delete" => {
            let p = split_opts(name, words, &[], &['v'])?;
            p.positionals(name, 1, 1, "delete [-v version] path")?;
            Cmd::Delete {
                version: p.version()?,
                path: p.pos[0].clone(),
            }
        }
        "deleteall" | "rmr" => {
            let p = split_opts(name, words, &[], &[])?;
            p.positionals(name, 1, 1, "deleteall path")?;
            Cmd::DeleteAll {
                path: p.pos[0].clone(),
            }
        }
        "getAcl" => {
            let p = split_opts(name, words, &['s'], &[])?;
            p.positionals(name, 1, 1, "getAcl [-s] path")?;
            Cmd::GetAcl {
                stat: p.has('s'),
                path: p.pos[0].clone(),
            }
        }
        "sync" => {
            let p = split_opts(name, words, &[], &[])?;
            p.positionals(name, 1, 1, "sync path")?;
            Cmd::Sync {
                path: p.pos[0].clone(),
            }
        }
        "whoami" => {
            let p = split_opts(name, words, &[], &[])?;
            p.positionals(name, 0, 0, "whoami")?;
            Cmd::WhoAmI
        }
        other => return Err(usage(format!("Command not found: {other}\n{COMMANDS}"))),
    };
    let path = match &cmd {
        Cmd::Ls { path, .. }
        | Cmd::Create { path, .. }
        | Cmd::Get { path, .. }
        | Cmd::Set { path, .. }
        | Cmd::Stat { path }
        | Cmd::Delete { path, .. }
        | Cmd::DeleteAll { path }
        | Cmd::GetAcl { path, .. }
        | Cmd::Sync { path } => Some(path),
        Cmd::WhoAmI => None,
    };
    if path.is_some_and(|p| !p.starts_with('/')) {
        return Err(usage("Path must start with / character"));
    }
    Ok(cmd)
}

/// Splits `[-server hosts] COMMAND ARGS...` into the connect string and the command.
fn parse_top(args: &[String]) -> Result<(String, Cmd), CliError> {
    let mut server = DEFAULT_SERVER.to_string();
    let mut rest = args;
    while let Some(first) = rest.first() {
        match first.as_str() {
            "-server" => {
                server = rest
                    .get(1)
                    .ok_or_else(|| usage("-server needs host:port[,host:port...]"))?
                    .clone();
                rest = &rest[2..];
            }
            _ => break,
        }
    }
    let (name, words) = rest.split_first().ok_or_else(|| usage(COMMANDS))?;
    Ok((server, parse_cmd(name, words)?))
}

/// Runs one command and returns the process exit code, having printed the result to stdout
/// or the error to stderr.
pub fn main(args: CliArgs) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Runs one command, printing its result to stdout.
pub fn run(args: CliArgs) -> Result<(), CliError> {
    let (server, cmd) = parse_top(&args.args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The client library logs every session at info level; zkCli's output must stay clean,
    // so silence tracing for this thread (the runtime is single-threaded, so all its tasks).
    let quiet = tracing::subscriber::NoSubscriber::default();
    let out = tracing::subscriber::with_default(quiet, move || {
        let out = rt.block_on(async move {
            let client = connect(&server).await?;
            let out = execute(&client, cmd).await;
            close(client).await;
            out
        });
        drop(rt);
        out
    })?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

async fn connect(servers: &str) -> Result<Client, CliError> {
    let fail = |reason: String| CliError::Connect {
        servers: servers.to_string(),
        reason,
    };
    let connecting = Client::connector()
        .with_session_timeout(Duration::from_secs(30))
        .with_connection_timeout(Duration::from_secs(5))
        .with_fail_eagerly()
        .connect(servers);
    match tokio::time::timeout(CONNECT_DEADLINE, connecting).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail(format!(
            "no session within {}s",
            CONNECT_DEADLINE.as_secs()
        ))),
    }
}

/// Closes the session (so ephemerals created by `create -e` go away, as with zkCli's one-shot
/// mode), waiting briefly for the server's acknowledgement.
async fn close(client: Client) {
    let mut state = client.state_watcher();
    drop(client);
    let _ = tokio::time::timeout(CLOSE_DEADLINE, async move {
        while !state.changed().await.is_terminated() {}
    })
    .await;
}

/// Runs `cmd` and returns what it prints.
async fn execute(client: &Client, cmd: Cmd) -> Result<String, CliError> {
    let mut out = String::new();
    match cmd {
        Cmd::Ls {
            stat,
            recursive,
            path,
        } => {
            if recursive {
                for p in subtree_bfs(client, &path).await? {
                    out += &p;
                    out.push('\n');
                }
            } else {
                let (mut children, st) = client
                    .get_children(&path)
                    .await
                    .map_err(|e| CliError::zk("ls", &path, e))?;
                children.sort();
                out += &format!("[{}]\n", children.join(", "));
                if stat {
                    out += &format::stat_text(&st);
                }
            }
        }
        Cmd::Create {
            seq,
            eph,
            container,
            ttl,
            path,
            data,
        } => {
            if container && (seq || eph) {
                return Err(usage("-c cannot be combined with -s or -e"));
            }
            if ttl.is_some() && eph {
                return Err(usage("TTLs cannot be used with Ephemeral znodes"));
            }
            if ttl.is_some() && container {
                return Err(usage("TTLs cannot be used with Container znodes"));
            }
            let mode = match (container, seq, eph) {
                (true, _, _) => CreateMode::Container,
                (false, true, true) => CreateMode::EphemeralSequential,
                (false, true, false) => CreateMode::PersistentSequential,
                (false, false, true) => CreateMode::Ephemeral,
                (false, false, false) => CreateMode::Persistent,
            };
            let mut options = mode.with_acls(Acls::anyone_all());
            if let Some(ms) = ttl {
                let ms = u64::try_from(ms)
                    .ok()
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| usage(format!("ttl must be positive: {ms}")))?;
                options = options.with_ttl(Duration::from_millis(ms));
            }
            let data = data.unwrap_or_default();
            let (_, sequence) = client
                .create(&path, data.as_bytes(), &options)
                .await
                .map_err(|e| CliError::zk("create", &path, e))?;
            if seq {
                out += &format!("Created {path}{sequence}\n");
            } else {
                out += &format!("Created {path}\n");
            }
        }
        Cmd::Get { stat, path } => {
            let (data, st) = client
                .get_data(&path)
                .await
                .map_err(|e| CliError::zk("get", &path, e))?;
            if data.is_empty() {
                out += "null\n";
            } else {
                out += &String::from_utf8_lossy(&data);
                out.push('\n');
            }
            if stat {
                out += &format::stat_text(&st);
            }
        }
        Cmd::Set {
            stat,
            version,
            path,
            data,
        } => {
            let st = client
                .set_data(&path, data.as_bytes(), version)
                .await
                .map_err(|e| CliError::zk("set", &path, e))?;
            if stat {
                out += &format::stat_text(&st);
            }
        }
        Cmd::Stat { path } => {
            let st = client
                .check_stat(&path)
                .await
                .map_err(|e| CliError::zk("stat", &path, e))?
                .ok_or_else(|| CliError::NoNode(path.clone()))?;
            out += &format::stat_text(&st);
        }
        Cmd::Delete { version, path } => {
            client
                .delete(&path, version)
                .await
                .map_err(|e| CliError::zk("delete", &path, e))?;
        }
        Cmd::DeleteAll { path } => {
            let nodes = subtree_bfs(client, &path).await?;
            // Deepest first: BFS order reversed deletes every child before its parent.
            for node in nodes.iter().rev() {
                if node == "/" || node == "/zookeeper" || node.starts_with("/zookeeper/") {
                    continue;
                }
                match client.delete(node, None).await {
                    Ok(()) | Err(ZkError::NoNode) => {}
                    Err(e) => return Err(CliError::zk("deleteall", node, e)),
                }
            }
        }
        Cmd::GetAcl { stat, path } => {
            let (acls, st) = client
                .get_acl(&path)
                .await
                .map_err(|e| CliError::zk("getAcl", &path, e))?;
            for acl in &acls {
                out += &format::acl_text(acl);
            }
            if stat {
                out += &format::stat_text(&st);
            }
        }
        Cmd::Sync { path } => {
            client
                .sync(&path)
                .await
                .map_err(|e| CliError::zk("sync", &path, e))?;
            out += "Sync is OK\n";
        }
        Cmd::WhoAmI => {
            let users = client
                .list_auth_users()
                .await
                .map_err(|e| CliError::zk("whoami", "", e))?;
            out += "Auth scheme: User\n";
            for u in &users {
                out += &format!("{}: {}\n", u.scheme(), u.user());
            }
        }
    }
    Ok(out)
}

/// The subtree at `root` in breadth-first order, `root` first (zkCli's `ls -R` order).
async fn subtree_bfs(client: &Client, root: &str) -> Result<Vec<String>, CliError> {
    let mut queue = VecDeque::from([root.to_string()]);
    let mut all = Vec::new();
    while let Some(node) = queue.pop_front() {
        let mut children = match client.list_children(&node).await {
            Ok(c) => c,
            // Vanished while we walked: only an error for the root itself.
            Err(ZkError::NoNode) if node != root => continue,
            Err(e) => return Err(CliError::zk("ls", &node, e)),
        };
        children.sort();
        for c in children {
            let child = if node == "/" {
                format!("/{c}")
            } else {
                format!("{node}/{c}")
            };
            queue.push_back(child);
        }
        all.push(node);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_server_and_options() {
        let (server, cmd) = parse_top(&words("-server h:1,h:2 create -s -e /a x")).unwrap();
        assert_eq!(server, "h:1,h:2");
        assert_eq!(
            cmd,
            Cmd::Create {
                seq: true,
                eph: true,
                container: false,
                ttl: None,
                path: "/a".into(),
                data: Some("x".into())
            }
        );
        let (server, cmd) = parse_top(&words("set -v 3 /a b")).unwrap();
        assert_eq!(server, DEFAULT_SERVER);
        assert_eq!(
            cmd,
            Cmd::Set {
                stat: false,
                version: Some(3),
                path: "/a".into(),
                data: "b".into()
            }
        );
    }

    #[test]
    fn rejects_bad_usage() {
        assert!(parse_top(&words("frob /a")).is_err());
        assert!(parse_top(&words("ls")).is_err());
        assert!(parse_top(&words("ls -x /a")).is_err());
        assert!(parse_top(&words("set -v nope /a b")).is_err());
        assert!(parse_top(&[]).is_err());
    }
}
