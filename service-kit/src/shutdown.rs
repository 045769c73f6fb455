//! SIGTERM (what Kubernetes sends) and SIGINT (Ctrl-C), the draining flag they set, and a
//! runtime that exits without waiting for threads stuck on the volume (SPEC §6).
//!
//! As PID 1 in a container nothing else handles SIGTERM: a signal that arrives before the
//! handlers exist is ignored by the kernel, and the process serves on until SIGKILL. So
//! [`install`] runs first thing, before anything touches the volume, and a signal that arrives
//! at any later moment, even before the server is built, is kept in [`Draining`] for whoever
//! waits on it. A second SIGINT (Ctrl-C again) exits at once, for an operator whose process is
//! stuck; a repeated SIGTERM changes nothing, because orchestrators repeat it (podman 4.3 sends
//! one container of a stopping pod two).

use std::{future::Future, sync::Arc};

use anyhow::Context;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

/// Exit status after a SIGINT during shutdown: the process did not drain.
pub const EXIT_FORCED: i32 = 1;

/// Set once shutdown starts; `/readyz` answers 503 from then on, and [`Draining::started`]
/// resolves. Cheap to clone: every clone is the same flag.
#[derive(Debug, Clone)]
pub struct Draining(Arc<watch::Sender<bool>>);

impl Default for Draining {
    fn default() -> Self {
        Draining(Arc::new(watch::Sender::new(false)))
    }
}

impl Draining {
    pub fn start(&self) {
        self.0.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has started, also when it started before this was called.
    pub fn started(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut seen = self.0.subscribe();
        async move {
            // The sender lives in `self`'s Arc and in every clone; an error means all of them
            // are gone, and then nobody can start draining any more.
            if seen.wait_for(|draining| *draining).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now (call it first thing inside the runtime): the
/// first signal starts `draining`; a SIGINT after that exits the process at once with
/// [`EXIT_FORCED`]; further SIGTERMs are logged and change nothing.
pub fn install(draining: &Draining) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let draining = draining.clone();
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = first, "shutting down");
        draining.start();
        loop {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM again: already shutting down"),
                _ = int.recv() => break,
            }
        }
        tracing::warn!(
            signal = "SIGINT",
            "second signal: exiting now without finishing in-flight work"
        );
        // Briefly: the operator wants out now, and a stalled stderr must not hold that up.
        crate::telemetry::flush(std::time::Duration::from_millis(200));
        std::process::exit(EXIT_FORCED);
    });
    Ok(())
}

/// Which runtime a binary runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// One worker per core: the HTTP servers.
    MultiThread,
    /// One thread plus the blocking pool: log-writer, which has one task.
    CurrentThread,
}

/// Runs `main` on a new runtime, then shuts the runtime down *without* waiting for blocking
/// threads. A thread stuck in `open` on a volume that does not answer (a hung mount, a FIFO
/// planted at a file's path) would otherwise keep the process alive after it has drained,
/// past the grace period, until SIGKILL.
pub fn block_on(
    flavor: Flavor,
    main: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut builder = match flavor {
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(main);
    runtime.shutdown_background();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn started_resolves_for_a_start_before_and_after_the_wait() {
        let before = Draining::default();
        before.start();
        before.started().await;

        let after = Draining::default();
        let waiting = tokio::spawn(after.started());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        after.clone().start();
        waiting.await.unwrap();
        assert!(after.is_draining());
    }
}
