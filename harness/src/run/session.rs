//! A started run: its platform, the checks' results as they arrive (for `needs`), and
//! the records the reports are made from.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use tokio::sync::watch;

use super::slots::{needs_of, Slot, Slots};
use super::{interrupt, RunError};
use crate::checks::{run_check_with, CheckRun, Outcome, Vars};
use crate::platform::backend::Backend;
use crate::platform::containers::ContainerPlatform;
use crate::platform::external::ExternalPlatform;
use crate::platform::kubernetes::backend::KubeBackend;
use crate::platform::network::RunNetwork;
use crate::platform::up::UpState;
use crate::platform::{docker, Platform};
use crate::report::console::{failure_text, verdict_word};
use crate::report::{console, write_reports, CheckRecord, RunReport};
use crate::secrets::{Masker, Secrets};
use crate::spec::graph;
use crate::spec::{Check, Spec};
use tracing::Instrument;

/// A started run. Dropping it removes every container of the run, also during a panic.
pub struct Session {
    rt: tokio::runtime::Runtime,
    platform: Option<Platform>,
    /// Why the platform could not start (engine down, image missing): every check that
    /// needs a service errors with it.
    platform_error: Option<String>,
    masker: Masker,
    run_id: String,
    selected: BTreeSet<String>,
    results: Mutex<HashMap<String, CheckRun>>,
    done: watch::Sender<usize>,
    records: Mutex<Vec<CheckRecord>>,
    started: Instant,
    /// Whole-run bound, counted from `started`: checks still running are errors.
    deadline: OnceLock<Duration>,
    /// Bounds the checks that run at once (`run_concurrently`, `--test-threads`); a check
    /// takes a slot only once its predecessors passed and its services are ready, so a
    /// check still waiting never keeps a ready one from running.
    slots: OnceLock<Arc<Slots>>,
    /// Each service's dependencies and the services it uses, for the log tails and exit
    /// states of a failed check.
    runs_with: BTreeMap<String, Vec<String>>,
    torn_down: AtomicBool,
    /// Checks no trial runs that selected ones need (`pull`): run once, by the first
    /// check that waits for them.
    pulled: BTreeMap<String, (Arc<Check>, tokio::sync::OnceCell<()>)>,
}

/// Most threads libtest gets for waiting trials (`trial_threads`): a bound on a run of
/// thousands of checks, far above any platform's suites here.
const MAX_TRIAL_THREADS: usize = 256;

/// libtest's threads and the session's slots for `--test-threads=N` (N > 1). A trial
/// holds its libtest thread while it waits for the checks it needs and for its services;
/// with N threads, N trials waiting on a chain of `needs` or on a slow start kept every
/// ready check from running (seen: the postgres suite idle behind the pipeline's chain in
/// a warm run). So each trial gets a thread, and N slots bound the checks that run.
/// With one thread libtest runs the trials in order on its own thread: left as it is.
fn trial_threads(args: &Arguments, trials: usize) -> (Arguments, Option<usize>) {
    let mut args = args.clone();
    match args.test_threads {
        Some(n) if n > 1 => {
            args.test_threads = Some(trials.clamp(n, MAX_TRIAL_THREADS.max(n)));
            (args, Some(n))
        }
        _ => (args, None),
    }
}

/// How a check was cut short.
const INTERRUPTED: &str = "interrupted: the run was stopped by a signal before this check finished";

impl Session {
    /// Starts the services the selected checks need, or, with `endpoints`, takes an
    /// already-running platform and starts nothing.
    pub fn start(
        spec: &Spec,
        checks: &[Arc<Check>],
        selected: &BTreeSet<String>,
        endpoints: Option<&Path>,
    ) -> Result<Self, RunError> {
        Self::start_on(spec, checks, selected, endpoints, None)
    }

    /// As `start`; with `up` (a state file and its state), the run attaches to that `up`
    /// platform and starts only the services it lacks, on its network. A spec that changed
    /// since `up`, or an `up` service that is gone, is an error before anything starts.
    pub fn start_on(
        spec: &Spec,
        checks: &[Arc<Check>],
        selected: &BTreeSet<String>,
        endpoints: Option<&Path>,
        up: Option<&(PathBuf, UpState)>,
    ) -> Result<Self, RunError> {
        // Idempotent; here for callers that drive a session without an entry point.
        crate::report::log::init();
        let started = Instant::now();
        interrupt::install();
        let external = endpoints.map(ExternalPlatform::load).transpose()?;
        if let Some(e) = &external {
            // One clear error before anything runs, rather than one per check.
            let missing: Vec<String> = checks
                .iter()
                .filter(|c| selected.contains(&c.id()))
                .flat_map(|c| c.services())
                .filter(|s| !e.endpoints.contains_key(s))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if !missing.is_empty() {
                return Err(RunError::MissingEndpoints {
                    file: e.file.clone(),
                    services: missing,
                });
            }
        }
        let secrets = match &external {
            // The platform spec's secrets belong to the containers it would start.
            Some(_) => Secrets::default(),
            None => Secrets::resolve(&spec.platform.secrets, spec.platform.base_dir())?,
        };
        let mut masker = secrets.masker();
        if let Some(e) = &external {
            masker.extend(e.credential_values_secret());
        }
        console::init(masker.clone());
        let backend = super::warm::backend_for(up.map(|(_, s)| s))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(RunError::Runtime)?;
        let run_id = crate::kinds::unique_id(10);
        let to_run = || {
            checks
                .iter()
                .filter(|c| selected.contains(&c.id()))
                .map(|c| c.as_ref())
        };
        let needed = spec.services_for(to_run());
        let mut attached = None;
        let mut kube_warm = None;
        if let Some((path, state)) = up.filter(|_| external.is_none() && !needed.is_empty()) {
            match &state.namespace {
                None => {
                    attached = Some(
                        rt.block_on(super::warm::attach(path, state, spec, &secrets, &needed))?,
                    )
                }
                Some(ns) => {
                    kube_warm = Some(rt.block_on(super::warm::attach_kube(
                        path, state, ns, spec, &secrets, &needed,
                    ))?)
                }
            }
        }
        // Before anything of the run exists, so a signal at any moment is accounted for.
        interrupt::register(&run_id);
        let (platform, platform_error) = if let Some(e) = external {
            console::say(format!(
                "platform: verifying the running platform of {}",
                e.file.display()
            ));
            (Some(Platform::External(e)), None)
        } else if needed.is_empty() {
            (None, None)
        } else if interrupt::interrupted() {
            (None, Some(INTERRUPTED.to_string()))
        } else {
            let to_start: Vec<String> = needed
                .iter()
                .filter(|s| {
                    kube_warm.is_none()
                        && !attached
                            .as_ref()
                            .is_some_and(|a| a.running.contains_key(*s))
                })
                .cloned()
                .collect();
            if !to_start.is_empty() {
                console::say(format!(
                    "platform: run {run_id}: starting {}",
                    to_start.join(", ")
                ));
            }
            let started = match backend {
                Backend::Containers => rt
                    .block_on(ContainerPlatform::start_on(
                        &spec.platform,
                        &needed,
                        // Only the container scheduler holds starts back.
                        &Spec::waiters(to_run()),
                        &secrets,
                        &run_id,
                        attached.map_or_else(
                            || RunNetwork::for_services(&spec.platform, &needed),
                            RunNetwork::Attached,
                        ),
                    ))
                    .map(Platform::Containers)
                    .map_err(|e| e.to_string()),
                Backend::Kubernetes => match kube_warm {
                    Some(warm) => Ok(Platform::Kubernetes(warm)),
                    None => rt
                        .block_on(KubeBackend::start(
                            &spec.platform,
                            &needed,
                            &secrets,
                            &run_id,
                        ))
                        .map(Platform::Kubernetes),
                },
            };
            match started {
                Ok(p) => (Some(p), None),
                Err(e) => {
                    console::say(format!("error: {e}"));
                    (None, Some(e))
                }
            }
        };
        Ok(Self {
            rt,
            platform,
            platform_error,
            masker,
            run_id,
            selected: selected.clone(),
            results: Mutex::new(HashMap::new()),
            done: watch::channel(0).0,
            records: Mutex::new(Vec::new()),
            started,
            deadline: OnceLock::new(),
            slots: OnceLock::new(),
            runs_with: spec.platform.runs_with(),
            torn_down: AtomicBool::new(false),
            pulled: BTreeMap::new(),
        })
    }

    /// Checks that no trial of this process runs but selected checks need (a process per
    /// trial, as cargo-nextest runs them): they run when first waited for. They must be in
    /// the session's selection, so their services start.
    pub fn pull(&mut self, checks: impl IntoIterator<Item = Arc<Check>>) {
        for c in checks {
            self.pulled
                .insert(c.id(), (c, tokio::sync::OnceCell::new()));
        }
    }

    /// Bounds the whole run (counted from its start): checks not finished by then are
    /// errors "the run's deadline of X passed". The first call wins.
    pub fn set_deadline(&self, deadline: Duration) {
        let _ = self.deadline.set(deadline);
    }

    pub(super) fn run_libtest(
        self,
        args: &Arguments,
        checks: Vec<Arc<Check>>,
        junit_path: Option<&Path>,
    ) -> ExitCode {
        let (args, slots) = trial_threads(args, checks.len());
        if let Some(slots) = slots {
            let _ = self.slots.set(Slots::new(slots, needs_of(&checks)));
        }
        let session = Arc::new(self);
        let trials: Vec<Trial> = checks
            .into_iter()
            .map(|c| {
                let s = session.clone();
                let ignore = c.ignore;
                Trial::test(c.id(), move || s.trial(&c)).with_ignored_flag(ignore)
            })
            .collect();
        let conclusion = libtest_mimic::run(&args, trials);
        let report = session.finish();
        if let Some(junit_path) = junit_path {
            write_reports(&report, &session.masker, junit_path);
        }
        if interrupt::interrupted() {
            ExitCode::from(interrupt::EXIT_CODE)
        } else {
            conclusion.exit_code()
        }
    }

    /// Labels every container and network of this run (`org.platform-harness.run`).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Runs one check to completion and records it; `Err` carries libtest's message.
    pub fn trial(&self, check: &Check) -> Result<(), Failed> {
        let record = self.rt.block_on(self.execute(check));
        let verdict = failure_text(&record);
        if let Ok(mut r) = self.records.lock() {
            r.push(record);
        }
        match verdict {
            None => Ok(()),
            Some(text) => Err(Failed::from(self.masker.mask(&text))),
        }
    }

    /// Runs the selected checks as tasks, at most `concurrency` at once. Checks still
    /// running when `deadline` (counted from the run's start) passes are reported as
    /// errors. Returns the report after tearing the platform down.
    pub fn run_concurrently(
        self: &Arc<Self>,
        checks: &[Arc<Check>],
        concurrency: usize,
        deadline: Option<Duration>,
    ) -> RunReport {
        use futures::StreamExt;
        if let Some(d) = deadline {
            self.set_deadline(d);
        }
        let selected: Vec<Arc<Check>> = checks
            .iter()
            .filter(|c| self.selected.contains(&c.id()))
            .cloned()
            .collect();
        // Every check waits at once (for its predecessors and services); the slots bound
        // how many run.
        let _ = self.slots.set(Slots::new(concurrency, needs_of(&selected)));
        let waiting = selected.len().max(1);
        let work = futures::stream::iter(selected)
            .map(|c| {
                let s = self.clone();
                async move {
                    let record = s.execute(&c).await;
                    console::say(format!(
                        "{} {} ({:.2} s)",
                        verdict_word(&record.outcome),
                        c.id(),
                        record.duration.as_secs_f64()
                    ));
                    if let Some(text) = failure_text(&record) {
                        console::say(format!("    {}", text.replace('\n', "\n    ")));
                    }
                    if let Ok(mut r) = s.records.lock() {
                        r.push(record);
                    }
                }
            })
            .buffer_unordered(waiting)
            .collect::<Vec<()>>();
        self.rt.block_on(work);
        self.finish()
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }
}

impl Session {
    async fn execute(&self, check: &Check) -> CheckRecord {
        let span = tracing::info_span!("check", id = %check.id());
        self.execute_in_span(check).instrument(span).await
    }

    async fn execute_in_span(&self, check: &Check) -> CheckRecord {
        let started = Instant::now();
        let cut_short = |why: String| CheckRun {
            outcome: Outcome::Errored(why),
            steps: Vec::new(),
            vars: Vars::new(),
            duration: started.elapsed(),
        };
        let deadline = async {
            match self.deadline.get() {
                Some(d) => {
                    tokio::time::sleep_until((self.started + *d).into()).await;
                    format!(
                        "the run's deadline of {} passed before this check finished",
                        humantime::format_duration(*d)
                    )
                }
                None => std::future::pending().await,
            }
        };
        // `blocked`: a predecessor kept the check from reaching its services, so how those
        // services ended is no cause of its verdict.
        let (mut run, blocked, slot) = tokio::select! {
            biased;
            _ = interrupt::wait() => (cut_short(INTERRUPTED.to_string()), false, None),
            why = deadline => (cut_short(why), false, None),
            run = self.run_one(check, started) => run,
        };
        // Before the slot goes: the timeline never shows more checks at once than slots.
        let ended = self.started.elapsed();
        // Handed on before the result is published, so that a check that waited for this
        // one finds its slot when it asks.
        match slot {
            Some(slot) if run.outcome.is_pass() => slot.pass_on(|id| self.passed(id)),
            _ => drop(slot),
        }
        let mut service_logs = Vec::new();
        // An interrupted run stops; it does not collect evidence.
        if !run.outcome.is_pass() && !interrupt::interrupted() {
            if let Some(p) = &self.platform {
                let (logs, exits) = self.evidence(p, check).await;
                service_logs = logs;
                if !exits.is_empty() && !blocked {
                    run.outcome = with_cause(&run.outcome, &exits.join("; "));
                }
            }
        }
        let record = CheckRecord {
            suite: check.suite.clone(),
            name: check.name.clone(),
            location: check.location.clone(),
            outcome: run.outcome.clone(),
            started_at: ended.saturating_sub(run.duration),
            duration: run.duration,
            steps: run.steps.clone(),
            service_logs,
        };
        if let Ok(mut r) = self.results.lock() {
            r.insert(check.id(), run);
        }
        self.done.send_modify(|n| *n += 1);
        record
    }

    /// The check's run, whether a predecessor that did not pass blocked it, and the slot
    /// it ran in.
    async fn run_one(&self, check: &Check, started: Instant) -> (CheckRun, bool, Option<Slot>) {
        let not_run = |outcome| CheckRun {
            outcome,
            steps: Vec::new(),
            vars: Vars::new(),
            duration: started.elapsed(),
        };
        let heir = self.slots.get().map(|slots| slots.heir(&check.id()));
        let vars = match self.predecessors(check).await {
            Ok(vars) => vars,
            Err(outcome) => return (not_run(outcome), true, None),
        };
        let endpoints = self.endpoints(check);
        tokio::pin!(endpoints);
        let endpoints = match futures::poll!(endpoints.as_mut()) {
            std::task::Poll::Ready(ready) => ready,
            std::task::Poll::Pending => {
                // Its services are still starting: a slot handed to it would sit idle.
                drop(heir);
                endpoints.await
            }
        };
        match endpoints {
            Ok(endpoints) => {
                let slot = match self.slots.get() {
                    Some(slots) => Some(slots.acquire(&check.id()).await),
                    None => None,
                };
                let shell = self.platform.as_ref().and_then(Platform::shell);
                let run = run_check_with(check, &endpoints, vars, shell).await;
                (run, false, slot)
            }
            Err(outcome) => (not_run(outcome), false, None),
        }
    }

    fn passed(&self, id: &str) -> bool {
        self.results
            .lock()
            .is_ok_and(|r| r.get(id).is_some_and(|run| run.outcome.is_pass()))
    }

    /// For a check that did not pass: the log tails of its services and of the services
    /// they depend on, and which of their containers exited ("postgres exited: killed,
    /// exit code 137"). Bounded: evidence must not hang the verdict.
    async fn evidence(&self, p: &Platform, check: &Check) -> (Vec<(String, String)>, Vec<String>) {
        let direct = check.services();
        let all = graph::closure(direct.iter().map(String::as_str), &self.runs_with);
        // The check's own services first, then their dependencies.
        let mut order: Vec<String> = direct.iter().cloned().collect();
        order.extend(all.into_iter().filter(|s| !direct.contains(s)));
        let gather = async {
            let mut logs = Vec::new();
            let mut exits = Vec::new();
            for s in order {
                if let Some(exit) = p.exited(&s).await {
                    exits.push(format!("{s} {exit}"));
                }
                let mut tail = p.log_tail(&s).await;
                // A check's own failed service already carries its tail in the message;
                // a dependency that failed to start has it only here.
                if tail.is_none() && !direct.contains(&s) {
                    tail = p.failed_start_tail(&s);
                }
                if let Some(tail) = tail.filter(|t| !t.trim().is_empty()) {
                    logs.push((s, tail));
                }
            }
            (logs, exits)
        };
        tokio::time::timeout(docker::ENGINE_CALL, gather)
            .await
            .unwrap_or_default()
    }

    /// Waits for the checks this one needs; their variables, or why it cannot run.
    async fn predecessors(&self, check: &Check) -> Result<Vars, Outcome> {
        let mut vars = Vars::new();
        for need in &check.needs {
            let id = format!("{}::{need}", check.suite);
            if !self.selected.contains(&id) {
                return Err(Outcome::Errored(format!(
                    "not run: it needs `{need}`, which is not selected in this run (widen the filter)"
                )));
            }
            if let Some((pred, once)) = self.pulled.get(&id) {
                once.get_or_init(|| async {
                    // Boxed: a pulled check may wait for pulled checks of its own.
                    let record = Box::pin(self.execute(pred)).await;
                    if let Ok(mut r) = self.records.lock() {
                        r.push(record);
                    }
                })
                .await;
            }
            let run = self.wait_for(&id).await;
            if !run.outcome.is_pass() {
                return Err(Outcome::Errored(format!(
                    "not run: it needs `{need}`, which did not pass"
                )));
            }
            vars.extend(run.vars);
        }
        Ok(vars)
    }

    /// Waits for the check's services; their endpoints, or why it cannot run.
    async fn endpoints(
        &self,
        check: &Check,
    ) -> Result<BTreeMap<String, crate::platform::Endpoint>, Outcome> {
        let mut endpoints = BTreeMap::new();
        for s in check.services() {
            let ep = match (&self.platform, &self.platform_error) {
                (Some(p), _) => p.endpoint(&s).await.map_err(|f| {
                    let mut m = f.to_string();
                    if !f.log_tail.is_empty() {
                        m.push_str(&format!(
                            "\n--- last log lines of {} ---\n{}",
                            f.service, f.log_tail
                        ));
                    }
                    Outcome::Errored(m)
                })?,
                (None, Some(e)) => return Err(Outcome::Errored(e.clone())),
                (None, None) => {
                    return Err(Outcome::Errored(format!("service `{s}` was not started")))
                }
            };
            endpoints.insert(s, ep);
        }
        Ok(endpoints)
    }

    async fn wait_for(&self, id: &str) -> CheckRun {
        let mut rx = self.done.subscribe();
        loop {
            if let Some(r) = self.results.lock().ok().and_then(|r| r.get(id).cloned()) {
                return r;
            }
            if rx.changed().await.is_err() {
                return CheckRun {
                    outcome: Outcome::Errored("the run ended first".into()),
                    steps: Vec::new(),
                    vars: Vars::new(),
                    duration: Default::default(),
                };
            }
        }
    }

    /// Tears the platform down (once) and returns everything recorded.
    pub fn finish(&self) -> RunReport {
        let mut cleanup = self
            .platform
            .as_ref()
            .map(|p| p.problems())
            .unwrap_or_default();
        let removing = std::time::Instant::now();
        cleanup.extend(self.tear_down());
        let teardown = removing.elapsed();
        // After the teardown, which adds each container's CPU time over the run.
        let services = self
            .platform
            .as_ref()
            .map(|p| p.timings())
            .unwrap_or_default();
        let mut checks = self.records.lock().map(|r| r.clone()).unwrap_or_default();
        checks.sort_by(|a, b| (&a.suite, &a.location.line).cmp(&(&b.suite, &b.location.line)));
        RunReport {
            checks,
            services,
            cleanup,
            wall: self.started.elapsed(),
            teardown,
        }
    }

    /// Removes the run's containers and network the first time it is called; returns what
    /// could not be removed (also said on the console).
    fn tear_down(&self) -> Vec<String> {
        if self.torn_down.swap(true, Ordering::SeqCst) {
            return Vec::new();
        }
        let cleanup = match &self.platform {
            Some(p) => {
                if matches!(p, Platform::Containers(_) | Platform::Kubernetes(_)) {
                    console::say(format!("platform: removing run {}", self.run_id));
                }
                self.rt.block_on(p.shutdown())
            }
            None => docker::Cleanup::default(),
        };
        interrupt::unregister(&self.run_id);
        for p in &cleanup.problems {
            console::say(format!("platform: cleanup problem: {p}"));
        }
        if interrupt::interrupted() && cleanup.problems.is_empty() {
            console::say(format!(
                "platform: interrupted; nothing of run {} is left",
                self.run_id
            ));
        }
        cleanup.problems
    }
}

/// Puts the cause in front of a check's message: the first line is what summaries show.
fn with_cause(outcome: &Outcome, cause: &str) -> Outcome {
    match outcome {
        Outcome::Passed => Outcome::Passed,
        Outcome::Failed(m) => Outcome::Failed(format!("{cause}; {m}")),
        Outcome::Errored(m) => Outcome::Errored(format!("{cause}; {m}")),
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // During a panic (no `finish`), stop the containers while the runtime is still
        // there: testcontainers' own drop needs one. The label sweep is the backstop.
        self.tear_down();
        let had_containers = matches!(self.platform, Some(Platform::Containers(_)));
        if let Some(p) = self.platform.take() {
            let _in_runtime = self.rt.enter();
            drop(p);
        }
        if had_containers {
            for p in docker::remove_run_blocking(&self.run_id).problems {
                console::say(format!("platform: cleanup problem: {p}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::four_slots_a_thread_per_trial(Some(4), 30, Some(30), Some(4))]
    #[case::fewer_trials_than_slots(Some(4), 2, Some(4), Some(4))]
    #[case::thousands_of_trials_capped(Some(4), 5000, Some(MAX_TRIAL_THREADS), Some(4))]
    #[case::more_slots_than_the_cap(Some(300), 5000, Some(300), Some(300))]
    #[case::one_thread_stays_in_order(Some(1), 30, Some(1), None)]
    #[case::libtest_default(None, 30, None, None)]
    fn trials_get_threads_and_the_flag_bounds_the_running_ones(
        #[case] flag: Option<usize>,
        #[case] trials: usize,
        #[case] threads: Option<usize>,
        #[case] slots: Option<usize>,
    ) {
        let args = Arguments {
            test_threads: flag,
            ..Arguments::default()
        };
        let (args, got_slots) = trial_threads(&args, trials);
        assert_eq!((args.test_threads, got_slots), (threads, slots));
    }
}
