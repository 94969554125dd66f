//! One batch's way to a final outcome: circuit admission, rate limit, the attempt, retries with
//! backoff, and splitting a batch a target refuses as a whole (400/413) so only the bad events
//! fail.

use super::retry::{AttemptError, RetryState};
use super::schedule::Phase;
use super::{Delivery, TargetRuntime};
use crate::report::Failure;
use crate::telemetry::TraceParent;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How one phase of attempts on a delivery ended (the caller decides what a failure becomes:
/// a parked delivery or a final outcome, see [`super::schedule::Schedule::next_tier`]).
#[derive(Debug, Clone)]
pub(super) struct Settled {
    /// The accepting status, or the last failure (retryable ones are the phase running out).
    pub result: Result<u16, AttemptError>,
    /// Requests made in this phase, splits included.
    pub attempts: usize,
    /// From the phase's first attempt (or taking the delivery up) to its end.
    pub duration: Duration,
    /// When the phase's first attempt went out, if one did.
    pub first_attempt_at: Option<SystemTime>,
}

pub(super) type Outcomes = Vec<(Delivery, Settled)>;

/// How the attempts on one batch ended.
enum End {
    /// Accepted, failed for good, or the phase is over.
    Settled(Settled),
    /// Refused as a whole in a way some of its events may be to blame for: split it.
    Split,
    /// The relay is aborting: the batch is abandoned (its tickets stay unfinished).
    Aborted,
}

/// Attempts a batch until success, a final failure or the end of its phase. A failure that
/// [`AttemptError::splits_batch`] on a multi-event batch splits it in halves, each retried on
/// its own. Returns nothing for deliveries abandoned by an abort (their tickets stay
/// unfinished).
pub(super) fn deliver(
    rt: Arc<TargetRuntime>,
    mut batch: Vec<Delivery>,
    phase: Phase,
    prior_attempts: usize,
) -> Pin<Box<dyn Future<Output = Outcomes> + Send>> {
    Box::pin(async move {
        let mut st = RetryState::new(&rt.schedule.backoff, phase);
        let mut first_attempt_at = None;
        let at = (prior_attempts, &mut first_attempt_at);
        let end = attempt_until_final(&rt, &mut batch, &mut st, phase, at).await;
        let attempts = prior_attempts + st.attempts;
        match end {
            End::Settled(mut settled) => {
                settled.attempts = attempts;
                settled.first_attempt_at = first_attempt_at;
                batch.into_iter().map(|d| (d, settled.clone())).collect()
            }
            End::Split => {
                end_spans(&mut batch, "split");
                split(rt, batch, phase, attempts).await
            }
            End::Aborted => Vec::new(),
        }
    })
}

fn settled(result: Result<u16, AttemptError>, duration: Duration) -> End {
    End::Settled(Settled {
        result,
        attempts: 0,
        duration,
        first_attempt_at: None,
    })
}

/// The attempt loop of one batch: wait for the circuit, send, then end, split or back off.
/// `prior`: attempts already made on the batch in this phase (before a split).
async fn attempt_until_final(
    rt: &TargetRuntime,
    batch: &mut [Delivery],
    st: &mut RetryState,
    phase: Phase,
    (prior, first_attempt_at): (usize, &mut Option<SystemTime>),
) -> End {
    let mut first_attempt: Option<Instant> = None;
    loop {
        if let Some(end) = admit(rt, st, phase).await {
            return end;
        }
        st.attempts += 1;
        let started = *first_attempt.get_or_insert_with(|| {
            *first_attempt_at = Some(SystemTime::now());
            Instant::now()
        });
        let err = match send_once(rt, batch, prior + st.attempts).await {
            None => return End::Aborted,
            Some(Ok(status)) => return settled(Ok(status), started.elapsed()),
            Some(Err(err)) => err,
        };
        if batch.len() > 1 && err.splits_batch() {
            return End::Split;
        }
        let Some(wait) = st.next_delay(&err) else {
            return settled(Err(err), started.elapsed());
        };
        tracing::debug!(target_name = %rt.info.name, attempt = st.attempts, wait_ms = wait.as_millis() as u64, error = %err, "retrying");
        end_spans(batch, "retry");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {},
            _ = rt.abort.cancelled() => return End::Aborted,
        }
    }
}

/// Waits until the circuit admits a request, then for the rate limit. Ends the phase when the
/// circuit stays open for the rest of it (at once for a tier delivery: at most one probe), or
/// the relay aborts.
async fn admit(rt: &TargetRuntime, st: &RetryState, phase: Phase) -> Option<End> {
    // Counted from taking the delivery up: no attempt may have been made.
    let circuit_open = || {
        let target = rt.info.name.clone();
        let failure = if phase.wait_for_circuit {
            Failure::CircuitOpen {
                target,
                max_elapsed: crate::config::ConfigDuration(phase.limit),
            }
        } else {
            Failure::CircuitStillOpen { target }
        };
        let err = AttemptError::Retryable {
            failure,
            retry_after: None,
        };
        Some(settled(Err(err), st.elapsed()))
    };
    if !phase.wait_for_circuit {
        if !rt.circuit.try_admit() {
            return circuit_open();
        }
    } else {
        tokio::select! {
            biased;
            _ = rt.circuit.admit() => {}
            _ = tokio::time::sleep(st.budget_left()) => return circuit_open(),
            _ = rt.abort.cancelled() => return Some(End::Aborted),
        }
    }
    if let Some(rate) = &rt.rate {
        rate.acquire().await;
    }
    None
}

/// Ends the open attempt spans of `batch` with `outcome` (`retry`, `split`).
fn end_spans(batch: &mut [Delivery], outcome: &'static str) {
    for d in batch {
        d.span.end(outcome, None);
    }
}

/// Opens each delivery's span for its attempt `attempt` of this phase (when its message is
/// traced) and returns the trace context the request carries: the first traced delivery's
/// attempt, else the first delivery's message.
fn open_spans(rt: &TargetRuntime, batch: &mut [Delivery], attempt: usize) -> Option<TraceParent> {
    if !rt.telemetry.enabled() {
        return None;
    }
    let name = rt.info.name.as_str();
    for d in batch.iter_mut() {
        let (j, id) = (&d.journey, d.env.id.as_str());
        let n = j.attempts + attempt;
        d.span = rt
            .telemetry
            .attempt(j.trace, name, n, id, j.tier.as_deref());
    }
    let traced = batch.iter().find(|d| !d.span.is_none());
    let first = traced.unwrap_or(&batch[0]);
    first.span.traceparent(first.journey.trace)
}

/// One request, with its metrics and its effect on the circuit; `None` if the relay aborted.
/// `attempt`: its number in this phase.
async fn send_once(
    rt: &TargetRuntime,
    batch: &mut [Delivery],
    attempt: usize,
) -> Option<Result<u16, AttemptError>> {
    let name = rt.info.name.as_str();
    let trace = open_spans(rt, batch, attempt);
    let t0 = Instant::now();
    let result = tokio::select! {
        r = rt.service.send(batch, trace) => r,
        _ = rt.abort.cancelled() => return None,
    };
    if trace.is_some() {
        let (status, error) = match &result {
            Ok(status) => (Some(*status), None),
            Err(e) => (e.status(), Some(e.to_string())),
        };
        for d in batch.iter_mut() {
            d.span.answered(status, error.as_deref());
        }
    }
    let own = &rt.own_metrics;
    own.request_duration.observe(t0.elapsed().as_secs_f64());
    own.batch_size.observe(batch.len() as f64);
    match &result {
        Ok(status) => {
            rt.circuit.record(true);
            rt.set_failing(false);
            own.attempt(&rt.metrics, name, true, false, Some(*status));
        }
        Err(err) => {
            own.attempt(&rt.metrics, name, false, err.is_retryable(), err.status());
            if err.is_retryable() {
                rt.circuit.record(false);
                rt.set_failing(true);
            } else if err.failure().not_sent() {
                // Nothing was sent: free the probe slot if this held it.
                rt.circuit.release_probe();
            } else {
                // A final answer (4xx/3xx) proves the target reachable: it resets the failure
                // count and ends a probe (else the circuit would wait for a probe forever).
                rt.circuit.record(true);
                rt.set_failing(false);
            }
        }
    }
    Some(result)
}

/// Delivers the two halves of a batch on their own, `attempts` already spent on each event.
async fn split(
    rt: Arc<TargetRuntime>,
    mut left: Vec<Delivery>,
    phase: Phase,
    attempts: usize,
) -> Outcomes {
    let right = left.split_off(left.len() / 2);
    // The halves share this batch's request slot: they go out side by side only when another
    // slot is free, so splitting never exceeds `max_in_flight`.
    match rt.slots.clone().try_acquire_owned() {
        Ok(extra) => {
            let (a, b) = tokio::join!(
                deliver(rt.clone(), left, phase, attempts),
                deliver(rt.clone(), right, phase, attempts)
            );
            drop(extra);
            a.into_iter().chain(b).collect()
        }
        Err(_) => {
            let mut a = deliver(rt.clone(), left, phase, attempts).await;
            a.extend(deliver(rt, right, phase, attempts).await);
            a
        }
    }
}
