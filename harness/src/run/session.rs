//! A started run: its platform, the checks' results as they arrive (for `needs`), and
//! the records the reports are made from.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use tokio::sync::watch;

use super::interrupt::{install_interrupt_cleanup, yield_to_interrupt};
use crate::checks::{run_check, CheckRun, Outcome, Vars};
use crate::platform::containers::ContainerPlatform;
use crate::platform::external::ExternalPlatform;
use crate::platform::{docker, Platform};
use crate::report::console::{failure_text, verdict_word};
use crate::report::{console, write_reports, CheckRecord, RunReport};
use crate::secrets::{Masker, Secrets};
use crate::spec::{Check, Spec};

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
}

impl Session {
    /// Starts the services the selected checks need, or, with `endpoints`, takes an
    /// already-running platform and starts nothing.
    pub fn start(
        spec: &Spec,
        checks: &[Arc<Check>],
        selected: &BTreeSet<String>,
        endpoints: Option<&Path>,
    ) -> Result<Self, String> {
        let external = endpoints
            .map(ExternalPlatform::load)
            .transpose()
            .map_err(|e| e.to_string())?;
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
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("starting the async runtime: {e}"))?;
        let run_id = crate::checks::unique_id(10);
        let needed = super::services_for(
            spec,
            checks
                .iter()
                .filter(|c| selected.contains(&c.id()))
                .map(|c| c.as_ref()),
        );
        install_interrupt_cleanup(&run_id);
        let (platform, platform_error) = if let Some(e) = external {
            console::say(format!(
                "platform: verifying the running platform of {}",
                e.file.display()
            ));
            (Some(Platform::External(e)), None)
        } else if needed.is_empty() {
            (None, None)
        } else {
            console::say(format!(
                "platform: run {run_id}: starting {}",
                needed.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
            match rt.block_on(ContainerPlatform::start(
                &spec.platform,
                &needed,
                &secrets,
                &run_id,
            )) {
                Ok(p) => (Some(Platform::Containers(p)), None),
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
            started: Instant::now(),
        })
    }

    pub(super) fn run_libtest(
        self,
        args: &Arguments,
        checks: Vec<Arc<Check>>,
        junit_path: &Path,
    ) -> ExitCode {
        let session = Arc::new(self);
        let trials: Vec<Trial> = checks
            .into_iter()
            .map(|c| {
                let s = session.clone();
                let ignore = c.ignore;
                Trial::test(c.id(), move || s.trial(&c)).with_ignored_flag(ignore)
            })
            .collect();
        let conclusion = libtest_mimic::run(args, trials);
        let report = session.finish();
        write_reports(&report, &session.masker, junit_path);
        conclusion.exit_code()
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
    /// running when `deadline` passes are reported as errors. Returns the report after
    /// tearing the platform down.
    pub fn run_concurrently(
        self: &Arc<Self>,
        checks: &[Arc<Check>],
        concurrency: usize,
        deadline: Option<Duration>,
    ) -> RunReport {
        use futures::StreamExt;
        // In definition order, so a check's predecessors always hold a slot before it.
        let selected: Vec<Arc<Check>> = checks
            .iter()
            .filter(|c| self.selected.contains(&c.id()))
            .cloned()
            .collect();
        let work = futures::stream::iter(selected.clone())
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
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<()>>();
        let timed_out = self.rt.block_on(async {
            match deadline {
                Some(d) => tokio::time::timeout(d, work).await.is_err(),
                None => {
                    work.await;
                    false
                }
            }
        });
        if let (true, Some(d)) = (timed_out, deadline) {
            let finished: BTreeSet<(String, String)> = self
                .records
                .lock()
                .map(|r| {
                    r.iter()
                        .map(|c| (c.suite.clone(), c.name.clone()))
                        .collect()
                })
                .unwrap_or_default();
            for c in selected
                .iter()
                .filter(|c| !finished.contains(&(c.suite.clone(), c.name.clone())))
            {
                let record = CheckRecord {
                    suite: c.suite.clone(),
                    name: c.name.clone(),
                    location: c.location.clone(),
                    outcome: Outcome::Errored(format!(
                        "did not finish before the run's deadline of {}",
                        humantime::format_duration(d)
                    )),
                    started_at: Duration::ZERO,
                    duration: Duration::ZERO,
                    steps: Vec::new(),
                    service_logs: Vec::new(),
                };
                console::say(format!("ERROR {} (deadline)", c.id()));
                if let Ok(mut r) = self.records.lock() {
                    r.push(record);
                }
            }
        }
        self.finish()
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }
}

impl Session {
    async fn execute(&self, check: &Check) -> CheckRecord {
        let started = Instant::now();
        let run = match self.prepare(check).await {
            Ok((endpoints, vars)) => run_check(check, &endpoints, vars).await,
            Err(outcome) => CheckRun {
                outcome,
                steps: Vec::new(),
                vars: Vars::new(),
                duration: started.elapsed(),
            },
        };
        let ended = self.started.elapsed();
        let mut service_logs = Vec::new();
        if !run.outcome.is_pass() {
            if let Some(p) = &self.platform {
                for s in check.services() {
                    if let Some(tail) = p.log_tail(&s).await {
                        service_logs.push((s, tail));
                    }
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

    /// Waits for the check's predecessors and services; `Err` is why it cannot run.
    async fn prepare(
        &self,
        check: &Check,
    ) -> Result<(BTreeMap<String, crate::platform::Endpoint>, Vars), Outcome> {
        let mut vars = Vars::new();
        for need in &check.needs {
            let id = format!("{}::{need}", check.suite);
            if !self.selected.contains(&id) {
                return Err(Outcome::Errored(format!(
                    "not run: it needs `{need}`, which is not selected in this run (widen the filter)"
                )));
            }
            let run = self.wait_for(&id).await;
            if !run.outcome.is_pass() {
                return Err(Outcome::Errored(format!(
                    "not run: it needs `{need}`, which did not pass"
                )));
            }
            vars.extend(run.vars);
        }
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
        Ok((endpoints, vars))
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

    /// Tears the platform down and returns everything recorded.
    pub fn finish(&self) -> RunReport {
        yield_to_interrupt();
        let services = self
            .platform
            .as_ref()
            .map(|p| p.timings())
            .unwrap_or_default();
        if let Some(p) = &self.platform {
            self.rt.block_on(p.shutdown());
        }
        let mut checks = self.records.lock().map(|r| r.clone()).unwrap_or_default();
        checks.sort_by(|a, b| (&a.suite, &a.location.line).cmp(&(&b.suite, &b.location.line)));
        RunReport {
            checks,
            services,
            wall: self.started.elapsed(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        yield_to_interrupt();
        // During a panic (no `finish`), stop the containers while the runtime is still
        // there: testcontainers' own drop needs one. The label sweep is the backstop.
        if let Some(p) = self.platform.take() {
            self.rt.block_on(p.shutdown());
            let _in_runtime = self.rt.enter();
            drop(p);
        }
        docker::remove_run_blocking(&self.run_id);
    }
}
