//! Prometheus metrics: the registry every service adds its own metrics to, the request counter
//! by route, method and status, the process-wide metrics every HTTP service exports (the
//! accept loop's connections, the log lines dropped), and the `/metrics` text.
//!
//! Every label comes from a fixed set, never from what a client sent, so no client can grow the
//! label set (and with it memory and the `/metrics` body) without bound: the route label is the
//! matched route (`/pingpong`), else `unmatched`; the method label is a standard method, else
//! `other`.

use std::{
    cell::RefCell,
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    extract::MatchedPath,
    http::{Method, header},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
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

/// `http_requests_total{route, method, status}`.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    /// Never reused within the process: tells apart the families in [`RESOLVED`].
    id: u64,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        HttpMetrics {
            requests: Family::default(),
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
        metrics
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

/// Adds the process-wide metrics to `registry`: the accept loop's connections and the log
/// lines dropped because stderr stalled.
pub fn register_process_metrics(registry: &mut Registry) {
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

/// A counter of the family `family` already looked up on this thread.
struct Resolved {
    family: u64,
    labels: RequestLabels,
    counter: Counter,
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
    /// Counts one answer. The route is axum's own shared string, so labelling a request copies
    /// nothing.
    pub(crate) fn count(&self, route: Option<MatchedPath>, method: &'static str, status: u16) {
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
                return;
            }
            let counter = self.requests.get_or_create(&labels).clone();
            counter.inc();
            if resolved.len() == RESOLVED_PER_THREAD {
                resolved.clear();
            }
            resolved.push(Resolved {
                family: self.id,
                labels,
                counter,
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

/// The registry in the OpenMetrics text format, which Prometheus scrapes.
pub fn render(registry: &Registry) -> Response {
    let mut body = String::new();
    if let Err(error) = encode(&mut body, registry) {
        tracing::error!(%error, "encoding metrics");
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
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
            a.count(None, "GET", 404);
        }
        b.count(None, "GET", 404);
        // More label sets than a thread keeps resolved: the list starts again, twice.
        for status in 1000..1000 + 2 * RESOLVED_PER_THREAD as u16 + 1 {
            a.count(None, "GET", status);
        }
        a.count(None, "GET", 404);
        b.count(None, "HEAD", 404);

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
    fn method_label_is_a_standard_method_or_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::TRACE), "TRACE");
        let invented = Method::from_bytes("X".repeat(30_000).as_bytes()).unwrap();
        assert_eq!(method_label(&invented), "other");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other");
    }
}
