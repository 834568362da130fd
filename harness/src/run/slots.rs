//! How many checks run at once, and which waiting check runs next. A check asks for a
//! slot once the checks it needs passed and its services are ready; when a slot frees, the
//! waiting check with the longest chain of checks still to come after it (through `needs`)
//! takes it, then the one that asked first. With a first-come queue a chain's next link
//! (the pipeline's `register` after `seed`) queued behind every independent check that was
//! ready at the start, and the chain, the run's longest path, ended seconds late.
//!
//! Written here rather than taken from a crate: tokio's semaphore is first-come only, and
//! the priority queues on crates.io are for values, not for waiting tasks.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::spec::Check;

/// Each check's rank: how many checks the longest chain through `needs` that starts with
/// it holds (1 for a check nothing needs). Takes `(id, ids it needs)` in the suites'
/// order: `needs` names a check defined earlier in the same suite, so one pass from the
/// last check back sees every dependent first.
pub fn chain_ranks(
    checks: impl DoubleEndedIterator<Item = (String, Vec<String>)>,
) -> BTreeMap<String, usize> {
    let mut ranks: BTreeMap<String, usize> = BTreeMap::new();
    for (id, needs) in checks.rev() {
        let own = *ranks.entry(id).or_insert(1);
        for need in needs {
            let r = ranks.entry(need).or_insert(1);
            *r = (*r).max(own + 1);
        }
    }
    ranks
}

/// `chain_ranks` of a run's checks.
pub fn ranks_of(checks: &[Arc<Check>]) -> BTreeMap<String, usize> {
    chain_ranks(checks.iter().map(|c| (c.id(), c.needed_ids())))
}

pub struct Slots {
    state: Mutex<State>,
    ranks: BTreeMap<String, usize>,
}

struct State {
    free: usize,
    waiting: BinaryHeap<Waiter>,
    asked: u64,
}

/// Ordered by rank, then by who asked first (the heap pops the greatest).
struct Waiter {
    order: (usize, Reverse<u64>),
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order.cmp(&other.order)
    }
}

/// A running check's slot; dropping it hands the slot on.
pub struct Slot {
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release();
    }
}

/// A slot asked for and not yet taken: if the asking check is cut short (deadline,
/// signal) after the slot was handed to it, the slot goes back.
struct Asking {
    slots: Arc<Slots>,
    wake: Option<oneshot::Receiver<()>>,
}

impl Drop for Asking {
    fn drop(&mut self) {
        if let Some(mut wake) = self.wake.take() {
            wake.close();
            if wake.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

impl Slots {
    /// `count` slots (at least one); `ranks` from `chain_ranks` (a check without one ranks 1).
    pub fn new(count: usize, ranks: BTreeMap<String, usize>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: count.max(1),
                waiting: BinaryHeap::new(),
                asked: 0,
            }),
            ranks,
        })
    }

    /// Waits for a slot for the check `id`.
    pub async fn acquire(self: &Arc<Self>, id: &str) -> Slot {
        let wake = {
            let mut state = self.lock();
            if state.free > 0 {
                state.free -= 1;
                return Slot {
                    slots: self.clone(),
                };
            }
            let (wake, woken) = oneshot::channel();
            let rank = self.ranks.get(id).copied().unwrap_or(1);
            state.asked += 1;
            let order = (rank, Reverse(state.asked));
            state.waiting.push(Waiter { order, wake });
            woken
        };
        let mut asking = Asking {
            slots: self.clone(),
            wake: Some(wake),
        };
        if let Some(wake) = asking.wake.as_mut() {
            // The sender lives in the heap until a release hands it the slot.
            let _ = wake.await;
        }
        asking.wake = None;
        Slot {
            slots: self.clone(),
        }
    }

    /// Hands a freed slot to the best waiter still waiting, or frees it.
    fn release(&self) {
        let mut state = self.lock();
        while let Some(waiter) = state.waiting.pop() {
            if waiter.wake.send(()).is_ok() {
                return;
            }
        }
        state.free += 1;
    }

    /// The state stays consistent under a panic elsewhere: every change is one statement.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::time::Duration;

    #[rstest]
    #[case::a_chain(
        vec![("p", "seed", vec![]), ("p", "load", vec!["seed"]), ("p", "query", vec!["load"])],
        vec![("p::seed", 3), ("p::load", 2), ("p::query", 1)]
    )]
    #[case::a_fork_takes_the_longer_branch(
        vec![("p", "a", vec![]), ("p", "b", vec!["a"]), ("p", "c", vec!["a"]), ("p", "d", vec!["c"])],
        vec![("p::a", 3), ("p::b", 1), ("p::c", 2), ("p::d", 1)]
    )]
    #[case::independent_checks(
        vec![("x", "a", vec![]), ("y", "a", vec![])],
        vec![("x::a", 1), ("y::a", 1)]
    )]
    #[case::same_names_in_two_suites(
        vec![("x", "a", vec![]), ("x", "b", vec!["a"]), ("y", "a", vec![])],
        vec![("x::a", 2), ("x::b", 1), ("y::a", 1)]
    )]
    fn ranks_count_the_longest_chain_after_a_check(
        #[case] checks: Vec<(&str, &str, Vec<&str>)>,
        #[case] want: Vec<(&str, usize)>,
    ) {
        let checks = checks.into_iter().map(|(suite, name, needs)| {
            let needs = needs.iter().map(|n| format!("{suite}::{n}")).collect();
            (format!("{suite}::{name}"), needs)
        });
        let want: BTreeMap<String, usize> = want
            .into_iter()
            .map(|(id, r)| (id.to_string(), r))
            .collect();
        assert_eq!(chain_ranks(checks.collect::<Vec<_>>().into_iter()), want);
    }

    /// Takes a slot for `id` and records when it got it.
    fn ask(
        slots: &Arc<Slots>,
        id: &'static str,
        order: &Arc<Mutex<Vec<&'static str>>>,
    ) -> tokio::task::JoinHandle<Slot> {
        let (slots, order) = (slots.clone(), order.clone());
        tokio::spawn(async move {
            let slot = slots.acquire(id).await;
            order.lock().unwrap().push(id);
            slot
        })
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_longest_chain_then_to_who_asked_first() {
        let ranks = [("low_a", 1), ("low_b", 1), ("chain", 5)]
            .into_iter()
            .map(|(id, r)| (id.to_string(), r))
            .collect();
        let slots = Slots::new(1, ranks);
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = ask(&slots, "first", &order).await.unwrap();
        let low_a = ask(&slots, "low_a", &order);
        settle().await;
        let low_b = ask(&slots, "low_b", &order);
        settle().await;
        let chain = ask(&slots, "chain", &order);
        settle().await;
        assert_eq!(*order.lock().unwrap(), ["first"]);

        drop(first);
        let chain = chain.await.unwrap();
        drop(chain);
        let low_a = low_a.await.unwrap();
        drop(low_a);
        drop(low_b.await.unwrap());
        assert_eq!(*order.lock().unwrap(), ["first", "chain", "low_a", "low_b"]);
    }

    #[tokio::test]
    async fn never_more_running_than_slots() {
        let slots = Slots::new(2, BTreeMap::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let held: Vec<Slot> = vec![
            ask(&slots, "a", &order).await.unwrap(),
            ask(&slots, "b", &order).await.unwrap(),
        ];
        let third = ask(&slots, "c", &order);
        settle().await;
        assert_eq!(order.lock().unwrap().len(), 2);
        drop(held);
        third.await.unwrap();
        assert_eq!(order.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_check_cut_short_while_waiting_gives_its_slot_back() {
        let slots = Slots::new(1, BTreeMap::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = ask(&slots, "held", &order).await.unwrap();
        // Cut short before a slot came, and (the race) after one was handed but not taken.
        let never = tokio::time::timeout(Duration::from_millis(20), slots.acquire("never")).await;
        assert!(never.is_err());
        let handed = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire("handed").await })
        };
        settle().await;
        drop(held);
        handed.abort();
        let _ = handed.await;
        let last = tokio::time::timeout(Duration::from_secs(5), slots.acquire("last")).await;
        assert!(last.is_ok(), "the slot was lost");
    }
}
