//! What a reload cannot change in a running process: the keys read once at start (the Kafka
//! clients and their group membership, the topics consumed and produced, the server's socket,
//! the in-flight bound, logging). A reload whose config changes any of them is refused as a
//! whole (see `reload.rs`): the running config stays exactly one file's.

use crate::config::Config;
use std::collections::BTreeSet;

/// The keys whose value differs between `old` and `new` and which only a restart applies, in
/// config order.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut differs = |key: &'static str, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    differs("kafka.brokers", old.kafka.brokers != new.kafka.brokers);
    differs("kafka.group_id", old.kafka.group_id != new.kafka.group_id);
    differs("kafka.options", old.kafka.options != new.kafka.options);
    differs("sources[].topic", source_topics(old) != source_topics(new));
    differs("results.topic", old.results.topic != new.results.topic);
    differs(
        "dead_letter.topic",
        old.dead_letter.topic != new.dead_letter.topic,
    );
    retry_tiers(old, new, &mut differs);
    let (p, q) = (&old.pipeline, &new.pipeline);
    differs(
        "pipeline.max_in_flight_events",
        p.max_in_flight_events != q.max_in_flight_events,
    );
    differs(
        "pipeline.max_in_flight_bytes",
        p.max_in_flight_bytes != q.max_in_flight_bytes,
    );
    differs("pipeline.drain_timeout", p.drain_timeout != q.drain_timeout);
    differs(
        "pipeline.worker_threads",
        p.effective_worker_threads() != q.effective_worker_threads(),
    );
    differs(
        "pipeline.revoke_timeout",
        p.revoke_timeout != q.revoke_timeout,
    );
    differs(
        "pipeline.commit_interval",
        p.commit_interval != q.commit_interval,
    );
    let (s, t) = (&old.server, &new.server);
    differs("server.listen", s.listen != t.listen);
    differs(
        "server.liveness_deadline",
        s.liveness_deadline != t.liveness_deadline,
    );
    differs(
        "server.circuit_open_threshold",
        s.circuit_open_threshold != t.circuit_open_threshold,
    );
    differs("server.tap", s.tap != t.tap);
    let (l, m) = (&old.log, &new.log);
    differs("log.format", l.format != m.format);
    differs("log.level", l.level != m.level);
    differs(
        "log.include_payloads",
        l.include_payloads != m.include_payloads,
    );
    differs("telemetry", old.telemetry != new.telemetry);
    keys
}

/// The tier topics and the tier consumer's group.
fn retry_tiers(old: &Config, new: &Config, differs: &mut impl FnMut(&'static str, bool)) {
    match (old.tiering(), new.tiering()) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            let topics = |t: &crate::config::Tiering| {
                t.tiers.iter().map(|t| t.topic.clone()).collect::<Vec<_>>()
            };
            differs("retry_tiers.delays", topics(&a) != topics(&b));
            differs("retry_tiers.failed_topic", a.failed_topic != b.failed_topic);
            differs("retry_tiers.group_id", a.group_id != b.group_id);
        }
        _ => differs("retry_tiers.enabled", true),
    }
}

fn source_topics(c: &Config) -> BTreeSet<&str> {
    c.sources.iter().map(|s| s.topic.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigDuration, RetryTiersConfig, ValidationMode};

    fn base() -> Config {
        let text = r#"
[kafka]
brokers = "127.0.0.1:9092"
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
[[targets]]
name = "crm"
kind = "webhook"
url = "https://crm.example.com/hooks"
[[routes]]
name = "all"
targets = ["crm"]
"#;
        crate::config::load_str(text, Vec::new()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn routes_targets_and_source_settings_reload() {
        let old = base();
        let mut new = base();
        new.targets[0].url = "https://other.example.com".into();
        new.routes.clear();
        new.default_targets = vec!["crm".into()];
        new.sources[0].validation = ValidationMode::Lenient;
        new.sources.reverse(); // the same topics in another order
        new.pipeline.max_message_bytes /= 2;
        assert_eq!(restart_needed(&old, &new), Vec::<&str>::new());
    }

    #[test]
    fn each_start_only_key_is_named() {
        let old = base();
        let mut new = base();
        new.kafka.brokers = "other:9092".into();
        new.kafka.group_id = "g2".into();
        new.kafka
            .options
            .insert("security.protocol".into(), "ssl".into());
        new.sources[1].topic = "acemate-v2".into();
        new.results.topic = "results-2".into();
        new.dead_letter.topic = "dlq-2".into();
        new.server.listen = "0.0.0.0:1".into();
        new.server.tap = true;
        new.pipeline.max_in_flight_events += 1;
        new.log.level = "debug".into();
        assert_eq!(
            restart_needed(&old, &new),
            vec![
                "kafka.brokers",
                "kafka.group_id",
                "kafka.options",
                "sources[].topic",
                "results.topic",
                "dead_letter.topic",
                // Named after the group without a [retry_tiers] section.
                "retry_tiers.delays",
                "retry_tiers.failed_topic",
                "retry_tiers.group_id",
                "pipeline.max_in_flight_events",
                "server.listen",
                "server.tap",
                "log.level",
            ]
        );
    }

    #[test]
    fn retry_tiers_topics_and_group() {
        let tiers = RetryTiersConfig {
            topic_prefix: Some("r".into()),
            delays: vec![ConfigDuration::from_secs(60)],
            failed_topic: Some("failed".into()),
            ..Default::default()
        };
        let mut old = base();
        old.retry_tiers = Some(tiers.clone());
        let mut new = old.clone();
        assert!(restart_needed(&old, &new).is_empty());
        new.retry_tiers.as_mut().unwrap().enabled = false;
        assert_eq!(restart_needed(&old, &new), vec!["retry_tiers.enabled"]);
        let mut changed = tiers;
        changed.delays.push(ConfigDuration::from_secs(300));
        changed.group_id = Some("tiers".into());
        new.retry_tiers = Some(changed);
        assert_eq!(
            restart_needed(&old, &new),
            vec!["retry_tiers.delays", "retry_tiers.group_id"]
        );
        // The default tier group follows kafka.group_id.
        let mut regrouped = old.clone();
        regrouped.kafka.group_id = "g2".into();
        assert_eq!(
            restart_needed(&old, &regrouped),
            vec!["kafka.group_id", "retry_tiers.group_id"]
        );
    }
}
