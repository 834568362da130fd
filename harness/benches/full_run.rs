//! The full platform run, measured: wall time, each service's time to ready, the critical
//! path, and the same run with services started one at a time. A benchmark that prints
//! figures, not a timed test: `cargo bench --bench full_run [-- FILTER]`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use platform_harness::report::RunReport;
use platform_harness::run::{Paths, Session};
use platform_harness::spec::Spec;

fn main() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let paths =
        Paths::from_env(manifest.parent().unwrap_or(manifest)).unwrap_or_else(|e| panic!("{e}"));
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let spec = Spec::load(&paths.platform, &paths.suites).unwrap_or_else(|e| panic!("{e}"));
    let checks: Vec<Arc<_>> = spec.checks().cloned().map(Arc::new).collect();
    let selected: BTreeSet<String> = checks
        .iter()
        .filter(|c| !c.ignore)
        .map(|c| c.id())
        .filter(|id| filter.as_ref().is_none_or(|f| id.contains(f.as_str())))
        .collect();

    let mut walls = Vec::new();
    for mode in ["parallel", "serial"] {
        std::env::set_var("PLATFORM_START", mode);
        let session = Arc::new(
            Session::start(&spec, &checks, &selected, None).unwrap_or_else(|e| panic!("{e}")),
        );
        let report = session.run_concurrently(&checks, 4, None);
        println!("\n== {mode} start: {} checks ==", report.checks.len());
        print_report(&report);
        walls.push((mode, report.wall));
    }
    let (p, s) = (walls[0].1.as_secs_f64(), walls[1].1.as_secs_f64());
    println!(
        "\nwall: parallel {p:.1} s, serial {s:.1} s: parallel start saves {:.1} s ({:.0}%)",
        s - p,
        100.0 * (s - p) / s
    );
}

fn print_report(report: &RunReport) {
    let passed = report.checks.iter().filter(|c| c.outcome.is_pass()).count();
    println!(
        "wall time {:.1} s, {passed}/{} passed",
        report.wall.as_secs_f64(),
        report.checks.len()
    );
    let mut services = report.services.clone();
    services.sort_by_key(|s| s.ready_at);
    for s in &services {
        println!(
            "  {:<9} start-to-ready {:>5.1} s, ready at {:>5.1} s{}",
            s.service,
            s.ready_in.unwrap_or_default().as_secs_f64(),
            s.ready_at.unwrap_or_default().as_secs_f64(),
            if s.failure.is_some() { "  FAILED" } else { "" }
        );
    }
    // A check can start once its last service is ready: that plus its duration is when
    // it ends; the check ending last closes the critical path.
    let ready_at = |name: &str| {
        services
            .iter()
            .find(|s| s.service == name)
            .and_then(|s| s.ready_at)
            .unwrap_or_default()
    };
    let slowest_checks = report
        .checks
        .iter()
        .map(|c| {
            let services_of: Vec<String> = c.steps.iter().map(|s| s.service.clone()).collect();
            let last = services_of
                .iter()
                .max_by_key(|s| ready_at(s))
                .cloned()
                .unwrap_or_default();
            (ready_at(&last) + c.duration, last, c)
        })
        .max_by_key(|(end, _, _)| *end);
    if let Some((end, service, check)) = slowest_checks {
        println!(
            "  critical path: {service} ready at {:.1} s + {}::{} {:.1} s = {:.1} s",
            ready_at(&service).as_secs_f64(),
            check.suite,
            check.name,
            check.duration.as_secs_f64(),
            end.as_secs_f64()
        );
    }
    let total_checks: Duration = report.checks.iter().map(|c| c.duration).sum();
    println!(
        "  time in checks (sum): {:.1} s",
        total_checks.as_secs_f64()
    );
}
