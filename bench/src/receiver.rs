//! The loopback HTTP receiver: PostHog `/batch/` (gunzip, parse, count `batch` entries) and
//! webhook envelopes (parse, count), 200 by default or 503 while an outage is on; webhooks on
//! `/down` are the outage-isolation scenario's second target, counted on their own and
//! answered 503 while that target is down. Every event is marked in a per-kind bitmap by the
//! index its id encodes, so "every event arrived" ignores at-least-once duplicates and a body
//! that does not parse is counted as an error; each kind also keeps its first and last event's
//! arrival time. It serves HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on one port and
//! counts the HTTP/2 requests (the webhook-h2 scenario).

use crate::gen::index_of;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, Uri, Version};
use axum::Router;
use serde::Deserialize;
use std::borrow::Cow;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Which target kind a request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Posthog = 0,
    Webhook = 1,
    /// Webhooks to `/down` (outage-isolation's failing target).
    Down = 2,
}

/// Number of [`Kind`]s.
const KINDS: usize = 3;

/// Events of one kind seen in the current scenario.
struct Seen {
    bits: Vec<AtomicU64>,
    distinct: AtomicU64,
    total: AtomicU64,
    /// Arrival of the first and the last event, µs since the round started (MAX / 0: none).
    first_us: AtomicU64,
    last_us: AtomicU64,
}

impl Seen {
    fn new(n: u64) -> Self {
        Self {
            bits: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            distinct: AtomicU64::new(0),
            total: AtomicU64::new(0),
            first_us: AtomicU64::new(u64::MAX),
            last_us: AtomicU64::new(0),
        }
    }

    /// Marks event `i`, arrived `at_us` after the round started.
    fn mark(&self, i: u64, at_us: u64) -> bool {
        self.total.fetch_add(1, Relaxed);
        let Some(word) = self.bits.get((i / 64) as usize) else {
            return false;
        };
        self.first_us.fetch_min(at_us, Relaxed);
        self.last_us.fetch_max(at_us, Relaxed);
        let bit = 1u64 << (i % 64);
        if word.fetch_or(bit, Relaxed) & bit == 0 {
            self.distinct.fetch_add(1, Relaxed);
        }
        true
    }
}

/// Per-scenario state (replaced by [`Receiver::reset`]).
struct Round {
    /// When the round started: the origin of [`Seen`]'s times.
    t0: Instant,
    seen: [Seen; KINDS],
    first_request: Mutex<Option<Instant>>,
    last_event: Mutex<Option<Instant>>,
    /// (produced at µs since the epoch, produce-to-receive µs).
    latencies_us: Mutex<Vec<(u64, u64)>>,
}

pub struct Receiver {
    round: Mutex<Arc<Round>>,
    failing: AtomicBool,
    /// `/down` answers 503 (outage-isolation's failing target).
    down: AtomicBool,
    pub requests: AtomicU64,
    /// Of `requests`, those that came over HTTP/2 (webhook-h2).
    pub requests_http2: AtomicU64,
    pub answered_503: AtomicU64,
    pub bad_bodies: AtomicU64,
    pub unknown_ids: AtomicU64,
}

/// What the harness reads back.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub distinct: [u64; KINDS],
    pub total: [u64; KINDS],
    /// Per kind: when its first and its last event arrived.
    pub first_at: [Option<Instant>; KINDS],
    pub last_at: [Option<Instant>; KINDS],
    pub first_request: Option<Instant>,
    pub last_event: Option<Instant>,
}

#[derive(Deserialize)]
struct PosthogBatch<'a> {
    #[serde(borrow)]
    api_key: Cow<'a, str>,
    #[serde(borrow)]
    batch: Vec<PosthogEvent<'a>>,
}

#[derive(Deserialize)]
struct PosthogEvent<'a> {
    #[serde(borrow)]
    uuid: Cow<'a, str>,
    #[serde(borrow)]
    #[allow(dead_code)]
    event: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    properties: Option<BenchTs>,
    #[serde(default)]
    user: Option<User>,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    traits: Option<BenchTs>,
}

#[derive(Deserialize)]
struct BenchTs {
    #[serde(default)]
    bench_ts: Option<Ts>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Ts {
    N(u64),
    S(String),
}

impl Ts {
    fn micros(&self) -> Option<u64> {
        match self {
            Ts::N(n) => Some(*n),
            Ts::S(s) => s.parse().ok(),
        }
    }
}

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

impl Receiver {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            round: Mutex::new(Arc::new(Round::new(0))),
            failing: AtomicBool::new(false),
            down: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            requests_http2: AtomicU64::new(0),
            answered_503: AtomicU64::new(0),
            bad_bodies: AtomicU64::new(0),
            unknown_ids: AtomicU64::new(0),
        })
    }

    /// Starts a new scenario expecting event indices `0..expected`.
    pub fn reset(&self, expected: u64) {
        *self.round.lock().unwrap() = Arc::new(Round::new(expected));
        self.down.store(false, Relaxed);
        for c in [
            &self.requests,
            &self.requests_http2,
            &self.answered_503,
            &self.bad_bodies,
            &self.unknown_ids,
        ] {
            c.store(0, Relaxed);
        }
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Relaxed);
    }

    /// Whether `/down` answers 503 (whatever `set_failing` says for the rest).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let r = self.round.lock().unwrap().clone();
        let first_request = *r.first_request.lock().unwrap();
        let last_event = *r.last_event.lock().unwrap();
        let at = |us: u64| r.t0 + std::time::Duration::from_micros(us);
        Snapshot {
            distinct: [0, 1, 2].map(|k| r.seen[k].distinct.load(Relaxed)),
            total: [0, 1, 2].map(|k| r.seen[k].total.load(Relaxed)),
            first_at: [0, 1, 2].map(|k| match r.seen[k].first_us.load(Relaxed) {
                u64::MAX => None,
                us => Some(at(us)),
            }),
            last_at: [0, 1, 2].map(|k| match r.seen[k].last_us.load(Relaxed) {
                0 => None,
                us => Some(at(us)),
            }),
            first_request,
            last_event,
        }
    }

    /// (produced at µs since the epoch, produce-to-receive µs) of every timestamped event.
    pub fn take_latencies(&self) -> Vec<(u64, u64)> {
        let r = self.round.lock().unwrap().clone();
        let mut l = r.latencies_us.lock().unwrap();
        std::mem::take(&mut *l)
    }

    fn handle(&self, uri: &Uri, version: Version, body: &[u8]) -> StatusCode {
        let round = self.round.lock().unwrap().clone();
        self.requests.fetch_add(1, Relaxed);
        if version == Version::HTTP_2 {
            self.requests_http2.fetch_add(1, Relaxed);
        }
        {
            let mut f = round.first_request.lock().unwrap();
            if f.is_none() {
                *f = Some(Instant::now());
            }
        }
        let down = uri.path().starts_with("/down");
        if self.failing.load(Relaxed) || down && self.down.load(Relaxed) {
            self.answered_503.fetch_add(1, Relaxed);
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        // At least 1, so that 0 keeps meaning "no event yet".
        let at = (round.t0.elapsed().as_micros() as u64).max(1);
        let ok = if uri.path().starts_with("/batch") {
            self.posthog(&round, body, at)
        } else if down {
            self.webhook(&round, Kind::Down, body, at)
        } else {
            self.webhook(&round, Kind::Webhook, body, at)
        };
        if !ok {
            self.bad_bodies.fetch_add(1, Relaxed);
            return StatusCode::BAD_REQUEST;
        }
        *round.last_event.lock().unwrap() = Some(Instant::now());
        StatusCode::OK
    }

    fn mark(&self, round: &Round, kind: Kind, id: &str, at: u64) {
        match index_of(id) {
            Some(i) if round.seen[kind as usize].mark(i, at) => {}
            _ => {
                self.unknown_ids.fetch_add(1, Relaxed);
            }
        }
    }

    fn posthog(&self, round: &Round, body: &[u8], at: u64) -> bool {
        let mut plain;
        let json = if body.starts_with(&[0x1f, 0x8b]) {
            plain = Vec::with_capacity(body.len() * 6);
            if flate2::read::GzDecoder::new(body)
                .read_to_end(&mut plain)
                .is_err()
            {
                return false;
            }
            &plain[..]
        } else {
            body
        };
        let Ok(b) = serde_json::from_slice::<PosthogBatch>(json) else {
            return false;
        };
        if b.api_key.is_empty() {
            return false;
        }
        for e in &b.batch {
            self.mark(round, Kind::Posthog, &e.uuid, at);
        }
        true
    }

    fn webhook(&self, round: &Round, kind: Kind, body: &[u8], at: u64) -> bool {
        let now = now_micros();
        let envs: Vec<Envelope> = if body.first() == Some(&b'[') {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(_) => return false,
            }
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => vec![v],
                Err(_) => return false,
            }
        };
        for e in &envs {
            self.mark(round, kind, &e.id, at);
            let ts = e
                .properties
                .as_ref()
                .and_then(|p| p.bench_ts.as_ref())
                .or_else(|| {
                    e.user
                        .as_ref()
                        .and_then(|u| u.traits.as_ref())
                        .and_then(|t| t.bench_ts.as_ref())
                })
                .and_then(Ts::micros);
            if let Some(ts) = ts {
                round
                    .latencies_us
                    .lock()
                    .unwrap()
                    .push((ts, now.saturating_sub(ts)));
            }
        }
        true
    }
}

impl Round {
    fn new(expected: u64) -> Self {
        Self {
            t0: Instant::now(),
            seen: [0, 1, 2].map(|_| Seen::new(expected)),
            first_request: Mutex::new(None),
            last_event: Mutex::new(None),
            latencies_us: Mutex::new(Vec::new()),
        }
    }
}

async fn any(
    State(r): State<Arc<Receiver>>,
    uri: Uri,
    version: Version,
    body: Bytes,
) -> StatusCode {
    r.handle(&uri, version, &body)
}

/// Serves the receiver on 127.0.0.1 (ephemeral port) in the background, HTTP/1.1 and HTTP/2
/// with prior knowledge (h2c) alike (hyper-util's auto builder, axum's `http2` feature).
pub async fn serve(r: Arc<Receiver>) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .fallback(any)
        .layer(DefaultBodyLimit::disable())
        .with_state(r);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("receiver stopped: {e}");
        }
    });
    Ok(addr)
}
