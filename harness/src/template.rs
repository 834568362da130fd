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

    #[test]
    fn lists_keys() {
        assert_eq!(keys("${a} and ${port.http}"), vec!["a", "port.http"]);
    }
}
