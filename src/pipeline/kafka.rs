//! The producer settings of the relay (result events, dead letters): the relay's defaults, then
//! the operator's `kafka.options` minus the consumer-only properties.

use crate::config::KafkaConfig;
use rdkafka::config::ClientConfig;

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
