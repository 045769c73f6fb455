//! `log-reader`: parses arguments and the environment, sets up logging, binds `PORT` and serves
//! [`log_output::reader::app`] until SIGTERM or SIGINT, then drains (SPEC §6).

use std::process::ExitCode;

use anyhow::Context;
use log_output::{config::ReaderConfig, reader, volume};
use service_kit::{
    cli::{Binary, run_main},
    http,
    shutdown::{self, Draining, Flavor},
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

fn run(config: ReaderConfig) -> anyhow::Result<()> {
    shutdown::block_on(Flavor::MultiThread, async {
        // First, before anything touches the volume: a SIGTERM from here on is never lost.
        let draining = Draining::default();
        shutdown::install(&draining)?;
        let listener = http::bind(config.listen_address, config.port).with_context(|| {
            format!(
                "listening on {} port {}",
                config.listen_address, config.port
            )
        })?;
        // Start-up touches the volume, which may hang: a signal meanwhile ends it at once.
        let start = async {
            volume::create_data_dir(&config.data_dir).await?;
            anyhow::Ok(reader::app(config.data_dir.clone(), draining.clone()).await)
        };
        let app = tokio::select! {
            biased;
            () = draining.started() => return Ok(()),
            app = start => app?,
        };
        tracing::info!(
            addr = %listener.local_addr()?,
            data_dir = %config.data_dir.display(),
            "log-reader listening"
        );
        http::serve(listener, app, draining, config.shutdown_delay).await?;
        tracing::info!("drained; exiting");
        Ok(())
    })
}
