//! `corral cli`: a `zkCli.sh`-style client, plus coordination recipes.
//!
//! ```text
//! corral cli [-server host:port[,host:port...][/chroot]] [-timeout ms] [-r] [COMMAND ARGS...]
//! ```
//!
//! * With a zkCli command: runs it and exits (one-shot mode). Results go to stdout, errors to
//!   stderr in zkCli's wording (`Node does not exist: /x`), exit code 0 on success and 1 on any
//!   error, including failing to connect.
//! * Without a command: the interactive shell (`interactive.rs`), with line editing,
//!   persistent history, tab completion and watch events printed as they arrive; with stdin
//!   not a terminal it reads commands line by line instead, without prompts.
//! * `lock`, `elect`, `watch`, `register`: long-running recipes (`recipes.rs`) in the manner of
//!   etcdctl's.
//!
//! Commands, options and output follow Apache ZooKeeper 3.9's `zkCli.sh` so scripts written
//! against it keep working. Built on the `zookeeper-client` crate, on a single-threaded tokio
//! runtime with tracing silenced (the library logs every session at info level).

pub mod command;
pub mod format;
pub mod history;
pub mod interactive;
pub mod recipes;
pub mod shell;

use std::io::Write;
use std::time::Duration;

use clap::Args;
use zookeeper_client::Error as ZkError;

use command::Cmd;
use shell::{ConnectOptions, EventSink, Shell};

/// Default connect string, as zkCli.
pub const DEFAULT_SERVER: &str = "127.0.0.1:2181";

/// Arguments of `corral cli`; parsed by hand because zkCli's options are single-dash words
/// (`-server`) and each command has its own.
#[derive(Args, Debug)]
pub struct CliArgs {
    /// `[-server host:port[,host:port...][/chroot]] [-timeout ms] [-r] [COMMAND ARGS...]`
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
    /// A session command with no session (after `close`, or a failed `connect`).
    #[error("Not connected")]
    NotConnected,
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
    #[error("Not a read-only call: {0}")]
    NotReadOnly(String),
    #[error("Acl is not valid : {0}")]
    InvalidAcl(String),
    #[error("KeeperErrorCode = No such watcher for {0}")]
    NoWatcher(String),
    /// Another server error, worded as Java's `KeeperException` message.
    #[error("KeeperErrorCode = {code} for {path}")]
    Keeper { code: &'static str, path: String },
    /// An error of the client library itself (timeout, closed client...).
    #[error("{}{source}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Client {
        path: String,
        #[source]
        source: ZkError,
    },
    /// A recipe lost what it held (its session expired, its node was deleted).
    #[error("{0}")]
    Lost(String),
    /// `lock` could not start its command.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// Writing output, reading input, the terminal, signals.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// Maps a client library error on `path` to zkCli's message for it.
    pub fn zk(path: &str, e: ZkError) -> Self {
        let path = path.to_string();
        let keeper = |code: &'static str, path: String| CliError::Keeper { code, path };
        match e {
            ZkError::NoNode => CliError::NoNode(path),
            ZkError::NodeExists => CliError::NodeExists(path),
            ZkError::BadVersion => CliError::BadVersion(path),
            ZkError::NotEmpty => CliError::NotEmpty(path),
            ZkError::NoAuth => CliError::NoAuth(path),
            ZkError::NoChildrenForEphemerals => CliError::NoChildrenForEphemerals(path),
            ZkError::NotReadOnly => CliError::NotReadOnly(path),
            ZkError::InvalidAcl => CliError::InvalidAcl(path),
            ZkError::NoWatcher => CliError::NoWatcher(path),
            ZkError::ConnectionLoss => keeper("ConnectionLoss", path),
            ZkError::SessionExpired => keeper("Session expired", path),
            ZkError::AuthFailed => keeper("AuthFailed", path),
            ZkError::SessionMoved => keeper("Session moved", path),
            ZkError::Unimplemented => keeper("Unimplemented", path),
            ZkError::QuotaExceeded => keeper("Quota has exceeded", path),
            ZkError::Throttled => keeper("Request throttled", path),
            ZkError::MarshallingError => keeper("MarshallingError", path),
            ZkError::ReconfigDisabled => keeper("Reconfig is disabled", path),
            source => CliError::Client { path, source },
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Interactive,
    OneShot(Cmd),
    Recipe(recipes::Recipe),
}

/// Splits `[-server hosts] [-timeout ms] [-r] [COMMAND ARGS...]`.
fn parse_top(args: &[String]) -> Result<(ConnectOptions, Mode), CliError> {
    let mut opts = ConnectOptions {
        server: DEFAULT_SERVER.to_string(),
        session_timeout: shell::DEFAULT_SESSION_TIMEOUT,
        readonly: false,
    };
    let mut rest = args;
    while let Some(first) = rest.first() {
        match first.as_str() {
            "-server" => {
                opts.server = rest
                    .get(1)
                    .ok_or_else(|| {
                        CliError::Usage("-server needs host:port[,host:port...]".into())
                    })?
                    .clone();
                rest = &rest[2..];
            }
            "-timeout" => {
                let ms = rest
                    .get(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| CliError::Usage("-timeout needs milliseconds".into()))?;
                opts.session_timeout = Duration::from_millis(ms);
                rest = &rest[2..];
            }
            "-r" => {
                opts.readonly = true;
                rest = &rest[1..];
            }
            _ => break,
        }
    }
    let mode = match rest.split_first() {
        None => Mode::Interactive,
        Some((name, words)) => match recipes::parse(name, words)? {
            Some(r) => Mode::Recipe(r),
            None => Mode::OneShot(command::parse_cmd(name, words)?),
        },
    };
    Ok((opts, mode))
}

/// Runs `corral cli` and returns the process exit code, having printed results to stdout and
/// errors to stderr.
pub fn main(args: CliArgs) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Runs `corral cli`; the exit code on success (a recipe passes on its command's).
pub fn run(args: CliArgs) -> Result<i32, CliError> {
    let (opts, mode) = parse_top(&args.args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The client library logs every session at info level; the CLI's output must stay clean,
    // so silence tracing for this thread. The runtime is single-threaded, so that covers every
    // task; the line editor's thread does its own.
    let quiet = tracing::subscriber::NoSubscriber::default();
    tracing::subscriber::with_default(quiet, move || {
        let code = rt.block_on(async move {
            match mode {
                Mode::Interactive => interactive::run(opts).await.map(|()| 0),
                Mode::Recipe(r) => recipes::run(opts, r).await,
                Mode::OneShot(cmd) => one_shot(opts, cmd).await.map(|()| 0),
            }
        });
        // Don't wait for the line editor's thread, which may sit in a blocking read.
        rt.shutdown_background();
        code
    })
}

async fn one_shot(opts: ConnectOptions, cmd: Cmd) -> Result<(), CliError> {
    let slot = shell::ClientSlot::default();
    let mut shell = Shell::new(opts, slot, EventSink::stdout(), false);
    let out = match cmd {
        // No session needed.
        Cmd::Help | Cmd::Version => shell.execute(cmd).await,
        cmd => {
            shell.connect(None).await?;
            let out = shell.execute(cmd).await;
            shell.close().await;
            out
        }
    }?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_server_timeout_and_command() {
        let (opts, mode) = parse_top(&words(
            "-server h:1,h:2/app -timeout 5000 -r create -s -e /a x",
        ))
        .unwrap();
        assert_eq!(opts.server, "h:1,h:2/app");
        assert_eq!(opts.session_timeout, Duration::from_millis(5000));
        assert!(opts.readonly);
        assert!(matches!(
            mode,
            Mode::OneShot(Cmd::Create {
                seq: true,
                eph: true,
                ..
            })
        ));
        let (opts, mode) = parse_top(&[]).unwrap();
        assert_eq!(opts.server, DEFAULT_SERVER);
        assert_eq!(mode, Mode::Interactive);
        let (_, mode) = parse_top(&words("-server h:1 lock /l -- true")).unwrap();
        assert!(matches!(mode, Mode::Recipe(_)));
    }

    #[test]
    fn rejects_bad_top_level() {
        assert!(parse_top(&words("-server")).is_err());
        assert!(parse_top(&words("-timeout x ls /")).is_err());
        assert!(parse_top(&words("frob /a")).is_err());
    }
}
