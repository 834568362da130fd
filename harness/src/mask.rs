//! Masking secret values in everything the harness prints or writes: the raw value and
//! its encoded forms. Below every other module, so any layer can mask before it cuts.

use std::sync::OnceLock;

use base64::Engine;
use regex::Regex;

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
