//! Named platforms: one word picks a platform file and the suites that verify it.
//! `default` is `fixtures/platform.toml` with `suites/*.toml`; any other NAME is
//! `fixtures/platforms/NAME.toml` with `suites/NAME/*.toml` (plus the suites its platform
//! file shares through `include_suites`).

use std::path::{Path, PathBuf};

pub const DEFAULT: &str = "default";

/// A name no platform has.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("no platform named `{name}`: the named platforms are {}", known.join(", "))]
pub struct UnknownPlatform {
    pub name: String,
    pub known: Vec<String>,
}

/// The platform file and suites folder of a named platform, below the repository `root`.
pub fn locate(root: &Path, name: &str) -> Result<(PathBuf, PathBuf), UnknownPlatform> {
    if name == DEFAULT {
        return Ok((root.join("fixtures/platform.toml"), root.join("suites")));
    }
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let platform = root.join("fixtures/platforms").join(format!("{name}.toml"));
    let suites = root.join("suites").join(name);
    if valid && platform.is_file() && suites.is_dir() {
        Ok((platform, suites))
    } else {
        Err(UnknownPlatform {
            name: name.to_string(),
            known: names(root),
        })
    }
}

/// `default` and every `fixtures/platforms/NAME.toml` that has a `suites/NAME/` folder.
pub fn names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("fixtures/platforms"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .filter(|n| root.join("suites").join(n).is_dir())
        .collect();
    names.sort();
    names.insert(0, DEFAULT.to_string());
    names
}

/// A `--platform` argument: a path to a platform file (it has a `/` or ends in `.toml`),
/// or a platform's name. `None` for a path: the caller keeps its own suites folder.
pub fn by_name(root: &Path, arg: &str) -> Option<Result<(PathBuf, PathBuf), UnknownPlatform>> {
    let is_path = arg.contains('/') || arg.ends_with(".toml");
    (!is_path).then(|| locate(root, arg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn the_default_and_every_named_platform_are_found() {
        let names = names(&root());
        assert_eq!(names[0], "default");
        assert!(names.contains(&"observability".to_string()), "{names:?}");
        let (platform, suites) = locate(&root(), "observability").unwrap();
        assert!(platform.ends_with("fixtures/platforms/observability.toml"));
        assert!(suites.ends_with("suites/observability"));
    }

    #[rstest]
    #[case("no-such-platform")]
    #[case("../fixtures/platform")]
    #[case("")]
    fn an_unknown_name_lists_the_known_ones(#[case] name: &str) {
        let err = locate(&root(), name).unwrap_err();
        assert!(
            err.to_string()
                .contains("the named platforms are default, "),
            "{err}"
        );
    }

    #[rstest]
    #[case("fixtures/platform.toml", true)]
    #[case("./my.toml", true)]
    #[case("observability", false)]
    fn paths_and_names_are_told_apart(#[case] arg: &str, #[case] is_path: bool) {
        assert_eq!(by_name(&root(), arg).is_none(), is_path);
    }
}
