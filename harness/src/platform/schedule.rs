//! When each service may start. On two cores, JVMs and Python servers that start together
//! slow each other down, and the slowest service (the one the run waits for) suffers most.
//! So services are ranked by the longest chain of expected start times that runs through
//! them (the critical path), and a start waits while it, beside the starts running and
//! those ranked above it that are yet to start, would overcommit the machine's cores by
//! more than a little CPU time. Short, light starts go at once: holding them back saves
//! nothing; a JVM whose start keeps one core busy for ten seconds waits its turn. A start
//! is never held back for a service all of whose checks wait for its own (on cdc-lakehouse
//! Trino's only checks query what Kafka Connect lands): the sooner start would only wait in
//! its checks.
//!
//! The rule is written here rather than taken from a crate: it is a small list scheduler
//! over a dependency graph, and the crates for that (job schedulers, async semaphores) have
//! neither ranks nor reservations for work that is not yet runnable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// How much CPU time a start may ask beyond the free cores by default: the most it can
/// delay the starts it overlaps is then about a second. An average hides a start's bursts,
/// so a budget of zero would hold back starts that would have cost nothing.
pub const OVERCOMMIT: Duration = Duration::from_secs(1);

/// The overcommit budget from a setting in CPU-seconds (`PLATFORM_START_OVERCOMMIT`): the
/// default when unset or empty.
pub fn budget(setting: Option<&str>) -> Result<Duration, String> {
    match setting.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(OVERCOMMIT),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                format!("PLATFORM_START_OVERCOMMIT={v:?}: give CPU-seconds, e.g. 1 or 2.5")
            }),
    }
}

pub use crate::spec::graph::Waiters;

/// What the scheduler knows about one service before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct StartCost {
    /// Its expected time from container start to ready, when started alone.
    pub expected: Duration,
    /// How many cores its start keeps busy on average (CPU time / time to ready).
    pub cores: f64,
    pub depends_on: Vec<String>,
    /// The services all of whose checks wait for this one's (`spec::graph::waiters`): their
    /// starts never hold this one back.
    pub waiters: BTreeSet<String>,
}

/// Each service's rank: its own expected start plus the longest chain of dependents'
/// expected starts after it. Services with a higher rank are started first.
pub fn ranks(costs: &BTreeMap<String, StartCost>) -> BTreeMap<String, Duration> {
    fn rank_of(
        name: &str,
        costs: &BTreeMap<String, StartCost>,
        done: &mut BTreeMap<String, Duration>,
        visiting: &mut BTreeSet<String>,
    ) -> Duration {
        if let Some(r) = done.get(name) {
            return *r;
        }
        // A cycle is rejected by the spec loader; here it only must not recurse forever.
        if !visiting.insert(name.to_string()) {
            return Duration::ZERO;
        }
        let after = costs
            .iter()
            .filter(|(_, c)| c.depends_on.iter().any(|d| d == name))
            .map(|(dependent, _)| rank_of(dependent, costs, done, visiting))
            .max()
            .unwrap_or_default();
        let own = costs.get(name).map(|c| c.expected).unwrap_or_default();
        done.insert(name.to_string(), own + after);
        own + after
    }
    let mut done = BTreeMap::new();
    for name in costs.keys() {
        rank_of(name, costs, &mut done, &mut BTreeSet::new());
    }
    done
}

/// Where a service is in its start, as the gate sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// Its dependencies are not ready yet.
    Blocked,
    /// Ready to start, waiting to be admitted.
    Queued,
    /// Starting: its cores are in use until it is ready or failed.
    Admitted,
    /// Ready, failed, or never going to start: no longer counted.
    Done,
}

#[derive(Debug)]
struct Entry {
    rank: Duration,
    expected: Duration,
    cores: f64,
    waiters: BTreeSet<String>,
    stage: Stage,
}

/// The admission rule, apart from waiting, so it can be tested as a table.
#[derive(Debug)]
struct GateState {
    capacity: f64,
    /// The CPU time a start may ask beyond the free cores ([`OVERCOMMIT`] by default).
    budget: Duration,
    entries: BTreeMap<String, Entry>,
}

impl GateState {
    /// Whether `name` (queued) may start now: the cores it would use beyond the free ones
    /// (counting those in use and those reserved for the services ranked above it that
    /// have not started, queued or waiting for their dependencies), times how long they
    /// overlap, stay within the budget; or nothing is starting and nothing is ranked
    /// above it, so the run always makes progress. The overlap is its expected start, or,
    /// when only starts already running are in the way, at most the longest of theirs:
    /// Trino, ranked first, waited 0.8 s for MinIO's 1 s start to end, for a cost to it
    /// of a fifth of a core over that second. The starts of its waiters do not count: on
    /// cdc-lakehouse, Kafka Connect held back for Trino's start made Trino's query wait for
    /// Connect's chain, and every scheduled run was slower than a parallel one.
    fn may_start(&self, name: &str) -> bool {
        let Some(me) = self.entries.get(name) else {
            return true;
        };
        let others = || {
            self.entries
                .iter()
                .filter(|(n, _)| !me.waiters.contains(*n))
        };
        // Equal ranks go by name, so the order is total and the same in every run.
        let above = |(n, e): &(&String, &Entry)| {
            e.rank > me.rank || (e.rank == me.rank && n.as_str() < name)
        };
        let reserved: f64 = others()
            .filter(above)
            .filter(|(_, e)| matches!(e.stage, Stage::Blocked | Stage::Queued))
            .map(|(_, e)| e.cores)
            .sum();
        let running = || others().filter(|(_, e)| e.stage == Stage::Admitted);
        let in_use: f64 = running().map(|(_, e)| e.cores).sum();
        let longest_running = running().map(|(_, e)| e.expected).max().unwrap_or_default();
        let excess = (in_use + reserved + me.cores - self.capacity).max(0.0);
        let overlap = if reserved > 0.0 {
            me.expected
        } else {
            me.expected.min(longest_running)
        };
        excess * overlap.as_secs_f64() <= self.budget.as_secs_f64() + 1e-9
            || (in_use == 0.0 && reserved == 0.0)
    }
}

/// Admits service starts by the rule above. Unbounded (`capacity` infinite) admits at once.
#[derive(Debug, Clone)]
pub struct StartGate {
    state: Arc<Mutex<GateState>>,
    changed: Arc<Notify>,
}

impl StartGate {
    /// `costs` holds every service of the run; `capacity` is in cores; `budget` is the
    /// CPU time a start may ask beyond the free cores.
    pub fn new(costs: &BTreeMap<String, StartCost>, capacity: f64, budget: Duration) -> Self {
        let ranks = ranks(costs);
        let entries = costs
            .iter()
            .map(|(name, c)| {
                let entry = Entry {
                    rank: ranks.get(name).copied().unwrap_or_default(),
                    expected: c.expected,
                    cores: c.cores,
                    waiters: c.waiters.clone(),
                    stage: Stage::Blocked,
                };
                (name.clone(), entry)
            })
            .collect();
        Self {
            state: Arc::new(Mutex::new(GateState {
                capacity,
                budget,
                entries,
            })),
            changed: Arc::new(Notify::new()),
        }
    }

    /// The service's ticket; dropping it without a start withdraws the service, so the
    /// starts it held back go on.
    pub fn ticket(&self, service: &str) -> Ticket {
        Ticket {
            gate: self.clone(),
            service: service.to_string(),
            admitted: false,
        }
    }

    fn set(&self, service: &str, stage: Stage) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(e) = s.entries.get_mut(service) {
                e.stage = stage;
            }
        }
        self.changed.notify_waiters();
    }

    /// The service's rank, for the log.
    pub fn rank(&self, service: &str) -> Duration {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.entries.get(service).map(|e| e.rank))
            .unwrap_or_default()
    }
}

/// One service's place at the gate.
#[derive(Debug)]
pub struct Ticket {
    gate: StartGate,
    service: String,
    admitted: bool,
}

impl Ticket {
    /// Waits until the service may start (its dependencies are ready: the caller waited
    /// for them). The cores are held until the returned permit is dropped.
    pub async fn admit(mut self) -> Permit {
        self.gate.set(&self.service, Stage::Queued);
        loop {
            let changed = self.gate.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let admitted = self.gate.state.lock().is_ok_and(|mut s| {
                let go = s.may_start(&self.service);
                if go {
                    if let Some(e) = s.entries.get_mut(&self.service) {
                        e.stage = Stage::Admitted;
                    }
                }
                go
            });
            if admitted {
                self.admitted = true;
                return Permit {
                    gate: self.gate.clone(),
                    service: self.service.clone(),
                };
            }
            changed.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.admitted {
            self.gate.set(&self.service, Stage::Done);
        }
    }
}

/// A started service's hold on the cores, released when it is ready or failed.
#[derive(Debug)]
pub struct Permit {
    gate: StartGate,
    service: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.set(&self.service, Stage::Done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn cost(expected_s: f64, cores: f64, deps: &[&str]) -> StartCost {
        StartCost {
            expected: Duration::from_secs_f64(expected_s),
            cores,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            waiters: BTreeSet::new(),
        }
    }

    /// The default platform as the benchmark measured it here (bare time to ready, CPU
    /// to ready / time), from when Trino still started after MinIO: the long pole behind
    /// a dependency.
    fn platform() -> BTreeMap<String, StartCost> {
        [
            ("postgres", cost(1.4, 0.57, &[])),
            ("minio", cost(0.8, 0.6, &[])),
            ("kafka", cost(2.1, 1.3, &[])),
            ("mlflow", cost(3.4, 0.85, &["postgres", "minio"])),
            ("trino", cost(12.0, 0.85, &["minio"])),
        ]
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect()
    }

    #[test]
    fn a_dependency_chain_ranks_by_its_longest_path() {
        let r = ranks(&platform());
        let ms = |n: &str| r[n].as_millis();
        assert_eq!(ms("trino"), 12_000);
        assert_eq!(
            ms("minio"),
            800 + 12_000,
            "minio leads to trino, the longer of its chains"
        );
        assert_eq!(ms("postgres"), 1_400 + 3_400);
        assert_eq!(ms("kafka"), 2_100);
        assert_eq!(ms("mlflow"), 3_400);
    }

    fn state(stages: &[(&str, Stage)], capacity: f64) -> GateState {
        state_of(platform(), stages, capacity)
    }

    fn state_of(
        costs: BTreeMap<String, StartCost>,
        stages: &[(&str, Stage)],
        capacity: f64,
    ) -> GateState {
        let ranks = ranks(&costs);
        let entries = costs
            .iter()
            .map(|(n, c)| {
                let stage = stages
                    .iter()
                    .find(|(s, _)| s == n)
                    .map(|(_, st)| *st)
                    .unwrap_or(Stage::Blocked);
                let entry = Entry {
                    rank: ranks[n],
                    expected: c.expected,
                    cores: c.cores,
                    waiters: c.waiters.clone(),
                    stage,
                };
                (n.clone(), entry)
            })
            .collect();
        GateState {
            capacity,
            budget: OVERCOMMIT,
            entries,
        }
    }

    use Stage::*;

    #[rstest]
    // At the start, Kafka waits: MinIO and PostgreSQL start, Trino and MLflow come next.
    #[case::kafka_waits_for_the_critical_path(&[("minio", Admitted), ("postgres", Admitted), ("kafka", Queued)], "kafka", 2.0, false)]
    // A short start goes even with the cores busy: its overcommit costs little.
    #[case::short_start_goes(&[("kafka", Admitted), ("trino", Admitted), ("minio", Queued)], "minio", 2.0, true)]
    // Trino's dependency is ready: it goes beside PostgreSQL.
    #[case::critical_path_goes(&[("minio", Done), ("postgres", Admitted), ("trino", Queued), ("kafka", Queued)], "trino", 2.0, true)]
    // MLflow, ranked above Kafka, goes beside Trino...
    #[case::next_by_rank(&[("minio", Done), ("postgres", Done), ("trino", Admitted), ("mlflow", Queued), ("kafka", Queued)], "mlflow", 2.0, true)]
    // ...and Kafka waits for the cores that MLflow is about to take.
    #[case::lower_rank_waits(&[("minio", Done), ("postgres", Done), ("trino", Admitted), ("mlflow", Queued), ("kafka", Queued)], "kafka", 2.0, false)]
    #[case::overlap_is_limited(&[("minio", Done), ("postgres", Done), ("trino", Admitted), ("mlflow", Admitted), ("kafka", Queued)], "kafka", 2.0, false)]
    // MLflow ready: Kafka beside Trino overcommits 0.15 cores for 2.1 s, within the budget.
    #[case::small_overcommit_goes(&[("minio", Done), ("postgres", Done), ("trino", Admitted), ("mlflow", Done), ("kafka", Queued)], "kafka", 2.0, true)]
    // MinIO just became ready and Trino has not queued yet: Kafka still leaves it the cores.
    #[case::no_race_past_a_dependent(&[("minio", Done), ("postgres", Done), ("trino", Blocked), ("mlflow", Admitted), ("kafka", Queued)], "kafka", 2.0, false)]
    // Ranked first, beside two short starts: it overcommits 0.2 cores for their 1.4 s,
    // not for its own 12 s.
    #[case::critical_path_beside_short_starts(&[("minio", Admitted), ("postgres", Admitted), ("trino", Queued)], "trino", 1.8, true)]
    // The same excess for as long as a long start runs beside it is too much.
    #[case::not_beside_a_long_start(&[("minio", Done), ("postgres", Done), ("trino", Admitted), ("mlflow", Queued)], "mlflow", 1.4, false)]
    // Heavier than the machine and alone: it still starts.
    #[case::progress_when_idle(&[("minio", Done), ("postgres", Done), ("trino", Queued)], "trino", 0.5, true)]
    fn admits_by_rank_and_cores(
        #[case] stages: &[(&str, Stage)],
        #[case] who: &str,
        #[case] cores: f64,
        #[case] admitted: bool,
    ) {
        assert_eq!(state(stages, cores).may_start(who), admitted);
    }

    /// The default platform where the checks on `waiters` wait for Kafka's (the
    /// pipeline's chain runs through Kafka, Trino and MLflow).
    fn kafka_awaited_by(waiters: &[&str]) -> BTreeMap<String, StartCost> {
        let mut costs = platform();
        if let Some(kafka) = costs.get_mut("kafka") {
            kafka.waiters = waiters.iter().map(|w| w.to_string()).collect();
        }
        costs
    }

    #[rstest]
    // Trino and MLflow, ranked above it and yet to start, do not hold Kafka back...
    #[case::not_for_its_waiters_to_come(&[("minio", Admitted), ("postgres", Admitted), ("kafka", Queued)], &["trino", "mlflow"], true)]
    // ...nor do they while they start...
    #[case::not_for_its_waiters_running(&[("minio", Done), ("postgres", Done), ("trino", Admitted), ("mlflow", Admitted), ("kafka", Queued)], &["trino", "mlflow"], true)]
    // ...but Trino, when its checks do not wait for Kafka's, still does.
    #[case::others_still_count(&[("minio", Admitted), ("postgres", Admitted), ("kafka", Queued)], &["mlflow"], false)]
    fn waiters_do_not_hold_a_start_back(
        #[case] stages: &[(&str, Stage)],
        #[case] waiters: &[&str],
        #[case] admitted: bool,
    ) {
        let s = state_of(kafka_awaited_by(waiters), stages, 2.0);
        assert_eq!(s.may_start("kafka"), admitted);
    }

    #[test]
    fn waiting_is_one_way() {
        // Trino's checks wait for Kafka's, not the other way round: Kafka's start counts
        // against Trino's like any other.
        let s = state_of(
            kafka_awaited_by(&["trino", "mlflow"]),
            &[
                ("minio", Done),
                ("kafka", Admitted),
                ("mlflow", Admitted),
                ("trino", Queued),
            ],
            1.8,
        );
        assert!(!s.may_start("trino"));
    }

    #[rstest]
    #[case::unset(None, Ok(1000))]
    #[case::empty(Some(""), Ok(1000))]
    #[case::seconds(Some("2.5"), Ok(2500))]
    #[case::zero(Some("0"), Ok(0))]
    #[case::negative(Some("-1"), Err(()))]
    #[case::not_a_number(Some("2s"), Err(()))]
    #[case::infinite(Some("inf"), Err(()))]
    fn reads_the_budget_setting(#[case] setting: Option<&str>, #[case] ms: Result<u64, ()>) {
        let got = budget(setting);
        assert_eq!(
            got.as_ref().map(Duration::as_millis).map_err(|_| ()),
            ms.map(u128::from)
        );
        if let Err(e) = got {
            assert!(e.contains("PLATFORM_START_OVERCOMMIT"), "{e}");
        }
    }

    // A wider budget lets Kafka go beside Trino and MLflow: a core over for its 2.1 s.
    #[rstest]
    #[case::default_budget(OVERCOMMIT, false)]
    #[case::wider_budget(Duration::from_millis(2500), true)]
    fn the_budget_bounds_the_overcommit(#[case] budget: Duration, #[case] admitted: bool) {
        let mut s = state(
            &[
                ("minio", Done),
                ("postgres", Done),
                ("trino", Admitted),
                ("mlflow", Admitted),
                ("kafka", Queued),
            ],
            2.0,
        );
        s.budget = budget;
        assert_eq!(s.may_start("kafka"), admitted);
    }

    #[test]
    fn unbounded_capacity_admits_everything() {
        let s = state(
            &[("trino", Admitted), ("kafka", Admitted), ("mlflow", Queued)],
            f64::INFINITY,
        );
        assert!(s.may_start("mlflow"));
    }

    #[tokio::test]
    async fn a_withdrawn_service_releases_those_it_held_back() {
        let gate = StartGate::new(&platform(), 2.0, OVERCOMMIT);
        let minio = gate.ticket("minio").admit().await;
        let postgres = gate.ticket("postgres").admit().await;
        let (trino, mlflow) = (gate.ticket("trino"), gate.ticket("mlflow"));
        let kafka = tokio::spawn(gate.ticket("kafka").admit());
        tokio::task::yield_now().await;
        assert!(
            !kafka.is_finished(),
            "kafka must wait while trino and mlflow may still start"
        );
        drop((minio, postgres));
        drop((trino, mlflow)); // their dependencies failed: they will never start
        let permit = tokio::time::timeout(Duration::from_secs(5), kafka).await;
        assert!(
            permit.is_ok_and(|p| p.is_ok()),
            "kafka is admitted once they are out of the way"
        );
    }

    #[tokio::test]
    async fn a_permit_holds_cores_until_dropped() {
        let gate = StartGate::new(&platform(), 2.0, OVERCOMMIT);
        drop(gate.ticket("minio").admit().await);
        drop(gate.ticket("postgres").admit().await);
        let _trino = gate.ticket("trino").admit().await;
        let mlflow = gate.ticket("mlflow").admit().await;
        let kafka = tokio::spawn(gate.ticket("kafka").admit());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !kafka.is_finished(),
            "kafka waits while trino and mlflow start"
        );
        drop(mlflow);
        let kafka = tokio::time::timeout(Duration::from_secs(5), kafka).await;
        assert!(kafka.is_ok_and(|p| p.is_ok()), "mlflow ready: kafka goes");
    }
}
