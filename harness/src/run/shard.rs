//! Sharding across CI machines: `--shard I/N` or `PLATFORM_SHARD=I/N` runs a stable
//! part of the checks. Checks linked by `needs` form one group and stay together; a group
//! goes to the shard its first check's id hashes to, so adding a check moves no other.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::RunError;
use crate::spec::Check;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("shard {s:?}: write it I/N with 1 <= I <= N, like 2/3");
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `PLATFORM_SHARD=I/N`, for the test target.
pub fn from_env() -> Result<Option<Shard>, RunError> {
    match std::env::var("PLATFORM_SHARD") {
        Err(_) => Ok(None),
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v.parse().map(Some).map_err(|reason| RunError::Setting {
            name: "PLATFORM_SHARD",
            value: v,
            reason,
        }),
    }
}

/// The ids of the checks in `shard`.
pub fn select<'a>(checks: impl IntoIterator<Item = &'a Check>, shard: Shard) -> BTreeSet<String> {
    let linked: Vec<(String, Vec<String>)> = checks
        .into_iter()
        .map(|c| (c.id(), c.needed_ids()))
        .collect();
    partition(&linked, shard)
}

/// Each item is an id and the ids it needs.
fn partition(items: &[(String, Vec<String>)], shard: Shard) -> BTreeSet<String> {
    // Union-find over ids, each group named by its smallest id.
    let mut parent: BTreeMap<&str, &str> = items
        .iter()
        .map(|(id, _)| (id.as_str(), id.as_str()))
        .collect();
    fn root<'a>(parent: &BTreeMap<&'a str, &'a str>, mut id: &'a str) -> &'a str {
        while let Some(p) = parent.get(id).filter(|p| **p != id) {
            id = p;
        }
        id
    }
    for (id, needs) in items {
        for n in needs {
            if !parent.contains_key(n.as_str()) {
                continue;
            }
            let (a, b) = (root(&parent, id), root(&parent, n));
            let (low, high) = if a < b { (a, b) } else { (b, a) };
            parent.insert(high, low);
        }
    }
    items
        .iter()
        .filter(|(id, _)| place(root(&parent, id), shard.count) == shard.index)
        .map(|(id, _)| id.clone())
        .collect()
}

/// 1-based shard of a group; SHA-256 so the placement never changes with the toolchain.
fn place(group: &str, count: u32) -> u32 {
    let d = Sha256::digest(group.as_bytes());
    let n = u64::from_le_bytes(d[..8].try_into().unwrap_or_default());
    (n % u64::from(count)) as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn items() -> Vec<(String, Vec<String>)> {
        let mut v: Vec<(String, Vec<String>)> = (0..40)
            .map(|i| (format!("suite{}::check{i}", i % 5), Vec::new()))
            .collect();
        // A chain, as the pipeline suite has.
        let chain = ["p::seed", "p::register", "p::ingest", "p::land", "p::query"];
        for (i, id) in chain.iter().enumerate() {
            let needs = if i == 0 {
                vec![]
            } else {
                vec![chain[i - 1].to_string()]
            };
            v.push((id.to_string(), needs));
        }
        v
    }

    #[rstest]
    #[case(1)]
    #[case(2)]
    #[case(3)]
    #[case(7)]
    fn shards_cover_every_check_once_and_keep_chains_whole(#[case] count: u32) {
        let all = items();
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for index in 1..=count {
            let part = partition(&all, Shard { index, count });
            for id in part {
                assert!(
                    seen.insert(id.clone(), index).is_none(),
                    "{id} in two shards"
                );
            }
        }
        assert_eq!(seen.len(), all.len());
        let chain: BTreeSet<u32> = seen
            .iter()
            .filter(|(id, _)| id.starts_with("p::"))
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(chain.len(), 1, "the chain was split: {seen:?}");
        if count == 3 {
            let sizes: Vec<usize> = (1..=3)
                .map(|i| seen.values().filter(|s| **s == i).count())
                .collect();
            assert!(sizes.iter().all(|s| *s > 0), "an empty shard: {sizes:?}");
        }
    }

    #[test]
    fn a_new_check_moves_no_other() {
        let before = partition(&items(), Shard { index: 2, count: 3 });
        let mut more = items();
        more.push(("suite9::new".into(), Vec::new()));
        let after = partition(&more, Shard { index: 2, count: 3 });
        assert_eq!(
            after
                .iter()
                .filter(|id| *id != "suite9::new")
                .cloned()
                .collect::<BTreeSet<_>>(),
            before
        );
    }

    #[rstest]
    #[case("1/3", Ok((1, 3)))]
    #[case(" 3/3 ", Ok((3, 3)))]
    #[case("0/3", Err(()))]
    #[case("4/3", Err(()))]
    #[case("1-3", Err(()))]
    #[case("a/3", Err(()))]
    fn parses_i_of_n(#[case] text: &str, #[case] expected: Result<(u32, u32), ()>) {
        let got = text
            .parse::<Shard>()
            .map(|s| (s.index, s.count))
            .map_err(|_| ());
        assert_eq!(got, expected);
    }
}
