//! One consumed message: normalize and route it (`prepare`), then, once it holds its in-flight
//! permits, hand its deliveries to the targets and its rejections to the dead letters
//! (`dispatch`). [`Stages`] is what the two need: the pure stages and the outputs.

use super::bound::{Bound, Cost};
use super::live::{Live, LiveCell};
use super::tap_lines::event_name;
use crate::ack::{OffsetTracker, Permits, Ticket, Tp};
use crate::catalog::rule::rules_of;
use crate::config::SourceFormat;
use crate::deliver::Delivery;
use crate::envelope::{Envelope, Origin, Source, ValidationStatus};
use crate::metrics::Metrics;
use crate::normalize::{NormalizeError, Normalizer, Rejected};
use crate::report::{DeadLetter, Journey, Reporter};
use crate::tap::Tap;
use crate::telemetry::{Telemetry, TraceParent};
use std::sync::Arc;

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
    /// Spans of each message and its delivery attempts (`[telemetry]`; off: none).
    pub telemetry: Arc<Telemetry>,
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

mod prepare;
pub use prepare::prepare;

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
    /// Its span's context, the parent of its deliveries' attempt spans (`[telemetry]` on).
    trace: Option<TraceParent>,
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
        trace,
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
                            journey: Journey {
                                trace,
                                ..Journey::default()
                            },
                            shaped: None,
                            span: Default::default(),
                        },
                    );
                }
            }
        }
    }
}
