//! The metrics every Prometheus client library exports about its process, read from `/proc`
//! at scrape time only (nothing runs between scrapes): `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
//! `process_max_fds` and `process_start_time_seconds`, with the names, units and help of
//! Prometheus's Go client; and `build_info{version, commit}`, always 1, which tells the running
//! release apart on a dashboard.
//!
//! A `/proc` file that cannot be read leaves its metrics out of that scrape rather than
//! failing the scrape.

use std::fs;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::ConstCounter,
        gauge::{ConstGauge, Gauge},
    },
};

/// The workspace's version, the same for every crate (`version.workspace = true`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit the binary was built from: `BUILD_COMMIT` at build time, else `git rev-parse
/// HEAD` of this checkout, else `unknown` (a source archive); see `build.rs`.
pub const COMMIT: &str = env!("BUILD_COMMIT");

/// What `/proc/self/stat` says, in the units of the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub cpu_seconds: f64,
    /// Seconds after boot.
    pub start_after_boot: f64,
    pub virtual_bytes: u64,
    pub resident_bytes: u64,
}

/// Parses `/proc/<pid>/stat`; `None` if it is not what Linux writes. The name, in parentheses,
/// may hold spaces and parentheses: the fields are counted from the last `)`.
pub fn parse_stat(stat: &str, ticks_per_second: u64, page_size: u64) -> Option<Stat> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 of proc(5), the state, is the first after the name.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = ticks_per_second as f64;
    Some(Stat {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        start_after_boot: field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page_size,
    })
}

/// The boot time in seconds since the epoch, the `btime` line of `/proc/stat`.
pub fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// Collects the process metrics and `build_info` at each scrape.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let build = Gauge::<i64>::default();
        build.set(1);
        let labels = BuildLabels {
            version: VERSION,
            commit: COMMIT,
        };
        let mut metric = encoder.encode_descriptor(
            "build_info",
            "The version and commit this binary was built from; always 1.",
            None,
            build.metric_type(),
        )?;
        build.encode(metric.encode_family(&labels)?)?;

        let stat = fs::read_to_string("/proc/self/stat").ok().and_then(|stat| {
            let ticks = rustix::param::clock_ticks_per_second();
            parse_stat(&stat, ticks, rustix::param::page_size() as u64)
        });
        if let Some(stat) = stat {
            let cpu = ConstCounter::new(stat.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stat.resident_bytes as i64,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.virtual_bytes as i64,
            )?;
            let boot = fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| parse_boot_time(&s));
            if let Some(boot) = boot {
                let start = ConstGauge::new(boot as f64 + stat.start_after_boot);
                start.encode(encoder.encode_descriptor(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    None,
                    start.metric_type(),
                )?)?;
            }
        }
        // The listing's own descriptor is among the entries it lists.
        if let Ok(entries) = fs::read_dir("/proc/self/fd") {
            let open = entries.count().saturating_sub(1);
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                open as i64,
            )?;
        }
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(max) = limit.current {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                i64::try_from(max).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A real line of /proc/PID/stat, its name made awkward.
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 3 0 \
                    123456 104857600 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(stat, 100, 4096),
            Some(Stat {
                cpu_seconds: 3.0,
                start_after_boot: 1234.56,
                virtual_bytes: 104_857_600,
                resident_bytes: 2048 * 4096,
            })
        );
        assert_eq!(parse_stat("4242 (truncated) S 1", 100, 4096), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        let stat = "cpu  1 2 3\nintr 5\nbtime 1764000000\nprocesses 9\n";
        assert_eq!(parse_boot_time(stat), Some(1_764_000_000));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }
}
