//! How many checks run at once, and which waiting check runs next. A check asks for a
//! slot once the checks it needs passed and its services are ready; when a slot frees, the
//! waiting check with the longest chain of checks still to come after it (through `needs`)
//! takes it, then the one that asked first. With a first-come queue a chain's next link
//! (the pipeline's `register` after `seed`) queued behind every independent check that was
//! ready at the start, and the chain, the run's longest path, ended seconds late.
//!
//! A check that passes hands its slot straight to a check that needed it and can run now
//! (the longest chain first), instead of freeing it: freed, the slot went to whichever
//! check was already waiting before the dependent could ask, and each link of the chain
//! waited for the next check to end (0.2-0.6 s a link in a warm run here). A dependent can
//! inherit only while it lives (`Heir`); one that ends without taking its slot gives it back.
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

/// Each of a run's checks with the ids it needs, in the suites' order (as `chain_ranks`
/// takes them).
pub fn needs_of(checks: &[Arc<Check>]) -> Vec<(String, Vec<String>)> {
    checks.iter().map(|c| (c.id(), c.needed_ids())).collect()
}

pub struct Slots {
    state: Mutex<State>,
    ranks: BTreeMap<String, usize>,
    needs: BTreeMap<String, Vec<String>>,
}

struct State {
    free: usize,
    waiting: BinaryHeap<Waiter>,
    asked: u64,
    /// Checks that may inherit a slot (their `Heir` lives), and whether one was handed to
    /// them and not yet taken.
    heirs: BTreeMap<String, bool>,
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

/// A running check's slot; dropping it hands the slot on to the best waiter.
pub struct Slot {
    slots: Option<Arc<Slots>>,
    id: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release();
        }
    }
}

impl Slot {
    /// For a check that passed, before its result is published: hands the slot to the
    /// highest-ranked check that needs it, whose other needs `passed`, and that may still
    /// inherit; frees it when there is none.
    pub fn pass_on(mut self, passed: impl Fn(&str) -> bool) {
        let Some(slots) = self.slots.take() else {
            return;
        };
        let mut state = slots.lock();
        let heir = slots
            .needs
            .iter()
            .filter(|(_, needs)| needs.contains(&self.id))
            .filter(|(_, needs)| needs.iter().all(|n| *n == self.id || passed(n)))
            .filter(|(id, _)| state.heirs.get(*id) == Some(&false))
            .max_by_key(|(id, _)| (slots.rank(id), Reverse(*id)))
            .map(|(id, _)| id.clone());
        match heir {
            Some(id) => {
                state.heirs.insert(id, true);
            }
            None => {
                drop(state);
                slots.release();
            }
        }
    }
}

/// A check that may inherit a slot from a check it needs, from before it waits for them
/// until it ends; a slot handed to it and not taken goes back when it ends.
pub struct Heir {
    slots: Arc<Slots>,
    id: String,
}

impl Drop for Heir {
    fn drop(&mut self) {
        let handed = self.slots.lock().heirs.remove(&self.id) == Some(true);
        if handed {
            self.slots.release();
        }
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
    /// `count` slots (at least one) for checks that need others as `needs` says (from
    /// `needs_of`): it ranks the waiting checks and says who may inherit a passed one's slot.
    pub fn new(count: usize, needs: Vec<(String, Vec<String>)>) -> Arc<Self> {
        let ranks = chain_ranks(needs.iter().cloned());
        let needs = needs.into_iter().collect();
        Arc::new(Self {
            state: Mutex::new(State {
                free: count.max(1),
                waiting: BinaryHeap::new(),
                asked: 0,
                heirs: BTreeMap::new(),
            }),
            ranks,
            needs,
        })
    }

    /// Lets the check `id` inherit a slot while the returned guard lives.
    pub fn heir(self: &Arc<Self>, id: &str) -> Heir {
        self.lock().heirs.insert(id.to_string(), false);
        Heir {
            slots: self.clone(),
            id: id.to_string(),
        }
    }

    /// Waits for a slot for the check `id` (at once when one was handed to it).
    pub async fn acquire(self: &Arc<Self>, id: &str) -> Slot {
        let slot = || Slot {
            slots: Some(self.clone()),
            id: id.to_string(),
        };
        let wake = {
            let mut state = self.lock();
            if let Some(handed) = state.heirs.get_mut(id) {
                if std::mem::take(handed) {
                    return slot();
                }
            }
            if state.free > 0 {
                state.free -= 1;
                return slot();
            }
            let (wake, woken) = oneshot::channel();
            let rank = self.rank(id);
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
        slot()
    }

    fn rank(&self, id: &str) -> usize {
        self.ranks.get(id).copied().unwrap_or(1)
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
        let slots = Slots::new(1, needs(&[("chain", &[]), ("after", &["chain"])]));
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
        let slots = Slots::new(2, Vec::new());
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

    /// One slot, held by `seed`; `other` (nothing needs it) waits for it; `next` and
    /// `later` need `seed`, `later` also `side`, and `next` has a chain behind it.
    fn a_chain_beside_another_check() -> Arc<Slots> {
        Slots::new(
            1,
            needs(&[
                ("seed", &[]),
                ("other", &[]),
                ("side", &[]),
                ("next", &["seed"]),
                ("later", &["seed", "side"]),
                ("last", &["next"]),
            ]),
        )
    }

    /// `(id, needs)` pairs as `needs_of` gives them.
    fn needs(checks: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        checks
            .iter()
            .map(|(id, n)| (id.to_string(), n.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    /// `seed` holding the one slot, `other` waiting for it, and the order they got one.
    async fn seed_running_other_waiting(
        slots: &Arc<Slots>,
    ) -> (
        Slot,
        tokio::task::JoinHandle<Slot>,
        Arc<Mutex<Vec<&'static str>>>,
    ) {
        let order = Arc::new(Mutex::new(Vec::new()));
        let seed = ask(slots, "seed", &order).await.unwrap();
        let other = ask(slots, "other", &order);
        settle().await;
        (seed, other, order)
    }

    #[tokio::test]
    async fn a_passed_check_hands_its_slot_to_the_longest_chain_that_needed_it() {
        let slots = a_chain_beside_another_check();
        let (seed, other, order) = seed_running_other_waiting(&slots).await;
        let (_next, _later) = (slots.heir("next"), slots.heir("later"));
        // `side` passed, so both could run: `next` has the longer chain.
        seed.pass_on(|id| id == "side");
        let next = tokio::time::timeout(Duration::from_secs(5), slots.acquire("next"))
            .await
            .expect("the handed slot is taken at once");
        settle().await;
        assert_eq!(*order.lock().unwrap(), ["seed"], "`other` still waits");
        drop(next);
        other.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["seed", "other"]);
    }

    #[rstest]
    #[case::its_other_need_did_not_pass(&["later"], false)]
    #[case::no_dependent_is_alive(&[], true)]
    #[tokio::test]
    async fn without_a_runnable_heir_the_slot_goes_to_who_waits(
        #[case] heirs: &[&str],
        #[case] side_passed: bool,
    ) {
        let slots = a_chain_beside_another_check();
        let (seed, other, _) = seed_running_other_waiting(&slots).await;
        let _heirs: Vec<Heir> = heirs.iter().map(|id| slots.heir(id)).collect();
        seed.pass_on(|id| side_passed && id == "side");
        tokio::time::timeout(Duration::from_secs(5), other)
            .await
            .expect("the waiting check got the slot")
            .unwrap();
    }

    #[tokio::test]
    async fn an_heir_that_ends_without_its_slot_gives_it_back() {
        let slots = a_chain_beside_another_check();
        let (seed, other, order) = seed_running_other_waiting(&slots).await;
        let next = slots.heir("next");
        seed.pass_on(|_| false);
        settle().await;
        assert_eq!(*order.lock().unwrap(), ["seed"], "the slot is `next`'s");
        drop(next);
        tokio::time::timeout(Duration::from_secs(5), other)
            .await
            .expect("the slot came back when `next` ended")
            .unwrap();
    }

    #[tokio::test]
    async fn a_check_cut_short_while_waiting_gives_its_slot_back() {
        let slots = Slots::new(1, Vec::new());
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
