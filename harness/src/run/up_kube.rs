//! `up`, `down` and `status` on the Kubernetes backend: the platform stays up in a
//! namespace of its own (`platform::kubernetes::up`), the state file names it, and a
//! forwarder process (`up_forwarder`) holds its ports for the warm runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use kube::Client;

use super::up::{
    export_for_nextest, have_and_missing, report_cleanup, status_verdict, usage, wanted,
    STATUS_PROBE,
};
use super::up_forwarder::{start_forwarder, FORWARDER_STOP};
use super::{interrupt, RunError};
use crate::platform::kubernetes::backend::client;
use crate::platform::kubernetes::run::{ready_now, start_in};
use crate::platform::kubernetes::{up as kup, up_namespace, KubePlatform};
use crate::platform::up::{self, forwarder, UpError, UpService, UpState};
use crate::report::console;
use crate::secrets::Secrets;
use crate::spec::platform::PlatformSpec;

pub(super) async fn cluster() -> Result<Client, RunError> {
    client().await.map_err(RunError::Engine)
}

pub(super) async fn up(
    root: &Path,
    spec: &PlatformSpec,
    only: &[String],
) -> Result<ExitCode, RunError> {
    let wanted = wanted(spec, only)?;
    let secrets = Secrets::resolve(&spec.secrets, spec.base_dir())?;
    console::init(secrets.masker());
    let client = cluster().await?;
    let dir = up::dir(root, &spec.file);
    let up_id = up::up_id(&spec.file);
    let namespace = up_namespace(&up_id);
    let state = match up::find_in(&dir, &spec.file)? {
        Some(s) if s.namespace.is_none() => {
            return Err(RunError::Engine(format!(
                "the `up` platform of {} runs on the containers backend: `platform-verify down` it first",
                spec.file.display()
            )))
        }
        Some(s) => keep_or_replace(&client, root, spec, &secrets, s).await?,
        None => None,
    };
    if state.is_none() {
        // A namespace whose state file was lost (or an `up` killed before writing it).
        let stale = kup::down(&client, &up_id).await;
        report_cleanup(&stale)?;
        if !stale.removed.is_empty() {
            console::say(format!(
                "platform: removed a stale `up` namespace: {}",
                stale.removed.join(", ")
            ));
        }
    }
    let (have, missing) = have_and_missing(state.as_ref(), &wanted);
    if missing.is_empty() {
        console::say(format!(
            "platform: already up in namespace {namespace}: {}",
            join(&have)
        ));
        if forwarder::running(&dir).is_none() {
            start_forwarder(&dir).await?;
            console::say("platform: restarted the `up` platform's port-forward process");
        }
        usage(&dir);
        export_for_nextest(&dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let kp = match &state {
        Some(s) => kup::platform_of(client.clone(), s, &namespace),
        None => KubePlatform::create_up(client.clone(), &up_id)
            .await
            .map_err(RunError::Engine)?,
    };
    console::say(format!(
        "platform: up {up_id}: starting {} in namespace {namespace}",
        join(&missing)
    ));
    let started = tokio::select! {
        r = start_in(&kp, spec, &wanted, &have, &secrets) => r,
        _ = interrupt::wait() => Err("interrupted".into()),
    };
    // What this `up` added goes when it fails: the whole namespace when it made it.
    let undo = || async {
        kp.stop_forwards();
        let problems = if state.is_none() {
            kup::down(&client, &up_id).await.problems
        } else {
            kp.remove_services(&missing).await
        };
        report_cleanup(&crate::platform::docker::Cleanup {
            removed: Vec::new(),
            problems,
        })
    };
    let endpoints = match started {
        Ok((endpoints, _, _)) => endpoints,
        Err(why) => {
            console::say(format!("platform: up failed: {why}"));
            undo().await?;
            return Ok(ExitCode::from(if interrupt::interrupted() {
                interrupt::EXIT_CODE
            } else {
                1
            }));
        }
    };
    let forwarded: BTreeMap<String, BTreeMap<String, u16>> = endpoints
        .into_iter()
        .map(|(name, ep)| (name, ep.ports))
        .collect();
    let recorded = record(&kp, spec, &secrets, state.clone(), &up_id, &forwarded)
        .await
        .and_then(|state| {
            write_state(&dir, spec, &secrets, &state, &namespace)?;
            Ok(state)
        });
    let state = match recorded {
        Ok(s) => s,
        Err(e) => {
            // A platform nobody can find again would only leak.
            console::say(format!("platform: up failed: {e}"));
            undo().await?;
            return Err(e);
        }
    };
    // The forwarder takes the ports over from this process, which is about to exit.
    kp.stop_forwards();
    if let Err(e) = start_forwarder(&dir).await {
        console::say(format!("platform: up failed: {e}; removing it"));
        report_cleanup(&kup::down(&client, &up_id).await)?;
        remove_dir(&dir)?;
        return Err(e);
    }
    export_for_nextest(&dir)?;
    console::say(format!(
        "platform: up: {} in namespace {namespace}",
        state
            .services
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    ));
    usage(&dir);
    Ok(ExitCode::SUCCESS)
}

/// The state when its services still run unchanged; otherwise the namespace is deleted
/// (said) and `None`.
async fn keep_or_replace(
    client: &Client,
    root: &Path,
    spec: &PlatformSpec,
    secrets: &Secrets,
    state: UpState,
) -> Result<Option<UpState>, RunError> {
    let all: BTreeSet<String> = state.services.keys().cloned().collect();
    let namespace = state.namespace.clone().unwrap_or_default();
    let changed = kup::changed(&state, spec, secrets, &all)?;
    let why = if !changed.is_empty() {
        Some(UpError::Changed { services: changed })
    } else {
        let kp = kup::platform_of(client.clone(), &state, &namespace);
        kup::not_running(&kp, &all)
            .await
            .map_err(RunError::Engine)?
            .map(|(service, how)| UpError::Gone { service, how })
    };
    let Some(why) = why else {
        return Ok(Some(state));
    };
    console::say(format!("platform: replacing the `up` platform: {why}"));
    let dir = up::dir(root, &spec.file);
    forwarder::stop(&dir, FORWARDER_STOP).map_err(|e| RunError::Cleanup(vec![e]))?;
    report_cleanup(&kup::down(client, &state.up_id).await)?;
    remove_dir(&up::dir(root, &spec.file))?;
    Ok(None)
}

/// The state with the `missing` services added as they now run.
async fn record(
    kp: &KubePlatform,
    spec: &PlatformSpec,
    secrets: &Secrets,
    state: Option<UpState>,
    up_id: &str,
    forwarded: &BTreeMap<String, BTreeMap<String, u16>>,
) -> Result<UpState, RunError> {
    let mut state = state.unwrap_or_else(|| {
        let mut s = UpState::new(
            up_id.to_string(),
            &spec.file,
            kp.namespace.clone(),
            crate::kinds::unique_id(32),
        );
        s.namespace = Some(kp.namespace.clone());
        s
    });
    let started: BTreeSet<String> = forwarded.keys().cloned().collect();
    let pods = kup::pods_and_images(kp, &started)
        .await
        .map_err(RunError::Engine)?;
    for (name, (pod, image_id)) in pods {
        let svc = &spec.services[&name];
        let fingerprint = up::fingerprint(spec, &name, &image_id, secrets, &state.salt)
            .map_err(UpError::Fingerprint)?;
        let forwarded = forwarded[&name].clone();
        state.services.insert(
            name,
            UpService {
                container: pod,
                run: "up".into(),
                image: svc.image.clone(),
                image_id,
                fingerprint,
                ports: svc.ports.clone(),
                forwarded,
            },
        );
    }
    Ok(state)
}

/// The state file, and an endpoints file for clients inside the cluster (Service names).
fn write_state(
    dir: &Path,
    spec: &PlatformSpec,
    secrets: &Secrets,
    state: &UpState,
    namespace: &str,
) -> Result<(), RunError> {
    state.save(dir)?;
    let host = |service: &str| format!("{service}.{namespace}.svc.cluster.local");
    up::write_endpoints(dir, spec, &state.services, secrets, &host).map_err(|reason| {
        RunError::Write {
            what: format!("the endpoints file in {}", dir.display()),
            reason,
        }
    })?;
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<(), RunError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RunError::Cleanup(vec![format!(
            "removing {}: {e}",
            dir.display()
        )])),
    }
}

fn join(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Deletes the `up` namespace(s) of the platform and its state folder.
pub(super) async fn down(root: &Path, platform: &Path) -> Result<ExitCode, RunError> {
    let up_id = up::up_id(platform);
    let dir = up::dir(root, platform);
    forwarder::stop(&dir, FORWARDER_STOP).map_err(|e| RunError::Cleanup(vec![e]))?;
    let client = cluster().await?;
    let cleanup = kup::down(&client, &up_id).await;
    report_cleanup(&cleanup)?;
    remove_dir(&up::dir(root, platform))?;
    console::say(format!(
        "platform: down {up_id}: deleted {}",
        if cleanup.removed.is_empty() {
            "nothing (no `up` namespace)".to_string()
        } else {
            cleanup.removed.join(", ")
        }
    ));
    Ok(ExitCode::SUCCESS)
}

/// Each service of the `up` namespace: running, ready now by its conditions (through the
/// forwarder's ports), its Service ports; and whether the spec still matches.
pub(super) async fn status(
    dir: &Path,
    spec: &PlatformSpec,
    state: &UpState,
    secrets: &Secrets,
) -> Result<ExitCode, RunError> {
    let namespace = state.namespace.clone().unwrap_or_default();
    let client = cluster().await?;
    let kp = kup::platform_of(client, state, &namespace);
    let forwarder_pid = forwarder::running(dir).map(|f| f.pid);
    console::say(format!(
        "platform: `up` in namespace {namespace}, {}",
        match forwarder_pid {
            Some(pid) => format!("ports forwarded by process {pid}"),
            None => "NO port-forward process (`up --backend kubernetes` starts it again)".into(),
        }
    ));
    let mut healthy = true;
    for (name, s) in &state.services {
        let ports = s
            .ports
            .iter()
            .map(|(k, p)| match s.forwarded.get(k) {
                Some(local) => format!("{k}=127.0.0.1:{local}->{name}:{p}"),
                None => format!("{k}={name}:{p}"),
            })
            .collect::<Vec<_>>()
            .join(" ");
        let line = match spec.services.get(name) {
            None => Err("running, no longer in the spec".to_string()),
            Some(svc) => {
                let one = BTreeSet::from([name.clone()]);
                match kup::not_running(&kp, &one)
                    .await
                    .map_err(RunError::Engine)?
                {
                    Some((_, how)) => Err(how),
                    None if forwarder_pid.is_none() => {
                        Err("its port-forward process is not running".into())
                    }
                    None => probe(&kp, svc, &s.forwarded, secrets).await,
                }
            }
        };
        healthy &= line.is_ok();
        console::say(match line {
            Ok(took) => format!("  {name:<12} ready ({took:.1} s to probe)  {ports}"),
            Err(why) => format!("  {name:<12} NOT ready: {why}  {ports}"),
        });
    }
    let all: BTreeSet<String> = state.services.keys().cloned().collect();
    let changed = kup::changed(state, spec, secrets, &all)?;
    Ok(status_verdict(healthy, changed))
}

async fn probe(
    kp: &KubePlatform,
    svc: &crate::spec::platform::ServiceSpec,
    at: &BTreeMap<String, u16>,
    secrets: &Secrets,
) -> Result<f64, String> {
    let started = Instant::now();
    ready_now(kp, svc, at.clone(), secrets, started + STATUS_PROBE).await?;
    Ok(started.elapsed().as_secs_f64())
}
