//! Completion bookkeeping, neutral ground between the consumer, the targets and the reporter:
//! which consumed offsets are final, and how far each partition may commit.
//!
//! It imports no other stage: `source` registers and commits offsets here, `deliver` and
//! `report` finish [`Ticket`]s here, and none of them needs to know about the others.
//!
//! Every consumed message is registered as pending; when its fate is final for every target it
//! is removed. The committable position of a partition is the lowest pending offset (or one past
//! the highest consumed offset when nothing is pending): the highest *contiguous* finished
//! offset + 1. A slow event therefore holds back the commit, never the deliveries behind it.
//! Each assignment of a partition gets a new generation, so completions that arrive after a
//! revoke are ignored instead of corrupting the new owner's bookkeeping.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// A topic-partition.
pub type Tp = (String, i32);

#[derive(Debug, Default)]
struct PartitionState {
    generation: u64,
    pending: BTreeSet<i64>,
    /// One past the highest offset consumed in this generation.
    next: Option<i64>,
    /// Last position handed out for committing.
    committed: Option<i64>,
}

impl PartitionState {
    fn position(&self) -> Option<i64> {
        self.pending.first().copied().or(self.next)
    }
}

/// Per-partition pending offsets of one consumer.
#[derive(Debug)]
pub struct OffsetTracker {
    parts: Mutex<HashMap<Tp, PartitionState>>,
    /// Signalled whenever a partition has nothing pending (see [`OffsetTracker::wait_idle`]).
    idle: Condvar,
    /// The message the consume loop holds while it waits for in-flight permits: begun, but not
    /// handed to any target yet, so nothing can finish it while the loop is inside a rebalance.
    held: Mutex<Option<(Tp, i64)>>,
    /// Threads in [`OffsetTracker::wait_idle`]; finishing an offset signals `idle` only then,
    /// so the hot path pays no wake-up call.
    waiters: AtomicUsize,
    generations: AtomicUsize,
    /// Signalled when a partition has nothing left in flight: the commit loop then commits
    /// early if reading has gone quiet (a burst's last offsets, a quiet topic's last event).
    pub drained: tokio::sync::Notify,
    /// When the last message was consumed (milliseconds since `started`).
    last_begin_ms: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

impl OffsetTracker {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            parts: Mutex::default(),
            idle: Condvar::new(),
            held: Mutex::new(None),
            waiters: AtomicUsize::new(0),
            generations: AtomicUsize::default(),
            drained: tokio::sync::Notify::new(),
            last_begin_ms: std::sync::atomic::AtomicU64::new(0),
            started: std::time::Instant::now(),
        })
    }

    /// How long since the last message was consumed.
    pub fn reading_idle_for(&self) -> std::time::Duration {
        let last = self.last_begin_ms.load(Ordering::Relaxed);
        let now = self.started.elapsed().as_millis() as u64;
        std::time::Duration::from_millis(now.saturating_sub(last))
    }

    /// The bookkeeping lock. It is taken inside librdkafka's rebalance callbacks, where a panic
    /// must not cascade: a poisoned lock (a panic elsewhere while holding it) is used as is, the
    /// state being a set of offsets that every method leaves consistent.
    fn parts(&self) -> MutexGuard<'_, HashMap<Tp, PartitionState>> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn held(&self) -> MutexGuard<'_, Option<(Tp, i64)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The consume loop holds this (begun) message while it waits for permits, or `None`.
    pub fn set_held(&self, message: Option<(Tp, i64)>) {
        *self.held() = message;
    }

    /// The current generation of `tp`, `None` while it is not assigned here.
    pub fn generation(&self, tp: &Tp) -> Option<u64> {
        self.parts().get(tp).map(|st| st.generation)
    }

    /// Whether `generation` is still the current assignment of `tp` (a message prepared before
    /// a revoke belongs to the partition's next owner).
    pub fn is_current(&self, tp: &Tp, generation: u64) -> bool {
        self.parts()
            .get(tp)
            .is_some_and(|st| st.generation == generation)
    }

    /// Blocks until no offset of `tps` is pending (the held message aside: nothing can finish it
    /// before the wait ends) or `timeout` passes; returns how many are still pending.
    pub fn wait_idle(&self, tps: &[Tp], timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut parts = self.parts();
        let left = loop {
            let held = self.held().clone();
            let left: usize = tps
                .iter()
                .filter_map(|tp| parts.get(tp).map(|st| (tp, st)))
                .map(|(tp, st)| {
                    let skip = held
                        .as_ref()
                        .is_some_and(|(htp, off)| htp == tp && st.pending.contains(off));
                    st.pending.len() - usize::from(skip)
                })
                .sum();
            let now = Instant::now();
            if left == 0 || now >= deadline {
                break left;
            }
            parts = self
                .idle
                .wait_timeout(parts, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        left
    }

    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) as u64 + 1
    }

    /// A partition was assigned: start a fresh generation.
    pub fn assign(&self, tp: Tp) {
        let generation = self.next_generation();
        self.parts().insert(
            tp,
            PartitionState {
                generation,
                ..Default::default()
            },
        );
    }

    /// A partition was revoked: returns its final committable position (if it advanced) and
    /// forgets it; late completions of its events are ignored.
    pub fn revoke(&self, tp: &Tp) -> Option<i64> {
        let state = self.parts().remove(tp)?;
        let pos = state.position()?;
        (Some(pos) != state.committed).then_some(pos)
    }

    /// Registers a consumed offset as pending; returns its generation, or `None` when the
    /// partition is not (or no longer) assigned to us — such a message belongs to another
    /// group member and must not be processed or committed here.
    pub fn begin(&self, tp: &Tp, offset: i64) -> Option<u64> {
        self.last_begin_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let mut parts = self.parts();
        let st = parts.get_mut(tp)?;
        st.pending.insert(offset);
        st.next = Some(st.next.map_or(offset + 1, |n| n.max(offset + 1)));
        Some(st.generation)
    }

    /// Marks an offset final.
    pub fn finish(&self, tp: &Tp, generation: u64, offset: i64) {
        let mut parts = self.parts();
        if let Some(st) = parts.get_mut(tp) {
            if st.generation == generation {
                st.pending.remove(&offset);
                if st.pending.is_empty() {
                    self.drained.notify_one();
                }
                if self.waiters.load(Ordering::SeqCst) > 0 {
                    self.idle.notify_all();
                }
            }
        }
    }

    /// Positions that advanced since the last call (marked as handed out).
    pub fn take_commits(&self) -> Vec<(Tp, i64)> {
        let mut parts = self.parts();
        let mut out = Vec::new();
        for (tp, st) in parts.iter_mut() {
            if let Some(pos) = st.position() {
                if st.committed.is_none_or(|c| pos > c) {
                    st.committed = Some(pos);
                    out.push((tp.clone(), pos));
                }
            }
        }
        out
    }

    /// Undo of [`take_commits`] for positions whose commit failed, so they are retried.
    pub fn commit_failed(&self, tp: &Tp, pos: i64) {
        let mut parts = self.parts();
        if let Some(st) = parts.get_mut(tp) {
            if st.committed == Some(pos) {
                st.committed = None;
            }
        }
    }

    /// Number of pending (not final) offsets over all partitions.
    pub fn pending(&self) -> usize {
        self.parts().values().map(|s| s.pending.len()).sum()
    }
}

/// The in-flight permits a message holds until its ticket drops: its events and, for a message
/// from the source, its bytes (`pipeline::bound`); none for tickets outside any bound.
#[derive(Default)]
pub struct Permits {
    _events: Option<OwnedSemaphorePermit>,
    _bytes: Option<OwnedSemaphorePermit>,
}

impl Permits {
    pub fn new(events: OwnedSemaphorePermit, bytes: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            _events: Some(events),
            _bytes: bytes,
        }
    }
}

/// The fate of one consumed message: final once every piece of work on it has finished.
/// Holds the in-flight permits, released when the ticket is dropped.
pub struct Ticket {
    remaining: AtomicUsize,
    tp: Tp,
    generation: u64,
    offset: i64,
    tracker: Arc<OffsetTracker>,
    _permits: Permits,
}

impl Ticket {
    pub fn new(
        tracker: Arc<OffsetTracker>,
        tp: Tp,
        offset: i64,
        generation: u64,
        work: usize,
        permits: Permits,
    ) -> Arc<Self> {
        let t = Arc::new(Self {
            remaining: AtomicUsize::new(work),
            tp,
            generation,
            offset,
            tracker,
            _permits: permits,
        });
        if work == 0 {
            t.tracker.finish(&t.tp, t.generation, t.offset);
        }
        t
    }

    /// One piece of work (a delivery, a dead letter) reached its final state.
    pub fn finish_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.tracker.finish(&self.tp, self.generation, self.offset);
        }
    }

    pub fn offset(&self) -> i64 {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> Tp {
        ("t".into(), 0)
    }

    #[test]
    fn commits_highest_contiguous_finished() {
        let tr = OffsetTracker::new();
        tr.assign(tp());
        let g = tr.begin(&tp(), 10).unwrap();
        tr.begin(&tp(), 11);
        tr.begin(&tp(), 12);
        tr.finish(&tp(), g, 11);
        tr.finish(&tp(), g, 12);
        assert_eq!(tr.take_commits(), vec![(tp(), 10)]);
        assert_eq!(tr.take_commits(), vec![]);
        tr.finish(&tp(), g, 10);
        assert_eq!(tr.take_commits(), vec![(tp(), 13)]);
    }

    #[test]
    fn stale_generation_is_ignored_after_revoke() {
        let tr = OffsetTracker::new();
        tr.assign(tp());
        let g = tr.begin(&tp(), 5).unwrap();
        assert_eq!(tr.revoke(&tp()), Some(5));
        assert_eq!(
            tr.begin(&tp(), 6),
            None,
            "not assigned: not ours to process"
        );
        tr.assign(tp());
        let g2 = tr.begin(&tp(), 5).unwrap();
        assert_ne!(g, g2);
        tr.finish(&tp(), g, 5);
        assert_eq!(tr.pending(), 1);
    }

    #[test]
    fn wait_idle_returns_once_the_partition_drains_and_ignores_the_held_message() {
        let tr = OffsetTracker::new();
        tr.assign(tp());
        let g = tr.begin(&tp(), 0).unwrap();
        tr.begin(&tp(), 1).unwrap();
        tr.set_held(Some((tp(), 1)));
        let finisher = {
            let tr = tr.clone();
            std::thread::spawn(move || tr.finish(&tp(), g, 0))
        };
        // Generous timeout: the wait ends as soon as offset 0 finishes, not at the timeout.
        assert_eq!(tr.wait_idle(&[tp()], Duration::from_secs(600)), 0);
        finisher.join().unwrap();
        tr.set_held(None);
        assert_eq!(
            tr.wait_idle(&[tp()], Duration::ZERO),
            1,
            "offset 1 is pending"
        );
        assert_eq!(
            tr.revoke(&tp()),
            Some(1),
            "the held message is the next owner's"
        );
    }

    #[test]
    fn ticket_finishes_after_all_work() {
        let tr = OffsetTracker::new();
        tr.assign(tp());
        let g = tr.begin(&tp(), 0).unwrap();
        let t = Ticket::new(tr.clone(), tp(), 0, g, 2, Permits::default());
        t.finish_one();
        assert_eq!(tr.pending(), 1);
        t.finish_one();
        assert_eq!(tr.pending(), 0);
        assert_eq!(tr.take_commits(), vec![(tp(), 1)]);
        let g = tr.begin(&tp(), 1).unwrap();
        let _t = Ticket::new(tr.clone(), tp(), 1, g, 0, Permits::default());
        assert_eq!(tr.pending(), 0);
    }
}
