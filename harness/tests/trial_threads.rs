//! `cargo test --test platform -- --test-threads=2`: checks waiting for a chain of `needs`
//! never keep ready checks from running. Against an HTTP server of the test's own (the
//! endpoints mode: nothing starts), whose `/slow` answers after 600 ms. Driven in-process
//! through the target's entry point; alone in its binary because it sets the environment.

use std::process::ExitCode;

mod common;

use common::web::{self, HttpCheck};

/// The chain first in the file, as the pipeline suite comes before postgres': with one
/// libtest thread per slot, `second` and `third` held both threads while `first` ran.
const CHECKS: [HttpCheck; 5] = [
    ("first", &[], "/slow"),
    ("second", &["first"], "/slow"),
    ("third", &["second"], "/slow"),
    ("ready_a", &[], "/fast"),
    ("ready_b", &[], "/fast"),
];

#[test]
fn ready_checks_run_while_a_chain_of_needs_waits_on_its_predecessors() {
    let port = web::serve(&[("/slow", 600)]);
    let (code, t, summary) = web::run(port, &CHECKS, 2);

    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(t.len(), 5, "{summary}");
    let (first, second, third) = (t["first"], t["second"], t["third"]);
    assert!(first.1 <= second.0 && second.1 <= third.0, "{summary}");
    // Both ready checks done while `first` still ran: the waiting ones held no slot.
    for ready in ["ready_a", "ready_b"] {
        assert!(t[ready].1 < first.1, "{ready} waited: {summary}");
    }
    // Two slots: never more than two checks ran at once.
    let ran: Vec<(u64, u64)> = t.values().copied().collect();
    for &(from, _) in &ran {
        let at_once = ran.iter().filter(|&&(s, e)| s <= from && from < e).count();
        assert!(at_once <= 2, "{at_once} at once at {from} ms: {summary}");
    }
}
