//! Kafka outages log like a good daemon: at the default level a relay that cannot reach its
//! brokers writes one WARN naming them, at most one reminder per `outage::REMINDER`, and one
//! INFO when they answer again; nothing else it logs repeats. Checked on the real binary's
//! log, with the config's `log.level` (no `RUST_LOG`), as in production.

use crate::fixtures::proxy::Proxy;
use crate::fixtures::receiver::Receiver;
use crate::fixtures::relay::LoggedRelay;
use crate::fixtures::*;
use event_relay::config::SourceFormat;
use event_relay::outage::REMINDER;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const UNREACHABLE: &str = "Kafka brokers unreachable";
const STILL: &str = "Kafka brokers still unreachable";
const BACK: &str = "Kafka brokers reachable again";

/// The WARN and ERROR lines of a text log, without their timestamps.
fn warnings(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_string())
        .collect()
}

/// No WARN or ERROR line is written twice: what repeats is folded (the outage's reminders
/// carry their duration, folded errors their count, so even they differ).
fn assert_no_repeats(log: &str) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for w in warnings(log) {
        *seen.entry(w).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "repeated lines: {repeated:#?}\n{log}");
}

/// The reminders an outage of `lasted` may log: one per full `REMINDER`.
fn reminders_allowed(lasted: Duration) -> usize {
    (lasted.as_secs() / REMINDER.as_secs()) as usize
}

/// Brokers on a closed port for 30 s: one WARN (the brokers, librdkafka's reason), no
/// reminder before a minute, and no other warning or error at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_without_brokers_says_so_once() {
    let brokers = format!("127.0.0.1:{}", free_port());
    let mut cfg = base_config(&brokers, "results", "dlq");
    cfg.sources.push(source("in", SourceFormat::Komo));
    cfg.server.listen = format!("127.0.0.1:{}", free_port());
    let file = ConfigFile::write(&cfg);
    let started = Instant::now();
    let relay = LoggedRelay::spawn_logging(&file, &[], None);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let log = relay.log_text();
    let lasted = started.elapsed();
    assert!(relay.stop(), "{log}");
    let warned = warnings(&log);
    assert_eq!(
        warned.iter().filter(|w| w.contains(UNREACHABLE)).count(),
        1,
        "{log}"
    );
    assert!(
        warned[0].contains(&brokers) && warned[0].contains("reason="),
        "{log}"
    );
    let reminders = warned.iter().filter(|w| w.contains(STILL)).count();
    assert!(reminders <= reminders_allowed(lasted), "{log}");
    assert_eq!(warned.len(), 1 + reminders, "nothing else warns:\n{log}");
    assert_no_repeats(&log);
}

/// A broker that goes away mid-run (its proxy cut) and comes back: one WARN when it goes, one
/// INFO when it is back, reminders only per full minute of the cut, and nothing repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_goes_away_and_comes_back_is_two_lines() {
    let proxy_port = free_port();
    let broker = Broker::start_tansu(free_port(), proxy_port);
    let proxy = Proxy::start(proxy_port, broker.listen.clone()).await;
    let rx = Receiver::start(vec![]).await;
    let mut env = TestEnv::on(broker, "g-outage-log", SourceFormat::Komo, 1).await;
    env.config
        .targets
        .push(webhook("hook", &format!("{}/hook", rx.url)));
    env.config.routes.push(route_all(&["hook"]));
    let file = ConfigFile::write(&env.config);
    let relay = LoggedRelay::spawn_logging(&file, &[], None);
    env.produce(&cards(&ids(5))).await;
    assert!(
        eventually(Duration::from_secs(60), || async { rx.count() >= 5 }).await,
        "delivering before the cut:\n{}",
        relay.log_text()
    );
    proxy.cut();
    let cut = Instant::now();
    let noticed = eventually(Duration::from_secs(60), || async {
        relay.log_count(UNREACHABLE) > 0
    })
    .await;
    assert!(noticed, "the outage is logged:\n{}", relay.log_text());
    proxy.restore().await;
    let lasted = cut.elapsed();
    let back = eventually(Duration::from_secs(90), || async {
        relay.log_count(BACK) > 0
    })
    .await;
    let log = relay.log_text();
    assert!(back, "the return is logged:\n{log}");
    env.produce(&cards(&ids(5))).await;
    assert!(
        eventually(Duration::from_secs(60), || async { rx.count() >= 10 }).await,
        "delivering after the cut:\n{}",
        relay.log_text()
    );
    assert!(relay.stop());
    assert_eq!(relay_count(&log, UNREACHABLE), 1, "{log}");
    assert_eq!(relay_count(&log, BACK), 1, "{log}");
    assert!(
        relay_count(&log, STILL) <= reminders_allowed(lasted),
        "{log}"
    );
    assert_no_repeats(&log);
}

fn relay_count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}
