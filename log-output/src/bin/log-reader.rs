//! `log-reader`: parses arguments and the environment, sets up logging, binds `PORT` and serves
//! [`log_output::reader::app`] until SIGTERM or SIGINT, then drains (SPEC §6).

use std::process::ExitCode;

use anyhow::Context;
use log_output::{config::ReaderConfig, reader, volume};
use service_kit::{
    cli::{Binary, run_main},
    http,
    shutdown::Draining,
};

fn main() -> ExitCode {
    let binary = Binary {
        name: "log-reader",
        version: env!("CARGO_PKG_VERSION"),
        help: log_output::config::READER_HELP,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    run_main(binary, &args, |env| ReaderConfig::from_env(&env), run)
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
        config.shutdown_delay,
    )
    .await?;
    tracing::info!("drained; exiting");
    Ok(())
}
