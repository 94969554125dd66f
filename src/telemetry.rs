//! OpenTelemetry traces (`[telemetry]`): a span per consumed message (consume → normalize →
//! route, with a child span for each of the two stages) and a child span per delivery attempt
//! (target, status, attempt, the tier it was parked on), exported over OTLP/HTTP by the SDK's
//! batch processor ([`export`]). Every request to a target carries the W3C `traceparent` of its
//! attempt, and a parked record carries its message's, so the attempts after a retry tier (or a
//! redrive) join the same trace.
//!
//! Off by default: [`Telemetry::off`] holds nothing, every call returns at its first branch, and
//! no span, id or header is made: the hot path pays one `Option` check per message and per
//! request. A message that arrives with a `traceparent` header continues that trace.
//!
//! Neutral ground: the stages call it, it imports only the config.

mod export;
mod spans;

pub use spans::{AttemptSpan, MessageSpan};

use crate::config::TelemetryConfig;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use std::time::Duration;

/// The header name of W3C trace context, on Kafka records and HTTP requests alike.
pub const TRACEPARENT: &str = "traceparent";

/// Why telemetry could not start (`run` exits 2: the config named an exporter it cannot build).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.otlp_endpoint: {0}")]
    Exporter(String),
    #[error("telemetry needs a tokio runtime to export from")]
    NoRuntime,
}

/// The tracer of a running relay, or nothing when `[telemetry]` is off.
#[derive(Default)]
pub struct Telemetry {
    inner: Option<Inner>,
}

struct Inner {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Telemetry off: no spans, no headers.
    pub fn off() -> Self {
        Self::default()
    }

    /// The tracer `config` describes (off without `otlp_endpoint`); must be called inside a
    /// tokio runtime, which the exporter's requests run on.
    pub fn start(config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        let Some(url) = config.traces_url() else {
            return Ok(Self::off());
        };
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        let client = export::Client::new(runtime, &url);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(url.clone())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(Duration::from_secs(10))
            .with_headers(config.headers.clone().into_iter().collect())
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let ratio = config.sample_ratio;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("event-relay");
        tracing::info!(endpoint = %url, sample_ratio = ratio, service_name = %config.service_name, "exporting OpenTelemetry traces");
        Ok(Self {
            inner: Some(Inner { tracer, provider }),
        })
    }

    /// Whether spans are made at all.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    fn tracer(&self) -> Option<&SdkTracer> {
        self.inner.as_ref().map(|i| &i.tracer)
    }

    /// Exports what is still buffered and stops the exporter (blocks up to its timeout: call
    /// off the runtime's workers).
    pub fn shutdown(&self) {
        if let Some(inner) = &self.inner {
            if let Err(e) = inner.provider.shutdown() {
                tracing::warn!(error = %e, "OpenTelemetry: the last spans could not be exported");
            }
        }
    }
}

/// A span's identity as W3C trace context carries it: what a delivery keeps of its message's
/// span (across retry tiers too, as the parked record's `traceparent` header) and what a
/// request to a target carries of its attempt's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// Whether the trace is being recorded (the `01` flag).
    pub sampled: bool,
}

impl TraceParent {
    fn of(sc: &SpanContext) -> Option<Self> {
        sc.is_valid().then(|| Self {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            sampled: sc.is_sampled(),
        })
    }

    /// The `traceparent` header value: `00-{trace id}-{span id}-{flags}`.
    pub fn header(&self) -> String {
        let flags = if self.sampled { "01" } else { "00" };
        format!("00-{}-{}-{flags}", self.trace_id, self.span_id)
    }

    /// Reads a `traceparent` value (version 00, or a later version's first four fields, as
    /// the W3C spec asks); `None` for anything malformed or all-zero ids.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
        let rest = parts.next();
        if version.len() != 2 || version == "ff" || (version == "00" && rest.is_some()) {
            return None;
        }
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !hex(version, 2) || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        let sc = SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::new(flags),
            true,
            TraceState::default(),
        );
        Self::of(&sc)
    }

    fn remote(&self) -> SpanContext {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            self.trace_id,
            self.span_id,
            flags,
            true,
            TraceState::default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_what_w3c_rejects() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceParent::parse(v).unwrap();
        assert!(t.sampled);
        assert_eq!(t.header(), v);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceParent::parse(unsampled).unwrap().sampled);
        // A later version may append fields; version 00 may not.
        assert!(TraceParent::parse(&format!("01-{}-01-extra", &v[3..52])).is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn off_makes_nothing() {
        let t = Telemetry::off();
        assert!(!t.enabled());
        assert!(t.message("topic", 0, 1, None).is_none());
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let a = t.attempt(parent, "crm", 1, "e-1", None);
        assert!(a.is_none());
        // Without a recording attempt the request carries the message's context as it is.
        assert_eq!(a.traceparent(parent), parent);
    }
}
