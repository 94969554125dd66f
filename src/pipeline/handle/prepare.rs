//! Preparing one consumed message: its offset taken into the tracker, normalized, each event
//! counted and routed, its span opened when traced (`[telemetry]`) and its tap lines offered:
//! a [`Job`] that waits for its in-flight permits.

use super::{count_problems, count_rejection, event_label, Job, JobKind, Planned, Stages};
use crate::ack::Tp;
use crate::config::SourceFormat;
use crate::envelope::{Envelope, Origin};
use crate::normalize::SourceSettings;
use crate::pipeline::live::Live;
use crate::pipeline::tap_lines::{rejected_line, tap_event};
use crate::report::REDRIVEN_HEADER;
use crate::telemetry::MessageSpan;
use rdkafka::message::{Headers, Message, OwnedMessage};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Normalizes and routes one message under `live`; `None` when it belongs to a partition no
/// longer assigned (left to its new owner).
pub fn prepare(p: &Stages, live: &Arc<Live>, msg: OwnedMessage) -> Option<Job> {
    let tp: Tp = (msg.topic().to_string(), msg.partition());
    let offset = msg.offset();
    p.metrics
        .messages_consumed
        .with_label_values(&[&tp.0])
        .inc();
    let Some(generation) = p.tracker.begin(&tp, offset) else {
        tracing::debug!(topic = %tp.0, partition = tp.1, offset, "message of a partition no longer assigned; left to its new owner");
        return None;
    };
    let key = msg.key().map(<[u8]>::to_vec);
    let redriven = is_redriven(&msg);
    if redriven {
        p.metrics.redriven.with_label_values(&["dead-letter"]).inc();
    }
    let mut trace = None;
    let (origin, format, kind) = match live.settings.get(&tp.0) {
        None => {
            tracing::error!(topic = %tp.0, "message from a topic that is not a configured source");
            let origin = Origin {
                topic: tp.0.clone(),
                partition: tp.1,
                offset,
                key: None,
            };
            (origin, SourceFormat::Auto, JobKind::Nothing)
        }
        Some(settings) => {
            let origin = Origin {
                topic: tp.0.clone(),
                partition: tp.1,
                offset,
                key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            };
            let mut span = message_span(p, &msg);
            let kind = normalize_and_route(p, live, &msg, (settings, &origin), span.as_mut());
            trace = span.as_ref().and_then(MessageSpan::parent);
            (origin, settings.format, kind)
        }
    };
    Some(Job {
        tp,
        offset,
        generation,
        origin,
        format,
        key,
        redriven,
        bytes: msg.payload().map_or(0, <[u8]>::len),
        kind,
        live: live.clone(),
        trace,
    })
}

/// The message's span when telemetry is on, continuing its `traceparent` header's trace.
fn message_span(p: &Stages, msg: &OwnedMessage) -> Option<MessageSpan> {
    if !p.telemetry.enabled() {
        return None;
    }
    let parent = msg.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == crate::telemetry::TRACEPARENT)
            .and_then(|h| h.value)
    });
    p.telemetry
        .message(msg.topic(), msg.partition(), msg.offset(), parent)
}

/// Whether `msg` was re-produced by `event-relay redrive --from dead-letter`.
fn is_redriven(msg: &OwnedMessage) -> bool {
    msg.headers().is_some_and(|h| {
        h.iter()
            .any(|h| h.key == REDRIVEN_HEADER && h.value == Some(b"true".as_slice()))
    })
}

/// Normalizes one message and routes each of its events (`span`: the message's, when traced).
fn normalize_and_route(
    p: &Stages,
    live: &Live,
    msg: &OwnedMessage,
    (settings, origin): (&SourceSettings, &Origin),
    mut span: Option<&mut MessageSpan>,
) -> JobKind {
    let raw = msg.payload().unwrap_or_default();
    // The tap's one atomic load for the whole message.
    let tapping = p.tap.active();
    let started = span.is_some().then(SystemTime::now);
    let t0 = Instant::now();
    let result = live.normalizer.normalize(raw, settings, origin.clone());
    p.metrics
        .normalize_duration
        .observe(t0.elapsed().as_secs_f64());
    let normalized = match result {
        Ok(n) => n,
        Err(err) => {
            if let (Some(s), Some(t)) = (span, started) {
                s.normalized(t, 0, 1, Some((err.reason(), &err.to_string())));
            }
            count_rejection(p, live, settings.format, &err);
            if tapping {
                p.tap.send(rejected_line(&err, settings.format, origin));
            }
            return JobKind::Rejected {
                raw: raw.to_vec(),
                err,
            };
        }
    };
    if let (Some(s), Some(t)) = (span.as_deref_mut(), started) {
        s.normalized(t, normalized.events.len(), normalized.rejected.len(), None);
    }
    let routed_from = span.is_some().then(SystemTime::now);
    let mut work = normalized.rejected.len();
    let plan = route_events(p, live, normalized.events, tapping, span.as_deref_mut());
    work += plan
        .iter()
        .map(|(_, _, targets)| targets.len())
        .sum::<usize>();
    if let (Some(s), Some(t)) = (span, routed_from) {
        s.routed(t, work - normalized.rejected.len());
    }
    if tapping {
        for r in &normalized.rejected {
            p.tap.send(rejected_line(&r.error, settings.format, origin));
        }
    }
    JobKind::Events {
        plan,
        rejected: normalized.rejected,
        work,
    }
}

/// Counts each normalized event and routes it: its envelope, raw bytes and target indices.
fn route_events(
    p: &Stages,
    live: &Live,
    events: Vec<(Envelope, Arc<[u8]>)>,
    tapping: bool,
    mut span: Option<&mut MessageSpan>,
) -> Vec<Planned> {
    let mut plan = Vec::with_capacity(events.len());
    for (env, raw) in events {
        let src = env.source.as_str();
        let label = event_label(&live.normalizer, env.source, &env.event);
        p.metrics
            .events_normalized
            .with_label_values(&[src, label, env.validation.status.as_str()])
            .inc();
        count_problems(
            p,
            src,
            label,
            env.validation.status,
            &env.validation.problems,
        );
        let decision = live.router.route(&env);
        if decision.routes.is_empty() && decision.targets.is_empty() {
            p.metrics.unrouted.with_label_values(&[src]).inc();
            tracing::debug!(event_id = %env.id, event = %env.event, reason = "unrouted", "event matched no route");
        }
        if tapping {
            tap_event(&p.tap, live, &env, &decision);
        }
        if let Some(s) = span.as_deref_mut() {
            let runtimes = &live.targets.runtimes;
            let names = decision.targets.iter();
            let names = names.map(|&t| runtimes[t].info.name.clone()).collect();
            s.event(&env.id, &env.event, env.validation.status.as_str(), names);
        }
        plan.push((Arc::new(env), raw, decision.targets));
    }
    plan
}
