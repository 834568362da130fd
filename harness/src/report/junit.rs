//! JUnit XML with quick-junit (the writer cargo-nextest uses): one `<testsuite>` per suite
//! file, one `<testcase>` per check; `<failure>` for an expectation that did not hold,
//! `<error>` for everything else. Service start-ups are a suite of their own.

use std::path::Path;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{CheckRecord, ReportError, RunReport};
use crate::checks::Outcome;
use crate::secrets::Masker;

pub fn render(run: &RunReport, masker: &Masker) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("platform");
    report.set_time(run.wall);

    let mut services = TestSuite::new("platform-services");
    for s in &run.services {
        let status = match &s.failure {
            None => TestCaseStatus::success(),
            Some(msg) => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
                st.set_message(masker.mask(msg));
                st
            }
        };
        let mut case = TestCase::new(format!("start {}", s.service), status);
        case.set_classname("platform-services");
        if let Some(t) = s.ready_in {
            case.set_time(t);
        }
        let mut out = format!("image: {}\n", s.image);
        if !s.log_tail.is_empty() {
            out.push_str(&format!("last log lines of {}:\n{}", s.service, s.log_tail));
        }
        case.set_system_out(masker.mask(&out));
        services.add_test_case(case);
    }
    if !run.cleanup.is_empty() {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
        st.set_message(masker.mask(&format!(
            "{} cleanup problem(s): {}",
            run.cleanup.len(),
            run.cleanup[0]
        )));
        st.set_description(masker.mask(&run.cleanup.join("\n")));
        let mut case = TestCase::new("clean up", st);
        case.set_classname("platform-services");
        services.add_test_case(case);
    }
    if !run.services.is_empty() || !run.cleanup.is_empty() {
        report.add_test_suite(services);
    }

    let mut suite_names: Vec<&str> = run.checks.iter().map(|c| c.suite.as_str()).collect();
    suite_names.dedup();
    suite_names.sort();
    suite_names.dedup();
    for name in suite_names {
        let mut suite = TestSuite::new(name);
        for c in run.checks.iter().filter(|c| c.suite == name) {
            suite.add_test_case(case(c, masker));
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}

fn case(c: &CheckRecord, masker: &Masker) -> TestCase {
    let status = match &c.outcome {
        Outcome::Passed => TestCaseStatus::success(),
        Outcome::Failed(m) | Outcome::Errored(m) => {
            let kind = if matches!(c.outcome, Outcome::Failed(_)) {
                NonSuccessKind::Failure
            } else {
                NonSuccessKind::Error
            };
            let mut st = TestCaseStatus::non_success(kind);
            st.set_message(masker.mask(m));
            st.set_description(masker.mask(&format!("{}\n  at {}", m, c.location)));
            st
        }
    };
    let mut case = TestCase::new(c.name.clone(), status);
    case.set_classname(c.suite.clone());
    case.set_time(c.duration);
    let mut out = String::new();
    for (i, s) in c.steps.iter().enumerate() {
        let verdict = match &s.result {
            Ok(()) => "ok".to_string(),
            Err(e) => e.message().to_string(),
        };
        out.push_str(&format!(
            "step {} {} on {}: {} ({} attempt(s), {:.3} s)\n",
            i + 1,
            s.label,
            s.service,
            verdict,
            s.attempts,
            s.duration.as_secs_f64()
        ));
        if let Some(output) = &s.output {
            out.push_str(&format!(
                "  output: {}\n",
                crate::kinds::show_up_to(output, 2000)
            ));
        }
    }
    for (service, tail) in &c.service_logs {
        out.push_str(&format!("\n--- last log lines of {service} ---\n{tail}\n"));
    }
    if !out.is_empty() {
        case.set_system_out(masker.mask(&out));
    }
    case
}

pub fn write(run: &RunReport, masker: &Masker, path: &Path) -> Result<(), ReportError> {
    let xml = render(run, masker).map_err(|e| ReportError::Render {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    super::error::write_file(path, &xml)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{StepError, StepRecord};
    use crate::platform::ServiceStart;
    use crate::spec::suite::Location;
    use std::time::Duration;

    fn record(name: &str, outcome: Outcome) -> CheckRecord {
        CheckRecord {
            suite: "postgres".into(),
            name: name.into(),
            location: Location {
                file: "suites/postgres.toml".into(),
                line: 7,
            },
            outcome,
            started_at: Duration::ZERO,
            duration: Duration::from_millis(1500),
            steps: vec![StepRecord {
                output: None,
                label: "postgres.connect #1".into(),
                service: "postgres".into(),
                attempts: 1,
                duration: Duration::from_millis(20),
                result: Err(StepError::Error("password hunter22 rejected".into())),
            }],
            service_logs: vec![("postgres".into(), "FATAL: password hunter22".into())],
        }
    }

    #[test]
    fn splits_failures_from_errors_and_masks_secrets() {
        let run = RunReport {
            checks: vec![
                record("ok", Outcome::Passed),
                record("wrong", Outcome::Failed("expected 1, got 2".into())),
                record(
                    "down",
                    Outcome::Errored("connecting: password hunter22 rejected".into()),
                ),
            ],
            services: vec![ServiceStart {
                service: "postgres".into(),
                image: "platform-kit/postgres:15".into(),
                ready_in: Some(Duration::from_secs(2)),
                ready_at: Some(Duration::from_secs(2)),
                failure: None,
                log_tail: String::new(),
                cpu_to_ready: None,
                cpu_total: None,
            }],
            cleanup: Vec::new(),
            wall: Duration::from_secs(5),
            teardown: Duration::ZERO,
        };
        let xml = render(&run, &Masker::new(["hunter22".to_string()])).unwrap();
        assert!(!xml.contains("hunter22"), "{xml}");
        assert!(xml.contains("****"));
        assert!(
            xml.contains(
                r#"<testsuite name="postgres" tests="3" skipped="0" errors="1" failures="1""#
            ),
            "{xml}"
        );
        assert!(xml.contains(r#"<testcase name="start postgres""#), "{xml}");
        assert!(
            xml.contains("<failure message=\"expected 1, got 2\""),
            "{xml}"
        );
        assert!(xml.contains("at suites/postgres.toml:7"), "{xml}");
        assert!(xml.contains("last log lines of postgres"), "{xml}");
        assert!(!xml.contains("clean up"), "{xml}");
    }

    #[test]
    fn a_cleanup_problem_is_an_error_in_the_services_suite() {
        let run = RunReport {
            cleanup: vec![
                "run abc: could not remove network platform-abc: 500 has active endpoints".into(),
                "run abc: could not list its containers: connection refused".into(),
            ],
            ..Default::default()
        };
        let xml = render(&run, &Masker::new(Vec::<String>::new())).unwrap();
        assert!(
            xml.contains(r#"<testsuite name="platform-services" tests="1" skipped="0" errors="1""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase name="clean up" classname="platform-services""#),
            "{xml}"
        );
        assert!(
            xml.contains("2 cleanup problem(s): run abc: could not remove network"),
            "{xml}"
        );
        assert!(xml.contains("could not list its containers"), "{xml}");
    }
}
