//! Prometheus metrics: the registry every service adds its own metrics to, the request counter
//! and latency histogram by route, method and status, the process-wide metrics every HTTP
//! service exports (the accept loop's connections, the log lines dropped, [`process`]'s
//! `process_*` and `build_info`), and the `/metrics` text.
//!
//! Every label comes from a fixed set, never from what a client sent, so no client can grow the
//! label set (and with it memory and the `/metrics` body) without bound: the route label is the
//! matched route (`/pingpong`), else `unmatched`; the method label is a standard method, else
//! `other`.

pub mod process;

use std::{
    cell::RefCell,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    extract::MatchedPath,
    http::{HeaderMap, Method, header},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{
        EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder,
        NoLabelSet, text::encode,
    },
    metrics::{MetricType, TypedMetric, counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::telemetry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: RouteLabel,
    method: &'static str,
    status: u16,
}

/// The method as a label or log field: one of the nine standard methods, else `other`. HTTP
/// lets a client invent methods of any length; none of that reaches a label or a log line.
pub fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("other")
}

/// `http_requests_total{route, method, status}` and
/// `http_request_duration_seconds{route, method, status}`.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, LatencyHistogram>,
    /// Never reused within the process: tells apart the families in [`RESOLVED`].
    id: u64,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        HttpMetrics {
            requests: Family::default(),
            durations: Family::default(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = HttpMetrics::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by matched route, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's head read to its answer ready to send, by matched route, method and status",
            metrics.durations.clone(),
        );
        metrics
    }
}

/// The upper bounds of [`LatencyHistogram`]'s buckets, in microseconds: from 100 µs (an answer
/// from memory) through the milliseconds of a durable write to the 5 s request timeout.
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// A latency histogram with [`LATENCY_BUCKETS_US`] as its buckets, counted in whole
/// microseconds with one relaxed atomic add per bucket and one for the sum: prometheus-client's
/// `Histogram` takes a mutex for every observation, which both worker threads would contend
/// for on every request.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Arc<LatencyCells>);

#[derive(Debug, Default)]
struct LatencyCells {
    /// Observations per bucket, not cumulative; the last is above every bound (`+Inf`).
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US.partition_point(|bound| *bound < micros);
        self.0.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.0.sum_us.fetch_add(micros, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Each bucket's own count: the encoder adds them up.
        let mut count = 0;
        let mut buckets = [(0.0, 0); LATENCY_BUCKETS_US.len() + 1];
        let bounds = LATENCY_BUCKETS_US.iter().map(|us| *us as f64 / 1e6);
        for ((bucket, cell), bound) in buckets
            .iter_mut()
            .zip(&self.0.buckets)
            .zip(bounds.chain([f64::INFINITY]))
        {
            let observed = cell.load(Ordering::Relaxed);
            count += observed;
            *bucket = (bound, observed);
        }
        let sum = self.0.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// What the accept loop ([`crate::connections`]) counts: `http_connections_open`,
/// `http_connections_evicted_total` and `http_connections_refused_total`.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    /// Connections accepted and not yet closed, evicted ones still finishing included.
    pub open: Gauge,
    /// Connections closed to make room at the bound, or to free a descriptor when `accept`
    /// failed for lack of one; not those closed by the drain at shutdown.
    pub evicted: Counter,
    /// Connections answered `503` and closed because every connection was busy.
    pub refused: Counter,
}

/// The accept loop's metrics, one set per process like the accept loop itself (and like
/// logging): `connections::serve` counts here, and [`register_process_metrics`] puts them in
/// whichever registry `/metrics` renders, without threading them through the router.
pub fn connection_metrics() -> &'static ConnectionMetrics {
    static METRICS: LazyLock<ConnectionMetrics> = LazyLock::new(ConnectionMetrics::default);
    &METRICS
}

/// Adds the process-wide metrics to `registry`: the accept loop's connections, the log lines
/// dropped because stderr stalled, and [`process`]'s `process_*` and `build_info`.
pub fn register_process_metrics(registry: &mut Registry) {
    registry.register_collector(Box::new(process::ProcessCollector));
    let connections = connection_metrics();
    registry.register(
        "http_connections_open",
        "Connections open now, including evicted ones still finishing their request",
        connections.open.clone(),
    );
    registry.register(
        "http_connections_evicted",
        "Connections closed to make room at the connection bound or to free a descriptor",
        connections.evicted.clone(),
    );
    registry.register(
        "http_connections_refused",
        "Connections answered 503 and closed because every connection was busy",
        connections.refused.clone(),
    );
    registry.register(
        "log_lines_dropped",
        "Log lines dropped because stderr was not taking them (a stalled log collector)",
        telemetry::dropped_lines(),
    );
}

/// A counter and histogram of the family `family` already looked up on this thread.
struct Resolved {
    family: u64,
    labels: RequestLabels,
    counter: Counter,
    histogram: LatencyHistogram,
}

/// Most label sets kept per thread; past it the list starts again (only tests, with a family
/// each, come near it).
const RESOLVED_PER_THREAD: usize = 64;

thread_local! {
    /// The counters each thread has already found in their family. Counting an answer is then
    /// a short scan and one atomic increment, where the family's lookup costs a SipHash of the
    /// labels and a read lock shared by every thread (about 700 instructions per request). Exact
    /// all the same: the cached counter is the family's own, and a family never drops one.
    static RESOLVED: RefCell<Vec<Resolved>> = const { RefCell::new(Vec::new()) };
}

impl HttpMetrics {
    /// Counts one answer and its latency. The route is axum's own shared string, so labelling a
    /// request copies nothing.
    pub(crate) fn count(
        &self,
        route: Option<MatchedPath>,
        method: &'static str,
        status: u16,
        latency: Duration,
    ) {
        let labels = RequestLabels {
            route: RouteLabel(route),
            method,
            status,
        };
        RESOLVED.with_borrow_mut(|resolved| {
            if let Some(known) = resolved
                .iter()
                .find(|known| known.family == self.id && known.labels == labels)
            {
                known.counter.inc();
                known.histogram.observe(latency);
                return;
            }
            let counter = self.requests.get_or_create(&labels).clone();
            let histogram = self.durations.get_or_create(&labels).clone();
            counter.inc();
            histogram.observe(latency);
            if resolved.len() == RESOLVED_PER_THREAD {
                resolved.clear();
            }
            resolved.push(Resolved {
                family: self.id,
                labels,
                counter,
                histogram,
            });
        });
    }
}

/// The route label: the matched route, else `unmatched`.
#[derive(Debug, Clone)]
struct RouteLabel(Option<MatchedPath>);

impl RouteLabel {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl std::hash::Hash for RouteLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        self.as_str().encode(encoder)
    }
}

/// The content type of OpenMetrics text, which Prometheus asks for first.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of Prometheus's own text format, 0.0.4.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The registry as text: OpenMetrics when the scraper asks for it (Prometheus does, in its
/// `Accept` header), else Prometheus's text format 0.0.4, what `curl` and `promtool check
/// metrics` read, as Prometheus's Go client does.
pub fn render(registry: &Registry, request: &HeaderMap) -> Response {
    let mut body = String::new();
    if let Err(error) = encode(&mut body, registry) {
        tracing::error!(%error, "encoding metrics");
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let openmetrics = request
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (OPENMETRICS, body)
    } else {
        (PROMETHEUS_TEXT, prometheus_text(&body))
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// OpenMetrics text as Prometheus text 0.0.4. The samples are the same; what differs is
/// metadata: a counter's family is `x` in OpenMetrics and `x_total`, its sample's name, in
/// 0.0.4 (else `promtool check metrics` finds a family with no samples and samples with no
/// help), and 0.0.4 has no `# UNIT` and no `# EOF`.
fn prometheus_text(openmetrics: &str) -> String {
    let mut text = String::with_capacity(openmetrics.len() + 256);
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, doc) = help.split_once(' ').unwrap_or((help, ""));
            let counter = format!("# TYPE {name} counter");
            if lines.peek() == Some(&counter.as_str()) {
                lines.next();
                text.push_str(&format!(
                    "# HELP {name}_total {doc}\n# TYPE {name}_total counter\n"
                ));
                continue;
            }
        }
        text.push_str(line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(registry: &Registry) -> Vec<String> {
        let mut text = String::new();
        encode(&mut text, registry).unwrap();
        text.lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_family_counts_exactly_whatever_this_thread_has_resolved() {
        let (mut first, mut second) = (Registry::default(), Registry::default());
        let a = HttpMetrics::register(&mut first);
        let b = HttpMetrics::register(&mut second);
        for _ in 0..3 {
            a.count(None, "GET", 404, Duration::ZERO);
        }
        b.count(None, "GET", 404, Duration::ZERO);
        // More label sets than a thread keeps resolved: the list starts again, twice.
        for status in 1000..1000 + 2 * RESOLVED_PER_THREAD as u16 + 1 {
            a.count(None, "GET", status, Duration::ZERO);
        }
        a.count(None, "GET", 404, Duration::ZERO);
        b.count(None, "HEAD", 404, Duration::ZERO);

        let a_counts = counted(&first);
        assert_eq!(a_counts.len(), 2 * RESOLVED_PER_THREAD + 2);
        assert!(a_counts.contains(
            &r#"http_requests_total{route="unmatched",method="GET",status="404"} 4"#.to_owned()
        ));
        assert!(a_counts.contains(
            &r#"http_requests_total{route="unmatched",method="GET",status="1128"} 1"#.to_owned()
        ));
        let mut b_counts = counted(&second);
        b_counts.sort_unstable();
        assert_eq!(
            b_counts,
            [
                r#"http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
                r#"http_requests_total{route="unmatched",method="HEAD",status="404"} 1"#,
            ]
        );
    }

    #[test]
    fn latency_goes_to_the_first_bucket_whose_bound_it_does_not_exceed() {
        let mut registry = Registry::default();
        let histogram = LatencyHistogram::default();
        registry.register("latency_seconds", "Latency", histogram.clone());
        for micros in [
            0, 100, 101, 250, 4_999_999, 5_000_000, 5_000_001, 60_000_000,
        ] {
            histogram.observe(Duration::from_micros(micros));
        }
        // Sub-microsecond parts are not counted.
        histogram.observe(Duration::from_nanos(100_999));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "latency_seconds_sum 75.000551",
                "latency_seconds_count 9",
                r#"latency_seconds_bucket{le="0.0001"} 3"#,
                r#"latency_seconds_bucket{le="0.00025"} 5"#,
                r#"latency_seconds_bucket{le="0.0005"} 5"#,
                r#"latency_seconds_bucket{le="0.001"} 5"#,
                r#"latency_seconds_bucket{le="0.0025"} 5"#,
                r#"latency_seconds_bucket{le="0.005"} 5"#,
                r#"latency_seconds_bucket{le="0.01"} 5"#,
                r#"latency_seconds_bucket{le="0.025"} 5"#,
                r#"latency_seconds_bucket{le="0.05"} 5"#,
                r#"latency_seconds_bucket{le="0.1"} 5"#,
                r#"latency_seconds_bucket{le="0.25"} 5"#,
                r#"latency_seconds_bucket{le="0.5"} 5"#,
                r#"latency_seconds_bucket{le="1.0"} 5"#,
                r#"latency_seconds_bucket{le="5.0"} 7"#,
                r#"latency_seconds_bucket{le="+Inf"} 9"#,
            ]
        );
    }

    #[test]
    fn prometheus_text_names_counter_families_with_total_and_drops_unit_and_eof() {
        let openmetrics = "\
# HELP http_requests HTTP requests.
# TYPE http_requests counter
http_requests_total{route=\"/\"} 2
# HELP open Open.
# TYPE open gauge
open 1
# HELP wait_seconds Waits.
# TYPE wait_seconds histogram
# UNIT wait_seconds seconds
wait_seconds_sum 0.5
# HELP abandoned_total_x Abandoned.
# TYPE abandoned_total_x counter
abandoned_total_x_total 0
# EOF
";
        assert_eq!(
            prometheus_text(openmetrics),
            "\
# HELP http_requests_total HTTP requests.
# TYPE http_requests_total counter
http_requests_total{route=\"/\"} 2
# HELP open Open.
# TYPE open gauge
open 1
# HELP wait_seconds Waits.
# TYPE wait_seconds histogram
wait_seconds_sum 0.5
# HELP abandoned_total_x_total Abandoned.
# TYPE abandoned_total_x_total counter
abandoned_total_x_total 0
"
        );
    }

    #[test]
    fn method_label_is_a_standard_method_or_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::TRACE), "TRACE");
        let invented = Method::from_bytes("X".repeat(30_000).as_bytes()).unwrap();
        assert_eq!(method_label(&invented), "other");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other");
    }
}
