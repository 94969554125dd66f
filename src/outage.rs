//! Kafka trouble as the logs tell it, the one place where what Kafka repeats is rate-limited.
//!
//! While the brokers are unreachable every client of the relay (the source and tier consumers,
//! the producers, the admin client) hears about it many times a second, from librdkafka's log,
//! its error callback and every poll. Here all of that becomes one WARN when the brokers become
//! unreachable (naming them and librdkafka's reason), at most one reminder per
//! [`REMINDER`] with how long it has lasted, and one INFO when a broker answers again. Any
//! other Kafka error or librdkafka warning is logged once per [`REMINDER`] per kind, with the
//! number of repeats folded into it. librdkafka's lines go through `tracing` at their own
//! level, so `log.level` filters them like the relay's.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often a lasting outage, or a repeating error, is logged again.
pub const REMINDER: Duration = Duration::from_secs(60);

/// The outage state of one set of brokers (`kafka.brokers`), shared by every client of them.
#[derive(Debug)]
pub struct Outage {
    brokers: String,
    /// Fast path: most calls (an answered request) only read this.
    down: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Since when the brokers are unreachable, and when that was last logged.
    since: Option<(Instant, Instant)>,
    /// Lines folded since the last one logged, per kind of repeating line.
    repeats: HashMap<String, (Instant, u64)>,
}

/// The outage state of `brokers`, one per distinct `kafka.brokers` in the process (kept for
/// its life: clients come and go, e.g. the admin client at start, and the outage outlives them).
pub fn of(brokers: &str) -> Arc<Outage> {
    static ALL: OnceLock<Mutex<HashMap<String, Arc<Outage>>>> = OnceLock::new();
    let mut all = ALL
        .get_or_init(Default::default)
        .lock()
        .expect("outage registry");
    all.entry(brokers.to_string())
        .or_insert_with(|| {
            Arc::new(Outage {
                brokers: brokers.to_string(),
                down: AtomicBool::new(false),
                state: Mutex::new(State::default()),
            })
        })
        .clone()
}

/// Whether `error` says no broker can be reached (rather than a problem with one request).
pub fn is_unreachable(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(C::AllBrokersDown | C::BrokerTransportFailure | C::Resolve | C::BrokerNotAvailable)
    )
}

impl Outage {
    /// A client could not reach the brokers (`reason`: librdkafka's words).
    pub fn down(&self, reason: &str) {
        let mut s = self.state.lock().expect("outage state");
        let now = Instant::now();
        match s.since {
            None => {
                s.since = Some((now, now));
                self.down.store(true, Ordering::Relaxed);
                tracing::warn!(brokers = %self.brokers, reason, "Kafka brokers unreachable; retrying until they answer");
            }
            Some((since, said)) if now.duration_since(said) >= REMINDER => {
                s.since = Some((since, now));
                let down_for = format!("{}s", now.duration_since(since).as_secs());
                tracing::warn!(brokers = %self.brokers, reason, down_for, "Kafka brokers still unreachable; retrying");
            }
            Some(_) => tracing::debug!(reason, "Kafka brokers still unreachable"),
        }
    }

    /// A broker answered (statistics show one up, a partition assignment, an acknowledged
    /// record): ends an outage, logged once.
    pub fn up(&self) {
        if !self.down.load(Ordering::Relaxed) {
            return;
        }
        let mut s = self.state.lock().expect("outage state");
        if let Some((since, _)) = s.since.take() {
            self.down.store(false, Ordering::Relaxed);
            let after = format!("{}s", since.elapsed().as_secs());
            tracing::info!(brokers = %self.brokers, after, "Kafka brokers reachable again");
        }
    }

    /// Whether the brokers are unreachable as far as the relay knows.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// A Kafka error from a client callback or a poll (`client`: which, for the log): an
    /// unreachable broker is the outage; anything else a WARN once per [`REMINDER`] per error.
    pub fn error(&self, client: &str, error: &KafkaError, reason: &str) {
        if is_unreachable(error) {
            let reason = if reason.is_empty() {
                error.to_string()
            } else {
                reason.to_string()
            };
            self.down(&reason);
            return;
        }
        if let Some(folded) = self.due(&format!("{client}|{error}")) {
            tracing::warn!(client, error = %error, reason, folded, "Kafka client error");
        }
    }

    /// A Kafka operation that failed and will be retried (`what`: which, the log line's text):
    /// while the brokers are unreachable it is part of the outage; otherwise a WARN once per
    /// [`REMINDER`] per operation, with the number folded into it.
    pub fn retrying(&self, what: &'static str, error: &KafkaError) {
        if is_unreachable(error) {
            self.down(&error.to_string());
        } else if self.is_down() {
            tracing::debug!(error = %error, "{what} (brokers unreachable)");
        } else if let Some(folded) = self.due(what) {
            tracing::warn!(error = %error, folded, "{what}");
        }
    }

    /// One of librdkafka's own log lines: connection failures are the outage, warnings and
    /// errors are rate-limited per facility and text, the rest passed on at their level.
    pub fn librdkafka(&self, level: RDKafkaLogLevel, fac: &str, text: &str) {
        use RDKafkaLogLevel as L;
        let failed = matches!(fac, "FAIL" | "ERROR") && text.contains("Connect to");
        match level {
            _ if failed => self.down(text),
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
                if let Some(folded) = self.due(&format!("{fac}|{text}")) {
                    if matches!(level, L::Warning) {
                        tracing::warn!(target: "librdkafka", fac, folded, "{text}");
                    } else {
                        tracing::error!(target: "librdkafka", fac, folded, "{text}");
                    }
                }
            }
            L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{text}"),
            L::Debug => tracing::debug!(target: "librdkafka", fac, "{text}"),
        }
    }

    /// Whether a line of kind `key` is due (first time, or [`REMINDER`] after the last),
    /// with how many were folded since; `None`: fold this one.
    fn due(&self, key: &str) -> Option<u64> {
        let mut s = self.state.lock().expect("outage state");
        let now = Instant::now();
        // Bounded: kinds not seen for a reminder's time are forgotten.
        if s.repeats.len() > 256 {
            s.repeats
                .retain(|_, (at, _)| now.duration_since(*at) < REMINDER);
        }
        match s.repeats.get_mut(key) {
            Some((at, folded)) if now.duration_since(*at) < REMINDER => {
                *folded += 1;
                None
            }
            Some((at, folded)) => {
                *at = now;
                Some(std::mem::take(folded))
            }
            None => {
                s.repeats.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

/// A client context that only routes errors and librdkafka's log through an [`Outage`]: for
/// the clients without callbacks of their own (the admin client, plain producers).
pub struct QuietContext {
    pub outage: Arc<Outage>,
    /// Which client, in the log.
    pub client: &'static str,
}

impl QuietContext {
    pub fn new(brokers: &str, client: &'static str) -> Self {
        Self {
            outage: of(brokers),
            client,
        }
    }
}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.outage.librdkafka(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.outage.error(self.client, &error, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_one_line_then_reminders_and_a_repeat_is_folded() {
        let o = of("outage-test:9092");
        assert!(Arc::ptr_eq(&o, &of("outage-test:9092")), "one per brokers");
        assert!(!o.is_down());
        o.down("refused");
        assert!(o.is_down());
        o.down("refused");
        // The reminder comes REMINDER after the last line, not before.
        {
            let s = o.state.lock().unwrap();
            let (since, said) = s.since.unwrap();
            assert_eq!(since, said);
        }
        o.up();
        assert!(!o.is_down());
        assert_eq!(o.due("k"), Some(0));
        assert_eq!(o.due("k"), None);
        assert_eq!(o.due("k"), None);
        // Pretend the reminder time passed: the next one says what was folded.
        o.state.lock().unwrap().repeats.get_mut("k").unwrap().0 -= REMINDER;
        assert_eq!(o.due("k"), Some(2));
        let unreachable = KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown);
        assert!(is_unreachable(&unreachable));
        let other = KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert!(!is_unreachable(&other));
    }
}
