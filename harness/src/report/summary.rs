//! A Markdown summary for people: GitHub's job summary, a PR comment, a chat message.

use super::RunReport;
use crate::checks::Outcome;
use crate::secrets::Masker;

pub fn render(run: &RunReport, masker: &Masker) -> String {
    let count = |f: fn(&Outcome) -> bool| run.checks.iter().filter(|c| f(&c.outcome)).count();
    let passed = count(|o| matches!(o, Outcome::Passed));
    let failed = count(|o| matches!(o, Outcome::Failed(_)));
    let errors = count(|o| matches!(o, Outcome::Errored(_)));
    let mut md = format!(
        "## Platform verification: {passed} passed, {failed} failed, {errors} errors ({:.1} s)\n\n",
        run.wall.as_secs_f64()
    );
    md.push_str(&super::timeline::gantt(run));
    md.push('\n');
    if !run.services.is_empty() {
        // CPU: what its start cost and what it used over the run (from its cgroup),
        // the figures to put in the platform spec's `start_cores`.
        md.push_str(
            "| service | image | ready in | CPU to ready | CPU in run |\n|---|---|---|---|---|\n",
        );
        let cpu = |c: Option<std::time::Duration>| {
            c.map_or("-".to_string(), |c| format!("{:.1} s", c.as_secs_f64()))
        };
        for s in &run.services {
            let ready = match (&s.failure, s.ready_in) {
                (Some(_), _) => "**failed**".to_string(),
                (None, Some(t)) => format!("{:.1} s", t.as_secs_f64()),
                (None, None) => "-".to_string(),
            };
            md.push_str(&format!(
                "| {} | `{}` | {ready} | {} | {} |\n",
                s.service,
                s.image,
                cpu(s.cpu_to_ready),
                cpu(s.cpu_total)
            ));
        }
        if !run.teardown.is_zero() {
            md.push_str(&format!(
                "\nRemoving the platform took {:.1} s of the run.\n",
                run.teardown.as_secs_f64()
            ));
        }
        md.push('\n');
    }
    md.push_str("| suite | check | result | time |\n|---|---|---|---|\n");
    for c in &run.checks {
        let result = match &c.outcome {
            Outcome::Passed => "passed",
            Outcome::Failed(_) => "**failed**",
            Outcome::Errored(_) => "**error**",
        };
        md.push_str(&format!(
            "| {} | {} | {result} | {:.2} s |\n",
            c.suite,
            c.name,
            c.duration.as_secs_f64()
        ));
    }
    if !run.cleanup.is_empty() {
        md.push_str("\n### Left behind\n\n");
        for p in &run.cleanup {
            md.push_str(&format!("- {}\n", p.replace('|', "\\|")));
        }
    }
    let broken: Vec<_> = run.checks.iter().filter(|c| !c.outcome.is_pass()).collect();
    if !broken.is_empty() {
        md.push_str("\n### What broke\n\n");
        for c in broken {
            let (Outcome::Failed(m) | Outcome::Errored(m)) = &c.outcome else {
                continue;
            };
            let first = m.lines().next().unwrap_or_default();
            md.push_str(&format!(
                "- `{}::{}` ({}): {}\n",
                c.suite,
                c.name,
                c.location,
                first.replace('|', "\\|")
            ));
        }
    }
    masker.mask(&md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CheckRecord;
    use crate::spec::suite::Location;
    use std::time::Duration;

    #[test]
    fn tables_every_check_and_lists_what_broke() {
        let rec = |name: &str, outcome| CheckRecord {
            suite: "kafka".into(),
            name: name.into(),
            location: Location {
                file: "suites/kafka.toml".into(),
                line: 3,
            },
            outcome,
            started_at: Duration::ZERO,
            duration: Duration::from_millis(250),
            steps: vec![],
            service_logs: vec![],
        };
        let run = RunReport {
            checks: vec![
                rec("roundtrip", Outcome::Passed),
                rec(
                    "consume",
                    Outcome::Failed("received 3 of 5 | key sekrit99".into()),
                ),
            ],
            services: vec![],
            cleanup: vec!["run abc: could not remove container 0123456789ab: 500".into()],
            wall: Duration::from_secs(3),
            teardown: Duration::ZERO,
        };
        let md = render(&run, &Masker::new(["sekrit99".to_string()]));
        assert!(
            md.starts_with("## Platform verification: 1 passed, 1 failed, 0 errors"),
            "{md}"
        );
        assert!(md.contains("```mermaid\ngantt\n"), "{md}");
        assert!(
            md.contains("| kafka | roundtrip | passed | 0.25 s |"),
            "{md}"
        );
        assert!(
            md.contains("- `kafka::consume` (suites/kafka.toml:3): received 3 of 5 \\| key ****"),
            "{md}"
        );
        assert!(
            md.contains("### Left behind\n\n- run abc: could not remove container"),
            "{md}"
        );
    }

    #[rstest::rstest]
    #[case::a_started_platform(800, Some("Removing the platform took 0.8 s of the run."))]
    #[case::nothing_to_remove(0, None)]
    fn says_what_removing_the_platform_took(#[case] ms: u64, #[case] line: Option<&str>) {
        let run = RunReport {
            services: vec![crate::platform::ServiceStart {
                service: "postgres".into(),
                image: "platform-kit/postgres:15".into(),
                ready_in: Some(Duration::from_millis(1200)),
                ready_at: Some(Duration::from_millis(1200)),
                failure: None,
                log_tail: String::new(),
                cpu_to_ready: None,
                cpu_total: None,
            }],
            wall: Duration::from_secs(2),
            teardown: Duration::from_millis(ms),
            ..Default::default()
        };
        let md = render(&run, &Masker::new(Vec::<String>::new()));
        match line {
            Some(l) => assert!(md.contains(l), "{md}"),
            None => assert!(!md.contains("Removing the platform"), "{md}"),
        }
    }
}
