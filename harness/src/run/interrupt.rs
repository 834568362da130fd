//! Ctrl-C and SIGTERM: remove the run's containers and network, then exit with 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::platform::docker;

static INTERRUPTED_RUN: Mutex<Option<String>> = Mutex::new(None);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C and SIGTERM remove the run's containers and network, then exit with 130.
/// Meanwhile the main thread must not race the handler to a normal exit: `finish`
/// waits for it.
pub(super) fn install_interrupt_cleanup(run_id: &str) {
    let first = INTERRUPTED_RUN
        .lock()
        .map(|mut r| r.replace(run_id.to_string()).is_none())
        .unwrap_or(false);
    if first {
        let _ = ctrlc::set_handler(|| {
            INTERRUPTED.store(true, Ordering::SeqCst);
            let run = INTERRUPTED_RUN.lock().ok().and_then(|r| r.clone());
            // Never panic here (a closed stderr must not stop the cleanup).
            use std::io::Write;
            if let Some(run) = run {
                let _ = writeln!(
                    std::io::stderr(),
                    "\nplatform: interrupted; removing the containers of run {run}"
                );
                let removed = docker::remove_run_blocking(&run);
                let _ = writeln!(
                    std::io::stderr(),
                    "platform: removed {} object(s)",
                    removed.len()
                );
            }
            std::process::exit(130);
        });
    }
}

/// Once an interrupt is being handled, waits for the handler to remove the run and exit
/// the process (bounded, should the handler itself fail).
pub(super) fn yield_to_interrupt() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(30));
    }
}
