//! The run as a Mermaid `gantt` chart (GitHub renders it as a picture): each service from
//! start to ready, each check from start to end, failures in red. Times are milliseconds
//! from the run's start, given to Mermaid as epoch timestamps (`dateFormat x`).

use std::time::Duration;

use super::RunReport;
use crate::checks::Outcome;

/// A fenced `mermaid` block, or nothing when the run recorded no times.
pub fn gantt(run: &RunReport) -> String {
    let mut lines = Vec::new();
    let services: Vec<_> = run
        .services
        .iter()
        .filter_map(|s| {
            // A service whose dependency failed never started: it has no bar.
            let (ready_in, ready_at) = (s.ready_in?, s.ready_at?);
            let tag = if s.failure.is_some() {
                "crit"
            } else {
                "active"
            };
            Some(task(
                &s.service,
                tag,
                ready_at.saturating_sub(ready_in),
                ready_at,
            ))
        })
        .collect();
    if !services.is_empty() {
        lines.push("    section services".to_string());
        lines.extend(services);
    }
    let mut suite = None;
    // Checks cut off by the run's deadline never started (no duration): left out.
    for c in run.checks.iter().filter(|c| !c.duration.is_zero()) {
        if suite != Some(&c.suite) {
            lines.push(format!("    section {}", text(&c.suite)));
            suite = Some(&c.suite);
        }
        let tag = match c.outcome {
            Outcome::Passed => "done",
            Outcome::Failed(_) | Outcome::Errored(_) => "crit",
        };
        lines.push(task(&c.name, tag, c.started_at, c.started_at + c.duration));
    }
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "```mermaid\ngantt\n    title Timeline (minutes:seconds from the run's start)\n    \
         dateFormat x\n    axisFormat %M:%S\n    tickInterval {}second\n    todayMarker off\n\
         {}\n```\n",
        tick_seconds(run),
        lines.join("\n")
    )
}

/// Whole seconds per axis tick, at most about a dozen ticks: Mermaid's own choice for a
/// short run is half a second, which `%S` prints twice.
fn tick_seconds(run: &RunReport) -> u64 {
    let services = run.services.iter().filter_map(|s| s.ready_at);
    let checks = run.checks.iter().map(|c| c.started_at + c.duration);
    let span = services.chain(checks).max().unwrap_or_default().as_secs();
    [1, 2, 5, 10, 15, 30, 60, 120, 300, 600]
        .into_iter()
        .find(|t| span / t <= 12)
        .unwrap_or(1800)
}

fn task(name: &str, tag: &str, from: Duration, to: Duration) -> String {
    let (from, to) = (from.as_millis(), to.as_millis());
    // A bar of at least 1 ms, so a fast check still shows.
    format!("    {} :{tag}, {from}, {}", text(name), to.max(from + 1))
}

/// Gantt text cannot hold `:` (starts the task's data), `#` and `%%` (comments), `;`
/// (ends a statement), parentheses or quotes: each is replaced by a look-alike that
/// common fonts have.
fn text(name: &str) -> String {
    let t: String = name
        .replace("%%", "%\u{200B}%")
        .chars()
        .map(|c| match c {
            ':' => '\u{2236}', // ∶ ratio
            '#' => '\u{266F}', // ♯
            ';' => ',',
            '(' => '[',
            ')' => ']',
            '"' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    // The lexer takes a keyword at the start of a line before task text ("clicks" would
    // lex as `click`); a zero-width space in front keeps it text.
    let lower = t.trim_start().to_lowercase();
    if KEYWORDS.iter().any(|k| lower.starts_with(k))
        || lower.starts_with(|c: char| c.is_ascii_digit())
    {
        format!("\u{200B}{}", t.trim_start())
    } else {
        t.trim().to_string()
    }
}

/// Words Mermaid's gantt lexer matches before task text.
const KEYWORDS: [&str; 18] = [
    "gantt",
    "click",
    "href",
    "call",
    "dateformat",
    "axisformat",
    "tickinterval",
    "inclusiveenddates",
    "topaxis",
    "excludes",
    "includes",
    "todaymarker",
    "weekday",
    "weekend",
    "title",
    "section",
    "acctitle",
    "accdescr",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::ServiceStart;
    use crate::report::CheckRecord;
    use crate::spec::suite::Location;
    use rstest::rstest;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn service(name: &str, ready_in: u64, ready_at: u64) -> ServiceStart {
        ServiceStart {
            service: name.into(),
            image: format!("platform-kit/{name}:1"),
            ready_in: Some(ms(ready_in)),
            ready_at: Some(ms(ready_at)),
            failure: None,
            log_tail: String::new(),
            cpu_to_ready: None,
            cpu_total: None,
        }
    }

    fn check(suite: &str, name: &str, outcome: Outcome, from: u64, took: u64) -> CheckRecord {
        CheckRecord {
            suite: suite.into(),
            name: name.into(),
            location: Location {
                file: format!("suites/{suite}.toml").into(),
                line: 1,
            },
            outcome,
            started_at: ms(from),
            duration: ms(took),
            steps: vec![],
            service_logs: vec![],
        }
    }

    #[test]
    fn charts_services_then_checks_per_suite_with_failures_marked() {
        let run = RunReport {
            cleanup: Vec::new(),
            services: vec![
                service("postgres", 4100, 4100),
                service("minio", 1500, 1800),
            ],
            checks: vec![
                check("postgres", "accepts_login", Outcome::Passed, 4120, 30),
                check(
                    "postgres",
                    "answers_queries",
                    Outcome::Failed("1 != 2".into()),
                    4120,
                    250,
                ),
                check("s3", "lifecycle", Outcome::Passed, 1810, 900),
            ],
            wall: ms(5000),
            teardown: Duration::ZERO,
        };
        let expected = "```mermaid
gantt
    title Timeline (minutes:seconds from the run's start)
    dateFormat x
    axisFormat %M:%S
    tickInterval 1second
    todayMarker off
    section services
    postgres :active, 0, 4100
    minio :active, 300, 1800
    section postgres
    accepts_login :done, 4120, 4150
    answers_queries :crit, 4120, 4370
    section s3
    lifecycle :done, 1810, 2710
```
";
        assert_eq!(gantt(&run), expected);
    }

    #[test]
    fn leaves_out_what_never_started_and_marks_a_failed_service() {
        let mut kafka = service("kafka", 60_000, 60_000);
        kafka.failure = Some("not ready in 60 s".into());
        let mut mlflow = service("mlflow", 0, 0);
        (mlflow.ready_in, mlflow.ready_at) = (None, None);
        let run = RunReport {
            cleanup: Vec::new(),
            services: vec![kafka, mlflow],
            checks: vec![check(
                "kafka",
                "deadline",
                Outcome::Errored("late".into()),
                0,
                0,
            )],
            wall: ms(60_000),
            teardown: Duration::ZERO,
        };
        let chart = gantt(&run);
        assert!(chart.contains("    kafka :crit, 0, 60000\n"), "{chart}");
        assert!(
            !chart.contains("mlflow") && !chart.contains("deadline"),
            "{chart}"
        );
        assert!(chart.contains("tickInterval 5second\n"), "{chart}");
        assert_eq!(gantt(&RunReport::default()), "");
    }

    #[rstest]
    #[case::plain("accepts_login", "accepts_login")]
    #[case::path_separator("kafka::roundtrip", "kafka\u{2236}\u{2236}roundtrip")]
    #[case::comment_and_statement("a #1; b", "a \u{266F}1, b")]
    #[case::parentheses_and_quotes("x (\"y\")", "x ['y']")]
    #[case::keyword_first("clicks_counted", "\u{200B}clicks_counted")]
    #[case::date_like_first("2024-01-01 rows", "\u{200B}2024-01-01 rows")]
    #[case::newline("two\nlines", "two lines")]
    #[case::comment_percent("sure at 100%%", "sure at 100%\u{200B}%")]
    fn escapes_what_the_gantt_lexer_would_take(#[case] name: &str, #[case] expected: &str) {
        assert_eq!(text(name), expected);
    }
}
