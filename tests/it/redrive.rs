//! The real binary: `event-relay redrive`. `--from dead-letter` after a config change (strict →
//! lenient) relays what strict dead-lettered, and a message dead-lettered again after a redrive
//! is not redriven again; `--from failed` re-enters failed deliveries into their target's first
//! tier with a fresh attempt budget, filtered by target, event and time; `--dry-run` produces
//! nothing.

use crate::fixtures::receiver::Receiver;
use crate::fixtures::*;
use chrono::{DateTime, SecondsFormat, Utc};
use event_relay::config::{RetryTiersConfig, SourceFormat, ValidationMode};
use event_relay::envelope::{Envelope, Origin};
use event_relay::normalize::{Normalizer, SourceSettings};
use event_relay::report::{Journey, ParkedRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_event-relay");

/// Runs `event-relay <command> --config <path> <args>` off the async workers; fails the test if
/// it has not ended after 120 s (a guard against hanging, not a timing assertion).
pub async fn cli(command: &str, path: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg(command).arg("--config").arg(path).args(args);
    let out: Output = tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn event-relay");
        let deadline = Instant::now() + Duration::from_secs(120);
        while child.try_wait().expect("event-relay runs").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("event-relay still running after 120s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.wait_with_output().expect("event-relay output")
    })
    .await
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `event-relay redrive` with `args`; asserts exit 0 and returns stdout.
async fn redrive(path: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = cli("redrive", path, args).await;
    assert_eq!(code, Some(0), "redrive {args:?}:\n{stdout}\n{stderr}");
    stdout
}

/// The report's line for `name` (a target, source topic or skip reason), as columns.
fn line(stdout: &str, name: &str) -> Vec<String> {
    let found: Vec<Vec<String>> = stdout
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|cols| cols.first().map(String::as_str) == Some(name))
        .collect();
    assert_eq!(found.len(), 1, "one line for {name} in:\n{stdout}");
    found.into_iter().next().unwrap()
}

/// The sum of `topic`'s end offsets, to see that nothing was produced without waiting for it.
/// Compared, not counted: the test broker (tansu) reports an end offset inside the last batch
/// when a batch holds several records; it is exact for records produced one by one.
fn end_offsets(broker: &Broker, topic: &str) -> i64 {
    let c: BaseConsumer = broker.client_config().create().unwrap();
    let metadata = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("broker metadata");
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap_or_else(|| panic!("no topic {topic}"));
    t.partitions()
        .iter()
        .map(|p| {
            c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// A Komo CardViewed whose `score` breaks the catalog.
fn bad_score(id: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&komo_event(id, "CardViewed")).unwrap();
    v["score"] = json!("abc");
    serde_json::to_vec(&v).unwrap()
}

/// A strict Komo relay delivering every event to `url`.
async fn strict_env(group: &str, url: &str) -> TestEnv {
    let mut env = TestEnv::komo(group, 1).await;
    env.config.sources[0].validation = ValidationMode::Strict;
    env.config
        .targets
        .push(webhook("hook", &format!("{url}/hook")));
    env.config.routes.push(route_all(&["hook"]));
    env
}

async fn wait_for(rx: &Receiver, n: usize) {
    assert!(
        eventually(Duration::from_secs(60), || async { rx.count() >= n }).await,
        "expected {n} deliveries, got {}",
        rx.count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_relayed_after_the_config_is_fixed() {
    let rx = Receiver::start(vec![]).await;
    let mut env = strict_env("g-redrive-dl", &rx.url).await;
    let [bad1, bad2, good] = [0, 1, 2].map(|_| uuid::Uuid::new_v4().to_string());
    let relay = env.relay();
    env.produce(&[
        bad_score(&bad1),
        bad_score(&bad2),
        komo_event(&good, "CardViewed"),
    ])
    .await;
    assert_eq!(env.dead_letters(2, Duration::from_secs(60)).await.len(), 2);
    wait_for(&rx, 1).await;
    relay.stop().await.unwrap();
    let file = ConfigFile::write(&env.config);
    let src = env.topics.source.clone();

    let dry = redrive(&file.path, &["--from", "dead-letter", "--dry-run"]).await;
    assert!(
        dry.starts_with(&format!("read 2 records from {}\n", env.topics.dlq)),
        "{dry}"
    );
    assert!(
        dry.contains("would redrive 2 (dry run: nothing produced)"),
        "{dry}"
    );
    assert_eq!(line(&dry, &src), [src.as_str(), "2"]);
    assert!(dry.contains("skipped 0"), "{dry}");
    assert_eq!(
        end_offsets(&env.broker, &src),
        3,
        "the dry run produced nothing"
    );

    let (code, _, stderr) = cli(
        "redrive",
        &file.path,
        &["--from", "dead-letter", "--target", "hook"],
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--target applies to --from failed"),
        "{stderr}"
    );

    let done = redrive(&file.path, &["--from", "dead-letter"]).await;
    assert!(done.contains("redriven 2\n"), "{done}");
    assert_eq!(line(&done, &src), [src.as_str(), "2"]);
    let again: Vec<Record> = env.broker.read(&src, 5, Duration::from_secs(60)).await;
    assert_eq!(again.len(), 5);
    let redriven: Vec<&Record> = again
        .iter()
        .filter(|r| r.header("redriven") == Some("true"))
        .collect();
    assert_eq!(redriven.len(), 2, "{again:?}");
    assert_eq!(redriven[0].value, bad_score(&bad1), "the original bytes");
    assert_eq!(redriven[0].key.as_deref(), Some("k0"), "the original key");
    assert_eq!(redriven[1].value, bad_score(&bad2));
    assert_eq!(redriven[1].key.as_deref(), Some("k1"));

    // The fix: lenient validation. The same group resumes after the three first messages.
    env.config.sources[0].validation = ValidationMode::Lenient;
    let dead_letters = end_offsets(&env.broker, &env.topics.dlq);
    let relay = env.relay();
    wait_for(&rx, 3).await;
    let ids: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(ids.contains(&bad1) && ids.contains(&bad2), "{ids:?}");
    let counted = "event_relay_redriven_total{from=\"dead-letter\"}";
    assert!(
        eventually(Duration::from_secs(20), || async {
            relay.metric(counted).await == 2.0
        })
        .await
    );
    relay.stop().await.unwrap();
    let after = end_offsets(&env.broker, &env.topics.dlq);
    assert_eq!(after, dead_letters, "no new dead letters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_dead_lettered_again_after_a_redrive_is_not_redriven_again() {
    let rx = Receiver::start(vec![]).await;
    let env = strict_env("g-redrive-loop", &rx.url).await;
    let bad = uuid::Uuid::new_v4().to_string();
    let relay = env.relay();
    env.produce(&[bad_score(&bad)]).await;
    assert_eq!(env.dead_letters(1, Duration::from_secs(60)).await.len(), 1);
    let file = ConfigFile::write(&env.config);

    // Still strict: the redriven message is dead-lettered again, and the mark rides along.
    let done = redrive(&file.path, &["--from", "dead-letter"]).await;
    assert!(done.contains("redriven 1\n"), "{done}");
    let dl = env.dead_letters(2, Duration::from_secs(60)).await;
    assert_eq!(dl.len(), 2);
    assert_eq!(dl[0].header("redriven"), None);
    assert_eq!(dl[1].header("redriven"), Some("true"));
    assert_eq!(dl[1].value, bad_score(&bad));
    assert_eq!(dl[1].header("reason"), Some("invalid"));
    let counted = "event_relay_redriven_total{from=\"dead-letter\"}";
    assert_eq!(relay.metric(counted).await, 1.0);
    relay.stop().await.unwrap();

    let second = redrive(&file.path, &["--from", "dead-letter", "--dry-run"]).await;
    assert!(second.starts_with("read 2 records"), "{second}");
    assert_eq!(line(&second, "already_redriven"), ["already_redriven", "1"]);
    assert!(
        second.contains("would redrive 1 "),
        "only the first: {second}"
    );
    assert_eq!(rx.count(), 0, "nothing delivered");
}

/// Two failed-delivery targets (`a` on every tier, `b` on the 5m tier only) over fresh retry
/// and failed topics; returns the config file and the tier topics (1m, 5m).
async fn failed_env(env: &mut TestEnv) -> (ConfigFile, String, String) {
    let prefix = format!("retry-{}", uuid::Uuid::new_v4().simple());
    env.config.retry_tiers = Some(RetryTiersConfig {
        topic_prefix: Some(prefix.clone()),
        delays: vec![secs(60), secs(300)],
        failed_topic: Some(format!("failed-{}", uuid::Uuid::new_v4().simple())),
        ..Default::default()
    });
    for name in ["a", "b"] {
        let mut t = webhook(name, "http://127.0.0.1:9/");
        t.retry.max_elapsed = None;
        env.config.targets.push(t);
    }
    env.config.targets[1].retry.tiers = Some(vec![secs(300)]);
    let file = ConfigFile::write(&env.config);
    let (code, out, err) = cli("topics", &file.path, &["--create", "--partitions", "1"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    (file, format!("{prefix}.1m"), format!("{prefix}.5m"))
}

/// An envelope of event `event` with a fresh id, as the relay makes it.
fn envelope(event: &str) -> Envelope {
    let normalizer = Normalizer::builtin().unwrap();
    let origin = Origin {
        topic: "src".into(),
        partition: 0,
        offset: 0,
        key: None,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let settings = SourceSettings::standalone(SourceFormat::Komo);
    let n = normalizer
        .normalize(&komo_event(&id, "CardViewed"), &settings, origin)
        .unwrap();
    let mut env = n.events.into_iter().next().unwrap().0;
    env.event = event.into();
    env
}

fn failed_record(target: &str, env: Envelope, raw: &[u8]) -> ParkedRecord {
    let t0 = SystemTime::now() - Duration::from_secs(7200);
    ParkedRecord {
        env,
        raw: raw.to_vec(),
        target: target.into(),
        target_id: uuid::Uuid::new_v4(),
        journey: Journey {
            attempts: 12,
            parked: 2,
            first_attempt_at: Some(t0),
            tier: Some("5m".into()),
            redrive: false,
            trace: None,
        },
        due_at: t0,
        last_error: "HTTP 503: down".into(),
        reason: Some("exhausted".into()),
    }
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_reenter_their_first_tier_with_a_fresh_budget() {
    let mut env = TestEnv::komo("g-redrive-failed", 1).await;
    let (file, tier_1m, tier_5m) = failed_env(&mut env).await;
    let failed_topic = env.config.tiering().unwrap().failed_topic;
    let now = SystemTime::now();
    let hours_ago = |h: u64| now - Duration::from_secs(h * 3600);
    let raw = komo_event("as-sent", "CardViewed");
    let records = [
        (
            failed_record("a", envelope("CardViewed"), b""),
            hours_ago(3),
        ),
        (
            failed_record("a", envelope("QuizStarted"), b""),
            hours_ago(3),
        ),
        (
            failed_record("b", envelope("CardViewed"), b""),
            hours_ago(2),
        ),
        (
            failed_record("b", envelope("CardViewed"), &raw),
            hours_ago(0),
        ),
        (
            failed_record("gone", envelope("CardViewed"), b""),
            hours_ago(0),
        ),
    ];
    let producer = env.broker.producer();
    for (r, at) in &records {
        let ms = DateTime::<Utc>::from(*at).timestamp_millis();
        let payload = r.payload();
        let record = FutureRecord::to(&failed_topic)
            .key("k")
            .payload(&payload)
            .headers(r.headers())
            .timestamp(ms);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
    }
    env.broker.produce(&failed_topic, &[b"{}".to_vec()]).await;

    let dry = redrive(&file.path, &["--from", "failed", "--dry-run"]).await;
    assert!(
        dry.starts_with(&format!("read 6 records from {failed_topic}\n")),
        "{dry}"
    );
    assert!(dry.contains("would redrive 4 (dry run"), "{dry}");
    assert_eq!(line(&dry, "a"), ["a", "2", "->", tier_1m.as_str()]);
    assert_eq!(line(&dry, "b"), ["b", "2", "->", tier_5m.as_str()]);
    assert_eq!(line(&dry, "unknown_target"), ["unknown_target", "1"]);
    assert_eq!(
        line(&dry, "not_a_parked_record"),
        ["not_a_parked_record", "1"]
    );
    assert_eq!(
        end_offsets(&env.broker, &tier_1m),
        0,
        "dry: nothing produced"
    );
    assert_eq!(end_offsets(&env.broker, &tier_5m), 0);

    let by_target = redrive(
        &file.path,
        &["--from", "failed", "--target", "a", "--event", "Card*"],
    )
    .await;
    assert!(by_target.contains("redriven 1\n"), "{by_target}");
    assert_eq!(line(&by_target, "not_matching"), ["not_matching", "4"]);
    let got = env.broker.read(&tier_1m, 1, Duration::from_secs(60)).await;
    assert_eq!(end_offsets(&env.broker, &tier_1m), 1);
    let (want, _) = &records[0];
    assert_eq!(got[0].key.as_deref(), Some(want.env.id.as_str()));
    assert_eq!(got[0].value, want.payload(), "payload unchanged");
    for (name, value) in [
        ("attempts", "0"),
        ("parked", "0"),
        ("first_attempt_at", ""),
        ("redrive", "true"),
        ("tier", "1m"),
        ("target", "a"),
        ("last_error", "HTTP 503: down"),
    ] {
        assert_eq!(got[0].header(name), Some(value), "{name}");
    }
    assert_eq!(got[0].header("reason"), None);
    let due = DateTime::parse_from_rfc3339(got[0].header("due_at").unwrap()).unwrap();
    assert!(SystemTime::from(due) >= now, "due now, not at the old time");

    // Only b's delivery of the last half hour: the original body, as it was.
    let since = rfc3339(now - Duration::from_secs(1800));
    let recent = redrive(
        &file.path,
        &["--from", "failed", "--target", "b", "--since", &since],
    )
    .await;
    assert_eq!(line(&recent, "b"), ["b", "1", "->", tier_5m.as_str()]);
    assert_eq!(end_offsets(&env.broker, &tier_5m), 1);
    let got = env.broker.read(&tier_5m, 1, Duration::from_secs(60)).await;
    assert_eq!(got[0].value, raw);
    assert_eq!(got[0].header("body"), Some("original"));
    assert_eq!(got[0].header("tier"), Some("5m"));
    assert_eq!(got[0].key.as_deref(), Some(records[3].0.env.id.as_str()));
    assert_eq!(end_offsets(&env.broker, &tier_1m), 1, "a's tier untouched");

    let (code, _, stderr) = cli(
        "redrive",
        &file.path,
        &["--from", "failed", "--since", "yesterday"],
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--since"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_exit_3_and_a_config_without_tiers_exit_2() {
    let brokers = format!("127.0.0.1:{}", free_port());
    let mut cfg = base_config(&brokers, "results", "dlq");
    cfg.sources.push(source("src", SourceFormat::Komo));
    cfg.retry_tiers = Some(event_relay::config::RetryTiersConfig {
        enabled: false,
        ..Default::default()
    });
    let file = ConfigFile::write(&cfg);
    let (code, stdout, stderr) = cli("redrive", &file.path, &["--from", "dead-letter"]).await;
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains(&brokers), "{stderr}");
    assert!(stderr.contains("kafka.brokers"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");

    let (code, _, stderr) = cli("redrive", &file.path, &["--from", "failed"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("retry_tiers"), "{stderr}");
}
