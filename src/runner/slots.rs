//! The run's job slots: `jobs` numbered places for work, shared by everything that runs tests at the same
//! time (batches, read-only groups, tests alone). A test alone holds one; a process running k tests
//! together holds at most k, so a short batch never leaves a job idle while other work waits. The
//! numbers name the timeline's lanes (`test_started`'s slot).
//!
//! Slots are handed out first come, first served, so work asked for in the schedule's order starts in that
//! order. A request for several takes what is free once at least one is (never waiting for more): a job
//! never sits idle while work waits, at the price of a batch that came when one slot was free running on
//! that one.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// The run's job slots.
#[derive(Debug, Clone)]
pub(crate) struct JobSlots(Arc<Mutex<Pool>>);

#[derive(Debug)]
struct Pool {
    free: BTreeSet<usize>,
    /// Requests waiting for a free slot, first come first served: how many each wants, and where to send
    /// what it gets.
    waiting: VecDeque<(usize, oneshot::Sender<Held>)>,
}

/// Slots taken from [`JobSlots`], lowest numbers first; given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    numbers: Vec<usize>,
    slots: JobSlots,
}

impl JobSlots {
    pub(crate) fn new(jobs: usize) -> Self {
        JobSlots(Arc::new(Mutex::new(Pool {
            free: (0..jobs.max(1)).collect(),
            waiting: VecDeque::new(),
        })))
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a free slot (after the requests before this one), then takes up to `up_to` of the free
    /// ones, at least one. A request at the head of the queue takes all it wants of the slots given back
    /// at once before the next request gets any, so that two batches that come one after the other do
    /// not split the slots of the one before them.
    pub(crate) async fn take(&self, up_to: usize) -> Held {
        let up_to = up_to.max(1);
        let receiver = {
            let mut pool = self.pool();
            if pool.waiting.is_empty() && !pool.free.is_empty() {
                return self.hand_out(&mut pool, up_to);
            }
            let (sender, receiver) = oneshot::channel();
            pool.waiting.push_back((up_to, sender));
            receiver
        };
        // The sender is dropped only by `give_back`, after sending.
        receiver
            .await
            .unwrap_or_else(|_| unreachable!("a waiting request is always answered"))
    }

    fn hand_out(&self, pool: &mut Pool, up_to: usize) -> Held {
        let numbers = (0..up_to).map_while(|_| pool.free.pop_first()).collect();
        Held {
            numbers,
            slots: self.clone(),
        }
    }

    /// Puts `numbers` back and serves the waiting requests in order while slots are free.
    fn give_back(&self, numbers: Vec<usize>) {
        let mut pool = self.pool();
        pool.free.extend(numbers);
        while !pool.free.is_empty() {
            let Some((up_to, sender)) = pool.waiting.pop_front() else {
                break;
            };
            let held = self.hand_out(&mut pool, up_to);
            // A request given up on (its future dropped) returns what it got, without a second lock.
            if let Err(mut unwanted) = sender.send(held) {
                pool.free.extend(std::mem::take(&mut unwanted.numbers));
            }
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
        let numbers = std::mem::take(&mut self.numbers);
        if !numbers.is_empty() {
            self.slots.give_back(numbers);
        }
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
    fn the_first_waiting_request_takes_all_it_wants_of_what_is_given_back() {
        runtime().block_on(async {
            let slots = JobSlots::new(2);
            let batch = slots.take(2).await;
            let (second, third) = (slots.clone(), slots.clone());
            let next = tokio::spawn(async move { second.take(2).await.numbers().to_vec() });
            tokio::task::yield_now().await;
            let after = tokio::spawn(async move { third.take(1).await.numbers().to_vec() });
            tokio::task::yield_now().await;
            drop(batch);
            assert_eq!(next.await.unwrap(), [0, 1], "both, not one each");
            assert_eq!(after.await.unwrap(), [0], "then the next");
        });
    }

    #[test]
    fn a_request_given_up_on_while_waiting_loses_no_slot() {
        runtime().block_on(async {
            let slots = JobSlots::new(1);
            let held = slots.take(1).await;
            let waiting = slots.take(1);
            let gave_up = tokio::time::timeout(Duration::from_millis(10), waiting).await;
            assert!(gave_up.is_err(), "nothing was free");
            drop(held);
            assert_eq!(slots.take(1).await.numbers(), [0], "the slot came back");
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
