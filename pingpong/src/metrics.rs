//! pingpong's own metrics, fed by the counter writer after every durable write. Together they
//! show whether group commit works: the batch-size histogram grows with load while the
//! durable-write latency stays flat.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        MetricType,
        counter::Counter,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use shared_fs::{
    BatchReport, Observe,
    group_commit::{FollowersDoor, Waiting},
};

#[derive(Debug, Clone)]
pub struct CounterMetrics {
    increments: Counter,
    failed_writes: Counter,
    abandoned: Counter,
    forwarded: Counter,
    unknown: Counter,
    batch_size: Histogram,
    write_seconds: Histogram,
}

impl CounterMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = CounterMetrics {
            increments: Counter::default(),
            failed_writes: Counter::default(),
            abandoned: Counter::default(),
            forwarded: Counter::default(),
            unknown: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            write_seconds: Histogram::new(exponential_buckets(0.000_125, 2.0, 14)),
        };
        registry.register(
            "pingpong_increments",
            "Increments made durable (numbers handed out)",
            metrics.increments.clone(),
        );
        registry.register(
            "pingpong_failed_writes",
            "Durable writes that failed; each failed every request of its batch",
            metrics.failed_writes.clone(),
        );
        registry.register(
            "pingpong_abandoned",
            "Numbers written durably whose request had gone (timed out, client left): skipped, never handed out",
            metrics.abandoned.clone(),
        );
        registry.register(
            "pingpong_forwarded",
            "Leader mode: increments this replica forwarded to the leader and handed out",
            metrics.forwarded.clone(),
        );
        registry.register(
            "pingpong_forward_unknown",
            "Leader mode: increments forwarded with no answer: perhaps made durable by the leader, never handed out",
            metrics.unknown.clone(),
        );
        registry.register(
            "pingpong_batch_size",
            "Increments carried by one durable write (group commit)",
            metrics.batch_size.clone(),
        );
        registry.register(
            "pingpong_durable_write_seconds",
            "The durable record's write and fdatasync for one batch, after the lock is held",
            metrics.write_seconds.clone(),
        );
        metrics
    }
}

/// Fed by the counter writer thread.
impl Observe for CounterMetrics {
    fn batch(&mut self, batch: &BatchReport) {
        if batch.ok {
            self.increments.inc_by(batch.size);
        } else {
            self.failed_writes.inc();
        }
        self.batch_size.observe(batch.size as f64);
        self.write_seconds.observe(batch.elapsed.as_secs_f64());
    }

    fn abandoned(&mut self, numbers: &[u64]) {
        self.abandoned.inc_by(numbers.len() as u64);
    }

    fn forwarded(&mut self, n: u64) {
        self.forwarded.inc_by(n);
    }

    fn unknown(&mut self, n: u64) {
        self.unknown.inc_by(n);
    }
}

/// `pingpong_leader` (1 while this replica leads) and `pingpong_leader_epoch` (the epoch it leads
/// or last followed), read at each scrape.
#[derive(Debug)]
pub struct LeaderGauges(pub FollowersDoor);

impl Collector for LeaderGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let role = self.0.role();
        let leading = encoder.encode_descriptor(
            "pingpong_leader",
            "1 while this replica leads: holds the counter's lock and makes every durable write",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(role.leading().is_some())).encode(leading)?;
        let epoch = encoder.encode_descriptor(
            "pingpong_leader_epoch",
            "The epoch this replica leads or last followed (0 before any)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(role.epoch()).unwrap_or(i64::MAX)).encode(epoch)
    }
}

/// `pingpong_waiting`: the increments queued for the counter writer, read at each scrape. It
/// returns to 0 whenever the writer keeps up, and while the lock is held elsewhere it counts
/// only requests still waiting: one that gave up (timed out, client gone) leaves the queue.
#[derive(Debug)]
pub struct WaitingGauge(pub Waiting);

impl Collector for WaitingGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let waiting = i64::try_from(self.0.get()).unwrap_or(i64::MAX);
        let metric = encoder.encode_descriptor(
            "pingpong_waiting",
            "Increments queued for the counter writer (waiting for a batch or for the lock)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(waiting).encode(metric)
    }
}
