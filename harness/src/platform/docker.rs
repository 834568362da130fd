//! The Docker engine beyond what testcontainers covers: the run's network, logs,
//! image presence, and removal of everything a run created (by label).

use std::collections::HashMap;

use futures::StreamExt;
use testcontainers::bollard::container::LogOutput;
use testcontainers::bollard::models::NetworkCreateRequest;
use testcontainers::bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use testcontainers::bollard::Docker;

/// Every container and network of a run carries these, so `docker ps -a --filter
/// label=org.platform-harness.run=<id>` finds a leak, and a later run can reap it.
pub const LABEL_RUN: &str = "org.platform-harness.run";
pub const LABEL_PID: &str = "org.platform-harness.pid";
pub const LABEL_HOST: &str = "org.platform-harness.host";

pub fn connect() -> Result<Docker, String> {
    Docker::connect_with_local_defaults().map_err(|e| format!("cannot reach a Docker engine: {e}"))
}

/// Fails fast, with the one sentence a user needs, when no engine answers.
pub async fn ping(docker: &Docker) -> Result<String, String> {
    let v = docker.version().await.map_err(|e| {
        format!("no Docker engine answers ({e}); start one, or run fixtures/images/build, which starts one")
    })?;
    Ok(v.version.unwrap_or_default())
}

pub fn run_labels(run_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_RUN.to_string(), run_id.to_string()),
        (LABEL_PID.to_string(), std::process::id().to_string()),
        (LABEL_HOST.to_string(), this_host()),
    ])
}

pub fn this_host() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub async fn create_network(docker: &Docker, name: &str, run_id: &str) -> Result<(), String> {
    docker
        .create_network(NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(run_labels(run_id)),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("creating network {name}: {e}"))
}

pub async fn image_exists(docker: &Docker, image: &str) -> bool {
    docker.inspect_image(image).await.is_ok()
}

/// The last `lines` lines of a container's stdout and stderr, interleaved as written.
pub async fn log_tail(docker: &Docker, container_id: &str, lines: usize) -> String {
    let opts = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .tail(&lines.to_string())
        .build();
    collect_logs(docker, container_id, opts).await
}

pub async fn all_logs(docker: &Docker, container_id: &str) -> String {
    let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
    collect_logs(docker, container_id, opts).await
}

async fn collect_logs(
    docker: &Docker,
    container_id: &str,
    opts: testcontainers::bollard::query_parameters::LogsOptions,
) -> String {
    let mut out = String::new();
    let mut stream = docker.logs(container_id, Some(opts));
    while let Some(item) = stream.next().await {
        match item {
            Ok(
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message },
            ) => {
                out.push_str(&String::from_utf8_lossy(&message));
            }
            Ok(LogOutput::StdIn { .. }) => {}
            Err(e) => {
                out.push_str(&format!("\n(reading logs failed: {e})"));
                break;
            }
        }
    }
    out
}

/// Ids of every container, running or not, labelled with `run_id`.
pub async fn run_containers(docker: &Docker, run_id: &str) -> Vec<String> {
    containers_matching(docker, &run_filter(run_id)).await
}

fn run_filter(run_id: &str) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", vec![format!("{LABEL_RUN}={run_id}")])])
}

async fn containers_matching(docker: &Docker, filter: &HashMap<&str, Vec<String>>) -> Vec<String> {
    docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(filter)
                .build(),
        ))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// Removes every container (with its anonymous volumes) and network labelled with
/// `run_id`. Returns what it removed, for the console.
pub async fn remove_run(docker: &Docker, run_id: &str) -> Vec<String> {
    remove_matching(docker, &run_filter(run_id)).await
}

async fn remove_matching(docker: &Docker, filter: &HashMap<&str, Vec<String>>) -> Vec<String> {
    let mut removed = Vec::new();
    let containers = containers_matching(docker, filter).await;
    let rm = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    for id in containers {
        if docker.remove_container(&id, Some(rm.clone())).await.is_ok() {
            removed.push(format!("container {}", &id[..12.min(id.len())]));
        }
    }
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(filter).build(),
        ))
        .await
        .unwrap_or_default();
    for n in networks {
        if let Some(name) = n.name {
            if docker.remove_network(&name).await.is_ok() {
                removed.push(format!("network {name}"));
            }
        }
    }
    removed
}

/// Removes what earlier runs on this host left behind when they were killed outright
/// (SIGKILL, a crashed machine): runs whose process no longer exists.
pub async fn reap_dead_runs(docker: &Docker) -> Vec<String> {
    let filter = HashMap::from([("label", vec![format!("{LABEL_HOST}={}", this_host())])]);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await
        .unwrap_or_default();
    let mut dead_runs: Vec<String> = containers
        .into_iter()
        .filter_map(|c| c.labels)
        .filter(|l| {
            l.get(LABEL_PID)
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|pid| !process_alive(pid))
        })
        .filter_map(|l| l.get(LABEL_RUN).cloned())
        .collect();
    dead_runs.sort();
    dead_runs.dedup();
    let mut removed = Vec::new();
    for run in dead_runs {
        removed.extend(remove_run(docker, &run).await);
    }
    removed
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Cleanup from places with no async runtime of their own to use (signal handlers,
/// `Drop` during a panic): a private runtime on a private thread.
pub fn remove_run_blocking(run_id: &str) -> Vec<String> {
    let run_id = run_id.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let docker = connect().ok()?;
            Some(remove_run(&docker, &run_id).await)
        })
    })
    .join()
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// Runs a command in a container and returns its exit code and combined output.
/// (testcontainers' exec result holds a non-`Sync` stream across an await, which keeps
/// the start-up tasks from being spawned; bollard's exec API has no such catch.)
pub async fn exec(
    docker: &Docker,
    container_id: &str,
    argv: &[String],
) -> Result<(i64, String), String> {
    use testcontainers::bollard::exec::{CreateExecOptions, StartExecResults};
    let shown = argv.join(" ");
    let created = docker
        .create_exec(
            container_id,
            CreateExecOptions {
                cmd: Some(argv.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("`{shown}`: {e}"))?;
    let mut output = String::new();
    if let StartExecResults::Attached {
        output: mut stream, ..
    } = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| format!("`{shown}`: {e}"))?
    {
        while let Some(Ok(chunk)) = stream.next().await {
            output.push_str(&chunk.to_string());
        }
    }
    let inspect = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| format!("`{shown}`: {e}"))?;
    Ok((inspect.exit_code.unwrap_or(-1), output))
}
