//! How fast a run could be on this machine: the physical limit the benchmark compares the
//! wall time with. Two bounds, the larger wins: the critical path (each service's bare
//! readiness after its dependencies', then the longest check that needs it), and the CPU
//! time of everything (containers and harness) spread over the cores.

use std::collections::BTreeMap;
use std::time::Duration;

use super::RunReport;

/// The limit and what it is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub critical_path: Duration,
    /// The check that ends the critical path, and the service it waited for last.
    pub critical_check: Option<(String, String)>,
    pub cpu: Duration,
    pub cores: f64,
}

impl Limit {
    pub fn value(&self) -> Duration {
        self.critical_path.max(self.cpu.div_f64(self.cores))
    }
}

/// `bare`: each service's time to ready when started alone with `docker run`;
/// `depends_on`: the platform's dependencies; `harness_cpu`: the harness's own CPU time
/// during the run (containers' CPU is in the report).
pub fn physical_limit(
    report: &RunReport,
    bare: &BTreeMap<String, Duration>,
    depends_on: &BTreeMap<String, Vec<String>>,
    harness_cpu: Duration,
    cores: f64,
) -> Limit {
    let mut chain = BTreeMap::new();
    for service in bare.keys() {
        chain_of(service, bare, depends_on, &mut chain);
    }
    let mut critical_path = chain.values().copied().max().unwrap_or_default();
    let mut critical_check = None;
    for check in &report.checks {
        let last = check
            .steps
            .iter()
            .map(|s| &s.service)
            .max_by_key(|s| chain.get(*s).copied().unwrap_or_default());
        let Some(last) = last else { continue };
        let end = chain.get(last).copied().unwrap_or_default() + check.duration;
        if end > critical_path {
            critical_path = end;
            critical_check = Some((format!("{}::{}", check.suite, check.name), last.clone()));
        }
    }
    let containers: Duration = report.services.iter().filter_map(|s| s.cpu_total).sum();
    Limit {
        critical_path,
        critical_check,
        cpu: containers + harness_cpu,
        cores,
    }
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
        let limit = physical_limit(&r, &bare, &deps, secs(1.0), 2.0);
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
        let limit = physical_limit(&r, &bare, &deps, secs(5.0), 2.0);
        assert_eq!(limit.cpu, secs(48.0));
        assert_eq!(limit.value(), secs(24.0));
    }
}
