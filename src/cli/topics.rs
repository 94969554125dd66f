//! `event-relay topics`: the config's topics on the broker, one aligned line each, and with
//! `--create` the missing ones created (the work itself is in [`crate::topics`]).

use crate::config;
use crate::topics::{self, Admin, TopicState, TopicsError};
use std::path::Path;
use std::process::ExitCode;

/// `topics --help`: what the exit status says.
pub const TOPICS_HELP: &str = "\
Output: one line per topic: name, role (source, results, dead-letter, retry-tier, failed),
exists or missing,
partitions.

Exit status: 0 every topic exists (after --create), 1 some are missing, 2 invalid config,
3 the brokers cannot be reached.";

/// `topics`: 0 all exist, 1 some missing, 2 invalid config, 3 brokers unreachable.
pub fn topics(path: &Path, create: bool, partitions: i32) -> ExitCode {
    let cfg = match super::check::load_checked(path) {
        Ok(c) => c,
        Err(e) => {
            // As `check` words it.
            eprintln!("{}: {} problem(s)", path.display(), e.problems.len());
            for p in &e.problems {
                eprintln!("{p}");
            }
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(inspect_or_create(&cfg, create, partitions)) {
        Ok(states) => {
            print!("{}", topics::render(&states));
            if states.iter().all(TopicState::exists) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("event-relay topics: {e}");
            ExitCode::from(3)
        }
    }
}

/// Every needed topic's state, after creating the missing ones when `create` is set. A topic
/// the broker refuses to create is reported and stays missing.
async fn inspect_or_create(
    cfg: &config::Config,
    create: bool,
    partitions: i32,
) -> Result<Vec<TopicState>, TopicsError> {
    let admin = Admin::new(&cfg.kafka, topics::BROKER_TIMEOUT)?;
    let needed = topics::needed(cfg);
    let states = admin.inspect(&needed)?;
    let missing: Vec<_> = states
        .iter()
        .filter(|s| !s.exists())
        .map(|s| s.topic.clone())
        .collect();
    if !create || missing.is_empty() {
        return Ok(states);
    }
    for t in &missing {
        let n = t.role.partitions(partitions);
        let plural = if n == 1 { "" } else { "s" };
        eprintln!("creating {} ({}, {n} partition{plural})", t.name, t.role);
    }
    match admin
        .create(&missing, partitions, topics::BROKER_REPLICATION)
        .await
    {
        Err(e @ TopicsError::Unreachable { .. }) => return Err(e),
        // Refused topics stay missing: reported here, then in the table.
        Err(e) => eprintln!("event-relay topics: {e}"),
        Ok(()) => {}
    }
    admin.inspect(&needed)
}
