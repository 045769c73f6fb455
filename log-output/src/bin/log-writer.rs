//! `log-writer`: parses arguments and the environment, sets up logging, and runs
//! [`log_output::writer::run`] until SIGTERM or SIGINT.

use std::process::ExitCode;

use log_output::{config::WriterConfig, writer};
use service_kit::{
    cli::{Binary, run_main},
    shutdown,
};

fn main() -> ExitCode {
    let binary = Binary {
        name: "log-writer",
        version: env!("CARGO_PKG_VERSION"),
        help: log_output::config::WRITER_HELP,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    run_main(binary, &args, |env| WriterConfig::from_env(&env), run)
}

// One task plus the blocking pool for the file I/O: a worker thread per core would idle.
#[tokio::main(flavor = "current_thread")]
async fn run(config: WriterConfig) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4();
    writer::run(config, id, shutdown::signal_received(), writer::print_entry).await?;
    Ok(())
}
