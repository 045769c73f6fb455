//! `log-reader`: parses arguments and the environment, sets up logging, binds `PORT` and serves
//! [`log_output::reader::app`] until SIGTERM or SIGINT, then drains (SPEC §6).

use std::process::ExitCode;

use anyhow::Context;
use log_output::{config::ReaderConfig, reader, volume};
use service_kit::{
    cli::{Flag, standard_flag},
    config::{EXIT_USAGE, process_env},
    http,
    shutdown::Draining,
    telemetry,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match standard_flag(&args) {
        Ok(Flag::Run) => {}
        Ok(Flag::Help) => {
            print!("{}", log_output::config::READER_HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Flag::Version) => {
            println!("log-reader {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => return usage_error(&message),
    }
    let (config, filter) = match (
        ReaderConfig::from_env(&process_env),
        telemetry::filter(&process_env),
    ) {
        (Ok(config), Ok(filter)) => (config, filter),
        (Err(error), _) | (_, Err(error)) => return usage_error(&error.to_string()),
    };
    telemetry::init(filter);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("log-reader: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("log-reader: {message}");
    ExitCode::from(EXIT_USAGE as u8)
}

#[tokio::main]
async fn run(config: ReaderConfig) -> anyhow::Result<()> {
    volume::create_data_dir(&config.data_dir).await?;
    let listener = http::bind(config.port)
        .await
        .with_context(|| format!("cannot listen on port {}", config.port))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        "log-reader listening"
    );
    let draining = Draining::default();
    http::serve(
        listener,
        reader::app(config.data_dir, draining.clone()),
        draining,
    )
    .await?;
    tracing::info!("drained; exiting");
    Ok(())
}
