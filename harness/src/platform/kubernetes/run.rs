//! A platform's services on a cluster, in dependency order (each wave: the services whose
//! dependencies are ready, started together), rendered with the run's secrets, with the
//! endpoints the checks get: 127.0.0.1 and the port-forwards' local ports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kube::Client;

use super::manifests::Rendered;
use super::KubePlatform;
use crate::kinds::{StepContext, Vars};
use crate::platform::Endpoint;
use crate::platform::{render, up};
use crate::secrets::Secrets;
use crate::spec::platform::{PlatformSpec, ReadyCondition, ReadyStep, ServiceSpec};
use crate::spec::template;

pub struct KubeRun {
    pub platform: KubePlatform,
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Each service's own start to ready.
    pub ready_in: BTreeMap<String, Duration>,
    /// When each was ready, counted from the platform's start (dependencies included).
    pub ready_at: BTreeMap<String, Duration>,
}

/// Starts `needed` and what they depend on. On an error the namespace is already deleted.
pub async fn start_all(
    client: Client,
    spec: &PlatformSpec,
    needed: &BTreeSet<String>,
    secrets: &Secrets,
    run_id: &str,
) -> Result<KubeRun, String> {
    let platform = KubePlatform::create(client, run_id).await?;
    match start_in(&platform, spec, needed, &BTreeSet::new(), secrets).await {
        Ok((endpoints, ready_in, ready_at)) => Ok(KubeRun {
            platform,
            endpoints,
            ready_in,
            ready_at,
        }),
        Err(e) => {
            let _ = platform.delete().await;
            Err(e)
        }
    }
}

/// The services started: endpoints, own start to ready, ready since the platform's start.
pub type Started = (
    BTreeMap<String, Endpoint>,
    BTreeMap<String, Duration>,
    BTreeMap<String, Duration>,
);

/// Starts `needed` and their dependencies in `kp`'s namespace, except those `present`
/// (running there already, as in an `up` platform). On an error, what it created stays:
/// the caller owns the namespace.
pub async fn start_in(
    kp: &KubePlatform,
    spec: &PlatformSpec,
    needed: &BTreeSet<String>,
    present: &BTreeSet<String>,
    secrets: &Secrets,
) -> Result<Started, String> {
    let platform_start = Instant::now();
    let all = with_dependencies(spec, needed)?;
    let mut endpoints = BTreeMap::new();
    let mut ready_in = BTreeMap::new();
    let mut ready_at = BTreeMap::new();
    let mut done: BTreeSet<String> = all.intersection(present).cloned().collect();
    while done.len() < all.len() {
        let wave: Vec<&ServiceSpec> = all
            .iter()
            .map(|s| &spec.services[s])
            .filter(|s| !done.contains(&s.name))
            .filter(|s| s.depends_on.iter().all(|d| done.contains(d)))
            .collect();
        if wave.is_empty() {
            return Err("services depend on each other in a cycle".into());
        }
        let starts = wave.iter().map(|svc| start_one(kp, spec, svc, secrets));
        for (svc, result) in wave.iter().zip(futures::future::join_all(starts).await) {
            let (endpoint, took) = result?;
            crate::platform::say(format!(
                "platform: {} ready in {:.1} s (kubernetes)",
                svc.name,
                took.as_secs_f64()
            ));
            endpoints.insert(svc.name.clone(), endpoint);
            done.insert(svc.name.clone());
            ready_in.insert(svc.name.clone(), took);
            ready_at.insert(svc.name.clone(), platform_start.elapsed());
        }
    }
    Ok((endpoints, ready_in, ready_at))
}

/// `needed` and everything it runs with (dependencies and used services start in the
/// same waves; every check waits for all of them).
fn with_dependencies(
    spec: &PlatformSpec,
    needed: &BTreeSet<String>,
) -> Result<BTreeSet<String>, String> {
    // The spec loader checked the names its services refer to; only the selection can miss.
    if let Some(s) = needed.iter().find(|s| !spec.services.contains_key(*s)) {
        return Err(format!("service `{s}` is not in {}", spec.file.display()));
    }
    Ok(crate::spec::graph::closure(
        needed.iter().map(String::as_str),
        &spec.runs_with(),
    ))
}

async fn start_one(
    kp: &KubePlatform,
    spec: &PlatformSpec,
    svc: &ServiceSpec,
    secrets: &Secrets,
) -> Result<(Endpoint, Duration), String> {
    let started = Instant::now();
    let fail = |e: String| format!("service `{}`: {e}", svc.name);
    let rendered = rendered(spec, svc, secrets).map_err(fail)?;
    kp.start_rendered(svc, &rendered).await?;
    let ports = kp.forward(svc).await?;
    let deadline = started + svc.startup_timeout;
    if !svc.after_start.is_empty() {
        kp.wait_running(svc, deadline).await?;
        let vars = render::started(&ports, secrets);
        for argv in &svc.after_start {
            let argv = argv
                .iter()
                .map(|a| template::render(a, &vars))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let out = kp.exec(&svc.name, &argv, left).await?;
            if out.exit_code != 0 {
                return Err(fail(format!(
                    "after-start command `{}` exited {}: {}",
                    argv.join(" "),
                    out.exit_code,
                    format!("{}{}", out.stdout, out.stderr).trim()
                )));
            }
        }
    }
    let endpoint = ready_now(kp, svc, ports, secrets, deadline).await?;
    Ok((endpoint, started.elapsed()))
}

/// Waits (bounded by `deadline`) until the service is ready by all its conditions: the
/// Deployment available and the log lines through the API, HTTP and check steps through
/// the forwards (`ports`); the endpoint checks get.
pub async fn ready_now(
    kp: &KubePlatform,
    svc: &ServiceSpec,
    ports: BTreeMap<String, u16>,
    secrets: &Secrets,
    deadline: Instant,
) -> Result<Endpoint, String> {
    let fail = |e: String| format!("service `{}`: {e}", svc.name);
    kp.wait_ready(svc, deadline).await?;
    // What the kubelet's probe could not judge (a status or body), through the forward.
    for r in &svc.ready {
        if let ReadyCondition::Http {
            port,
            path,
            status,
            body_matches,
        } = r
        {
            http_ready(
                ports[port],
                path,
                *status,
                body_matches.as_deref(),
                deadline,
            )
            .await
            .map_err(fail)?;
        }
    }
    // The endpoint as the container backend renders it (`up::endpoint_of` names the service).
    let endpoint = up::endpoint_of(svc, &ports, secrets).map_err(|e| e.to_string())?;
    // A check step as readiness (Trino runs a query): against the endpoint checks get.
    for r in &svc.ready {
        if let ReadyCondition::Step(step) = r {
            step_ready(&endpoint, step, deadline).await.map_err(fail)?;
        }
    }
    Ok(endpoint)
}

/// The env var a secret reaches `args` through (`$(VAR)`, which the kubelet expands).
fn secret_var(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("PLATFORM_SECRET_{clean}")
}

/// The service's env, args and files rendered, secrets apart: an env value that uses a
/// secret comes from the service's Secret, an argument names it as `$(PLATFORM_SECRET_X)`,
/// templated files go in a Secret volume.
fn rendered(spec: &PlatformSpec, svc: &ServiceSpec, secrets: &Secrets) -> Result<Rendered, String> {
    let mut r = Rendered::default();
    for (k, v) in &svc.env {
        let value = template::render(v, render::secrets_only(secrets))?;
        if v.contains("${secret.") {
            r.secret_env.insert(k.clone(), value);
        } else {
            r.env.insert(k.clone(), value);
        }
    }
    let used = std::cell::RefCell::new(BTreeMap::new());
    let by_reference = |key: &str| {
        let name = key.strip_prefix("secret.")?;
        let value = secrets.get(name)?;
        used.borrow_mut()
            .insert(secret_var(name), value.to_string());
        Some(format!("$({})", secret_var(name)))
    };
    r.args = svc
        .command
        .iter()
        .map(|a| template::render(a, &by_reference))
        .collect::<Result<Vec<_>, _>>()?;
    r.secret_env.extend(used.into_inner());
    r.files = render::copies(spec.base_dir(), &svc.copy, secrets)?;
    r.files_secret = svc.copy.iter().any(|c| c.template);
    Ok(r)
}

async fn step_ready(
    endpoint: &Endpoint,
    step: &ReadyStep,
    deadline: Instant,
) -> Result<(), String> {
    let endpoints = BTreeMap::from([(endpoint.service.clone(), endpoint.clone())]);
    let vars = Vars::new();
    let mut last = String::from("not tried yet");
    while Instant::now() < deadline {
        let cx = StepContext {
            endpoint,
            endpoints: &endpoints,
            vars: &vars,
            shell: None,
            probe: true,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, step.action.run(&cx)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = crate::mask::clip(e.message(), 300).to_string(),
            Err(_) => last = "the last attempt did not finish in time".into(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("not ready: step `{}`: {last}", step.name))
}

async fn http_ready(
    port: u16,
    path: &str,
    status: u16,
    body: Option<&str>,
    deadline: Instant,
) -> Result<(), String> {
    let re = body
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match client.get(&url).send().await {
            Ok(r) if r.status().as_u16() == status => {
                let text = r.text().await.unwrap_or_default();
                if re.as_ref().is_none_or(|re| re.is_match(&text)) {
                    return Ok(());
                }
                last = format!(
                    "GET {path}: the body does not match `{}`",
                    body.unwrap_or("")
                );
            }
            Ok(r) => last = format!("GET {path}: HTTP {}", r.status()),
            Err(e) => last = format!("GET {path}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("not ready: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_selection_starts_what_it_depends_on_and_uses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/platform.toml");
        let spec = PlatformSpec::load(&root).unwrap();
        let of = |names: &[&str]| -> Result<Vec<String>, String> {
            let needed = names.iter().map(|n| n.to_string()).collect();
            with_dependencies(&spec, &needed).map(|all| all.into_iter().collect())
        };
        assert_eq!(
            of(&["trino"]).unwrap(),
            ["minio", "trino"],
            "trino uses minio"
        );
        assert_eq!(of(&["mlflow"]).unwrap(), ["minio", "mlflow", "postgres"]);
        let err = of(&["nope"]).unwrap_err();
        assert!(err.starts_with("service `nope` is not in"), "{err}");
    }
}
