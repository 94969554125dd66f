//! What the tap shows of a consumed message: its events `consumed`, `normalized` and `routed`
//! (the outcomes and dead letters are the reporter's). Built only while a tap client is
//! connected: `handle` checks [`Tap::active`] once per message.

use super::handle::source_label;
use super::live::Live;
use crate::config::SourceFormat;
use crate::envelope::{Envelope, Origin};
use crate::normalize::NormalizeError;
use crate::route::Decision;
use crate::tap::{Line, Stage, Tap};

/// The event name a rejection knows (a catalog's verdict on a named event).
pub(super) fn event_name(err: &NormalizeError) -> Option<&str> {
    match err {
        NormalizeError::Invalid { event, .. } | NormalizeError::UnknownEvent(event, _) => {
            Some(event)
        }
        _ => None,
    }
}

/// The tap's `consumed` line of a message (or batch event) that normalizes to no envelope.
pub(super) fn rejected_line<'a>(
    err: &'a NormalizeError,
    format: SourceFormat,
    origin: &'a Origin,
) -> Line<'a> {
    let mut line = Line::new(Stage::Consumed, source_label(err, format)).at(
        &origin.topic,
        origin.partition,
        origin.offset,
    );
    line.id = err.event_id();
    line.event = event_name(err);
    line
}

/// The tap's lines of one normalized event: consumed, normalized (its validation status), and
/// routed once per target (`unrouted` when no route matched, `dropped` when the routes that
/// matched name no target).
pub(super) fn tap_event(tap: &Tap, live: &Live, env: &Envelope, decision: &Decision) {
    tap.send(Line::of(Stage::Consumed, env));
    tap.send(Line::of(Stage::Normalized, env).outcome(env.validation.status.as_str()));
    if decision.targets.is_empty() {
        let why = if decision.routes.is_empty() {
            "unrouted"
        } else {
            "dropped"
        };
        tap.send(Line::of(Stage::Routed, env).outcome(why));
    }
    for &t in &decision.targets {
        let name = &live.targets.runtimes[t].info.name;
        tap.send(Line::of(Stage::Routed, env).target(name));
    }
}
