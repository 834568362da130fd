//! Secret values: resolved once from the environment, files or defaults, and masked in
//! everything the harness prints or writes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::spec::platform::SecretSource;

#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl Secrets {
    /// Resolves every secret; `Err` names the secret and where it was looked for.
    pub fn resolve(
        sources: &BTreeMap<String, SecretSource>,
        base_dir: &Path,
    ) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        for (name, src) in sources {
            let from_env = src.env.as_ref().and_then(|v| std::env::var(v).ok());
            let from_file = match (&from_env, &src.file) {
                (None, Some(f)) => {
                    let path = base_dir.join(f);
                    Some(std::fs::read_to_string(&path).map_err(|e| {
                        format!("secret `{name}`: cannot read {}: {e}", path.display())
                    })?)
                }
                _ => None,
            };
            let value = from_env
                .or(from_file.map(|s| s.trim_end_matches(['\r', '\n']).to_string()))
                .or_else(|| src.default.clone())
                .ok_or_else(|| {
                    format!(
                        "secret `{name}`: set the environment variable {}",
                        src.env.as_deref().unwrap_or("(none given)")
                    )
                })?;
            values.insert(name.clone(), value);
        }
        Ok(Self { values })
    }

    pub fn from_values(values: BTreeMap<String, String>) -> Self {
        Self { values }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn masker(&self) -> Masker {
        Masker::new(self.values.values().cloned())
    }
}

/// Replaces secret values with `****` in any text.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    values: Vec<String>,
}

pub const MASK: &str = "****";

impl Masker {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        // Very short values would mask ordinary words; secrets that short are not secret.
        let mut values: Vec<String> = values.into_iter().filter(|v| v.len() >= 4).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self { values }
    }

    /// Adds values learnt later (credentials read from an endpoints file).
    pub fn extend(&mut self, more: impl IntoIterator<Item = String>) {
        let mut all = std::mem::take(&mut self.values);
        all.extend(more);
        *self = Self::new(all);
    }

    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("password=hunter22 ok", "password=**** ok")]
    #[case("hunter22hunter22", "********")]
    #[case("no secret here", "no secret here")]
    #[case("s3cr3t-key-long and hunter22", "**** and ****")]
    fn masks_every_occurrence(#[case] text: &str, #[case] expected: &str) {
        let m = Masker::new([
            "hunter22".to_string(),
            "s3cr3t-key-long".to_string(),
            "ab".to_string(),
        ]);
        assert_eq!(m.mask(text), expected);
    }

    #[test]
    fn resolves_env_then_file_then_default() {
        let dir = std::env::temp_dir().join(format!("harness-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "from-file\n").unwrap();
        let src = |env: Option<&str>, file: Option<&str>, default: Option<&str>| SecretSource {
            env: env.map(String::from),
            file: file.map(Into::into),
            default: default.map(String::from),
        };
        let sources = BTreeMap::from([
            ("a".to_string(), src(Some("PATH"), Some("pw"), Some("d"))),
            (
                "b".to_string(),
                src(Some("HARNESS_TEST_UNSET_VAR"), Some("pw"), Some("d")),
            ),
            (
                "c".to_string(),
                src(Some("HARNESS_TEST_UNSET_VAR"), None, Some("d")),
            ),
        ]);
        let s = Secrets::resolve(&sources, &dir).unwrap();
        assert_eq!(s.get("a"), std::env::var("PATH").ok().as_deref());
        assert_eq!(s.get("b"), Some("from-file"));
        assert_eq!(s.get("c"), Some("d"));
        let missing = BTreeMap::from([(
            "x".to_string(),
            src(Some("HARNESS_TEST_UNSET_VAR"), None, None),
        )]);
        let err = Secrets::resolve(&missing, &dir).unwrap_err();
        assert!(err.contains("HARNESS_TEST_UNSET_VAR"), "{err}");
    }
}
