//! The state behind zkCli's commands and their execution: the current session (which `connect`
//! and `close` replace), the watches this shell set (so `removewatches` can find them), and
//! where asynchronous watch events are printed.
//!
//! One-shot mode and the interactive shell both run commands through [`Shell::execute`], which
//! returns what the command prints on stdout; errors come back as [`CliError`] in zkCli's
//! wording. Watch events are printed by one small task per watch as they arrive.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use zookeeper_client::{
    Acl, Acls, AddWatchMode, AuthId, Client, CreateMode, Error as ZkError, EventType,
    OneshotWatcher, Permission, PersistentWatcher,
};

use super::command::{AclSpec, Cmd, PersistentMode, WatchKind, USAGE};
use super::{format, CliError};

/// How long to try to establish a session before giving up.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// How long to wait for the server to acknowledge closing the session.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

/// zkCli's default session timeout (`-timeout`).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to connect: `-server`, `-timeout`, `-r`.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// `host:port[,host:port...][/chroot]`, as typed.
    pub server: String,
    pub session_timeout: Duration,
    pub readonly: bool,
}

/// Opens a session, failing after [`CONNECT_DEADLINE`] or at once if no server answers.
pub async fn connect(opts: &ConnectOptions) -> Result<Client, CliError> {
    let fail = |reason: String| CliError::Connect {
        servers: opts.server.clone(),
        reason,
    };
    let connecting = Client::connector()
        .with_session_timeout(opts.session_timeout)
        .with_connection_timeout(Duration::from_secs(5))
        .with_readonly(opts.readonly)
        .with_fail_eagerly()
        .connect(&opts.server);
    match tokio::time::timeout(CONNECT_DEADLINE, connecting).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail(format!(
            "no session within {}s",
            CONNECT_DEADLINE.as_secs()
        ))),
    }
}

/// Closes the session (so its ephemerals go away), waiting briefly for the server's
/// acknowledgement. Other clones of `client` must be gone for the session to close.
pub async fn close(client: Client) {
    let mut state = client.state_watcher();
    drop(client);
    let _ = tokio::time::timeout(CLOSE_DEADLINE, async move {
        while !state.changed().await.is_terminated() {}
    })
    .await;
}

/// The current session, shared with the tab completer (which lists children while the user
/// types). Only the shell replaces it.
pub type ClientSlot = Arc<Mutex<Option<Client>>>;

/// A clone of the session in `slot`, if any.
pub fn current_client(slot: &ClientSlot) -> Option<Client> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

type PrintFn = dyn FnMut(String) + Send;

/// Where watch events go: stdout, or (in a terminal) a printer that draws above the prompt
/// being edited. `printwatches off` mutes it.
#[derive(Clone)]
pub struct EventSink {
    printer: Option<Arc<Mutex<Box<PrintFn>>>>,
    enabled: Arc<AtomicBool>,
}

impl EventSink {
    /// Events written straight to stdout.
    pub fn stdout() -> Self {
        EventSink {
            printer: None,
            enabled: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Events handed to `print` (e.g. the line editor's external printer).
    pub fn with_printer(print: Box<PrintFn>) -> Self {
        EventSink {
            printer: Some(Arc::new(Mutex::new(print))),
            enabled: Arc::new(AtomicBool::new(true)),
        }
    }

    pub fn print(&self, text: String) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        match &self.printer {
            Some(p) => (p.lock().unwrap_or_else(PoisonError::into_inner))(text),
            None => {
                let mut out = std::io::stdout().lock();
                // A closed stdout only loses the event; the command loop reports it.
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
        }
    }

    fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }
}

/// The kinds of watch a command can leave behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registered {
    Data,
    Children,
    Persistent,
    Recursive,
}

impl Registered {
    fn removed_event(self) -> &'static str {
        match self {
            Registered::Data => "DataWatchRemoved",
            Registered::Children => "ChildWatchRemoved",
            Registered::Persistent | Registered::Recursive => "PersistentWatchRemoved",
        }
    }
    fn matches(self, kind: WatchKind) -> bool {
        match kind {
            WatchKind::Any => true,
            WatchKind::Data => self == Registered::Data,
            WatchKind::Children => self == Registered::Children,
        }
    }
}

/// A watch set by this shell: the task that owns the watcher and prints its events.
/// Aborting the task drops the watcher, which removes the watch.
struct WatchEntry {
    path: String,
    kind: Registered,
    task: JoinHandle<()>,
}

/// The shell's state; see the module docs.
pub struct Shell {
    opts: ConnectOptions,
    slot: ClientSlot,
    watches: Vec<WatchEntry>,
    events: EventSink,
    /// Print session state changes (zkCli's default watcher); off in one-shot mode.
    session_events: bool,
    state_task: Option<JoinHandle<()>>,
}

impl Shell {
    pub fn new(
        opts: ConnectOptions,
        slot: ClientSlot,
        events: EventSink,
        interactive: bool,
    ) -> Self {
        Shell {
            opts,
            slot,
            watches: Vec::new(),
            events,
            session_events: interactive,
            state_task: None,
        }
    }

    /// The connect string in use.
    pub fn server(&self) -> &str {
        &self.opts.server
    }

    /// zkCli's prompt: `[zk: host:port(CONNECTED) 3] `.
    pub fn prompt(&self, command_number: usize) -> String {
        let state = current_client(&self.slot).map(|c| c.state());
        format!(
            "[zk: {}({}) {command_number}] ",
            self.opts.server,
            format::prompt_state(state)
        )
    }

    fn client(&self) -> Result<Client, CliError> {
        match current_client(&self.slot) {
            Some(c) if !c.state().is_terminated() => Ok(c),
            _ => Err(CliError::NotConnected),
        }
    }

    /// Opens a session to `server` (or the current connect string), closing any current one.
    pub async fn connect(&mut self, server: Option<String>) -> Result<(), CliError> {
        if let Some(s) = server.filter(|s| !s.is_empty()) {
            self.opts.server = s;
        }
        self.close().await;
        let client = connect(&self.opts).await?;
        if self.session_events {
            self.events.print(format::event_block(
                format::keeper_state(client.state()),
                "None",
                None,
                -1,
            ));
            let mut state = client.state_watcher();
            let events = self.events.clone();
            self.state_task = Some(tokio::spawn(async move {
                loop {
                    let s = state.changed().await;
                    events.print(format::event_block(
                        format::keeper_state(s),
                        "None",
                        None,
                        -1,
                    ));
                    if s.is_terminated() {
                        return;
                    }
                }
            }));
        }
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(client);
        Ok(())
    }

    /// Closes the current session, if any, and forgets its watches.
    pub async fn close(&mut self) {
        for w in self.watches.drain(..) {
            w.task.abort();
        }
        let client = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(client) = client {
            close(client).await;
        }
        if let Some(task) = self.state_task.take() {
            // It ends on the terminal state it has just been told about.
            if tokio::time::timeout(CLOSE_DEADLINE, task).await.is_err() {
                tracing::debug!("session state printer did not finish");
            }
        }
    }

    fn watch_oneshot(&mut self, path: &str, kind: Registered, watcher: OneshotWatcher) {
        let events = self.events.clone();
        let task = tokio::spawn(async move {
            let ev = watcher.changed().await;
            // Session events are printed once by the session printer, not per watch.
            if ev.event_type != EventType::Session {
                events.print(format::watched_event_block(&ev));
            }
        });
        self.remember(path, kind, task);
    }

    fn watch_persistent(&mut self, path: &str, kind: Registered, mut watcher: PersistentWatcher) {
        let events = self.events.clone();
        let task = tokio::spawn(async move {
            loop {
                let ev = watcher.changed().await;
                if ev.event_type == EventType::Session {
                    // The watcher must not be polled after a terminal state.
                    if ev.session_state.is_terminated() {
                        return;
                    }
                    continue;
                }
                events.print(format::watched_event_block(&ev));
            }
        });
        self.remember(path, kind, task);
    }

    fn remember(&mut self, path: &str, kind: Registered, task: JoinHandle<()>) {
        self.watches.retain(|w| !w.task.is_finished());
        self.watches.push(WatchEntry {
            path: path.to_string(),
            kind,
            task,
        });
    }

    /// Runs `cmd` and returns what it prints on stdout.
    pub async fn execute(&mut self, cmd: Cmd) -> Result<String, CliError> {
        let mut out = String::new();
        match cmd {
            Cmd::Help => out = format!("{USAGE}\n"),
            Cmd::Version => {
                out = format!("Corral CLI version: {}\n", env!("CARGO_PKG_VERSION"));
            }
            Cmd::PrintWatches { on } => match on {
                Some(on) => self.events.set_enabled(on),
                None => {
                    let word = if self.events.enabled() { "on" } else { "off" };
                    out = format!("printwatches is {word}\n");
                }
            },
            Cmd::Connect { server } => self.connect(Some(server)).await?,
            Cmd::Close => self.close().await,
            Cmd::History | Cmd::Redo { .. } | Cmd::Quit => {
                return Err(CliError::Usage(
                    "history, redo and quit work in the interactive shell".into(),
                ))
            }
            cmd => out = self.execute_on_session(cmd).await?,
        }
        Ok(out)
    }

    async fn execute_on_session(&mut self, cmd: Cmd) -> Result<String, CliError> {
        let client = self.client()?;
        let mut out = String::new();
        match cmd {
            Cmd::Ls {
                stat,
                watch,
                recursive,
                path,
            } => {
                if recursive {
                    let nodes = if watch {
                        self.subtree_with_child_watches(&client, &path).await?
                    } else {
                        subtree_bfs(&client, &path).await?
                    };
                    for p in nodes {
                        out += &p;
                        out.push('\n');
                    }
                    return Ok(out);
                }
                let (mut children, st) = if watch {
                    let (c, st, w) = client
                        .get_and_watch_children(&path)
                        .await
                        .map_err(|e| CliError::zk(&path, e))?;
                    self.watch_oneshot(&path, Registered::Children, w);
                    (c, st)
                } else {
                    client
                        .get_children(&path)
                        .await
                        .map_err(|e| CliError::zk(&path, e))?
                };
                children.sort();
                out += &format!("[{}]\n", children.join(", "));
                if stat {
                    out += &format::stat_text(&st);
                }
            }
            Cmd::Create {
                seq,
                eph,
                container,
                ttl_ms,
                path,
                data,
                acl,
            } => {
                if container && (seq || eph) {
                    return Err(CliError::Usage(
                        "-c cannot be combined with -s or -e".into(),
                    ));
                }
                if ttl_ms.is_some() && eph {
                    return Err(CliError::Usage(
                        "TTLs cannot be used with Ephemeral znodes".into(),
                    ));
                }
                if ttl_ms.is_some() && container {
                    return Err(CliError::Usage(
                        "TTLs cannot be used with Container znodes".into(),
                    ));
                }
                let mode = match (container, seq, eph) {
                    (true, _, _) => CreateMode::Container,
                    (false, true, true) => CreateMode::EphemeralSequential,
                    (false, true, false) => CreateMode::PersistentSequential,
                    (false, false, true) => CreateMode::Ephemeral,
                    (false, false, false) => CreateMode::Persistent,
                };
                let acls: Option<Vec<Acl>> = acl.as_deref().map(to_acls);
                let mut options = match &acls {
                    Some(a) => mode.with_acls(Acls::new(a)),
                    None => mode.with_acls(Acls::anyone_all()),
                };
                if let Some(ms) = ttl_ms {
                    let ms = u64::try_from(ms)
                        .ok()
                        .filter(|&ms| ms > 0)
                        .ok_or_else(|| CliError::Usage(format!("ttl must be positive: {ms}")))?;
                    options = options.with_ttl(Duration::from_millis(ms));
                }
                let data = data.unwrap_or_default();
                let (_, sequence) = client
                    .create(&path, data.as_bytes(), &options)
                    .await
                    .map_err(|e| CliError::zk(&path, e))?;
                if seq {
                    out += &format!("Created {path}{sequence}\n");
                } else {
                    out += &format!("Created {path}\n");
                }
            }
            Cmd::Get { stat, watch, path } => {
                let (data, st) = if watch {
                    let (d, st, w) = client
                        .get_and_watch_data(&path)
                        .await
                        .map_err(|e| CliError::zk(&path, e))?;
                    self.watch_oneshot(&path, Registered::Data, w);
                    (d, st)
                } else {
                    client
                        .get_data(&path)
                        .await
                        .map_err(|e| CliError::zk(&path, e))?
                };
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
                    .map_err(|e| CliError::zk(&path, e))?;
                if stat {
                    out += &format::stat_text(&st);
                }
            }
            Cmd::Stat { watch, path } => {
                let st = if watch {
                    // An exists watch: set even when the node is missing (it fires on create).
                    let (st, w) = client
                        .check_and_watch_stat(&path)
                        .await
                        .map_err(|e| CliError::zk(&path, e))?;
                    self.watch_oneshot(&path, Registered::Data, w);
                    st
                } else {
                    client
                        .check_stat(&path)
                        .await
                        .map_err(|e| CliError::zk(&path, e))?
                };
                let st = st.ok_or_else(|| CliError::NoNode(path.clone()))?;
                out += &format::stat_text(&st);
            }
            Cmd::Delete { version, path } => {
                client
                    .delete(&path, version)
                    .await
                    .map_err(|e| CliError::zk(&path, e))?;
            }
            Cmd::DeleteAll { path } => {
                let nodes = subtree_bfs(&client, &path).await?;
                // Deepest first: BFS order reversed deletes every child before its parent.
                for node in nodes.iter().rev() {
                    if node == "/" || node == "/zookeeper" || node.starts_with("/zookeeper/") {
                        continue;
                    }
                    match client.delete(node, None).await {
                        Ok(()) | Err(ZkError::NoNode) => {}
                        Err(e) => return Err(CliError::zk(node, e)),
                    }
                }
            }
            Cmd::GetAcl { stat, path } => {
                let (acls, st) = client
                    .get_acl(&path)
                    .await
                    .map_err(|e| CliError::zk(&path, e))?;
                for acl in &acls {
                    out += &format::acl_text(acl);
                }
                if stat {
                    out += &format::stat_text(&st);
                }
            }
            Cmd::SetAcl {
                stat,
                version,
                recursive,
                path,
                acl,
            } => {
                let acls = to_acls(&acl);
                if recursive {
                    // As zkCli: the same ACL (and expected version) on every node of the
                    // subtree; no stat is printed.
                    for node in subtree_bfs(&client, &path).await? {
                        client
                            .set_acl(&node, &acls, version)
                            .await
                            .map_err(|e| CliError::zk(&node, e))?;
                    }
                } else {
                    let st = client
                        .set_acl(&path, &acls, version)
                        .await
                        .map_err(|e| CliError::zk(&path, e))?;
                    if stat {
                        out += &format::stat_text(&st);
                    }
                }
            }
            Cmd::Sync { path } => {
                client
                    .sync(&path)
                    .await
                    .map_err(|e| CliError::zk(&path, e))?;
                out += "Sync is OK\n";
            }
            Cmd::WhoAmI => {
                let users = client
                    .list_auth_users()
                    .await
                    .map_err(|e| CliError::zk("", e))?;
                out += "Auth scheme: User\n";
                for u in &users {
                    out += &format!("{}: {}\n", u.scheme(), u.user());
                }
            }
            Cmd::AddAuth { scheme, auth } => {
                client
                    .auth(&scheme, auth.as_bytes())
                    .await
                    .map_err(|e| CliError::zk("", e))?;
            }
            Cmd::AddWatch { mode, path } => {
                let (mode, kind) = match mode {
                    PersistentMode::Persistent => {
                        (AddWatchMode::Persistent, Registered::Persistent)
                    }
                    PersistentMode::Recursive => {
                        (AddWatchMode::PersistentRecursive, Registered::Recursive)
                    }
                };
                let w = client
                    .watch(&path, mode)
                    .await
                    .map_err(|e| CliError::zk(&path, e))?;
                self.watch_persistent(&path, kind, w);
            }
            Cmd::RemoveWatches { path, kind, local } => {
                self.watches.retain(|w| !w.task.is_finished());
                let (gone, kept): (Vec<WatchEntry>, Vec<WatchEntry>) = self
                    .watches
                    .drain(..)
                    .partition(|w| w.path == path && w.kind.matches(kind));
                self.watches = kept;
                if gone.is_empty() {
                    return Err(CliError::NoWatcher(path));
                }
                // Dropping a watcher (with its task) removes it locally at once and from the
                // server when connected, so `-l` (local removal while disconnected) needs
                // nothing more.
                let _ = local;
                let mut kinds: Vec<&'static str> = Vec::new();
                for w in gone {
                    w.task.abort();
                    let name = w.kind.removed_event();
                    if !kinds.contains(&name) {
                        kinds.push(name);
                    }
                }
                for name in kinds {
                    let state = format::keeper_state(client.state());
                    self.events
                        .print(format::event_block(state, name, Some(&path), -1));
                }
            }
            Cmd::GetEphemerals { path } => {
                let mut paths = client
                    .list_ephemerals(&path)
                    .await
                    .map_err(|e| CliError::zk(&path, e))?;
                paths.sort();
                out += &format!("[{}]\n", paths.join(", "));
            }
            Cmd::GetAllChildrenNumber { path } => {
                let n = client
                    .count_descendants_number(&path)
                    .await
                    .map_err(|e| CliError::zk(&path, e))?;
                out += &format!("{n}\n");
            }
            Cmd::Config {
                client: client_only,
                watch,
                stat,
            } => {
                let (data, st) = if watch {
                    let (d, st, w) = client
                        .get_and_watch_config()
                        .await
                        .map_err(|e| CliError::zk("/zookeeper/config", e))?;
                    self.watch_oneshot("/zookeeper/config", Registered::Data, w);
                    (d, st)
                } else {
                    client
                        .get_config()
                        .await
                        .map_err(|e| CliError::zk("/zookeeper/config", e))?
                };
                let text = String::from_utf8_lossy(&data);
                if client_only {
                    out += &format::client_config(&text);
                } else {
                    out += text.trim_end_matches('\n');
                }
                out.push('\n');
                if stat {
                    out += &format::stat_text(&st);
                }
            }
            Cmd::Help
            | Cmd::Version
            | Cmd::PrintWatches { .. }
            | Cmd::Connect { .. }
            | Cmd::Close
            | Cmd::History
            | Cmd::Redo { .. }
            | Cmd::Quit => {
                return Err(CliError::Usage("not a session command".into()));
            }
        }
        Ok(out)
    }
}

impl Shell {
    /// `ls -R -w`: the subtree in [`subtree_bfs`] order, leaving a child watch on every node
    /// listed, as zkCli does.
    async fn subtree_with_child_watches(
        &mut self,
        client: &Client,
        root: &str,
    ) -> Result<Vec<String>, CliError> {
        let mut queue = VecDeque::from([root.to_string()]);
        let mut all = Vec::new();
        while let Some(node) = queue.pop_front() {
            let mut children = match client.list_and_watch_children(&node).await {
                Ok((c, w)) => {
                    self.watch_oneshot(&node, Registered::Children, w);
                    c
                }
                Err(ZkError::NoNode) if node != root => continue,
                Err(e) => return Err(CliError::zk(&node, e)),
            };
            children.sort();
            queue.extend(children.iter().map(|c| child_path(&node, c)));
            all.push(node);
        }
        Ok(all)
    }
}

/// The client library's ACLs for parsed specs.
fn to_acls(specs: &[AclSpec]) -> Vec<Acl> {
    const BITS: [(u32, Permission); 5] = [
        (1, Permission::READ),
        (2, Permission::WRITE),
        (4, Permission::CREATE),
        (8, Permission::DELETE),
        (16, Permission::ADMIN),
    ];
    specs
        .iter()
        .map(|s| {
            let perms = BITS
                .iter()
                .filter(|(bit, _)| s.perms & bit != 0)
                .fold(Permission::NONE, |acc, (_, p)| acc | *p);
            Acl::new(perms, AuthId::new(&s.scheme, &s.id))
        })
        .collect()
}

/// The subtree at `root` in breadth-first order, `root` first (zkCli's `ls -R` order).
pub async fn subtree_bfs(client: &Client, root: &str) -> Result<Vec<String>, CliError> {
    let mut queue = VecDeque::from([root.to_string()]);
    let mut all = Vec::new();
    while let Some(node) = queue.pop_front() {
        let mut children = match client.list_children(&node).await {
            Ok(c) => c,
            // Vanished while we walked: only an error for the root itself.
            Err(ZkError::NoNode) if node != root => continue,
            Err(e) => return Err(CliError::zk(&node, e)),
        };
        children.sort();
        for c in children {
            queue.push_back(child_path(&node, &c));
        }
        all.push(node);
    }
    Ok(all)
}

/// `parent/name`, without doubling the slash under the root.
pub fn child_path(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}
