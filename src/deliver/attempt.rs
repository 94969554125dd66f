//! One batch's way to a final outcome: circuit admission, rate limit, the attempt, retries with
//! backoff, and splitting a batch a target refuses as a whole (400/413) so only the bad events
//! fail.

use super::retry::{AttemptError, RetryState};
use super::{posthog, Delivery, TargetRuntime};
use crate::config::TargetKind;
use crate::report::Outcome;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

pub(super) type Outcomes = Vec<(Delivery, Outcome)>;

/// Attempts a batch until success, a final failure or the budget is spent. Fatal 400/413 (or
/// oversize) answers to a multi-event batch split it in halves, each retried on its own.
/// Returns nothing for deliveries abandoned by an abort (their tickets stay unfinished).
pub(super) fn deliver(
    rt: Arc<TargetRuntime>,
    batch: Vec<Delivery>,
    prior_attempts: usize,
) -> Pin<Box<dyn Future<Output = Outcomes> + Send>> {
    Box::pin(async move {
        let mut st = RetryState::new(&rt.config.retry);
        let name = rt.info.name.clone();
        let mut first_attempt: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = rt.circuit.admit() => {}
                _ = tokio::time::sleep(st.budget_left()) => {
                    // The circuit stayed open for the rest of the retry budget: final.
                    let o = Outcome {
                        success: false,
                        attempts: prior_attempts + st.attempts,
                        status_code: None,
                        error: Some(format!(
                            "circuit open (target {name} kept failing); retry budget max_elapsed = {} spent",
                            rt.config.retry.max_elapsed
                        )),
                        duration: st.elapsed(),
                    };
                    return batch.into_iter().map(|d| (d, o.clone())).collect();
                }
                _ = rt.abort.cancelled() => return Vec::new(),
            }
            if let Some(rate) = &rt.rate {
                rate.acquire().await;
            }
            st.attempts += 1;
            let started = *first_attempt.get_or_insert_with(Instant::now);
            let t0 = Instant::now();
            let result = tokio::select! {
                r = rt.service.send(&batch) => r,
                _ = rt.abort.cancelled() => return Vec::new(),
            };
            rt.metrics
                .request_duration
                .with_label_values(&[&name])
                .observe(t0.elapsed().as_secs_f64());
            rt.metrics
                .batch_size
                .with_label_values(&[&name])
                .observe(batch.len() as f64);
            let err = match result {
                Ok(status) => {
                    rt.circuit.record(true);
                    rt.metrics.attempt(&name, true, false, Some(status));
                    let o = Outcome {
                        success: true,
                        attempts: prior_attempts + st.attempts,
                        status_code: Some(status),
                        error: None,
                        duration: started.elapsed(),
                    };
                    return batch.into_iter().map(|d| (d, o.clone())).collect();
                }
                Err(e) => e,
            };
            rt.metrics
                .attempt(&name, false, err.is_retryable(), err.status());
            if err.is_retryable() {
                rt.circuit.record(false);
            } else if err.status().is_some() {
                // A final answer (4xx/3xx) proves the target reachable: it resets the failure
                // count and ends a probe (else the circuit would wait for a probe forever).
                rt.circuit.record(true);
            } else {
                // Nothing was sent (body too large): free the probe slot if this held it.
                rt.circuit.release_probe();
            }
            let split = batch.len() > 1
                && match rt.kind {
                    TargetKind::Posthog => posthog::PosthogService::splittable(&err),
                    TargetKind::Webhook => matches!(
                        err,
                        AttemptError::Fatal {
                            status: Some(400) | Some(413) | None,
                            ..
                        }
                    ),
                };
            if split {
                let mut left = batch;
                let right = left.split_off(left.len() / 2);
                let attempts = prior_attempts + st.attempts;
                // The halves share this batch's request slot: they go out side by side only
                // when another slot is free, so splitting never exceeds `max_in_flight`.
                return match rt.slots.clone().try_acquire_owned() {
                    Ok(extra) => {
                        let (a, b) = tokio::join!(
                            deliver(rt.clone(), left, attempts),
                            deliver(rt.clone(), right, attempts)
                        );
                        drop(extra);
                        a.into_iter().chain(b).collect()
                    }
                    Err(_) => {
                        let mut a = deliver(rt.clone(), left, attempts).await;
                        a.extend(deliver(rt.clone(), right, attempts).await);
                        a
                    }
                };
            }
            match st.next_delay(&err) {
                Some(wait) => {
                    tracing::debug!(target_name = %name, attempt = st.attempts, wait_ms = wait.as_millis() as u64, error = %err, "retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {},
                        _ = rt.abort.cancelled() => return Vec::new(),
                    }
                }
                None => {
                    let o = Outcome {
                        success: false,
                        attempts: prior_attempts + st.attempts,
                        status_code: err.status(),
                        error: Some(err.to_string()),
                        duration: started.elapsed(),
                    };
                    return batch.into_iter().map(|d| (d, o.clone())).collect();
                }
            }
        }
    })
}
