//! Secret values: resolved once from the environment, files or defaults, and masked in
//! everything the harness prints or writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use base64::Engine;
use regex::Regex;

use crate::spec::platform::SecretSource;

/// Shorter values cannot be masked without masking ordinary words too ("dev", "admin"
/// would blank half a log), so they are refused where they are resolved.
pub const MIN_SECRET_LEN: usize = 6;

/// `Err` says which secret is too short, never its value.
pub fn check_maskable(what: &str, value: &str) -> Result<(), String> {
    let n = value.chars().count();
    if n < MIN_SECRET_LEN {
        Err(format!(
            "{what} is {n} character(s) long; a secret needs at least {MIN_SECRET_LEN} so that \
             masking it in reports cannot blank ordinary text: use a longer value"
        ))
    } else {
        Ok(())
    }
}

/// Parameter names that hold credentials. `access_key` is not one: an access key id
/// names an account, like a user name; its secret half is `secret_key`.
pub fn looks_like_credential(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    const WORDS: [&str; 8] = [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "private",
        "api_key",
        "apikey",
    ];
    WORDS.iter().any(|w| k.contains(w)) || k == "pwd" || k == "key" || k.ends_with("_pwd")
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
                .ok_or_else(|| {
                    format!(
                        "secret `{name}`: set the environment variable {}",
                        src.env.as_deref().unwrap_or("(none given)")
                    )
                })?;
            check_maskable(&format!("secret `{name}` (from {origin})"), &value)?;
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

/// Replaces secret values with `****` in any text: the raw value and the forms it takes
/// in a URL (percent-encoded, `+` for space), in JSON or a Rust `{:?}` (escaped quotes,
/// backslashes, `\uXXXX`), and in base64 (HTTP basic auth, config blobs).
#[derive(Clone, Default)]
pub struct Masker {
    /// Raw values, longest first, kept so `extend` can rebuild the pattern.
    values: Vec<String>,
    /// One alternation over every form of every value; `None` when there is nothing to mask.
    pattern: Option<Regex>,
}

/// Never the values: a count is all a `{:?}` may show.
impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} secret(s))", self.values.len())
    }
}

pub const MASK: &str = "****";

/// Values shorter than this are dropped by `Masker::new` (they would mask ordinary words);
/// the resolvers refuse them earlier with `check_maskable`.
const MASKER_FLOOR: usize = 4;

impl Masker {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| v.chars().count() >= MASKER_FLOOR)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        values.dedup();
        let mut alternatives: Vec<String> = Vec::new();
        for v in &values {
            alternatives.push(char_forms_pattern(v));
            alternatives.extend(base64_forms(v).iter().map(|b| regex::escape(b)));
        }
        // Longest pattern text first: leftmost-first alternation then prefers the
        // secret that contains another over the one it contains.
        alternatives.sort_by_key(|a| std::cmp::Reverse(a.len()));
        let pattern = (!alternatives.is_empty()).then(|| {
            regex::RegexBuilder::new(&alternatives.join("|"))
                .size_limit(64 << 20)
                .build()
                .expect("escaped literals always compile")
        });
        Self { values, pattern }
    }

    /// Adds values learnt later (credentials read from an endpoints file).
    pub fn extend(&mut self, more: impl IntoIterator<Item = String>) {
        let mut all = std::mem::take(&mut self.values);
        all.extend(more);
        *self = Self::new(all);
    }

    pub fn mask(&self, text: &str) -> String {
        match &self.pattern {
            Some(re) => re.replace_all(text, MASK).into_owned(),
            None => text.to_string(),
        }
    }
}

/// A regex matching `value` with each character in any of the forms an encoder may give
/// it. Mixed forms match too: more masking, never less.
fn char_forms_pattern(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        let mut forms = vec![regex::escape(c.encode_utf8(&mut [0; 4]))];
        let mut utf8 = [0; 4];
        let bytes = c.encode_utf8(&mut utf8).as_bytes();
        let percent: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
        forms.push(format!("(?i:{})", regex::escape(&percent)));
        match c {
            ' ' => forms.push(r"\+".into()),
            // SQL quoting doubles the quote character (a statement echoed in a server log).
            '"' => forms.push("\"\"".into()),
            '\'' => forms.push("''".into()),
            _ => {}
        }
        // JSON and `{:?}` escapes, and those escapes percent-encoded in turn (a JSON
        // document passed in a URL).
        let mut escapes: Vec<String> = match c {
            '"' => vec![r#"\""#.into()],
            '\\' => vec![r"\\".into()],
            '/' => vec![r"\/".into()],
            '\n' => vec![r"\n".into()],
            '\r' => vec![r"\r".into()],
            '\t' => vec![r"\t".into()],
            _ => vec![],
        };
        // JSON's \uXXXX (with surrogate pairs).
        let mut units = [0u16; 2];
        escapes.push(
            c.encode_utf16(&mut units)
                .iter()
                .map(|u| format!(r"\u{u:04x}"))
                .collect(),
        );
        for e in escapes {
            forms.push(format!("(?i:{})", regex::escape(&e)));
            let pct = percent_encoding::utf8_percent_encode(&e, percent_encoding::NON_ALPHANUMERIC);
            forms.push(format!("(?i:{})", regex::escape(&pct.to_string())));
        }
        // Rust's \u{X}.
        forms.push(format!(r"\\u\{{0*{:x}\}}", c as u32));
        out.push_str(&format!("(?:{})", forms.join("|")));
    }
    out
}

/// The base64 text that encodes `value` wherever it sits in the encoded input: one form
/// per alignment (0, 1 or 2 bytes before it), keeping only the characters that depend on
/// the value alone, in both alphabets. Short values are skipped: their few stable
/// characters would match unrelated base64.
fn base64_forms(value: &str) -> Vec<String> {
    const MIN_STABLE_CHARS: usize = 8;
    let n = value.len();
    let mut out = Vec::new();
    for shift in 0..3 {
        let mut input = vec![0u8; shift];
        input.extend_from_slice(value.as_bytes());
        for engine in [
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let encoded = engine.encode(&input);
            let start = (8 * shift).div_ceil(6);
            let end = (8 * (shift + n)) / 6;
            if end > start && end - start >= MIN_STABLE_CHARS {
                out.push(encoded[start..end].to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

static GLOBAL: OnceLock<Masker> = OnceLock::new();

/// Sets the process's masker; later calls keep the first (one platform per run).
pub fn install(masker: Masker) {
    let _ = GLOBAL.set(masker);
}

/// Masks with the process's masker (unchanged text before `install`).
pub fn mask(text: &str) -> String {
    match GLOBAL.get() {
        Some(m) => m.mask(text),
        None => text.to_string(),
    }
}

/// Masks, then keeps at most `max` characters: cutting first could keep half a secret
/// that no longer matches the mask. Every place that shortens text for a message calls
/// this instead of cutting itself.
pub fn clip(text: &str, max: usize) -> String {
    let masked = mask(text);
    match masked.char_indices().nth(max) {
        Some((i, _)) => format!("{}… ({} bytes)", &masked[..i], masked.len()),
        None => masked,
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
        assert!(err.contains("HARNESS_TEST_UNSET_VAR"), "{err}");
    }

    #[rstest]
    #[case("")]
    #[case("dev")]
    #[case("12345")]
    fn refuses_a_secret_too_short_to_mask(#[case] value: &str) {
        let sources = BTreeMap::from([("pg".to_string(), src(None, None, Some(value)))]);
        let err = Secrets::resolve(&sources, Path::new(".")).unwrap_err();
        assert!(err.starts_with("secret `pg` (from `default`) is"), "{err}");
        assert!(err.contains("at least 6"), "{err}");
        if !value.is_empty() {
            assert!(!err.contains(&format!("`{value}`")), "{err}");
        }
    }
}
