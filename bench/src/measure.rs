//! Measuring one scenario while its relay runs: polls the receiver, the relay's `/proc` and
//! `/metrics` and the group's committed offsets until the scenario is done, sampling RSS and
//! the in-flight gauges on the way, timing the first request, the last delivery and the end of
//! an outage, and taking the CPU seconds of the relay (per thread), the broker and this harness.
//! Optionally records `perf` of the relay.

use crate::kafka::CommitChecker;
use crate::receiver::{Kind, Snapshot};
use crate::relay::{self, metric_sum, Relay};
use crate::Ctx;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one scenario's relay did between its start and the goal (or the failure).
#[derive(Default)]
pub struct Measured {
    pub first: Option<Instant>,
    pub delivered: Option<Instant>,
    pub done: Option<Instant>,
    pub recovered: Option<Instant>,
    pub cpu_secs: f64,
    /// CPU seconds of the broker and of this harness (receiver, producer) while measuring.
    pub broker_cpu: f64,
    pub harness_cpu: f64,
    pub hwm_kib: u64,
    /// (thread name, threads, CPU seconds) of the relay when done.
    pub threads: Vec<(String, usize, f64)>,
    /// (seconds since the relay started, RSS KiB), every 200 ms.
    pub rss: Vec<(f64, u64)>,
    /// `event_relay_in_flight_events` and `event_relay_backpressure_paused`, once a second
    /// while events flow.
    pub in_flight: Vec<f64>,
    pub paused: Vec<f64>,
    pub metrics: String,
    pub error: Option<String>,
}

/// When a scenario is done.
pub struct Goal<'a> {
    /// Target kinds every event must reach.
    pub kinds: &'a [Kind],
    /// Distinct events each of `kinds` must receive (in the same order).
    pub events: Vec<u64>,
    /// Result events the relay must have produced.
    pub expected_results: f64,
    /// Reads the relay group's committed offsets.
    pub checker: Arc<CommitChecker>,
    /// End offsets the commits must reach (set by the latency producer when it finishes).
    pub hw: Arc<Mutex<Option<Vec<i64>>>>,
    /// Receiver answers 503 for this long after the first request.
    pub outage: Option<Duration>,
    pub timeout: Duration,
}

/// Polls until every expected event reached the receiver, every result was produced and the
/// group committed up to the end offsets; ends the outage `outage` after the first request.
pub async fn measure(ctx: &Ctx, relay: &mut Relay, goal: Goal<'_>) -> Measured {
    let mut poll = Poll::new(ctx, relay, goal);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        let snap = poll.observe(now);
        if let Some(e) = poll.failure(now, &snap) {
            poll.m.error = Some(e);
            break;
        }
        if poll.done(now, &snap).await {
            break;
        }
    }
    if let Some(mut p) = poll.perf {
        let _ = Command::new("kill")
            .args(["-INT", &p.id().to_string()])
            .status();
        let _ = p.wait();
    }
    poll.m
}

/// One `measure` loop: what it measured so far and when it last sampled what.
struct Poll<'c, 'r, 'g> {
    ctx: &'c Ctx,
    relay: &'r mut Relay,
    goal: Goal<'g>,
    m: Measured,
    /// Distinct events per goal kind ([`Goal::events`]).
    expected: Vec<u64>,
    started: Instant,
    last_rss: Instant,
    last_progress: Instant,
    last_gauges: Instant,
    perf: Option<Child>,
    /// CPU seconds of the broker and of this harness when measuring started.
    broker0: f64,
    harness0: f64,
}

/// CPU seconds of the broker when the harness started it (NaN otherwise).
fn broker_cpu(ctx: &Ctx) -> f64 {
    ctx.broker_pid
        .and_then(|p| relay::cpu_secs_of(&p.to_string()))
        .unwrap_or(f64::NAN)
}

/// CPU seconds of this harness (the receiver, the latency producer).
fn harness_cpu() -> f64 {
    relay::cpu_secs_of("self").unwrap_or(f64::NAN)
}

impl<'c, 'r, 'g> Poll<'c, 'r, 'g> {
    fn new(ctx: &'c Ctx, relay: &'r mut Relay, goal: Goal<'g>) -> Self {
        let expected = goal.events.clone();
        let started = Instant::now();
        let last_rss = Instant::now() - Duration::from_secs(1);
        let last_progress = Instant::now();
        let last_gauges = Instant::now();
        let (broker0, harness0) = (broker_cpu(ctx), harness_cpu());
        Self {
            ctx,
            relay,
            goal,
            m: Measured::default(),
            expected,
            started,
            last_rss,
            last_progress,
            last_gauges,
            perf: None,
            broker0,
            harness0,
        }
    }

    /// Distinct events received per goal kind.
    fn received(&self, snap: &Snapshot) -> Vec<u64> {
        self.goal
            .kinds
            .iter()
            .map(|k| snap.distinct[*k as usize])
            .collect()
    }

    /// Samples RSS and gauges, notes the first request (starting perf) and ends an outage that
    /// lasted long enough; prints progress every 5 s. Returns the receiver's snapshot.
    fn observe(&mut self, now: Instant) -> Snapshot {
        let (ctx, m) = (self.ctx, &mut self.m);
        if now.duration_since(self.last_rss) >= Duration::from_millis(200) {
            if let Some(kib) = self.relay.rss_kib() {
                m.rss
                    .push((now.duration_since(self.relay.spawned).as_secs_f64(), kib));
            }
            self.last_rss = now;
        }
        let snap = ctx.receiver.snapshot();
        if m.first.is_none() && snap.first_request.is_some() {
            m.first = snap.first_request;
            if let Some(dir) = &ctx.args.perf {
                self.perf = start_perf(dir, &ctx.args.perf_args, self.relay);
            }
        }
        if let (Some(first), Some(len)) = (m.first, self.goal.outage) {
            if m.recovered.is_none() && now.duration_since(first) >= len {
                ctx.receiver.set_failing(false);
                m.recovered = Some(now);
                eprintln!("  outage over after {len:?}; receiver answers 200");
            }
        }
        if m.first.is_some()
            && m.delivered.is_none()
            && now.duration_since(self.last_gauges) >= Duration::from_secs(1)
        {
            self.last_gauges = now;
            if let Some(text) = self.relay.metrics() {
                m.in_flight
                    .push(metric_sum(&text, "event_relay_in_flight_events", None));
                m.paused
                    .push(metric_sum(&text, "event_relay_backpressure_paused", None));
            }
        }
        if now.duration_since(self.last_progress) >= Duration::from_secs(5) {
            self.last_progress = now;
            eprintln!(
                "  … {:.0} s: received {:?} of {:?}, {} requests ({} answered 503)",
                now.duration_since(self.relay.spawned).as_secs_f64(),
                self.received(&snap),
                self.expected,
                ctx.receiver.requests.load(Ordering::Relaxed),
                ctx.receiver.answered_503.load(Ordering::Relaxed),
            );
        }
        snap
    }

    /// Why measuring must stop short: the relay exited or the time limit passed.
    fn failure(&mut self, now: Instant, snap: &Snapshot) -> Option<String> {
        if !self.relay.alive() {
            return Some(format!(
                "the relay exited; see {}",
                self.relay.log.display()
            ));
        }
        let timeout = self.goal.timeout;
        if now.duration_since(self.started) > timeout {
            return Some(format!(
                "timed out after {timeout:?}: received {:?} of {:?}",
                self.received(snap),
                self.expected
            ));
        }
        None
    }

    /// Whether the goal is reached; when it is, takes the final CPU, memory and metrics.
    async fn done(&mut self, now: Instant, snap: &Snapshot) -> bool {
        let all_received = self
            .received(snap)
            .iter()
            .zip(&self.expected)
            .all(|(got, want)| got >= want);
        let (goal, m) = (&self.goal, &mut self.m);
        if !all_received || m.recovered.is_none() && goal.outage.is_some() {
            return false;
        }
        m.delivered.get_or_insert(snap.last_event.unwrap_or(now));
        let Some(text) = self.relay.metrics() else {
            return false;
        };
        if metric_sum(&text, "event_relay_results_produced_total", None) < goal.expected_results {
            return false;
        }
        // Known up front for the pre-loaded topic; for the latency stream once it was produced.
        let Some(hw) = goal.hw.lock().unwrap().clone() else {
            return false;
        };
        let c = goal.checker.clone();
        let committed = tokio::task::spawn_blocking(move || c.committed())
            .await
            .expect("commit check does not panic");
        match committed {
            Ok(c) if c == hw => {
                m.done = Some(Instant::now());
                m.cpu_secs = self.relay.cpu_secs().unwrap_or(f64::NAN);
                m.broker_cpu = broker_cpu(self.ctx) - self.broker0;
                m.harness_cpu = harness_cpu() - self.harness0;
                m.hwm_kib = self.relay.hwm_kib().unwrap_or(0);
                m.threads = self.relay.threads_cpu();
                m.metrics = self.relay.metrics().unwrap_or(text);
                return true;
            }
            Ok(_) => {}
            Err(e) => eprintln!("  committed offsets: {e}"),
        }
        false
    }
}

fn start_perf(dir: &Path, args: &str, relay: &Relay) -> Option<Child> {
    let _ = std::fs::create_dir_all(dir);
    let name = relay
        .log
        .file_name()?
        .to_string_lossy()
        .replace(".relay.log", ".perf.data");
    Command::new("perf")
        .arg("record")
        .args(args.split_whitespace())
        .arg("-o")
        .arg(dir.join(name))
        .args(["-p", &relay.pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("  perf record: {e}"))
        .ok()
}

/// The `p` quantile (0..=1) of sorted µs samples, in ms (NaN when there are none).
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}
