//! `log-writer`: parses arguments and the environment, sets up logging, and runs
//! [`log_output::writer::run`] until SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context;
use std::{sync::Arc, time::Duration};

use axum::Router;
use log_output::{
    config::{WriterConfig, WriterHttp},
    writer::{self, WriterMetrics},
};
use prometheus_client::registry::Registry;
use service_kit::{
    cli::{Binary, run_main},
    config::EXIT_USAGE,
    http::{self, ReadyCheck},
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
    run_main(
        binary,
        &args,
        |env| Ok((WriterConfig::from_env(&env)?, WriterHttp::from_env(&env)?)),
        run,
    )
}

fn run((config, serve): (WriterConfig, WriterHttp)) -> anyhow::Result<()> {
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
        let mut registry = Registry::default();
        let metrics = WriterMetrics::register(&mut registry);
        let server = match serve.port {
            None => None,
            Some(port) => {
                let listener = http::bind(serve.listen_address, port).with_context(|| {
                    format!("listening on {} port {port}", serve.listen_address)
                })?;
                tracing::info!(addr = %listener.local_addr()?, "log-writer serving /healthz, /readyz, /metrics");
                let ready: ReadyCheck = Arc::new(|| Box::pin(async { Ok(()) }));
                let app = http::finish(Router::new(), registry, draining.clone(), ready);
                Some(tokio::spawn(http::serve(
                    listener,
                    app,
                    draining.clone(),
                    Duration::ZERO,
                )))
            }
        };
        writer::run_counted(config, id, draining.started(), stdout.sink(), metrics).await?;
        if let Some(server) = server {
            server.await??;
        }
        Ok(())
    });
    // The last entries reach stdout before the exit, unless stdout has stalled.
    stdout.flush(telemetry::FLUSH_AT_EXIT);
    result
}
