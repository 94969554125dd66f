//! Where a delivery goes once a phase of attempts is over: a result event (accepted, or failed
//! for good, then also the failed topic when tiers are on), or a parked record on the next
//! retry tier. A parked delivery's ticket is finished once Kafka acknowledged the record, so
//! the source offset commits while the delivery waits in the tier.

use super::attempt::Outcomes;
use super::{Delivery, TargetRuntime};
use crate::config::Tier;
use crate::envelope::Envelope;
use crate::report::{Failure, Journey, Outcome, ParkedRecord, PendingResult};
use std::sync::Arc;
use std::time::SystemTime;

/// A delivery's final outcome, with why a failure is final ("final" or "exhausted").
type Final = (Delivery, (Outcome, &'static str), Journey);

/// Settles every delivery of a batch whose phase is over. The batch's metrics are counted
/// once for all its final outcomes (one update per request, not per event), before any of
/// their result events goes out.
pub(super) fn settle(rt: &Arc<TargetRuntime>, outcomes: Outcomes) {
    let now = SystemTime::now();
    let mut finals: Vec<Final> = Vec::with_capacity(outcomes.len());
    for (mut d, settled) in outcomes {
        let attempts = d.journey.attempts + settled.attempts;
        let first_attempt_at = d.journey.first_attempt_at.or(settled.first_attempt_at);
        // Across tiers, the duration runs from the very first attempt.
        let duration = match d.journey.first_attempt_at {
            Some(first) => now.duration_since(first).unwrap_or(settled.duration),
            None => settled.duration,
        };
        let journey = Journey {
            attempts,
            first_attempt_at,
            ..d.journey.clone()
        };
        // Why a failure is final: its retries ran out, or the answer was final.
        let mut reason = "final";
        let outcome = match settled.result {
            Ok(status) => {
                d.span.end("delivered", None);
                Outcome::Delivered {
                    status,
                    attempts,
                    duration,
                }
            }
            Err(err) => {
                if err.is_retryable() {
                    reason = "exhausted";
                }
                let tier = err.is_retryable().then(|| {
                    rt.schedule
                        .next_tier(&d.journey, attempts, err.retry_after(), (now, received(&d)))
                        .cloned()
                });
                if let Some(Some(tier)) = tier {
                    d.span.end("parked", Some(&tier.label));
                    tokio::spawn(park(rt.clone(), d, tier, journey, err.to_string()));
                    continue;
                }
                d.span.end("failed", None);
                Outcome::Failed {
                    error: err.into_failure(),
                    attempts,
                    duration,
                }
            }
        };
        finals.push((d, (outcome, reason), journey));
    }
    count(rt, finals.iter().map(|(_, (outcome, _), _)| outcome));
    let stamp = crate::envelope::now_rfc3339();
    let mut buf = Vec::with_capacity(1024);
    for (d, outcome, journey) in finals {
        finish(rt, d, outcome, journey, &mut buf, &stamp);
    }
}

/// Counts final outcomes in the target's metrics: delivered or failed, and the delivery
/// duration, added to the shared metrics once for them all.
fn count<'a>(rt: &TargetRuntime, outcomes: impl Iterator<Item = &'a Outcome>) {
    let own = &rt.own_metrics;
    let (mut delivered, mut failed) = (0, 0);
    let durations = own.delivery_duration.local();
    for outcome in outcomes {
        if outcome.is_delivered() {
            delivered += 1;
        } else {
            failed += 1;
        }
        durations.observe(outcome.duration().as_secs_f64());
    }
    durations.flush();
    if delivered > 0 {
        own.delivered.inc_by(delivered);
    }
    if failed > 0 {
        own.failed.inc_by(failed);
    }
}

/// When the relay received the delivery's event (its envelope's `received_at`).
fn received(d: &Delivery) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(&d.env.received_at)
        .ok()
        .map(SystemTime::from)
}

/// A delivery from the source that is parked without an attempt: its target is at its budget
/// or its circuit is open. `None` when the schedule has no tier for it (it is held instead).
pub(super) fn untried_tier(rt: &TargetRuntime, d: &Delivery) -> Option<Tier> {
    rt.schedule
        .next_tier(
            &d.journey,
            d.journey.attempts,
            None,
            (SystemTime::now(), received(d)),
        )
        .cloned()
}

/// Parks `d` on `tier` without an attempt (see [`untried_tier`]).
pub(super) fn park_untried(rt: Arc<TargetRuntime>, d: Delivery, tier: Tier) {
    let why = if rt.circuit.is_open() {
        format!("circuit open (target {} kept failing)", rt.info.name)
    } else {
        format!(
            "target {} at its budget of {} deliveries in memory (max_queued_events)",
            rt.info.name, rt.schedule.budget
        )
    };
    let journey = d.journey.clone();
    tokio::spawn(park(rt, d, tier, journey, why));
}

/// A delivery that failed for good before any request (its transform failed on the event):
/// its final outcome, reported as any other (never retried, never parked).
pub(super) fn fail_untried(rt: &Arc<TargetRuntime>, d: Delivery, error: Failure) {
    let outcome = Outcome::Failed {
        error,
        attempts: d.journey.attempts,
        duration: std::time::Duration::ZERO,
    };
    let journey = d.journey.clone();
    let mut buf = Vec::with_capacity(1024);
    let stamp = crate::envelope::now_rfc3339();
    count(rt, std::iter::once(&outcome));
    finish(rt, d, (outcome, "final"), journey, &mut buf, &stamp);
}

/// Writes `d` to `tier` (due after the tier's delay) and finishes its ticket once Kafka
/// acknowledged it; left unfinished only when the relay aborts.
async fn park(
    rt: Arc<TargetRuntime>,
    d: Delivery,
    tier: Tier,
    journey: Journey,
    last_error: String,
) {
    let record = ParkedRecord {
        env: (*d.env).clone(),
        raw: d.raw.to_vec(),
        target: rt.info.name.clone(),
        target_id: rt.info.guid,
        journey: Journey {
            parked: journey.parked + 1,
            tier: Some(tier.label.clone()),
            ..journey
        },
        due_at: SystemTime::now() + tier.delay,
        last_error,
        reason: None,
    };
    if rt.reporter.park(&tier.topic, &record).await {
        rt.metrics
            .parked
            .with_label_values(&[&rt.info.name, &tier.label])
            .inc();
        tracing::debug!(target_name = %rt.info.name, source_event_id = %d.env.id, tier = %tier.label, "delivery parked");
        d.ticket.finish_one();
    }
}

/// The final outcome of `d` (already counted, see [`count`]): logged if failed, written to the
/// failed topic if failed with tiers on, and reported by its result event (which finishes the
/// ticket).
fn finish(
    rt: &Arc<TargetRuntime>,
    d: Delivery,
    (outcome, reason): (Outcome, &'static str),
    journey: Journey,
    buf: &mut Vec<u8>,
    stamp: &str,
) {
    // Moved, not cloned: no reference count touched per event.
    let Delivery {
        env, raw, ticket, ..
    } = d;
    let pending = PendingResult {
        env,
        target: rt.info.clone(),
        outcome,
        journey,
        ticket,
    };
    let Some(error) = pending.outcome.error() else {
        rt.reporter.send_result(pending, buf, stamp);
        return;
    };
    tracing::warn!(
        target_name = %rt.info.name,
        source_event_id = %pending.env.id,
        event = %pending.env.event,
        attempts = pending.outcome.attempts(),
        status_code = pending.outcome.status_code(),
        parked = pending.journey.parked,
        %error,
        "delivery failed for good"
    );
    match rt.schedule.failed_topic.clone() {
        None => rt.reporter.send_result(pending, buf, stamp),
        Some(topic) => {
            let record = failed_record(rt, (&pending.env, &raw), &pending.journey, error, reason);
            let rt = rt.clone();
            tokio::spawn(async move {
                if rt.reporter.park(&topic, &record).await {
                    let mut buf = Vec::with_capacity(1024);
                    let stamp = crate::envelope::now_rfc3339();
                    rt.reporter.send_result(pending, &mut buf, &stamp);
                }
            });
        }
    }
}

/// The failed-topic record of a delivery that failed for good: due at once, so a redrive can
/// re-enter it as it is.
fn failed_record(
    rt: &TargetRuntime,
    (env, raw): (&Envelope, &[u8]),
    journey: &Journey,
    error: &Failure,
    reason: &str,
) -> ParkedRecord {
    ParkedRecord {
        env: env.clone(),
        raw: raw.to_vec(),
        target: rt.info.name.clone(),
        target_id: rt.info.guid,
        journey: journey.clone(),
        due_at: SystemTime::now(),
        last_error: error.to_string(),
        reason: Some(reason.to_string()),
    }
}
