//! `platform-verify up`, warm runs and `down`, as a user runs them, on a small platform of
//! two PostgreSQL services in a folder of its own (its own up id: a developer's `up`
//! platform of this checkout is never touched).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use platform_harness::platform::{docker, up};
use rstest::rstest;

const BIN: &str = env!("CARGO_BIN_EXE_platform-verify");
const SECRET: &str = "uptest-Secret-4f9a2c";

fn platform(memory: &str) -> String {
    common::two_postgres_platform("UPTEST_PG_PASSWORD", memory)
}

const SUITE: &str = common::TWO_POSTGRES_SUITE;

/// A folder with the platform file `uptest.toml` and `suites/pg.toml`.
fn workspace(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-up-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(dir.join("uptest.toml"), platform("256 MiB")).unwrap();
    std::fs::write(dir.join("suites/pg.toml"), SUITE).unwrap();
    dir
}

fn pv(dir: &Path, args: &[&str], secret: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("UPTEST_PG_PASSWORD", secret)
        .env_remove("PLATFORM")
        .env_remove("PLATFORM_UP_STATE")
        .output()
        .expect("platform-verify runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Containers and networks carrying the up platform's label.
fn up_objects(dir: &Path) -> (usize, usize) {
    let id = up::up_id(&dir.join("uptest.toml"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (c, n) = rt
        .block_on(docker::labelled(
            &docker::connect().unwrap(),
            docker::LABEL_UP,
            &id,
        ))
        .unwrap();
    (c.len(), n.len())
}

/// Where `up` keeps the state of the folder's `uptest.toml`.
fn state_dir(dir: &Path) -> PathBuf {
    up::dir(dir, &dir.join("uptest.toml"))
}

/// Every container on the up platform's network (a warm run's own ones join it).
fn on_network(dir: &Path) -> Vec<String> {
    let state = up::UpState::load(&state_dir(dir).join("state.toml")).unwrap();
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("network={}", state.network),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Removes the up platform whatever happened to the test.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        pv(&self.0, &["down", "--platform", "uptest.toml"], SECRET);
    }
}

const RUN: [&str; 5] = ["run", "--platform", "uptest.toml", "--suites", "suites"];

#[test]
fn up_a_warm_run_and_down_leave_nothing_behind() {
    let dir = workspace("flow");
    let _down = Down(dir.clone());
    assert_eq!(up_objects(&dir), (0, 0));

    let o = pv(
        &dir,
        &["up", "--platform", "uptest.toml", "--only", "pg"],
        SECRET,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(up_objects(&dir), (1, 1), "one container and its network");
    let state_dir = state_dir(&dir);
    for f in ["state.toml", "endpoints.toml"] {
        let t = std::fs::read_to_string(state_dir.join(f)).unwrap();
        assert!(!t.contains(SECRET), "{f} holds the secret:\n{t}");
    }
    assert!(
        !state_dir.join("secrets").exists(),
        "a secret from the environment is referenced, not written"
    );
    let status = pv(&dir, &["status", "--platform", "uptest.toml"], SECRET);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("pg           ready"),
        "{}",
        text(&status)
    );

    // Warm: pg is used, nothing starts.
    let mut args = RUN.to_vec();
    args.extend(["--filter", "pg::login"]);
    let o = pv(&dir, &args, SECRET);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("using the `up` platform"), "{}", text(&o));
    assert!(!text(&o).contains("starting pg"), "{}", text(&o));

    // Half warm: pg2 starts on the up network, and only it is removed after.
    let before = on_network(&dir);
    let o = pv(&dir, &RUN, SECRET);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("starting pg2"), "{}", text(&o));
    assert!(!text(&o).contains("starting pg "), "{}", text(&o));
    assert_eq!(
        on_network(&dir),
        before,
        "the run left a container, or removed up's"
    );
    assert_eq!(up_objects(&dir), (1, 1));

    let o = pv(&dir, &["down", "--platform", "uptest.toml"], SECRET);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(up_objects(&dir), (0, 0));
    assert!(!state_dir.exists());
}

/// `cargo clean` (or an older version's state folder) loses the state while the platform
/// runs: the next `up` removes what it can no longer reach instead of starting a second one.
#[test]
fn up_without_its_state_replaces_what_is_left() {
    let dir = workspace("lost");
    let _down = Down(dir.clone());
    let up_pg = ["up", "--platform", "uptest.toml", "--only", "pg"];
    let o = pv(&dir, &up_pg, SECRET);
    assert!(o.status.success(), "{}", text(&o));
    let first = on_network(&dir);
    std::fs::remove_dir_all(state_dir(&dir)).unwrap();

    let o = pv(&dir, &up_pg, SECRET);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("removing 1 container(s) of an earlier `up`"),
        "{}",
        text(&o)
    );
    assert_eq!(up_objects(&dir), (1, 1), "one platform, not two");
    assert!(
        on_network(&dir).iter().all(|c| !first.contains(c)),
        "the earlier container is gone: {first:?}"
    );
}

#[rstest]
#[case::spec_edited("spec", "platform spec changed since `up` (pg:")]
#[case::secret_changed("secret", "platform spec changed since `up` (pg:")]
#[case::container_gone("gone", "the `up` platform's pg is no longer running")]
fn a_run_refuses_an_up_platform_that_no_longer_matches(#[case] change: &str, #[case] said: &str) {
    let dir = workspace(change);
    let _down = Down(dir.clone());
    let o = pv(
        &dir,
        &["up", "--platform", "uptest.toml", "--only", "pg"],
        SECRET,
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut secret = SECRET;
    match change {
        "spec" => std::fs::write(dir.join("uptest.toml"), platform("300 MiB")).unwrap(),
        "secret" => secret = "uptest-Other-7d1e0b",
        _ => {
            let state = up::UpState::load(&state_dir(&dir).join("state.toml")).unwrap();
            let rm = Command::new("docker")
                .args(["rm", "-f", &state.services["pg"].container])
                .output()
                .unwrap();
            assert!(rm.status.success());
        }
    }
    let mut args = RUN.to_vec();
    args.extend(["--filter", "pg::login"]);
    let o = pv(&dir, &args, secret);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(said), "{}", text(&o));
    assert!(!text(&o).contains(secret), "{}", text(&o));
    // `up` again replaces it, and the run is warm again.
    let o = pv(
        &dir,
        &["up", "--platform", "uptest.toml", "--only", "pg"],
        secret,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("replacing the `up` platform"),
        "{}",
        text(&o)
    );
    let o = pv(&dir, &args, secret);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(up_objects(&dir), (1, 1));
}
