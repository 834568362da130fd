//! How long each check took when it last passed, kept under `target/` so that the next
//! run's start scheduler ranks a service by the checks that wait for it, not only by its
//! start (`platform::schedule`). On `cdc-lakehouse`, Kafka Connect starts in 3.5 s but the
//! chain of checks behind it (connector, captured rows, the lake) ends the run; ranked by
//! starts alone it waited for Trino's. A missing or unreadable file only means nothing is
//! known yet: the run goes on and writes a new one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::report::CheckRecord;
use crate::spec::{graph, Check};

/// Where the times of the platform spec `platform` live below `root`: one file per
/// platform, next to `up`'s state. `PLATFORM_CHECK_TIMES` names another file; set empty,
/// nothing is read or kept.
pub fn file_for(root: &Path, platform: &Path) -> Option<PathBuf> {
    match std::env::var_os(VAR) {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => {
            let stem = platform
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "platform".into());
            Some(
                root.join("target/platform-check-times")
                    .join(format!("{stem}.json")),
            )
        }
    }
}

pub const VAR: &str = "PLATFORM_CHECK_TIMES";

/// Each check's (`suite::name`) time in seconds, as the file holds it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckTimes {
    checks: BTreeMap<String, f64>,
}

impl CheckTimes {
    /// The times in `file`; none when it is missing, and none, with the reason, when it
    /// cannot be read (the caller says so and goes on).
    pub fn load(file: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        let mut times: Self =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        times.checks.retain(|_, s| s.is_finite() && *s >= 0.0);
        Ok(times)
    }

    /// Writes the times to `file` whole or not at all (a run killed while writing leaves
    /// the previous file).
    pub fn save(&self, file: &Path) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("{}: {e}", file.display());
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        let partial = file.with_extension(format!("json.{}.partial", std::process::id()));
        std::fs::write(&partial, text + "\n").map_err(fail)?;
        std::fs::rename(&partial, file).map_err(fail)
    }

    pub fn get(&self, id: &str) -> Option<Duration> {
        self.checks.get(id).map(|s| Duration::from_secs_f64(*s))
    }

    /// Takes the time of each check that passed. A check that failed or was cut short
    /// stopped early or waited on a timeout: its time says nothing about the next run.
    pub fn learn(&mut self, records: &[CheckRecord]) {
        for r in records.iter().filter(|r| r.outcome.is_pass()) {
            self.checks
                .insert(format!("{}::{}", r.suite, r.name), r.duration.as_secs_f64());
        }
    }

    /// Each service's longest chain of `checks` expected once it is ready: a check waits
    /// for the services its steps use and those they run with (`runs_with`), and the
    /// checks that need it follow it. Checks with no known time count as instant.
    pub fn after_ready(
        &self,
        checks: &[&Check],
        runs_with: &BTreeMap<String, Vec<String>>,
    ) -> BTreeMap<String, Duration> {
        let ids: BTreeSet<String> = checks.iter().map(|c| c.id()).collect();
        let mut needed_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in checks {
            for need in c.needed_ids().into_iter().filter(|n| ids.contains(n)) {
                needed_by.entry(need).or_default().push(c.id());
            }
        }
        let mut chains = BTreeMap::new();
        let mut after = BTreeMap::<String, Duration>::new();
        for c in checks {
            let chain = self.chain(&c.id(), &needed_by, &mut chains, &mut BTreeSet::new());
            let services = c.services();
            for s in graph::closure(services.iter().map(String::as_str), runs_with) {
                let longest = after.entry(s).or_default();
                *longest = (*longest).max(chain);
            }
        }
        after
    }

    /// The check's own time and the longest chain of the checks that need it after it.
    fn chain(
        &self,
        id: &str,
        needed_by: &BTreeMap<String, Vec<String>>,
        memo: &mut BTreeMap<String, Duration>,
        visiting: &mut BTreeSet<String>,
    ) -> Duration {
        if let Some(d) = memo.get(id) {
            return *d;
        }
        // `needs` names earlier checks only, so there is no cycle; this only bounds the walk.
        if !visiting.insert(id.to_string()) {
            return Duration::ZERO;
        }
        let next = needed_by
            .get(id)
            .into_iter()
            .flatten()
            .map(|d| self.chain(d, needed_by, memo, visiting))
            .max()
            .unwrap_or_default();
        let total = self.get(id).unwrap_or_default() + next;
        memo.insert(id.to_string(), total);
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Outcome;
    use crate::spec::{PlatformSpec, Suite};
    use rstest::rstest;

    const PLATFORM: &str = r#"
[services.postgres]
image = "postgres:15"
ports = { sql = 5432 }
ready = [{ tcp = "sql" }]

[services.kafka]
image = "kafka:3.9.1"
ports = { broker = 9092 }
ready = [{ tcp = "broker" }]

[services.connect]
image = "kafka-connect:3.9.1"
depends_on = ["kafka"]
uses = ["postgres"]
ports = { rest = 8083 }
ready = [{ tcp = "rest" }]

[services.trino]
image = "trino:435"
ports = { http = 8080 }
ready = [{ tcp = "http" }]
"#;

    const SUITE: &str = r#"
service = "connect"

[[check]]
name = "connector"
[[check.step]]
http.get = { path = "/connectors", port = "rest" }

[[check]]
name = "captures"
needs = ["connector"]
[[check.step]]
service = "kafka"
kafka.topics = {}

[[check]]
name = "lands"
needs = ["captures"]
[[check.step]]
service = "trino"
trino.query.sql = "SELECT 1"

[[check]]
name = "trino_alone"
[[check.step]]
service = "trino"
trino.query.sql = "SELECT 2"
"#;

    fn spec() -> (PlatformSpec, Suite) {
        let platform = PlatformSpec::parse(Path::new("platform.toml"), PLATFORM).unwrap();
        let suite = Suite::parse(Path::new("cdc.toml"), SUITE, &platform).unwrap();
        (platform, suite)
    }

    fn times(entries: &[(&str, f64)]) -> CheckTimes {
        CheckTimes {
            checks: entries
                .iter()
                .map(|(id, s)| (format!("cdc::{id}"), *s))
                .collect(),
        }
    }

    fn after(t: &CheckTimes) -> BTreeMap<String, f64> {
        let (platform, suite) = spec();
        let checks: Vec<&Check> = suite.checks.iter().collect();
        t.after_ready(&checks, &platform.runs_with())
            .into_iter()
            .map(|(s, d)| (s, (d.as_secs_f64() * 10.0).round() / 10.0))
            .collect()
    }

    #[rstest]
    // connector -> captures -> lands: 2 + 6 + 1 s after connect, its dependency kafka, and
    // postgres, which it uses; trino waits for `lands` only, or for its own 3 s check.
    #[case::a_chain_through_needs(&[("connector", 2.0), ("captures", 6.0), ("lands", 1.0), ("trino_alone", 3.0)],
        &[("connect", 9.0), ("kafka", 9.0), ("postgres", 9.0), ("trino", 3.0)])]
    #[case::nothing_known(&[], &[("connect", 0.0), ("kafka", 0.0), ("postgres", 0.0), ("trino", 0.0)])]
    // Unknown links count as instant; the known ones still add up.
    #[case::partly_known(&[("captures", 6.0)], &[("connect", 6.0), ("kafka", 6.0), ("postgres", 6.0), ("trino", 0.0)])]
    fn each_service_gets_its_longest_chain_of_checks(
        #[case] known: &[(&str, f64)],
        #[case] expected: &[(&str, f64)],
    ) {
        let expected: BTreeMap<String, f64> =
            expected.iter().map(|(s, t)| (s.to_string(), *t)).collect();
        assert_eq!(after(&times(known)), expected);
    }

    fn record(name: &str, outcome: Outcome, took: f64) -> CheckRecord {
        CheckRecord {
            suite: "cdc".into(),
            name: name.into(),
            location: crate::spec::suite::Location {
                file: "suites/cdc.toml".into(),
                line: 1,
            },
            outcome,
            started_at: Duration::ZERO,
            duration: Duration::from_secs_f64(took),
            steps: Vec::new(),
            service_logs: Vec::new(),
        }
    }

    #[test]
    fn learns_passed_checks_and_keeps_the_others() {
        let mut t = times(&[("connector", 2.0), ("lands", 1.0)]);
        t.learn(&[
            record("connector", Outcome::Passed, 2.5),
            record("captures", Outcome::Passed, 6.0),
            record("lands", Outcome::Failed("no rows".into()), 60.0),
        ]);
        assert_eq!(
            t,
            times(&[("connector", 2.5), ("captures", 6.0), ("lands", 1.0)])
        );
    }

    #[test]
    fn a_saved_file_loads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deeper/platform.json");
        let t = times(&[("connector", 2.25), ("captures", 6.0)]);
        t.save(&file).unwrap();
        assert_eq!(CheckTimes::load(&file).unwrap(), t);
        let left: Vec<_> = std::fs::read_dir(file.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no partial file left beside it");
    }

    #[rstest]
    #[case::missing(None, Ok(0))]
    #[case::not_json(Some("checks = 1"), Err("expected value"))]
    #[case::negative_and_odd_times_dropped(
        Some(r#"{"checks": {"cdc::a": -1.0, "cdc::b": 2.0}}"#),
        Ok(1)
    )]
    fn loading_never_fails_a_run_on_a_bad_file(
        #[case] content: Option<&str>,
        #[case] expected: Result<usize, &str>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("platform.json");
        if let Some(c) = content {
            std::fs::write(&file, c).unwrap();
        }
        match (CheckTimes::load(&file), expected) {
            (Ok(t), Ok(n)) => assert_eq!(t.checks.len(), n),
            (Err(e), Err(part)) => {
                assert!(e.contains(part), "{e}");
                assert!(e.contains("platform.json"), "names the file: {e}");
            }
            (got, want) => panic!("got {got:?}, expected {want:?}"),
        }
    }
}
