//! The forwarder of an `up` platform on a cluster: a process of its own (`platform-verify
//! forward-up`), started by `up`, that holds every service's port-forward on the ports `up`
//! recorded until the platform goes. Its pid file and log are in `platform::up::forwarder`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::up::{block_on, exit};
use super::up_kube::cluster;
use super::RunError;
use crate::platform::kubernetes::up as kup;
use crate::platform::up::{self, forwarder, UpState};
use crate::report::console;

/// How long the forwarder gets to hold the ports after it is started, and to end.
const FORWARDER_START: Duration = Duration::from_secs(20);
pub(super) const FORWARDER_STOP: Duration = Duration::from_secs(5);
/// How often the forwarder looks whether its platform is still there.
const FORWARDER_WATCH: Duration = Duration::from_secs(5);
/// Unanswered looks (a minute) after which it gives up: the cluster is gone.
const FORWARDER_UNANSWERED: u32 = 12;

/// Starts the forwarder of the state in `dir` (replacing one that runs) as a process of
/// its own, outliving this one, and waits until it holds the ports.
pub(super) async fn start_forwarder(dir: &Path) -> Result<(), RunError> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    forwarder::stop(dir, FORWARDER_STOP).map_err(|e| RunError::Cleanup(vec![e]))?;
    let failed = |why: String| RunError::Engine(format!("the port-forward process: {why}"));
    let exe = std::env::current_exe().map_err(|e| failed(e.to_string()))?;
    let is_cli = exe
        .file_stem()
        .is_some_and(|s| s.to_string_lossy().starts_with("platform-verify"));
    if !is_cli {
        return Err(failed(format!(
            "started by the platform-verify binary, not {}",
            exe.display()
        )));
    }
    let log_path = dir.join(forwarder::LOG_FILE);
    let log = std::fs::File::create(&log_path).map_err(|e| failed(e.to_string()))?;
    let log2 = log.try_clone().map_err(|e| failed(e.to_string()))?;
    // Its own process group: a Ctrl-C in this terminal later must not end it.
    let mut child = Command::new(exe)
        .arg("forward-up")
        .arg("--state")
        .arg(up::canonical(&dir.join(up::STATE_FILE)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    let until = Instant::now() + FORWARDER_START;
    loop {
        if forwarder::running(dir).is_some_and(|f| f.pid == child.id()) {
            return Ok(());
        }
        let ended = child.try_wait().ok().flatten();
        if ended.is_some() || Instant::now() > until {
            let _ = child.kill();
            let said = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(failed(match ended {
                Some(status) => format!("it ended ({status}): {}", said.trim()),
                None => format!("it did not hold the ports within {FORWARDER_START:?}"),
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The forwarder itself (`platform-verify forward-up --state FILE`, started by `up`): holds
/// each service's forwards on the ports `up` recorded until `down` stops it, its state file
/// goes, its namespace goes, or the cluster stops answering for a minute.
pub fn serve(state_path: &Path) -> ExitCode {
    exit(block_on(serve_async(state_path)))
}

async fn serve_async(state_path: &Path) -> Result<ExitCode, RunError> {
    let state = UpState::load(state_path)?;
    let dir = state_path.parent().unwrap_or(Path::new("."));
    let namespace = state.namespace.clone().ok_or_else(|| {
        RunError::Engine(format!(
            "{} is not the state of a platform on the kubernetes backend",
            state_path.display()
        ))
    })?;
    let client = cluster().await?;
    let kp = kup::platform_of(client.clone(), &state, &namespace);
    for (name, s) in &state.services {
        kp.forward_ports(name, &s.ports, &s.forwarded)
            .await
            .map_err(RunError::Engine)?;
    }
    forwarder::record(dir).map_err(|e| RunError::Write {
        what: dir.join(forwarder::PID_FILE).display().to_string(),
        reason: e.to_string(),
    })?;
    console::say(format!(
        "platform: forwarding the `up` platform in namespace {namespace} (process {})",
        std::process::id()
    ));
    let mut unanswered = 0;
    loop {
        tokio::time::sleep(FORWARDER_WATCH).await;
        if !state_path.exists() {
            console::say("platform: the state file is gone; stopping");
            break;
        }
        match kup::namespace_exists(&client, &namespace).await {
            Ok(true) => unanswered = 0,
            Ok(false) => {
                console::say(format!("platform: namespace {namespace} is gone; stopping"));
                break;
            }
            Err(e) => {
                unanswered += 1;
                if unanswered >= FORWARDER_UNANSWERED {
                    console::say(format!(
                        "platform: the cluster does not answer ({e}); stopping"
                    ));
                    break;
                }
            }
        }
    }
    kp.stop_forwards();
    Ok(ExitCode::SUCCESS)
}
