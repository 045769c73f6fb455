//! `log-writer`: parses arguments and the environment, sets up logging, and runs
//! [`log_output::writer::run`] until SIGTERM or SIGINT.

use std::process::ExitCode;

use log_output::{config::WriterConfig, writer};
use service_kit::{
    cli::{Flag, standard_flag},
    config::{EXIT_USAGE, process_env},
    shutdown, telemetry,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match standard_flag(&args) {
        Ok(Flag::Run) => {}
        Ok(Flag::Help) => {
            print!("{}", log_output::config::WRITER_HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Flag::Version) => {
            println!("log-writer {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => return usage_error(&message),
    }
    let (config, filter) = match (
        WriterConfig::from_env(&process_env),
        telemetry::filter(&process_env),
    ) {
        (Ok(config), Ok(filter)) => (config, filter),
        (Err(error), _) | (_, Err(error)) => return usage_error(&error.to_string()),
    };
    telemetry::init(filter);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("log-writer: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("log-writer: {message}");
    ExitCode::from(EXIT_USAGE as u8)
}

// One task plus the blocking pool for the file I/O: a worker thread per core would idle.
#[tokio::main(flavor = "current_thread")]
async fn run(config: WriterConfig) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4();
    writer::run(config, id, shutdown::signal_received(), writer::print_entry).await?;
    Ok(())
}
