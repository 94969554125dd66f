//! The part of the relay a reload replaces: the normalizer, the per-source settings, the router
//! and the running targets, built from one [`Config`] by [`Live::build`]; and [`LiveCell`], the
//! slot the running relay reads it from.
//!
//! A consumed message takes the current [`Live`] once, when it is prepared, and holds its `Arc`
//! until it is handed to its targets: an event in flight finishes under the rules it started
//! with. The consume loop reads the slot through a [`LiveReader`], which costs one atomic load
//! per message while nothing changes (the lock is taken only after a swap).

use super::StartError;
use crate::config::Config;
use crate::deliver::Targets;
use crate::metrics::Metrics;
use crate::normalize::{Normalizer, SourceSettings};
use crate::report::Reporter;
use crate::route::Router;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The stages one config defines.
pub struct Live {
    pub normalizer: Arc<Normalizer>,
    /// Per source topic.
    pub settings: HashMap<String, SourceSettings>,
    pub router: Router,
    /// The running targets of this config; their queues close when the last message holding
    /// this `Live` lets go of it, and their workers then finish what they hold.
    pub targets: Targets,
    /// The config these stages were built from (what a reload compares against).
    pub config: Arc<Config>,
}

impl Live {
    /// Builds the normalizer, the source settings and the router of `config` and starts its
    /// targets (one worker each, returned). The one place a config becomes running stages: at
    /// start and on every reload.
    pub fn build(
        config: &Config,
        reporter: &Arc<Reporter>,
        metrics: &Arc<Metrics>,
        telemetry: &Arc<crate::telemetry::Telemetry>,
        abort: &CancellationToken,
    ) -> Result<(Self, Vec<JoinHandle<()>>), StartError> {
        let max_bytes = config.pipeline.max_message_bytes;
        let normalizer = Arc::new(Normalizer::from_config(config)?);
        let settings = config
            .sources
            .iter()
            .map(|s| (s.topic.clone(), SourceSettings::from_config(s, max_bytes)))
            .collect();
        let router = Router::new(config)?;
        let (targets, workers) = Targets::start(
            config,
            reporter.clone(),
            metrics.clone(),
            telemetry.clone(),
            abort.clone(),
        )?;
        let live = Self {
            normalizer,
            settings,
            router,
            targets,
            config: Arc::new(config.clone()),
        };
        Ok((live, workers))
    }
}

/// The slot holding the current [`Live`]: swapped by a reload, read once per message.
pub struct LiveCell {
    current: RwLock<Arc<Live>>,
    /// Bumped after every swap, so readers know when to take the lock.
    version: AtomicU64,
}

impl LiveCell {
    pub fn new(live: Live) -> Self {
        Self {
            current: RwLock::new(Arc::new(live)),
            version: AtomicU64::new(0),
        }
    }

    /// The current stages (takes the lock: for occasional readers).
    pub fn load(&self) -> Arc<Live> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `live` in place; returns the stages it replaces.
    pub fn swap(&self, live: Arc<Live>) -> Arc<Live> {
        let old = {
            let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *slot, live)
        };
        self.version.fetch_add(1, Ordering::Release);
        old
    }

    /// A cached reader for a loop that reads the slot per message.
    pub fn reader(&self) -> LiveReader<'_> {
        let version = self.version.load(Ordering::Acquire);
        LiveReader {
            cell: self,
            version,
            live: self.load(),
        }
    }
}

/// A loop's view of a [`LiveCell`]: re-reads the slot only when its version moved.
pub struct LiveReader<'a> {
    cell: &'a LiveCell,
    version: u64,
    live: Arc<Live>,
}

impl LiveReader<'_> {
    /// The current stages: one atomic load unless a swap happened since the last call.
    pub fn current(&mut self) -> &Arc<Live> {
        let version = self.cell.version.load(Ordering::Acquire);
        if version != self.version {
            // Read the version first: a swap in between only makes the next call re-read.
            self.live = self.cell.load();
            self.version = version;
        }
        &self.live
    }
}
