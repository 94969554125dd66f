//! Reading one topic up to the end offsets seen at start (every partition assigned, no group
//! commits), and producing redriven records with every acknowledgement awaited.

use super::{Outgoing, RedriveError, BROKER_TIMEOUT};
use crate::config::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;

/// `assignment` moved to the first offsets at or after `since` (ms since the epoch); partitions
/// with no record that late leave it (and `ends`). Unchanged when the broker cannot say.
fn from_time(
    consumer: &StreamConsumer,
    assignment: TopicPartitionList,
    since: i64,
    ends: &mut BTreeMap<i32, i64>,
) -> TopicPartitionList {
    let mut wanted = TopicPartitionList::new();
    for e in assignment.elements() {
        let _ = wanted.add_partition_offset(e.topic(), e.partition(), Offset::Offset(since));
    }
    let Ok(found) = consumer.offsets_for_times(wanted, BROKER_TIMEOUT) else {
        return assignment;
    };
    let mut out = TopicPartitionList::new();
    for e in found.elements() {
        match e.offset() {
            Offset::Offset(o) if o >= 0 => {
                let _ = out.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o));
            }
            _ => {
                ends.remove(&e.partition());
            }
        }
    }
    out
}

/// A reader of one topic from its start offsets to the end offsets it saw when opened.
pub struct Reader {
    consumer: StreamConsumer,
    topic: String,
    /// Partitions not read to their end yet, with that end (the offset after their last record).
    ends: BTreeMap<i32, i64>,
    /// When the reader was opened (ms since the epoch).
    started_ms: i64,
}

impl Reader {
    /// Assigns every non-empty partition of `topic` (named in the config at `key`) from its
    /// first record. The consumer's group is a throwaway one: nothing is committed.
    pub fn open(kafka: &KafkaConfig, topic: &str, key: &'static str) -> Result<Self, RedriveError> {
        Self::open_since(kafka, topic, key, None)
    }

    /// [`Reader::open`], each partition from its first record written at or after `since_ms`
    /// (the broker's offsets for that time: what is read grows with the window, not the
    /// topic); a partition with none is not read. A broker that cannot answer for times is
    /// read from the first record.
    pub fn open_since(
        kafka: &KafkaConfig,
        topic: &str,
        key: &'static str,
        since_ms: Option<i64>,
    ) -> Result<Self, RedriveError> {
        let started_ms = chrono::Utc::now().timestamp_millis();
        let group = format!("event-relay-redrive-{}", uuid::Uuid::new_v4().simple());
        let mut settings = crate::source::consumer_config(kafka, &group);
        // After `kafka.options`: the relay's own group must never be used (or committed) here.
        settings
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        let consumer: StreamConsumer = settings.create().map_err(RedriveError::Client)?;
        let unreachable = |source| RedriveError::Unreachable {
            brokers: kafka.brokers.clone(),
            source,
        };
        // All topics (not the one): asking for a named topic may auto-create it.
        let metadata = consumer
            .fetch_metadata(None, BROKER_TIMEOUT)
            .map_err(unreachable)?;
        let missing = || RedriveError::TopicMissing {
            topic: topic.to_string(),
            key,
        };
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(missing)?;
        if found.error().map(RDKafkaErrorCode::from)
            == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
            || found.partitions().is_empty()
        {
            return Err(missing());
        }
        let mut ends = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in found.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), BROKER_TIMEOUT)
                .map_err(unreachable)?;
            if high > low {
                ends.insert(p.id(), high);
                assignment
                    .add_partition_offset(topic, p.id(), Offset::Offset(low))
                    .map_err(RedriveError::Client)?;
            }
        }
        if let Some(since) = since_ms {
            assignment = from_time(&consumer, assignment, since, &mut ends);
        }
        consumer.assign(&assignment).map_err(RedriveError::Client)?;
        Ok(Self {
            consumer,
            topic: topic.to_string(),
            ends,
            started_ms,
        })
    }

    /// The next record written before the start, `None` once every partition reached its end.
    pub async fn next(&mut self) -> Result<Option<OwnedMessage>, RedriveError> {
        while !self.ends.is_empty() {
            let received = tokio::time::timeout(BROKER_TIMEOUT * 3, self.consumer.recv()).await;
            match received {
                Ok(Ok(m)) => {
                    let Some(&end) = self.ends.get(&m.partition()) else {
                        continue; // A partition already read to its end.
                    };
                    if m.offset() >= end && self.written_after_start(&m) {
                        self.ends.remove(&m.partition());
                        continue;
                    }
                    return Ok(Some(m.detach()));
                }
                // The end of what the partition held (at least its end at start: a gap of
                // offsets, e.g. transaction markers, ends it too).
                Ok(Err(KafkaError::PartitionEOF(p))) => {
                    self.ends.remove(&p);
                }
                Ok(Err(e)) => return Err(self.stopped(e.to_string())),
                Err(_) => {
                    let waited = BROKER_TIMEOUT.as_secs() * 3;
                    return Err(self.stopped(format!("no record for {waited}s")));
                }
            }
        }
        Ok(None)
    }

    /// Whether `m`, at or past its partition's end offset at start, was written after the
    /// start. A partition is read until its end (`PartitionEOF`) or such a record, not just to
    /// its end offset: some brokers (the tansu test broker) report an end offset inside the last
    /// batch of records, and records of that batch were written before the start too. A record
    /// without a timestamp counts as written after.
    fn written_after_start(&self, m: &BorrowedMessage<'_>) -> bool {
        m.timestamp()
            .to_millis()
            .is_none_or(|t| t >= self.started_ms)
    }

    /// When the reader was opened (ms since the epoch).
    pub fn started_ms(&self) -> i64 {
        self.started_ms
    }

    fn stopped(&self, reason: String) -> RedriveError {
        RedriveError::Read {
            topic: self.topic.clone(),
            partitions: self.ends.keys().copied().collect(),
            reason,
        }
    }
}

/// At most this many records are unacknowledged at a time.
const MAX_PENDING: usize = 1000;

/// Produces redriven records with the relay's producer settings.
pub struct Sender {
    producer: FutureProducer,
    pending: Vec<(String, DeliveryFuture)>,
    acknowledged: u64,
}

impl Sender {
    pub fn new(kafka: &KafkaConfig) -> Result<Self, RedriveError> {
        let producer = crate::pipeline::producer_config(kafka)
            .create()
            .map_err(RedriveError::Client)?;
        Ok(Self {
            producer,
            pending: Vec::new(),
            acknowledged: 0,
        })
    }

    /// Hands `out` to the producer (waiting for earlier acknowledgements when too many are
    /// outstanding).
    pub async fn send(&mut self, out: Outgoing) -> Result<(), RedriveError> {
        if self.pending.len() >= MAX_PENDING {
            self.finish().await?;
        }
        loop {
            let mut record = FutureRecord::to(&out.topic)
                .payload(&out.payload)
                .headers(out.headers.clone());
            if let Some(key) = &out.key {
                record = record.key(key);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.pending.push((out.topic.clone(), delivery));
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if !self.pending.is_empty() =>
                {
                    self.finish().await?;
                }
                Err((source, _)) => return Err(self.failed(&out.topic, source)),
            }
        }
    }

    /// Waits for every outstanding acknowledgement.
    pub async fn finish(&mut self) -> Result<(), RedriveError> {
        for (topic, delivery) in std::mem::take(&mut self.pending) {
            match delivery.await {
                Ok(Ok(_)) => self.acknowledged += 1,
                Ok(Err((source, _))) => return Err(self.failed(&topic, source)),
                Err(_) => return Err(self.failed(&topic, KafkaError::Canceled)),
            }
        }
        Ok(())
    }

    fn failed(&self, topic: &str, source: KafkaError) -> RedriveError {
        RedriveError::Produce {
            topic: topic.to_string(),
            acknowledged: self.acknowledged,
            source,
        }
    }
}
