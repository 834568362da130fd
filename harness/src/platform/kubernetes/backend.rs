//! The Kubernetes backend as a run's platform (`PLATFORM_BACKEND=kubernetes`): the cluster
//! of `KUBECONFIG` (or the kit's, fixtures/k8s), the reaper at start, the run's services in
//! its namespace, their endpoints, logs and exits, and the namespace deleted at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::{Api, Client};

use super::manifests::LABEL_SERVICE;
use super::run::{start_all, KubeRun};
use super::{bounded, namespace_for, reap, TIMEOUT};
use crate::clients::error_chain;
use crate::kinds::{ExecOutput, ServiceShell};
use crate::platform::up::{UpError, UpState};
use crate::platform::{docker, say, Endpoint, ServiceFailure, ServiceStart};
use crate::secrets::Secrets;
use crate::spec::platform::PlatformSpec;

const LOG_TAIL_LINES: i64 = 50;

/// Set once a run used the cluster: the signal handler's backstop deletes namespaces then.
static USED: AtomicBool = AtomicBool::new(false);

/// `KUBECONFIG` (its first file), else the kit's admin kubeconfig (`$K8S_STATE`, default
/// /var/lib/platform-k8s, as fixtures/k8s/cluster writes it).
pub fn kubeconfig_path() -> PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return first;
    }
    let state = std::env::var("K8S_STATE").unwrap_or_else(|_| "/var/lib/platform-k8s".into());
    PathBuf::from(state).join("admin.kubeconfig")
}

/// A client of the cluster that answered its version within the API bound.
pub async fn client() -> Result<Client, String> {
    let path = kubeconfig_path();
    let hint = "start the kit's cluster with `fixtures/k8s/cluster up` or set KUBECONFIG";
    // kube-rs's own timeouts: the backend's streams (logs, exec, forwards) stay open long.
    let (client, _) = crate::clients::kube::client(&path, None, None)
        .await
        .map_err(|e| format!("kubernetes backend: {e}; {hint}"))?;
    bounded(
        client.apiserver_version(),
        &format!(
            "kubernetes backend: the API server of {} ({hint})",
            path.display()
        ),
    )
    .await?;
    Ok(client)
}

pub struct KubeBackend {
    run: KubeRun,
    images: BTreeMap<String, String>,
    problems: Vec<String>,
    /// False for an `up` platform's namespace: the run leaves it as it found it.
    owned: bool,
}

impl KubeBackend {
    /// Reaps dead runs' namespaces, then starts `needed` (and their dependencies) in the
    /// run's namespace. On an error nothing of the run is left.
    pub async fn start(
        spec: &PlatformSpec,
        needed: &BTreeSet<String>,
        secrets: &Secrets,
        run_id: &str,
    ) -> Result<Self, String> {
        let client = client().await?;
        USED.store(true, Ordering::SeqCst);
        let mut problems = Vec::new();
        match reap(&client).await {
            Ok(reaped) if !reaped.is_empty() => say(format!(
                "platform: reaped namespaces of dead runs: {}",
                reaped.join(", ")
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("reaper: {e}")),
        }
        let run = start_all(client, spec, needed, secrets, run_id).await?;
        Ok(Self {
            run,
            images: images_of(spec),
            problems,
            owned: true,
        })
    }

    /// A warm run on the `up` platform in `namespace` (`up::attach`, its state dir and
    /// state): nothing starts, nothing is deleted at the end.
    pub async fn attach(
        spec: &PlatformSpec,
        needed: &BTreeSet<String>,
        secrets: &Secrets,
        up: (&std::path::Path, &UpState),
        namespace: &str,
    ) -> Result<Self, UpError> {
        let client = client().await.map_err(UpError::Engine)?;
        let (platform, endpoints) =
            super::up::attach(client, up, namespace, spec, secrets, needed).await?;
        Ok(Self {
            run: KubeRun {
                platform,
                endpoints,
                ready_in: BTreeMap::new(),
                ready_at: BTreeMap::new(),
            },
            images: images_of(spec),
            problems: Vec::new(),
            owned: false,
        })
    }

    pub fn endpoint(&self, service: &str) -> Result<Endpoint, std::sync::Arc<ServiceFailure>> {
        self.run.endpoints.get(service).cloned().ok_or_else(|| {
            std::sync::Arc::new(ServiceFailure {
                service: service.into(),
                message: "was not started in the run's namespace".into(),
                log_tail: String::new(),
            })
        })
    }

    /// The last lines the service's pod logged (its current container).
    pub async fn log_tail(&self, service: &str) -> Option<String> {
        let kp = &self.run.platform;
        let pod = kp.running_pod(service).await.ok()?;
        let pods = Api::<Pod>::namespaced(kp.client.clone(), &kp.namespace);
        let params = LogParams {
            tail_lines: Some(LOG_TAIL_LINES),
            ..Default::default()
        };
        bounded(pods.logs(&pod, &params), "reading its log")
            .await
            .ok()
    }

    /// How the service's container ended, if it did (restarted or terminated).
    pub async fn exited(&self, service: &str) -> Option<String> {
        let kp = &self.run.platform;
        let pods = Api::<Pod>::namespaced(kp.client.clone(), &kp.namespace);
        let selector = format!("{LABEL_SERVICE}={service}");
        let list = bounded(
            pods.list(&ListParams::default().labels(&selector)),
            "listing its pod",
        )
        .await
        .ok()?;
        let status = list.items.into_iter().next()?.status?;
        let c = status.container_statuses?.into_iter().next()?;
        let ended = c
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.clone()))?;
        Some(format!(
            "exited: {}, exit code {} (restarts {})",
            ended.reason.unwrap_or_else(|| "terminated".into()),
            ended.exit_code,
            c.restart_count
        ))
    }

    pub fn timings(&self) -> Vec<ServiceStart> {
        self.run
            .ready_in
            .iter()
            .map(|(s, took)| ServiceStart {
                service: s.clone(),
                image: self.images.get(s).cloned().unwrap_or_default(),
                ready_in: Some(*took),
                ready_at: self.run.ready_at.get(s).copied(),
                failure: None,
                log_tail: String::new(),
                cpu_to_ready: None,
                cpu_total: None,
            })
            .collect()
    }

    pub fn problems(&self) -> Vec<String> {
        self.problems.clone()
    }

    /// Deletes the run's namespace (the API server removes what is in it); an `up`
    /// platform's stays.
    pub async fn shutdown(&self) -> docker::Cleanup {
        if !self.owned {
            return docker::Cleanup::default();
        }
        let ns = self.run.platform.namespace.clone();
        match self.run.platform.delete().await {
            Ok(()) => docker::Cleanup {
                removed: vec![format!("namespace {ns}")],
                problems: Vec::new(),
            },
            Err(e) => docker::Cleanup {
                removed: Vec::new(),
                problems: vec![e],
            },
        }
    }
}

fn images_of(spec: &PlatformSpec) -> BTreeMap<String, String> {
    spec.services
        .iter()
        .map(|(n, s)| (n.clone(), s.image.clone()))
        .collect()
}

impl ServiceShell for KubeBackend {
    fn exec<'a>(
        &'a self,
        service: &'a str,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, String>> {
        Box::pin(self.run.platform.exec(service, argv, timeout))
    }
}

/// The signal handler's backstop (its own runtime, blocking): deletes the run's namespace
/// when this process used the cluster; what could not be done, as problems.
pub fn remove_run_blocking(run_id: &str) -> Vec<String> {
    if !USED.load(Ordering::SeqCst) {
        return Vec::new();
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return vec![format!(
                "kubernetes backend: a runtime for the cleanup: {e}"
            )]
        }
    };
    let ns = namespace_for(run_id);
    rt.block_on(async {
        let client = client().await.map_err(|e| vec![e])?;
        let api = Api::<k8s_openapi::api::core::v1::Namespace>::all(client);
        match tokio::time::timeout(TIMEOUT, api.delete(&ns, &Default::default())).await {
            Ok(Ok(_)) => Ok(()),
            // Already gone: the teardown got there first.
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => Ok(()),
            Ok(Err(e)) => Err(vec![format!(
                "deleting namespace {ns}: {}",
                error_chain(&e)
            )]),
            Err(_) => Err(vec![format!(
                "deleting namespace {ns}: no answer within {TIMEOUT:?}"
            )]),
        }
    })
    .err()
    .unwrap_or_default()
}
