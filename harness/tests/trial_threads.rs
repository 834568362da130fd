//! `cargo test --test platform -- --test-threads=2`: checks waiting for a chain of `needs`
//! never keep ready checks from running. Against an HTTP server of the test's own (the
//! endpoints mode: nothing starts), whose `/slow` answers after 600 ms. Driven in-process
//! through the target's entry point; alone in its binary because it sets the environment.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use libtest_mimic::Arguments;

/// Only for the suite's validation: the endpoints file says where `web` runs.
const PLATFORM: &str = r#"
[services.web]
image = "platform-kit/base:bookworm"
ports = { http = 80 }
ready = [{ tcp = "http" }]
"#;

/// The chain first in the file, as the pipeline suite comes before postgres': with one
/// libtest thread per slot, `second` and `third` held both threads while `first` ran.
const CHECKS: [(&str, Option<&str>, &str); 5] = [
    ("first", None, "/slow"),
    ("second", Some("first"), "/slow"),
    ("third", Some("second"), "/slow"),
    ("ready_a", None, "/fast"),
    ("ready_b", None, "/fast"),
];

/// Each of `CHECKS` as a check that GETs its path and expects 200.
fn suite() -> String {
    CHECKS
        .iter()
        .map(|(name, needs, path)| {
            let needs = needs.map_or(String::new(), |n| format!("needs = [\"{n}\"]\n"));
            format!(
                "[[check]]\nname = \"{name}\"\n{needs}service = \"web\"\n[[check.step]]\n\
                 http.get = {{ path = \"{path}\", port = \"http\" }}\n\
                 expect = [{{ path = \"$.status\", equals = 200 }}]\n\n"
            )
        })
        .collect()
}

/// Answers every request with 200, after 600 ms for paths under `/slow`.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                // The rest of the head, up to the blank line.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                if request_line.contains(" /slow") {
                    std::thread::sleep(Duration::from_millis(600));
                }
                let _ = (&stream).write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    port
}

/// Each check's (start, end) in ms from the summary's timeline.
fn timeline(summary: &str) -> BTreeMap<String, (u64, u64)> {
    summary
        .lines()
        .filter_map(|l| {
            let (name, times) = l.trim().split_once(" :done, ")?;
            let (from, to) = times.split_once(", ")?;
            Some((name.to_string(), (from.parse().ok()?, to.parse().ok()?)))
        })
        .collect()
}

#[test]
fn ready_checks_run_while_a_chain_of_needs_waits_on_its_predecessors() {
    let port = serve();
    let dir = std::env::temp_dir().join(format!("harness-tt-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(dir.join("suites/chain.toml"), suite()).unwrap();
    std::fs::write(dir.join("platform.toml"), PLATFORM).unwrap();
    std::fs::write(
        dir.join("endpoints.toml"),
        format!("[services.web]\nhost = \"127.0.0.1\"\nports = {{ http = {port} }}\n"),
    )
    .unwrap();
    let junit = dir.join("junit.xml");
    std::env::set_var("PLATFORM_SPEC", dir.join("platform.toml"));
    std::env::set_var("PLATFORM_SUITES", dir.join("suites"));
    std::env::set_var("PLATFORM_ENDPOINTS", dir.join("endpoints.toml"));
    std::env::set_var("PLATFORM_JUNIT", &junit);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let log = dir.join("libtest.log");

    let code = platform_harness::run::libtest_run(
        root,
        Arguments::from_iter([
            "platform",
            "--logfile",
            log.to_str().unwrap(),
            "--test-threads",
            "2",
        ]),
    );

    assert_eq!(code, ExitCode::SUCCESS);
    let summary = std::fs::read_to_string(junit.with_file_name("platform-summary.md")).unwrap();
    let t = timeline(&summary);
    assert_eq!(t.len(), 5, "{summary}");
    let (first, second, third) = (t["first"], t["second"], t["third"]);
    assert!(first.1 <= second.0 && second.1 <= third.0, "{summary}");
    // Both ready checks done while `first` still ran: the waiting ones held no slot.
    for ready in ["ready_a", "ready_b"] {
        assert!(t[ready].1 < first.1, "{ready} waited: {summary}");
    }
    // Two slots: never more than two checks ran at once.
    let ran: Vec<(u64, u64)> = t.values().copied().collect();
    for &(from, _) in &ran {
        let at_once = ran.iter().filter(|&&(s, e)| s <= from && from < e).count();
        assert!(at_once <= 2, "{at_once} at once at {from} ms: {summary}");
    }
}
