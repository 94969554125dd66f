//! A delivery through its target's transform: the JSON the target would send for the event
//! (written by the target's own body code) run through the program, giving the body and
//! request changes to send, a skip, or a failure. One path for sending and for the dry runs
//! (`route`, `test`, `transform`), so they cannot drift apart.

use super::{Delivery, Preview, Service, TargetRuntime};
use crate::envelope::Envelope;
use crate::report::Failure;
use crate::transform::{Outcome, Request, Transform, TransformFailure};
use std::sync::Arc;

/// What a transform made of one delivery: the body to send in place of the event's own, and
/// the request changes that go with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shaped {
    pub body: Vec<u8>,
    pub request: Request,
}

/// One event's way through a target's transform.
#[derive(Debug, Clone, PartialEq)]
pub enum Shaping {
    /// The target has no transform: it sends the event's own body.
    Plain,
    /// Send this instead.
    Shaped(Shaped),
    /// The program skipped the event for this target.
    Skip,
    /// The program failed on the event.
    Fail(TransformFailure),
}

/// Runs `env` (from `raw`) through `transform`, the input being exactly the JSON `service`
/// would send for it.
pub fn shape(
    service: &Service,
    transform: Option<&Transform>,
    env: &Envelope,
    raw: &[u8],
) -> Shaping {
    let Some(transform) = transform else {
        return Shaping::Plain;
    };
    // An envelope body is built as a value directly (no JSON written to be parsed again).
    let outcome = if service.sends_envelope() {
        transform.run_value(crate::transform::input::envelope(env), env)
    } else {
        transform.run(&service.event_body(env, raw), env)
    };
    match outcome {
        Outcome::Send { body, request } => Shaping::Shaped(Shaped { body, request }),
        Outcome::Skip => Shaping::Skip,
        Outcome::Fail(f) => Shaping::Fail(f),
    }
}

/// What a dry run shows for one event and target.
#[derive(Debug, Clone, PartialEq)]
pub enum DryRun {
    /// The request the target would make (transformed, where it has a transform), and the
    /// request changes its transform made.
    Request(Preview, Option<Request>),
    /// The transform skips the event: no request.
    Skipped,
    /// The delivery would fail without a request (a transform failure, a header template
    /// rendering to an invalid value).
    Failed(String),
}

/// Dry run of one event to one target, through [`shape`] and the target's own request
/// building: what `route`, `test` and `transform` show.
pub fn dry_run(
    service: &Service,
    transform: Option<&Transform>,
    env: &Envelope,
    raw: &[u8],
) -> DryRun {
    let shaped = match shape(service, transform, env, raw) {
        Shaping::Plain => None,
        Shaping::Shaped(s) => Some(s),
        Shaping::Skip => return DryRun::Skipped,
        Shaping::Fail(f) => return DryRun::Failed(f.to_string()),
    };
    match service.preview(env, raw, shaped.as_ref()) {
        Ok(p) => DryRun::Request(p, shaped.map(|s| s.request)),
        Err(e) => DryRun::Failed(Failure::to_string(&e)),
    }
}

/// Adds the headers a transform set (names and values were checked by the transform stage;
/// a value HTTP still refuses fails the delivery like a bad header template).
pub(super) fn insert_headers(
    headers: &mut super::client::HeaderMap,
    request: Option<&Request>,
) -> Result<(), Failure> {
    use super::client::{HeaderName, HeaderValue};
    for (name, text) in request.map_or(&[][..], |r| &r.headers[..]) {
        let invalid = || Failure::InvalidHeaderValue { name: name.clone() };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let value = HeaderValue::from_str(text).map_err(|_| invalid())?;
        headers.insert(name, value);
    }
    Ok(())
}

/// Runs each delivery of a batch through the target's transform (nothing to do without
/// one): skipped ones are final at once (no request, no result event), failed ones end in
/// their final WebhookError; the rest go on with their shaped bodies.
pub(super) fn shape_batch(rt: &Arc<TargetRuntime>, batch: Vec<Delivery>) -> Vec<Delivery> {
    let Some(transform) = rt.transform.as_deref() else {
        return batch;
    };
    let mut out = Vec::with_capacity(batch.len());
    for mut d in batch {
        match shape(&rt.service, Some(transform), &d.env, &d.raw) {
            Shaping::Plain => out.push(d),
            Shaping::Shaped(s) => {
                d.shaped = Some(s);
                out.push(d);
            }
            Shaping::Skip => {
                rt.own_metrics.transform_skipped.inc();
                tracing::debug!(target_name = %rt.info.name, source_event_id = %d.env.id, "event skipped by the transform");
                d.ticket.finish_one();
            }
            Shaping::Fail(f) => {
                rt.own_metrics.transform_errors.inc();
                super::park::fail_untried(rt, d, Failure::Transform(f.to_string()));
            }
        }
    }
    out
}

/// A batch split into runs whose deliveries share their request changes (headers, path), in
/// order of first appearance; the batch as it is when the target has no transform.
pub(super) fn by_request(rt: &TargetRuntime, batch: Vec<Delivery>) -> Vec<Vec<Delivery>> {
    if batch.is_empty() {
        return Vec::new(); // every delivery skipped or failed
    }
    if rt.transform.is_none() || batch.len() < 2 {
        return vec![batch];
    }
    fn key(d: &Delivery) -> Option<&Request> {
        d.shaped
            .as_ref()
            .map(|s| &s.request)
            .filter(|r| !r.is_empty())
    }
    let mut groups: Vec<Vec<Delivery>> = Vec::new();
    for d in batch {
        match groups.iter_mut().find(|g| key(&g[0]) == key(&d)) {
            Some(g) => g.push(d),
            None => groups.push(vec![d]),
        }
    }
    groups
}
