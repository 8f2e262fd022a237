//! The relay's counters and gauges, rendered in the Prometheus text format at `/metrics`.
//!
//! Plain atomics with relaxed ordering: each is an independent tally read by a scrape, so no
//! ordering between them is needed, and an increment costs one uncontended atomic add.

use stagecast_proto::sync::lock_or_recover;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Decrements a gauge when dropped, so an early return cannot leave it counted.
pub struct GaugeGuard<'a>(&'a Gauge);

impl<'a> GaugeGuard<'a> {
    pub fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Default)]
pub struct MetricsInner {
    pub sessions: Gauge,
    pub sessions_total: Counter,
    pub subscriptions: Gauge,
    pub subscribes_total: Counter,
    pub subscribes_refused_total: Counter,
    pub upstream_subscriptions: Gauge,
    pub upstream_subscribes_total: Counter,
    pub namespaces_published_total: Counter,
    pub upstream_connected: Gauge,
    pub upstream_reconnects_total: Counter,
    pub source_resumes_total: Counter,
    pub auth_failures_total: Counter,
    pub objects_in_total: Counter,
    pub bytes_in_total: Counter,
    pub objects_out_total: Counter,
    pub bytes_out_total: Counter,
    pub cache_hits_total: Counter,
    pub cache_misses_total: Counter,
    pub groups_dropped_total: Counter,
    pub source_groups_skipped_total: Counter,
    pub fetches_total: Counter,
    pub fetch_cache_hits_total: Counter,
    pub upstream_fetches_total: Counter,
    pub interaction_streams_total: Counter,
    pub interaction_streams_forwarded_total: Counter,
    pub interaction_streams_refused_total: Counter,
    /// Interaction channels open at the origin.
    pub interaction_channels: Gauge,
    /// Origin transcodes running (one per broadcast whose ladder the origin makes).
    pub transcodes: Gauge,
    /// Transcoder processes started again after one ended.
    pub transcode_restarts_total: Counter,
    /// Requests refused by a resource limit, by limit name.
    pub limits_refused: LimitRefusals,
}

/// How many times each resource limit refused something, by the limit's name
/// (`guest_rate`, `quic_connections_per_address`, ...), rendered as one labelled counter.
/// Refusals are rare next to the data path, so a lock over a small map is cheap enough.
#[derive(Default)]
pub struct LimitRefusals(std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>);

impl LimitRefusals {
    /// Counts one refusal by `limit`.
    pub fn inc(&self, limit: &'static str) {
        let mut map = lock_or_recover(&self.0);
        *map.entry(limit).or_default() += 1;
    }

    pub fn get(&self, limit: &str) -> u64 {
        let map = lock_or_recover(&self.0);
        map.get(limit).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        let map = lock_or_recover(&self.0);
        let name = "stagecast_limit_refused_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests, connections and streams refused by a resource limit.\n# TYPE {name} counter"
        );
        for (limit, value) in map.iter() {
            let _ = writeln!(out, "{name}{{limit=\"{limit}\"}} {value}");
        }
    }
}

/// Shared handle to the relay's metrics.
#[derive(Clone, Default)]
pub struct Metrics(Arc<MetricsInner>);

impl std::ops::Deref for Metrics {
    type Target = MetricsInner;
    fn deref(&self) -> &MetricsInner {
        &self.0
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    /// The Prometheus text; `cache_bytes` is sampled by the caller at scrape time.
    pub fn render(&self, cache_bytes: usize) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            "stagecast_sessions",
            "Open MoQ sessions.",
            self.sessions.get(),
        );
        gauge(
            "stagecast_subscriptions",
            "Downstream subscriptions being served.",
            self.subscriptions.get(),
        );
        gauge(
            "stagecast_upstream_subscriptions",
            "Tracks subscribed at a source (one per track, however many subscribers).",
            self.upstream_subscriptions.get(),
        );
        gauge(
            "stagecast_cache_bytes",
            "Payload bytes held in the shared track caches.",
            i64::try_from(cache_bytes).unwrap_or(i64::MAX),
        );
        gauge(
            "stagecast_interaction_channels",
            "Interaction channels open (origin only: one per live broadcast in use).",
            self.interaction_channels.get(),
        );
        gauge(
            "stagecast_transcodes",
            "Origin transcodes running (broadcasts whose ladder the origin makes).",
            self.transcodes.get(),
        );
        gauge(
            "stagecast_upstream_connected",
            "1 while the upstream link is connected.",
            self.upstream_connected.get(),
        );
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "stagecast_sessions_total",
            "MoQ sessions accepted.",
            self.sessions_total.get(),
        );
        counter(
            "stagecast_subscribes_total",
            "SUBSCRIBE requests received.",
            self.subscribes_total.get(),
        );
        counter(
            "stagecast_subscribes_refused_total",
            "SUBSCRIBE requests refused (not found, loop, source failure).",
            self.subscribes_refused_total.get(),
        );
        counter(
            "stagecast_upstream_subscribes_total",
            "Subscriptions opened at a source.",
            self.upstream_subscribes_total.get(),
        );
        counter(
            "stagecast_namespaces_published_total",
            "PUBLISH_NAMESPACE requests accepted.",
            self.namespaces_published_total.get(),
        );
        counter(
            "stagecast_upstream_reconnects_total",
            "Times the upstream link was re-established.",
            self.upstream_reconnects_total.get(),
        );
        counter(
            "stagecast_source_resumes_total",
            "Track subscriptions resumed at a source after it was lost.",
            self.source_resumes_total.get(),
        );
        counter(
            "stagecast_auth_failures_total",
            "Sessions and requests refused for want of authorization.",
            self.auth_failures_total.get(),
        );
        for (name, help, value) in [
            ("stagecast_objects_in_total", "Objects received from sources.", &self.objects_in_total),
            ("stagecast_bytes_in_total", "Payload bytes received from sources.", &self.bytes_in_total),
            ("stagecast_objects_out_total", "Objects handed to subscribers.", &self.objects_out_total),
            ("stagecast_bytes_out_total", "Payload bytes handed to subscribers.", &self.bytes_out_total),
            (
                "stagecast_cache_hits_total",
                "Subscriptions served from a track already cached here (no new source subscription).",
                &self.cache_hits_total,
            ),
            (
                "stagecast_cache_misses_total",
                "Subscriptions that had to subscribe at a source.",
                &self.cache_misses_total,
            ),
            ("stagecast_fetches_total", "FETCH requests received.", &self.fetches_total),
            (
                "stagecast_fetch_cache_hits_total",
                "FETCH requests answered from the cache (the rest went to the source).",
                &self.fetch_cache_hits_total,
            ),
            (
                "stagecast_upstream_fetches_total",
                "FETCHes sent to a source (concurrent misses for one range share one).",
                &self.upstream_fetches_total,
            ),
            (
                "stagecast_groups_dropped_total",
                "Groups a subscriber lost because it fell behind the cache or its link (given up for a newer group, or a stalled write), or its source broke off.",
                &self.groups_dropped_total,
            ),
            (
                "stagecast_source_groups_skipped_total",
                "Groups a source sent that were not cached: older than the newest cached group of their track (arrived out of order), or a track that had ended.",
                &self.source_groups_skipped_total,
            ),
            (
                "stagecast_interaction_streams_total",
                "Interaction streams accepted from peers.",
                &self.interaction_streams_total,
            ),
            (
                "stagecast_interaction_streams_forwarded_total",
                "Interaction streams forwarded to the upstream link.",
                &self.interaction_streams_forwarded_total,
            ),
            (
                "stagecast_interaction_streams_refused_total",
                "Interaction streams answered `unavailable` (no origin reachable).",
                &self.interaction_streams_refused_total,
            ),
            (
                "stagecast_transcode_restarts_total",
                "Transcoder processes started again after one ended (origin only).",
                &self.transcode_restarts_total,
            ),
        ] {
            counter(name, help, value.get());
        }
        self.limits_refused.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        metrics.upstream_subscriptions.inc();
        {
            let _g = GaugeGuard::new(&metrics.sessions);
            assert!(metrics.render(0).contains("\nstagecast_sessions 1\n"));
        }
        let text = metrics.render(42);
        assert!(text.contains("\nstagecast_cache_bytes 42\n"));
        assert!(text.contains("\nstagecast_sessions 0\n"));
        assert!(text.contains("\nstagecast_upstream_subscriptions 1\n"));
        assert!(text.contains("# TYPE stagecast_sessions_total counter"));
        metrics.limits_refused.inc("guest_rate");
        metrics.limits_refused.inc("guest_rate");
        assert!(metrics
            .render(0)
            .contains("\nstagecast_limit_refused_total{limit=\"guest_rate\"} 2\n"));
    }
}
