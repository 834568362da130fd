//! The process that holds an `up` platform's port-forwards on a cluster open between runs,
//! as Docker's published ports do for containers: warm runs (and cargo-nextest's many
//! processes at once) connect to 127.0.0.1 on the ports `up` recorded, and Kafka keeps
//! advertising a port that answers. Its pid and start time are in `forwarder.pid` beside the
//! state, so a reused pid is never taken for it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::platform::reaper::{liveness, Liveness};

pub const PID_FILE: &str = "forwarder.pid";
pub const LOG_FILE: &str = "forwarder.log";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forwarder {
    pub pid: u32,
    started: Option<u64>,
}

/// Records this process as the forwarder of the state in `dir`.
pub fn record(dir: &Path) -> std::io::Result<()> {
    let pid = std::process::id();
    let started = match liveness(pid) {
        Liveness::Alive { started } => started,
        Liveness::Dead => None,
    };
    let text = format!("{pid} {}\n", started.unwrap_or(0));
    std::fs::write(dir.join(PID_FILE), text)
}

/// The forwarder of the state in `dir` when it runs.
pub fn running(dir: &Path) -> Option<Forwarder> {
    let text = std::fs::read_to_string(dir.join(PID_FILE)).ok()?;
    let mut parts = text.split_whitespace();
    let pid: u32 = parts.next()?.parse().ok()?;
    let started: u64 = parts.next()?.parse().ok()?;
    let recorded = (started != 0).then_some(started);
    match liveness(pid) {
        Liveness::Alive { started: now } if recorded.is_none() || now == recorded => {
            Some(Forwarder {
                pid,
                started: recorded,
            })
        }
        _ => None,
    }
}

/// Stops the forwarder of `dir` (SIGTERM), waits up to `wait` for it to end and removes
/// its pid file; fine when none runs.
pub fn stop(dir: &Path, wait: Duration) -> Result<(), String> {
    if let Some(f) = running(dir) {
        terminate(f.pid)?;
        let until = Instant::now() + wait;
        while running(dir).is_some() {
            if Instant::now() > until {
                return Err(format!(
                    "the port-forward process {} did not end within {wait:?}",
                    f.pid
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    match std::fs::remove_file(dir.join(PID_FILE)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", dir.join(PID_FILE).display())),
    }
}

#[cfg(unix)]
fn terminate(pid: u32) -> Result<(), String> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let raw = i32::try_from(pid).map_err(|e| e.to_string())?;
    match kill(Pid::from_raw(raw), Signal::SIGTERM) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(format!("stopping the port-forward process {pid}: {e}")),
    }
}

#[cfg(not(unix))]
fn terminate(pid: u32) -> Result<(), String> {
    Err(format!(
        "stopping the port-forward process {pid}: only supported on Unix"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_process_runs_until_its_record_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running(dir.path()), None);
        record(dir.path()).unwrap();
        assert_eq!(running(dir.path()).map(|f| f.pid), Some(std::process::id()));
        // Same pid, another start time: a reused pid is not the forwarder.
        std::fs::write(
            dir.path().join(PID_FILE),
            format!("{} 1\n", std::process::id()),
        )
        .unwrap();
        assert_eq!(running(dir.path()), None);
        // Nothing runs: stopping only removes the file.
        stop(dir.path(), Duration::from_secs(1)).unwrap();
        assert!(!dir.path().join(PID_FILE).exists());
    }
}
