//! The producer settings of the relay (result events, dead letters): the relay's defaults, then
//! the operator's `kafka.options` minus the consumer-only properties. And [`problems`]: what
//! librdkafka says of `kafka.options` for every client the relay creates, without a broker.

use crate::config::{Config, KafkaConfig, Problem};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;

/// Producer settings for result events and dead letters.
pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .set("client.id", "event-relay");
    for (k, v) in &kafka.options {
        // Consumer-only properties would make librdkafka warn on every start.
        if !is_consumer_only(k) && k != "statistics.interval.ms" {
            c.set(k, v);
        }
    }
    c
}

/// What librdkafka says of `kafka.options`: each client the relay creates (the source consumer,
/// the tier consumer, the producer) configured exactly as `run` configures it and created with
/// no bootstrap servers, so nothing connects and no broker is needed. Each bad property once,
/// at `kafka.options."NAME"`, with librdkafka's reason; a property it refuses is left out and
/// the client tried again, so every bad one is named at once.
pub fn problems(config: &Config) -> Vec<Problem> {
    let kafka = &config.kafka;
    let mut clients = vec![
        (crate::source::consumer_config(kafka, &kafka.group_id), true),
        (producer_config(kafka), false),
    ];
    if let Some(t) = config.tiering() {
        clients.push((crate::source::consumer_config(kafka, &t.group_id), true));
    }
    let mut problems: Vec<Problem> = Vec::new();
    for (mut c, consumer) in clients {
        c.set("bootstrap.servers", "");
        // One round per refused property, at most one per property set.
        for _ in 0..=c.config_map().len() {
            let created = if consumer {
                c.create::<BaseConsumer>().map(drop)
            } else {
                c.create::<BaseProducer>().map(drop)
            };
            let problem = match created {
                Ok(()) => break,
                Err(KafkaError::ClientConfig(_, reason, key, _)) if !key.is_empty() => {
                    c.remove(&key);
                    option_problem(&key, &reason)
                }
                Err(e) => Problem::new("kafka.options", without_prefix(&e.to_string())),
            };
            let last = !problem.path.starts_with("kafka.options.");
            if !problems.contains(&problem) {
                problems.push(problem);
            }
            if last {
                break;
            }
        }
    }
    // librdkafka sees the properties in hash order: name them in key order.
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    problems
}

/// A property librdkafka refused, at its key path (quoted: property names have dots).
fn option_problem(key: &str, reason: &str) -> Problem {
    let reason = without_prefix(reason);
    // librdkafka's "No such configuration property" repeats the name; the key path has it.
    let reason = match reason.split_once(": \"") {
        Some((what, _)) if what.starts_with("No such configuration property") => what,
        _ => reason,
    };
    Problem::new(&format!("kafka.options.\"{key}\""), reason.to_string())
}

fn without_prefix(text: &str) -> &str {
    text.strip_prefix("Client config error: ")
        .or_else(|| text.strip_prefix("Client creation error: "))
        .unwrap_or(text)
}

fn is_consumer_only(key: &str) -> bool {
    const CONSUMER: &[&str] = &[
        "group.id",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "auto.offset.reset",
        "enable.auto.commit",
        "auto.commit.interval.ms",
        "fetch.min.bytes",
        "fetch.wait.max.ms",
        "fetch.max.bytes",
        "max.partition.fetch.bytes",
        "queued.min.messages",
        "queued.max.messages.kbytes",
        "partition.assignment.strategy",
        "group.instance.id",
        "enable.auto.offset.store",
        "enable.partition.eof",
        "isolation.level",
        "group.protocol",
        "fetch.message.max.bytes",
        "check.crcs",
    ];
    CONSUMER.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_options(options: &str) -> Config {
        let text = format!(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\n[kafka.options]\n{options}\n[[sources]]\n\
             topic = \"in\"\nformat = \"auto\"\n[results]\ntopic = \"r\"\n[dead_letter]\n\
             topic = \"d\"\n"
        );
        crate::config::load_str(&text, Vec::new()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A misspelt property and a bad value are each named once, with their key paths, though
    /// three clients are checked; good options give nothing.
    #[test]
    fn bad_kafka_options_are_named_with_their_key_paths() {
        let p = problems(&with_options(
            "\"sesion.timeout.ms\" = \"6000\"\n\"socket.keepalive.enable\" = \"maybe\"\n\
             \"socket.timeout.ms\" = \"5000\"",
        ));
        let text: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:#?}");
        assert!(
            text[0]
                .starts_with("kafka.options.\"sesion.timeout.ms\": No such configuration property"),
            "{text:#?}"
        );
        assert!(
            text[1].starts_with("kafka.options.\"socket.keepalive.enable\": ")
                && text[1].contains("true or false"),
            "{text:#?}"
        );
        assert!(problems(&with_options("\"socket.timeout.ms\" = \"5000\"")).is_empty());
    }
    use crate::source::consumer_config;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::producer::BaseProducer;

    /// Managed Kafka (Confluent Cloud, MSK, Aiven) needs SASL over TLS: the bundled
    /// librdkafka must be built with OpenSSL, or creating the clients fails.
    #[test]
    fn sasl_ssl_clients_can_be_created() {
        let text = r#"
            [kafka]
            brokers = "127.0.0.1:9"
            group_id = "g"
            [kafka.options]
            "security.protocol" = "SASL_SSL"
            "sasl.mechanisms" = "PLAIN"
            "sasl.username" = "user"
            "sasl.password" = "secret"
            [[sources]]
            topic = "in"
            format = "auto"
            [results]
            topic = "results"
            [dead_letter]
            topic = "dlq"
        "#;
        let config = crate::config::load_str(text, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        let consumer: Result<BaseConsumer, _> =
            consumer_config(&config.kafka, &config.kafka.group_id).create();
        consumer.unwrap_or_else(|e| panic!("consumer with SASL_SSL: {e}"));
        let producer: Result<BaseProducer, _> = producer_config(&config.kafka).create();
        producer.unwrap_or_else(|e| panic!("producer with SASL_SSL: {e}"));
    }
}
