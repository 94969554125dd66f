//! One consumed message: normalize and route it (`prepare`), then, once it holds its in-flight
//! permits, hand its deliveries to the targets and its rejections to the dead letters
//! (`dispatch`). [`Stages`] is what the two need: the pure stages and the outputs.

use super::bound::{Bound, Cost};
use super::live::{Live, LiveCell};
use super::tap_lines::{event_name, rejected_line, tap_event};
use crate::ack::{OffsetTracker, Permits, Ticket, Tp};
use crate::catalog::rule::rules_of;
use crate::config::SourceFormat;
use crate::deliver::Delivery;
use crate::envelope::{Envelope, Origin, Source, ValidationStatus};
use crate::metrics::Metrics;
use crate::normalize::{NormalizeError, Normalizer, Rejected, SourceSettings};
use crate::report::{DeadLetter, Reporter, REDRIVEN_HEADER};
use crate::tap::Tap;
use rdkafka::message::{Headers, Message, OwnedMessage};
use std::sync::Arc;
use std::time::Instant;

/// Everything a consumed message is handed through: normalize → route → targets / dead
/// letters (the [`Live`] part, which a reload swaps), plus the in-flight bound and the offset
/// bookkeeping.
pub struct Stages {
    /// The normalizer, source settings, router and targets of the running config.
    pub live: Arc<LiveCell>,
    pub reporter: Arc<Reporter>,
    pub metrics: Arc<Metrics>,
    pub tracker: Arc<OffsetTracker>,
    /// The in-flight bound (events and bytes).
    pub bound: Bound,
    /// Where consumed, normalized and routed events are shown live (`GET /tap`).
    pub tap: Arc<Tap>,
}

impl Stages {
    /// Events consumed and not yet final.
    pub fn in_flight(&self) -> usize {
        self.bound.events_in_flight()
    }

    /// Updates the in-flight gauges.
    pub fn report_in_flight(&self) {
        self.metrics.in_flight_events.set(self.in_flight() as i64);
        let bytes = self.bound.bytes_in_flight();
        self.metrics.in_flight_bytes.set(bytes as i64);
    }
}

/// The `source` label of a source's format (the metric-label edge of [`SourceFormat`]).
fn format_label(format: SourceFormat) -> &'static str {
    match format {
        SourceFormat::Komo => Source::Komo.as_str(),
        SourceFormat::Acemate => Source::Acemate.as_str(),
        SourceFormat::Auto => "auto",
    }
}

/// The `event` metric label: catalog names as they are, anything else folded into `other`.
fn event_label<'a>(n: &Normalizer, source: Source, event: &'a str) -> &'a str {
    if n.catalogs().knows(source, event) {
        event
    } else {
        "other"
    }
}

/// Counts the catalog rules an event broke (`event_relay_validation_problems_total`).
fn count_problems(
    p: &Stages,
    source: &str,
    event: &str,
    status: ValidationStatus,
    problems: &[String],
) {
    for rule in rules_of(status, problems) {
        p.metrics
            .validation_problems
            .with_label_values(&[source, event, rule.as_str()])
            .inc();
    }
}

fn count_rejection(p: &Stages, live: &Live, format: SourceFormat, err: &NormalizeError) {
    match err {
        NormalizeError::Invalid {
            event,
            catalog,
            problems,
            ..
        } => {
            let label = event_label(&live.normalizer, *catalog, event);
            p.metrics
                .events_normalized
                .with_label_values(&[catalog.as_str(), label, "invalid"])
                .inc();
            count_problems(
                p,
                catalog.as_str(),
                label,
                ValidationStatus::Invalid,
                problems,
            );
        }
        NormalizeError::UnknownEvent(..) => {
            p.metrics
                .events_normalized
                .with_label_values(&[format_label(format), "other", "unknown_event"])
                .inc();
            let status = ValidationStatus::UnknownEvent;
            count_problems(p, format_label(format), "other", status, &[]);
        }
        _ => {}
    }
}

/// The dead letter's `source` header: the catalog that judged the event, else the format.
pub(super) fn source_label(err: &NormalizeError, format: SourceFormat) -> &'static str {
    match err {
        NormalizeError::Invalid { catalog, .. } => catalog.as_str(),
        _ => format_label(format),
    }
}

/// One dead letter to write for a message (or one event of a batch).
struct Rejection {
    raw: Vec<u8>,
    key: Option<Vec<u8>>,
    err: NormalizeError,
    batch_index: Option<usize>,
    /// The message was re-produced by `redrive --from dead-letter`.
    redriven: bool,
}

fn spawn_dead_letter(
    p: &Stages,
    ticket: Arc<Ticket>,
    origin: &Origin,
    format: SourceFormat,
    r: Rejection,
) {
    let reporter = p.reporter.clone();
    let origin = origin.clone();
    tokio::spawn(async move {
        let dl = DeadLetter {
            source: source_label(&r.err, format),
            topic: &origin.topic,
            partition: origin.partition,
            offset: origin.offset,
            reason: r.err.reason(),
            error: r.err.to_string(),
            problems: r.err.problems(),
            batch_index: r.batch_index,
            source_event_id: r.err.event_id(),
            event: event_name(&r.err),
            redriven: r.redriven,
        };
        if reporter.dead_letter(&r.raw, r.key.as_deref(), &dl).await {
            ticket.finish_one();
        }
    });
}

/// What one consumed message turned into, before it takes its in-flight permits.
pub struct Job {
    tp: Tp,
    offset: i64,
    generation: u64,
    origin: Origin,
    /// The source's format (`Auto` for a topic that is not a source).
    format: SourceFormat,
    key: Option<Vec<u8>>,
    /// The message carries `redriven: true` (its dead letters carry it on).
    redriven: bool,
    /// Its payload's size (against `pipeline.max_in_flight_bytes`).
    bytes: usize,
    kind: JobKind,
    /// The stages it was prepared with (its target indices are theirs).
    live: Arc<Live>,
}

enum JobKind {
    /// Nothing to do (a topic that is not a source): finished at once.
    Nothing,
    /// The whole message is rejected: one dead letter.
    Rejected { raw: Vec<u8>, err: NormalizeError },
    /// Events to deliver (each to its targets) and rejected events of a batch.
    Events {
        plan: Vec<Planned>,
        rejected: Vec<Rejected>,
        work: usize,
    },
}

type Planned = (Arc<Envelope>, Arc<[u8]>, Vec<usize>);

impl Job {
    /// The message's partition and offset.
    pub fn position(&self) -> (Tp, i64) {
        (self.tp.clone(), self.offset)
    }

    /// What this message takes of the in-flight bound: one permit per event (a PostHog-style
    /// batch message holds many) and its payload's KiB, each clamped by [`Bound::cost`].
    pub fn cost(&self, bound: &Bound) -> Cost {
        let events = match &self.kind {
            JobKind::Events { plan, rejected, .. } => plan.len() + rejected.len(),
            _ => 1,
        };
        bound.cost(events, self.bytes)
    }
}

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
            let kind = normalize_and_route(p, live, &msg, settings, &origin);
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
    })
}

/// Whether `msg` was re-produced by `event-relay redrive --from dead-letter`.
fn is_redriven(msg: &OwnedMessage) -> bool {
    msg.headers().is_some_and(|h| {
        h.iter()
            .any(|h| h.key == REDRIVEN_HEADER && h.value == Some(b"true".as_slice()))
    })
}

/// Normalizes one message and routes each of its events.
fn normalize_and_route(
    p: &Stages,
    live: &Live,
    msg: &OwnedMessage,
    settings: &SourceSettings,
    origin: &Origin,
) -> JobKind {
    let raw = msg.payload().unwrap_or_default();
    // The tap's one atomic load for the whole message.
    let tapping = p.tap.active();
    let t0 = Instant::now();
    let result = live.normalizer.normalize(raw, settings, origin.clone());
    p.metrics
        .normalize_duration
        .observe(t0.elapsed().as_secs_f64());
    let normalized = match result {
        Ok(n) => n,
        Err(err) => {
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
    let mut plan = Vec::with_capacity(normalized.events.len());
    let mut work = normalized.rejected.len();
    for (env, raw) in normalized.events {
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
        work += decision.targets.len();
        plan.push((Arc::new(env), raw, decision.targets));
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

/// Hands a prepared message off under its permits: deliveries to the target queues, dead
/// letters to the reporter; the permits are released when the message's fate is final. A
/// message whose partition was revoked while it waited for permits is left to the partition's
/// next owner (which starts at or before its offset: see `ack`).
pub fn dispatch(p: &Stages, job: Job, permit: Permits) {
    if !p.tracker.is_current(&job.tp, job.generation) {
        tracing::debug!(topic = %job.tp.0, partition = job.tp.1, offset = job.offset, "partition revoked while the message waited; left to its new owner");
        return;
    }
    let Job {
        tp,
        offset,
        generation,
        origin,
        format,
        key,
        redriven,
        kind,
        live,
        ..
    } = job;
    match kind {
        JobKind::Nothing => {
            Ticket::new(p.tracker.clone(), tp, offset, generation, 0, permit);
        }
        JobKind::Rejected { raw, err } => {
            let ticket = Ticket::new(p.tracker.clone(), tp, offset, generation, 1, permit);
            spawn_dead_letter(
                p,
                ticket,
                &origin,
                format,
                Rejection {
                    raw,
                    key,
                    err,
                    batch_index: None,
                    redriven,
                },
            );
        }
        JobKind::Events {
            plan,
            rejected,
            work,
        } => {
            let ticket = Ticket::new(p.tracker.clone(), tp, offset, generation, work, permit);
            for r in rejected {
                count_rejection(p, &live, format, &r.error);
                spawn_dead_letter(
                    p,
                    ticket.clone(),
                    &origin,
                    format,
                    Rejection {
                        raw: r.raw,
                        key: key.clone(),
                        err: r.error,
                        batch_index: Some(r.index),
                        redriven,
                    },
                );
            }
            let targets = &live.targets;
            for (env, raw, indices) in plan {
                for t in indices {
                    targets.submit(
                        t,
                        Delivery {
                            env: env.clone(),
                            raw: targets.raw_for(t, &raw),
                            size: raw.len(),
                            ticket: ticket.clone(),
                            journey: Default::default(),
                            shaped: None,
                        },
                    );
                }
            }
        }
    }
}
