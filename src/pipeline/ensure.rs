//! At start, the retry tier and failed topics exist: the relay creates the missing ones
//! (`retry_tiers.create_topics`, on by default, as Kafka Streams creates its internal topics),
//! or refuses to start naming each and the ways out. Parking on a topic that does not exist
//! would hold every failing delivery in memory instead.

use super::admin::{Admin, NeededTopic, Role, TopicState, TopicsError};
use super::admin::{BROKER_REPLICATION, BROKER_TIMEOUT};
use crate::config::{Config, Tiering};

/// Why the relay cannot start with its retry tiers.
#[derive(Debug, thiserror::Error)]
pub enum RetryTopicsError {
    /// Topics are missing and `retry_tiers.create_topics = false`.
    #[error("missing retry tier topic(s) on the broker: {}; create them with `event-relay topics --config <this config> --create`, let the relay create them (retry_tiers.create_topics = true), or {OFF}", .0.join(", "))]
    Missing(Vec<String>),
    /// The broker refused to create some (ACLs, a creation policy), each with its reason.
    #[error("the broker refused to create the retry tier topic(s) {}; create them with `event-relay topics --config <this config> --create` run with the rights to, or {OFF}", refused(.0))]
    Refused(Vec<(String, String)>),
    /// The topics could not be looked at or created (the request itself failed).
    #[error("checking or creating the retry tier topics: {0}; create them with `event-relay topics --config <this config> --create`, or {OFF}")]
    Create(#[source] TopicsError),
}

/// The other way out of a topic problem.
const OFF: &str = "run without retry tiers (retry_tiers.enabled = false: retries in memory only)";

fn refused(list: &[(String, String)]) -> String {
    let each: Vec<String> = list.iter().map(|(t, why)| format!("{t} ({why})")).collect();
    each.join(", ")
}

/// Makes sure the tier and failed topics of `config` exist (see the module doc); returns the
/// topics it created. A broker it cannot reach yet is no reason to refuse: the relay waits
/// for it like for the source topics, and the topics are checked (and created) in the
/// background as soon as it answers.
pub async fn ensure(config: &Config) -> Result<Vec<String>, RetryTopicsError> {
    let Some(tiering) = config.tiering() else {
        tracing::warn!(
            "retry tiers are off (retry_tiers.enabled = false): failed deliveries are retried in \
             memory only, so a target that stays down can hold the whole in-flight bound \
             (pipeline.max_in_flight_events) and stop every other target"
        );
        return Ok(Vec::new());
    };
    for (target, kept) in config.shortened_schedules() {
        if kept.is_empty() {
            tracing::warn!(target_name = %target, "retry tiers: this target's retry budget (retry.max_elapsed, retry.max_attempts) fits none of the default tiers: its failed deliveries are retried in memory only and can hold its share of the in-flight bound");
        } else {
            tracing::info!(target_name = %target, tiers = ?kept, "retry tiers: this target's retry budget (retry.max_elapsed, retry.max_attempts) fits only these default tiers");
        }
    }
    match once(config, &tiering).await {
        Err(Once::Unreachable(reason)) => {
            // The outage's one line says it; the topics are seen to once the brokers answer.
            crate::outage::of(&config.kafka.brokers).down(&reason);
            tracing::info!("retry tier topics: checked once the brokers answer");
            let config = config.clone();
            tokio::spawn(async move { later(&config, &tiering).await });
            Ok(Vec::new())
        }
        Err(Once::Failed(e)) => Err(e),
        Ok(created) => Ok(created),
    }
}

/// Why one look at the topics did not settle them.
enum Once {
    /// No broker answered: try again later.
    Unreachable(String),
    /// The topics are missing and cannot be created.
    Failed(RetryTopicsError),
}

/// [`once`] every [`BROKER_TIMEOUT`] until a broker answers; a refusal then is logged as an
/// error (the relay runs on: parking retries until the topics exist).
async fn later(config: &Config, tiering: &Tiering) {
    loop {
        tokio::time::sleep(BROKER_TIMEOUT).await;
        match once(config, tiering).await {
            Err(Once::Unreachable(_)) => continue,
            Err(Once::Failed(e)) => {
                tracing::error!(error = %e, "retry tier topics missing: parking will wait for them");
                return;
            }
            Ok(_) => return,
        }
    }
}

/// One look at the tier and failed topics, creating the missing ones when allowed.
async fn once(config: &Config, tiering: &Tiering) -> Result<Vec<String>, Once> {
    let wanted = wanted(tiering);
    let kafka = config.kafka.clone();
    let look = move || -> Result<_, TopicsError> {
        let admin = Admin::new(&kafka, BROKER_TIMEOUT)?;
        let states = admin.inspect(&wanted)?;
        let counts = admin.partition_counts()?;
        Ok((admin, states, counts))
    };
    let (admin, states, counts) = match tokio::task::spawn_blocking(look).await {
        Ok(Ok(found)) => found,
        Ok(Err(e @ TopicsError::Unreachable { .. })) => {
            return Err(Once::Unreachable(e.to_string()))
        }
        Ok(Err(e)) => return Err(Once::Failed(RetryTopicsError::Create(e))),
        Err(e) => return Err(Once::Unreachable(e.to_string())),
    };
    let missing: Vec<NeededTopic> = states
        .into_iter()
        .filter(|s| !s.exists())
        .map(|s: TopicState| s.topic)
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = missing.iter().map(|t| t.name.clone()).collect();
    if !tiering.create_topics {
        return Err(Once::Failed(RetryTopicsError::Missing(names)));
    }
    let partitions = tiering.partitions.unwrap_or_else(|| {
        let of_source = |name: &str| counts.iter().find(|(t, _)| t == name).map(|(_, n)| *n);
        let largest = config
            .sources
            .iter()
            .filter_map(|s| of_source(&s.topic))
            .max();
        largest.map_or(1, |n| i32::try_from(n).unwrap_or(i32::MAX))
    });
    let replication = tiering.replication_factor.unwrap_or(BROKER_REPLICATION);
    match admin.create(&missing, partitions, replication).await {
        Ok(()) => {}
        Err(TopicsError::Refused(list)) => {
            let list = list.into_iter().map(|(t, c)| (t, c.to_string())).collect();
            return Err(Once::Failed(RetryTopicsError::Refused(list)));
        }
        Err(e) => return Err(Once::Failed(RetryTopicsError::Create(e))),
    }
    for t in &missing {
        let partitions = t.role.partitions(partitions);
        tracing::info!(topic = %t.name, role = %t.role, partitions, "created a retry tier topic");
    }
    Ok(names)
}

/// The tier topics and the failed topic.
fn wanted(tiering: &Tiering) -> Vec<NeededTopic> {
    let tiers = tiering.tiers.iter().map(|t| NeededTopic {
        name: t.topic.clone(),
        role: Role::RetryTier,
    });
    let failed = NeededTopic {
        name: tiering.failed_topic.clone(),
        role: Role::Failed,
    };
    tiers.chain([failed]).collect()
}
