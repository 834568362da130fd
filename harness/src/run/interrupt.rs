//! Ctrl-C, SIGTERM and SIGHUP. The handler only raises a flag: the run itself stops its
//! checks (they become errors "interrupted"), tears the platform down, writes the reports
//! and exits with 130. The handler waits for that to happen (a condition, not a sleep);
//! only when the run cannot finish its teardown in `BACKSTOP`, or on a second signal,
//! does it remove the runs' containers itself and exit.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::platform::docker;
use crate::report::console;

/// Longest a teardown may take after a signal before the handler does it instead.
const BACKSTOP: Duration = Duration::from_secs(90);

/// The exit code of an interrupted run, as shells report a SIGINT.
pub const EXIT_CODE: u8 = 130;

struct State {
    flag: watch::Sender<bool>,
    /// Runs that may still have containers: registered before the first is created,
    /// unregistered once their teardown is over.
    live: Mutex<BTreeSet<String>>,
    torn_down: Condvar,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| State {
        flag: watch::channel(false).0,
        live: Mutex::new(BTreeSet::new()),
        torn_down: Condvar::new(),
    })
}

/// Installs the handler once per process. Call it before anything is created, as early
/// as possible: until then a signal ends the process the default way.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        state();
        if let Err(e) = ctrlc::set_handler(on_signal) {
            console::say(format!(
                "platform: warning: cannot handle Ctrl-C ({e}); an interrupted run may leave containers"
            ));
        }
    });
}

pub fn interrupted() -> bool {
    *state().flag.borrow()
}

/// Resolves once a signal came (at once if one already did).
pub async fn wait() {
    let mut rx = state().flag.subscribe();
    let _ = rx.wait_for(|s| *s).await;
}

pub(super) fn register(run_id: &str) {
    if let Ok(mut live) = state().live.lock() {
        live.insert(run_id.to_string());
    }
}

pub(super) fn unregister(run_id: &str) {
    let s = state();
    if let Ok(mut live) = s.live.lock() {
        live.remove(run_id);
        s.torn_down.notify_all();
    }
}

/// Runs on ctrlc's own thread; never panics (a closed stderr must not stop the cleanup).
fn on_signal() {
    let s = state();
    let first = !s.flag.send_replace(true);
    let runs: Vec<String> = s
        .live
        .lock()
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default();
    if !first {
        // A second signal: the user wants out now. Remove what is live, skip the reports.
        console::say("\nplatform: interrupted again; removing the runs' containers and exiting");
        remove_by_label(runs);
        std::process::exit(i32::from(EXIT_CODE));
    }
    if runs.is_empty() {
        console::say("\nplatform: interrupted; stopping (the reports are still written)");
        return;
    }
    console::say(format!(
        "\nplatform: interrupted; stopping the checks and removing the containers of run {} (the reports are still written)",
        runs.join(", ")
    ));
    let until = Instant::now() + BACKSTOP;
    let Ok(mut live) = s.live.lock() else { return };
    while !live.is_empty() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        live = match s.torn_down.wait_timeout(live, left) {
            Ok((l, _)) => l,
            Err(_) => return,
        };
    }
    if live.is_empty() {
        return;
    }
    let stuck: Vec<String> = live.iter().cloned().collect();
    drop(live);
    console::say(format!(
        "platform: the teardown did not end within {}; removing run {} by label",
        docker::seconds(BACKSTOP),
        stuck.join(", ")
    ));
    remove_by_label(stuck);
    std::process::exit(i32::from(EXIT_CODE));
}

fn remove_by_label(runs: Vec<String>) {
    for run in runs {
        let mut problems = docker::remove_run_blocking(&run).problems;
        problems.extend(crate::platform::kubernetes::backend::remove_run_blocking(
            &run,
        ));
        for p in problems {
            console::say(format!("platform: cleanup problem: {p}"));
        }
    }
}
