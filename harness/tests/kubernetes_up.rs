//! `platform-verify up --backend kubernetes`, warm runs on it and `down`, as a user runs
//! them, on the kit's cluster: a platform of two PostgreSQL services in a folder of its own
//! (its own up id, so a developer's `up` platform is never touched). Skips, saying so, when
//! no cluster answers.

mod common;
mod kube_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};
use platform_harness::platform::kubernetes::up_namespace;
use platform_harness::platform::up;

use kube_common::cluster;

const BIN: &str = env!("CARGO_BIN_EXE_platform-verify");
const SECRET: &str = "kubeup-Secret-93be1f";

fn platform(memory: &str) -> String {
    common::two_postgres_platform("KUBEUP_PG_PASSWORD", memory)
}

const SUITE: &str = common::TWO_POSTGRES_SUITE;

fn workspace() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-kubeup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(dir.join("kubeup.toml"), platform("256Mi")).unwrap();
    std::fs::write(dir.join("suites/pg.toml"), SUITE).unwrap();
    dir
}

fn pv(dir: &Path, args: &[&str], backend: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env("KUBEUP_PG_PASSWORD", SECRET)
        .env_remove("PLATFORM")
        .env_remove("PLATFORM_UP_STATE")
        .env_remove("PLATFORM_BACKEND");
    if let Some(b) = backend {
        cmd.env("PLATFORM_BACKEND", b);
    }
    cmd.output().expect("platform-verify runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Deletes the up platform whatever happened to the test.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        pv(
            &self.0,
            &[
                "down",
                "--platform",
                "kubeup.toml",
                "--backend",
                "kubernetes",
            ],
            None,
        );
    }
}

async fn namespace(client: &Client, name: &str) -> Option<Namespace> {
    Api::<Namespace>::all(client.clone())
        .get_opt(name)
        .await
        .expect("the API answers")
}

const RUN: [&str; 5] = ["run", "--platform", "kubeup.toml", "--suites", "suites"];

fn run_filtered(dir: &Path, filter: &str) -> Output {
    let mut args = RUN.to_vec();
    args.extend(["--filter", filter]);
    pv(dir, &args, None)
}

#[tokio::test]
async fn up_on_kubernetes_warm_runs_and_down_leave_nothing_behind() {
    let Some(client) = cluster().await else {
        return;
    };
    let dir = workspace();
    let _down = Down(dir.clone());
    let ns = up_namespace(&up::up_id(&dir.join("kubeup.toml")));
    let blocking = |dir: PathBuf, f: fn(&Path) -> Output| async move {
        tokio::task::spawn_blocking(move || f(&dir)).await.unwrap()
    };

    let o = blocking(dir.clone(), |d| {
        pv(
            d,
            &[
                "up",
                "--platform",
                "kubeup.toml",
                "--only",
                "pg",
                "--backend",
                "kubernetes",
            ],
            None,
        )
    })
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("in namespace {ns}")),
        "{}",
        text(&o)
    );
    let made = namespace(&client, &ns).await.expect("the up namespace");
    let labels = made.metadata.labels.unwrap_or_default();
    assert!(labels.contains_key(up::LABEL_UP), "{labels:?}");
    assert!(
        !labels.contains_key("org.platform-harness.run")
            && made.metadata.annotations.unwrap_or_default().is_empty(),
        "an up namespace carries no run label or owner markers (the reaper would take it)"
    );
    let state_dir = up::dir(&dir, &dir.join("kubeup.toml"));
    for f in ["state.toml", "endpoints.toml"] {
        let t = std::fs::read_to_string(state_dir.join(f)).unwrap();
        assert!(!t.contains(SECRET), "{f} holds the secret:\n{t}");
    }
    let endpoints = std::fs::read_to_string(state_dir.join("endpoints.toml")).unwrap();
    assert!(
        endpoints.contains(&format!("pg.{ns}.svc.cluster.local")),
        "{endpoints}"
    );

    // A process of its own holds the forwards between runs, as Docker's published ports.
    let forwarder_pid = forwarder_of(&state_dir);
    assert!(alive(forwarder_pid), "the port-forward process runs");

    let status = blocking(dir.clone(), |d| {
        pv(d, &["status", "--platform", "kubeup.toml"], None)
    })
    .await;
    assert!(
        text(&status).contains(&format!("ports forwarded by process {forwarder_pid}")),
        "{}",
        text(&status)
    );
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("pg           ready"),
        "{}",
        text(&status)
    );

    // Warm, and on the cluster with no PLATFORM_BACKEND: the state says where it runs.
    let o = blocking(dir.clone(), |d| run_filtered(d, "pg::login")).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("using the `up` platform") && text(&o).contains(&ns),
        "{}",
        text(&o)
    );
    assert!(
        !text(&o).contains("ready in"),
        "nothing starts:\n{}",
        text(&o)
    );

    // Its forwarder killed: the run is refused, saying so; `up` starts it again.
    kill(forwarder_pid);
    let o = blocking(dir.clone(), |d| run_filtered(d, "pg::login")).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("port-forward process is no longer running"),
        "{}",
        text(&o)
    );
    let o = blocking(dir.clone(), |d| {
        pv(
            d,
            &["up", "--platform", "kubeup.toml", "--only", "pg"],
            Some("kubernetes"),
        )
    })
    .await;
    assert!(
        o.status.success() && text(&o).contains("restarted the `up` platform's port-forward"),
        "{}",
        text(&o)
    );
    let o = blocking(dir.clone(), |d| run_filtered(d, "pg::login")).await;
    assert!(o.status.success(), "{}", text(&o));

    // A check on a service the up platform lacks: refused, saying how to add it.
    let o = blocking(dir.clone(), |d| pv(d, &RUN, None)).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("lacks pg2") && text(&o).contains("--only pg2"),
        "{}",
        text(&o)
    );
    // Asking for the other backend is refused by name.
    let o = blocking(dir.clone(), |d| {
        let mut args = RUN.to_vec();
        args.extend(["--filter", "pg::login"]);
        pv(d, &args, Some("containers"))
    })
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("kubernetes backend"), "{}", text(&o));

    // `up` adds pg2 to the same namespace; the whole suite runs warm.
    let o = blocking(dir.clone(), |d| {
        pv(
            d,
            &["up", "--platform", "kubeup.toml", "--backend", "kubernetes"],
            None,
        )
    })
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("starting pg2 in"), "{}", text(&o));
    let o = blocking(dir.clone(), |d| pv(d, &RUN, None)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("2 passed"), "{}", text(&o));
    assert!(namespace(&client, &ns).await.is_some(), "the run kept it");

    // A spec edited after `up` is said, before anything runs.
    std::fs::write(dir.join("kubeup.toml"), platform("300Mi")).unwrap();
    let o = blocking(dir.clone(), |d| run_filtered(d, "pg::login")).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("platform spec changed since `up` (pg:"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains(SECRET), "{}", text(&o));

    let last_forwarder = forwarder_of(&state_dir);
    let o = blocking(dir.clone(), |d| {
        pv(d, &["down", "--platform", "kubeup.toml"], None)
    })
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        namespace(&client, &ns).await.is_none(),
        "down waits until it is gone"
    );
    assert!(!state_dir.exists());
    assert!(
        !alive(last_forwarder),
        "down stops the port-forward process"
    );
}

fn forwarder_of(state_dir: &Path) -> u32 {
    let text = std::fs::read_to_string(state_dir.join("forwarder.pid")).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s.rsplit(')').next().unwrap_or("").trim_start();
        !state.starts_with('Z')
    })
}

fn kill(pid: u32) {
    let out = Command::new("kill").arg(pid.to_string()).output().unwrap();
    assert!(out.status.success());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive(pid) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_failed_up_on_kubernetes_leaves_no_namespace() {
    let Some(client) = cluster().await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("harness-kubeup-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A container that exits at once never logs its readiness line.
    std::fs::write(
        dir.join("kubeup.toml"),
        r#"[services.broken]
image = "platform-kit/postgres:15"
command = ["sh", "-c", "echo no database here; exit 3"]
ports = { sql = 5432 }
ready = [{ log = "database system is ready to accept connections" }]
startup_timeout = "20s"
"#,
    )
    .unwrap();
    let _down = Down(dir.clone());
    let ns = up_namespace(&up::up_id(&dir.join("kubeup.toml")));
    let d = dir.clone();
    let o = tokio::task::spawn_blocking(move || {
        pv(
            &d,
            &["up", "--platform", "kubeup.toml", "--backend", "kubernetes"],
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("up failed") && text(&o).contains("broken"),
        "{}",
        text(&o)
    );
    assert!(namespace(&client, &ns).await.is_none(), "{}", text(&o));
    assert!(!up::dir(&dir, &dir.join("kubeup.toml"))
        .join("state.toml")
        .exists());
}
