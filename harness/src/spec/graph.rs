//! The service dependency graph: which services a selection needs, and cycles.

use std::collections::{BTreeMap, BTreeSet};

/// `Err(cycle)` names the services of one cycle, first repeated at the end.
/// Depth-first with an explicit stack: a dependency chain as long as a file can hold
/// cannot exhaust the thread's stack.
pub fn check_acyclic(deps: &BTreeMap<String, Vec<String>>) -> Result<(), Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let no_deps = Vec::new();
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    for root in deps.keys() {
        if marks.contains_key(root.as_str()) {
            continue;
        }
        // (node, index of the next dependency to visit); the stack is the current path.
        let mut stack: Vec<(&str, usize)> = vec![(root.as_str(), 0)];
        marks.insert(root, Mark::Visiting);
        while let Some((node, next)) = stack.last_mut() {
            let children = deps.get(*node).unwrap_or(&no_deps);
            let Some(child) = children.get(*next) else {
                marks.insert(node, Mark::Done);
                stack.pop();
                continue;
            };
            *next += 1;
            match marks.get(child.as_str()) {
                Some(Mark::Done) => {}
                Some(Mark::Visiting) => {
                    let start = stack.iter().position(|(n, _)| *n == child).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|(n, _)| n.to_string()).collect();
                    cycle.push(child.clone());
                    return Err(cycle);
                }
                None => {
                    marks.insert(child, Mark::Visiting);
                    stack.push((child, 0));
                }
            }
        }
    }
    Ok(())
}

/// The given services plus everything they depend on, transitively.
pub fn closure<'a>(
    wanted: impl IntoIterator<Item = &'a str>,
    deps: &BTreeMap<String, Vec<String>>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<String> = wanted.into_iter().map(str::to_string).collect();
    while let Some(s) = stack.pop() {
        if out.insert(s.clone()) {
            stack.extend(deps.get(&s).into_iter().flatten().cloned());
        }
    }
    out
}

/// A check as the waiting relation sees it: the services it talks to and the ids of the
/// checks it needs.
#[derive(Debug, Clone, Default)]
pub struct CheckNode {
    pub services: BTreeSet<String>,
    pub needs: Vec<String>,
}

/// For each service, the services all of whose checks wait for its checks.
pub type Waiters = BTreeMap<String, BTreeSet<String>>;

/// For each service, the services all of whose checks wait for it: each talks to it too,
/// or its `needs`, at any depth, reach a check on it. Needs outside `checks` are not
/// followed (such a check does not run). The start scheduler reads it: a start held back
/// for a service that cannot finish before it anyway only moves the wait into that
/// service's checks. A service with one check that does not wait for it keeps its claim.
pub fn waiters(checks: &BTreeMap<String, CheckNode>) -> Waiters {
    let needs: BTreeMap<String, Vec<String>> = checks
        .iter()
        .map(|(id, c)| (id.clone(), c.needs.clone()))
        .collect();
    // For each service, what every one of its checks waits for: the services of the check
    // and of every check it needs.
    let mut common: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (id, check) in checks {
        let waits: BTreeSet<&str> = closure([id.as_str()], &needs)
            .iter()
            .filter_map(|id| checks.get(id))
            .flat_map(|c| c.services.iter().map(String::as_str))
            .collect();
        for service in &check.services {
            common
                .entry(service)
                .and_modify(|all| all.retain(|s| waits.contains(s)))
                .or_insert_with(|| waits.clone());
        }
    }
    let mut out = Waiters::new();
    for (waiter, awaited) in common {
        for service in awaited.into_iter().filter(|s| *s != waiter) {
            out.entry(service.to_string())
                .or_default()
                .insert(waiter.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn list(l: &str) -> Vec<String> {
        l.split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// `"a=x,y:b"`: check a talks to x and y and needs b.
    fn checks(src: &str) -> BTreeMap<String, CheckNode> {
        src.split_whitespace()
            .map(|c| {
                let (id, rest) = c.split_once('=').unwrap();
                let (services, needs) = rest.split_once(':').unwrap_or((rest, ""));
                let node = CheckNode {
                    services: list(services).into_iter().collect(),
                    needs: list(needs),
                };
                (id.to_string(), node)
            })
            .collect()
    }

    #[rstest]
    // The cdc-lakehouse chain: Trino's query needs the landing, which needs Connect's ingest.
    #[case::through_needs("ingest=connect land=connect,minio:ingest query=trino:land", "connect", &["minio", "trino"])]
    #[case::at_any_depth("ingest=connect land=connect,minio:ingest query=trino:land", "minio", &["trino"])]
    // Trino has a check of its own that waits for nothing: its start still matters.
    #[case::not_when_one_check_does_not_wait("ingest=connect query=trino:ingest nations=trino", "connect", &[])]
    // Nothing waits for the end of the chain.
    #[case::not_backwards("ingest=connect land=connect,minio:ingest query=trino:land", "trino", &[])]
    #[case::one_check_two_services("both=kafka,postgres", "kafka", &["postgres"])]
    #[case::independent_checks("a=kafka b=postgres", "kafka", &[])]
    // A need that is not selected does not run, so nothing waits through it.
    #[case::unselected_need("query=trino:land", "trino", &[])]
    // A cycle of needs (rejected when suites load) must not loop here.
    #[case::cycle("a=x:b b=y:a", "x", &["y"])]
    fn who_waits_for_a_service(#[case] src: &str, #[case] service: &str, #[case] want: &[&str]) {
        let got = waiters(&checks(src));
        let got: Vec<&str> = got
            .get(service)
            .map(|w| w.iter().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(got, want);
    }

    /// `"a:b,c b:"` -> a depends on b and c; b on nothing.
    fn graph(edges: &str) -> BTreeMap<String, Vec<String>> {
        edges
            .split_whitespace()
            .map(|e| {
                let (n, d) = e.split_once(':').unwrap();
                let deps = d
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                (n.to_string(), deps)
            })
            .collect()
    }

    fn platform() -> BTreeMap<String, Vec<String>> {
        graph("postgres: minio: kafka: mlflow:postgres,minio trino:postgres,minio")
    }

    #[rstest]
    #[case(&["postgres"], &["postgres"])]
    #[case(&["kafka"], &["kafka"])]
    #[case(&["mlflow"], &["minio", "mlflow", "postgres"])]
    #[case(&["mlflow", "kafka"], &["kafka", "minio", "mlflow", "postgres"])]
    #[case(&[], &[])]
    fn selects_dependencies(#[case] wanted: &[&str], #[case] expected: &[&str]) {
        let got: Vec<String> = closure(wanted.iter().copied(), &platform())
            .into_iter()
            .collect();
        assert_eq!(got, expected);
    }

    #[rstest]
    #[case("a:b b:a", Some(vec!["a", "b", "a"]))]
    #[case("a:a", Some(vec!["a", "a"]))]
    #[case("a:b b:c c:b", Some(vec!["b", "c", "b"]))]
    #[case("a:b b:", None)]
    #[case("a:b,c b:d c:d d:", None)]
    #[case("a:b,c b: c:a", Some(vec!["a", "c", "a"]))]
    fn finds_cycles(#[case] edges: &str, #[case] cycle: Option<Vec<&str>>) {
        let got = check_acyclic(&graph(edges)).err();
        let expected = cycle.map(|c| c.into_iter().map(String::from).collect::<Vec<_>>());
        assert_eq!(got, expected);
    }

    #[test]
    fn survives_a_very_long_chain() {
        let n = 200_000;
        let mut deps: BTreeMap<String, Vec<String>> = (0..n)
            .map(|i| (format!("s{i}"), vec![format!("s{}", i + 1)]))
            .collect();
        deps.insert(format!("s{n}"), vec![]);
        assert_eq!(check_acyclic(&deps), Ok(()));
        deps.insert(format!("s{n}"), vec!["s0".into()]);
        assert_eq!(check_acyclic(&deps).unwrap_err().len(), n + 2);
    }
}
