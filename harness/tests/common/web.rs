//! Scheduling tests without containers: checks that GET paths of an HTTP server of the
//! test's own (the endpoints mode), run through the test target's entry point, and the
//! run's timeline read back from its Markdown summary. A binary using this sets the
//! process's environment: one test per binary.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

/// Only for the suite's validation: the endpoints file says where `web` runs.
const PLATFORM: &str = r#"
[services.web]
image = "platform-kit/base:bookworm"
ports = { http = 80 }
ready = [{ tcp = "http" }]
"#;

/// A check on `web`: its name, the checks it needs, the path it GETs (expecting 200).
pub type HttpCheck = (&'static str, &'static [&'static str], &'static str);

/// Answers every request with 200, after the delay of the first `(prefix, ms)` whose
/// prefix the path starts with (none: at once). Returns its port.
pub fn serve(delays: &'static [(&'static str, u64)]) -> u16 {
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
                let path = request_line.split(' ').nth(1).unwrap_or("");
                if let Some((_, ms)) = delays.iter().find(|(p, _)| path.starts_with(p)) {
                    std::thread::sleep(Duration::from_millis(*ms));
                }
                let _ = (&stream).write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    port
}

/// Runs `checks` against `web` on `port` with `--test-threads threads`: the exit code,
/// each check's (start, end) in ms, and the summary they come from (for messages).
pub fn run(
    port: u16,
    checks: &[HttpCheck],
    threads: usize,
) -> (ExitCode, BTreeMap<String, (u64, u64)>, String) {
    let dir = std::env::temp_dir().join(format!("harness-web-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(dir.join("suites/web.toml"), suite(checks)).unwrap();
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
    let code = super::libtest(&dir.join("libtest.log"), threads);
    let summary = std::fs::read_to_string(junit.with_file_name("platform-summary.md")).unwrap();
    (code, timeline(&summary), summary)
}

/// Each of `checks` as a check that GETs its path and expects 200.
fn suite(checks: &[HttpCheck]) -> String {
    checks
        .iter()
        .map(|(name, needs, path)| {
            let needs = if needs.is_empty() {
                String::new()
            } else {
                format!("needs = {needs:?}\n")
            };
            format!(
                "[[check]]\nname = \"{name}\"\n{needs}service = \"web\"\n[[check.step]]\n\
                 http.get = {{ path = \"{path}\", port = \"http\" }}\n\
                 expect = [{{ path = \"$.status\", equals = 200 }}]\n\n"
            )
        })
        .collect()
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
