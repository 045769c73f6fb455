//! `log-writer`: parses arguments and the environment, sets up logging, and runs
//! [`log_output::writer::run`] until SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context;
use log_output::{config::WriterConfig, writer};
use service_kit::{
    cli::{Binary, run_main},
    config::EXIT_USAGE,
    shutdown::{self, Draining, Flavor},
    telemetry,
};
use shared_fs::mounts;

fn main() -> ExitCode {
    let binary = Binary {
        name: "log-writer",
        version: env!("CARGO_PKG_VERSION"),
        help: log_output::config::WRITER_HELP,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    run_main(binary, &args, |env| WriterConfig::from_env(&env), run)
}

fn run(config: WriterConfig) -> anyhow::Result<()> {
    // Before anything touches the volume: a mount whose locks would be local to this node is
    // refused like a malformed variable (SPEC §7.7).
    if let Err(refusal) = mounts::check(&config.data_dir) {
        eprintln!("log-writer: {refusal}");
        std::process::exit(EXIT_USAGE);
    }
    let stdout = writer::Stdout::spawn().context("starting the stdout writer thread")?;
    // One task plus the blocking pool for the file I/O: a worker thread per core would idle.
    let result = shutdown::block_on(Flavor::CurrentThread, async {
        let draining = Draining::default();
        shutdown::install(&draining)?;
        let id = uuid::Uuid::new_v4();
        writer::run(config, id, draining.started(), stdout.sink()).await?;
        Ok(())
    });
    // The last entries reach stdout before the exit, unless stdout has stalled.
    stdout.flush(telemetry::FLUSH_AT_EXIT);
    result
}
