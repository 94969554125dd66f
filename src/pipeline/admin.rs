//! Kafka topics as the broker sees them: which of the config's topics exist and with how many
//! partitions, and creating missing ones, with the relay's producer settings (`kafka.brokers`
//! and `kafka.options`, so TLS and SASL apply), every request bounded by a timeout. What
//! `event-relay topics` shows and creates, and what the relay itself creates at start: the
//! retry tier and failed topics ([`super::ensure`]).

use crate::config::KafkaConfig;
use crate::outage::QuietContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use std::fmt;
use std::time::{Duration, Instant};

/// How long each broker request (metadata, creation) may take.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The replication factor that asks the broker for its `default.replication.factor` (KIP-464).
pub const BROKER_REPLICATION: i32 = -1;

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
    client: AdminClient<QuietContext>,
    brokers: String,
    timeout: Duration,
}

impl Admin {
    /// A client with the relay's producer settings for `kafka`; each request below waits at
    /// most `timeout`. Creating it does not contact the broker yet.
    pub fn new(kafka: &KafkaConfig, timeout: Duration) -> Result<Self, TopicsError> {
        let client = crate::pipeline::producer_config(kafka)
            .create_with_context(QuietContext::new(&kafka.brokers, "admin"))
            .map_err(TopicsError::Client)?;
        Ok(Self {
            client,
            brokers: kafka.brokers.clone(),
            timeout,
        })
    }

    /// Partition count of each topic the broker has (all topics, one metadata request).
    pub fn partition_counts(&self) -> Result<Vec<(String, usize)>, TopicsError> {
        let metadata = self.metadata()?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect())
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

    /// Creates `missing`, each with [`Role::partitions`] of `partitions` and `replication`
    /// ([`BROKER_REPLICATION`]: the broker's default). A topic that exists meanwhile counts as
    /// created. Returns once the broker's metadata shows them all, or the timeout passed.
    pub async fn create(
        &self,
        missing: &[NeededTopic],
        partitions: i32,
        replication: i32,
    ) -> Result<(), TopicsError> {
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|t| {
                let replication = TopicReplication::Fixed(replication);
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
