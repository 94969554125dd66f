//! `event-relay topics`: the Kafka topics a config needs ([`needed`]), whether each exists on
//! the broker and with how many partitions ([`Admin::inspect`]), and creating the missing ones
//! ([`Admin::create`]). The relay itself never creates topics; this is the operator's tool for
//! setting them up (and, once `run` checks its topics at start, for fixing what it names).
//!
//! The broker is reached with the producer settings of the relay (`kafka.brokers` and
//! `kafka.options`, so TLS and SASL apply), and every request is bounded by a timeout.

use crate::config::{Config, KafkaConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use std::fmt;
use std::time::{Duration, Instant};

/// How long `event-relay topics` lets each broker request (metadata, creation) take.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// What a topic is for in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A `sources[].topic`: the relay consumes it.
    Source,
    /// `results.topic`: WebhookSuccess / WebhookError result events.
    Results,
    /// `dead_letter.topic`: messages that cannot be relayed.
    DeadLetter,
    /// A retry tier (`retry_tiers.topic_prefix` + a delay): parked deliveries, consumed back
    /// by the relay's tier consumer.
    RetryTier,
    /// `retry_tiers.failed_topic`: deliveries that failed for good, for `redrive`.
    Failed,
}

impl Role {
    /// Partitions of a topic `--create` makes, given `--partitions n`: topics the relay consumes
    /// get `n` (their partitions bound the relay's parallelism across replicas); the output
    /// topics get one, which keeps their records in production order and is plenty for
    /// their volume.
    pub fn partitions(self, n: i32) -> i32 {
        match self {
            Role::Source | Role::RetryTier => n,
            Role::Results | Role::DeadLetter | Role::Failed => 1,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Source => "source",
            Role::Results => "results",
            Role::DeadLetter => "dead-letter",
            Role::RetryTier => "retry-tier",
            Role::Failed => "failed",
        })
    }
}

/// A topic the config needs, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeededTopic {
    /// The topic's name.
    pub name: String,
    /// What the config uses it for.
    pub role: Role,
}

/// Every topic `config` needs, in config order (sources, results, dead letters, retry tiers,
/// failed), each name once (the first role wins when two keys name the same topic). Topics of new config
/// sections are added here, and only here.
pub fn needed(config: &Config) -> Vec<NeededTopic> {
    let sources = config.sources.iter().map(|s| (&s.topic, Role::Source));
    let outputs = [
        (&config.results.topic, Role::Results),
        (&config.dead_letter.topic, Role::DeadLetter),
    ];
    let tiers = config.retry_tiers.as_ref();
    let tier_topics: Vec<String> = tiers
        .map(|rt| rt.tiers().into_iter().map(|t| t.topic).collect())
        .unwrap_or_default();
    let retry = tier_topics
        .iter()
        .map(|t| (t, Role::RetryTier))
        .chain(tiers.map(|rt| (&rt.failed_topic, Role::Failed)));
    let mut out: Vec<NeededTopic> = Vec::new();
    for (name, role) in sources.chain(outputs).chain(retry) {
        if !out.iter().any(|t| &t.name == name) {
            out.push(NeededTopic {
                name: name.clone(),
                role,
            });
        }
    }
    out
}

/// The retry-tier and failed topics of `config` that the broker does not have (empty
/// without `[retry_tiers]`). `run` refuses to start while any is missing: parking on a topic
/// that does not exist would hold every failing delivery in memory instead.
pub fn missing_retry_topics(config: &Config) -> Result<Vec<String>, TopicsError> {
    let wanted: Vec<NeededTopic> = needed(config)
        .into_iter()
        .filter(|t| matches!(t.role, Role::RetryTier | Role::Failed))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let admin = Admin::new(&config.kafka, BROKER_TIMEOUT)?;
    Ok(admin
        .inspect(&wanted)?
        .into_iter()
        .filter(|s| !s.exists())
        .map(|s| s.topic.name)
        .collect())
}

/// A needed topic as the broker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicState {
    /// The topic and its role.
    pub topic: NeededTopic,
    /// Its partition count, `None` when the topic does not exist.
    pub partitions: Option<usize>,
}

impl TopicState {
    /// Whether the topic exists on the broker.
    pub fn exists(&self) -> bool {
        self.partitions.is_some()
    }
}

/// Why the topics could not be inspected or created.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    /// The Kafka client could not be created (e.g. an invalid property in `kafka.options`).
    #[error("creating the Kafka admin client: {0}")]
    Client(#[source] KafkaError),
    /// No broker answered a metadata request in time.
    #[error("cannot reach the Kafka brokers {brokers} (kafka.brokers) within {}s: {source}", timeout.as_secs())]
    Unreachable {
        brokers: String,
        timeout: Duration,
        #[source]
        source: KafkaError,
    },
    /// The CreateTopics request as a whole failed.
    #[error("creating topics: {0}")]
    Create(#[source] KafkaError),
    /// The broker refused to create some topics (each with the broker's reason).
    #[error("the broker refused to create {}", refused_list(.0))]
    Refused(Vec<(String, RDKafkaErrorCode)>),
}

fn refused_list(refused: &[(String, RDKafkaErrorCode)]) -> String {
    let each: Vec<String> = refused.iter().map(|(t, c)| format!("{t} ({c})")).collect();
    each.join(", ")
}

/// An admin connection to the config's brokers.
pub struct Admin {
    client: AdminClient<DefaultClientContext>,
    brokers: String,
    timeout: Duration,
}

impl Admin {
    /// A client with the relay's producer settings for `kafka`; each request below waits at
    /// most `timeout`. Creating it does not contact the broker yet.
    pub fn new(kafka: &KafkaConfig, timeout: Duration) -> Result<Self, TopicsError> {
        let client = crate::pipeline::producer_config(kafka)
            .create()
            .map_err(TopicsError::Client)?;
        Ok(Self {
            client,
            brokers: kafka.brokers.clone(),
            timeout,
        })
    }

    fn metadata(&self) -> Result<Metadata, TopicsError> {
        // All topics (not one by one): asking for a named topic may auto-create it.
        self.client
            .inner()
            .fetch_metadata(None, self.timeout)
            .map_err(|source| TopicsError::Unreachable {
                brokers: self.brokers.clone(),
                timeout: self.timeout,
                source,
            })
    }

    /// Whether each of `topics` exists, and its partition count.
    pub fn inspect(&self, topics: &[NeededTopic]) -> Result<Vec<TopicState>, TopicsError> {
        let metadata = self.metadata()?;
        let partitions = |name: &str| {
            metadata
                .topics()
                .iter()
                .find(|t| t.name() == name)
                .filter(|t| {
                    let unknown = RDKafkaErrorCode::UnknownTopicOrPartition;
                    t.error().map(RDKafkaErrorCode::from) != Some(unknown)
                })
                .map(|t| t.partitions().len())
        };
        Ok(topics
            .iter()
            .map(|t| TopicState {
                topic: t.clone(),
                partitions: partitions(&t.name),
            })
            .collect())
    }

    /// Creates `missing`, each with [`Role::partitions`] of `partitions` and the broker's
    /// default replication factor. A topic that exists meanwhile counts as created. Returns
    /// once the broker's metadata shows them all, or the timeout passed.
    pub async fn create(
        &self,
        missing: &[NeededTopic],
        partitions: i32,
    ) -> Result<(), TopicsError> {
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|t| {
                // -1: the broker's `default.replication.factor` (KIP-464).
                let replication = TopicReplication::Fixed(-1);
                NewTopic::new(&t.name, t.role.partitions(partitions), replication)
            })
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout));
        let results = self
            .client
            .create_topics(&new, &options)
            .await
            .map_err(TopicsError::Create)?;
        let refused: Vec<(String, RDKafkaErrorCode)> = results
            .into_iter()
            .filter_map(Result::err)
            .filter(|(_, code)| *code != RDKafkaErrorCode::TopicAlreadyExists)
            .collect();
        if !refused.is_empty() {
            return Err(TopicsError::Refused(refused));
        }
        self.await_visible(missing).await
    }

    /// Metadata can lag behind a creation: asks until every topic shows, at most `timeout`.
    async fn await_visible(&self, topics: &[NeededTopic]) -> Result<(), TopicsError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let states = self.inspect(topics)?;
            if states.iter().all(TopicState::exists) || Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One aligned line per topic: `name  role  exists|missing  partitions` (`-` when missing).
pub fn render(states: &[TopicState]) -> String {
    let rows: Vec<[String; 4]> = states
        .iter()
        .map(|s| {
            [
                s.topic.name.clone(),
                s.topic.role.to_string(),
                if s.exists() { "exists" } else { "missing" }.to_string(),
                s.partitions.map_or("-".to_string(), |n| n.to_string()),
            ]
        })
        .collect();
    let width = |col: usize| rows.iter().map(|r| r[col].len()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    let mut out = String::new();
    for r in &rows {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::load_str(text, Vec::new()).unwrap_or_else(|e| panic!("{e}"))
    }

    const CONFIG: &str = r#"
        [kafka]
        brokers = "127.0.0.1:9"
        [[sources]]
        topic = "komo"
        format = "komo"
        [[sources]]
        topic = "acemate"
        format = "acemate"
        [results]
        topic = "results"
        [dead_letter]
        topic = "dlq"
    "#;

    #[test]
    fn needed_names_every_configured_topic_with_its_role() {
        let got: Vec<(String, Role)> = needed(&config(CONFIG))
            .into_iter()
            .map(|t| (t.name, t.role))
            .collect();
        let want = [
            ("komo", Role::Source),
            ("acemate", Role::Source),
            ("results", Role::Results),
            ("dlq", Role::DeadLetter),
        ];
        let want: Vec<(String, Role)> = want.iter().map(|(n, r)| (n.to_string(), *r)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn retry_tiers_add_a_topic_per_delay_and_the_failed_topic() {
        let mut cfg = config(CONFIG);
        cfg.retry_tiers = Some(crate::config::RetryTiersConfig {
            topic_prefix: "relay.retry".into(),
            delays: vec![
                crate::config::ConfigDuration::from_secs(1),
                crate::config::ConfigDuration::from_secs(120),
            ],
            failed_topic: "relay.failed".into(),
            group_id: None,
        });
        let got: Vec<(String, Role)> = needed(&cfg)
            .into_iter()
            .skip(4)
            .map(|t| (t.name, t.role))
            .collect();
        let want = [
            ("relay.retry.1s", Role::RetryTier),
            ("relay.retry.2m", Role::RetryTier),
            ("relay.failed", Role::Failed),
        ];
        let want: Vec<(String, Role)> = want.iter().map(|(n, r)| (n.to_string(), *r)).collect();
        assert_eq!(got, want);
        assert_eq!(Role::RetryTier.partitions(6), 6);
        assert_eq!(Role::Failed.partitions(6), 1);
    }

    #[test]
    fn a_topic_with_two_roles_is_listed_once() {
        let text = CONFIG.replace("topic = \"dlq\"", "topic = \"results\"");
        let got = needed(&config(&text));
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[2].role, Role::Results);
    }

    #[test]
    fn only_consumed_topics_get_the_requested_partitions() {
        assert_eq!(Role::Source.partitions(6), 6);
        assert_eq!(Role::Results.partitions(6), 1);
        assert_eq!(Role::DeadLetter.partitions(6), 1);
    }

    #[test]
    fn render_aligns_the_columns() {
        let state = |name: &str, role, partitions| TopicState {
            topic: NeededTopic {
                name: name.to_string(),
                role,
            },
            partitions,
        };
        let text = render(&[
            state("a-long-topic", Role::Source, Some(12)),
            state("r", Role::Results, None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["a-long-topic", "source", "exists", "12"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["r", "results", "missing", "-"]
        );
        assert_eq!(lines[0].find("source"), lines[1].find("results"));
        assert_eq!(lines[0].find("exists"), lines[1].find("missing"));
    }
}
