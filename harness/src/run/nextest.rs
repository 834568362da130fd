//! cargo-nextest runs every trial in a process of its own (`--exact NAME`). A check's
//! `needs` then run inside its process, since no other trial of that process would run
//! them, and nextest's JUnit is the report (per-process reports would overwrite each other).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::spec::{graph, Check};

/// Whether this process runs one trial for cargo-nextest.
pub(super) fn process_per_test() -> bool {
    std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|m| m == "process-per-test")
}

/// The checks the selected ones need, directly or through others, that are not selected.
pub(super) fn prerequisites(
    checks: &[Arc<Check>],
    selected: &BTreeSet<String>,
) -> BTreeSet<String> {
    let needs: BTreeMap<String, Vec<String>> =
        checks.iter().map(|c| (c.id(), c.needed_ids())).collect();
    graph::closure(selected.iter().map(String::as_str), &needs)
        .into_iter()
        .filter(|id| !selected.contains(id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;
    use rstest::rstest;
    use std::path::Path;

    #[rstest]
    #[case::chain_head("pipeline::seed", &[])]
    #[case::beside_a_hop("pipeline::ingest", &["pipeline::seed"])]
    #[case::after_two_hops("pipeline::land", &["pipeline::ingest", "pipeline::register", "pipeline::seed"])]
    #[case::independent("postgres::accepts_login", &[])]
    fn a_lone_check_brings_what_it_needs(#[case] selected: &str, #[case] pulled: &[&str]) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let spec = Spec::load(&root.join("fixtures/platform.toml"), &root.join("suites")).unwrap();
        let checks: Vec<Arc<Check>> = spec.checks().cloned().map(Arc::new).collect();
        let got = prerequisites(&checks, &BTreeSet::from([selected.to_string()]));
        let want: BTreeSet<String> = pulled.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want);
    }
}
