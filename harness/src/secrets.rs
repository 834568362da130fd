//! Secret values: resolved once from the environment, files or defaults, and masked in
//! everything the harness prints or writes.

use std::collections::BTreeMap;
use std::path::Path;

pub use crate::mask::{
    check_maskable, clip, install, looks_like_credential, mask, Masker, MASK, MIN_SECRET_LEN,
};
use crate::spec::platform::SecretSource;

/// Why a secret has no usable value. Messages name the secret, never its value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecretError {
    #[error("secret `{name}`: set the environment variable {}", env.as_deref().unwrap_or("(none given)"))]
    Unset { name: String, env: Option<String> },
    #[error("secret `{name}`: cannot read {path}: {cause}")]
    Unreadable {
        name: String,
        path: String,
        cause: String,
    },
    /// Too short (or otherwise unfit) to be masked reliably in output.
    #[error("{0}")]
    Unmaskable(String),
}

#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

/// Names only: a value must not reach a log through `{:?}`.
impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.values.keys().map(|k| (k, MASK)))
            .finish()
    }
}

impl Secrets {
    /// Resolves every secret; `Err` names the secret and where it was looked for.
    pub fn resolve(
        sources: &BTreeMap<String, SecretSource>,
        base_dir: &Path,
    ) -> Result<Self, SecretError> {
        let mut values = BTreeMap::new();
        for (name, src) in sources {
            let from_env = src.env.as_ref().and_then(|v| std::env::var(v).ok());
            let from_file = match (&from_env, &src.file) {
                (None, Some(f)) => {
                    let path = base_dir.join(f);
                    Some(
                        std::fs::read_to_string(&path).map_err(|e| SecretError::Unreadable {
                            name: name.clone(),
                            path: path.display().to_string(),
                            cause: e.to_string(),
                        })?,
                    )
                }
                _ => None,
            };
            let origin = match (&from_env, &from_file) {
                (Some(_), _) => {
                    format!("environment variable {}", src.env.as_deref().unwrap_or(""))
                }
                (None, Some(_)) => format!(
                    "file {}",
                    src.file.as_deref().unwrap_or(Path::new("")).display()
                ),
                (None, None) => "`default`".to_string(),
            };
            let value = from_env
                .or(from_file.map(|s| s.trim_end_matches(['\r', '\n']).to_string()))
                .or_else(|| src.default.clone())
                .ok_or_else(|| SecretError::Unset {
                    name: name.clone(),
                    env: src.env.clone(),
                })?;
            check_maskable(&format!("secret `{name}` (from {origin})"), &value)
                .map_err(SecretError::Unmaskable)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
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

    const PW: &str = "Zx9-leak-pa$$word/with space\"q\\é";

    #[rstest]
    #[case::raw(PW.to_string())]
    #[case::percent_all(percent_encoding::utf8_percent_encode(PW, percent_encoding::NON_ALPHANUMERIC).to_string())]
    #[case::percent_lower(percent_encoding::utf8_percent_encode(PW, percent_encoding::NON_ALPHANUMERIC).to_string().to_lowercase().replace("zx9", "Zx9"))]
    #[case::form_plus(PW.replace(' ', "+").replace('/', "%2F"))]
    #[case::json(serde_json::to_string(PW).unwrap().trim_matches('"').to_string())]
    #[case::json_ascii(PW.replace('\\', "\\\\").replace('"', "\\\"").replace('é', "\\u00e9"))]
    #[case::sql_quoted(PW.replace('"', "\"\""))]
    #[case::rust_debug(format!("{PW:?}").trim_matches('"').to_string())]
    #[case::json_in_url(percent_encoding::utf8_percent_encode(serde_json::to_string(PW).unwrap().trim_matches('"'), percent_encoding::NON_ALPHANUMERIC).to_string())]
    fn masks_encoded_forms(#[case] form: String) {
        let m = Masker::new([PW.to_string()]);
        let text = format!("before {form} after");
        assert_eq!(m.mask(&text), "before **** after", "form {form}");
    }

    #[rstest]
    #[case("")]
    #[case("user:")]
    #[case("xy")]
    #[case("user:secret-pa55:")]
    fn masks_base64_at_any_alignment(#[case] prefix: &str) {
        let secret = "secret-pa55word";
        let m = Masker::new([secret.to_string()]);
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE,
        ] {
            let encoded = engine.encode(format!("{prefix}{secret}-tail"));
            let masked = m.mask(&encoded);
            assert!(masked.contains(MASK), "{encoded} -> {masked}");
            // All but the (at most 3) characters shared with the neighbours are gone.
            let removed = encoded.len() - masked.replace(MASK, "").len();
            assert!(removed >= secret.len() * 4 / 3 - 3, "{encoded} -> {masked}");
        }
    }

    #[rstest]
    #[case("password", true)]
    #[case("PG_PASSWORD", true)]
    #[case("secret_key", true)]
    #[case("auth-token", true)]
    #[case("api_key", true)]
    #[case("key", true)]
    #[case("access_key", false)]
    #[case("user", false)]
    #[case("database", false)]
    fn knows_credential_names(#[case] key: &str, #[case] expected: bool) {
        assert_eq!(looks_like_credential(key), expected);
    }

    #[test]
    fn debug_shows_no_value() {
        let s = Secrets::from_values(BTreeMap::from([("pg".into(), "hunter22-pw".into())]));
        let shown = format!("{s:?} {:?}", s.masker());
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(shown.contains("pg"), "{shown}");
    }

    #[test]
    fn clip_masks_before_cutting() {
        let m = Masker::new(["abcdefgh-secret".to_string()]);
        let text = format!("xx {}", "abcdefgh-secret");
        // Cutting first at 8 characters would leave "xx abcde", half the secret, unmasked.
        let cut_first: String = text.chars().take(8).collect();
        assert_eq!(m.mask(&cut_first), cut_first);
        let masked = m.mask(&text);
        assert_eq!(masked, "xx ****");
    }

    fn src(env: Option<&str>, file: Option<&str>, default: Option<&str>) -> SecretSource {
        SecretSource {
            env: env.map(String::from),
            file: file.map(Into::into),
            default: default.map(String::from),
        }
    }

    #[test]
    fn resolves_env_then_file_then_default() {
        let dir = std::env::temp_dir().join(format!("harness-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "from-file\n").unwrap();
        let sources = BTreeMap::from([
            (
                "a".to_string(),
                src(Some("PATH"), Some("pw"), Some("dflt-value")),
            ),
            (
                "b".to_string(),
                src(
                    Some("HARNESS_TEST_UNSET_VAR"),
                    Some("pw"),
                    Some("dflt-value"),
                ),
            ),
            (
                "c".to_string(),
                src(Some("HARNESS_TEST_UNSET_VAR"), None, Some("dflt-value")),
            ),
        ]);
        let s = Secrets::resolve(&sources, &dir).unwrap();
        assert_eq!(s.get("a"), std::env::var("PATH").ok().as_deref());
        assert_eq!(s.get("b"), Some("from-file"));
        assert_eq!(s.get("c"), Some("dflt-value"));
        let missing = BTreeMap::from([(
            "x".to_string(),
            src(Some("HARNESS_TEST_UNSET_VAR"), None, None),
        )]);
        let err = Secrets::resolve(&missing, &dir).unwrap_err();
        assert_eq!(
            err,
            SecretError::Unset {
                name: "x".into(),
                env: Some("HARNESS_TEST_UNSET_VAR".into())
            }
        );
        assert_eq!(
            err.to_string(),
            "secret `x`: set the environment variable HARNESS_TEST_UNSET_VAR"
        );
    }

    #[rstest]
    #[case("")]
    #[case("dev")]
    #[case("12345")]
    fn refuses_a_secret_too_short_to_mask(#[case] value: &str) {
        let sources = BTreeMap::from([("pg".to_string(), src(None, None, Some(value)))]);
        let err = Secrets::resolve(&sources, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("secret `pg` (from `default`) is"), "{err}");
        assert!(err.contains("at least 6"), "{err}");
        if !value.is_empty() {
            assert!(!err.contains(&format!("`{value}`")), "{err}");
        }
    }
}
