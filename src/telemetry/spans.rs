//! The relay's two kinds of span: a message's ([`MessageSpan`], with its `normalize` and `route`
//! children) and a delivery attempt's ([`AttemptSpan`], a child of its message's span).

use super::{Telemetry, TraceParent};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span};
use std::time::SystemTime;

impl Telemetry {
    /// The span of a message just consumed from `topic`/`partition` at `offset`, continuing
    /// the trace of its `traceparent` header when it has one; `None` when telemetry is off.
    pub fn message(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        traceparent: Option<&[u8]>,
    ) -> Option<MessageSpan> {
        let tracer = self.tracer()?;
        let parent = traceparent
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(TraceParent::parse)
            .map_or_else(Context::new, |p| {
                Context::new().with_remote_span_context(p.remote())
            });
        let span = tracer
            .span_builder(format!("process {topic}"))
            .with_kind(SpanKind::Consumer)
            .with_attributes([
                KeyValue::new("messaging.system", "kafka"),
                KeyValue::new("messaging.operation.name", "process"),
                KeyValue::new("messaging.destination.name", topic.to_string()),
                KeyValue::new("messaging.destination.partition.id", partition.to_string()),
                KeyValue::new("messaging.kafka.offset", offset),
            ])
            .start_with_context(tracer, &parent);
        Some(MessageSpan {
            span,
            tracer: tracer.clone(),
        })
    }

    /// The span of one attempt to deliver an event (`event_id`) to `target`, a child of its
    /// message's span (`parent`); nothing when telemetry is off or the message is not traced.
    pub fn attempt(
        &self,
        parent: Option<TraceParent>,
        target: &str,
        attempt: usize,
        event_id: &str,
        tier: Option<&str>,
    ) -> AttemptSpan {
        let (Some(tracer), Some(parent)) = (self.tracer(), parent) else {
            return AttemptSpan(None);
        };
        if !parent.sampled {
            return AttemptSpan(None);
        }
        let cx = Context::new().with_remote_span_context(parent.remote());
        let mut attributes = vec![
            KeyValue::new("event_relay.target", target.to_string()),
            KeyValue::new("event_relay.attempt", attempt as i64),
            KeyValue::new("event_relay.event_id", event_id.to_string()),
        ];
        if let Some(tier) = tier {
            attributes.push(KeyValue::new("event_relay.tier", tier.to_string()));
        }
        let span = tracer
            .span_builder(format!("deliver {target}"))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, &cx);
        AttemptSpan(Some(Box::new(Attempt {
            span,
            answered_at: None,
        })))
    }
}

/// A consumed message's span, open from consuming to routing; its children are the stages.
pub struct MessageSpan {
    span: Span,
    tracer: SdkTracer,
}

impl MessageSpan {
    /// What deliveries of this message keep as their parent (sampled or not, so a request's
    /// `traceparent` names the trace either way).
    pub fn parent(&self) -> Option<TraceParent> {
        TraceParent::of(self.span.span_context())
    }

    /// A child span for a stage that ran from `started` until now.
    fn stage(&self, name: &'static str, started: SystemTime, attributes: Vec<KeyValue>) -> Span {
        let cx = Context::new().with_remote_span_context(self.span.span_context().clone());
        self.tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(started)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &cx)
    }

    /// Normalization, from `started`: how many events it made and rejected, or why the whole
    /// message was rejected (`error`: the dead-letter reason and message).
    pub fn normalized(
        &mut self,
        started: SystemTime,
        events: usize,
        rejected: usize,
        error: Option<(&str, &str)>,
    ) {
        let mut attributes = vec![
            KeyValue::new("event_relay.events", events as i64),
            KeyValue::new("event_relay.rejected", rejected as i64),
        ];
        if let Some((reason, _)) = error {
            attributes.push(KeyValue::new(
                "event_relay.dead_letter_reason",
                reason.to_string(),
            ));
        }
        let mut span = self.stage("normalize", started, attributes);
        if let Some((reason, message)) = error {
            span.set_status(Status::error(format!("{reason}: {message}")));
            self.span.set_attribute(KeyValue::new(
                "event_relay.dead_letter_reason",
                reason.to_string(),
            ));
        }
        span.end();
    }

    /// Routing, from `started`: how many deliveries the message's events made.
    pub fn routed(&mut self, started: SystemTime, deliveries: usize) {
        let attributes = vec![KeyValue::new("event_relay.deliveries", deliveries as i64)];
        self.stage("route", started, attributes).end();
    }

    /// One event of the message: its id, name, validation status and targets (a span event,
    /// so a message of many events stays one span).
    pub fn event(&mut self, id: &str, name: &str, validation: &str, targets: Vec<String>) {
        self.span.add_event(
            "event",
            vec![
                KeyValue::new("event_relay.event_id", id.to_string()),
                KeyValue::new("event_relay.event", name.to_string()),
                KeyValue::new("event_relay.validation", validation.to_string()),
                KeyValue::new(
                    "event_relay.targets",
                    opentelemetry::Value::Array(
                        targets
                            .into_iter()
                            .map(opentelemetry::StringValue::from)
                            .collect::<Vec<_>>()
                            .into(),
                    ),
                ),
            ],
        );
    }
}

/// One delivery attempt's span (nothing when telemetry is off or the message not traced).
/// Ended when the attempt's fate is known: retried, accepted, failed, or parked on a tier;
/// dropped unended (an abort), it ends then.
#[derive(Default)]
pub struct AttemptSpan(Option<Box<Attempt>>);

struct Attempt {
    span: Span,
    /// When the answer came: the span's end, however much later its fate is decided.
    answered_at: Option<SystemTime>,
}

impl AttemptSpan {
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// The context a request of this attempt carries: the attempt's own span, else `message`
    /// (the message's, e.g. unsampled).
    pub fn traceparent(&self, message: Option<TraceParent>) -> Option<TraceParent> {
        match &self.0 {
            Some(a) => TraceParent::of(a.span.span_context()),
            None => message,
        }
    }

    /// The target's answer: its HTTP status (when one came) and the error, if it failed.
    pub fn answered(&mut self, status: Option<u16>, error: Option<&str>) {
        let Some(a) = &mut self.0 else { return };
        a.answered_at = Some(SystemTime::now());
        if let Some(status) = status {
            a.span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if let Some(error) = error {
            a.span
                .set_attribute(KeyValue::new("event_relay.error", error.to_string()));
            a.span.set_status(Status::error(error.to_string()));
        }
    }

    /// Ends the span with the attempt's fate: `retry` (another attempt follows), `delivered`,
    /// `failed`, or `parked` on `parked_tier`.
    pub fn end(&mut self, outcome: &'static str, parked_tier: Option<&str>) {
        let Some(mut a) = self.0.take() else { return };
        a.span
            .set_attribute(KeyValue::new("event_relay.outcome", outcome));
        if let Some(tier) = parked_tier {
            a.span
                .set_attribute(KeyValue::new("event_relay.parked_tier", tier.to_string()));
        }
        match a.answered_at {
            Some(t) => a.span.end_with_timestamp(t),
            None => a.span.end(),
        }
    }
}
