//! Prometheus metrics: requests by route and status, decisions by prefix,
//! KeyPackage lifecycle events, store latency.

use prometheus::{Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

/// The process's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `kp_http_requests_total{route,status}`.
    pub requests: IntCounterVec,
    /// `kp_decisions_total{route,prefix}`.
    pub decisions: IntCounterVec,
    /// `kp_keypackages_total{event}`: ingested, claimed, consumed, expired.
    pub keypackages: IntCounterVec,
    /// `kp_ingested_total{profile}`: KeyPackages stored, by Marmot profile.
    pub ingested: IntCounterVec,
    /// `kp_store_latency_seconds{op}`.
    pub store_latency: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("kp_http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let decisions = IntCounterVec::new(
            Opts::new("kp_decisions_total", "Event decisions by route and message prefix"),
            &["route", "prefix"],
        )
        .expect("valid metric");
        let keypackages = IntCounterVec::new(
            Opts::new(
                "kp_keypackages_total",
                "KeyPackages ingested, claimed, consumed and expired",
            ),
            &["event"],
        )
        .expect("valid metric");
        let ingested = IntCounterVec::new(
            Opts::new(
                "kp_ingested_total",
                "KeyPackages stored by ingest, by Marmot profile (current or legacy)",
            ),
            &["profile"],
        )
        .expect("valid metric");
        let store_latency = HistogramVec::new(
            HistogramOpts::new("kp_store_latency_seconds", "Latency of store calls").buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["op"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(decisions.clone()),
            Box::new(keypackages.clone()),
            Box::new(ingested.clone()),
            Box::new(store_latency.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Self {
            registry,
            requests,
            decisions,
            keypackages,
            ingested,
            store_latency,
        }
    }

    /// Counts a decision by the prefix of its message (`accepted` when empty).
    pub fn decision(&self, route: &str, accepted: bool, message: &str) {
        let prefix = match message.split_once(':') {
            Some((prefix, _)) => prefix,
            None if accepted => "accepted",
            None => "rejected",
        };
        self.decisions.with_label_values(&[route, prefix]).inc();
    }

    /// Counts KeyPackage lifecycle events.
    pub fn keypackages(&self, event: &str, n: u64) {
        self.keypackages.with_label_values(&[event]).inc_by(n);
    }

    /// Counts a KeyPackage stored by ingest, by its profile.
    pub fn ingested(&self, profile: kp_domain::Profile) {
        self.keypackages("ingested", 1);
        self.ingested.with_label_values(&[profile.as_str()]).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding");
        String::from_utf8(buffer).expect("prometheus text is UTF-8")
    }
}
