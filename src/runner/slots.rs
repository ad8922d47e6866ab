//! The run's job slots: `jobs` numbered places for work, shared by everything that runs tests at the same
//! time (batches, read-only groups, tests alone). A test alone holds one; a process running k tests
//! together holds at most k, so a short batch never leaves a job idle while other work waits. The
//! numbers name the timeline's lanes (`test_started`'s slot).
//!
//! Slots are handed out first come, first served, so work asked for in the schedule's order starts in that
//! order. A request for several takes what is free once at least one is (never waiting for more): a job
//! never sits idle while work waits, at the price of a batch that came when one slot was free running on
//! that one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The run's job slots.
#[derive(Debug, Clone)]
pub(crate) struct JobSlots {
    permits: Arc<Semaphore>,
    free: Arc<Mutex<BTreeSet<usize>>>,
}

/// Slots taken from [`JobSlots`], lowest numbers first; given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    numbers: Vec<usize>,
    _permit: OwnedSemaphorePermit,
    free: Arc<Mutex<BTreeSet<usize>>>,
}

impl JobSlots {
    pub(crate) fn new(jobs: usize) -> Self {
        let jobs = jobs.max(1);
        JobSlots {
            permits: Arc::new(Semaphore::new(jobs)),
            free: Arc::new(Mutex::new((0..jobs).collect())),
        }
    }

    /// Waits for a free slot (after the requests before this one), then takes up to `up_to` of the free
    /// ones, at least one.
    pub(crate) async fn take(&self, up_to: usize) -> Held {
        let mut permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            // The semaphore is never closed.
            .unwrap_or_else(|_| unreachable!("job slots are never closed"));
        for _ in 1..up_to {
            match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(more) => permit.merge(more),
                Err(_) => break,
            }
        }
        let count = permit.num_permits();
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let numbers = (0..count).filter_map(|_| free.pop_first()).collect();
        Held {
            numbers,
            _permit: permit,
            free: Arc::clone(&self.free),
        }
    }
}

impl Held {
    /// The slot numbers held, lowest first: one libtest thread each in a process running several tests.
    pub(crate) fn numbers(&self) -> &[usize] {
        &self.numbers
    }

    /// The lowest slot held: where a single test of this work (a retry after a batch) is shown.
    pub(crate) fn first(&self) -> usize {
        self.numbers.first().copied().unwrap_or_default()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // The numbers go back before the permits (dropped after this), so whoever gets a permit finds one.
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        free.extend(self.numbers.drain(..));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn takes_the_lowest_free_slots_and_never_more_than_asked() {
        runtime().block_on(async {
            let slots = JobSlots::new(4);
            let one = slots.take(1).await;
            let two = slots.take(2).await;
            assert_eq!(one.numbers(), [0]);
            assert_eq!(two.numbers(), [1, 2]);
            drop(one);
            let rest = slots.take(8).await;
            assert_eq!(rest.numbers(), [0, 3], "what is free, up to what was asked");
        });
    }

    #[test]
    fn a_request_for_several_starts_on_one_rather_than_wait() {
        runtime().block_on(async {
            let slots = JobSlots::new(2);
            let busy = slots.take(1).await;
            let batch = slots.take(2).await;
            assert_eq!(batch.numbers(), [1], "the free slot, now");
            drop(busy);
            assert_eq!(slots.take(2).await.numbers(), [0]);
        });
    }

    #[test]
    fn waits_for_a_slot_and_serves_requests_in_order() {
        runtime().block_on(async {
            let slots = JobSlots::new(1);
            let held = slots.take(1).await;
            let (first, second) = (slots.clone(), slots.clone());
            let order = Arc::new(Mutex::new(Vec::new()));
            let (o1, o2) = (Arc::clone(&order), Arc::clone(&order));
            let a = tokio::spawn(async move {
                let slot = first.take(1).await;
                o1.lock().unwrap().push(("first", slot.numbers().to_vec()));
            });
            tokio::task::yield_now().await;
            let b = tokio::spawn(async move {
                let slot = second.take(1).await;
                o2.lock().unwrap().push(("second", slot.numbers().to_vec()));
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(order.lock().unwrap().is_empty(), "nothing free yet");
            drop(held);
            a.await.unwrap();
            b.await.unwrap();
            let order = order.lock().unwrap().clone();
            assert_eq!(order, [("first", vec![0]), ("second", vec![0])]);
        });
    }
}
