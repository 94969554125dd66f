//! What one tap client asked for: `GET /tap?stage=...&target=...&event=GLOB&limit=N`, parsed
//! once when it connects and applied to every line offered.

use super::{Line, Stage};
use crate::route::EventGlobs;

/// A `/tap` query that cannot be served (answered 400 with this text).
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(
        "stage {0:?}: not a stage (consumed, normalized, routed, delivered, failed, dead_lettered)"
    )]
    UnknownStage(String),
    #[error("event {globs:?}: not a valid glob list: {source}")]
    Glob {
        globs: Vec<String>,
        source: regex::Error,
    },
    #[error("limit {0:?}: not a whole number of lines above 0")]
    Limit(String),
    #[error("unknown parameter {0:?} (known: stage, target, event, limit)")]
    UnknownParameter(String),
}

/// Which lines a client sees. Every condition given must hold; none given, every line.
#[derive(Debug, Default)]
pub struct Filter {
    /// Bits of the stages wanted (`0`: every stage).
    pub(super) stages: u8,
    /// Only lines naming one of these targets (routed, delivered, failed); empty: any line.
    targets: Vec<String>,
    /// Only lines of events whose name matches (as in routes: `*`, `?`, `!` excludes).
    events: Option<EventGlobs>,
}

impl Filter {
    /// Whether the client wants `line`.
    pub fn matches(&self, line: &Line<'_>) -> bool {
        (self.stages == 0 || self.stages & line.stage.bit() != 0)
            && (self.targets.is_empty()
                || line
                    .target
                    .is_some_and(|t| self.targets.iter().any(|w| w == t)))
            && self
                .events
                .as_ref()
                .is_none_or(|g| line.event.is_some_and(|e| g.matches(e)))
    }
}

/// A client's request: its filter and how many lines it wants before the stream ends.
#[derive(Debug, Default)]
pub struct Request {
    pub filter: Filter,
    /// Lines of events to send before ending the stream (`None`: until the client leaves).
    pub limit: Option<u64>,
}

impl Request {
    /// Parses a `/tap` query string: `stage` (a comma list, repeatable), `target` and `event`
    /// (repeatable: any of the targets; the globs as a route's `events` list), `limit`.
    pub fn parse(query: &str) -> Result<Self, FilterError> {
        let mut filter = Filter::default();
        let mut globs = Vec::new();
        let mut limit = None;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "stage" => {
                    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let stage = Stage::parse(name)
                            .ok_or_else(|| FilterError::UnknownStage(name.to_string()))?;
                        filter.stages |= stage.bit();
                    }
                }
                "target" => filter.targets.push(value.into_owned()),
                "event" => globs.push(value.into_owned()),
                "limit" => {
                    let n = value.parse::<u64>().ok().filter(|n| *n > 0);
                    limit = Some(n.ok_or_else(|| FilterError::Limit(value.into_owned()))?);
                }
                other => return Err(FilterError::UnknownParameter(other.to_string())),
            }
        }
        if !globs.is_empty() {
            filter.events = Some(
                EventGlobs::new(&globs).map_err(|source| FilterError::Glob { globs, source })?,
            );
        }
        Ok(Self { filter, limit })
    }
}
