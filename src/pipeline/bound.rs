//! The in-flight bound of the source: how many consumed-but-not-final events
//! (`pipeline.max_in_flight_events`) and how many of their messages' bytes
//! (`pipeline.max_in_flight_bytes`) the relay holds at once. Memory follows both: small events
//! meet the event bound first, large ones the byte bound (2,000 events of 1 MiB would be 2 GiB).
//!
//! A message takes one event permit per event it holds and one byte permit per started KiB of
//! its payload, each at least one and at most the whole bound (so a message larger than the
//! bound is admitted alone instead of never). Its [`Permits`] are released when its ticket
//! drops, i.e. when its fate is final for every target.

use crate::ack::Permits;
use std::sync::Arc;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The byte bound counts in KiB (a semaphore's permits are `u32`).
const KIB: usize = 1024;

/// What one message costs against the bound: (events, KiB).
pub type Cost = (u32, u32);

/// The two semaphores of the bound.
pub struct Bound {
    events: Arc<Semaphore>,
    kib: Arc<Semaphore>,
    max_events: usize,
    max_kib: usize,
}

impl Bound {
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        let max_events = max_events.max(1);
        let max_kib = max_bytes.div_ceil(KIB).max(1);
        Self {
            events: Arc::new(Semaphore::new(max_events)),
            kib: Arc::new(Semaphore::new(max_kib)),
            max_events,
            max_kib,
        }
    }

    /// The cost of a message of `events` events and `bytes` payload bytes (see the module doc).
    pub fn cost(&self, events: usize, bytes: usize) -> Cost {
        let clamp = |n: usize, max: usize| u32::try_from(n.clamp(1, max)).unwrap_or(u32::MAX);
        (
            clamp(events, self.max_events),
            clamp(bytes.div_ceil(KIB), self.max_kib),
        )
    }

    /// Both permits at once, or `None` (and nothing held) when either is short.
    pub fn try_hold(&self, (events, kib): Cost) -> Option<Permits> {
        let e = self.events.clone().try_acquire_many_owned(events).ok()?;
        let k = self.kib.clone().try_acquire_many_owned(kib).ok()?;
        Some(Permits::new(e, Some(k)))
    }

    /// Waits for both permits (events first). Dropping the future releases what it took.
    pub async fn hold(&self, (events, kib): Cost) -> Permits {
        let closed = "the in-flight semaphores are never closed";
        let e = self.events.clone().acquire_many_owned(events).await;
        let k = self.kib.clone().acquire_many_owned(kib).await;
        Permits::new(e.expect(closed), Some(k.expect(closed)))
    }

    /// Waits until nothing is held (every message final), holding the whole bound.
    pub async fn all(&self) -> (SemaphorePermit<'_>, SemaphorePermit<'_>) {
        let closed = "the in-flight semaphores are never closed";
        let all = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let e = self.events.acquire_many(all(self.max_events)).await;
        let k = self.kib.acquire_many(all(self.max_kib)).await;
        (e.expect(closed), k.expect(closed))
    }

    /// Events consumed and not yet final.
    pub fn events_in_flight(&self) -> usize {
        self.max_events - self.events.available_permits()
    }

    /// Payload bytes of the messages in flight (in whole KiB per message).
    pub fn bytes_in_flight(&self) -> usize {
        (self.max_kib - self.kib.available_permits()) * KIB
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_costs_its_events_and_started_kib_within_the_bound() {
        let b = Bound::new(10, 8 * KIB);
        assert_eq!(b.cost(0, 0), (1, 1), "at least one of each");
        assert_eq!(b.cost(3, 1), (3, 1));
        assert_eq!(b.cost(3, KIB + 1), (3, 2));
        // Larger than the bound: the whole bound, so it is admitted alone rather than never.
        assert_eq!(b.cost(50, 100 * KIB), (10, 8));
    }

    #[test]
    fn the_byte_bound_holds_even_with_events_to_spare() {
        let b = Bound::new(100, 4 * KIB);
        let first = b.try_hold(b.cost(1, 3 * KIB)).expect("room");
        assert_eq!((b.events_in_flight(), b.bytes_in_flight()), (1, 3 * KIB));
        assert!(
            b.try_hold(b.cost(1, 2 * KIB)).is_none(),
            "2 KiB more exceed 4 KiB"
        );
        assert_eq!(
            (b.events_in_flight(), b.bytes_in_flight()),
            (1, 3 * KIB),
            "a refused try holds nothing"
        );
        drop(first);
        assert_eq!((b.events_in_flight(), b.bytes_in_flight()), (0, 0));
        let big = b
            .try_hold(b.cost(1, 1 << 20))
            .expect("alone, a huge message fits");
        assert!(b.try_hold(b.cost(1, 1)).is_none());
        drop(big);
    }

    #[tokio::test]
    async fn hold_waits_for_bytes_and_all_waits_for_everything() {
        let b = Arc::new(Bound::new(100, 2 * KIB));
        let first = b.hold(b.cost(1, 2 * KIB)).await;
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.hold(b.cost(1, 1)).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "no byte permit is free");
        drop(first);
        let second = waiter.await.expect("joined");
        assert_eq!(b.events_in_flight(), 1);
        drop(second);
        let (e, k) = b.all().await;
        assert_eq!((e.num_permits(), k.num_permits()), (100, 2));
    }
}
