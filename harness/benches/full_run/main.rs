//! How close the harness comes to the machine's physical limit. In one run, for the
//! platform's services (or those a filter's checks need: `cargo bench --bench full_run --
//! postgres`):
//! 1. bare: each image started alone with the docker CLI, readiness polled at 100 ms (the
//!    median of `BENCH_ROUNDS` starts);
//! 2. harness alone: the harness starting that service (and its dependencies) only;
//! 3. the full run of the selected checks, with services started by the scheduler, all at
//!    once (`parallel`, the former default) and one at a time (`serial`); `BENCH_ROUNDS=N` runs
//!    the modes N times in turn (default 1) and the summary takes each mode's median, so a
//!    difference between modes is not one noisy run's;
//! 4. the start alone (no checks): the harness against Docker Compose with 1 s
//!    healthchecks (`compose.yml`), for the default platform.
//!
//! Then per service: bare, alone, in the full run, the ratios and the CPU each used; per
//! run: wall against the physical limit (the larger of the critical path from bare times
//! and the CPU time of everything over the cores: containers, harness and the Docker
//! engine, whose part is also shown, with the ratio without it). Figures, not a timed test.

mod bare;
mod compose;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform_harness::platform::containers::ContainerPlatform;
use platform_harness::platform::{cpu, ServiceStart};
use platform_harness::report::limit::{longest_needs_chain, physical_limit, Limit, Outside};
use platform_harness::report::RunReport;
use platform_harness::run::{Paths, Session};
use platform_harness::secrets::Secrets;
use platform_harness::spec::Spec;

const CONCURRENCY: usize = 4;
const MODES: [&str; 3] = ["scheduled", "parallel", "serial"];

fn main() {
    if let Err(e) = bench() {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn bench() -> Result<(), String> {
    platform_harness::report::log::init();
    let paths = Paths::from_env(&root()).map_err(|e| e.to_string())?;
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let spec = Spec::load(&paths.platform, &paths.suites).map_err(|e| e.to_string())?;
    let checks: Vec<Arc<_>> = spec.checks().cloned().map(Arc::new).collect();
    let chosen: Vec<_> = checks
        .iter()
        .filter(|c| !c.ignore)
        .filter(|c| filter.as_ref().is_none_or(|f| c.id().contains(f.as_str())))
        .collect();
    let selected: BTreeSet<String> = chosen.iter().map(|c| c.id()).collect();
    let services = spec.services_for(chosen.iter().map(|c| c.as_ref()));
    let platform = &spec.platform;
    let secrets =
        Secrets::resolve(&platform.secrets, platform.base_dir()).map_err(|e| e.to_string())?;
    let deps: BTreeMap<String, Vec<String>> = platform
        .services
        .iter()
        .map(|(n, s)| (n.clone(), s.depends_on.clone()))
        .collect();
    let uses: BTreeMap<String, Vec<String>> = platform
        .services
        .iter()
        .map(|(n, s)| (n.clone(), s.uses.clone()))
        .collect();
    // Bare starts need only a service's dependencies; the harness starts what it uses too.
    let runs_with = platform.runs_with();
    let order = dependency_order(&services, &deps);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    println!(
        "{} checks on {} ({} cores): {}",
        selected.len(),
        paths.platform.display(),
        cores,
        order.join(", ")
    );

    let rounds = bench_rounds()?;
    println!(
        "\n== bare: docker create/cp/start, readiness polled from the host every 100 ms; \
         median of {rounds} round(s) ==",
    );
    // The limit is built from these: one noisy start would move every ratio below, so
    // they take as many rounds as the full runs.
    let mut bare = BTreeMap::new();
    for s in &order {
        let mut times = Vec::new();
        let mut cpus = Vec::new();
        for _ in 0..rounds {
            let run = bare::BareRun::new(&rt)?;
            for d in dependency_order(&closure(s, &deps), &deps) {
                if &d != s {
                    run.start(platform, &platform.services[&d], &secrets)?;
                }
            }
            times.push(
                run.start(platform, &platform.services[s], &secrets)?
                    .as_secs_f64(),
            );
            cpus.extend(run.cpu(s).map(|c| c.as_secs_f64()));
        }
        let took = Duration::from_secs_f64(median(&times));
        let cpu = (!cpus.is_empty()).then(|| Duration::from_secs_f64(median(&cpus)));
        println!(
            "  {s:<18} ready in {:>5.1} s ({}), CPU {}",
            took.as_secs_f64(),
            list(&times),
            show(cpu)
        );
        bare.insert(s.clone(), (took, cpu));
    }

    println!("\n== harness alone: one service (and its dependencies) started by the harness ==");
    let mut alone = BTreeMap::new();
    for s in &order {
        let (start, _) = rt.block_on(start_alone(
            platform,
            &closure(s, &runs_with),
            &secrets,
            std::slice::from_ref(s),
        ))?;
        let t = start.iter().find(|t| &t.service == s).cloned();
        let took = t.as_ref().and_then(|t| t.ready_in).unwrap_or_default();
        println!(
            "  {s:<18} ready in {:>5.1} s, CPU {}",
            took.as_secs_f64(),
            show(t.and_then(|t| t.cpu_to_ready))
        );
        alone.insert(s.clone(), took);
    }

    let bare_ready: BTreeMap<String, Duration> =
        bare.iter().map(|(s, (t, _))| (s.clone(), *t)).collect();
    let needs: BTreeMap<String, Vec<String>> =
        checks.iter().map(|c| (c.id(), c.needed_ids())).collect();
    let mut runs: BTreeMap<&str, Vec<(RunReport, Limit)>> = BTreeMap::new();
    // In turn rather than mode after mode: a machine's drift over the bench spreads evenly.
    for round in 1..=rounds {
        for mode in MODES {
            std::env::set_var("PLATFORM_START", mode);
            let (harness_before, engine_before) = (cpu::harness(), cpu::engine());
            let session = Arc::new(
                Session::start(&spec, &checks, &selected, None).map_err(|e| e.to_string())?,
            );
            let report = session.run_concurrently(&checks, CONCURRENCY, None);
            let limit = physical_limit(
                &report,
                &bare_ready,
                &deps,
                &uses,
                &needs,
                Outside {
                    harness: cpu::harness() - harness_before,
                    engine: engine_since(engine_before.as_ref()),
                },
                cores,
            );
            println!(
                "\n== full run, {mode} start (round {round} of {rounds}): {} checks ==",
                report.checks.len()
            );
            print_run(&report, &limit);
            runs.entry(mode).or_default().push((report, limit));
        }
    }
    std::env::set_var("PLATFORM_START", "scheduled");

    println!("\n== per service: bare | harness alone | in the full run (scheduled, round 1) ==");
    let (scheduled, _) = &runs["scheduled"][0];
    for s in &order {
        let (b, bare_cpu) = bare[s];
        let a = alone[s];
        let t = scheduled.services.iter().find(|t| &t.service == s);
        let full = t.and_then(|t| t.ready_in).unwrap_or_default();
        println!(
            "  {s:<18} {:>5.1} s | {:>5.1} s ({:.2}x) | {:>5.1} s ({:.2}x); CPU to ready bare {} / in run {}, over the run {}",
            b.as_secs_f64(),
            a.as_secs_f64(),
            ratio(a, b),
            full.as_secs_f64(),
            ratio(full, b),
            show(bare_cpu),
            show(t.and_then(|t| t.cpu_to_ready)),
            show(t.and_then(|t| t.cpu_total)),
        );
    }

    let warm = warm_runs(&root(), &paths.platform, &spec, &checks, &selected)?;

    let all: Vec<String> = order.clone();
    let mut start_only = String::new();
    if !filter_narrows(&services, platform) {
        println!("\n== the start alone, no checks: every service ready ==");
        let (_, harness) = rt.block_on(start_alone(platform, &services, &secrets, &all))?;
        println!("  harness (scheduled)    {:>5.1} s", harness.as_secs_f64());
        match compose::all_ready(platform, &secrets) {
            Ok(c) if paths.platform.ends_with("fixtures/platform.toml") => {
                println!(
                    "  docker compose (1 s healthchecks) {:>5.1} s",
                    c.as_secs_f64()
                );
                start_only = format!(
                    "; all ready: harness {:.1} s vs compose {:.1} s ({:+.0} %)",
                    harness.as_secs_f64(),
                    c.as_secs_f64(),
                    100.0 * (harness.as_secs_f64() / c.as_secs_f64() - 1.0)
                );
            }
            Ok(_) => println!("  compose: compose.yml describes the default platform only"),
            Err(e) => println!("  compose: not measured: {e}"),
        }
    }

    // Each mode's median over the rounds, and the values it is taken from.
    let of_mode = |m: &str, f: &dyn Fn(&RunReport, &Limit) -> Option<f64>| {
        let values: Vec<f64> = runs[m].iter().filter_map(|(r, l)| f(r, l)).collect();
        (median(&values), list(&values))
    };
    let wall_of = |r: &RunReport, _: &Limit| Some(r.wall.as_secs_f64());
    let to_limit = |r: &RunReport, l: &Limit| Some(r.wall.as_secs_f64() / l.value().as_secs_f64());
    // The long pole: the service the bare starts found slowest, whose start in the run
    // decides the wall.
    let pole = bare
        .iter()
        .max_by_key(|(_, (t, _))| *t)
        .map(|(s, _)| s.clone());
    let pole_ready = |r: &RunReport, _: &Limit| {
        let s = r
            .services
            .iter()
            .find(|s| Some(&s.service) == pole.as_ref())?;
        Some(s.ready_in?.as_secs_f64())
    };
    println!("\n== full runs by mode, {rounds} round(s), median (each round) ==");
    for mode in MODES {
        let ((w, ws), (x, _), (p, ps)) = (
            of_mode(mode, &wall_of),
            of_mode(mode, &to_limit),
            of_mode(mode, &pole_ready),
        );
        let pole = pole.as_deref().unwrap_or("-");
        println!(
            "  {mode:<10} wall {w:.1} s ({ws}), {x:.2}x limit; {pole} ready in {p:.1} s ({ps})"
        );
    }

    let wall = |m: &str| of_mode(m, &wall_of).0;
    // The most any start order could save against serial: a run at its physical limit.
    let limit = of_mode("scheduled", &|_, l| Some(l.value().as_secs_f64())).0;
    let without_engine =
        |r: &RunReport, l: &Limit| Some(r.wall.as_secs_f64() / l.without_engine().as_secs_f64());
    println!(
        "\nwall {:.1} s = {:.2}x limit {:.1} s (critical path {:.1} s, CPU {:.0} s with the engine's {:.1} s / {} cores; \
         {:.2}x without the engine's); scheduled saves {:.0} % vs serial ({:.1} s; {:.0} % at the limit), {:.0} % vs parallel ({:.1} s){start_only}",
        wall("scheduled"),
        of_mode("scheduled", &to_limit).0,
        limit,
        of_mode("scheduled", &|_, l| Some(l.critical_path.as_secs_f64())).0,
        of_mode("scheduled", &|_, l| Some(l.cpu.as_secs_f64())).0,
        of_mode("scheduled", &|_, l| Some(l.engine_cpu.as_secs_f64())).0,
        cores,
        of_mode("scheduled", &without_engine).0,
        100.0 * (1.0 - wall("scheduled") / wall("serial")),
        wall("serial"),
        100.0 * (1.0 - limit / wall("serial")),
        100.0 * (1.0 - wall("scheduled") / wall("parallel")),
        wall("parallel"),
    );
    println!("{warm}");
    Ok(())
}

/// The engine's CPU since `before` (zero when it is not visible from here).
fn engine_since(before: Option<&cpu::EngineReading>) -> Duration {
    match (cpu::engine(), before) {
        (Some(now), Some(then)) => now.since(then),
        _ => Duration::ZERO,
    }
}

fn root() -> std::path::PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The platform brought `up` once, then PostgreSQL's checks alone and the selected checks
/// (twice) run warm against it (attach included), then `down`. Returns the summary line.
fn warm_runs(
    root: &Path,
    platform: &Path,
    spec: &Spec,
    checks: &[Arc<platform_harness::spec::Check>],
    selected: &BTreeSet<String>,
) -> Result<String, String> {
    println!("\n== warm: checks against a platform left up by `platform-verify up` ==");
    let started = Instant::now();
    let code = platform_harness::run::up::up(
        root,
        &spec.platform,
        &[],
        platform_harness::platform::backend::Backend::Containers,
    );
    let up_took = started.elapsed();
    let found = platform_harness::platform::up::find(root, platform).map_err(|e| e.to_string())?;
    if code != std::process::ExitCode::SUCCESS || found.is_none() {
        platform_harness::run::up::down(root, platform, None);
        return Err("`up` did not leave a platform to attach to".into());
    }
    let postgres: BTreeSet<String> = selected
        .iter()
        .filter(|id| id.starts_with("postgres::"))
        .cloned()
        .collect();
    let needs: BTreeMap<String, Vec<String>> =
        checks.iter().map(|c| (c.id(), c.needed_ids())).collect();
    // The warm run's third bound: the CPU its checks make the platform (and the harness)
    // spend, over the cores.
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let docker = platform_harness::platform::docker::connect()?;
    let platform_cpu = |state: &platform_harness::platform::up::UpState| -> Duration {
        state
            .services
            .values()
            .filter_map(|s| rt.block_on(cpu::container(&docker, &s.container)))
            .sum::<Duration>()
            + cpu::harness()
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let mut line = format!("warm: up {:.1} s", up_took.as_secs_f64());
    // The first full run after `up` meets servers whose query paths never ran (Trino's and
    // Kafka's JIT, MLflow's imports); the re-runs of a developer's loop do not: both count.
    let runs = [
        ("-- postgres", &postgres),
        ("full", selected),
        ("full again", selected),
    ];
    for (label, chosen) in runs {
        if chosen.is_empty() {
            continue;
        }
        let cpu_before = found
            .as_ref()
            .map(|(_, s)| platform_cpu(s))
            .unwrap_or_default();
        let engine_before = cpu::engine();
        let t = Instant::now();
        let session = Arc::new(
            Session::start_on(spec, checks, chosen, None, found.as_ref())
                .map_err(|e| e.to_string())?,
        );
        let report = session.run_concurrently(checks, CONCURRENCY, None);
        let wall = t.elapsed();
        let sum: Duration = report.checks.iter().map(|c| c.duration).sum();
        let spread = sum.as_secs_f64() / CONCURRENCY as f64;
        let chain = longest_needs_chain(&report.checks, &needs).as_secs_f64();
        let cpu_used = found
            .as_ref()
            .map(|(_, s)| platform_cpu(s))
            .unwrap_or_default()
            - cpu_before
            + engine_since(engine_before.as_ref());
        let cpu_bound = cpu_used.as_secs_f64() / cores;
        println!(
            "  {label:<12} wall {:.2} s, {} checks, their sum {:.1} s / {CONCURRENCY} = {spread:.2} s -> {:.2}x; longest `needs` chain {chain:.2} s; CPU {:.1} s / {cores} cores = {cpu_bound:.2} s; -> {:.2}x the largest",
            wall.as_secs_f64(),
            report.checks.len(),
            sum.as_secs_f64(),
            wall.as_secs_f64() / spread.max(1e-3),
            cpu_used.as_secs_f64(),
            wall.as_secs_f64() / spread.max(chain).max(cpu_bound).max(1e-3)
        );
        line.push_str(&format!("; {label} {:.2} s", wall.as_secs_f64()));
    }
    platform_harness::run::up::down(root, platform, None);
    Ok(line)
}

/// Starts `services` with the harness's backend (no checks), waits until `wait_for` are
/// ready or failed, tears down; returns what the starts recorded and the wall time from
/// the start call (engine check, reaper, network included) until all were ready.
async fn start_alone(
    platform: &platform_harness::spec::PlatformSpec,
    services: &BTreeSet<String>,
    secrets: &Secrets,
    wait_for: &[String],
) -> Result<(Vec<ServiceStart>, Duration), String> {
    let run_id = format!("bench{}", &bare::uuid_hex()[..8]);
    let started = Instant::now();
    // No checks: nothing waits for a service but its dependents.
    let p = ContainerPlatform::start(platform, services, &Default::default(), secrets, &run_id)
        .await
        .map_err(|e| e.to_string())?;
    let ready = futures::future::join_all(wait_for.iter().map(|s| p.endpoint(s))).await;
    let wall = started.elapsed();
    let timings = p.timings();
    let cleanup = p.shutdown().await;
    cleanup
        .problems
        .iter()
        .for_each(|e| eprintln!("cleanup: {e}"));
    for r in ready {
        r.map_err(|f| format!("{}: {}", f.service, f.message))?;
    }
    Ok((timings, wall))
}

fn print_run(report: &RunReport, limit: &Limit) {
    let passed = report.checks.iter().filter(|c| c.outcome.is_pass()).count();
    println!(
        "  wall {:.1} s (its teardown {:.2} s), {passed}/{} passed; limit {:.1} s (critical path {:.1} s{}, CPU {:.1} s with the engine's {:.1} s / {} cores) -> {:.2}x ({:.2}x without the engine's)",
        report.wall.as_secs_f64(),
        report.teardown.as_secs_f64(),
        report.checks.len(),
        limit.value().as_secs_f64(),
        limit.critical_path.as_secs_f64(),
        limit
            .critical_check
            .as_ref()
            .map(|(c, s)| format!(": {s}, then {c}"))
            .unwrap_or_default(),
        limit.cpu.as_secs_f64(),
        limit.engine_cpu.as_secs_f64(),
        limit.cores,
        report.wall.as_secs_f64() / limit.value().as_secs_f64(),
        report.wall.as_secs_f64() / limit.without_engine().as_secs_f64()
    );
    let mut services = report.services.clone();
    services.sort_by_key(|s| s.ready_at);
    for s in &services {
        println!(
            "  {:<18} start-to-ready {:>5.1} s, ready at {:>5.1} s, CPU to ready {}, over the run {}{}",
            s.service,
            s.ready_in.unwrap_or_default().as_secs_f64(),
            s.ready_at.unwrap_or_default().as_secs_f64(),
            show(s.cpu_to_ready),
            show(s.cpu_total),
            if s.failure.is_some() { "  FAILED" } else { "" }
        );
    }
    let in_checks: Duration = report.checks.iter().map(|c| c.duration).sum();
    println!("  time in checks (sum): {:.1} s", in_checks.as_secs_f64());
}

/// `BENCH_ROUNDS`: how many times the full run's modes go in turn.
fn bench_rounds() -> Result<usize, String> {
    match std::env::var("BENCH_ROUNDS") {
        Ok(v) if !v.is_empty() => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("BENCH_ROUNDS={v:?}: give a number of rounds, e.g. 3")),
        _ => Ok(1),
    }
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn list(values: &[f64]) -> String {
    let shown: Vec<String> = values.iter().map(|v| format!("{v:.1}")).collect();
    shown.join(", ")
}

fn show(cpu: Option<Duration>) -> String {
    cpu.map_or("?".into(), |c| format!("{:.1} s", c.as_secs_f64()))
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-3)
}

/// Whether a filter left out some of the platform's services (then the start-alone
/// comparison, which is about the whole platform, is skipped).
fn filter_narrows(
    services: &BTreeSet<String>,
    platform: &platform_harness::spec::PlatformSpec,
) -> bool {
    services.len() < platform.services.len()
}

fn closure(service: &str, deps: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    platform_harness::spec::graph::closure([service], deps)
}

/// Dependencies before dependents, by name otherwise.
fn dependency_order(
    services: &BTreeSet<String>,
    deps: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    while order.len() < services.len() {
        let before = order.len();
        for s in services {
            let ready = deps
                .get(s)
                .into_iter()
                .flatten()
                .all(|d| order.contains(d) || !services.contains(d));
            if !order.contains(s) && ready {
                order.push(s.clone());
            }
        }
        if order.len() == before {
            break;
        }
    }
    order
}
