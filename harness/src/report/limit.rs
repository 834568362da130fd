//! How fast a run could be on this machine: the physical limit the benchmark compares the
//! wall time with. Two bounds, the larger wins: the critical path (each service's bare
//! readiness after its dependencies', then the longest chain of checks linked by `needs`
//! that waits for it), and the CPU time of everything (containers, harness and the Docker
//! engine) spread over the cores.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{CheckRecord, RunReport};

/// The limit and what it is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub critical_path: Duration,
    /// The checks that end the critical path (`a -> b` when linked by `needs`), and the
    /// service the chain waited for last.
    pub critical_check: Option<(String, String)>,
    /// All the CPU time the run used: its containers', the harness's and the engine's.
    pub cpu: Duration,
    /// The Docker engine's part of `cpu`.
    pub engine_cpu: Duration,
    pub cores: f64,
}

impl Limit {
    pub fn value(&self) -> Duration {
        self.critical_path.max(self.cpu.div_f64(self.cores))
    }

    /// The limit as if the engine's work were free: comparable with figures measured
    /// before the engine was counted.
    pub fn without_engine(&self) -> Duration {
        let cpu = self.cpu.saturating_sub(self.engine_cpu);
        self.critical_path.max(cpu.div_f64(self.cores))
    }
}

/// CPU time a run used outside its containers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outside {
    /// The harness's own.
    pub harness: Duration,
    /// The Docker engine's (dockerd, containerd, what they ran): creating, wiring, watching
    /// and removing the containers; zero when the engine runs elsewhere.
    pub engine: Duration,
}

/// `bare`: each service's time to ready when started alone with `docker run`;
/// `depends_on`: the platform's dependencies (ready before a service starts); `uses`: the
/// services each uses (ready before its checks run, not before it starts); `needs`: each
/// check's id and the ids of the checks it waits for; `outside`: the CPU time the harness
/// and the engine used during the run (containers' CPU is in the report).
pub fn physical_limit(
    report: &RunReport,
    bare: &BTreeMap<String, Duration>,
    depends_on: &BTreeMap<String, Vec<String>>,
    uses: &BTreeMap<String, Vec<String>>,
    needs: &BTreeMap<String, Vec<String>>,
    outside: Outside,
    cores: f64,
) -> Limit {
    let mut ready = BTreeMap::new();
    for service in bare.keys() {
        chain_of(service, bare, depends_on, &mut ready);
    }
    let mut critical_path = ready.values().copied().max().unwrap_or_default();
    // A service's checks start once it and everything it runs with (its dependencies and
    // what it uses, theirs too) are ready.
    let mut runs_with = depends_on.clone();
    for (service, used) in uses {
        runs_with
            .entry(service.clone())
            .or_default()
            .extend(used.iter().cloned());
    }
    let usable: BTreeMap<String, Duration> = ready
        .keys()
        .map(|s| {
            let beside = crate::spec::graph::closure([s.as_str()], &runs_with);
            let at = beside.iter().filter_map(|b| ready.get(b)).max();
            (s.clone(), at.copied().unwrap_or_default())
        })
        .collect();
    let mut critical_check = None;
    if let Some(end) = longest_check_chain(&report.checks, &usable, needs) {
        if end.at > critical_path {
            critical_path = end.at;
            critical_check = Some((end.checks.join(" -> "), end.waited_for));
        }
    }
    let containers: Duration = report.services.iter().filter_map(|s| s.cpu_total).sum();
    Limit {
        critical_path,
        critical_check,
        cpu: containers + outside.harness + outside.engine,
        engine_cpu: outside.engine,
        cores,
    }
}

/// The longest run of checks linked by `needs`, by their measured durations, with every
/// service already up: the bound of a warm run that no concurrency can beat.
pub fn longest_needs_chain(
    checks: &[CheckRecord],
    needs: &BTreeMap<String, Vec<String>>,
) -> Duration {
    longest_check_chain(checks, &BTreeMap::new(), needs)
        .map(|end| end.at)
        .unwrap_or_default()
}

/// Where a chain of checks ends at the earliest.
#[derive(Clone, Default)]
struct ChainEnd {
    at: Duration,
    checks: Vec<String>,
    waited_for: String,
}

/// Each check ends, at the earliest, its duration after the last of: the services it
/// uses ready (`ready`, zero when absent) and the checks it needs ended. The latest end.
fn longest_check_chain(
    checks: &[CheckRecord],
    ready: &BTreeMap<String, Duration>,
    needs: &BTreeMap<String, Vec<String>>,
) -> Option<ChainEnd> {
    let by_id: BTreeMap<String, &CheckRecord> = checks
        .iter()
        .map(|c| (format!("{}::{}", c.suite, c.name), c))
        .collect();
    let mut memo = BTreeMap::new();
    by_id
        .keys()
        .map(|id| end_of(id, &by_id, ready, needs, &mut memo))
        .max_by_key(|end| end.at)
}

fn end_of(
    id: &str,
    by_id: &BTreeMap<String, &CheckRecord>,
    ready: &BTreeMap<String, Duration>,
    needs: &BTreeMap<String, Vec<String>>,
    memo: &mut BTreeMap<String, ChainEnd>,
) -> ChainEnd {
    if let Some(end) = memo.get(id) {
        return end.clone();
    }
    let Some(check) = by_id.get(id) else {
        // Needed but not in this run: it cannot hold anything up.
        return ChainEnd::default();
    };
    let service = check
        .steps
        .iter()
        .map(|s| {
            (
                ready.get(&s.service).copied().unwrap_or_default(),
                &s.service,
            )
        })
        .max();
    let mut start = ChainEnd {
        at: service.map(|(at, _)| at).unwrap_or_default(),
        checks: Vec::new(),
        waited_for: service.map(|(_, s)| s.clone()).unwrap_or_default(),
    };
    for need in needs.get(id).into_iter().flatten() {
        let before = end_of(need, by_id, ready, needs, memo);
        if before.at > start.at {
            start = before;
        }
    }
    start.at += check.duration;
    start.checks.push(id.to_string());
    memo.insert(id.to_string(), start.clone());
    start
}

/// A service's bare readiness after its slowest chain of dependencies.
fn chain_of(
    service: &str,
    bare: &BTreeMap<String, Duration>,
    depends_on: &BTreeMap<String, Vec<String>>,
    memo: &mut BTreeMap<String, Duration>,
) -> Duration {
    if let Some(d) = memo.get(service) {
        return *d;
    }
    memo.insert(service.to_string(), Duration::ZERO); // a cycle ends here
    let before = depends_on
        .get(service)
        .into_iter()
        .flatten()
        .map(|d| chain_of(d, bare, depends_on, memo))
        .max()
        .unwrap_or_default();
    let total = before + bare.get(service).copied().unwrap_or_default();
    memo.insert(service.to_string(), total);
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{Outcome, StepRecord};
    use crate::platform::ServiceStart;
    use crate::report::CheckRecord;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn check(name: &str, service: &str, took: f64) -> CheckRecord {
        CheckRecord {
            suite: "suite".into(),
            name: name.into(),
            location: crate::spec::suite::Location {
                file: "suites/s.toml".into(),
                line: 1,
            },
            outcome: Outcome::Passed,
            started_at: Duration::ZERO,
            duration: secs(took),
            steps: vec![StepRecord {
                output: None,
                label: "step".into(),
                service: service.into(),
                attempts: 1,
                duration: secs(took),
                result: Ok(()),
            }],
            service_logs: Vec::new(),
        }
    }

    fn report(checks: Vec<CheckRecord>, cpu: &[(&str, f64)]) -> RunReport {
        RunReport {
            checks,
            services: cpu
                .iter()
                .map(|(s, c)| ServiceStart {
                    service: s.to_string(),
                    image: String::new(),
                    ready_in: None,
                    ready_at: None,
                    failure: None,
                    log_tail: String::new(),
                    cpu_to_ready: None,
                    cpu_total: Some(secs(*c)),
                })
                .collect(),
            cleanup: Vec::new(),
            wall: secs(40.0),
            teardown: Duration::ZERO,
        }
    }

    fn platform() -> (BTreeMap<String, Duration>, BTreeMap<String, Vec<String>>) {
        let bare = [("minio", 2.0), ("trino", 12.0), ("postgres", 4.0)]
            .into_iter()
            .map(|(s, t)| (s.to_string(), secs(t)))
            .collect();
        let deps = [("trino", vec!["minio".to_string()])]
            .into_iter()
            .map(|(s, d)| (s.to_string(), d))
            .collect();
        (bare, deps)
    }

    #[test]
    fn the_critical_path_runs_through_dependencies_and_the_longest_check() {
        let (bare, deps) = platform();
        let r = report(
            vec![
                check("slow_pg", "postgres", 5.0),
                check("lake", "trino", 3.0),
            ],
            &[("trino", 20.0)],
        );
        let limit = without_uses(&r, &bare, &deps, &BTreeMap::new(), secs(1.0));
        assert_eq!(limit.critical_path, secs(2.0 + 12.0 + 3.0));
        assert_eq!(
            limit.critical_check,
            Some(("suite::lake".to_string(), "trino".to_string()))
        );
        assert_eq!(limit.value(), secs(17.0), "CPU 21 s over 2 cores is less");
    }

    #[test]
    fn cpu_bound_when_the_cores_are_the_bottleneck() {
        let (bare, deps) = platform();
        let r = report(
            vec![check("q", "postgres", 1.0)],
            &[("trino", 40.0), ("minio", 3.0)],
        );
        let limit = without_uses(&r, &bare, &deps, &BTreeMap::new(), secs(5.0));
        assert_eq!(limit.cpu, secs(48.0));
        assert_eq!(limit.value(), secs(24.0));
    }

    #[test]
    fn the_engine_work_counts_and_can_be_left_out() {
        let (bare, deps) = platform();
        let r = report(vec![check("q", "postgres", 1.0)], &[("trino", 40.0)]);
        let outside = Outside {
            harness: secs(2.0),
            engine: secs(6.0),
        };
        let limit = physical_limit(
            &r,
            &bare,
            &deps,
            &BTreeMap::new(),
            &BTreeMap::new(),
            outside,
            2.0,
        );
        assert_eq!(limit.cpu, secs(48.0));
        assert_eq!(limit.value(), secs(24.0));
        assert_eq!(limit.without_engine(), secs(21.0));
    }

    /// The limit of a platform where no service uses another, on 2 cores.
    fn without_uses(
        r: &RunReport,
        bare: &BTreeMap<String, Duration>,
        deps: &BTreeMap<String, Vec<String>>,
        needs: &BTreeMap<String, Vec<String>>,
        harness_cpu: Duration,
    ) -> Limit {
        let outside = Outside {
            harness: harness_cpu,
            engine: Duration::ZERO,
        };
        physical_limit(r, bare, deps, &BTreeMap::new(), needs, outside, 2.0)
    }

    #[test]
    fn a_used_service_holds_the_checks_not_the_start() {
        let (mut bare, _) = platform();
        let depends_on = BTreeMap::new();
        // Trino uses MinIO, here slower than Trino: started together, its check waits for both.
        bare.insert("minio".into(), secs(15.0));
        let uses = [("trino".to_string(), vec!["minio".to_string()])].into();
        let r = report(vec![check("lake", "trino", 3.0)], &[]);
        let limit = physical_limit(
            &r,
            &bare,
            &depends_on,
            &uses,
            &BTreeMap::new(),
            Outside::default(),
            2.0,
        );
        assert_eq!(limit.critical_path, secs(15.0 + 3.0), "not 15 + 12 + 3 s");
        assert_eq!(
            limit.critical_check,
            Some(("suite::lake".to_string(), "trino".to_string()))
        );
    }

    fn needs(links: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (check, need) in links {
            map.entry(format!("suite::{check}"))
                .or_default()
                .push(format!("suite::{need}"));
        }
        map
    }

    #[test]
    fn checks_linked_by_needs_add_up_on_the_critical_path() {
        let (bare, deps) = platform();
        let r = report(
            vec![
                check("produce", "postgres", 2.0),
                check("consume", "postgres", 10.0),
                check("lake", "trino", 3.0),
            ],
            &[],
        );
        let limit = without_uses(&r, &bare, &deps, &BTreeMap::new(), secs(0.0));
        assert_eq!(
            limit.critical_path,
            secs(17.0),
            "unlinked: trino's 14 s + 3 s"
        );
        let linked = needs(&[("consume", "produce"), ("lake", "consume")]);
        let limit = without_uses(&r, &bare, &deps, &linked, secs(0.0));
        assert_eq!(limit.critical_path, secs(4.0 + 2.0 + 10.0 + 3.0));
        assert_eq!(
            limit.critical_check,
            Some((
                "suite::produce -> suite::consume -> suite::lake".to_string(),
                "postgres".to_string()
            )),
            "lake waits for consume (16 s), later than for trino (14 s)"
        );
    }

    #[test]
    fn a_warm_run_is_bounded_by_its_longest_needs_chain() {
        let r = report(
            vec![
                check("a", "postgres", 1.0),
                check("b", "postgres", 2.0),
                check("c", "trino", 4.0),
                check("lone", "minio", 5.0),
            ],
            &[],
        );
        let linked = needs(&[("b", "a"), ("c", "b")]);
        assert_eq!(longest_needs_chain(&r.checks, &linked), secs(7.0));
        assert_eq!(longest_needs_chain(&r.checks, &BTreeMap::new()), secs(5.0));
    }
}
