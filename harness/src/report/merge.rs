//! `platform-verify merge-junit OUT IN...`: the shards' JUnit reports as one. Suites of
//! the same name (a suite whose checks were split across shards) become one suite; the
//! counts are quick-junit's, recomputed from the cases.

use std::path::{Path, PathBuf};

use quick_junit::{Report, TestSuite};

use super::error::write_file;
use super::ReportError;

pub fn merge(inputs: &[PathBuf]) -> Result<Report, ReportError> {
    let mut out = Report::new("platform");
    let mut suites: Vec<TestSuite> = Vec::new();
    // Shards run side by side: the merged run took as long as the longest.
    let mut time = None;
    for path in inputs {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.clone(),
            source,
        })?;
        let report = Report::deserialize_from_str(&text).map_err(|e| ReportError::NotJunit {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        time = time.max(report.time);
        for suite in report.test_suites {
            match suites.iter_mut().find(|s| s.name == suite.name) {
                Some(into) => {
                    into.time =
                        Some(into.time.unwrap_or_default() + suite.time.unwrap_or_default());
                    into.add_test_cases(suite.test_cases);
                }
                None => {
                    let mut fresh = TestSuite::new(suite.name.clone());
                    fresh.time = suite.time;
                    fresh.timestamp = suite.timestamp;
                    fresh.properties = suite.properties;
                    fresh.system_out = suite.system_out;
                    fresh.system_err = suite.system_err;
                    fresh.add_test_cases(suite.test_cases);
                    suites.push(fresh);
                }
            }
        }
    }
    if let Some(t) = time {
        out.set_time(t);
    }
    out.add_test_suites(suites);
    Ok(out)
}

pub fn merge_into(out: &Path, inputs: &[PathBuf]) -> Result<Report, ReportError> {
    let report = merge(inputs)?;
    let text = report.to_string().map_err(|e| ReportError::Render {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_file(out, &text)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus};
    use rstest::rstest;

    fn shard(dir: &Path, name: &str, cases: &[(&str, &str, bool)], secs: u64) -> PathBuf {
        let mut r = Report::new("platform");
        r.set_time(std::time::Duration::from_secs(secs));
        for (suite, case, ok) in cases {
            let status = if *ok {
                TestCaseStatus::success()
            } else {
                TestCaseStatus::non_success(NonSuccessKind::Failure)
            };
            let mut s = TestSuite::new(*suite);
            s.add_test_case(TestCase::new(*case, status));
            r.add_test_suite(s);
        }
        let p = dir.join(name);
        std::fs::write(&p, r.to_string().unwrap()).unwrap();
        p
    }

    #[rstest]
    #[case::disjoint_suites(&[("postgres", "a", true)], &[("kafka", "b", false)], 2, 2, 1)]
    #[case::one_suite_split(&[("postgres", "a", true)], &[("postgres", "b", true)], 1, 2, 0)]
    fn merges_shards(
        #[case] one: &[(&str, &str, bool)],
        #[case] two: &[(&str, &str, bool)],
        #[case] suites: usize,
        #[case] tests: usize,
        #[case] failures: usize,
    ) {
        let dir =
            std::env::temp_dir().join(format!("harness-merge-{}-{suites}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inputs = [shard(&dir, "1.xml", one, 30), shard(&dir, "2.xml", two, 50)];
        let out = dir.join("out/merged.xml");
        merge_into(&out, &inputs).unwrap();
        let back = Report::deserialize_from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(back.test_suites.len(), suites);
        assert_eq!(back.tests, tests);
        assert_eq!(back.failures, failures);
        assert_eq!(back.time, Some(std::time::Duration::from_secs(50)));
    }

    #[test]
    fn a_file_that_is_not_junit_is_named() {
        let dir = std::env::temp_dir().join(format!("harness-merge-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.xml");
        std::fs::write(&bad, "not xml at all <").unwrap();
        let err = merge(&[bad]).unwrap_err();
        assert!(
            err.to_string().contains("bad.xml is not a JUnit report"),
            "{err}"
        );
    }
}
