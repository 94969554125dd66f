//! Every Prometheus metric of the relay, defined in one place (`event_relay_` prefix).
//!
//! Each relay instance owns its own [`Metrics`] registry, so tests can run several relays in
//! one process and scrape each separately.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metrics of one relay.
pub struct Metrics {
    pub registry: Registry,
    pub messages_consumed: IntCounterVec,
    pub events_normalized: IntCounterVec,
    /// Catalog rules broken, per event (`other` for names the catalog does not know) and rule
    /// (`catalog::rule::Rule`: required, type, null, enum, format, unknown_event, other).
    pub validation_problems: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub delivery_attempts: IntCounterVec,
    pub delivery_duration: HistogramVec,
    pub request_duration: HistogramVec,
    pub batch_size: HistogramVec,
    pub in_flight_events: IntGauge,
    pub in_flight_bytes: IntGauge,
    pub backpressure_paused: IntGauge,
    pub consumer_lag: IntGaugeVec,
    pub results_produced: IntCounterVec,
    pub unrouted: IntCounterVec,
    pub circuit_open: IntGaugeVec,
    pub offsets_committed: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub normalize_duration: Histogram,
    /// Deliveries produced to a retry tier (`tier`: its delay, e.g. `1m`).
    pub parked: IntCounterVec,
    /// Deliveries a target holds in memory (queued, sending or retrying), against its
    /// `max_queued_events` budget.
    pub target_queued: IntGaugeVec,
    /// Records waiting in a retry tier (not yet due, or due and not yet final).
    pub tier_lag: IntGaugeVec,
    /// Records `event-relay redrive` re-entered (`from`: failed | dead-letter).
    pub redriven: IntCounterVec,
    /// Config reloads (`outcome`: success | invalid | failed).
    pub config_reloads: IntCounterVec,
    /// 1 for the hash of the running config file (one series at a time).
    pub config_info: IntGaugeVec,
    /// Events a target's transform skipped (`%skip = true` or `abort`): no request, no result.
    pub transform_skipped: IntCounterVec,
    /// Events a target's transform failed on (each ends in one final WebhookError).
    pub transform_errors: IntCounterVec,
    /// Credentials a target's `auth` obtained (`outcome`: ok | error): OAuth2 token requests,
    /// bearer token files read after they changed (or found unusable).
    pub auth_token_refreshes: IntCounterVec,
    /// Tap lines lost because a `/tap` client read slower than events passed (`src/tap.rs`).
    pub tap_dropped: IntCounter,
    /// `/tap` clients connected.
    pub tap_clients: IntGauge,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn plain_counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0,
];

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let m = Self {
            messages_consumed: counter(
                &r,
                "event_relay_messages_consumed_total",
                "Kafka messages consumed.",
                &["topic"],
            ),
            events_normalized: counter(
                &r,
                "event_relay_events_normalized_total",
                "Events normalized, by catalog validation status.",
                &["source", "event", "status"],
            ),
            validation_problems: counter(
                &r,
                "event_relay_validation_problems_total",
                "Catalog rules broken by normalized events (the tracking-plan report).",
                &["source", "event", "rule"],
            ),
            dead_letters: counter(
                &r,
                "event_relay_dead_letters_total",
                "Messages or events written to the dead-letter topic.",
                &["source", "reason"],
            ),
            deliveries: counter(
                &r,
                "event_relay_deliveries_total",
                "Final delivery outcomes per (event, target).",
                &["target", "outcome"],
            ),
            delivery_attempts: counter(
                &r,
                "event_relay_delivery_attempts_total",
                "HTTP request attempts by result (ok | retryable | fatal) and HTTP status class.",
                &["target", "result", "status_class"],
            ),
            delivery_duration: histogram(
                &r,
                "event_relay_delivery_duration_seconds",
                "First attempt to final outcome.",
                &["target"],
                SECONDS.to_vec(),
            ),
            request_duration: histogram(
                &r,
                "event_relay_request_duration_seconds",
                "Duration of one HTTP request.",
                &["target"],
                SECONDS.to_vec(),
            ),
            batch_size: histogram(
                &r,
                "event_relay_batch_size",
                "Events per request.",
                &["target"],
                vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
            ),
            in_flight_events: gauge(
                &r,
                "event_relay_in_flight_events",
                "Consumed messages whose fate is not final yet.",
            ),
            in_flight_bytes: gauge(
                &r,
                "event_relay_in_flight_bytes",
                "Payload bytes (whole KiB per message) of consumed messages whose fate is not final yet.",
            ),
            backpressure_paused: gauge(
                &r,
                "event_relay_backpressure_paused",
                "1 while consumption is paused because in-flight is full.",
            ),
            consumer_lag: gauge_vec(
                &r,
                "event_relay_consumer_lag",
                "Consumer lag per partition (librdkafka statistics).",
                &["topic", "partition"],
            ),
            results_produced: counter(
                &r,
                "event_relay_results_produced_total",
                "Result events produced (WebhookSuccess | WebhookError).",
                &["event"],
            ),
            unrouted: counter(
                &r,
                "event_relay_unrouted_total",
                "Events no route matched and no default target took.",
                &["source"],
            ),
            circuit_open: gauge_vec(
                &r,
                "event_relay_circuit_open",
                "1 while a target's circuit breaker is open.",
                &["target"],
            ),
            offsets_committed: counter(
                &r,
                "event_relay_offsets_committed_total",
                "Successful offset commits per partition.",
                &["topic", "partition"],
            ),
            build_info: gauge_vec(
                &r,
                "event_relay_build_info",
                "Build information.",
                &["version"],
            ),
            normalize_duration: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "event_relay_normalize_duration_seconds",
                        "Time to normalize one message.",
                    )
                    .buckets(vec![1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2]),
                )
                .expect("valid metric");
                r.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            transform_skipped: counter(
                &r,
                "event_relay_transform_skipped_total",
                "Events a target's transform skipped: no request and no result event.",
                &["target"],
            ),
            transform_errors: counter(
                &r,
                "event_relay_transform_errors_total",
                "Events a target's transform failed on (a final WebhookError each).",
                &["target"],
            ),
            auth_token_refreshes: counter(
                &r,
                "event_relay_auth_token_refreshes_total",
                "Credentials a target's auth obtained (outcome: ok | error): OAuth2 token requests, bearer token files read again.",
                &["target", "outcome"],
            ),
            parked: counter(
                &r,
                "event_relay_parked_total",
                "Deliveries parked on a retry tier (tier: its delay).",
                &["target", "tier"],
            ),
            target_queued: gauge_vec(
                &r,
                "event_relay_target_queued_events",
                "Deliveries a target holds in memory (queued, sending or retrying).",
                &["target"],
            ),
            tier_lag: gauge_vec(
                &r,
                "event_relay_tier_lag",
                "Records waiting in a retry tier (not yet due, or not yet final).",
                &["tier"],
            ),
            redriven: counter(
                &r,
                "event_relay_redriven_total",
                "Records re-entered by event-relay redrive (from: failed | dead-letter).",
                &["from"],
            ),
            config_reloads: counter(
                &r,
                "event_relay_config_reloads_total",
                "Config reloads by outcome (success | invalid | failed).",
                &["outcome"],
            ),
            config_info: gauge_vec(
                &r,
                "event_relay_config_info",
                "1 for the running config: a short hash of its file's bytes.",
                &["hash"],
            ),
            tap_dropped: plain_counter(
                &r,
                "event_relay_tap_dropped_total",
                "Tap lines lost because a /tap client read slower than events passed.",
            ),
            tap_clients: gauge(&r, "event_relay_tap_clients", "/tap clients connected."),
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Shows `hash` as the running config (`event_relay_config_info`), removing the series of
    /// the previous one.
    pub fn set_config_hash(&self, previous: Option<&str>, hash: &str) {
        if let Some(old) = previous.filter(|old| *old != hash) {
            let _ = self.config_info.remove_label_values(&[old]);
        }
        self.config_info.with_label_values(&[hash]).set(1);
    }

    /// Counts one request attempt: `result` is ok | retryable | fatal, `status_class` is
    /// `2xx`..`5xx` or `transport`.
    pub fn attempt(&self, target: &str, ok: bool, retryable: bool, status: Option<u16>) {
        let class = match status {
            Some(s) => format!("{}xx", s / 100),
            None => "transport".to_string(),
        };
        let result = match (ok, retryable) {
            (true, _) => "ok",
            (false, true) => "retryable",
            (false, false) => "fatal",
        };
        self.delivery_attempts
            .with_label_values(&[target, result, &class])
            .inc();
    }
}

/// One target's busiest metric handles, resolved once when its worker starts: a labelled
/// lookup hashes every label and takes a lock on each call, several times per event.
pub struct TargetMetrics {
    pub delivered: IntCounter,
    pub failed: IntCounter,
    pub delivery_duration: Histogram,
    pub request_duration: Histogram,
    pub batch_size: Histogram,
    /// `delivery_attempts_total{result="ok",class="2xx"}`, the common case.
    ok_2xx: IntCounter,
    pub transform_skipped: IntCounter,
    pub transform_errors: IntCounter,
}

impl TargetMetrics {
    pub fn new(m: &Metrics, target: &str) -> Self {
        Self {
            delivered: m.deliveries.with_label_values(&[target, "success"]),
            failed: m.deliveries.with_label_values(&[target, "error"]),
            delivery_duration: m.delivery_duration.with_label_values(&[target]),
            request_duration: m.request_duration.with_label_values(&[target]),
            batch_size: m.batch_size.with_label_values(&[target]),
            ok_2xx: m
                .delivery_attempts
                .with_label_values(&[target, "ok", "2xx"]),
            transform_skipped: m.transform_skipped.with_label_values(&[target]),
            transform_errors: m.transform_errors.with_label_values(&[target]),
        }
    }

    /// [`Metrics::attempt`] for this target, without a lookup for a 2xx success.
    pub fn attempt(
        &self,
        m: &Metrics,
        target: &str,
        ok: bool,
        retryable: bool,
        status: Option<u16>,
    ) {
        match (ok, status) {
            (true, Some(200..=299)) => self.ok_2xx.inc(),
            _ => m.attempt(target, ok, retryable, status),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target's cached handles count into the same series as the labelled lookups.
    #[test]
    fn target_handles_are_the_labelled_series() {
        let m = Metrics::new();
        let t = TargetMetrics::new(&m, "crm");
        t.attempt(&m, "crm", true, false, Some(204));
        m.attempt("crm", true, false, Some(200));
        t.attempt(&m, "crm", false, true, Some(503));
        t.delivered.inc();
        let text = m.render();
        for line in [
            "event_relay_delivery_attempts_total{result=\"ok\",status_class=\"2xx\",target=\"crm\"} 2",
            "event_relay_delivery_attempts_total{result=\"retryable\",status_class=\"5xx\",target=\"crm\"} 1",
            "event_relay_deliveries_total{outcome=\"success\",target=\"crm\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn renders_every_family_name() {
        let m = Metrics::new();
        m.messages_consumed.with_label_values(&["t"]).inc();
        let text = m.render();
        assert!(text.contains("event_relay_build_info{version=\""));
        assert!(text.contains("event_relay_messages_consumed_total{topic=\"t\"} 1"));
        m.attempt("crm", false, true, Some(503));
        assert!(m.render().contains(
            "event_relay_delivery_attempts_total{result=\"retryable\",status_class=\"5xx\",target=\"crm\"} 1"
        ));
    }
}
