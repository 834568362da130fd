//! `platform-verify up`, `down` and `status`: a platform that outlives the command that
//! started it, for warm runs (`platform::up` has the state and the attaching).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use testcontainers::bollard::Docker;
use tokio::sync::watch;

use super::{interrupt, RunError};
use crate::platform::backend::Backend;
use crate::platform::containers::ContainerPlatform;
use crate::platform::docker;
use crate::platform::network::RunNetwork;
use crate::platform::readiness::{self, Probe};
use crate::platform::up::{self, UpError, UpService, UpState};
use crate::report::console;
use crate::secrets::Secrets;
use crate::spec::graph;
use crate::spec::platform::PlatformSpec;

/// How long `status` gives each service to show it is ready now.
pub(super) const STATUS_PROBE: Duration = Duration::from_secs(10);

pub(super) fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T, RunError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    Ok(rt.block_on(f))
}

pub(super) fn exit(result: Result<Result<ExitCode, RunError>, RunError>) -> ExitCode {
    match result.and_then(|r| r) {
        Ok(code) => code,
        Err(e) => {
            console::say(format!("error: {e}"));
            ExitCode::from(2)
        }
    }
}

async fn engine() -> Result<Docker, RunError> {
    let docker = docker::connect().map_err(RunError::Engine)?;
    tokio::time::timeout(docker::ENGINE_CALL, docker::ping(&docker))
        .await
        .map_err(|_| RunError::Engine("the Docker engine did not answer".into()))?
        .map_err(RunError::Engine)?;
    Ok(docker)
}

/// Starts the platform (or `only` these services, with their dependencies) on `backend`,
/// waits until it is ready, writes the state file and leaves it running.
pub fn up(root: &Path, spec: &PlatformSpec, only: &[String], backend: Backend) -> ExitCode {
    interrupt::install();
    exit(block_on(async {
        match backend {
            Backend::Containers => up_async(root, spec, only).await,
            Backend::Kubernetes => super::up_kube::up(root, spec, only).await,
        }
    }))
}

/// The services `up` starts: `only` with their dependencies, or all.
pub(super) fn wanted(spec: &PlatformSpec, only: &[String]) -> Result<BTreeSet<String>, RunError> {
    let unknown: Vec<String> = only
        .iter()
        .filter(|s| !spec.services.contains_key(*s))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(RunError::UnknownServices {
            unknown,
            file: spec.file.clone(),
            known: spec.services.keys().cloned().collect(),
        });
    }
    Ok(if only.is_empty() {
        spec.services.keys().cloned().collect()
    } else {
        graph::closure(only.iter().map(String::as_str), &spec.runs_with())
    })
}

/// What the `up` platform runs already, and what of `wanted` it lacks.
pub(super) fn have_and_missing(
    state: Option<&UpState>,
    wanted: &BTreeSet<String>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let have: BTreeSet<String> = state
        .map(|s| s.services.keys().cloned().collect())
        .unwrap_or_default();
    let missing = wanted.difference(&have).cloned().collect();
    (have, missing)
}

async fn up_async(root: &Path, spec: &PlatformSpec, only: &[String]) -> Result<ExitCode, RunError> {
    let wanted = wanted(spec, only)?;
    let secrets = Secrets::resolve(&spec.secrets, spec.base_dir())?;
    console::init(secrets.masker());
    let docker = engine().await?;
    let dir = up::dir(root, &spec.file);
    let up_id = up::up_id(&spec.file);
    let mut state = match up::find_in(&dir, &spec.file)? {
        Some(state) if state.namespace.is_some() => {
            return Err(RunError::Engine(format!(
                "the `up` platform of {} runs on the kubernetes backend (namespace {}): add `--backend kubernetes`, or `platform-verify down` it first",
                spec.file.display(),
                state.network
            )))
        }
        Some(state) => {
            let all: BTreeSet<String> = state.services.keys().cloned().collect();
            let changed = up::changed(&docker, &state, spec, &secrets, &all).await?;
            let attached = up::attach(&docker, &state, spec, &secrets, &all).await;
            if changed.is_empty() && attached.is_ok() {
                Some(state)
            } else {
                let why = match attached {
                    Err(e) if changed.is_empty() => e,
                    _ => UpError::Changed { services: changed },
                };
                console::say(format!("platform: replacing the `up` platform: {why}"));
                report_cleanup(&up::down(&docker, root, &spec.file).await)?;
                None
            }
        }
        None => {
            remove_stateless(&docker, &up_id).await?;
            None
        }
    };
    let (have, missing) = have_and_missing(state.as_ref(), &wanted);
    if missing.is_empty() {
        console::say(format!(
            "platform: already up: {}",
            have.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
        usage(&dir);
        export_for_nextest(&dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let run_id = format!("up{}", crate::kinds::unique_id(8));
    docker::mark_up_run(&run_id, &up_id);
    interrupt::register(&run_id);
    let attached = match &state {
        Some(s) => Some(up::attach(&docker, s, spec, &secrets, &wanted).await?),
        None => None,
    };
    console::say(format!(
        "platform: up {up_id}: starting {}",
        missing.iter().cloned().collect::<Vec<_>>().join(", ")
    ));
    // No checks run here: nothing waits for a service but its dependents.
    let platform = ContainerPlatform::start_on(
        spec,
        &wanted,
        &Default::default(),
        &secrets,
        &run_id,
        RunNetwork::for_up(attached),
    )
    .await;
    let platform = match platform {
        Ok(p) => p,
        Err(e) => {
            interrupt::unregister(&run_id);
            return Err(e.into());
        }
    };
    let mut failures = Vec::new();
    let mut endpoints = BTreeMap::new();
    for name in &missing {
        tokio::select! {
            r = platform.endpoint(name) => match r {
                Ok(ep) => { endpoints.insert(name.clone(), ep); }
                Err(f) => failures.push(f.to_string()),
            },
            _ = interrupt::wait() => { failures.push("interrupted".into()); break; }
        }
    }
    if !failures.is_empty() {
        console::say(format!("platform: up failed: {}", failures.join("; ")));
        let cleanup = platform.shutdown().await;
        interrupt::unregister(&run_id);
        report_cleanup(&cleanup)?;
        return Ok(ExitCode::from(if interrupt::interrupted() {
            interrupt::EXIT_CODE
        } else {
            1
        }));
    }
    let ids = up::image_ids(&docker, spec, &missing).await?;
    let state = state.get_or_insert_with(|| {
        UpState::new(
            up_id.clone(),
            &spec.file,
            platform.network().to_string(),
            crate::kinds::unique_id(32),
        )
    });
    for (name, ep) in endpoints {
        let (image, image_id) = ids[&name].clone();
        let container = platform
            .container_of(&name)
            .ok_or_else(|| RunError::Engine(format!("{name}: its container is unknown")))?;
        let fingerprint = up::fingerprint(spec, &name, &image_id, &secrets, &state.salt)
            .map_err(UpError::Fingerprint)?;
        state.services.insert(
            name,
            UpService {
                container,
                run: run_id.clone(),
                image,
                image_id,
                fingerprint,
                ports: ep.ports,
                forwarded: BTreeMap::new(),
            },
        );
    }
    let written = state.save(&dir).map_err(RunError::from).and_then(|_| {
        up::write_endpoints(&dir, spec, &state.services, &secrets, &|_| {
            "127.0.0.1".into()
        })
        .map_err(|reason| RunError::Write {
            what: format!("the endpoints file in {}", dir.display()),
            reason,
        })
    });
    if let Err(e) = written {
        // A platform nobody can find again would only leak: remove what this run made.
        report_cleanup(&platform.shutdown().await)?;
        interrupt::unregister(&run_id);
        return Err(e);
    }
    platform.keep_running();
    interrupt::unregister(&run_id);
    export_for_nextest(&dir)?;
    console::say(format!(
        "platform: up: {} on network {}",
        state
            .services
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        state.network
    ));
    usage(&dir);
    Ok(ExitCode::SUCCESS)
}

/// Under a cargo-nextest setup script, hands the state file to the tests: nextest reads
/// `KEY=VALUE` lines from the file `NEXTEST_ENV` names into every test's environment.
pub(super) fn export_for_nextest(dir: &Path) -> Result<(), RunError> {
    use std::io::Write;
    let Some(env_file) = std::env::var_os("NEXTEST_ENV") else {
        return Ok(());
    };
    let state = up::canonical(&dir.join(up::STATE_FILE));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&env_file)
        .and_then(|mut f| writeln!(f, "PLATFORM_UP_STATE={}", state.display()))
        .map_err(|e| RunError::Write {
            what: "NEXTEST_ENV".into(),
            reason: e.to_string(),
        })
}

pub(super) fn usage(dir: &Path) {
    console::say(format!(
        "  state:     {}\n  endpoints: {}\n  cargo test --test platform and platform-verify run now attach to it;\n  platform-verify status shows it, platform-verify down removes it.",
        dir.join(up::STATE_FILE).display(),
        dir.join(up::ENDPOINTS_FILE).display()
    ));
}

pub(super) fn report_cleanup(c: &docker::Cleanup) -> Result<(), RunError> {
    if c.problems.is_empty() {
        Ok(())
    } else {
        Err(RunError::Cleanup(c.problems.clone()))
    }
}

/// Removes the platform's `up` containers, network and state (or, when it runs on the
/// Kubernetes backend, its namespace and forwarder; with no state, `backend` says which).
pub fn down(root: &Path, platform: &Path, backend: Option<Backend>) -> ExitCode {
    let state = up::find_in(&up::dir(root, platform), platform)
        .ok()
        .flatten();
    if down_on_cluster(state.as_ref(), backend) {
        return exit(block_on(super::up_kube::down(root, platform)));
    }
    exit(block_on(async {
        let docker = engine().await?;
        let c = up::down(&docker, root, platform).await;
        let containers = c
            .removed
            .iter()
            .filter(|r| r.starts_with("container"))
            .count();
        console::say(format!(
            "platform: down {}: removed {containers} container(s){}",
            up::up_id(platform),
            if c.removed.iter().any(|r| r.starts_with("network")) {
                " and the network"
            } else {
                ""
            }
        ));
        report_cleanup(&c)?;
        Ok(ExitCode::SUCCESS)
    }))
}

/// Removes what an earlier `up` of this platform left whose state is gone (`cargo clean`, a
/// deleted `target/`, a state folder from an older version): no run can attach to it, and a
/// new `up` beside it would double the platform.
async fn remove_stateless(docker: &Docker, up_id: &str) -> Result<(), RunError> {
    let (containers, networks) = docker::labelled(docker, docker::LABEL_UP, up_id)
        .await
        .map_err(RunError::Engine)?;
    if containers.is_empty() && networks.is_empty() {
        return Ok(());
    }
    console::say(format!(
        "platform: removing {} container(s) of an earlier `up` {up_id} whose state is gone",
        containers.len()
    ));
    report_cleanup(&docker::remove_up(docker, up_id).await)
}

/// The state says where the platform runs; `backend` only when there is none (lost).
fn down_on_cluster(state: Option<&UpState>, backend: Option<Backend>) -> bool {
    match state {
        Some(s) => s.namespace.is_some(),
        None => backend == Some(Backend::Kubernetes),
    }
}

/// Each service of the `up` platform: running or not, ready now or not, its ports; and
/// whether the spec still matches. Exit 0 only when all of that holds.
pub fn status(root: &Path, spec: &PlatformSpec) -> ExitCode {
    exit(block_on(async {
        let dir = up::dir(root, &spec.file);
        let Some(state) = up::find_in(&dir, &spec.file)? else {
            console::say(format!(
                "platform: no `up` platform of {} (platform-verify up starts one)",
                spec.file.display()
            ));
            return Ok(ExitCode::from(1));
        };
        let secrets = Secrets::resolve(&spec.secrets, spec.base_dir())?;
        console::init(secrets.masker());
        if state.namespace.is_some() {
            return super::up_kube::status(&dir, spec, &state, &secrets).await;
        }
        let docker = engine().await?;
        let mut healthy = true;
        for (name, s) in &state.services {
            let line = service_status(&docker, spec, &state, &secrets, (name, s)).await;
            healthy &= line.0;
            console::say(line.1);
        }
        let all: BTreeSet<String> = state.services.keys().cloned().collect();
        let changed = up::changed(&docker, &state, spec, &secrets, &all).await?;
        Ok(status_verdict(healthy, changed))
    }))
}

/// `status`'s exit code: 0 only when every service is ready and none changed (said).
pub(super) fn status_verdict(healthy: bool, changed: Vec<String>) -> ExitCode {
    let unchanged = changed.is_empty();
    if !unchanged {
        console::say(UpError::Changed { services: changed }.to_string());
    }
    if healthy && unchanged {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn service_status(
    docker: &Docker,
    spec: &PlatformSpec,
    state: &UpState,
    secrets: &Secrets,
    (name, s): (&str, &UpService),
) -> (bool, String) {
    let ports = s
        .ports
        .iter()
        .map(|(k, p)| format!("{k}=127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(" ");
    let exit = match docker::container_state(docker, &s.container).await {
        Ok(st) => docker::describe_exit(&st),
        Err(e) => Some(format!("not found ({e})")),
    };
    if let Some(how) = exit {
        return (false, format!("  {name:<12} {how}"));
    }
    let Some(svc) = spec.services.get(name) else {
        return (
            false,
            format!("  {name:<12} running, no longer in the spec"),
        );
    };
    let endpoint = match up::endpoint_of(svc, &s.ports, secrets) {
        Ok(e) => e,
        Err(e) => return (false, format!("  {name:<12} running, {e}")),
    };
    let probe = Probe {
        docker,
        container_id: &s.container,
        host_ports: &s.ports,
        container_ports: &svc.ports,
        network: &state.network,
        endpoint: &endpoint,
    };
    let (_stop_tx, mut stop) = watch::channel(false);
    let started = Instant::now();
    match readiness::wait_ready(
        &probe,
        &svc.ready,
        started + STATUS_PROBE,
        STATUS_PROBE,
        &mut stop,
        readiness::Pace::BACKOFF,
    )
    .await
    {
        Ok(()) => (
            true,
            format!(
                "  {name:<12} ready ({:.1} s to probe)  {ports}",
                started.elapsed().as_secs_f64()
            ),
        ),
        Err(e) => (
            false,
            format!("  {name:<12} running, NOT ready: {e}  {ports}"),
        ),
    }
}

/// The process that holds an `up` platform's port-forwards on a cluster (started by `up`).
pub fn forward_up(state: &Path) -> ExitCode {
    super::up_forwarder::serve(state)
}

#[cfg(test)]
mod tests {
    use super::{down_on_cluster, Backend, UpState};
    use rstest::rstest;

    #[rstest]
    #[case::containers_state_whatever_the_flag(Some(false), Some(Backend::Kubernetes), false)]
    #[case::cluster_state_whatever_the_flag(Some(true), Some(Backend::Containers), true)]
    #[case::cluster_state_no_flag(Some(true), None, true)]
    #[case::no_state_no_flag(None, None, false)]
    #[case::no_state_cluster_flag(None, Some(Backend::Kubernetes), true)]
    fn down_follows_the_state_and_the_flag_only_without_one(
        #[case] state_on_cluster: Option<bool>,
        #[case] flag: Option<Backend>,
        #[case] expected: bool,
    ) {
        let state = state_on_cluster.map(|on| {
            let mut s = UpState::new("p-1".into(), "p.toml".as_ref(), "n".into(), "s".into());
            s.namespace = on.then(|| "platform-up-p-1".to_string());
            s
        });
        assert_eq!(down_on_cluster(state.as_ref(), flag), expected);
    }
}
