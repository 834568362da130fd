//! The service dependency graph: which services a selection needs, and cycles.

use std::collections::{BTreeMap, BTreeSet};

/// `Err(cycle)` names the services of one cycle, first repeated at the end.
pub fn check_acyclic(deps: &BTreeMap<String, Vec<String>>) -> Result<(), Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        node: &str,
        deps: &BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Result<(), Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_string());
                return Err(cycle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Visiting);
        path.push(node.to_string());
        for d in deps.get(node).into_iter().flatten() {
            visit(d, deps, marks, path)?;
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        Ok(())
    }
    let mut marks = BTreeMap::new();
    for node in deps.keys() {
        visit(node, deps, &mut marks, &mut Vec::new())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

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
    fn finds_cycles(#[case] edges: &str, #[case] cycle: Option<Vec<&str>>) {
        let got = check_acyclic(&graph(edges)).err();
        let expected = cycle.map(|c| c.into_iter().map(String::from).collect::<Vec<_>>());
        assert_eq!(got, expected);
    }
}
