//! A signal at any moment of `platform-verify run` leaves nothing of the run on the
//! engine, and once the handler is in place the reports are still written, with the
//! unfinished checks as errors "interrupted". Swept over start-up, checks and teardown.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rstest::rstest;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_platform-verify");

const QUICK: &str = r#"
[[check]]
name = "quick"
service = "postgres"
[[check.step]]
postgres.connect = {}
"#;

/// One platform at a time: the cases would otherwise start postgres all at once.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Copy)]
enum Moment {
    /// This long after the process started.
    After(Duration),
    /// As soon as the console shows this line.
    Line(&'static str),
}

#[rstest]
#[case::sigint_at_once(Moment::After(Duration::from_millis(50)), "INT", true)]
#[case::sigterm_early(Moment::After(Duration::from_millis(500)), "TERM", true)]
#[case::sigint_while_creating(Moment::Line("platform: starting postgres"), "INT", true)]
#[case::sigint_at_2s(Moment::After(Duration::from_secs(2)), "INT", true)]
#[case::sigterm_during_checks(Moment::Line("postgres ready in"), "TERM", true)]
#[case::sighup_during_checks(Moment::Line("ok signals::quick"), "HUP", true)]
#[case::sigint_during_teardown(Moment::Line("platform: removing run"), "INT", false)]
#[case::sigterm_during_teardown(Moment::Line("platform: removing run"), "TERM", false)]
fn a_signal_at_any_moment_leaves_nothing_and_writes_the_report(
    #[case] moment: Moment,
    #[case] signal: &str,
    #[case] slow: bool,
) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("harness-sig-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(
        dir.join("platform.toml"),
        common::postgres_platform("{ default = \"sig-secret-77a1c9\" }"),
    )
    .unwrap();
    let suite = if slow {
        format!("{QUICK}{}", common::SLOW_SUITE)
    } else {
        QUICK.to_string()
    };
    std::fs::write(dir.join("suites/signals.toml"), suite).unwrap();
    let junit = dir.join("junit.xml");

    let started = Instant::now();
    let mut child = Command::new(BIN)
        .current_dir(common::root())
        .args(["run", "--platform"])
        .arg(dir.join("platform.toml"))
        .arg("--suites")
        .arg(dir.join("suites"))
        .arg("--junit")
        .arg(&junit)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    // Keep reading, as a terminal would, so the interrupted run can still print.
    let drain = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all.join("\n")
    });
    match moment {
        Moment::After(d) => std::thread::sleep(d.saturating_sub(started.elapsed())),
        Moment::Line(wanted) => loop {
            let line = rx
                .recv_timeout(Duration::from_secs(90))
                .unwrap_or_else(|_| panic!("never saw {wanted:?}"));
            if line.contains(wanted) {
                break;
            }
        },
    }
    let sent_at = started.elapsed();
    // Sent by a call, not the `kill` program: a minimal machine has no procps.
    let sig: nix::sys::signal::Signal = format!("SIG{signal}").parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.parse().unwrap()), sig).unwrap();
    let status = child.wait().unwrap();
    let said = drain.join().unwrap();
    eprintln!(
        "SIG{signal} at {sent_at:?}: {status:?}, total {:?}",
        started.elapsed()
    );

    let label = format!("label=org.platform-harness.pid={pid}");
    assert_eq!(
        common::labelled("container", &label),
        Vec::<String>::new(),
        "a container of the run is left: {said}"
    );
    assert_eq!(
        common::labelled("network", &label),
        Vec::<String>::new(),
        "a network of the run is left: {said}"
    );
    match status.code() {
        // The handler was in place: the reports are written.
        Some(130) => {
            let xml = std::fs::read_to_string(&junit)
                .unwrap_or_else(|e| panic!("no JUnit after SIG{signal}: {e}\n{said}"));
            assert!(dir.join("platform-summary.md").exists(), "{said}");
            if slow {
                assert!(
                    xml.contains("<error message=\"interrupted: the run was stopped by a signal"),
                    "{xml}"
                );
            }
            if matches!(moment, Moment::Line("ok signals::quick")) {
                assert!(
                    xml.contains(r#"<testcase name="quick" classname="signals""#)
                        && !xml.contains("<error message=\"interrupted: the run was stopped by a signal before this check finished\" type=\"\">\n            <![CDATA[quick"),
                    "a check that finished keeps its verdict: {xml}"
                );
            }
        }
        // Before the handler was installed the signal ends the process at once; only a
        // signal in the first instant may do that.
        None => assert!(
            status.signal().is_some()
                && matches!(moment, Moment::After(d) if d < Duration::from_secs(1)),
            "{status:?}: {said}"
        ),
        Some(other) => panic!("exit code {other} after SIG{signal}: {said}"),
    }
}
