//! The real binary: `event-relay topics` lists the config's topics on a real broker (exit 1 while
//! some are missing), `--create` makes them (exit 0), an unreachable broker is exit 3 and an
//! invalid config exit 2.

use crate::fixtures::{base_config, free_port, source, Broker, ConfigFile};
use event_relay::config::{Config, SourceFormat};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_event-relay");

/// Runs `event-relay topics --config <path> <args>`; fails the test if it has not ended after
/// `limit` (a guard against hanging, not a timing assertion).
fn topics(path: &Path, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .arg("topics")
        .arg("--config")
        .arg(path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn event-relay");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("event-relay runs").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("event-relay topics still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("event-relay output")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The output line of `topic` split into its columns.
fn line_of(stdout: &str, topic: &str) -> Vec<String> {
    let found: Vec<Vec<String>> = stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|cols| cols.first().map(String::as_str) == Some(topic))
        .collect();
    assert_eq!(found.len(), 1, "one line for {topic} in:\n{stdout}");
    found.into_iter().next().unwrap()
}

/// Partition counts of `topics` as the broker reports them (`None`: no such topic).
fn partitions(broker: &Broker, topics: &[&str]) -> Vec<Option<usize>> {
    let client: BaseConsumer = broker.client_config().create().unwrap();
    let metadata = client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("broker metadata");
    topics
        .iter()
        .map(|name| {
            metadata
                .topics()
                .iter()
                .find(|t| t.name() == *name && t.error().is_none())
                .map(|t| t.partitions().len())
        })
        .collect()
}

/// Two sources, results and dead letters with fresh names on `brokers`.
fn config(brokers: &str) -> (Config, [(String, &'static str); 4]) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let names = [
        (format!("komo-{id}"), "source"),
        (format!("acemate-{id}"), "source"),
        (format!("results-{id}"), "results"),
        (format!("dlq-{id}"), "dead-letter"),
    ];
    let mut cfg = base_config(brokers, &names[2].0, &names[3].0);
    cfg.sources.push(source(&names[0].0, SourceFormat::Komo));
    cfg.sources.push(source(&names[1].0, SourceFormat::Acemate));
    (cfg, names)
}

#[test]
fn create_makes_the_missing_topics_and_then_every_topic_exists() {
    let broker = Broker::start();
    let (cfg, names) = config(&broker.bootstrap);
    let file = ConfigFile::write(&cfg);
    let limit = Duration::from_secs(120);

    let before = topics(&file.path, &[], limit);
    let (stdout, stderr) = text(&before);
    assert_eq!(before.status.code(), Some(1), "{stdout}\n{stderr}");
    for (name, role) in &names {
        assert_eq!(line_of(&stdout, name), [name, *role, "missing", "-"]);
    }

    let created = topics(&file.path, &["--create", "--partitions", "3"], limit);
    let (stdout, stderr) = text(&created);
    assert_eq!(created.status.code(), Some(0), "{stdout}\n{stderr}");
    let all: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        partitions(&broker, &all),
        [Some(3), Some(3), Some(1), Some(1)],
        "sources get --partitions, results and dead letters one"
    );

    let after = topics(&file.path, &[], limit);
    let (stdout, stderr) = text(&after);
    assert_eq!(after.status.code(), Some(0), "{stdout}\n{stderr}");
    for ((name, role), n) in names.iter().zip(["3", "3", "1", "1"]) {
        assert_eq!(line_of(&stdout, name), [name, *role, "exists", n]);
    }
}

#[test]
fn an_unreachable_broker_is_exit_3_naming_the_brokers() {
    let brokers = format!("127.0.0.1:{}", free_port());
    let (cfg, _) = config(&brokers);
    let file = ConfigFile::write(&cfg);
    let out = topics(&file.path, &[], Duration::from_secs(60));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains(&brokers), "{stderr}");
    assert!(stderr.contains("kafka.brokers"), "{stderr}");
    let timeout = format!("{}s", event_relay::topics::BROKER_TIMEOUT.as_secs());
    assert!(stderr.contains(&timeout), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn an_invalid_config_is_exit_2_as_check_reports_it() {
    let (mut cfg, _) = config("127.0.0.1:9");
    cfg.results.topic = String::new();
    let file = ConfigFile::write(&cfg);
    let out = topics(&file.path, &[], Duration::from_secs(60));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("results.topic"), "{stderr}");
    assert!(stderr.contains("1 problem(s)"), "{stderr}");
}

/// A misspelt librdkafka property is a config problem for `topics`, `check` and `run` alike
/// (exit 2, named at its key path with librdkafka's reason), found without a broker: the
/// brokers here are a closed port, and none of them says it cannot reach them.
#[test]
fn a_misspelt_kafka_option_is_exit_2_everywhere_without_a_broker() {
    let (mut cfg, _) = config(&format!("127.0.0.1:{}", free_port()));
    cfg.kafka
        .options
        .insert("sesion.timeout.ms".into(), "6000".into());
    let file = ConfigFile::write(&cfg);
    let named = "kafka.options.\"sesion.timeout.ms\": No such configuration property";
    for command in ["topics", "check", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_event-relay"))
            .args([command, "--config"])
            .arg(&file.path)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {stdout}\n{stderr}");
        assert!(
            stdout.contains(named) || stderr.contains(named),
            "{command}: {stdout}\n{stderr}"
        );
        assert!(!stderr.contains("cannot reach"), "{command}: {stderr}");
    }
}
