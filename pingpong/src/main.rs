//! The pingpong binary: parses the command line and the environment, then serves. Everything
//! else lives in the library so tests reach it.

use std::{env, process::ExitCode};

use anyhow::Context;
use pingpong::{config::Config, operator, routes};
use service_kit::{
    cli::{Binary, run_main, usage_error},
    config::process_env,
    http,
    shutdown::Draining,
};
use shared_fs::CounterFile;

const HELP: &str = "\
pingpong: GET /pingpong answers `pong N` and durably increments a counter on the shared volume.

USAGE:
    pingpong                     serve HTTP
    pingpong counter get         print the count
    pingpong counter set N       set the count (repairs a corrupt file), under the same lock
    pingpong --help | --version

ENVIRONMENT (unset means the default; a malformed value exits with status 2):
    PORT       TCP port, bound on all interfaces          [default: 3000]
    DATA_DIR   the shared volume, created if missing      [default: files]
    RUST_LOG   tracing filter                             [default: info]
    SHUTDOWN_DELAY
               after SIGTERM, keep serving this long with /readyz already 503, then
               drain; 0s to 60s, e.g. 5s behind a load balancer  [default: 0s]

LIMITS (fixed; README, under attack):
    a request head must be complete within 10 s of the connection or of the previous answer
    heads over 16 KiB: 431; bodies over 16 KiB: 413; a request still running after 5 s: 503
    at most 512 connections (fewer under a low open-file limit): past it the longest-waiting
    idle connection is closed, or a new one gets 503 when every connection is busy

ENDPOINTS:
    GET /pingpong   `pong N`: N requests were answered before this one; sent once durable
    GET /pings      the current count, no increment
    GET /healthz    200 while the process runs
    GET /readyz     200 when the counter is valid and the volume writable, else 503 + reason
    GET /metrics    Prometheus text

FILES in DATA_DIR:
    pingpong_counter.txt        the count and a newline, replaced atomically
    pingpong_counter.txt.lock   the cross-process lock; never delete it
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "counter") {
        return counter_command(&args[1..]);
    }
    let binary = Binary {
        name: "pingpong",
        version: env!("CARGO_PKG_VERSION"),
        help: HELP,
    };
    run_main(binary, &args, |env| Config::from_env(&env), serve)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let file = CounterFile::in_dir(&config.data_dir);
        // A volume problem at start is not fatal: the server answers 503 with the reason and
        // recovers once the volume or the file is repaired, rather than crash-looping.
        if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
            tracing::error!(path = %config.data_dir.display(), error = %e, "cannot create DATA_DIR");
        }
        match file.probe() {
            Ok(count) => tracing::info!(path = %file.path().display(), count, "counter ready"),
            Err(error) => tracing::error!(%error, "counter unusable; answering 503 until repaired"),
        }
        let draining = Draining::default();
        let app = routes::app_for(file, draining.clone());
        let listener = http::bind(config.port)
            .await
            .with_context(|| format!("binding port {}", config.port))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        // The bound port, not the configured one: with PORT=0 the tests learn it from here.
        tracing::info!(port = addr.port(), data_dir = %config.data_dir.display(), "pingpong listening");
        http::serve(listener, app, draining, config.shutdown_delay).await.context("serving HTTP")?;
        tracing::info!("pingpong stopped cleanly");
        Ok(())
    })
}

fn counter_command(args: &[String]) -> ExitCode {
    let command = match operator::parse(args) {
        Ok(command) => command,
        Err(message) => return usage_error("pingpong", &message),
    };
    let data_dir = service_kit::config::data_dir(&process_env);
    match operator::run(&command, &data_dir) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
