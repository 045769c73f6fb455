//! Logging: `tracing` events, one line each, on stderr (stdout belongs to log-writer's
//! entries), filtered by `RUST_LOG` (default `info`) and shaped by `LOG_FORMAT` (SPEC §2):
//! `text` (the default) for people, `json` ([`json`]) for log collectors. A malformed variable is
//! a configuration error, not a silently ignored one.
//!
//! Logging never holds up serving: events are formatted on the thread that emits them and handed
//! to one [`LineQueue`] drained into stderr by a dedicated thread. When stderr stalls (a pipe
//! nobody reads, a log collector that is down, Ctrl-S in a terminal) lines are dropped and
//! counted in [`dropped_lines`], which both HTTP services export as `log_lines_dropped_total`;
//! once stderr takes writes again one line says how many are missing. An event the filter leaves
//! out costs no formatting and no allocation.
//!
//! tracing-subscriber's `EnvFilter` and `fmt` layer do the filtering and the text format; the
//! queue ([`crate::nonblocking`]) and the JSON format ([`json`]) are hand-written, each module
//! saying why.

pub mod json;

use std::{
    io,
    sync::{LazyLock, OnceLock},
    time::Duration,
};

use prometheus_client::metrics::counter::Counter;
pub use tracing_subscriber::EnvFilter;
use tracing_subscriber::{Layer, fmt::MakeWriter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{
    config::{ConfigError, parse_var},
    nonblocking::LineQueue,
};

/// How many lines may wait for stderr: at a typical 150 bytes, some 75 KiB, a second or more of
/// a busy server's request lines; every line is far under 1 KiB, so never more than 512 KiB.
pub const QUEUE_LINES: usize = 512;

/// How long a process about to exit waits for its last lines to reach stderr: a healthy stderr
/// takes them in microseconds; a stalled one must not hold up an exit SPEC §6 bounds at
/// `SHUTDOWN_DELAY` + 10 s, of which the drain may already have taken 8 s and pingpong's
/// counter writer 1 s.
pub const FLUSH_AT_EXIT: Duration = Duration::from_millis(500);

/// `LOG_FORMAT`: how each event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-03-30T12:15:17.705123Z  INFO request{method=GET route=/pingpong}: finished
    /// processing request status=200 latency_us=412`
    #[default]
    Text,
    /// One JSON object per line (see [`json`]).
    Json,
}

/// Parses `RUST_LOG`; call before anything else so a bad filter fails fast.
pub fn filter(lookup: &impl Fn(&str) -> Option<String>) -> Result<EnvFilter, ConfigError> {
    Ok(parse_var(
        lookup,
        "RUST_LOG",
        "a tracing filter such as info or pingpong=debug,warn",
        |v| EnvFilter::try_new(v).ok(),
    )?
    .unwrap_or_else(|| EnvFilter::new("info")))
}

/// Parses `LOG_FORMAT`: `text` or `json`, exactly (a log pipeline configured for one must not
/// silently get the other).
pub fn format(lookup: &impl Fn(&str) -> Option<String>) -> Result<LogFormat, ConfigError> {
    Ok(
        parse_var(lookup, "LOG_FORMAT", "text or json", |v| match v {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        })?
        .unwrap_or_default(),
    )
}

/// Lines dropped because stderr stalled, since the process started: `log_lines_dropped_total`.
pub fn dropped_lines() -> Counter {
    DROPPED.clone()
}

static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// The queue in front of stderr, once logging is installed.
static STDERR: OnceLock<LineQueue> = OnceLock::new();

/// Installs the global subscriber in the text format.
pub fn init(filter: EnvFilter) {
    init_with(filter, LogFormat::Text);
}

/// Installs the global subscriber: `filter`, `format`, and the non-blocking writer to stderr.
/// If the writer thread cannot be started, logging goes to stderr directly.
pub fn init_with(filter: EnvFilter, format: LogFormat) {
    let queue = LineQueue::spawn(
        "stderr-writer",
        io::stderr(),
        QUEUE_LINES,
        dropped_lines(),
        |n| {
            tracing::warn!(
                dropped = n,
                "log lines dropped: stderr was not taking them (see log_lines_dropped_total)"
            );
        },
    );
    let writer = match queue {
        Ok(queue) => Stderr::Queued(STDERR.get_or_init(|| queue)),
        Err(error) => {
            eprintln!("cannot start the log writer thread, logging directly: {error}");
            Stderr::Direct
        }
    };
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .with_target(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .fmt_fields(json::JsonFields)
            .event_format(json::JsonEvent)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .init();
}

/// Writes `line` (a newline is added) to stderr through the same queue as the log, so it keeps
/// its place among the log lines and never blocks: for the one plain line a binary prints
/// before exiting with an error.
pub fn write_line(line: &str) {
    match STDERR.get() {
        Some(queue) => queue.push(format!("{line}\n").as_bytes()),
        None => eprintln!("{line}"),
    }
}

/// Waits, at most `within`, until every line logged so far is on stderr: call it before the
/// process exits.
pub fn flush(within: Duration) {
    if let Some(queue) = STDERR.get() {
        queue.flush(within);
    }
}

/// Where the formatter writes each event.
#[derive(Debug, Clone, Copy)]
enum Stderr {
    Queued(&'static LineQueue),
    Direct,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Stderr {
        *self
    }
}

impl io::Write for Stderr {
    /// The formatter writes each event with one `write_all` of the whole line.
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        match self {
            Stderr::Queued(queue) => {
                queue.push(line);
                Ok(line.len())
            }
            Stderr::Direct => io::stderr().write(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixed_env;

    #[test]
    fn log_format_is_text_by_default_json_on_request_and_nothing_else() {
        assert_eq!(format(&fixed_env(&[])), Ok(LogFormat::Text));
        assert_eq!(
            format(&fixed_env(&[("LOG_FORMAT", "")])),
            Ok(LogFormat::Text)
        );
        assert_eq!(
            format(&fixed_env(&[("LOG_FORMAT", "text")])),
            Ok(LogFormat::Text)
        );
        assert_eq!(
            format(&fixed_env(&[("LOG_FORMAT", "json")])),
            Ok(LogFormat::Json)
        );
        assert_eq!(
            format(&fixed_env(&[("LOG_FORMAT", "JSON")]))
                .expect_err("case matters")
                .to_string(),
            r#"invalid LOG_FORMAT="JSON": expected text or json"#
        );
        for bad in ["logfmt", " json", "json\n", "text,json"] {
            let lookup = |var: &str| (var == "LOG_FORMAT").then(|| bad.to_owned());
            assert!(format(&lookup).is_err(), "{bad:?}");
        }
    }
}
