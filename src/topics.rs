//! `event-relay topics`: the Kafka topics a config needs ([`needed`]), whether each exists on
//! the broker and with how many partitions ([`Admin::inspect`]), and creating the missing ones
//! ([`Admin::create`]): the operator's tool for setting them up, with more rights than the
//! relay may have (the relay creates its retry tier and failed topics itself at start, unless
//! `retry_tiers.create_topics = false`).

use crate::config::Config;
pub use crate::pipeline::admin::{
    Admin, NeededTopic, Role, TopicState, TopicsError, BROKER_REPLICATION, BROKER_TIMEOUT,
};

/// Every topic `config` needs, in config order (sources, results, dead letters, retry tiers,
/// failed), each name once (the first role wins when two keys name the same topic). Topics of new config
/// sections are added here, and only here.
pub fn needed(config: &Config) -> Vec<NeededTopic> {
    let sources = config.sources.iter().map(|s| (&s.topic, Role::Source));
    let outputs = [
        (&config.results.topic, Role::Results),
        (&config.dead_letter.topic, Role::DeadLetter),
    ];
    let tiering = config.tiering();
    let tier_topics: Vec<String> = tiering
        .iter()
        .flat_map(|t| t.tiers.iter().map(|t| t.topic.clone()))
        .collect();
    let retry = tier_topics
        .iter()
        .map(|t| (t, Role::RetryTier))
        .chain(tiering.as_ref().map(|t| (&t.failed_topic, Role::Failed)));
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
        [retry_tiers]
        enabled = false
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
    fn without_a_section_the_default_tiers_are_needed_under_the_group_name() {
        let text = CONFIG.replace("[retry_tiers]\n        enabled = false", "");
        let got: Vec<String> = needed(&config(&text))
            .into_iter()
            .skip(4)
            .map(|t| t.name)
            .collect();
        let want = [
            "event-relay.retry.1m",
            "event-relay.retry.5m",
            "event-relay.retry.30m",
            "event-relay.retry.2h",
            "event-relay.retry.6h",
            "event-relay.failed",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn retry_tiers_add_a_topic_per_delay_and_the_failed_topic() {
        let mut cfg = config(CONFIG);
        cfg.retry_tiers = Some(crate::config::RetryTiersConfig {
            topic_prefix: Some("relay.retry".into()),
            delays: vec![
                crate::config::ConfigDuration::from_secs(1),
                crate::config::ConfigDuration::from_secs(120),
            ],
            failed_topic: Some("relay.failed".into()),
            ..Default::default()
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
