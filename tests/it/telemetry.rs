//! OpenTelemetry traces end to end: the relay exports to an OTLP/HTTP receiver in the test (a
//! loopback server that keeps every request), which decodes the protobuf it got with the
//! protocol's own message types. Checked: a span per message continuing the message's
//! `traceparent` header, its `normalize` and `route` children, a child span per delivery attempt
//! (target, status, attempt, outcome, the tier a parked delivery went to, then the attempt out
//! of that tier in the same trace), the `traceparent` each request carries naming its attempt's
//! span, sampling, and nothing at all when telemetry is off.

use crate::fixtures::receiver::{Receiver, Reply, Req};
use crate::fixtures::*;
use crate::tiers::{parking, wait_metric};
use event_relay::config::TelemetryConfig;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use std::collections::HashMap;
use std::time::Duration;

const INBOUND_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INBOUND_SPAN: &str = "00f067aa0ba902b7";

fn telemetry(otlp: &Receiver, ratio: f64) -> TelemetryConfig {
    TelemetryConfig {
        otlp_endpoint: Some(otlp.url.clone()),
        sample_ratio: ratio,
        service_name: "relay-under-test".into(),
        ..TelemetryConfig::default()
    }
}

/// Every span the receiver got, checking each request is an OTLP/HTTP protobuf export of the
/// configured service.
fn spans(otlp: &Receiver) -> Vec<Span> {
    let mut out = Vec::new();
    for r in otlp.requests() {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        let export = ExportTraceServiceRequest::decode(r.raw.as_slice())
            .unwrap_or_else(|e| panic!("not an OTLP trace export: {e}"));
        for rs in export.resource_spans {
            let resource = rs.resource.expect("a resource");
            let service = resource.attributes.iter().find(|a| a.key == "service.name");
            assert_eq!(
                service.and_then(|a| text(a.value.as_ref()?.value.as_ref()?)),
                Some("relay-under-test".to_string())
            );
            out.extend(rs.scope_spans.into_iter().flat_map(|s| s.spans));
        }
    }
    out
}

fn text(v: &Any) -> Option<String> {
    match v {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A span's attribute as text (strings and integers).
fn attr(s: &Span, key: &str) -> Option<String> {
    let kv = s.attributes.iter().find(|a| a.key == key)?;
    text(kv.value.as_ref()?.value.as_ref()?)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `traceparent` of a request: (trace id, span id, flags).
fn traceparent(r: &Req) -> (String, String, String) {
    let v = r.header("traceparent").expect("a traceparent header");
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!((parts.len(), parts[0]), (4, "00"), "{v}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// Produces one Komo card per id, the first with a sampled `traceparent` header.
async fn produce_with_traceparent(env: &TestEnv, ids: &[String]) {
    let producer = env.broker.producer();
    for (i, payload) in cards(ids).iter().enumerate() {
        let tp = format!("00-{INBOUND_TRACE}-{INBOUND_SPAN}-01");
        let headers = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some(tp.as_str()),
        });
        let mut record = FutureRecord::to(&env.topics.source)
            .key("k")
            .payload(payload);
        if i == 0 {
            record = record.headers(headers);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
}

/// Two events, the first answered 503 once: three requests. Each event's message span, its
/// stages, its attempts, and each request's `traceparent` naming exactly one attempt span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_and_its_attempts_are_one_trace_and_requests_carry_it() {
    let otlp = Receiver::start(vec![]).await;
    let rx = Receiver::start(vec![Reply::status(503)]).await;
    let mut env = TestEnv::komo("g-otel-spans", 1).await;
    env.config.telemetry = telemetry(&otlp, 1.0);
    env.config.targets = vec![webhook("crm", &format!("{}/hook", rx.url))];
    env.config.routes.push(route_all(&["crm"]));
    let relay = env.relay();
    let ids = ids(2);
    produce_with_traceparent(&env, &ids).await;
    let results = env.results_json(2).await;
    // Stopping exports what the batch processor still holds.
    relay.stop().await.unwrap();
    assert!(results.iter().all(|r| r["event"] == "WebhookSuccess"));
    let spans = spans(&otlp);
    let by_id: HashMap<String, &Span> = spans.iter().map(|s| (hex(&s.span_id), s)).collect();

    let messages: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("process "))
        .collect();
    assert_eq!(messages.len(), 2, "a span per message");
    for m in &messages {
        assert_eq!(m.name, format!("process {}", env.topics.source));
        assert_eq!(attr(m, "messaging.system").as_deref(), Some("kafka"));
        let topic = attr(m, "messaging.destination.name");
        assert_eq!(topic.as_deref(), Some(env.topics.source.as_str()));
        assert!(attr(m, "messaging.kafka.offset").is_some());
        let event = &m
            .events
            .iter()
            .find(|e| e.name == "event")
            .expect("its event")
            .attributes;
        let id = event
            .iter()
            .find(|a| a.key == "event_relay.event_id")
            .unwrap();
        assert!(ids.contains(&text(id.value.as_ref().unwrap().value.as_ref().unwrap()).unwrap()));
        for stage in ["normalize", "route"] {
            let children: Vec<_> = spans
                .iter()
                .filter(|s| s.name == stage && s.parent_span_id == m.span_id)
                .collect();
            assert_eq!(children.len(), 1, "one {stage} span under {}", m.name);
            assert_eq!(children[0].trace_id, m.trace_id);
        }
    }
    // The first message continues the trace of its traceparent header; the second starts one.
    let inbound = messages.iter().find(|m| hex(&m.trace_id) == INBOUND_TRACE);
    assert_eq!(
        hex(&inbound.expect("the inbound trace").parent_span_id),
        INBOUND_SPAN
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.parent_span_id.is_empty())
            .count(),
        1
    );

    let attempts: Vec<&Span> = spans.iter().filter(|s| s.name == "deliver crm").collect();
    let requests = rx.requests();
    assert_eq!(
        (attempts.len(), requests.len()),
        (3, 3),
        "a span per attempt"
    );
    for a in &attempts {
        let parent = by_id
            .get(&hex(&a.parent_span_id))
            .expect("its message's span");
        assert!(parent.name.starts_with("process ") && parent.trace_id == a.trace_id);
        assert_eq!(attr(a, "event_relay.target").as_deref(), Some("crm"));
    }
    let outcome = |a: &Span| {
        let (n, status) = (
            attr(a, "event_relay.attempt"),
            attr(a, "http.response.status_code"),
        );
        (
            n.unwrap(),
            status.unwrap(),
            attr(a, "event_relay.outcome").unwrap(),
        )
    };
    let mut seen: Vec<_> = attempts.iter().map(|a| outcome(a)).collect();
    seen.sort();
    let want = [
        ("1", "200", "delivered"),
        ("1", "503", "retry"),
        ("2", "200", "delivered"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(seen, want);
    // Each request names its own attempt's span, sampled.
    for r in &requests {
        let (trace, span, flags) = traceparent(r);
        let a = by_id
            .get(&span)
            .expect("a request's traceparent names an attempt span");
        assert_eq!(
            (a.name.as_str(), hex(&a.trace_id), flags.as_str()),
            ("deliver crm", trace, "01")
        );
        let event_id = attr(a, "event_relay.event_id").unwrap();
        assert_eq!(r.json()["id"], event_id.as_str());
    }
}

/// A delivery parked on a tier: its attempt span says which tier, and the attempt out of the
/// tier (after the record went through Kafka) is a child of the same message span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_delivery_rejoins_its_trace_after_the_tier() {
    let otlp = Receiver::start(vec![]).await;
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(503));
    let mut env = TestEnv::komo("g-otel-tier", 1).await;
    env.with_tiers(&[secs(1)]).await;
    env.config.telemetry = telemetry(&otlp, 1.0);
    env.config.targets = vec![parking("crm", &rx.url)];
    env.config.routes.push(route_all(&["crm"]));
    let relay = env.relay();
    env.produce(&cards(&ids(1))).await;
    wait_metric(
        &relay,
        "event_relay_parked_total{target=\"crm\",tier=\"1s\"}",
        1.0,
    )
    .await;
    rx.set_default(Reply::status(200));
    let results = env.results_json(1).await;
    relay.stop().await.unwrap();
    assert_eq!(results[0]["event"], "WebhookSuccess", "{results:?}");
    assert_eq!(results[0]["parked"], 1, "{results:?}");

    let spans = spans(&otlp);
    let message = spans
        .iter()
        .find(|s| s.name.starts_with("process "))
        .expect("the message span");
    let attempts: Vec<&Span> = spans.iter().filter(|s| s.name == "deliver crm").collect();
    assert_eq!(attempts.len(), rx.requests().len(), "a span per request");
    for a in &attempts {
        assert_eq!(
            (&a.trace_id, &a.parent_span_id),
            (&message.trace_id, &message.span_id)
        );
    }
    let parked: Vec<_> = attempts
        .iter()
        .filter(|a| attr(a, "event_relay.outcome").as_deref() == Some("parked"))
        .collect();
    assert_eq!(parked.len(), 1, "the memory phase's last attempt parks it");
    assert_eq!(
        attr(parked[0], "event_relay.parked_tier").as_deref(),
        Some("1s")
    );
    assert_eq!(
        attr(parked[0], "http.response.status_code").as_deref(),
        Some("503")
    );
    let after: Vec<_> = attempts
        .iter()
        .filter(|a| attr(a, "event_relay.tier").as_deref() == Some("1s"))
        .collect();
    assert_eq!(after.len(), 1, "one attempt out of the tier");
    assert_eq!(
        attr(after[0], "event_relay.outcome").as_deref(),
        Some("delivered")
    );
    let last_request = rx.requests().pop().unwrap();
    assert_eq!(traceparent(&last_request).1, hex(&after[0].span_id));
}

/// `sample_ratio = 0`: nothing is exported, yet requests carry the (unsampled) trace context;
/// telemetry off: no span, no header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_messages_export_nothing_and_off_adds_no_header() {
    for ratio in [Some(0.0), None] {
        let otlp = Receiver::start(vec![]).await;
        let rx = Receiver::start(vec![]).await;
        let mut env = TestEnv::komo("g-otel-off", 1).await;
        if let Some(ratio) = ratio {
            env.config.telemetry = telemetry(&otlp, ratio);
        }
        env.config.targets = vec![webhook("crm", &format!("{}/hook", rx.url))];
        env.config.routes.push(route_all(&["crm"]));
        let relay = env.relay();
        env.produce(&cards(&ids(3))).await;
        env.results_json(3).await;
        relay.stop().await.unwrap();
        assert!(spans(&otlp).is_empty(), "ratio {ratio:?}: no span exported");
        for r in rx.requests() {
            match ratio {
                Some(_) => assert_eq!(traceparent(&r).2, "00", "unsampled"),
                None => assert_eq!(r.header("traceparent"), None),
            }
        }
    }
}
