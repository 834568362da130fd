//! The Docker engine beyond what testcontainers covers: the run's network, logs,
//! image presence, and removal of everything a run created (by label).

use std::collections::HashMap;
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use futures::StreamExt;
use testcontainers::bollard::container::LogOutput;
use testcontainers::bollard::errors::Error as BollardError;
use testcontainers::bollard::models::{
    ContainerState, ContainerSummary, Network, NetworkCreateRequest,
};
use testcontainers::bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use testcontainers::bollard::Docker;

use super::reaper::{self, Owner, Verdict};

/// Every container and network of a run carries these, so `docker ps -a --filter
/// label=org.platform-harness.run=<id>` finds a leak, and a later run can reap it.
pub use super::reaper::{LABEL_HOST, LABEL_PID, LABEL_PIDNS, LABEL_RUN, LABEL_STARTED, LABEL_UP};

/// No single engine call may hang a run.
pub const ENGINE_CALL: Duration = Duration::from_secs(30);

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
    let mut labels = HashMap::from([(LABEL_RUN.to_string(), run_id.to_string())]);
    match up_runs().lock().ok().and_then(|u| u.get(run_id).cloned()) {
        // No owner markers: a reaper of any harness version keeps what carries none
        // (the starter of an `up` platform exits while it runs on).
        Some(up) => {
            labels.insert(LABEL_UP.to_string(), up);
        }
        None => labels.extend(Owner::this_process().labels()),
    }
    labels
}

/// Runs started by `platform-verify up`, with their platform's up id. A registry rather
/// than a parameter, so the start path labels them without knowing about `up`.
fn up_runs() -> &'static std::sync::Mutex<HashMap<String, String>> {
    static UP: std::sync::OnceLock<std::sync::Mutex<HashMap<String, String>>> =
        std::sync::OnceLock::new();
    UP.get_or_init(Default::default)
}

/// Labels every container and network `run_id` creates as part of the `up` platform
/// `up_id` (`LABEL_UP`): the reaper keeps them, `remove_up` removes them.
pub fn mark_up_run(run_id: &str, up_id: &str) {
    if let Ok(mut u) = up_runs().lock() {
        u.insert(run_id.to_string(), up_id.to_string());
    }
}

pub fn this_host() -> String {
    Owner::this_process().host.clone()
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
    let read = async {
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
    };
    if tokio::time::timeout(ENGINE_CALL, read).await.is_err() {
        out.push_str("\n(reading logs: the engine did not answer in time)");
    }
    out
}

/// What a removal did, and what it could not do: never swallowed, the report shows it.
#[derive(Debug, Clone, Default)]
pub struct Cleanup {
    pub removed: Vec<String>,
    pub problems: Vec<String>,
}

impl Cleanup {
    pub fn merge(&mut self, other: Cleanup) {
        self.removed.extend(other.removed);
        self.problems.extend(other.problems);
    }
}

/// Ids of every container, running or not, labelled with `run_id`. `Err` when the engine
/// cannot be asked: "nothing left" must never be assumed.
pub async fn run_containers(docker: &Docker, run_id: &str) -> Result<Vec<String>, String> {
    Ok(containers_matching(docker, &run_filter(run_id))
        .await?
        .into_iter()
        .filter_map(|c| c.id)
        .collect())
}

/// Names of the networks labelled with `run_id`.
pub async fn run_networks(docker: &Docker, run_id: &str) -> Result<Vec<String>, String> {
    Ok(networks_matching(docker, &run_filter(run_id))
        .await?
        .into_iter()
        .filter_map(|n| n.name)
        .collect())
}

fn run_filter(run_id: &str) -> HashMap<&'static str, Vec<String>> {
    label_filter(LABEL_RUN, run_id)
}

fn label_filter(key: &str, value: &str) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", vec![format!("{key}={value}")])])
}

/// Ids of the containers and names of the networks labelled `key=value`.
pub async fn labelled(
    docker: &Docker,
    key: &str,
    value: &str,
) -> Result<(Vec<String>, Vec<String>), String> {
    let filter = label_filter(key, value);
    let containers = containers_matching(docker, &filter).await?;
    let networks = networks_matching(docker, &filter).await?;
    Ok((
        containers.into_iter().filter_map(|c| c.id).collect(),
        networks.into_iter().filter_map(|n| n.name).collect(),
    ))
}

/// Removes the `up` platform `up_id` (every run that added to it), proving nothing is left.
pub async fn remove_up(docker: &Docker, up_id: &str) -> Cleanup {
    remove_matching(
        docker,
        &format!("up platform {up_id}"),
        &label_filter(LABEL_UP, up_id),
    )
    .await
}

async fn containers_matching(
    docker: &Docker,
    filter: &HashMap<&str, Vec<String>>,
) -> Result<Vec<ContainerSummary>, String> {
    bounded(
        "listing containers",
        docker.list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(filter)
                .build(),
        )),
    )
    .await
}

async fn networks_matching(
    docker: &Docker,
    filter: &HashMap<&str, Vec<String>>,
) -> Result<Vec<Network>, String> {
    bounded(
        "listing networks",
        docker.list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(filter).build(),
        )),
    )
    .await
}

/// One engine call under `ENGINE_CALL`, its error named by what it was doing.
async fn bounded<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, BollardError>>,
) -> Result<T, String> {
    match tokio::time::timeout(ENGINE_CALL, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: the engine did not answer within {}",
            humantime::format_duration(ENGINE_CALL)
        )),
    }
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Removes every container (with its anonymous volumes) and network labelled with
/// `run_id`, then lists again to prove nothing is left.
pub async fn remove_run(docker: &Docker, run_id: &str) -> Cleanup {
    remove_matching(docker, &format!("run {run_id}"), &run_filter(run_id)).await
}

/// Removes every container and network `filter` selects, then lists again to prove
/// nothing is left; `what` names them in problems ("run abc").
async fn remove_matching(
    docker: &Docker,
    what: &str,
    filter: &HashMap<&str, Vec<String>>,
) -> Cleanup {
    let mut out = Cleanup::default();
    match containers_matching(docker, filter).await {
        Ok(list) => {
            for id in list.into_iter().filter_map(|c| c.id) {
                match remove_container(docker, &id).await {
                    Ok(()) => out
                        .removed
                        .push(format!("container {}", &id[..12.min(id.len())])),
                    Err(e) => out.problems.push(format!("{what}: {e}")),
                }
            }
        }
        Err(e) => out
            .problems
            .push(format!("{what}: could not list its containers: {e}")),
    }
    match networks_matching(docker, filter).await {
        Ok(list) => {
            for name in list.into_iter().filter_map(|n| n.name) {
                match remove_network(docker, &name).await {
                    Ok(()) => out.removed.push(format!("network {name}")),
                    Err(e) => out.problems.push(format!("{what}: {e}")),
                }
            }
        }
        Err(e) => out
            .problems
            .push(format!("{what}: could not list its networks: {e}")),
    }
    if out.problems.is_empty() {
        let left: Vec<String> = match (
            containers_matching(docker, filter).await,
            networks_matching(docker, filter).await,
        ) {
            (Ok(c), Ok(n)) => c
                .into_iter()
                .filter_map(|c| c.id)
                .map(|c| format!("container {}", &c[..12.min(c.len())]))
                .chain(
                    n.into_iter()
                        .filter_map(|n| n.name)
                        .map(|n| format!("network {n}")),
                )
                .collect(),
            (Err(e), _) | (_, Err(e)) => vec![format!("(could not check: {e})")],
        };
        if !left.is_empty() {
            out.problems.push(format!(
                "{what}: still on the engine after removal: {}",
                left.join(", ")
            ));
        }
    }
    out
}

/// Force-removes a container and waits until the engine no longer has it (a removal
/// already in progress elsewhere answers 409; it is done once inspect answers 404).
async fn remove_container(docker: &Docker, id: &str) -> Result<(), String> {
    let short = &id[..12.min(id.len())];
    let rm = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match tokio::time::timeout(ENGINE_CALL, docker.remove_container(id, Some(rm))).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) if status_of(&e) == Some(404) => return Ok(()),
        Ok(Err(e)) if status_of(&e) != Some(409) => {
            return Err(format!("could not remove container {short}: {e}"))
        }
        _ => {}
    }
    let gone = || async {
        match docker.inspect_container(id, None).await {
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            _ => Err(()),
        }
    };
    gone.retry(settle_backoff())
        .await
        .map_err(|()| format!("container {short} was still being removed after {SETTLE:?}"))
}

/// Removes a network, retrying while the engine still detaches removed containers.
async fn remove_network(docker: &Docker, name: &str) -> Result<(), String> {
    let attempt = || async {
        match tokio::time::timeout(ENGINE_CALL, docker.remove_network(name)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if status_of(&e) == Some(404) => Ok(()),
            Ok(Err(e)) => Err(format!("could not remove network {name}: {e}")),
            Err(_) => Err(format!(
                "could not remove network {name}: the engine did not answer"
            )),
        }
    };
    attempt.retry(settle_backoff()).await
}

/// How long removals may take to settle on a busy engine.
const SETTLE: Duration = Duration::from_secs(20);

fn settle_backoff() -> ConstantBuilder {
    ConstantBuilder::default()
        .with_delay(Duration::from_millis(250))
        .with_max_times((SETTLE.as_millis() / 250) as usize)
}

/// Removes what earlier runs left behind when they were killed outright (SIGKILL, a
/// crashed machine): only runs whose owner is provably gone (see `reaper::decide`).
pub async fn reap_dead_runs(docker: &Docker) -> Cleanup {
    let me = Owner::this_process();
    let filter = HashMap::from([("label", vec![format!("{LABEL_HOST}={}", me.host)])]);
    let mut out = Cleanup::default();
    let mut labelled: Vec<HashMap<String, String>> = Vec::new();
    match containers_matching(docker, &filter).await {
        Ok(list) => labelled.extend(list.into_iter().filter_map(|c| c.labels)),
        Err(e) => out
            .problems
            .push(format!("looking for runs left behind: {e}")),
    }
    // A run killed between creating its network and its first container leaves a network.
    match networks_matching(docker, &filter).await {
        Ok(list) => labelled.extend(list.into_iter().filter_map(|n| n.labels)),
        Err(e) => out
            .problems
            .push(format!("looking for runs left behind: {e}")),
    }
    let mut dead_runs: Vec<String> = labelled
        .iter()
        .filter(|l| {
            matches!(
                reaper::decide_labelled(l, me, reaper::liveness),
                Verdict::Reap(_)
            )
        })
        .filter_map(|l| l.get(LABEL_RUN).cloned())
        .collect();
    dead_runs.sort();
    dead_runs.dedup();
    for run in dead_runs {
        out.merge(remove_run(docker, &run).await);
    }
    out
}

/// Cleanup from places with no async runtime of their own to use (signal handlers,
/// `Drop` during a panic): a private runtime on a private thread.
pub fn remove_run_blocking(run_id: &str) -> Cleanup {
    let run_id = run_id.to_string();
    let joined = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a runtime for the cleanup: {e}"))?;
        rt.block_on(async {
            let docker = connect()?;
            Ok::<_, String>(remove_run(&docker, &run_id).await)
        })
    })
    .join();
    match joined {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => Cleanup {
            removed: Vec::new(),
            problems: vec![e],
        },
        Err(_) => Cleanup {
            removed: Vec::new(),
            problems: vec!["the cleanup thread panicked".into()],
        },
    }
}

/// Runs a command in a container and returns its exit code and combined output, or
/// `Err` when it did not finish within `limit`. The engine has no call to stop an exec,
/// so a command past its limit is abandoned (it ends with its container).
/// (testcontainers' exec result holds a non-`Sync` stream across an await, which keeps
/// the start-up tasks from being spawned; bollard's exec API has no such catch.)
pub async fn exec(
    docker: &Docker,
    container_id: &str,
    argv: &[String],
    limit: Duration,
) -> Result<(i64, String), String> {
    let shown = argv.join(" ");
    match tokio::time::timeout(limit, exec_unbounded(docker, container_id, argv)).await {
        Ok(r) => r.map_err(|e| format!("`{shown}`: {e}")),
        Err(_) => Err(format!(
            "`{shown}` did not finish within {}; abandoned it",
            seconds(limit)
        )),
    }
}

/// One implementation of a container exec: `shell::exec_unbounded`, its streams joined.
async fn exec_unbounded(
    docker: &Docker,
    container_id: &str,
    argv: &[String],
) -> Result<(i64, String), String> {
    let out = super::shell::exec_unbounded(docker, container_id, argv).await?;
    Ok((out.exit_code, out.stdout + &out.stderr))
}

/// "20 s", "2.5 s": how the messages show a duration.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if (s - s.round()).abs() < 0.05 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// The container's state, or `Err` when the engine cannot tell.
pub async fn container_state(docker: &Docker, id: &str) -> Result<ContainerState, String> {
    bounded("inspecting a container", docker.inspect_container(id, None))
        .await?
        .state
        .ok_or_else(|| "the engine reported no state".to_string())
}

/// "exited: killed (out of memory), exit code 137" for a container that stopped;
/// `None` while it runs.
pub fn describe_exit(state: &ContainerState) -> Option<String> {
    if state.running == Some(true) {
        return None;
    }
    let code = state.exit_code.unwrap_or(-1);
    let how = if state.oom_killed == Some(true) {
        "killed (out of memory)".to_string()
    } else if code > 128 {
        let signal = match code - 128 {
            9 => "killed".to_string(),
            15 => "terminated".to_string(),
            6 => "aborted".to_string(),
            11 => "crashed (segmentation fault)".to_string(),
            n => format!("stopped by signal {n}"),
        };
        signal
    } else {
        "exited".to_string()
    };
    let mut text = if how == "exited" {
        format!("exited with exit code {code}")
    } else {
        format!("exited: {how}, exit code {code}")
    };
    if let Some(e) = state.error.as_deref().filter(|e| !e.is_empty()) {
        text.push_str(&format!(" ({e})"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(Some(true), false, 0, None, None)]
    #[case(
        Some(false),
        true,
        137,
        None,
        Some("exited: killed (out of memory), exit code 137")
    )]
    #[case(Some(false), false, 137, None, Some("exited: killed, exit code 137"))]
    #[case(
        Some(false),
        false,
        143,
        None,
        Some("exited: terminated, exit code 143")
    )]
    #[case(Some(false), false, 1, None, Some("exited with exit code 1"))]
    #[case(
        Some(false),
        false,
        127,
        Some("exec: \"x\": not found"),
        Some("exited with exit code 127 (exec: \"x\": not found)")
    )]
    fn says_how_a_container_ended(
        #[case] running: Option<bool>,
        #[case] oom: bool,
        #[case] code: i64,
        #[case] error: Option<&str>,
        #[case] said: Option<&str>,
    ) {
        let state = ContainerState {
            running,
            oom_killed: Some(oom),
            exit_code: Some(code),
            error: error.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(describe_exit(&state).as_deref(), said);
    }

    #[tokio::test]
    async fn an_engine_that_cannot_be_listed_is_a_problem_not_an_empty_list() {
        // A path that exists but where no engine listens.
        let sock = std::env::temp_dir().join(format!("no-engine-{}.sock", std::process::id()));
        std::fs::write(&sock, b"").unwrap();
        let dead = Docker::connect_with_unix(
            sock.to_str().unwrap(),
            5,
            testcontainers::bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        assert!(run_containers(&dead, "r1").await.is_err());
        let c = remove_run(&dead, "r1").await;
        assert!(c.removed.is_empty());
        assert_eq!(c.problems.len(), 2, "{c:?}");
        assert!(
            c.problems[0].starts_with("run r1: could not list its containers: listing containers:"),
            "{c:?}"
        );
        assert!(
            c.problems[1].starts_with("run r1: could not list its networks"),
            "{c:?}"
        );
        let reaped = reap_dead_runs(&dead).await;
        assert_eq!(reaped.problems.len(), 2, "{reaped:?}");
    }

    #[test]
    fn an_up_run_carries_its_up_label_and_no_owner() {
        mark_up_run("up-run-1", "platform-0a1b2c3d");
        let up = run_labels("up-run-1");
        assert_eq!(
            up.get(LABEL_UP).map(String::as_str),
            Some("platform-0a1b2c3d")
        );
        assert!(!up.contains_key(LABEL_PID), "{up:?}");
        let plain = run_labels("plain-run-1");
        assert!(
            !plain.contains_key(LABEL_UP) && plain.contains_key(LABEL_PID),
            "{plain:?}"
        );
    }

    #[rstest]
    #[case(Duration::from_secs(20), "20 s")]
    #[case(Duration::from_millis(2500), "2.5 s")]
    fn shows_seconds(#[case] d: Duration, #[case] shown: &str) {
        assert_eq!(seconds(d), shown);
    }
}
