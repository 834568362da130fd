//! CPU time used: by a container (its cgroup's accounting) and by the harness itself, for
//! the report and the benchmark's physical limit.

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
