//! Dead letters: the original bytes of a message (or one event of a batch) the relay cannot
//! normalize, with headers naming the reason and where it came from, and [`REDRIVEN_HEADER`]
//! when the message itself was re-produced by `event-relay redrive --from dead-letter` (so a
//! second redrive does not loop it).

use super::{cut_str, Produced, Reporter, CUT_FIELD_BYTES, CUT_PAYLOAD_BYTES};
use crate::tap::{Line, Stage};
use rdkafka::message::{Header, OwnedHeaders};

/// The header (value `true`) that marks a message re-produced by `redrive --from dead-letter`,
/// and a dead letter of such a message.
pub const REDRIVEN_HEADER: &str = "redriven";

/// Where a dead letter came from.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub source: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub reason: &'a str,
    pub error: String,
    pub problems: Vec<String>,
    pub batch_index: Option<usize>,
    /// The source event's id, when the message parsed far enough to have one.
    pub source_event_id: Option<&'a str>,
    /// The event's name, when the message parsed far enough to have one (shown on the tap).
    pub event: Option<&'a str>,
    /// The message carried `redriven: true`: the dead letter does too.
    pub redriven: bool,
}

impl Reporter {
    /// Writes a dead letter: the original bytes, headers naming reason and origin.
    pub async fn dead_letter(&self, raw: &[u8], key: Option<&[u8]>, dl: &DeadLetter<'_>) -> bool {
        let partition = dl.partition.to_string();
        let offset = dl.offset.to_string();
        let problems = serde_json::to_string(&dl.problems).unwrap_or_default();
        // `cut`: the original size when the payload is cut down (see below).
        let headers = |error: &str, problems: &str, cut: Option<usize>| {
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: "reason",
                    value: Some(dl.reason),
                })
                .insert(Header {
                    key: "error",
                    value: Some(error),
                })
                .insert(Header {
                    key: "problems",
                    value: Some(problems),
                })
                .insert(Header {
                    key: "source",
                    value: Some(dl.source),
                })
                .insert(Header {
                    key: "source_topic",
                    value: Some(dl.topic),
                })
                .insert(Header {
                    key: "source_partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "source_offset",
                    value: Some(&offset),
                });
            if let Some(i) = dl.batch_index {
                let i = i.to_string();
                headers = headers.insert(Header {
                    key: "batch_index",
                    value: Some(&i),
                });
            }
            if let Some(id) = dl.source_event_id {
                headers = headers.insert(Header {
                    key: "source_event_id",
                    value: Some(cut_str(id, CUT_FIELD_BYTES)),
                });
            }
            if dl.redriven {
                headers = headers.insert(Header {
                    key: REDRIVEN_HEADER,
                    value: Some("true"),
                });
            }
            if let Some(size) = cut {
                let size = size.to_string();
                headers = headers
                    .insert(Header {
                        key: "truncated",
                        value: Some("true"),
                    })
                    .insert(Header {
                        key: "original_size",
                        value: Some(&size),
                    });
            }
            headers
        };
        let key = key
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_else(|| format!("{}/{}/{}", dl.topic, dl.partition, dl.offset));
        let ok = match self
            .produce(
                &self.dlq_topic,
                &key,
                raw,
                Some(headers(&dl.error, &problems, None)),
            )
            .await
        {
            Produced::Acknowledged => true,
            Produced::Aborted => false,
            Produced::TooLarge(e) => {
                // Larger than Kafka takes (e.g. a `too_large` message, or error headers quoting
                // huge values). Retrying the same record forever would stall the partition's
                // commits: keep a prefix of the payload and of the headers, mark it with
                // `truncated` / `original_size`; source_topic/partition/offset still point at
                // the original message.
                tracing::warn!(error = %e, size = raw.len(), reason = dl.reason, "dead letter too large for Kafka; producing it cut down");
                self.produce_cut(
                    &self.dlq_topic,
                    cut_str(&key, CUT_FIELD_BYTES),
                    &raw[..raw.len().min(CUT_PAYLOAD_BYTES)],
                    Some(headers(
                        cut_str(&dl.error, CUT_FIELD_BYTES),
                        cut_str(&problems, CUT_FIELD_BYTES),
                        Some(raw.len()),
                    )),
                )
                .await
            }
        };
        if ok {
            self.tap.offer(|| {
                let mut line = Line::new(Stage::DeadLettered, dl.source)
                    .at(dl.topic, dl.partition, dl.offset)
                    .outcome(dl.reason);
                line.id = dl.source_event_id;
                line.event = dl.event;
                line.error = Some(cut_str(&dl.error, CUT_FIELD_BYTES).to_string());
                line
            });
            self.metrics
                .dead_letters
                .with_label_values(&[dl.source, dl.reason])
                .inc();
            // Payloads carry personal data: only logged when the operator opted in.
            let payload = self
                .log_payloads
                .then(|| String::from_utf8_lossy(&raw[..raw.len().min(2048)]).into_owned());
            tracing::warn!(
                payload = payload.as_deref(),
                reason = dl.reason,
                source = dl.source,
                topic = dl.topic,
                partition = dl.partition,
                offset = dl.offset,
                batch_index = dl.batch_index,
                source_event_id = dl.source_event_id,
                // Problems may quote (attacker-sized) values: bound the log line.
                error = %cut_str(&dl.error, CUT_FIELD_BYTES),
                "message dead-lettered"
            );
        }
        ok
    }
}
