//! `cargo test --test platform -- --test-threads=2`: when a check passes, the check that
//! needed it runs in its slot, ahead of checks that were already waiting for one. Against
//! an HTTP server of the test's own (nothing starts); alone in its binary because it sets
//! the environment.

use std::process::ExitCode;

mod common;

use common::web::{self, HttpCheck};

/// `first` (600 ms) and independent 250 ms checks: whether `first` got a slot at once or
/// only when the first two of them ended, more of them are waiting when it ends.
const CHECKS: [HttpCheck; 10] = [
    ("first", &[], "/slow"),
    ("second", &["first"], "/fast"),
    ("busy_1", &[], "/mid"),
    ("busy_2", &[], "/mid"),
    ("busy_3", &[], "/mid"),
    ("busy_4", &[], "/mid"),
    ("busy_5", &[], "/mid"),
    ("busy_6", &[], "/mid"),
    ("busy_7", &[], "/mid"),
    ("busy_8", &[], "/mid"),
];

#[test]
fn a_passed_check_hands_its_slot_to_the_check_that_needed_it() {
    let port = web::serve(&[("/slow", 600), ("/mid", 250)]);
    let (code, t, summary) = web::run(port, &CHECKS, 2);

    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(t.len(), 10, "{summary}");
    let (first, second) = (t["first"], t["second"]);
    let waited: Vec<&str> = t
        .iter()
        .filter(|(name, (start, _))| name.starts_with("busy") && *start >= first.1)
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        !waited.is_empty(),
        "some check waited while `first` ran: {summary}"
    );
    // Freed instead of handed on, `first`'s slot went to one of them and `second` waited
    // for the next slot to free.
    for name in waited {
        assert!(
            second.0 <= t[name].0,
            "{name} ran before `second`: {summary}"
        );
    }
}
