//! `${name}` interpolation, shared by the platform spec (secrets, ports) and by steps
//! (captured variables). Hand-written: the syntax is four rules, smaller than any
//! templating crate's configuration.

/// Replaces every `${key}` in `template` with `lookup(key)`. `$$` is a literal `$`.
/// Fails on the first unknown key or an unterminated `${`.
pub fn render(
    template: &str,
    mut lookup: impl FnMut(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in `{template}`"))?;
            let key = body[..end].trim();
            let value = lookup(key).ok_or_else(|| format!("unknown variable `${{{key}}}`"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The keys a template refers to, for validation before anything runs.
pub fn keys(template: &str) -> Vec<String> {
    let mut found = Vec::new();
    let _ = render(template, |k| {
        found.push(k.to_string());
        Some(String::new())
    });
    found
}

/// Every key `template` refers to, or the error `render` would give on its syntax.
pub fn references(template: &str) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    render(template, |k| {
        found.push(k.to_string());
        Some(String::new())
    })?;
    Ok(found)
}

/// The `NAME`s of `${secret.NAME}` in `text` that `declared` does not know, each once,
/// in order of appearance: for validating suites and templates before anything starts.
pub fn undeclared_secrets(text: &str, declared: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in keys(text) {
        if let Some(name) = key.strip_prefix("secret.") {
            if !declared(name) && !out.iter().any(|o| o == name) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// `undeclared_secrets` over every string of a TOML value (a step's table, say), for
/// callers that hold parsed values rather than text. Iterative: no recursion on input.
pub fn undeclared_secrets_in(value: &toml::Value, declared: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            toml::Value::String(s) => {
                for name in undeclared_secrets(s, &declared) {
                    if !out.contains(&name) {
                        out.push(name);
                    }
                }
            }
            toml::Value::Array(items) => stack.extend(items.iter().rev()),
            toml::Value::Table(t) => stack.extend(t.values().rev()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn vars(k: &str) -> Option<String> {
        match k {
            "a" => Some("1".into()),
            "secret.pw" => Some("hunter2".into()),
            _ => None,
        }
    }

    #[rstest]
    #[case("plain", "plain")]
    #[case("${a}", "1")]
    #[case("x=${ a }y", "x=1y")]
    #[case("pw:${secret.pw}@h", "pw:hunter2@h")]
    #[case("cost $$5", "cost $5")]
    #[case("lone $ sign", "lone $ sign")]
    fn renders(#[case] template: &str, #[case] expected: &str) {
        assert_eq!(render(template, vars).unwrap(), expected);
    }

    #[rstest]
    #[case("${nope}", "unknown variable `${nope}`")]
    #[case("${a", "unterminated")]
    fn rejects(#[case] template: &str, #[case] message: &str) {
        let err = render(template, vars).unwrap_err();
        assert!(err.contains(message), "{err}");
    }

    #[rstest]
    #[case("${secret.a} ${secret.b} ${secret.nope} ${secret.nope} ${x}", &["nope"])]
    #[case("$${secret.nope}", &[])]
    #[case("${ secret.other }", &["other"])]
    #[case("plain", &[])]
    fn finds_undeclared_secrets(#[case] text: &str, #[case] expected: &[&str]) {
        assert_eq!(undeclared_secrets(text, |n| n == "a" || n == "b"), expected);
    }

    #[test]
    fn finds_undeclared_secrets_in_values() {
        let step: toml::Value = toml::from_str(
            "postgres.query.sql = \"SELECT '${secret.a}', '${secret.x}'\"\nexpect = [{ equals = \"${secret.y}\" }]",
        )
        .unwrap();
        assert_eq!(undeclared_secrets_in(&step, |n| n == "a"), vec!["y", "x"]);
    }

    #[test]
    fn references_report_syntax_errors() {
        assert_eq!(references("${a} ${b}").unwrap(), vec!["a", "b"]);
        assert!(references("${a").unwrap_err().contains("unterminated"));
    }

    #[test]
    fn lists_keys() {
        assert_eq!(keys("${a} and ${port.http}"), vec!["a", "port.http"]);
    }
}
