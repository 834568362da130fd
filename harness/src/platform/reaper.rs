//! Whose leftovers may be removed. Every container and network of a run carries its
//! owner's identity (host, PID namespace, PID, process start time); a later run removes
//! them only when that owner is provably gone: same host and PID namespace, and the PID
//! is dead or now belongs to a process that started at another time. Anything else (a
//! run on another host, in another container sharing the engine, or still alive) is kept.

use std::collections::HashMap;
use std::sync::OnceLock;

use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System};

pub const LABEL_RUN: &str = "org.platform-harness.run";
pub const LABEL_PID: &str = "org.platform-harness.pid";
pub const LABEL_HOST: &str = "org.platform-harness.host";
/// The owning process's start time (seconds since the epoch): a recycled PID has another.
pub const LABEL_STARTED: &str = "org.platform-harness.started";
/// The owning process's PID namespace: its PID means nothing in another one.
pub const LABEL_PIDNS: &str = "org.platform-harness.pidns";

/// Marks the containers and network of an `up` platform (its value: the platform's up
/// id). They outlive the process that started them on purpose: the reaper keeps them, and
/// only `platform-verify down` removes them.
pub const LABEL_UP: &str = "org.platform-harness.up";

/// A PID namespace we could not identify matches nothing, so it is never reaped.
const UNKNOWN_PIDNS: &str = "unknown";
/// An owner whose start time could not be read is never reaped: its PID proves nothing.
const UNKNOWN_START: u64 = 0;

/// Who created a run's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pidns: String,
    pub pid: u32,
    pub started: u64,
}

impl Owner {
    /// This process, computed once.
    pub fn this_process() -> &'static Owner {
        static ME: OnceLock<Owner> = OnceLock::new();
        ME.get_or_init(|| {
            let pid = std::process::id();
            let started = match liveness(pid) {
                Liveness::Alive { started } => started,
                Liveness::Dead => None,
            };
            Owner {
                host: hostname::get()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                pidns: pid_namespace(),
                pid,
                // 0 marks it unknown: such a run is never reaped (see `decide`).
                started: started.unwrap_or(UNKNOWN_START),
            }
        })
    }

    pub fn labels(&self) -> [(String, String); 4] {
        [
            (LABEL_PID.into(), self.pid.to_string()),
            (LABEL_HOST.into(), self.host.clone()),
            (LABEL_STARTED.into(), self.started.to_string()),
            (LABEL_PIDNS.into(), self.pidns.clone()),
        ]
    }

    /// `None` when a marker is missing (a run of an older harness): such runs are kept.
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Owner> {
        Some(Owner {
            host: labels.get(LABEL_HOST)?.clone(),
            pidns: labels.get(LABEL_PIDNS)?.clone(),
            pid: labels.get(LABEL_PID)?.parse().ok()?,
            started: labels.get(LABEL_STARTED)?.parse().ok()?,
        })
    }
}

/// On Linux the namespace's inode names it; elsewhere there are no PID namespaces. Reading
/// our own `/proc/self` records an identity; deciding about others never reads `/proc`.
fn pid_namespace() -> String {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| UNKNOWN_PIDNS.to_string())
    }
    #[cfg(not(target_os = "linux"))]
    {
        "none".to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Liveness {
    Dead,
    Alive { started: Option<u64> },
}

/// Whether `pid` runs, and since when, through sysinfo (Linux, macOS, Windows, BSDs).
pub fn liveness(pid: u32) -> Liveness {
    let mut sys = System::new();
    let p = Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[p]),
        true,
        ProcessRefreshKind::nothing(),
    );
    match sys.process(p) {
        None if signalable(pid) => Liveness::Alive { started: None },
        None => Liveness::Dead,
        Some(proc) if matches!(proc.status(), ProcessStatus::Zombie | ProcessStatus::Dead) => {
            Liveness::Dead
        }
        Some(proc) => Liveness::Alive {
            started: Some(proc.start_time()),
        },
    }
}

/// Whether the PID exists even when the process table hides it (another user's process
/// under `hidepid`): `kill(pid, 0)` answers EPERM for those, ESRCH for none.
#[cfg(unix)]
fn signalable(pid: u32) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid as NixPid;
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    !matches!(kill(NixPid::from_raw(raw), None), Err(Errno::ESRCH))
}

#[cfg(not(unix))]
fn signalable(_pid: u32) -> bool {
    false
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Keep(&'static str),
    Reap(&'static str),
}

/// Start times are whole seconds computed from the boot time; allow for rounding. A PID
/// recycled within that second is taken for the owner: the safe mistake.
const START_TOLERANCE_S: u64 = 1;

/// `decide` for a container or network by its labels: an `up` platform's are kept.
pub fn decide_labelled(
    labels: &HashMap<String, String>,
    me: &Owner,
    live: impl FnOnce(u32) -> Liveness,
) -> Verdict {
    if labels.contains_key(LABEL_UP) {
        return Verdict::Keep("it belongs to an `up` platform");
    }
    decide(Owner::from_labels(labels).as_ref(), me, live)
}

pub fn decide(owner: Option<&Owner>, me: &Owner, live: impl FnOnce(u32) -> Liveness) -> Verdict {
    let Some(o) = owner else {
        return Verdict::Keep("it carries no owner marker");
    };
    if o.host != me.host {
        return Verdict::Keep("it belongs to another host");
    }
    if o.pidns != me.pidns || o.pidns == UNKNOWN_PIDNS {
        return Verdict::Keep("it belongs to another PID namespace");
    }
    if o.started == UNKNOWN_START {
        return Verdict::Keep("its owner's start time is unknown");
    }
    if o.pid == me.pid {
        return if o.started.abs_diff(me.started) <= START_TOLERANCE_S {
            Verdict::Keep("it is this process's run")
        } else {
            Verdict::Reap("its PID is now this process")
        };
    }
    match live(o.pid) {
        Liveness::Dead => Verdict::Reap("its process is gone"),
        Liveness::Alive { started: Some(s) } if s.abs_diff(o.started) > START_TOLERANCE_S => {
            Verdict::Reap("its PID now belongs to another process")
        }
        Liveness::Alive { .. } => Verdict::Keep("its process is alive"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn me() -> Owner {
        Owner {
            host: "ci-1".into(),
            pidns: "pid:[4026531836]".into(),
            pid: 100,
            started: 1_000_000,
        }
    }

    fn other(host: &str, pidns: &str, pid: u32, started: u64) -> Owner {
        Owner {
            host: host.into(),
            pidns: pidns.into(),
            pid,
            started,
        }
    }

    const NS: &str = "pid:[4026531836]";
    const OTHER_NS: &str = "pid:[4026532999]";

    #[rstest]
    #[case::dead_owner(other("ci-1", NS, 200, 999_000), Liveness::Dead, true)]
    #[case::alive_owner(other("ci-1", NS, 200, 999_000), Liveness::Alive { started: Some(999_000) }, false)]
    #[case::alive_rounding(other("ci-1", NS, 200, 999_000), Liveness::Alive { started: Some(999_001) }, false)]
    #[case::recycled_pid(other("ci-1", NS, 200, 999_000), Liveness::Alive { started: Some(999_500) }, true)]
    #[case::alive_start_unknown(other("ci-1", NS, 200, 999_000), Liveness::Alive { started: None }, false)]
    #[case::other_host_dead_pid(other("ci-2", NS, 200, 999_000), Liveness::Dead, false)]
    #[case::other_namespace_dead_pid(other("ci-1", OTHER_NS, 200, 999_000), Liveness::Dead, false)]
    #[case::other_namespace_recycled(other("ci-1", OTHER_NS, 200, 1), Liveness::Alive { started: Some(5) }, false)]
    #[case::unknown_namespace(other("ci-1", UNKNOWN_PIDNS, 200, 999_000), Liveness::Dead, false)]
    #[case::unknown_start_time(other("ci-1", NS, 200, 0), Liveness::Alive { started: Some(999_000) }, false)]
    #[case::this_process(other("ci-1", NS, 100, 1_000_000), Liveness::Dead, false)]
    #[case::our_pid_earlier_process(other("ci-1", NS, 100, 900_000), Liveness::Dead, true)]
    fn reaps_only_provably_dead_owners(
        #[case] owner: Owner,
        #[case] live: Liveness,
        #[case] reap: bool,
    ) {
        let mut me = me();
        if owner.pidns == UNKNOWN_PIDNS {
            me.pidns = UNKNOWN_PIDNS.into();
        }
        let verdict = decide(Some(&owner), &me, |_| live);
        assert_eq!(matches!(verdict, Verdict::Reap(_)), reap, "{verdict:?}");
    }

    #[rstest]
    #[case::up_platform(true, false)]
    #[case::dead_run(false, true)]
    fn an_up_platform_is_kept_though_its_starter_is_gone(#[case] up: bool, #[case] reap: bool) {
        let mut labels: HashMap<String, String> = other("ci-1", NS, 200, 999_000)
            .labels()
            .into_iter()
            .collect();
        if up {
            labels.insert(LABEL_UP.into(), "default-0a1b2c3d".into());
        }
        let verdict = decide_labelled(&labels, &me(), |_| Liveness::Dead);
        assert_eq!(matches!(verdict, Verdict::Reap(_)), reap, "{verdict:?}");
    }

    #[test]
    fn a_run_without_owner_markers_is_kept() {
        let labels = HashMap::from([
            (LABEL_PID.to_string(), "123".to_string()),
            (LABEL_HOST.to_string(), "ci-1".to_string()),
        ]);
        let owner = Owner::from_labels(&labels);
        assert_eq!(owner, None);
        assert!(matches!(
            decide(owner.as_ref(), &me(), |_| Liveness::Dead),
            Verdict::Keep(_)
        ));
    }

    #[test]
    fn this_process_is_alive_with_its_recorded_start_time() {
        let me = Owner::this_process();
        assert!(me.started > 0, "{me:?}");
        assert_eq!(
            liveness(me.pid),
            Liveness::Alive {
                started: Some(me.started)
            }
        );
        let labels: HashMap<String, String> = me.labels().into_iter().collect();
        assert_eq!(Owner::from_labels(&labels).as_ref(), Some(me));
    }

    #[test]
    fn a_finished_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(liveness(pid), Liveness::Dead);
    }
}
