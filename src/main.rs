//! The `corral` binary: argument parsing and start-up only.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: corral::alloc::Allocator = corral::alloc::Allocator {};

#[derive(Parser)]
#[command(
    name = "corral",
    version,
    about = "A ZooKeeper-compatible coordination service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server (standalone, or a quorum member when the config lists server.N lines).
    Server {
        /// Path to a zoo.cfg-format file.
        #[arg(default_value = "conf/zoo.cfg")]
        config: PathBuf,
    },
    /// Load generator speaking the ZooKeeper client protocol (Corral or Apache ZooKeeper).
    Bench(corral::bench::BenchArgs),
    /// Inspect the write-ahead log (read-only; safe beside a running server).
    Log(corral::tools::LogArgs),
    /// Inspect a snapshot (read-only; safe beside a running server).
    Snap(corral::tools::SnapArgs),
    /// Delete old snapshots and the log segments only they needed.
    Purge(corral::tools::PurgeArgs),
    /// Import an Apache ZooKeeper data directory (snapshot + logs) into a Corral data directory.
    #[command(name = "import-zk")]
    ImportZk(corral::import::ImportArgs),
    /// zkCli.sh-style client: `corral cli [-server host:port,...[/chroot]] [COMMAND ARGS...]`
    /// (interactive without a command); recipes `lock`, `elect`, `watch`, `register`.
    Cli(corral::cli::CliArgs),
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corral: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORRAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Server { config } => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
                // One core task owns the tree, so more threads only help the connection
                // tasks; leave the other half of the machine to the log writer and the
                // kernel's network work (and to the other members of an ensemble that shares
                // the machine). Measured on 2 cores: a 3-member ensemble serves sessions 1.7×
                // and writes 1.2× faster with one worker each, standalone is unchanged.
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                builder.worker_threads((cpus / 2).clamp(1, 8));
            }
            let rt = builder
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            // The future handed to block_on runs on this (main) thread, not on a worker: the
            // accept loop there cost every new connection two cross-thread wake-ups (worker
            // sees the listener ready, wakes main; main spawns the connection, wakes a
            // worker). Spawned, it runs on the worker that also polls the sockets.
            let server =
                rt.spawn(async move { corral::server::start::run_from_config(&config).await });
            rt.block_on(server).context("the server task failed")??;
            Ok(())
        }
        Command::Bench(args) => Ok(corral::bench::run(args)?),
        Command::Log(args) => Ok(corral::tools::run_log(args)?),
        Command::Snap(args) => Ok(corral::tools::run_snap(args)?),
        Command::Purge(args) => Ok(corral::tools::run_purge(args)?),
        Command::ImportZk(args) => Ok(corral::import::run(args)?),
        Command::Cli(args) => std::process::exit(corral::cli::main(args)),
    }
}
