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
    /// The creation request itself failed.
    #[error("creating the retry tier topics: {0}")]
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
/// for it like for the source topics, and this check is skipped with a warning.
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
        tracing::info!(target_name = %target, tiers = ?kept, "retry tiers: this target's retry budget (retry.max_elapsed, retry.max_attempts) fits only these default tiers");
    }
    let wanted = wanted(&tiering);
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
            // The outage's one line says it; the topics are checked at the next start.
            crate::outage::of(&config.kafka.brokers).down(&e.to_string());
            tracing::info!("retry tier topics not checked at start: the brokers are unreachable");
            return Ok(Vec::new());
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot check the retry tier topics at start");
            return Ok(Vec::new());
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the retry tier topics at start");
            return Ok(Vec::new());
        }
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
        return Err(RetryTopicsError::Missing(names));
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
            return Err(RetryTopicsError::Refused(list));
        }
        Err(e) => return Err(RetryTopicsError::Create(e)),
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
