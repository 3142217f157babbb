//! Coordination recipes as long-running commands, in the manner of etcdctl's `lock` and
//! `elect`, built from ZooKeeper's published recipes:
//!
//! * `lock PATH [--] COMMAND...`: the lock recipe. An ephemeral sequential child
//!   `PATH/lock-N`; whoever has the lowest number holds the lock, everyone else watches only
//!   the child just before theirs (no herd effect). COMMAND runs while the lock is held; the
//!   exit status is its. Without COMMAND, prints the lock node and holds until interrupted.
//! * `elect PATH NAME`: leader election, the same queue with `PATH/n_N` children holding NAME;
//!   the lowest is the leader. Prints `elected: NAME` on winning, keeps leadership until
//!   SIGINT/SIGTERM (then withdraws and exits 0), and campaigns again if it loses its session.
//! * `watch PATH [-R]`: a persistent (recursive) watch; one line per event, `TYPE PATH` plus
//!   the node's current data for creations and data changes.
//! * `register PATH NAME [DATA]`: keeps the ephemeral `PATH/NAME` alive for service
//!   discovery, re-creating it if it is deleted or the session is lost.
//!
//! A killed process's ephemerals go when its session expires (the `-timeout` it asked for), so
//! locks and leadership pass on after that; an interrupted one closes its session, which
//! releases them at once. Status lines that are not results (`watching /x`) go to stderr.

use std::convert::Infallible;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use zookeeper_client::{
    Acls, AddWatchMode, Client, CreateMode, CreateOptions, Error as ZkError, EventType,
    SessionState,
};

use super::format;
use super::shell::{self, child_path, ConnectOptions};
use super::CliError;

/// Pause between attempts to open a new session after losing one.
const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// A parsed recipe command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipe {
    Lock {
        path: String,
        command: Vec<String>,
    },
    Elect {
        path: String,
        name: String,
    },
    Watch {
        path: String,
        recursive: bool,
    },
    Register {
        path: String,
        name: String,
        data: String,
    },
}

fn usage(msg: &str) -> CliError {
    CliError::Usage(format!("usage: {msg}"))
}

fn check_path(path: &str) -> Result<String, CliError> {
    if !path.starts_with('/') {
        return Err(CliError::Usage("Path must start with / character".into()));
    }
    Ok(path.to_string())
}

/// `Some` if `name` is a recipe.
pub fn parse(name: &str, words: &[String]) -> Result<Option<Recipe>, CliError> {
    let recipe = match name {
        "lock" => {
            let (path, rest) = words
                .split_first()
                .ok_or_else(|| usage("lock path [--] [command args...]"))?;
            let rest = match rest.first() {
                Some(d) if d == "--" => &rest[1..],
                _ => rest,
            };
            Recipe::Lock {
                path: check_path(path)?,
                command: rest.to_vec(),
            }
        }
        "elect" => match words {
            [path, name] => Recipe::Elect {
                path: check_path(path)?,
                name: name.clone(),
            },
            _ => return Err(usage("elect path name")),
        },
        "watch" => {
            let recursive = words.iter().any(|w| w == "-R");
            match words.iter().filter(|w| *w != "-R").collect::<Vec<_>>()[..] {
                [path] => Recipe::Watch {
                    path: check_path(path)?,
                    recursive,
                },
                _ => return Err(usage("watch path [-R]")),
            }
        }
        "register" => match words {
            [path, name] | [path, name, _] => {
                if name.is_empty() || name.contains('/') {
                    return Err(usage("register path name [data] (name without '/')"));
                }
                Recipe::Register {
                    path: check_path(path)?,
                    name: name.clone(),
                    data: words.get(2).cloned().unwrap_or_default(),
                }
            }
            _ => return Err(usage("register path name [data]")),
        },
        _ => return Ok(None),
    };
    Ok(Some(recipe))
}

/// Runs a recipe; the process exit code.
pub async fn run(opts: ConnectOptions, recipe: Recipe) -> Result<i32, CliError> {
    let mut signals = Signals::new()?;
    match recipe {
        Recipe::Lock { path, command } => lock(&opts, &path, &command, &mut signals).await,
        Recipe::Elect { path, name } => elect(&opts, &path, &name, &mut signals).await,
        Recipe::Watch { path, recursive } => watch(&opts, &path, recursive, &mut signals).await,
        Recipe::Register { path, name, data } => {
            register(&opts, &path, &name, &data, &mut signals).await
        }
    }
}

/// SIGINT and SIGTERM.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn new() -> Result<Self, CliError> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// The next signal's number.
    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
        }
    }
}

fn ephemeral(mode: CreateMode) -> CreateOptions<'static> {
    mode.with_acls(Acls::anyone_all())
}

fn lost(state: SessionState) -> CliError {
    CliError::Lost(format!("session {}", format::keeper_state(state)))
}

/// Waits until the session is connected again after a connection loss.
async fn wait_connected(client: &Client) -> Result<(), CliError> {
    let mut states = client.state_watcher();
    loop {
        match states.peek_state() {
            SessionState::SyncConnected | SessionState::ConnectedReadOnly => return Ok(()),
            s if s.is_terminated() => return Err(lost(s)),
            _ => {
                states.changed().await;
            }
        }
    }
}

/// Maps an error, turning a lost session into [`CliError::Lost`] (recipes start over then).
fn recipe_error(path: &str, e: ZkError) -> CliError {
    match e {
        ZkError::SessionExpired => lost(SessionState::Expired),
        ZkError::ClientClosed => lost(SessionState::Closed),
        e => CliError::zk(path, e),
    }
}

/// A new session, retrying until one opens (or a signal arrives: `None`).
async fn reconnect(opts: &ConnectOptions, signals: &mut Signals) -> Option<Client> {
    loop {
        match shell::connect(opts).await {
            Ok(c) => return Some(c),
            Err(e) => eprintln!("{e}; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_BACKOFF) => {}
            _ = signals.recv() => return None,
        }
    }
}

/// Creates `path` and its missing ancestors as persistent nodes.
async fn ensure_path(client: &Client, path: &str) -> Result<(), CliError> {
    let mut prefix = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        loop {
            match client
                .create(&prefix, b"", &ephemeral(CreateMode::Persistent))
                .await
            {
                Ok(_) | Err(ZkError::NodeExists) => break,
                Err(ZkError::ConnectionLoss) => wait_connected(client).await?,
                Err(e) => return Err(recipe_error(&prefix, e)),
            }
        }
    }
    Ok(())
}

/// Lists `dir`'s children, retrying over connection losses.
async fn children(client: &Client, dir: &str) -> Result<Vec<String>, CliError> {
    loop {
        match client.list_children(dir).await {
            Ok(c) => return Ok(c),
            Err(ZkError::ConnectionLoss) => wait_connected(client).await?,
            Err(e) => return Err(recipe_error(dir, e)),
        }
    }
}

/// The sequence number ZooKeeper appended to a sequential node's name.
fn sequence_of(name: &str) -> Option<u64> {
    let digits = name.len().checked_sub(10).map(|i| &name[i..])?;
    digits.parse().ok()
}

/// `prefix` children of a queue, in sequence order.
fn queue_order(mut children: Vec<String>, prefix: &str) -> Vec<String> {
    children.retain(|c| c.starts_with(prefix) && sequence_of(c).is_some());
    children.sort_by_key(|c| sequence_of(c));
    children
}

/// Joins the queue under `dir`: an ephemeral sequential `dir/prefixN` holding `data`.
/// Returns the child's name. A create whose reply was lost with the connection is found again
/// by its owner (our session), so it is never made twice.
async fn enqueue(
    client: &Client,
    dir: &str,
    prefix: &str,
    data: &[u8],
) -> Result<String, CliError> {
    let base = child_path(dir, prefix);
    let me = client.session_id().0;
    loop {
        match client
            .create(&base, data, &ephemeral(CreateMode::EphemeralSequential))
            .await
        {
            Ok((_, seq)) => return Ok(format!("{prefix}{seq}")),
            Err(ZkError::ConnectionLoss) => {
                wait_connected(client).await?;
                for c in queue_order(children(client, dir).await?, prefix) {
                    if let Ok(Some(st)) = client.check_stat(&child_path(dir, &c)).await {
                        if st.ephemeral_owner == me {
                            return Ok(c);
                        }
                    }
                }
            }
            Err(e) => return Err(recipe_error(&base, e)),
        }
    }
}

/// Waits until `own` is first in the `prefix` queue under `dir`, watching only its
/// predecessor each time round.
async fn wait_first(client: &Client, dir: &str, prefix: &str, own: &str) -> Result<(), CliError> {
    loop {
        let queue = queue_order(children(client, dir).await?, prefix);
        let pos = queue
            .iter()
            .position(|c| c == own)
            .ok_or_else(|| CliError::Lost(format!("{} was deleted", child_path(dir, own))))?;
        if pos == 0 {
            return Ok(());
        }
        let before = child_path(dir, &queue[pos - 1]);
        match client.check_and_watch_stat(&before).await {
            Ok((None, _)) => {}
            Ok((Some(_), watcher)) => {
                let ev = watcher.changed().await;
                if ev.event_type == EventType::Session && ev.session_state.is_terminated() {
                    return Err(lost(ev.session_state));
                }
            }
            Err(ZkError::ConnectionLoss) => wait_connected(client).await?,
            Err(e) => return Err(recipe_error(&before, e)),
        }
    }
}

/// The shell convention for a child's status: its code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

async fn lock(
    opts: &ConnectOptions,
    dir: &str,
    command: &[String],
    signals: &mut Signals,
) -> Result<i32, CliError> {
    let client = shell::connect(opts).await?;
    let result = async {
        ensure_path(&client, dir).await?;
        let own = enqueue(&client, dir, "lock-", b"").await?;
        let own_path = child_path(dir, &own);
        tokio::select! {
            r = wait_first(&client, dir, "lock-", &own) => r?,
            // Closing the session (below) takes our place in the queue with it.
            sig = signals.recv() => return Ok(128 + sig),
        }
        let code = if command.is_empty() {
            println!("{own_path}");
            hold(&client, signals).await?
        } else {
            run_locked(&client, command, signals).await?
        };
        match client.delete(&own_path, None).await {
            Ok(()) | Err(ZkError::NoNode) => {}
            Err(e) => eprintln!("releasing {own_path}: {}", CliError::zk(&own_path, e)),
        }
        Ok(code)
    }
    .await;
    shell::close(client).await;
    result
}

/// Holds until a signal (exit 0) or the loss of the session (an error).
async fn hold(client: &Client, signals: &mut Signals) -> Result<i32, CliError> {
    let mut states = client.state_watcher();
    loop {
        tokio::select! {
            s = states.changed() => if s.is_terminated() {
                return Err(CliError::Lost(format!("lock lost: session {}", format::keeper_state(s))));
            },
            _ = signals.recv() => return Ok(0),
        }
    }
}

/// Runs the command while the lock is held. Signals are passed on to it; if the session is
/// lost (so the lock may be someone else's), the command is terminated.
async fn run_locked(
    client: &Client,
    command: &[String],
    signals: &mut Signals,
) -> Result<i32, CliError> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| CliError::Usage("lock: no command".into()))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    // SAFETY: prctl is async-signal-safe and touches only the child being set up. It makes a
    // command outlive a killed `lock` process only as long as the lock itself would not.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| CliError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let send = |sig: i32| {
        if let Some(pid) = pid {
            // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    };
    let mut states = client.state_watcher();
    loop {
        tokio::select! {
            status = child.wait() => return Ok(exit_code(status?)),
            s = states.changed() => if s.is_terminated() {
                send(libc::SIGTERM);
                let _ = child.wait().await;
                return Err(CliError::Lost(format!(
                    "lock lost: session {}; command terminated",
                    format::keeper_state(s)
                )));
            },
            sig = signals.recv() => send(sig),
        }
    }
}

async fn elect(
    opts: &ConnectOptions,
    dir: &str,
    name: &str,
    signals: &mut Signals,
) -> Result<i32, CliError> {
    let mut client = shell::connect(opts).await?;
    loop {
        let outcome = campaign(&client, dir, name, signals).await;
        // Closing the session withdraws our candidacy (or leadership) at once.
        shell::close(client).await;
        match outcome {
            Ok(()) => return Ok(0),
            Err(CliError::Lost(why)) => eprintln!("{why}; campaigning again"),
            Err(e) => return Err(e),
        }
        client = match reconnect(opts, signals).await {
            Some(c) => c,
            None => return Ok(0),
        };
    }
}

/// One campaign on one session: `Ok` when interrupted, [`CliError::Lost`] when the session
/// or our node is lost.
async fn campaign(
    client: &Client,
    dir: &str,
    name: &str,
    signals: &mut Signals,
) -> Result<(), CliError> {
    ensure_path(client, dir).await?;
    let own = enqueue(client, dir, "n_", name.as_bytes()).await?;
    let own_path = child_path(dir, &own);
    tokio::select! {
        r = wait_first(client, dir, "n_", &own) => r?,
        _ = signals.recv() => return Ok(()),
    }
    println!("elected: {name}");
    loop {
        let watcher = match client.check_and_watch_stat(&own_path).await {
            Ok((Some(_), w)) => w,
            Ok((None, _)) => return Err(CliError::Lost(format!("{own_path} was deleted"))),
            Err(ZkError::ConnectionLoss) => {
                wait_connected(client).await?;
                continue;
            }
            Err(e) => return Err(recipe_error(&own_path, e)),
        };
        tokio::select! {
            ev = watcher.changed() => {
                if ev.event_type == EventType::Session && ev.session_state.is_terminated() {
                    eprintln!("leadership lost: session {}", format::keeper_state(ev.session_state));
                    return Err(lost(ev.session_state));
                }
                // A data change only needs the watch set again; a deletion is found above.
            }
            _ = signals.recv() => return Ok(()),
        }
    }
}

async fn watch(
    opts: &ConnectOptions,
    path: &str,
    recursive: bool,
    signals: &mut Signals,
) -> Result<i32, CliError> {
    let mode = if recursive {
        AddWatchMode::PersistentRecursive
    } else {
        AddWatchMode::Persistent
    };
    let mut client = shell::connect(opts).await?;
    loop {
        let mut watcher = client
            .watch(path, mode)
            .await
            .map_err(|e| CliError::zk(path, e))?;
        eprintln!(
            "watching {path}{}",
            if recursive { " (recursive)" } else { "" }
        );
        let state = loop {
            tokio::select! {
                ev = watcher.changed() => {
                    if ev.event_type == EventType::Session {
                        if ev.session_state.is_terminated() {
                            break ev.session_state;
                        }
                        continue;
                    }
                    let mut line = format!("{} {}", format::event_type(ev.event_type), ev.path);
                    if matches!(ev.event_type, EventType::NodeCreated | EventType::NodeDataChanged) {
                        // The data now, which may already be newer than this event's.
                        match client.get_data(&ev.path).await {
                            Ok((data, _)) if !data.is_empty() => {
                                line.push(' ');
                                line += &format::one_line(&data);
                            }
                            _ => {}
                        }
                    }
                    println!("{line}");
                }
                _ = signals.recv() => {
                    drop(watcher);
                    shell::close(client).await;
                    return Ok(0);
                }
            }
        };
        drop(watcher);
        shell::close(client).await;
        eprintln!(
            "session {}; watching again (changes in between are not shown)",
            format::keeper_state(state)
        );
        client = match reconnect(opts, signals).await {
            Some(c) => c,
            None => return Ok(0),
        };
    }
}

async fn register(
    opts: &ConnectOptions,
    dir: &str,
    name: &str,
    data: &str,
    signals: &mut Signals,
) -> Result<i32, CliError> {
    let node = child_path(dir, name);
    let mut client = shell::connect(opts).await?;
    loop {
        let outcome = tokio::select! {
            r = keep_registered(&client, dir, &node, data.as_bytes()) => match r {
                Err(e) => Err(e),
                Ok(never) => match never {},
            },
            _ = signals.recv() => Ok(()),
        };
        // Closing the session removes the entry at once.
        shell::close(client).await;
        match outcome {
            Ok(()) => return Ok(0),
            Err(CliError::Lost(why)) => eprintln!("{why}; registering again"),
            Err(e) => return Err(e),
        }
        client = match reconnect(opts, signals).await {
            Some(c) => c,
            None => return Ok(0),
        };
    }
}

/// Creates `node` and re-creates it whenever it is deleted, for as long as the session lives.
async fn keep_registered(
    client: &Client,
    dir: &str,
    node: &str,
    data: &[u8],
) -> Result<Infallible, CliError> {
    ensure_path(client, dir).await?;
    let me = client.session_id().0;
    loop {
        match client
            .create(node, data, &ephemeral(CreateMode::Ephemeral))
            .await
        {
            Ok(_) => println!("registered {node}"),
            Err(ZkError::NodeExists) => {}
            Err(ZkError::ConnectionLoss) => {
                wait_connected(client).await?;
                continue;
            }
            Err(e) => return Err(recipe_error(node, e)),
        }
        // Watch the entry: ours → until it goes; another session's (say a killed
        // predecessor's, not yet expired) → until it goes, then take its place.
        let (stat, watcher) = match client.check_and_watch_stat(node).await {
            Ok(r) => r,
            Err(ZkError::ConnectionLoss) => {
                wait_connected(client).await?;
                continue;
            }
            Err(e) => return Err(recipe_error(node, e)),
        };
        let Some(stat) = stat else {
            continue;
        };
        if stat.ephemeral_owner != me {
            eprintln!("{node} belongs to another session; waiting for it to go");
        }
        let ev = watcher.changed().await;
        if ev.event_type == EventType::Session && ev.session_state.is_terminated() {
            return Err(lost(ev.session_state));
        }
        if ev.event_type == EventType::NodeDeleted && stat.ephemeral_owner == me {
            eprintln!("{node} was deleted; registering again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_recipes() {
        assert_eq!(
            parse("lock", &words("/l -- sh -c x")).unwrap(),
            Some(Recipe::Lock {
                path: "/l".into(),
                command: words("sh -c x")
            })
        );
        assert_eq!(
            parse("watch", &words("-R /w")).unwrap(),
            Some(Recipe::Watch {
                path: "/w".into(),
                recursive: true
            })
        );
        assert_eq!(
            parse("register", &words("/s web1 h:80")).unwrap(),
            Some(Recipe::Register {
                path: "/s".into(),
                name: "web1".into(),
                data: "h:80".into()
            })
        );
        assert_eq!(parse("ls", &words("/")).unwrap(), None);
        assert!(parse("elect", &words("/e")).is_err());
        assert!(parse("register", &words("/s a/b")).is_err());
        assert!(parse("lock", &words("l -- true")).is_err());
    }

    #[test]
    fn queue_is_in_sequence_order() {
        let kids = vec![
            "lock-0000000010".to_string(),
            "other".to_string(),
            "lock-0000000002".to_string(),
            "n_0000000001".to_string(),
        ];
        assert_eq!(
            queue_order(kids, "lock-"),
            ["lock-0000000002", "lock-0000000010"]
        );
        assert_eq!(sequence_of("x"), None);
    }
}
