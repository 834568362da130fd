//! The containers backend: starts the selected services with testcontainers on the run's
//! network, each as soon as its dependencies are ready.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testcontainers::bollard::models::PortBinding;
use testcontainers::bollard::Docker;
use testcontainers::core::{CopyDataSource, IntoContainerPort, Mount};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::docker::{seconds, Cleanup};
use super::endpoint::Endpoint;
use super::network::{RunNetwork, DEFAULT_BRIDGE};
use super::readiness::{self, Probe};
use super::schedule::{self, StartCost, StartGate, Ticket, Waiters};
use super::shell;
use super::{cpu, docker, images, render, ServiceFailure, ServiceStart, StartError};
use crate::kinds::{ExecOutput, ServiceShell};
use crate::secrets::Secrets;
use crate::spec::platform::{PlatformSpec, ServiceSpec};
use crate::spec::template;
use futures::future::BoxFuture;
use tracing::Instrument;

/// How many log lines of a service go into a failure report.
pub const LOG_TAIL_LINES: usize = 50;
/// After its startup timeout, a start stuck in an engine call gets this long to end by
/// itself (with its own, clearer message) before it is cut off.
const START_GRACE: Duration = Duration::from_secs(2);
/// How long the shutdown waits for starts in flight to reach a point where they stop.
const STOP_WAIT: Duration = Duration::from_secs(60);

type StartResult = Result<Arc<Started>, Arc<ServiceFailure>>;
/// Resolves once when the service is ready or has failed; many waiters may hold one.
type StartHandle = watch::Receiver<Option<StartResult>>;

async fn outcome(mut handle: StartHandle) -> StartResult {
    match handle.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or_else(|| unreachable!("waited for Some")),
        Err(_) => Err(Arc::new(ServiceFailure {
            service: String::new(),
            message: "its start-up task ended without a result".into(),
            log_tail: String::new(),
        })),
    }
}

struct Started {
    endpoint: Endpoint,
    container_id: String,
}

pub struct ContainerPlatform {
    pub run_id: String,
    network: String,
    docker: Docker,
    starts: BTreeMap<String, StartHandle>,
    /// Each service's dependencies and the services it uses: its checks wait for them all.
    runs_with: BTreeMap<String, Vec<String>>,
    containers: Arc<Mutex<Vec<ContainerAsync<GenericImage>>>>,
    timings: Arc<Mutex<Vec<ServiceStart>>>,
    /// Turned true by the shutdown: starts in flight stop at their next safe point.
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// What the reaper could not do when the run started.
    problems: Vec<String>,
}

/// Services an `up` platform already runs, which a run joins instead of starting them
/// (`RunNetwork::Attached`): its network, and each service's container and
/// endpoint. The run never removes them: they carry another run's label.
pub struct Attached {
    pub network: String,
    pub running: BTreeMap<String, (String, Endpoint)>,
}

impl ContainerPlatform {
    /// Starts `services` (already closed over their dependencies) in the background, on a
    /// network of the run's own if they talk to one another. `waiters` says whose checks all
    /// wait for each service's ([`crate::spec::Spec::waiters`]), for the start scheduler.
    /// Fails before starting anything when the engine is unreachable or an image is missing.
    pub async fn start(
        spec: &PlatformSpec,
        services: &BTreeSet<String>,
        waiters: &Waiters,
        secrets: &Secrets,
        run_id: &str,
    ) -> Result<Self, StartError> {
        let network = RunNetwork::for_services(spec, services);
        Self::start_on(spec, services, waiters, secrets, run_id, network).await
    }

    /// As `start`, on `network`: on an `up` platform's, the services it already runs are
    /// taken as ready and the others start beside them.
    pub async fn start_on(
        spec: &PlatformSpec,
        services: &BTreeSet<String>,
        waiters: &Waiters,
        secrets: &Secrets,
        run_id: &str,
        network: RunNetwork,
    ) -> Result<Self, StartError> {
        let docker = docker::connect().map_err(StartError::EngineUnreachable)?;
        let engine = |what: &str| StartError::EngineTimeout {
            what: what.to_string(),
            limit: seconds(docker::ENGINE_CALL),
        };
        tokio::time::timeout(docker::ENGINE_CALL, docker::ping(&docker))
            .await
            .map_err(|_| engine("asking for its version"))?
            .map_err(StartError::EngineUnreachable)?;
        let reaped = docker::reap_dead_runs(&docker).await;
        for r in &reaped.removed {
            super::say(format!(
                "platform: removed {r} left by a run that was killed"
            ));
        }
        for p in &reaped.problems {
            super::say(format!("platform: cleanup problem: {p}"));
        }
        let (network, running, create) = match network {
            RunNetwork::Attached(a) => (a.network, a.running, false),
            RunNetwork::DefaultBridge => (DEFAULT_BRIDGE.to_string(), BTreeMap::new(), false),
            RunNetwork::Own => (format!("platform-{run_id}"), BTreeMap::new(), true),
        };
        let to_start: BTreeSet<String> = services
            .iter()
            .filter(|s| !running.contains_key(*s))
            .cloned()
            .collect();
        let chosen = tokio::time::timeout(
            docker::ENGINE_CALL,
            images::choose(&docker, spec, &to_start),
        )
        .await
        .map_err(|_| engine("looking for the images"))??;
        if create {
            tokio::time::timeout(
                docker::ENGINE_CALL,
                docker::create_network(&docker, &network, run_id),
            )
            .await
            .map_err(|_| engine(&format!("creating network {network}")))?
            .map_err(StartError::Engine)?;
        }
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::new();

        let containers = Arc::new(Mutex::new(Vec::new()));
        let timings = Arc::new(Mutex::new(Vec::new()));
        let mut starts: BTreeMap<String, StartHandle> = attached_starts(running, services);
        let mode = StartMode::from_env()?;
        let serial = mode == StartMode::Serial;
        // Only what starts here competes for the cores; attached services are ready.
        let gate = start_gate(spec, &to_start, waiters, mode)?;
        let platform_started = Instant::now();
        // Dependencies first, so each service can hold its dependencies' futures.
        for name in start_order(spec, services) {
            if starts.contains_key(&name) {
                continue; // already running, attached
            }
            let svc = spec.services[&name].clone();
            // Serial (for benchmarks): every service waits for all started before it.
            let waits_for: Vec<String> = if serial {
                starts.keys().cloned().collect()
            } else {
                svc.depends_on.clone()
            };
            let deps: Vec<_> = waits_for
                .iter()
                .map(|d| (d.clone(), starts[d].clone()))
                .collect();
            let job = StartJob {
                svc,
                image: chosen[&name].clone(),
                secrets: secrets.clone(),
                base_dir: spec.base_dir().to_path_buf(),
                run_id: run_id.to_string(),
                network: network.clone(),
                docker: docker.clone(),
                containers: containers.clone(),
                timings: timings.clone(),
                platform_started,
                stop: stop.subscribe(),
                phase: Mutex::new("waiting for its dependencies"),
            };
            let ticket = gate.ticket(&name);
            let (tx, rx) = watch::channel(None);
            // Start now, not when the first check asks.
            let span = tracing::info_span!(
                "service",
                name = %name,
                image = %job.image,
                rank_s = gate.rank(&name).as_secs_f64()
            );
            tasks.push(tokio::spawn(
                async move {
                    let result = job.run(deps, ticket).await;
                    tx.send_replace(Some(result));
                }
                .instrument(span),
            ));
            starts.insert(name, rx);
        }
        Ok(Self {
            run_id: run_id.to_string(),
            network,
            docker,
            starts,
            runs_with: spec.runs_with(),
            containers,
            timings,
            stop,
            tasks: Mutex::new(tasks),
            problems: reaped.problems,
        })
    }

    /// Leaves the run's containers running once this value is gone (`platform-verify
    /// up`): testcontainers removes a container when its handle drops, so the handles are
    /// forgotten. Call it only after every start has ended.
    pub fn keep_running(self) {
        if let Ok(mut all) = self.containers.lock() {
            all.drain(..).for_each(std::mem::forget);
        }
    }

    /// What went wrong around the run rather than in a check (the reaper at start).
    pub fn problems(&self) -> Vec<String> {
        self.problems.clone()
    }

    /// How the service's container ended, when it is no longer running: "exited: killed,
    /// exit code 137". `None` while it runs or when it never started.
    pub async fn exited(&self, service: &str) -> Option<String> {
        let started = self.starts.get(service)?.borrow().clone()?.ok()?;
        let state = docker::container_state(&self.docker, &started.container_id)
            .await
            .ok()?;
        docker::describe_exit(&state)
    }

    /// The service's endpoint once it is ready and so is everything it runs with: the
    /// services it `uses` start beside it, not before it, and are awaited here.
    pub async fn endpoint(&self, service: &str) -> Result<Endpoint, Arc<ServiceFailure>> {
        let endpoint = self.started(service).await?.endpoint.clone();
        let beside = crate::spec::graph::closure([service], &self.runs_with);
        for other in beside.iter().filter(|s| s.as_str() != service) {
            if let Err(f) = self.started(other).await {
                return Err(Arc::new(ServiceFailure {
                    message: format!(
                        "(used by `{service}`: its checks cannot run without it) {}",
                        f.message
                    ),
                    ..(*f).clone()
                }));
            }
        }
        Ok(endpoint)
    }

    async fn started(&self, service: &str) -> Result<Arc<Started>, Arc<ServiceFailure>> {
        match self.starts.get(service) {
            Some(h) => outcome(h.clone()).await,
            None => Err(Arc::new(ServiceFailure {
                service: service.to_string(),
                message: "was not selected to start in this run".into(),
                log_tail: String::new(),
            })),
        }
    }

    pub async fn log_tail(&self, service: &str) -> Option<String> {
        let started = self.starts.get(service)?.borrow().clone()?.ok()?;
        Some(docker::log_tail(&self.docker, &started.container_id, LOG_TAIL_LINES).await)
    }

    /// The last log lines of a service whose start failed (kept from when it failed).
    pub fn failed_start_tail(&self, service: &str) -> Option<String> {
        let failure = self.starts.get(service)?.borrow().clone()?.err()?;
        Some(failure.log_tail.clone()).filter(|t| !t.trim().is_empty())
    }

    /// The network the run's containers share.
    pub fn network(&self) -> &str {
        &self.network
    }

    pub fn timings(&self) -> Vec<ServiceStart> {
        self.timings.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// The container a service runs in, once it is ready.
    pub fn container_of(&self, service: &str) -> Option<String> {
        let started = self.starts.get(service)?.borrow().clone()?.ok()?;
        Some(started.container_id.clone())
    }

    /// Stops the starts still in flight and waits until each has reached a point where it
    /// creates nothing more (a condition, not a sleep), then removes every container and
    /// network of the run by label and checks that none is left.
    pub async fn shutdown(&self) -> Cleanup {
        let mut out = Cleanup::default();
        self.record_cpu_totals().await;
        self.stop.send_replace(true);
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        if tokio::time::timeout(STOP_WAIT, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            out.problems.push(format!(
                "a service start did not stop within {}; cut it off",
                seconds(STOP_WAIT)
            ));
            aborts.iter().for_each(|a| a.abort());
        }
        let all: Vec<_> = self
            .containers
            .lock()
            .map(|mut c| c.drain(..).collect())
            .unwrap_or_default();
        // Errors here are not final: the sweep below removes by label and reports.
        let _ = tokio::time::timeout(
            STOP_WAIT,
            futures::future::join_all(all.into_iter().map(|c| c.rm())),
        )
        .await;
        out.merge(docker::remove_run(&self.docker, &self.run_id).await);
        out
    }
}

fn set_timing(
    timings: &Mutex<Vec<ServiceStart>>,
    service: &str,
    set: impl FnOnce(&mut ServiceStart),
) {
    if let Ok(mut t) = timings.lock() {
        if let Some(entry) = t.iter_mut().rev().find(|s| s.service == service) {
            set(entry);
        }
    }
}

/// The gate the starts pass once their dependencies are ready: bounded by the machine's
/// cores when scheduled, open in the other modes.
fn start_gate(
    spec: &PlatformSpec,
    services: &BTreeSet<String>,
    waiters: &Waiters,
    mode: StartMode,
) -> Result<StartGate, StartError> {
    let costs = services
        .iter()
        .map(|name| {
            let svc = &spec.services[name];
            let cost = StartCost {
                expected: svc.expected_ready,
                cores: svc.start_cores,
                depends_on: svc.depends_on.clone(),
                waiters: waiters.get(name).cloned().unwrap_or_default(),
            };
            (name.clone(), cost)
        })
        .collect();
    let capacity = match mode {
        StartMode::Scheduled => start_cores()?,
        StartMode::Parallel | StartMode::Serial => f64::INFINITY,
    };
    Ok(StartGate::new(&costs, capacity, overcommit()?))
}

/// The CPU time a start may ask beyond the free cores: `PLATFORM_START_OVERCOMMIT`
/// (seconds), or the scheduler's default.
fn overcommit() -> Result<Duration, StartError> {
    let setting = std::env::var("PLATFORM_START_OVERCOMMIT").ok();
    schedule::budget(setting.as_deref()).map_err(StartError::Setting)
}

/// The cores starts may keep busy together: `PLATFORM_START_CORES`, or what the machine
/// (and its cgroup quota) gives this process.
fn start_cores() -> Result<f64, StartError> {
    match std::env::var("PLATFORM_START_CORES") {
        Ok(v) if !v.is_empty() => v.parse::<f64>().ok().filter(|c| *c > 0.0).ok_or_else(|| {
            StartError::Setting(format!(
                "PLATFORM_START_CORES={v:?}: give a number of cores, e.g. 2"
            ))
        }),
        _ => Ok(std::thread::available_parallelism().map_or(2, |n| n.get()) as f64),
    }
}

impl ContainerPlatform {
    /// Each started container's CPU time over the whole run, read before it is removed.
    async fn record_cpu_totals(&self) {
        let started: Vec<(String, String)> = self
            .starts
            .keys()
            .filter_map(|s| Some((s.clone(), self.container_of(s)?)))
            .collect();
        let reads = started
            .iter()
            .map(|(service, id)| async move { (service, cpu::container(&self.docker, id).await) });
        let totals = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(reads))
            .await
            .unwrap_or_default();
        for (service, total) in totals {
            set_timing(&self.timings, service, |t| t.cpu_total = total);
        }
    }
}

/// Ready handles for the selected services an `up` platform already runs.
fn attached_starts(
    running: BTreeMap<String, (String, Endpoint)>,
    services: &BTreeSet<String>,
) -> BTreeMap<String, StartHandle> {
    running
        .into_iter()
        .filter(|(name, _)| services.contains(name))
        .map(|(name, (container_id, endpoint))| {
            let started = Started {
                endpoint,
                container_id,
            };
            (name, watch::channel(Some(Ok(Arc::new(started)))).1)
        })
        .collect()
}

/// Services in an order where every dependency comes before its dependents.
fn start_order(spec: &PlatformSpec, services: &BTreeSet<String>) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    while order.len() < services.len() {
        let before = order.len();
        for s in services {
            if !order.contains(s)
                && spec.services[s]
                    .depends_on
                    .iter()
                    .all(|d| order.contains(d))
            {
                order.push(s.clone());
            }
        }
        if order.len() == before {
            break; // a cycle; the spec loader rejects those before we get here
        }
    }
    order
}

struct StartJob {
    svc: ServiceSpec,
    image: String,
    secrets: Secrets,
    base_dir: std::path::PathBuf,
    run_id: String,
    network: String,
    docker: Docker,
    containers: Arc<Mutex<Vec<ContainerAsync<GenericImage>>>>,
    timings: Arc<Mutex<Vec<ServiceStart>>>,
    platform_started: Instant,
    stop: watch::Receiver<bool>,
    /// What the start is doing, for the message when its timeout cuts it off.
    phase: Mutex<&'static str>,
}

/// How services start: by the scheduler (the default: the critical path first, heavy
/// starts bounded by the cores), each as soon as its dependencies are ready
/// (`PLATFORM_START=parallel`), or one at a time (`serial`); the last two are there for the
/// benchmark to measure what scheduling saves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StartMode {
    Scheduled,
    Parallel,
    Serial,
}

impl StartMode {
    pub fn from_env() -> Result<Self, StartError> {
        match std::env::var("PLATFORM_START").as_deref() {
            Err(_) | Ok("") | Ok("scheduled") => Ok(Self::Scheduled),
            Ok("parallel") => Ok(Self::Parallel),
            Ok("serial") => Ok(Self::Serial),
            Ok(other) => Err(StartError::Setting(format!(
                "PLATFORM_START={other:?}: use `scheduled`, `parallel` or `serial`"
            ))),
        }
    }
}

impl StartJob {
    /// Waits for its dependencies, then for the start gate (`ticket`, whose permit holds
    /// the cores until the service is ready or failed), then starts.
    async fn run(self, deps: Vec<(String, StartHandle)>, ticket: Ticket) -> StartResult {
        let name = self.svc.name.clone();
        let mut stop = self.stop.clone();
        for (dep, fut) in deps {
            let message = tokio::select! {
                r = outcome(fut) => match r {
                    Ok(_) => continue,
                    Err(e) => format!("not started: its dependency `{dep}` failed ({})", e.message),
                },
                _ = stop.wait_for(|s| *s) => "not started: the run is stopping".to_string(),
            };
            let failure = ServiceFailure {
                service: name.clone(),
                message,
                log_tail: String::new(),
            };
            self.record(None, Some(&failure));
            return Err(Arc::new(failure));
        }
        let queued = Instant::now();
        let _cores = tokio::select! {
            permit = ticket.admit() => Some(permit),
            _ = stop.wait_for(|s| *s) => None,
        };
        if *stop.borrow() {
            let failure = self.fail("not started: the run is stopping".into(), String::new());
            self.record(None, Some(&failure));
            return Err(Arc::new(failure));
        }
        let waited = queued.elapsed();
        tracing::debug!(
            waited_ms = waited.as_millis() as u64,
            "admitted by the start scheduler"
        );
        let started = Instant::now();
        let timeout = self.svc.startup_timeout;
        let held_back = if waited >= Duration::from_millis(100) {
            format!(
                ", after {:.1} s waiting for cores (starts running or ranked above it)",
                waited.as_secs_f64()
            )
        } else {
            String::new()
        };
        super::say(format!(
            "platform: starting {name} ({}){held_back}",
            self.image
        ));
        // The startup timeout bounds the whole start; the steps inside watch the same
        // deadline and usually end first, with a more precise message.
        let result = match tokio::time::timeout(
            timeout + START_GRACE,
            self.start_and_wait(started + timeout),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                let phase = self.phase.lock().map(|p| *p).unwrap_or("starting");
                let container = format!("{}-{}", self.svc.name, self.run_id);
                let tail = docker::log_tail(&self.docker, &container, LOG_TAIL_LINES).await;
                Err(self.fail(
                    format!(
                        "not started within its startup timeout of {}: cut off while {phase}",
                        seconds(timeout)
                    ),
                    tail,
                ))
            }
        };
        let elapsed = started.elapsed();
        match result {
            Ok(s) => {
                super::say(format!(
                    "platform: {name} ready in {:.1} s",
                    elapsed.as_secs_f64()
                ));
                self.record(Some(elapsed), None);
                let (docker, id) = (self.docker.clone(), s.container_id.clone());
                let (timings, service) = (self.timings.clone(), self.svc.name.clone());
                match cpu::from_cgroup(&id) {
                    // Read at once where the cgroup is readable: whoever reads the timings
                    // next (the bench, right after ready) finds it.
                    Some(used) => set_timing(&timings, &service, |t| t.cpu_to_ready = Some(used)),
                    // Off the ready path: the engine answers only at its next one-second
                    // sampling tick, and checks are waiting.
                    None => {
                        tokio::spawn(async move {
                            let cpu = cpu::container(&docker, &id).await;
                            set_timing(&timings, &service, |t| t.cpu_to_ready = cpu);
                        });
                    }
                }
                Ok(Arc::new(s))
            }
            Err(f) => {
                super::say(format!(
                    "platform: {name} FAILED after {:.1} s: {}",
                    elapsed.as_secs_f64(),
                    f.message
                ));
                self.record(Some(elapsed), Some(&f));
                Err(Arc::new(f))
            }
        }
    }

    fn record(&self, took: Option<Duration>, failure: Option<&ServiceFailure>) {
        if let Ok(mut t) = self.timings.lock() {
            t.push(ServiceStart {
                service: self.svc.name.clone(),
                image: self.image.clone(),
                ready_in: took,
                ready_at: took.map(|_| self.platform_started.elapsed()),
                failure: failure.map(|f| f.message.clone()),
                log_tail: failure.map(|f| f.log_tail.clone()).unwrap_or_default(),
                cpu_to_ready: None,
                cpu_total: None,
            });
        }
    }

    fn fail(&self, message: String, log_tail: String) -> ServiceFailure {
        ServiceFailure {
            service: self.svc.name.clone(),
            message,
            log_tail,
        }
    }

    fn enter(&self, phase: &'static str) {
        if let Ok(mut p) = self.phase.lock() {
            *p = phase;
        }
    }

    async fn start_and_wait(&self, deadline: Instant) -> Result<Started, ServiceFailure> {
        let svc = &self.svc;
        let render = |t: &str| {
            template::render(t, render::secrets_only(&self.secrets))
                .map_err(|e| self.fail(e, String::new()))
        };

        let (name, tag) = images::split_reference(&self.image);
        let mut image = GenericImage::new(name, tag);
        for port in svc.ports.values() {
            image = image.with_exposed_port(port.tcp());
        }
        let mut request = image
            .with_network(self.network.clone())
            .with_container_name(format!("{}-{}", svc.name, self.run_id))
            .with_hostname(svc.name.clone())
            .with_labels(docker::run_labels(&self.run_id))
            .with_startup_timeout(svc.startup_timeout);
        for (k, v) in &svc.env {
            request = request.with_env_var(k.clone(), render(v)?);
        }
        if !svc.command.is_empty() {
            request = request.with_cmd(
                svc.command
                    .iter()
                    .map(|c| render(c))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        let files = render::copies(&self.base_dir, &svc.copy, &self.secrets)
            .map_err(|e| self.fail(e, String::new()))?;
        for (target, data) in files {
            request = request.with_copy_to(target, CopyDataSource::Data(data));
        }
        for path in &svc.tmpfs {
            request = request.with_mount(Mount::tmpfs_mount(path));
        }
        let ports: Vec<u16> = svc.ports.values().copied().collect();
        let memory = svc.memory;
        request = request.with_host_config_modifier(move |hc| {
            // Published ports bind to loopback only: the platform is for this machine.
            hc.publish_all_ports = Some(false);
            hc.port_bindings = Some(
                ports
                    .iter()
                    .map(|p| {
                        (
                            format!("{p}/tcp"),
                            Some(vec![PortBinding {
                                host_ip: Some("127.0.0.1".into()),
                                host_port: Some(String::new()),
                            }]),
                        )
                    })
                    .collect(),
            );
            if let Some(m) = memory {
                hc.memory = Some(m as i64);
            }
        });

        self.enter("creating and starting its container");
        let started = Instant::now();
        let container = request
            .start()
            .await
            .map_err(|e| self.fail(format!("could not start its container: {e}"), String::new()))?;
        let container_id = container.id().to_string();
        tracing::debug!(
            container = %container_id,
            took_ms = started.elapsed().as_millis() as u64,
            "container created and started"
        );
        let keep = |c| {
            if let Ok(mut all) = self.containers.lock() {
                all.push(c);
            }
        };

        let mut host_ports = BTreeMap::new();
        for (pname, p) in &svc.ports {
            match container.get_host_port_ipv4(p.tcp()).await {
                Ok(hp) => {
                    host_ports.insert(pname.clone(), hp);
                }
                Err(e) => {
                    let tail = docker::log_tail(&self.docker, &container_id, LOG_TAIL_LINES).await;
                    // An exited container publishes nothing: that is the cause to name.
                    let exit = docker::container_state(&self.docker, &container_id)
                        .await
                        .ok()
                        .and_then(|s| docker::describe_exit(&s));
                    keep(container);
                    let message = match exit {
                        Some(exit) => format!(
                            "its container stopped before it was ready ({exit}), after {}",
                            seconds(started.elapsed())
                        ),
                        None => format!("port {p} was not published: {e}"),
                    };
                    return Err(self.fail(message, tail));
                }
            }
        }
        let vars = render::started(&host_ports, &self.secrets);

        // Known before readiness: a `step` condition talks to the endpoint checks will get.
        let endpoint = match super::up::endpoint_of(svc, &host_ports, &self.secrets) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                keep(container);
                return Err(self.fail(e.to_string(), String::new()));
            }
        };
        let mut outcome = Ok(());
        self.enter("running its after_start commands");
        for argv in &svc.after_start {
            let argv: Result<Vec<String>, String> =
                argv.iter().map(|a| template::render(a, &vars)).collect();
            let left = deadline.saturating_duration_since(Instant::now());
            tracing::debug!(command = ?argv, "after_start");
            let result = match argv {
                _ if *self.stop.borrow() => Err("the run is stopping".into()),
                Ok(argv) => run_exec(&self.docker, &container_id, argv, left).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                outcome = Err(format!("after-start command failed: {e}"));
                break;
            }
        }
        if outcome.is_ok() {
            self.enter("waiting until it is ready");
            let probe = Probe {
                docker: &self.docker,
                container_id: &container_id,
                host_ports: &host_ports,
                container_ports: &svc.ports,
                network: &self.network,
                endpoint: &endpoint,
            };
            let mut stop = self.stop.clone();
            tracing::debug!(ports = ?host_ports, "published; waiting until it is ready");
            outcome = readiness::wait_ready(
                &probe,
                &svc.ready,
                deadline,
                svc.startup_timeout,
                &mut stop,
                readiness::Pace::BACKOFF,
            )
            .await;
        }
        if let Err(message) = outcome {
            let tail = docker::log_tail(&self.docker, &container_id, LOG_TAIL_LINES).await;
            keep(container);
            return Err(self.fail(message, tail));
        }

        keep(container);
        Ok(Started {
            endpoint,
            container_id,
        })
    }
}

async fn run_exec(
    docker: &Docker,
    container_id: &str,
    argv: Vec<String>,
    limit: Duration,
) -> Result<(), String> {
    match docker::exec(docker, container_id, &argv, limit).await? {
        (0, _) => Ok(()),
        (code, output) => Err(format!(
            "`{}` exited {code}: {}",
            argv.join(" "),
            output.trim()
        )),
    }
}

impl ServiceShell for ContainerPlatform {
    fn exec<'a>(
        &'a self,
        service: &'a str,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, String>> {
        Box::pin(async move {
            let id = self
                .container_of(service)
                .ok_or_else(|| format!("service `{service}` has no running container"))?;
            shell::exec(&self.docker, &id, argv, timeout).await
        })
    }
}
