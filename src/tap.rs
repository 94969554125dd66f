//! The live tap: `GET /tap` (with `server.tap = true`) streams one NDJSON line per event passing
//! a stage — consumed, normalized, routed, delivered, failed, dead-lettered — so an operator
//! can watch what the relay does with events right now (`event-relay tap` prints it for a
//! person).
//!
//! The stages offer lines to the [`Tap`] hub, the server hands each client a [`Subscription`]
//! (its filter, its bounded queue). What it costs the pipeline:
//!
//! - no client connected: an offer is one relaxed atomic load ([`Tap::active`]); no line is
//!   built (the line is a closure the hub only calls with clients);
//! - clients connected: the line is built and serialized once when some client's filter takes
//!   it, then handed to each such client's queue ([`QUEUE_LINES`]) with `try_send`. A full
//!   queue loses the line for that client — counted, reported in its stream as a
//!   `{"dropped": n}` line and in `event_relay_tap_dropped_total` — so a slow client never
//!   slows the pipeline.
//!
//! Lines carry the event's id, name, source, target and outcome; the envelope (personal data)
//! only with `log.include_payloads = true`. Event filters read globs as routes do
//! ([`crate::route::EventGlobs`]), which is the one thing the tap takes from a stage.

mod filter;
mod stream;

pub use filter::{Filter, FilterError, Request};
pub use stream::Subscription;

use crate::envelope::Envelope;
use crate::metrics::Metrics;
use bytes::Bytes;
use prometheus::{IntCounter, IntGauge};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::mpsc;

/// Lines queued for one client before further lines are dropped for it (about 1 MiB with
/// envelopes of ~1 KiB; a few hundred KiB without).
pub const QUEUE_LINES: usize = 1024;
/// Most tap clients served at once (each holds a queue).
pub const MAX_CLIENTS: usize = 8;

/// Where an event is seen passing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Read from a source topic (an event of a message, or the message when it cannot be read
    /// as events).
    Consumed,
    /// Normalized into an envelope (`outcome`: its validation status).
    Normalized,
    /// Routed to a target (one line per target; `outcome` `unrouted` and no target when no
    /// route took it).
    Routed,
    /// A target accepted it (`outcome` `WebhookSuccess`).
    Delivered,
    /// Its delivery to a target failed for good (`outcome` `WebhookError`).
    Failed,
    /// Written to the dead-letter topic (`outcome`: the reason).
    DeadLettered,
}

impl Stage {
    /// Every stage, in the order an event passes them.
    pub const ALL: [Stage; 6] = [
        Stage::Consumed,
        Stage::Normalized,
        Stage::Routed,
        Stage::Delivered,
        Stage::Failed,
        Stage::DeadLettered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Consumed => "consumed",
            Stage::Normalized => "normalized",
            Stage::Routed => "routed",
            Stage::Delivered => "delivered",
            Stage::Failed => "failed",
            Stage::DeadLettered => "dead_lettered",
        }
    }

    /// The stage named `name`.
    pub fn parse(name: &str) -> Option<Stage> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Its bit in a filter's stage set.
    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// One event passing a stage: what a tap line says. Built only when a client is connected.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    /// When it passed (RFC 3339 UTC, set by the hub as it serializes the line).
    pub ts: String,
    pub stage: Stage,
    /// The source event's id (null for a message that could not be read far enough).
    pub id: Option<&'a str>,
    /// The event's name (null when unknown).
    pub event: Option<&'a str>,
    /// `komo` | `acemate` (the catalog or source format; `retry-tier` for tier records).
    pub source: &'a str,
    /// The target (routed, delivered, failed), else null.
    pub target: Option<&'a str>,
    /// What became of it at this stage (see [`Stage`]).
    pub outcome: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where the message was read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The envelope, only with `log.include_payloads = true` (the hub leaves it out otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envelope: Option<&'a Envelope>,
}

impl<'a> Line<'a> {
    /// A line of `stage` about an event of `source`, nothing else known yet.
    pub fn new(stage: Stage, source: &'a str) -> Self {
        Self {
            ts: String::new(),
            stage,
            id: None,
            event: None,
            source,
            target: None,
            outcome: None,
            status: None,
            attempts: None,
            error: None,
            topic: None,
            partition: None,
            offset: None,
            envelope: None,
        }
    }

    /// The line of an envelope at `stage`: its id, name, source, origin and the envelope.
    pub fn of(stage: Stage, env: &'a Envelope) -> Self {
        let mut line = Self::new(stage, env.source.as_str());
        line.id = Some(&env.id);
        line.event = Some(&env.event);
        line.envelope = Some(env);
        line.at(&env.origin.topic, env.origin.partition, env.origin.offset)
    }

    /// Read from `topic`, `partition`, `offset`.
    pub fn at(mut self, topic: &'a str, partition: i32, offset: i64) -> Self {
        self.topic = Some(topic);
        self.partition = Some(partition);
        self.offset = Some(offset);
        self
    }

    pub fn target(mut self, name: &'a str) -> Self {
        self.target = Some(name);
        self
    }

    pub fn outcome(mut self, outcome: &'a str) -> Self {
        self.outcome = Some(outcome);
        self
    }
}

/// Why a client cannot have a stream.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("the tap is off: set `tap = true` under [server] in the relay's config and restart the relay (lines carry envelopes only with log.include_payloads = true)")]
    Off,
    #[error("{MAX_CLIENTS} tap clients are connected, the most the relay serves at once")]
    Full,
    #[error("the relay is stopping")]
    Closed,
}

/// The clients connected now.
#[derive(Default)]
struct Subscribers {
    next_id: u64,
    /// After [`Tap::close`]: no new clients.
    closed: bool,
    list: Vec<Arc<Subscriber>>,
}

/// One connected client: its filter, its queue, what it lost. The hub holds the only sender:
/// forgetting the client ends its stream.
struct Subscriber {
    id: u64,
    filter: Filter,
    tx: mpsc::Sender<Bytes>,
    /// Lines lost to a full queue (shared with its stream, which reports them).
    dropped: Arc<AtomicU64>,
}

/// The hub the stages offer lines to and tap clients subscribe to. One per relay.
pub struct Tap {
    /// `server.tap`.
    enabled: bool,
    /// `log.include_payloads`: lines carry the envelope.
    include_payloads: bool,
    /// Clients connected: what the hot path reads.
    clients: AtomicUsize,
    subscribers: RwLock<Subscribers>,
    /// Lines built and serialized (for tests of the hot path's cost).
    built: AtomicU64,
    dropped_total: IntCounter,
    clients_gauge: IntGauge,
}

impl Tap {
    /// The relay's tap: `enabled` is `server.tap`, `include_payloads` `log.include_payloads`.
    pub fn new(enabled: bool, include_payloads: bool, metrics: &Metrics) -> Self {
        Self::with(
            enabled,
            include_payloads,
            metrics.tap_dropped.clone(),
            metrics.tap_clients.clone(),
        )
    }

    /// A tap that is off, counting into no registry (a reporter built outside a relay).
    pub fn off() -> Self {
        let dropped = IntCounter::new("tap_dropped", "unregistered").expect("valid metric");
        let clients = IntGauge::new("tap_clients", "unregistered").expect("valid metric");
        Self::with(false, false, dropped, clients)
    }

    fn with(enabled: bool, include_payloads: bool, dropped: IntCounter, clients: IntGauge) -> Self {
        Self {
            enabled,
            include_payloads,
            clients: AtomicUsize::new(0),
            subscribers: RwLock::new(Subscribers::default()),
            built: AtomicU64::new(0),
            dropped_total: dropped,
            clients_gauge: clients,
        }
    }

    /// `server.tap`.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether a client is connected: the one atomic load the hot path pays.
    #[inline]
    pub fn active(&self) -> bool {
        self.clients.load(Ordering::Relaxed) != 0
    }

    /// Offers the line `line` builds to the connected clients; without clients `line` is not
    /// called.
    #[inline]
    pub fn offer<'a>(&self, line: impl FnOnce() -> Line<'a>) {
        if self.active() {
            self.send(line());
        }
    }

    /// Lines built and serialized so far.
    pub fn lines_built(&self) -> u64 {
        self.built.load(Ordering::Relaxed)
    }

    /// Hands `line` to every client whose filter takes it; a full queue drops it (counted).
    /// For a caller that checked [`Tap::active`] already (one load for several lines).
    pub fn send(&self, mut line: Line<'_>) {
        let subscribers = self
            .subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut encoded: Option<Bytes> = None;
        for s in &subscribers.list {
            if !s.filter.matches(&line) {
                continue;
            }
            let bytes = match &encoded {
                Some(b) => b.clone(),
                None => encoded.insert(self.encode(&mut line)).clone(),
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(bytes) {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped_total.inc();
            }
        }
    }

    /// The line as one NDJSON line, stamped now; without the envelope unless payloads are on.
    fn encode(&self, line: &mut Line<'_>) -> Bytes {
        self.built.fetch_add(1, Ordering::Relaxed);
        line.ts = crate::envelope::now_rfc3339();
        if !self.include_payloads {
            line.envelope = None;
        }
        let mut out = serde_json::to_vec(line).expect("tap lines serialize");
        out.push(b'\n');
        Bytes::from(out)
    }

    /// A stream of the lines `request` asks for, until the client goes away, its limit is
    /// reached or the relay stops.
    pub fn subscribe(self: &Arc<Self>, request: Request) -> Result<Subscription, SubscribeError> {
        if !self.enabled {
            return Err(SubscribeError::Off);
        }
        let mut subscribers = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if subscribers.closed {
            return Err(SubscribeError::Closed);
        }
        if subscribers.list.len() >= MAX_CLIENTS {
            return Err(SubscribeError::Full);
        }
        let (tx, rx) = mpsc::channel(QUEUE_LINES);
        subscribers.next_id += 1;
        let id = subscribers.next_id;
        let dropped = Arc::new(AtomicU64::new(0));
        subscribers.list.push(Arc::new(Subscriber {
            id,
            filter: request.filter,
            tx,
            dropped: dropped.clone(),
        }));
        self.publish(&subscribers);
        Ok(Subscription::new(
            self.clone(),
            id,
            dropped,
            rx,
            request.limit,
        ))
    }

    /// Forgets client `id` (its stream ended).
    fn remove(&self, id: u64) {
        let mut subscribers = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        subscribers.list.retain(|s| s.id != id);
        self.publish(&subscribers);
    }

    /// Ends every stream (once their queued lines are sent) and takes no new client: the relay
    /// is stopping.
    pub fn close(&self) {
        let mut subscribers = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        subscribers.closed = true;
        subscribers.list.clear();
        self.publish(&subscribers);
    }

    fn publish(&self, subscribers: &Subscribers) {
        let n = subscribers.list.len();
        self.clients.store(n, Ordering::Relaxed);
        self.clients_gauge.set(n as i64);
    }
}

#[cfg(test)]
mod tests;
