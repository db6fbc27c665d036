//! Counters owned by the modules (sessions, tracer, token sources, ingress, reload), encoded at
//! scrape time. The admin listener sits above all of them, so the collector lives here.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadResult {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

/// Counters owned by other modules (sessions, tracer, token sources, ingress), read at scrape
/// time so those modules keep plain atomics and know nothing of Prometheus.
pub struct ModuleStats {
    pub sessions: crate::session::Sessions,
    pub tracer: Option<crate::trace::Tracer>,
    pub ingress: Arc<crate::ingress::Ingress>,
    pub tokens: Vec<(String, crate::auth::oauth::TokenSource)>,
    /// The proxy listener's connections.
    pub connections: Arc<crate::server::ConnectionStats>,
    /// Reload outcomes; `None` for a proxy that cannot reload (the demo).
    pub reload: Option<Arc<crate::reload::Status>>,
    /// `[state] backend = "redis"`: its round trips, errors, lease waits and fallbacks.
    pub redis: Option<crate::state::redis::Fleet>,
}

impl std::fmt::Debug for ModuleStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModuleStats")
    }
}

impl prometheus_client::collector::Collector for ModuleStats {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;

        let mut counter = |name: &str, help: &str, value: u64| -> Result<(), std::fmt::Error> {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
        };
        let sessions = self.sessions.stats();
        counter(
            "sessions_opened",
            "Upstream sessions opened (a jar got its first cookie)",
            sessions.opened,
        )?;
        counter(
            "session_relogins",
            "Sessions the target dropped and the proxy renewed",
            sessions.relogins,
        )?;
        counter(
            "sessions_expired",
            "Sessions dropped after their idle timeout",
            sessions.expired,
        )?;
        counter(
            "session_persist_failures",
            "Failed writes of the session state file",
            sessions.persist_failures,
        )?;
        counter(
            "sessions_shared_unreadable",
            "Shared session documents that could not be opened (wrong state key, altered)",
            self.sessions.unreadable_shared(),
        )?;
        if let Some(fleet) = &self.redis {
            let redis = fleet.stats();
            counter(
                "state_redis_round_trips",
                "Commands sent to Redis (each one round trip)",
                redis.round_trips,
            )?;
            counter(
                "state_redis_errors",
                "Redis commands that failed or timed out",
                redis.errors,
            )?;
            counter(
                "state_lease_waits",
                "Times a replica waited for a fleet lease another replica held",
                redis.lease_waits,
            )?;
            counter(
                "state_lease_takeovers",
                "Fleet leases taken over after their holder stopped renewing them (it died)",
                redis.takeovers,
            )?;
            counter(
                "state_local_fallbacks",
                "Requests served from this replica's own state while Redis was unavailable",
                redis.fallbacks,
            )?;
        }
        counter(
            "ingress_denials",
            "Requests refused for missing or wrong client credentials",
            self.ingress.denials(),
        )?;
        if let Some(tracer) = &self.tracer {
            let trace = tracer.stats();
            counter(
                "trace_records_written",
                "Exchange records the trace writer processed",
                trace.written,
            )?;
            counter(
                "trace_records_dropped",
                "Exchange records dropped because the writer fell behind",
                trace.dropped,
            )?;
            counter(
                "trace_write_errors",
                "Failed trace file writes",
                trace.write_errors,
            )?;
            counter(
                "trace_reopens",
                "Times the trace files were reopened (SIGUSR1, or a reload that moved them)",
                trace.reopened,
            )?;
            counter(
                "feed_records_dropped",
                "Exchange records lost to a live console stream whose queue was full",
                tracer.feed_stats().dropped,
            )?;
        }
        let fetches: u64 = self
            .tokens
            .iter()
            .map(|(_, tokens)| tokens.stats().fetches)
            .sum();
        let failures: u64 = self
            .tokens
            .iter()
            .map(|(_, tokens)| tokens.stats().failures)
            .sum();
        counter(
            "token_fetches",
            "Requests to OAuth token endpoints",
            fetches,
        )?;
        counter(
            "token_fetch_failures",
            "Token requests that produced no token",
            failures,
        )?;
        counter(
            "connections_refused",
            "Client connections closed at accept because server.max_connections were open",
            self.connections.refused(),
        )?;
        let open = ConstGauge::new(i64::try_from(self.connections.open()).unwrap_or(i64::MAX));
        open.encode(encoder.encode_descriptor(
            "connections_open",
            "Client connections open on the proxy listener",
            None,
            open.metric_type(),
        )?)?;
        let live = ConstGauge::new(i64::try_from(sessions.live).unwrap_or(i64::MAX));
        live.encode(encoder.encode_descriptor(
            "sessions_live",
            "Sessions currently kept",
            None,
            live.metric_type(),
        )?)?;
        if let Some(fleet) = &self.redis {
            let down = ConstGauge::new(i64::from(!fleet.stats().reachable));
            down.encode(encoder.encode_descriptor(
                "state_redis_unavailable",
                "1 while the last Redis command failed",
                None,
                down.metric_type(),
            )?)?;
        }
        let mut evicted = encoder.encode_descriptor(
            "sessions_evicted",
            "Idle sessions dropped to stay within the route's max_sessions",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (route, count) in &sessions.evicted {
            ConstCounter::new(*count).encode(evicted.encode_family(&RouteLabel {
                route: route.clone(),
            })?)?;
        }
        if let Some(status) = &self.reload {
            let (ok, failed) = status.reload_counts();
            let mut reloads = encoder.encode_descriptor(
                "reloads",
                "Config reloads (SIGHUP, POST /reload), by result",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (result, count) in [("ok", ok), ("failed", failed)] {
                ConstCounter::new(count)
                    .encode(reloads.encode_family(&ReloadResult { result })?)?;
            }
        }
        Ok(())
    }
}
