//! The pingpong binary: parses the command line and the environment, then serves. Everything
//! else lives in the library so tests reach it.

use std::{env, path::Path, process::ExitCode};

use anyhow::Context;
use pingpong::{config::Config, forward::HttpForward, operator, routes};
use service_kit::{
    cli::{self, Binary, run_main, usage_error},
    config::{EXIT_USAGE, check_utf8, process_env},
    http,
    shutdown::{self, Draining, Flavor},
};
use shared_fs::{CounterFile, leadership::LeaderMode, mounts};

const HELP: &str = concat!(
    "\
pingpong: GET /pingpong answers `pong N` and durably increments a counter on the shared volume.

USAGE:
    pingpong                     serve HTTP
    pingpong counter get         print the count (a read-only or full volume too)
    pingpong counter set N       set the count (repairs a corrupt file), under the same lock;
                                 what is not a regular file where a counter file should be
                                 is moved aside to <name>.corrupt-<unix time> and named
    pingpong --help | --version

ENVIRONMENT (unset means the default; a malformed value exits with status 2):
    PORT       TCP port                                   [default: 3000]
    LISTEN_ADDRESS
               the IP address to listen on, e.g. 127.0.0.1 or ::1 for this host only;
               unset: every address, IPv6 and IPv4 ([::] taking IPv4 too; 0.0.0.0 on a
               host without IPv6)                         [default: every address]
    DATA_DIR   the shared volume, created if missing      [default: files]
    RUST_LOG   tracing filter; logs go to stderr          [default: info]
    LOG_FORMAT text or json: one line per event, or one JSON object per line with
               timestamp, level, message and fields       [default: text]
    SHUTDOWN_DELAY
               after SIGTERM, keep serving this long with /readyz already 503, then
               drain; 0s to 60s, e.g. 5s behind a load balancer  [default: 0s]
    ADVERTISE_ADDR
               this pod's IP address (the downward API's status.podIP), e.g. 10.42.1.7
               or fd00::7: leader mode, where one replica keeps the counter's lock and
               the others forward their increments to it on INTERNAL_PORT; unset: the
               replicas take turns at the lock             [default: unset]
    INTERNAL_PORT
               leader mode's internal port, on LISTEN_ADDRESS; for pingpong pods only
               (never in a Service); 0 picks a free one   [default: 3001]
    VOLUME_KIND
               auto, local or network: how the count's record is read; auto takes ext4,
               XFS, Btrfs, tmpfs, ZFS and the like for one node's filesystem and anything
               else (NFS, CephFS, SMB, FUSE) for one shared by several nodes, read past
               its client's caches. Say local only for a volume no other node mounts
                                                          [default: auto]

ENDPOINTS:
    GET /pingpong   `pong N`: N requests were answered before this one; sent once durable.
                    Only GET: HEAD and every other method are 405 and hand out nothing
    GET /pings      the current count, no increment (HEAD too, as on the routes below)
    GET /healthz    200 while the process runs
    GET /readyz     200 when the counter is valid, below u64::MAX, the volume writable,
                    durable writes work and the counter's lock is not awaited for over
                    1 s (another process holds it), else 503 + reason
    GET /metrics    Prometheus text

FILES in DATA_DIR:
    pingpong_counter.txt        the count and a newline, replaced atomically before the lock
                                is given back; at most 64 bytes are read: a longer file is
                                corrupt (too large), never loaded
    pingpong_counter.txt.lock   the cross-process lock, and the durable record (two
                                checksummed slots, written in place); never delete it

",
    service_kit::http_limits_help!(),
    "    A /pingpong that times out while its increment is still queued hands out no number.
"
);

/// In leader mode, how long the internal endpoint goes on answering 421 after the writer has
/// handed over (see `serve`); within SPEC §6's grace period with the writer's exit and the drain.
const INTERNAL_AFTER_HAND_OVER: std::time::Duration = std::time::Duration::from_secs(1);

/// How long the exit waits for the counter writer to publish and give the lock back; within
/// SPEC §6's `SHUTDOWN_DELAY` + 10 s with the drain's 8 s.
const WRITER_EXIT: std::time::Duration = std::time::Duration::from_secs(1);

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
    // Before anything touches the volume: a mount whose locks would be local to this node is
    // refused like a malformed variable (SPEC §7.7).
    if let Err(refusal) = mounts::check(&config.data_dir) {
        eprintln!("pingpong: {refusal}");
        std::process::exit(EXIT_USAGE);
    }
    shutdown::block_on(Flavor::MultiThread, async {
        // First, before anything touches the volume: a SIGTERM from here on is never lost.
        let draining = Draining::default();
        shutdown::install(&draining)?;
        let file = CounterFile::in_dir(&config.data_dir).with_volume_kind(config.volume_kind);
        let listener = http::bind(config.listen_address, config.port).with_context(|| {
            format!(
                "listening on {} port {}",
                config.listen_address, config.port
            )
        })?;
        let addr = listener.local_addr().context("reading the bound address")?;
        // The volume is checked in the background: a volume that hangs must not keep the server
        // from answering /healthz, /readyz (503) or SIGTERM. A problem is not fatal either: the
        // server answers 503 with the reason and recovers once the volume or file is repaired,
        // rather than crash-looping.
        tokio::task::spawn_blocking({
            let file = file.clone();
            let data_dir = config.data_dir.clone();
            move || check_volume(&data_dir, &file)
        });
        let internal = match config.advertise_addr {
            Some(ip) => Some(internal_listener(&config, ip)?),
            None => None,
        };
        let leader_mode = internal.as_ref().map(|(_, address)| LeaderMode {
            address: *address,
            forward: Box::new(HttpForward::default()),
        });
        let (app, writer, door) =
            routes::service_with_leader_mode(file, draining.clone(), leader_mode);
        // The internal endpoint outlives the writer: after the hand-over it answers 421 until
        // the process exits, so that followers go for the lock instead of finding a connection
        // refused or cut (SPEC §6). It has its own drain, started once the writer has ended.
        let internal_draining = Draining::default();
        // A leader hands over once SHUTDOWN_DELAY is over; it publishes no more from SIGTERM on,
        // so that no publication (a rename that can wait for CephFS's tick) holds the
        // hand-over back: the successor publishes.
        tokio::spawn({
            let draining = draining.started();
            let door = door.clone();
            async move {
                draining.await;
                door.hand_over_soon();
            }
        });
        let internal_server = internal.map(|(listener, _)| {
            tokio::spawn(http::serve(
                listener,
                pingpong::internal::app(door),
                internal_draining.clone(),
                std::time::Duration::ZERO,
            ))
        });
        // The bound port, not the configured one: with PORT=0 the tests learn it from here.
        tracing::info!(port = addr.port(), address = %addr.ip(), data_dir = %config.data_dir.display(), "pingpong listening");
        http::serve(listener, app, draining, config.shutdown_delay)
            .await
            .context("serving HTTP")?;
        // The app is gone: the counter writer finishes, publishes and gives the lock back.
        // Bounded, so a volume that hangs cannot hold the exit past the grace period.
        if !tokio::task::spawn_blocking(move || writer.wait(WRITER_EXIT))
            .await
            .unwrap_or(false)
        {
            tracing::warn!(after = ?WRITER_EXIT, "the counter writer did not finish; exiting without it");
        }
        if let Some(server) = internal_server {
            // Followers learn of the hand-over from a 421 (or the block) and take the lock
            // within milliseconds; a forward reaching a listener that closes under it would be
            // reset, its outcome unknown, its callers failed. So the endpoint answers 421 a
            // while longer before it stops.
            tokio::time::sleep(INTERNAL_AFTER_HAND_OVER).await;
            internal_draining.start();
            let _ = tokio::time::timeout(WRITER_EXIT, server).await;
        }
        tracing::info!("pingpong stopped cleanly");
        Ok(())
    })
}

/// Leader mode's internal endpoint, bound (on `LISTEN_ADDRESS`, like the public port), and the
/// address advertised to the other replicas: `ADVERTISE_ADDR` with the bound port.
fn internal_listener(
    config: &Config,
    ip: std::net::IpAddr,
) -> anyhow::Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
    let listener = http::bind(config.listen_address, config.internal_port).with_context(|| {
        format!(
            "listening on {} port {} (INTERNAL_PORT)",
            config.listen_address, config.internal_port
        )
    })?;
    let port = listener
        .local_addr()
        .context("reading the internal endpoint's bound address")?
        .port();
    let advertised = std::net::SocketAddr::new(ip, port);
    tracing::info!(port, advertised = %advertised, "pingpong internal listening");
    Ok((listener, advertised))
}

/// Creates `DATA_DIR` if missing and logs whether the counter is usable.
fn check_volume(data_dir: &Path, file: &CounterFile) {
    if let Err(e) = std::fs::create_dir_all(data_dir) {
        tracing::error!(path = %data_dir.display(), error = %e, "cannot create DATA_DIR");
    }
    match file.probe() {
        Ok(count) => tracing::info!(path = %file.path().display(), count, "counter ready"),
        Err(error) => tracing::error!(%error, "counter unusable; answering 503 until repaired"),
    }
}

/// `pingpong counter get|set N`: the answer on stdout; logs, and the error if any, on stderr
/// in `LOG_FORMAT` like the server's.
fn counter_command(args: &[String]) -> ExitCode {
    let command = match operator::parse(args) {
        Ok(command) => command,
        Err(message) => return usage_error("pingpong", &message),
    };
    if let Err(error) = check_utf8(|var| env::var_os(var)) {
        return usage_error("pingpong", &error.to_string());
    }
    let format = match cli::logging(&process_env) {
        Ok(format) => format,
        Err(error) => return usage_error("pingpong", &error.to_string()),
    };
    let data_dir = service_kit::config::data_dir(&process_env);
    let kind = match pingpong::config::volume_kind(&process_env) {
        Ok(kind) => kind,
        Err(error) => return usage_error("pingpong", &error.to_string()),
    };
    // Both take the lock (`get` to bring the published file up to the record): refused where
    // the lock would be local to this node.
    if let Err(refusal) = mounts::check(&data_dir) {
        return usage_error("pingpong", &refusal.to_string());
    }
    let file = CounterFile::in_dir(&data_dir).with_volume_kind(kind);
    let result = operator::run(&command, &file).map(|line| println!("{line}"));
    cli::exit("pingpong", format, result.map_err(anyhow::Error::from))
}
