//! CPU time used: by a container (its cgroup's accounting), by the harness itself and by
//! the Docker engine, for the report and the benchmark's physical limit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use testcontainers::bollard::query_parameters::StatsOptionsBuilder;
use testcontainers::bollard::Docker;

/// CPU time the container's processes have used so far. Read from its cgroup when the
/// engine runs on this machine (instant and exact); else asked of the engine, which
/// answers at its next one-second sampling tick. `None` when neither can say.
pub async fn container(docker: &Docker, container_id: &str) -> Option<Duration> {
    if let Some(used) = from_cgroup(container_id) {
        return Some(used);
    }
    let opts = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let mut stats = docker.stats(container_id, Some(opts));
    let first = tokio::time::timeout(Duration::from_secs(3), stats.next()).await;
    let nanos = first.ok()??.ok()?.cpu_stats?.cpu_usage?.total_usage?;
    Some(Duration::from_nanos(nanos))
}

/// The places Docker's cgroup drivers put a container's CPU accounting: cgroup v1
/// (`cpuacct.usage`, nanoseconds) and v2 with either driver (`cpu.stat`, microseconds).
fn cgroup_files(id: &str) -> [(PathBuf, Unit); 3] {
    let root = PathBuf::from("/sys/fs/cgroup");
    [
        (
            root.join(format!("cpuacct/docker/{id}/cpuacct.usage")),
            Unit::Nanos,
        ),
        (
            root.join(format!("system.slice/docker-{id}.scope/cpu.stat")),
            Unit::UsageUsec,
        ),
        (root.join(format!("docker/{id}/cpu.stat")), Unit::UsageUsec),
    ]
}

#[derive(Clone, Copy)]
enum Unit {
    Nanos,
    UsageUsec,
}

/// The container's CPU time from its cgroup's accounting, when this machine runs the engine
/// and the cgroup is readable (instant); `None` otherwise.
pub fn from_cgroup(id: &str) -> Option<Duration> {
    cgroup_files(id).into_iter().find_map(|(path, unit)| {
        let text = std::fs::read_to_string(path).ok()?;
        parse(&text, unit)
    })
}

fn parse(text: &str, unit: Unit) -> Option<Duration> {
    match unit {
        Unit::Nanos => text.trim().parse().ok().map(Duration::from_nanos),
        Unit::UsageUsec => text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_micros),
    }
}

/// CPU time this process has used (user and system).
pub fn harness() -> Duration {
    #[cfg(unix)]
    {
        use nix::sys::resource::{getrusage, UsageWho};
        if let Ok(u) = getrusage(UsageWho::RUSAGE_SELF) {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
            };
            return tv(u.user_time()) + tv(u.system_time());
        }
    }
    Duration::ZERO
}

/// The daemons of the Docker engine, counted with the children they reaped (docker-proxy,
/// iptables, runc); and the per-container shim, counted alone: what it reaps is the
/// container's own processes, already in the container's accounting. The kernel cuts
/// names at 15 bytes: containerd-shim-runc-v2 shows as containerd-shim.
const DAEMONS: [&str; 2] = ["dockerd", "containerd"];
const SHIM: &str = "containerd-shim";

/// A reading of the Docker engine's processes on this machine: clock ticks used so far, by
/// process.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineReading {
    ticks: BTreeMap<u32, u64>,
    hz: u64,
}

/// Reads the engine's processes now; `None` when none is visible here (a remote engine,
/// Docker Desktop's VM, another PID namespace). Read from /proc by hand: four numbers per
/// process do not warrant the `procfs` crate and its dependencies.
pub fn engine() -> Option<EngineReading> {
    let hz = clock_hz()?;
    let ticks: BTreeMap<u32, u64> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter_map(|stat| engine_ticks(&stat))
        .collect();
    (!ticks.is_empty()).then_some(EngineReading { ticks, hz })
}

impl EngineReading {
    /// The engine's CPU time between `before` and this reading: creating, wiring, watching
    /// and removing containers. A shim that started and exited in between took its own
    /// time with it (a few tens of milliseconds per container).
    pub fn since(&self, before: &EngineReading) -> Duration {
        let ticks: u64 = self
            .ticks
            .iter()
            .map(|(pid, now)| now.saturating_sub(before.ticks.get(pid).copied().unwrap_or(0)))
            .sum();
        Duration::from_nanos(ticks * 1_000_000_000 / self.hz.max(1))
    }
}

/// An engine process's pid and ticks from its `/proc/<pid>/stat` line; `None` for any other
/// process.
fn engine_ticks(stat: &str) -> Option<(u32, u64)> {
    // The name is in parentheses and may hold spaces; the fields follow the last `)`.
    let (head, fields) = stat.rsplit_once(')')?;
    let (pid, name) = head.split_once(" (")?;
    let with_children = match name {
        n if DAEMONS.contains(&n) => true,
        SHIM => false,
        _ => return None,
    };
    // After the name: state (3), ..., utime (14), stime (15), cutime (16), cstime (17).
    let f: Vec<&str> = fields.split_whitespace().collect();
    let counted = if with_children { 11..15 } else { 11..13 };
    let ticks = f
        .get(counted)?
        .iter()
        .map(|v| v.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some((pid.trim().parse().ok()?, ticks))
}

/// The kernel's clock ticks per second, the unit of /proc's CPU times.
#[cfg(unix)]
fn clock_hz() -> Option<u64> {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    u64::try_from(hz).ok().filter(|hz| *hz > 0)
}

#[cfg(not(unix))]
fn clock_hz() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::v1("41712286\n", Unit::Nanos, Some(41_712_286))]
    #[case::v2(
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        Unit::UsageUsec,
        Some(1_500_000)
    )]
    #[case::garbage("n/a", Unit::Nanos, None)]
    fn reads_the_cgroup_accounting(
        #[case] text: &str,
        #[case] unit: Unit,
        #[case] nanos: Option<u64>,
    ) {
        assert_eq!(parse(text, unit), nanos.map(Duration::from_nanos));
    }

    #[rstest]
    #[case::daemon_with_its_children(
        "812 (dockerd) S 1 812 812 0 -1 4194560 9 0 0 0 70 6 120 4 20 0 12 0",
        Some((812, 200))
    )]
    // What a shim reaped is the container's: in its cgroup already.
    #[case::shim_alone(
        "90 (containerd-shim) S 1 90 1 0 -1 0 0 0 0 0 3 2 2200 40 20 0 11 0",
        Some((90, 5))
    )]
    #[case::other_process("91 (bash) S 1 91 1 0 -1 0 0 0 0 0 3 2 0 0 20 0 1 0", None)]
    #[case::name_with_a_paren("92 (dockerd) x) S 1 92 1 0 -1 0 0 0 0 0 3 2 0 0 20 0 1 0", None)]
    #[case::truncated("93 (dockerd) S 1", None)]
    fn counts_only_the_engine_processes(#[case] stat: &str, #[case] ticks: Option<(u32, u64)>) {
        assert_eq!(engine_ticks(stat), ticks);
    }

    #[test]
    fn the_engine_time_between_readings_ignores_processes_that_left() {
        let reading = |ticks: &[(u32, u64)]| EngineReading {
            ticks: ticks.iter().copied().collect(),
            hz: 100,
        };
        let before = reading(&[(1, 500), (7, 300)]);
        // Daemon 1 used 1.5 s; shim 7 exited; shim 9 came and used 0.2 s.
        let after = reading(&[(1, 650), (9, 20)]);
        assert_eq!(after.since(&before), Duration::from_millis(1700));
    }

    #[test]
    fn the_harness_own_cpu_grows_with_work() {
        let before = harness();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(harness() > before);
    }
}
