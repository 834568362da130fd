//! Which services a run no longer needs. A service is kept while a check that talks to it
//! has yet to end: directly, through a service that depends on or uses it (Trino's lake
//! on MinIO), or through a check it needs (which may still be pulled). Once the last of
//! them ended, its container can go while the others' checks still run: on two cores the
//! removal overlaps the rest of the run instead of adding to its end, and an idle JVM or
//! Python server stops taking CPU from the services still checked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::spec::graph;

/// One check as the release count sees it: its id, the services it talks to, and the ids
/// of the checks it needs.
pub struct Keeps {
    pub id: String,
    pub services: BTreeSet<String>,
    pub needs: Vec<String>,
}

pub struct Releases {
    /// For each service, the checks still to end that keep it.
    keeping: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

impl Releases {
    /// `checks`: every check the run may run (selected and pulled); `runs_with`: each
    /// service's dependencies and the services it uses.
    pub fn new(
        checks: impl IntoIterator<Item = Keeps>,
        runs_with: &BTreeMap<String, Vec<String>>,
    ) -> Self {
        let checks: BTreeMap<String, Keeps> =
            checks.into_iter().map(|k| (k.id.clone(), k)).collect();
        let mut keeping: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for id in checks.keys() {
            let talks_to = services_through_needs(id, &checks);
            for service in graph::closure(talks_to.iter().map(String::as_str), runs_with) {
                keeping.entry(service).or_default().insert(id.clone());
            }
        }
        Self {
            keeping: Mutex::new(keeping),
        }
    }

    /// Records that the check `id` ended (passed, failed or never ran); returns the
    /// services no check still to end keeps, each once over the run.
    pub fn ended(&self, id: &str) -> Vec<String> {
        let Ok(mut keeping) = self.keeping.lock() else {
            return Vec::new();
        };
        let mut free = Vec::new();
        keeping.retain(|service, checks| {
            let kept_by_it = checks.remove(id);
            if kept_by_it && checks.is_empty() {
                free.push(service.clone());
                return false;
            }
            true
        });
        free
    }
}

/// The services of `id` and of every check it needs, directly or through others.
fn services_through_needs(id: &str, checks: &BTreeMap<String, Keeps>) -> BTreeSet<String> {
    let mut services = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![id.to_string()];
    while let Some(next) = stack.pop() {
        if !seen.insert(next.clone()) {
            continue;
        }
        if let Some(check) = checks.get(&next) {
            services.extend(check.services.iter().cloned());
            stack.extend(check.needs.iter().cloned());
        }
    }
    services
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// `"a:pg,s3>b"`: check a talks to pg and s3 and needs check b.
    fn keeps(spec: &str) -> Vec<Keeps> {
        spec.split_whitespace()
            .map(|c| {
                let (id, rest) = c.split_once(':').unwrap();
                let (services, needs) = rest.split_once('>').unwrap_or((rest, ""));
                Keeps {
                    id: id.to_string(),
                    services: services
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                    needs: needs
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                }
            })
            .collect()
    }

    /// `"mlflow:pg,s3 trino:s3"`: mlflow depends on (or uses) pg and s3.
    fn runs_with(spec: &str) -> BTreeMap<String, Vec<String>> {
        spec.split_whitespace()
            .map(|e| {
                let (s, deps) = e.split_once(':').unwrap();
                (
                    s.to_string(),
                    deps.split(',')
                        .filter(|d| !d.is_empty())
                        .map(String::from)
                        .collect(),
                )
            })
            .collect()
    }

    /// Ends the checks in `order` and says what each end freed: `"a=pg b= c=s3,trino"`.
    fn ends(releases: &Releases, order: &str) -> String {
        order
            .split_whitespace()
            .map(|id| format!("{id}={}", releases.ended(id).join(",")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[rstest]
    #[case::each_service_after_its_last_check("a:pg b:pg c:s3", "", "a b c", "a= b=pg c=s3")]
    #[case::a_dependency_waits_for_its_dependents_checks(
        "a:pg m:mlflow",
        "mlflow:pg",
        "a m",
        "a= m=mlflow,pg"
    )]
    #[case::a_used_service_waits_for_its_users_checks(
        "s:s3 t:trino",
        "trino:s3",
        "s t",
        "s= t=s3,trino"
    )]
    #[case::uses_through_two_levels("t:trino", "trino:hms hms:pg", "t", "t=hms,pg,trino")]
    #[case::a_check_keeps_what_the_checks_it_needs_talk_to(
        "seed:pg load:s3>seed",
        "",
        "seed load",
        "seed= load=pg,s3"
    )]
    #[case::needs_through_a_chain("a:pg b:s3>a c:kafka>b", "", "a b c", "a= b= c=kafka,pg,s3")]
    #[case::a_check_with_no_services_frees_nothing("x: a:pg", "", "x a", "x= a=pg")]
    #[case::an_unknown_or_repeated_end_frees_nothing("a:pg", "", "zzz a a", "zzz= a=pg a=")]
    fn a_service_is_freed_once_no_check_still_to_end_keeps_it(
        #[case] checks: &str,
        #[case] deps: &str,
        #[case] order: &str,
        #[case] freed: &str,
    ) {
        let releases = Releases::new(keeps(checks), &runs_with(deps));
        assert_eq!(ends(&releases, order), freed);
    }
}
