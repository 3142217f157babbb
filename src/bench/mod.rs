//! `corral bench`: a load generator that speaks the ZooKeeper client protocol, so it measures
//! Corral and Apache ZooKeeper alike.
//!
//! A run has four phases. Setup creates the key space the workload needs (pipelined, spread
//! over all clients) and is not timed. Warm-up runs the workload without recording. The
//! measured window runs it for `--duration`, recording every reply's latency in HDR
//! histograms. Teardown deletes what setup and the workload created (unless `--keep`).
//! A progress line goes to stderr once a second; the report goes to stdout as aligned text
//! and, with `--json`, as JSON. Error replies (NodeExists, NoNode, ...) are counted; a lost
//! connection or a stalled server ends the run with the report and a non-zero exit.
//!
//! Modules: [`client`] is the pipelined wire client, [`workload`] builds the requests,
//! [`report`] counts and prints.

/// Writes a line to stderr, ignoring a failure: progress and diagnostics must never panic
/// the load generator (as `eprintln!` does when stderr is a file on a full disk).
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod chart;
pub mod client;
pub mod report;
pub mod workload;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use self::client::{lock, ClientError, Connection, PhaseCtl};
use self::report::{progress_line, Report, RunInfo, Stats};
use self::workload::{
    encode_create, encode_header_only, encode_path_watch, encode_set, make_value, CreateLoad,
    KeyLoad, KeySpace, OpKind, OpSource, PathList, Workload,
};
use crate::jute::records::{create_flags, event_type};
use crate::jute::{xid, OpCode, ReplyHeader, WatcherEvent};

/// Arguments of `corral bench`.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// A tool instead of a run (`corral bench chart ...`).
    #[command(subcommand)]
    pub tool: Option<BenchTool>,
    /// Servers, comma-separated host:port; clients are spread over them round-robin.
    #[arg(long, default_value = "127.0.0.1:2181")]
    pub server: String,
    /// What to measure.
    #[arg(long, value_enum, default_value = "get")]
    pub workload: Workload,
    /// Client connections (one session each).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Requests each client keeps outstanding.
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// Bytes per znode value written by setup, set, create and multi.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Keys in the key space (get, set, mixed, exists, multi; get-children uses keys/10
    /// directories of 10 children).
    #[arg(long, default_value_t = 10_000)]
    pub keys: usize,
    /// Measured time, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unrecorded warm-up before the measured time.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Fraction of reads in the mixed workload.
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// Also write the report as JSON to FILE, or to stdout with '-' (the text report then
    /// goes to stderr).
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<String>,
    /// Parent znode of everything the benchmark creates.
    #[arg(long, default_value = "/corral-bench")]
    pub prefix: String,
    /// Watcher sessions of the watch workload.
    #[arg(long, default_value_t = 100)]
    pub fanout_watchers: usize,
    /// setData operations per multi.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub multi_ops: u16,
    /// Leave the key space in place after the run.
    #[arg(long)]
    pub keep: bool,
    /// create workload: stop after this many creates (all clients together), even before
    /// the duration is over; used to load an exact number of znodes.
    #[arg(long)]
    pub max_ops: Option<u64>,
    /// Session timeout asked for; idle connections ping every third of it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub session_timeout: Duration,
    /// How long the run waits for a reply or a watch event before it ends as stalled
    /// (default: the session timeout, at least 10 s).
    #[arg(long, value_parser = parse_duration)]
    pub stall_timeout: Option<Duration>,
    /// Threads of the load generator's runtime (one is enough for several hundred thousand
    /// requests a second and leaves the other cores to the server).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Tools that work on benchmark results instead of running one.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchTool {
    /// Draw a PNG bar chart of throughput from `corral bench --json` reports.
    Chart(chart::ChartArgs),
}

/// Why a benchmark run failed.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Args(String),
    #[error("connecting: {0}")]
    Connect(ClientError),
    #[error("setup failed: {0}")]
    Setup(ClientError),
    #[error("run aborted: {0}")]
    Aborted(String),
    #[error(transparent)]
    Chart(#[from] chart::ChartError),
    #[error("cannot write the report to stdout: {0}")]
    Output(std::io::Error),
    #[error("cannot write JSON report to {path}: {source}")]
    Json {
        path: String,
        source: std::io::Error,
    },
}

/// Parses "10s", "500ms", "2m", "1.5s" or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration '{s}': expected e.g. 10s, 500ms, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in '{s}': use ms, s, m or h")),
    };
    if !(0.0..=1e7).contains(&secs) {
        return Err(format!("duration '{s}' out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs a benchmark on its own runtime: prints progress and the report, writes the JSON.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    if let Some(BenchTool::Chart(chart_args)) = args.tool {
        return Ok(chart::run(chart_args)?);
    }
    if args.clients == 0 || args.in_flight == 0 {
        return Err(BenchError::Args(
            "--clients and --in-flight must be at least 1".into(),
        ));
    }
    if args.max_ops.is_some() && args.workload != Workload::Create {
        return Err(BenchError::Args(
            "--max-ops only applies to --workload create".into(),
        ));
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err(BenchError::Args("--read-ratio must be within 0..1".into()));
    }
    if !args.prefix.starts_with('/') || args.prefix.len() < 2 {
        return Err(BenchError::Args(
            "--prefix must be an absolute path other than /".into(),
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    let (report, failure) = rt.block_on(run_async(&args))?;
    let text = report.to_text();
    let json_stdout = args.json.as_deref() == Some("-");
    {
        use std::io::Write as _;
        let shown = if json_stdout {
            let _ = std::io::stderr().write_all(text.as_bytes());
            std::io::stdout().write_all((report.to_json() + "\n").as_bytes())
        } else {
            std::io::stdout().write_all(text.as_bytes())
        };
        let shown = shown.and_then(|()| std::io::stdout().flush());
        // The JSON file is written even when stdout is not.
        if let Some(path) = args.json.as_deref().filter(|p| *p != "-") {
            std::fs::write(path, report.to_json() + "\n").map_err(|source| BenchError::Json {
                path: path.to_string(),
                source,
            })?;
        }
        shown.map_err(BenchError::Output)?;
    }
    match failure {
        Some(why) => Err(BenchError::Aborted(why)),
        None => Ok(()),
    }
}

/// How long a run waits for a reply or an event before it ends as stalled.
fn stall_timeout(args: &BenchArgs) -> Result<Duration, BenchError> {
    match args.stall_timeout {
        Some(d) if d.is_zero() => Err(BenchError::Args(
            "--stall-timeout must be above zero".into(),
        )),
        Some(d) => Ok(d),
        None => Ok(args.session_timeout.max(Duration::from_secs(10))),
    }
}

/// What every phase shares.
struct Run {
    servers: Vec<String>,
    timeout_ms: i32,
    abort: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
    stall: Duration,
    in_flight: usize,
}

impl Run {
    fn ctl(&self, end: Option<Instant>, measure_from: Option<Instant>) -> PhaseCtl {
        PhaseCtl {
            end,
            measure_from,
            abort: self.abort.clone(),
            in_flight: self.in_flight,
            stall_timeout: self.stall,
        }
    }

    /// Records the first failure and stops every client.
    fn fail(&self, what: String) {
        let mut f = lock(&self.failure);
        if f.is_none() {
            note!("corral bench: {what}");
            *f = Some(what);
        }
        self.abort.store(true, Ordering::SeqCst);
    }

    fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    async fn connect_all(&self, n: usize) -> Result<Vec<Connection>, BenchError> {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let addr = self.servers[i % self.servers.len()].clone();
                let t = self.timeout_ms;
                tokio::spawn(async move { Connection::connect(&addr, t).await })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for t in tasks {
            match t.await {
                Ok(Ok(c)) => out.push(c),
                Ok(Err(e)) => return Err(BenchError::Connect(e)),
                Err(e) => return Err(BenchError::Args(format!("client task failed: {e}"))),
            }
        }
        Ok(out)
    }
}

/// Runs `sources[i]` on `conns[i]` in parallel until they are exhausted or `end` passes.
/// Returns the connections that survived, each with its source and statistics.
async fn parallel_phase<S: OpSource + 'static>(
    run: &Run,
    conns: Vec<Connection>,
    sources: Vec<S>,
    end: Option<Instant>,
    measure_from: Option<Instant>,
    stats: &[Arc<Mutex<Stats>>],
) -> Vec<(Connection, S)> {
    let mut tasks = Vec::new();
    for (i, (mut conn, mut src)) in conns.into_iter().zip(sources).enumerate() {
        let ctl = run.ctl(end, measure_from);
        let st = stats[i % stats.len()].clone();
        tasks.push(tokio::spawn(async move {
            let r = conn.run_phase(&mut src, &ctl, &st).await;
            if r.is_err() {
                ctl.abort.store(true, Ordering::SeqCst);
            }
            (i, conn, src, r)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        match t.await {
            Ok((_, conn, src, Ok(()))) => out.push((conn, src)),
            Ok((i, _, _, Err(e))) => run.fail(format!("client {i}: {e}")),
            Err(e) => run.fail(format!("client task failed: {e}")),
        }
    }
    out
}

/// Splits `paths` round-robin into `n` lists.
fn deal(paths: Vec<String>, n: usize) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = (0..n).map(|_| Vec::new()).collect();
    for (i, p) in paths.into_iter().enumerate() {
        out[i % n].push(p);
    }
    out
}

/// Creates (or deletes) `paths` spread over all connections; errors are tallied in `st`.
async fn bulk(
    run: &Run,
    conns: Vec<Connection>,
    paths: Vec<String>,
    create: Option<Bytes>,
    st: &Arc<Mutex<Stats>>,
) -> Vec<Connection> {
    let n = conns.len().max(1);
    let sources: Vec<PathList> = deal(paths, n)
        .into_iter()
        .map(|p| match &create {
            Some(v) => PathList::creating(p, v.clone()),
            None => PathList::deleting(p),
        })
        .collect();
    parallel_phase(run, conns, sources, None, None, std::slice::from_ref(st))
        .await
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

/// Runs `paths` in order on one connection (pipelined; the server keeps a session's order).
async fn in_order(
    run: &Run,
    conn: &mut Connection,
    paths: Vec<String>,
    create: Option<Bytes>,
    st: &Mutex<Stats>,
) -> Result<(), ClientError> {
    let mut src = match create {
        Some(v) => PathList::creating(paths, v),
        None => PathList::deleting(paths),
    };
    conn.run_phase(&mut src, &run.ctl(None, None), st).await
}

/// Error counts other than the expected `ignore` code, as "Name xN" text.
fn unexpected_errors(st: &Stats, kind: OpKind, ignore: i32) -> Option<String> {
    let op = st.op(kind)?;
    let parts: Vec<String> = op
        .errors
        .iter()
        .filter(|(c, _)| **c != ignore)
        .map(|(c, n)| format!("{} x{n}", report::error_name(*c)))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The kinds that make up the headline numbers of a workload.
fn main_kinds(w: Workload) -> &'static [OpKind] {
    match w {
        Workload::Sessions => &[OpKind::Session],
        Workload::Watch => &[OpKind::Notify],
        Workload::Create => &[OpKind::Create],
        Workload::Get => &[OpKind::Get],
        Workload::Set => &[OpKind::Set],
        Workload::Mixed => &[OpKind::Get, OpKind::Set],
        Workload::Exists => &[OpKind::Exists],
        Workload::GetChildren => &[OpKind::GetChildren],
        Workload::Multi => &[OpKind::Multi],
    }
}

/// Prints a progress line every second until `stop` is cancelled.
fn spawn_progress(
    stats: Vec<Arc<Mutex<Stats>>>,
    kinds: &'static [OpKind],
    start: Instant,
    measure_from: Instant,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last_completed = 0u64;
        let mut last_at = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let mut merged = Stats::default();
            for s in &stats {
                let s = lock(s);
                merged.merge(&s);
            }
            let now = Instant::now();
            let dt = now.duration_since(last_at).as_secs_f64().max(1e-9);
            let completed = merged.completed(kinds);
            let rate = (completed.saturating_sub(last_completed)) as f64 / dt;
            last_completed = completed;
            last_at = now;
            let (n, hist) = merged.combined(kinds);
            let (phase, p99) = if now < measure_from {
                ("warmup", None)
            } else {
                (
                    "measure",
                    (n > 0).then(|| hist.value_at_quantile(0.99) as f64 / 1e6),
                )
            };
            note!(
                "{}",
                progress_line(
                    now.duration_since(start).as_secs(),
                    phase,
                    rate,
                    p99,
                    merged.error_total()
                )
            );
        }
    })
}

async fn run_async(args: &BenchArgs) -> Result<(Report, Option<String>), BenchError> {
    let servers: Vec<String> = args
        .server
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() {
        return Err(BenchError::Args("--server lists no server".into()));
    }
    let timeout_ms = args.session_timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    let stall = stall_timeout(args)?;
    let run = Run {
        servers: servers.clone(),
        timeout_ms,
        abort: Arc::new(AtomicBool::new(false)),
        failure: Arc::new(Mutex::new(None)),
        stall,
        in_flight: args.in_flight,
    };
    let space = KeySpace::new(&args.prefix, args.workload, args.keys);
    let value = make_value(args.value_size);
    let (stats, times) = match args.workload {
        Workload::Sessions => run_sessions(args, &run, &space, &value).await?,
        Workload::Watch => run_watch(args, &run, &space, &value).await?,
        _ => run_keyed(args, &run, &space, &value).await?,
    };
    let mut merged = Stats::default();
    for s in &stats {
        merged.merge(&lock(s));
    }
    let failure = run.failure();
    let (clients, in_flight) = match args.workload {
        Workload::Sessions => (args.clients, 1),
        Workload::Watch => (args.fanout_watchers, 1),
        _ => (args.clients, args.in_flight),
    };
    let info = RunInfo {
        workload: args.workload.name().to_string(),
        servers,
        clients,
        in_flight,
        value_size: args.value_size,
        keys: space.keys.len() + space.dirs.len() * (1 + space.children_per_dir),
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: times.measured.as_secs_f64(),
        setup_s: times.setup.as_secs_f64(),
        teardown_s: times.teardown.as_secs_f64(),
        aborted: failure.clone(),
    };
    Ok((
        Report::build(info, &merged, main_kinds(args.workload)),
        failure,
    ))
}

#[derive(Debug, Default)]
struct Times {
    setup: Duration,
    measured: Duration,
    teardown: Duration,
}

/// The measured window from `measure_from` to `end`, cut short at `stopped` by an abort.
fn window(measure_from: Instant, end: Instant, stopped: Instant) -> Duration {
    end.min(stopped).saturating_duration_since(measure_from)
}

/// Either kind of per-client source of the keyed workloads.
enum Load {
    Keys(KeyLoad),
    Create(CreateLoad),
}

impl OpSource for Load {
    fn next_op(&mut self, xid: i32, buf: &mut BytesMut) -> Option<OpKind> {
        match self {
            Load::Keys(k) => k.next_op(xid, buf),
            Load::Create(c) => c.next_op(xid, buf),
        }
    }
}

/// Sets up the prefix and the workload's directory on one connection.
async fn setup_dirs(
    run: &Run,
    conn: &mut Connection,
    space: &KeySpace,
    w: Workload,
    st: &Mutex<Stats>,
) -> Result<(), BenchError> {
    in_order(run, conn, space.dirs_for(w), Some(Bytes::new()), st)
        .await
        .map_err(BenchError::Setup)?;
    if let Some(e) = unexpected_errors(&lock(st), OpKind::Create, -110) {
        return Err(BenchError::Args(format!(
            "setup could not create {}: {e}",
            space.prefix
        )));
    }
    Ok(())
}

/// Deletes the workload's directory and the prefix (not the prefix's ancestors).
async fn teardown_dirs(run: &Run, conn: &mut Connection, space: &KeySpace, w: Workload) {
    let mut dirs = space.dirs_for(w);
    let keep_from = dirs.iter().position(|d| *d == space.prefix).unwrap_or(0);
    let mut dirs = dirs.split_off(keep_from);
    dirs.reverse();
    let st = Mutex::new(Stats::default());
    if let Err(e) = in_order(run, conn, dirs, None, &st).await {
        note!("corral bench: teardown: {e}");
    }
}

async fn close_all(conns: Vec<Connection>) {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(async move { c.close().await }))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn run_keyed(
    args: &BenchArgs,
    run: &Run,
    space: &KeySpace,
    value: &Bytes,
) -> Result<(Vec<Arc<Mutex<Stats>>>, Times), BenchError> {
    let w = args.workload;
    let mut times = Times::default();
    let mut conns = run.connect_all(args.clients).await?;
    let setup_start = Instant::now();
    let setup_stats = Arc::new(Mutex::new(Stats::default()));
    setup_dirs(run, &mut conns[0], space, w, &setup_stats).await?;
    let mut leaves = space.setup_paths(w);
    let n_leaves = leaves.len();
    if n_leaves > 0 {
        note!("setup: creating {n_leaves} nodes below {}", space.prefix);
        conns = bulk(
            run,
            conns,
            std::mem::take(&mut leaves),
            Some(value.clone()),
            &setup_stats,
        )
        .await;
    }
    if w == Workload::GetChildren && run.failure().is_none() {
        conns = bulk(
            run,
            conns,
            space.setup_children(),
            Some(value.clone()),
            &setup_stats,
        )
        .await;
    }
    if let Some(f) = run.failure() {
        return Err(BenchError::Aborted(format!("during setup: {f}")));
    }
    if let Some(e) = unexpected_errors(&lock(&setup_stats), OpKind::Create, -110) {
        note!("setup: unexpected errors: {e}");
    }
    times.setup = setup_start.elapsed();
    note!("setup: done in {:.2} s", times.setup.as_secs_f64());

    let run_id = format!("{:08x}", rand::random::<u32>());
    let budget = args.max_ops.map(|n| Arc::new(AtomicU64::new(n)));
    let sources: Vec<Load> = (0..conns.len())
        .map(|i| {
            if w == Workload::Create {
                let load = CreateLoad::new(space, &run_id, i, value.clone());
                Load::Create(match &budget {
                    Some(b) => load.with_budget(b.clone()),
                    None => load,
                })
            } else {
                Load::Keys(KeyLoad::new(
                    w,
                    space,
                    value.clone(),
                    args.read_ratio,
                    args.multi_ops as usize,
                    0x5eed ^ ((i as u64) << 32) ^ rand::random::<u32>() as u64,
                ))
            }
        })
        .collect();
    let stats: Vec<Arc<Mutex<Stats>>> = (0..conns.len())
        .map(|_| Arc::new(Mutex::new(Stats::default())))
        .collect();
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let stop = CancellationToken::new();
    let progress = spawn_progress(
        stats.clone(),
        main_kinds(w),
        start,
        measure_from,
        stop.clone(),
    );
    let done = parallel_phase(run, conns, sources, Some(end), Some(measure_from), &stats).await;
    // Cut short by an abort, or by running out of --max-ops before the end.
    let stopped = if run.failure().is_some() || args.max_ops.is_some() {
        Instant::now()
    } else {
        end
    };
    times.measured = window(measure_from, end, stopped);
    stop.cancel();
    let _ = progress.await;

    let mut conns = Vec::with_capacity(done.len());
    let mut created = Vec::new();
    for (i, (c, src)) in done.into_iter().enumerate() {
        if let Load::Create(cl) = &src {
            let base = CreateLoad::base(space, &run_id, i);
            created.extend((0..cl.created).map(|n| format!("{base}{n}")));
        }
        conns.push(c);
    }
    if run.failure().is_some() {
        note!(
            "teardown: skipped after the failure; delete {} by hand",
            space.prefix
        );
        close_all(conns).await;
        return Ok((stats, times));
    }
    if args.keep {
        note!("teardown: --keep: leaving {} in place", space.prefix);
    } else {
        let t0 = Instant::now();
        let td = Arc::new(Mutex::new(Stats::default()));
        let mut leaves = created;
        if w == Workload::GetChildren {
            conns = bulk(run, conns, space.setup_children(), None, &td).await;
        }
        leaves.extend(space.setup_paths(w));
        note!("teardown: deleting {} nodes", leaves.len());
        conns = bulk(run, conns, leaves, None, &td).await;
        if let Some(c) = conns.first_mut() {
            teardown_dirs(run, c, space, w).await;
        }
        if let Some(e) = unexpected_errors(&lock(&td), OpKind::Delete, -101) {
            note!("teardown: unexpected errors: {e}");
        }
        times.teardown = t0.elapsed();
    }
    close_all(conns).await;
    Ok((stats, times))
}

/// One connect, create-ephemeral, close cycle on a fresh connection.
async fn session_cycle(
    addr: &str,
    timeout_ms: i32,
    path: &str,
    value: &[u8],
    stall: Duration,
    st: &Mutex<Stats>,
    measured: bool,
) -> Result<(), ClientError> {
    let t0 = Instant::now();
    let mut c = Connection::connect(addr, timeout_ms).await?;
    let t1 = Instant::now();
    let cx = c.next_xid();
    encode_create(c.out(), cx, path, value, create_flags::EPHEMERAL);
    let xx = c.next_xid();
    encode_header_only(c.out(), xx, OpCode::CloseSession);
    c.flush().await?;
    let (h, _) = c.read_reply(cx, stall).await?;
    let t2 = Instant::now();
    let close_err = match c.read_reply(xx, stall).await {
        Ok((h, _)) => h.err,
        // ZooKeeper may close the socket right after (or instead of) the close reply.
        Err(ClientError::Closed { .. }) => 0,
        Err(e) => return Err(e),
    };
    let t3 = Instant::now();
    // Not timed: let the server hang up first, as ZooKeeper expects.
    c.wait_eof(Duration::from_secs(1)).await;
    let ns = |a: Instant, b: Instant| b.saturating_duration_since(a).as_nanos() as u64;
    let mut st = lock(st);
    st.record(OpKind::Connect, ns(t0, t1), 0, measured);
    st.record(OpKind::Create, ns(t1, t2), h.err, measured);
    st.record(OpKind::CloseSession, ns(t2, t3), close_err, measured);
    st.record(OpKind::Session, ns(t0, t3), h.err, measured);
    Ok(())
}

async fn run_sessions(
    args: &BenchArgs,
    run: &Run,
    space: &KeySpace,
    value: &Bytes,
) -> Result<(Vec<Arc<Mutex<Stats>>>, Times), BenchError> {
    let w = args.workload;
    let mut times = Times::default();
    let setup_start = Instant::now();
    let mut admin = run.connect_all(1).await?;
    let setup_stats = Mutex::new(Stats::default());
    setup_dirs(run, &mut admin[0], space, w, &setup_stats).await?;
    times.setup = setup_start.elapsed();

    let stats: Vec<Arc<Mutex<Stats>>> = (0..args.clients)
        .map(|_| Arc::new(Mutex::new(Stats::default())))
        .collect();
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let stop = CancellationToken::new();
    let progress = spawn_progress(
        stats.clone(),
        main_kinds(w),
        start,
        measure_from,
        stop.clone(),
    );
    let mut tasks = Vec::new();
    for (i, st) in stats.iter().enumerate() {
        let addr = run.servers[i % run.servers.len()].clone();
        let st = st.clone();
        let abort = run.abort.clone();
        let base = format!("{}/s/{i}-", space.prefix);
        let value = value.clone();
        let (timeout_ms, stall) = (run.timeout_ms, run.stall);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !abort.load(Ordering::Relaxed) && Instant::now() < end {
                let t = Instant::now();
                let path = format!("{base}{n}");
                n += 1;
                if let Err(e) = session_cycle(
                    &addr,
                    timeout_ms,
                    &path,
                    &value,
                    stall,
                    &st,
                    t >= measure_from,
                )
                .await
                {
                    abort.store(true, Ordering::SeqCst);
                    return Err(format!("client {i}: {e}"));
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => run.fail(e),
            Err(e) => run.fail(format!("client task failed: {e}")),
        }
    }
    let stopped = if run.failure().is_some() {
        Instant::now()
    } else {
        end
    };
    times.measured = window(measure_from, end, stopped);
    stop.cancel();
    let _ = progress.await;
    if !args.keep && run.failure().is_none() {
        let t0 = Instant::now();
        teardown_dirs(run, &mut admin[0], space, w).await;
        times.teardown = t0.elapsed();
    }
    close_all(admin).await;
    Ok((stats, times))
}

/// State the watch workload's writer and watchers share.
struct WatchShared {
    key: String,
    watchers: usize,
    armed: AtomicUsize,
    all_armed: tokio::sync::Notify,
    base: Instant,
    /// When the current round's setData was sent, in ns since `base`.
    set_at_ns: AtomicU64,
    measure_from: Instant,
    stall: Duration,
    stop: CancellationToken,
    /// Per watcher: what it waits for (`WAITING_FOR_REPLY` or `WAITING_FOR_EVENT`), so that a
    /// stall can say where it is stuck.
    waiting: Vec<AtomicU8>,
    /// Sets sent so far, and per watcher the number of the set whose event it saw last.
    sets: AtomicU64,
    event_of_set: Vec<AtomicU64>,
    /// Events that arrived before the reply to the getData that was to set their watch:
    /// a server that does this breaks the one-event-per-round count, so it is reported.
    early_events: AtomicU64,
}

const WAITING_FOR_REPLY: u8 = 0;
const WAITING_FOR_EVENT: u8 = 1;

impl WatchShared {
    fn armed_one(&self) {
        if self.armed.fetch_add(1, Ordering::AcqRel) + 1 >= self.watchers {
            self.all_armed.notify_one();
        }
    }

    /// What a stall looks like: how many watchers of each server wait for what.
    fn stall_report(&self, servers: &[String]) -> String {
        let mut parts = Vec::new();
        let sets = self.sets.load(Ordering::Acquire);
        for (s, addr) in servers.iter().enumerate() {
            let (mut reply, mut no_event) = (0, 0);
            for i in (s..self.waiting.len()).step_by(servers.len().max(1)) {
                if self.waiting[i].load(Ordering::Acquire) == WAITING_FOR_REPLY {
                    reply += 1;
                } else if self.event_of_set[i].load(Ordering::Acquire) < sets {
                    no_event += 1;
                }
            }
            parts.push(format!(
                "{addr}: {no_event} watchers without the event of set {sets}, \
                 {reply} waiting for a getData reply"
            ));
        }
        let early = self.early_events.load(Ordering::Acquire);
        if early > 0 {
            parts.push(format!(
                "{early} events arrived before the reply to the getData that set the watch"
            ));
        }
        parts.join("; ")
    }
}

fn decode_error(c: &Connection, source: crate::jute::DecodeError) -> ClientError {
    ClientError::Decode {
        addr: c.addr.clone(),
        source,
    }
}

/// A watcher: arm a data watch, wait for its event, record the latency, re-arm.
async fn watcher(
    mut c: Connection,
    index: usize,
    sh: Arc<WatchShared>,
    st: Arc<Mutex<Stats>>,
) -> Result<Connection, ClientError> {
    loop {
        let x = c.next_xid();
        encode_path_watch(c.out(), x, OpCode::GetData, &sh.key, true);
        sh.waiting[index].store(WAITING_FOR_REPLY, Ordering::Release);
        c.flush().await?;
        let (h, _) = c
            .read_reply_noting_events(x, sh.stall, || {
                sh.early_events.fetch_add(1, Ordering::AcqRel);
            })
            .await?;
        if h.err != 0 {
            lock(&st).record(OpKind::Get, 0, h.err, true);
        }
        sh.waiting[index].store(WAITING_FOR_EVENT, Ordering::Release);
        sh.armed_one();
        // Wait for the event (or the end of the run), skipping anything else.
        let (now, mut r) = loop {
            let frame = tokio::select! {
                f = c.next_frame() => f?,
                _ = sh.stop.cancelled() => return Ok(c),
            };
            let now = Instant::now();
            let mut r = crate::jute::Reader::new(frame);
            let h = ReplyHeader::read(&mut r).map_err(|e| decode_error(&c, e))?;
            match h.xid {
                xid::NOTIFICATION => {
                    let set = sh.sets.load(Ordering::Acquire);
                    sh.event_of_set[index].store(set, Ordering::Release);
                    break (now, r);
                }
                xid::PING | xid::AUTH | xid::SET_WATCHES => continue,
                got => {
                    return Err(ClientError::XidMismatch {
                        addr: c.addr.clone(),
                        got,
                        expected: None,
                    })
                }
            }
        };
        let ev = WatcherEvent::read(&mut r).map_err(|e| decode_error(&c, e))?;
        let set_at = sh.base + Duration::from_nanos(sh.set_at_ns.load(Ordering::Acquire));
        let ns = now.saturating_duration_since(set_at).as_nanos() as u64;
        let err = if ev.event_type == event_type::NODE_DATA_CHANGED {
            0
        } else {
            // Not an error code: counted under a made-up code so it shows up in the report.
            -1000 - ev.event_type
        };
        lock(&st).record(OpKind::Notify, ns, err, set_at >= sh.measure_from);
    }
}

async fn run_watch(
    args: &BenchArgs,
    run: &Run,
    space: &KeySpace,
    value: &Bytes,
) -> Result<(Vec<Arc<Mutex<Stats>>>, Times), BenchError> {
    let w = args.workload;
    let mut times = Times::default();
    let setup_start = Instant::now();
    let mut admin = run.connect_all(1).await?;
    let setup_stats = Mutex::new(Stats::default());
    setup_dirs(run, &mut admin[0], space, w, &setup_stats).await?;
    let key = format!("{}/w/key", space.prefix);
    in_order(
        run,
        &mut admin[0],
        vec![key.clone()],
        Some(value.clone()),
        &setup_stats,
    )
    .await
    .map_err(BenchError::Setup)?;
    let n = args.fanout_watchers.max(1);
    let conns = run.connect_all(n).await?;
    times.setup = setup_start.elapsed();
    note!("setup: {n} watcher sessions on {key}");

    let start = Instant::now();
    let sh = Arc::new(WatchShared {
        key: key.clone(),
        watchers: n,
        armed: AtomicUsize::new(0),
        all_armed: tokio::sync::Notify::new(),
        base: start,
        set_at_ns: AtomicU64::new(0),
        measure_from: start + args.warmup,
        stall: run.stall,
        stop: CancellationToken::new(),
        waiting: (0..n).map(|_| AtomicU8::new(WAITING_FOR_REPLY)).collect(),
        sets: AtomicU64::new(0),
        event_of_set: (0..n).map(|_| AtomicU64::new(0)).collect(),
        early_events: AtomicU64::new(0),
    });
    let measure_from = sh.measure_from;
    let end = measure_from + args.duration;
    let watcher_stats: Vec<Arc<Mutex<Stats>>> = (0..n)
        .map(|_| Arc::new(Mutex::new(Stats::default())))
        .collect();
    let writer_stats = Arc::new(Mutex::new(Stats::default()));
    let mut all_stats = watcher_stats.clone();
    all_stats.push(writer_stats.clone());
    let stop_progress = CancellationToken::new();
    let progress = spawn_progress(
        all_stats.clone(),
        main_kinds(w),
        start,
        measure_from,
        stop_progress.clone(),
    );
    let tasks: Vec<_> = conns
        .into_iter()
        .zip(watcher_stats.iter().cloned())
        .enumerate()
        .map(|(i, (c, st))| {
            let sh = sh.clone();
            let abort = run.abort.clone();
            tokio::spawn(async move {
                let r = watcher(c, i, sh.clone(), st).await;
                if r.is_err() {
                    abort.store(true, Ordering::SeqCst);
                    sh.all_armed.notify_one();
                }
                r.map_err(|e| format!("watcher {i}: {e}"))
            })
        })
        .collect();

    // The writer: wait until every watcher is armed, set, repeat.
    let writer = &mut admin[0];
    let writer_result: Result<(), String> = async {
        while Instant::now() < end && !run.abort.load(Ordering::Relaxed) {
            loop {
                let notified = sh.all_armed.notified();
                if sh.armed.load(Ordering::Acquire) >= n || run.abort.load(Ordering::Relaxed) {
                    break;
                }
                if tokio::time::timeout(run.stall, notified).await.is_err() {
                    return Err(format!(
                        "watchers stalled: {} of {n} re-armed within {} ({})",
                        sh.armed.load(Ordering::Acquire),
                        client::span(run.stall),
                        sh.stall_report(&run.servers)
                    ));
                }
            }
            if run.abort.load(Ordering::Relaxed) {
                break;
            }
            sh.armed.store(0, Ordering::Release);
            sh.sets.fetch_add(1, Ordering::AcqRel);
            let x = writer.next_xid();
            encode_set(writer.out(), x, &key, value);
            let t = Instant::now();
            sh.set_at_ns
                .store(t.duration_since(start).as_nanos() as u64, Ordering::Release);
            writer.flush().await.map_err(|e| format!("writer: {e}"))?;
            let (h, _) = writer
                .read_reply(x, run.stall)
                .await
                .map_err(|e| format!("writer: {e}"))?;
            let ns = t.elapsed().as_nanos() as u64;
            lock(&writer_stats).record(OpKind::Set, ns, h.err, t >= measure_from);
        }
        Ok(())
    }
    .await;
    if let Err(e) = writer_result {
        run.fail(e);
    }
    let stopped = if run.failure().is_some() {
        Instant::now()
    } else {
        end
    };
    times.measured = window(measure_from, end, stopped);
    sh.stop.cancel();
    let mut survivors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(c)) => survivors.push(c),
            Ok(Err(e)) => run.fail(e),
            Err(e) => run.fail(format!("watcher task failed: {e}")),
        }
    }
    stop_progress.cancel();
    let _ = progress.await;
    close_all(survivors).await;
    if !args.keep && run.failure().is_none() {
        let t0 = Instant::now();
        let st = Mutex::new(Stats::default());
        let _ = in_order(run, &mut admin[0], vec![key], None, &st).await;
        teardown_dirs(run, &mut admin[0], space, w).await;
        times.teardown = t0.elapsed();
    }
    close_all(admin).await;
    Ok((all_stats, times))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let a = Cli::parse_from(["bench"]).bench;
        assert_eq!(a.server, "127.0.0.1:2181");
        assert_eq!(a.workload, Workload::Get);
        assert_eq!(
            (a.clients, a.in_flight, a.value_size, a.keys),
            (16, 8, 100, 10_000)
        );
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!(a.warmup, Duration::from_secs(2));
        assert_eq!(a.read_ratio, 0.9);
        assert_eq!(a.prefix, "/corral-bench");
        let a = Cli::parse_from([
            "bench",
            "--workload",
            "get-children",
            "--json",
            "-",
            "--duration",
            "5s",
        ])
        .bench;
        assert_eq!(a.workload, Workload::GetChildren);
        assert_eq!(a.json.as_deref(), Some("-"));
        assert_eq!(a.duration, Duration::from_secs(5));
    }

    #[test]
    fn chart_is_a_subcommand() {
        let a = Cli::parse_from(["bench", "chart", "--input", "r.json", "--output", "c.png"]).bench;
        match a.tool {
            Some(BenchTool::Chart(c)) => {
                assert_eq!(c.input, std::path::PathBuf::from("r.json"));
                assert_eq!(c.output, std::path::PathBuf::from("c.png"));
                assert_eq!(c.width, 1600);
            }
            None => panic!("chart not parsed"),
        }
        assert!(Cli::parse_from(["bench"]).bench.tool.is_none());
        assert!(Cli::try_parse_from([
            "bench",
            "--workload",
            "set",
            "chart",
            "--input",
            "r.json",
            "--output",
            "c.png",
        ])
        .is_err());
    }

    #[test]
    fn stall_timeout_defaults_to_the_session_timeout_and_rejects_zero() {
        let a = Cli::parse_from(["bench"]).bench;
        assert_eq!(stall_timeout(&a).unwrap(), Duration::from_secs(30));
        let a = Cli::parse_from(["bench", "--session-timeout", "4s"]).bench;
        assert_eq!(stall_timeout(&a).unwrap(), Duration::from_secs(10));
        let a = Cli::parse_from(["bench", "--stall-timeout", "1500ms"]).bench;
        assert_eq!(stall_timeout(&a).unwrap(), Duration::from_millis(1500));
        let a = Cli::parse_from(["bench", "--stall-timeout", "0s"]).bench;
        assert!(matches!(stall_timeout(&a), Err(BenchError::Args(m)) if m.contains("above zero")));
    }

    /// Answers every handshake and then never replies to a request.
    async fn silent_server() -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut hs = vec![0u8; i32::from_be_bytes(len) as usize];
                    if s.read_exact(&mut hs).await.is_err() {
                        return;
                    }
                    let mut w = crate::jute::Writer::new();
                    w.write_i32(0);
                    crate::jute::ConnectResponse {
                        protocol_version: 0,
                        timeout_ms: 30_000,
                        session_id: 0x1234,
                        passwd: Bytes::from_static(&[0; 16]),
                        read_only: false,
                    }
                    .write(&mut w, true);
                    let mut out = w.into_inner();
                    let n = (out.len() - 4) as i32;
                    out[..4].copy_from_slice(&n.to_be_bytes());
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                    // Swallow requests until the client hangs up.
                    let mut sink = [0u8; 4096];
                    while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_server_that_stops_answering_ends_the_run_after_the_stall_timeout() {
        let addr = silent_server().await.to_string();
        let a = Cli::parse_from([
            "bench",
            "--server",
            addr.as_str(),
            "--workload",
            "set",
            "--clients",
            "1",
            "--keys",
            "1",
            "--duration",
            "1m",
            "--stall-timeout",
            "300ms",
        ])
        .bench;
        // The outer limit only turns a regression into a failure instead of a hang.
        let ran = tokio::time::timeout(Duration::from_secs(120), run_async(&a)).await;
        let msg = match ran.expect("the run did not end on the stall") {
            Ok((_, failure)) => failure.expect("the run should have failed"),
            Err(e) => e.to_string(),
        };
        assert!(
            msg.contains(&format!("no reply from {addr} for 300 ms")),
            "{msg}"
        );
    }

    #[test]
    fn spans_read_as_seconds_or_milliseconds() {
        assert_eq!(client::span(Duration::from_secs(30)), "30 s");
        assert_eq!(client::span(Duration::from_millis(1500)), "1500 ms");
    }

    #[test]
    fn paths_are_dealt_round_robin() {
        let d = deal((0..5).map(|i| i.to_string()).collect(), 2);
        assert_eq!(d, vec![vec!["0", "2", "4"], vec!["1", "3"]]);
    }

    #[test]
    fn measured_window_is_cut_short_by_an_abort() {
        let t = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(window(t, t + s(10), t + s(12)), s(10));
        assert_eq!(window(t, t + s(10), t + s(4)), s(4));
        assert_eq!(window(t + s(2), t + s(10), t + s(1)), Duration::ZERO);
    }

    #[test]
    fn a_watch_stall_says_which_watchers_wait_for_what_on_which_server() {
        let n = 6;
        let now = Instant::now();
        let sh = WatchShared {
            key: "/k".into(),
            watchers: n,
            armed: AtomicUsize::new(0),
            all_armed: tokio::sync::Notify::new(),
            base: now,
            set_at_ns: AtomicU64::new(0),
            measure_from: now,
            stall: Duration::from_secs(30),
            stop: CancellationToken::new(),
            waiting: (0..n).map(|_| AtomicU8::new(WAITING_FOR_EVENT)).collect(),
            sets: AtomicU64::new(7),
            event_of_set: (0..n).map(|_| AtomicU64::new(7)).collect(),
            early_events: AtomicU64::new(0),
        };
        // Watchers 0, 2, 4 are on server a, 1, 3, 5 on server b (as connect_all spreads them).
        sh.event_of_set[2].store(6, Ordering::Release);
        sh.event_of_set[4].store(6, Ordering::Release);
        sh.waiting[3].store(WAITING_FOR_REPLY, Ordering::Release);
        let servers = ["a:1".to_string(), "b:2".to_string()];
        assert_eq!(
            sh.stall_report(&servers),
            "a:1: 2 watchers without the event of set 7, 0 waiting for a getData reply; \
             b:2: 0 watchers without the event of set 7, 1 waiting for a getData reply"
        );
        sh.early_events.store(3, Ordering::Release);
        assert!(sh
            .stall_report(&servers)
            .ends_with("; 3 events arrived before the reply to the getData that set the watch"));
    }
}
