//! Prometheus metrics the pipeline records. Per-route series are created at startup and held as
//! handles, so the hot path increments an atomic instead of hashing labels. Counters that other
//! modules own come in as a `Collector` (the admin listener's `ModuleStats`), so this module,
//! shared vocabulary, depends on nothing above it.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::config::RoutePlan;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorKind {
    kind: String,
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The handles one route increments.
#[derive(Clone)]
pub struct RouteMetrics {
    by_class: [Counter; 5],
    upstream_latency: Histogram,
}

impl RouteMetrics {
    pub fn response(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
    }

    pub fn upstream_latency(&self, elapsed: Duration) {
        self.upstream_latency.observe(elapsed.as_secs_f64());
    }
}

pub struct Metrics {
    registry: Registry,
    routes: Vec<RouteMetrics>,
    errors: Family<ErrorKind, Counter>,
    unrouted: Counter,
    /// Kept so that a reloaded plan's metrics go on counting where these left off.
    families: Families,
}

#[derive(Clone)]
struct Families {
    requests: Family<RouteStatus, Counter>,
    latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    errors: Family<ErrorKind, Counter>,
    unrouted: Counter,
}

impl Metrics {
    pub fn new(routes: &[RoutePlan], modules: impl Collector + 'static) -> Arc<Self> {
        let families = Families {
            requests: Family::<RouteStatus, Counter>::default(),
            latency: Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                || Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            ),
            errors: Family::<ErrorKind, Counter>::default(),
            unrouted: Counter::default(),
        };
        Self::with_families(routes, modules, families)
    }

    /// The metrics of a reloaded plan: the same series, counting on, for the new routes.
    pub fn carry_over(&self, routes: &[RoutePlan], modules: impl Collector + 'static) -> Arc<Self> {
        Self::with_families(routes, modules, self.families.clone())
    }

    fn with_families(
        routes: &[RoutePlan],
        modules: impl Collector + 'static,
        families: Families,
    ) -> Arc<Self> {
        let mut registry = Registry::with_prefix("provproxy");
        registry.register_collector(Box::new(modules));
        let Families {
            requests,
            latency,
            errors,
            unrouted,
        } = families.clone();
        registry.register(
            "requests",
            "Responses sent to clients, by route and status class",
            requests.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time from forwarding a request to the target's response head",
            latency.clone(),
        );
        registry.register(
            "errors",
            "Requests the proxy failed, by kind",
            errors.clone(),
        );
        registry.register(
            "unrouted_requests",
            "Requests that matched no route",
            unrouted.clone(),
        );
        let routes = routes
            .iter()
            .map(|route| RouteMetrics {
                by_class: STATUS_CLASSES.map(|class| {
                    requests
                        .get_or_create(&RouteStatus {
                            route: route.name.clone(),
                            class,
                        })
                        .clone()
                }),
                upstream_latency: latency
                    .get_or_create(&RouteLabel {
                        route: route.name.clone(),
                    })
                    .clone(),
            })
            .collect();
        Arc::new(Metrics {
            registry,
            routes,
            errors,
            unrouted,
            families,
        })
    }

    pub fn route(&self, index: usize) -> &RouteMetrics {
        &self.routes[index]
    }

    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&ErrorKind {
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn unrouted(&self) {
        self.unrouted.inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
