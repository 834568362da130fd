//! The reaper against a real engine: leftovers whose owner is provably gone are removed;
//! runs of a live process, of another PID namespace (a harness in a container sharing
//! the engine) or of another host are kept. Owners are simulated by labels.

use std::collections::BTreeMap;
use std::process::Command;

use platform_harness::platform::docker;
use platform_harness::platform::reaper::{self, Liveness, Owner};

fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A created (never started) container, and for some a network, owned by `owner`.
fn leftover(run: &str, owner: &Owner, network: bool) {
    let mut labels: BTreeMap<String, String> = owner.labels().into_iter().collect();
    labels.insert(docker::LABEL_RUN.into(), run.into());
    let flags: Vec<String> = labels
        .iter()
        .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
        .collect();
    let mut args = vec!["create".to_string(), "--name".into(), format!("reap-{run}")];
    args.extend(flags.iter().cloned());
    args.extend(["platform-kit/base:bookworm".into(), "true".into()]);
    docker_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    if network {
        let mut args = vec![
            "network".to_string(),
            "create".into(),
            format!("reap-{run}"),
        ];
        args.extend(flags);
        docker_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

fn exists(run: &str) -> bool {
    !docker_cli(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label={}={run}", docker::LABEL_RUN),
    ])
    .is_empty()
}

fn network_exists(run: &str) -> bool {
    !docker_cli(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label={}={run}", docker::LABEL_RUN),
    ])
    .is_empty()
}

#[test]
fn reaps_dead_and_recycled_owners_and_keeps_live_foreign_and_other_host_runs() {
    let me = Owner::this_process().clone();
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let run = |what: &str| format!("{what}-{id}");

    let mut finished = Command::new("true").spawn().unwrap();
    let dead_pid = finished.id();
    finished.wait().unwrap();
    let mut sleeper = Command::new("sleep").arg("120").spawn().unwrap();
    let live_pid = sleeper.id();
    let Liveness::Alive {
        started: Some(live_started),
    } = reaper::liveness(live_pid)
    else {
        panic!("the sleeper runs");
    };
    let owner = |host: &str, pidns: &str, pid: u32, started: u64| Owner {
        host: host.into(),
        pidns: pidns.into(),
        pid,
        started,
    };
    // Killed outright: same host and namespace, its process gone.
    leftover(
        &run("dead"),
        &owner(&me.host, &me.pidns, dead_pid, 1_000),
        true,
    );
    // Its PID now belongs to a process that started at another time.
    leftover(
        &run("recycled"),
        &owner(&me.host, &me.pidns, live_pid, live_started - 1_000),
        false,
    );
    // Alive, in this namespace.
    leftover(
        &run("alive"),
        &owner(&me.host, &me.pidns, live_pid, live_started),
        true,
    );
    // A harness in a container on the same engine and host name (e.g. --uts=host): its
    // PID means nothing here, whatever this namespace's process of that number is doing.
    leftover(
        &run("foreign-ns"),
        &owner(&me.host, "pid:[4026599999]", live_pid, 5),
        false,
    );
    // Another machine sharing the engine.
    leftover(
        &run("other-host"),
        &owner("elsewhere", &me.pidns, dead_pid, 1_000),
        false,
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let cleanup = rt.block_on(async {
        let d = docker::connect().unwrap();
        docker::reap_dead_runs(&d).await
    });
    eprintln!("reaper: {cleanup:?}");
    let verdicts: Vec<(String, bool, bool)> =
        ["dead", "recycled", "alive", "foreign-ns", "other-host"]
            .iter()
            .map(|w| (w.to_string(), exists(&run(w)), network_exists(&run(w))))
            .collect();
    for w in ["alive", "foreign-ns", "other-host"] {
        let _ = Command::new("docker")
            .args(["rm", "-f", &format!("reap-{}", run(w))])
            .output();
        let _ = Command::new("docker")
            .args(["network", "rm", &format!("reap-{}", run(w))])
            .output();
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    assert!(cleanup.problems.is_empty(), "{cleanup:?}");
    assert_eq!(
        verdicts,
        vec![
            ("dead".to_string(), false, false),
            ("recycled".to_string(), false, false),
            ("alive".to_string(), true, true),
            ("foreign-ns".to_string(), true, false),
            ("other-host".to_string(), true, false),
        ]
    );
    assert!(
        cleanup
            .removed
            .iter()
            .any(|r| r == &format!("network reap-{}", run("dead"))),
        "{cleanup:?}"
    );
}
