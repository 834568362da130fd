//! Expectations on a step's output: a JSONPath (RFC 9535) selects a value, an operator
//! compares it. Failures say expected versus actual.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use serde_json_path::JsonPath;

pub use crate::kinds::{show, show_up_to};
use crate::kinds::{StepError, Vars};

/// `{ path = "$.rows[0].n", ge = 1 }`: exactly one operator per expectation.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    #[serde(default = "root")]
    pub path: String,
    #[schemars(with = "Option<serde_json::Value>")]
    pub equals: Option<toml::Value>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub not_equals: Option<toml::Value>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub contains: Option<toml::Value>,
    pub matches: Option<String>,
    pub gt: Option<f64>,
    pub ge: Option<f64>,
    pub lt: Option<f64>,
    pub le: Option<f64>,
    /// With a path that selects many values (`[*]`, `..`, filters, slices): how many it
    /// selects. Otherwise the length of the array, object or string at `path`.
    pub count: Option<usize>,
    pub exists: Option<bool>,
    /// `true`: the value at `path` is JSON null (an SQL NULL); `false`: it is there and not
    /// null. A path that selects nothing fails either way: a missing column is not a NULL.
    pub is_null: Option<bool>,
    /// The expected value as JSON text, for what TOML cannot write: whole rows holding
    /// NULLs, `'{"a": 1, "b": null}'`. Compared as `equals` compares.
    pub equals_json: Option<String>,
    /// Like `equals_json`, negated.
    pub not_equals_json: Option<String>,
}

fn root() -> String {
    "$".into()
}

#[derive(Debug, Clone)]
pub enum Op {
    Equals(Value),
    NotEquals(Value),
    Contains(Value),
    Matches(regex::Regex),
    Compare(Cmp, f64),
    Count(usize),
    Exists(bool),
    IsNull(bool),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone)]
pub struct Assertion {
    pub path_text: String,
    /// The path can select several values (not a singular query in RFC 9535's terms).
    pub multi: bool,
    pub path: JsonPath,
    pub op: Op,
}

impl ExpectSpec {
    pub fn compile(&self) -> Result<Assertion, String> {
        let path = parse_json_path(&self.path).map_err(|e| format!("`path`: {e}"))?;
        let mut ops = Vec::new();
        let json = |v: &toml::Value| serde_json::to_value(v).map_err(|e| e.to_string());
        if let Some(v) = &self.equals {
            ops.push(Op::Equals(json(v)?));
        }
        if let Some(v) = &self.not_equals {
            ops.push(Op::NotEquals(json(v)?));
        }
        if let Some(v) = &self.contains {
            ops.push(Op::Contains(json(v)?));
        }
        if let Some(re) = &self.matches {
            ops.push(Op::Matches(
                regex::Regex::new(re).map_err(|e| format!("`matches`: {e}"))?,
            ));
        }
        for (cmp, v) in [
            (Cmp::Gt, self.gt),
            (Cmp::Ge, self.ge),
            (Cmp::Lt, self.lt),
            (Cmp::Le, self.le),
        ] {
            if let Some(v) = v {
                ops.push(Op::Compare(cmp, v));
            }
        }
        if let Some(n) = self.count {
            ops.push(Op::Count(n));
        }
        if let Some(e) = self.exists {
            ops.push(Op::Exists(e));
        }
        if let Some(n) = self.is_null {
            ops.push(Op::IsNull(n));
        }
        let from_json = |field: &str, text: &str| {
            serde_json::from_str::<Value>(text).map_err(|e| format!("`{field}` is not JSON: {e}"))
        };
        if let Some(text) = &self.equals_json {
            ops.push(Op::Equals(from_json("equals_json", text)?));
        }
        if let Some(text) = &self.not_equals_json {
            ops.push(Op::NotEquals(from_json("not_equals_json", text)?));
        }
        if ops.len() != 1 {
            return Err(
                "give exactly one of equals, not_equals, contains, matches, gt, ge, lt, le, count, \
                 exists, is_null, equals_json, not_equals_json"
                    .into(),
            );
        }
        let multi = self.path.contains("..") || self.path.contains(['*', '?', ':', ',']);
        Ok(Assertion {
            multi,
            path_text: self.path.clone(),
            path,
            op: ops.remove(0),
        })
    }
}

/// Longest JSONPath accepted; real ones are a few dozen characters.
pub const MAX_JSON_PATH_LEN: usize = 1024;
/// Deepest nesting of brackets and parentheses accepted. serde_json_path's parser
/// recurses per level and a few hundred levels overflow a test thread's stack; real
/// filters nest two or three deep.
pub const MAX_JSON_PATH_DEPTH: usize = 16;

/// `JsonPath::parse` behind bounds checked first, so no input can overflow the stack.
/// Every JSONPath from a user's file (expectations, captures) goes through here.
pub fn parse_json_path(text: &str) -> Result<JsonPath, String> {
    let chars = text.chars().count();
    if chars > MAX_JSON_PATH_LEN {
        return Err(format!(
            "a JSONPath of {chars} characters is longer than the {MAX_JSON_PATH_LEN} accepted"
        ));
    }
    let depth = nesting_depth(text);
    if depth > MAX_JSON_PATH_DEPTH {
        return Err(format!(
            "brackets and parentheses nest {depth} deep; at most {MAX_JSON_PATH_DEPTH} are accepted"
        ));
    }
    JsonPath::parse(text).map_err(|e| e.to_string())
}

/// Deepest `[`/`(` nesting outside string literals ('...' or "...", with `\` escapes).
/// Unbalanced input counts as it goes: the parser rejects it afterwards.
fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '[' | '(' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ']' | ')' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    deepest
}

impl Assertion {
    /// Like `check`, with `${var}` in expected strings replaced by captured variables
    /// (so a step can expect the run id an earlier step captured).
    pub fn check_with(&self, output: &Value, vars: &Vars) -> Result<(), String> {
        let render = |v: &Value| substitute(v, vars);
        let op = match &self.op {
            Op::Equals(v) => Op::Equals(render(v)?),
            Op::NotEquals(v) => Op::NotEquals(render(v)?),
            Op::Contains(v) => Op::Contains(render(v)?),
            _ => return self.check(output),
        };
        Self { op, ..self.clone() }.check(output)
    }

    /// `Err` is the failure message: what was expected and what was found.
    pub fn check(&self, output: &Value) -> Result<(), String> {
        let nodes = self.path.query(output).all();
        let p = &self.path_text;
        if let Op::Exists(want) = self.op {
            let found = !nodes.is_empty();
            return if found == want {
                Ok(())
            } else if want {
                Err(format!("expected {p} to exist, but it selects nothing"))
            } else {
                Err(format!(
                    "expected {p} to select nothing, got {}",
                    show(nodes[0])
                ))
            };
        }
        if let (Op::Count(n), true) = (&self.op, self.multi) {
            return if nodes.len() == *n {
                Ok(())
            } else {
                Err(format!(
                    "expected {p} to select {n} value(s), it selects {}",
                    nodes.len()
                ))
            };
        }
        let actual = match nodes.as_slice() {
            [one] => *one,
            [] => {
                return Err(format!(
                    "expected {p} to select a value, but it selects nothing"
                ))
            }
            many => {
                return Err(format!(
                    "expected {p} to select one value, but it selects {}",
                    many.len()
                ))
            }
        };
        let ok = match &self.op {
            Op::Equals(want) => json_eq(actual, want),
            Op::NotEquals(want) => !json_eq(actual, want),
            Op::Contains(want) => match (actual, want) {
                (Value::String(s), Value::String(w)) => s.contains(w.as_str()),
                (Value::Array(items), w) => items.iter().any(|i| json_eq(i, w)),
                (Value::Object(map), Value::String(k)) => map.contains_key(k),
                _ => false,
            },
            Op::Matches(re) => re.is_match(&plain(actual)),
            Op::Compare(cmp, bound) => match number(actual) {
                Some(n) => match cmp {
                    Cmp::Gt => n > *bound,
                    Cmp::Ge => n >= *bound,
                    Cmp::Lt => n < *bound,
                    Cmp::Le => n <= *bound,
                },
                None => false,
            },
            Op::Count(n) => length(actual) == Some(*n),
            Op::IsNull(want) => actual.is_null() == *want,
            Op::Exists(_) => unreachable!("handled above"),
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "expected {p} {}, got {}",
                self.describe(),
                show(actual)
            ))
        }
    }

    fn describe(&self) -> String {
        match &self.op {
            Op::Equals(v) => format!("to equal {}", show(v)),
            Op::NotEquals(v) => format!("not to equal {}", show(v)),
            Op::Contains(v) => format!("to contain {}", show(v)),
            Op::Matches(re) => format!("to match /{re}/"),
            Op::Compare(c, b) => {
                let op = match c {
                    Cmp::Gt => ">",
                    Cmp::Ge => ">=",
                    Cmp::Lt => "<",
                    Cmp::Le => "<=",
                };
                format!("to be {op} {b}")
            }
            Op::Count(n) => format!("to have {n} element(s)"),
            Op::IsNull(true) => "to be null".into(),
            Op::IsNull(false) => "not to be null".into(),
            Op::Exists(_) => String::new(),
        }
    }
}

/// Renders `${var}` in every string of an expected value. A string that is exactly one
/// variable takes the variable's JSON value (a captured number stays a number).
fn substitute(v: &Value, vars: &Vars) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if s.contains("${") => {
            let whole = s
                .strip_prefix("${")
                .and_then(|r| r.strip_suffix('}'))
                .filter(|k| !k.contains("${") && !k.contains('}'))
                .and_then(|k| vars.get(k.trim()));
            match whole {
                Some(value) => value.clone(),
                None => Value::String(crate::template::render(s, |k| {
                    vars.get(k).map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                })?),
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| substitute(i, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, vars)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Numbers compare by value (25 == 25.0); decimals that arrive as strings (exact
/// PostgreSQL numerics) compare with numbers too.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::Number(_)) => {
            match (number(a), number(b)) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn length(v: &Value) -> Option<usize> {
    match v {
        Value::Array(a) => Some(a.len()),
        Value::Object(o) => Some(o.len()),
        Value::String(s) => Some(s.chars().count()),
        _ => None,
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `capture = { run_id = "$.run.info.run_id" }`.
#[derive(Debug, Clone)]
pub struct Capture {
    pub var: String,
    pub path_text: String,
    pub path: JsonPath,
}

impl Capture {
    pub fn new(var: &str, path: &str) -> Result<Self, String> {
        Ok(Self {
            var: var.to_string(),
            path_text: path.to_string(),
            path: parse_json_path(path)?,
        })
    }

    pub fn apply(&self, output: &Value, vars: &mut Vars) -> Result<(), StepError> {
        let nodes = self.path.query(output).all();
        match nodes.as_slice() {
            [one] => {
                vars.insert(self.var.clone(), (*one).clone());
                Ok(())
            }
            other => Err(StepError::Failure(format!(
                "capture `{}`: expected {} to select one value, it selects {}",
                self.var,
                self.path_text,
                other.len()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn assertion(toml_src: &str) -> Assertion {
        let spec: ExpectSpec = toml::from_str(toml_src).unwrap();
        spec.compile().unwrap()
    }

    fn output() -> Value {
        json!({
            "row_count": 2,
            "rows": [{"n": 25, "name": "ALGERIA", "price": "12.50"}, {"n": 3, "name": "x", "price": "1"}],
            "body": {"status": "OK", "tags": ["a", "b"]},
            "nulls": [{"a": 1, "b": null}]
        })
    }

    #[rstest]
    #[case("path = '$.row_count'\nequals = 2")]
    #[case("path = '$.row_count'\nequals = 2.0")]
    #[case("path = '$.rows[0].price'\nequals = 12.5")]
    #[case("path = '$.rows[0].name'\nequals = 'ALGERIA'")]
    #[case("path = '$.rows[0].name'\nmatches = '^ALG'")]
    #[case("path = '$.rows[0].name'\ncontains = 'GER'")]
    #[case("path = '$.body.tags'\ncontains = 'b'")]
    #[case("path = '$.body.tags'\ncount = 2")]
    #[case("path = '$.rows'\ncount = 2")]
    #[case("path = '$.rows[*].n'\ncount = 2")]
    #[case("path = '$.rows[?@.n > 10]'\ncount = 1")]
    #[case("path = '$.rows[0].name'\ncount = 7")]
    #[case("path = '$.rows[0].n'\nge = 25")]
    #[case("path = '$.rows[0].n'\nlt = 26")]
    #[case("path = '$.rows[0].price'\ngt = 12")]
    #[case("path = '$.body'\nequals = { status = 'OK', tags = ['a', 'b'] }")]
    #[case("path = '$.body.missing'\nexists = false")]
    #[case("path = '$.body.status'\nnot_equals = 'DOWN'")]
    #[case("path = '$.nulls[0].b'\nis_null = true")]
    #[case("path = '$.nulls[0].a'\nis_null = false")]
    #[case("path = '$.nulls[0]'\nequals_json = '{\"a\": 1, \"b\": null}'")]
    #[case("path = '$.nulls[0]'\nequals_json = '{\"b\": null, \"a\": 1.0}'")]
    #[case("path = '$.nulls'\nequals_json = '[{\"a\": 1, \"b\": null}]'")]
    #[case("path = '$.nulls[0]'\nnot_equals_json = '{\"a\": 1, \"b\": 2}'")]
    #[case("path = '$.rows[0].name'\nequals_json = '\"ALGERIA\"'")]
    fn holds(#[case] src: &str) {
        assert_eq!(assertion(src).check(&output()), Ok(()));
    }

    #[rstest]
    #[case(
        "path = '$.row_count'\nequals = 3",
        "expected $.row_count to equal 3, got 2"
    )]
    #[case(
        "path = '$.rows[0].n'\ngt = 25",
        "expected $.rows[0].n to be > 25, got 25"
    )]
    #[case("path = '$.rows'\ncount = 5", "to have 5 element(s), got [")]
    #[case("path = '$.nope'\nequals = 1", "selects nothing")]
    #[case("path = '$.rows[*].n'\nequals = 1", "selects 2")]
    #[case(
        "path = '$.rows[*].n'\ncount = 3",
        "to select 3 value(s), it selects 2"
    )]
    #[case("path = '$.rows[0].name'\nge = 1", "to be >= 1, got \"ALGERIA\"")]
    #[case(
        "path = '$.body.status'\nexists = false",
        "to select nothing, got \"OK\""
    )]
    #[case(
        "path = '$.nulls[0].a'\nis_null = true",
        "expected $.nulls[0].a to be null, got 1"
    )]
    #[case(
        "path = '$.nulls[0].b'\nis_null = false",
        "expected $.nulls[0].b not to be null, got null"
    )]
    #[case::missing_is_not_null("path = '$.nulls[0].c'\nis_null = true", "selects nothing")]
    #[case(
        "path = '$.nulls[0]'\nequals_json = '{\"a\": 1, \"b\": 2}'",
        "to equal {\"a\":1,\"b\":2}, got {\"a\":1,\"b\":null}"
    )]
    #[case::extra_key(
        "path = '$.nulls[0]'\nequals_json = '{\"a\": 1}'",
        "to equal {\"a\":1}"
    )]
    #[case(
        "path = '$.nulls[0]'\nnot_equals_json = '{\"a\": 1, \"b\": null}'",
        "not to equal {\"a\":1,\"b\":null}"
    )]
    fn fails_with_expected_and_actual(#[case] src: &str, #[case] message: &str) {
        let err = assertion(src).check(&output()).unwrap_err();
        assert!(err.contains(message), "{err}");
    }

    #[rstest]
    #[case("path = '$.rows[0].name'\nequals = '${name}'", true)]
    #[case("path = '$.rows[0].n'\nequals = '${n}'", true)]
    #[case("path = '$.rows[0].name'\nequals = 'AL${rest}'", true)]
    #[case("path = '$.body.tags'\ncontains = '${tag}'", true)]
    #[case("path = '$.rows[0].n'\nequals = '${wrong}'", false)]
    fn expects_captured_variables(#[case] src: &str, #[case] holds: bool) {
        let vars = crate::kinds::Vars::from([
            ("name".to_string(), json!("ALGERIA")),
            ("n".to_string(), json!(25)),
            ("rest".to_string(), json!("GERIA")),
            ("tag".to_string(), json!("b")),
            ("wrong".to_string(), json!(26)),
        ]);
        assert_eq!(assertion(src).check_with(&output(), &vars).is_ok(), holds);
    }

    #[rstest]
    #[case("path = '$.a'", "exactly one of")]
    #[case("path = '$.a'\nequals = 1\ngt = 0", "exactly one of")]
    #[case("path = 'rows['\nequals = 1", "`path`")]
    #[case("matches = '('", "`matches`")]
    #[case("equals_json = '{a: 1}'", "`equals_json` is not JSON")]
    #[case("is_null = true\nequals = 1", "exactly one of")]
    #[case::deep_filter(
        &format!("path = '$[?{}@.a{}]'\nexists = true", "(".repeat(400), ")".repeat(400)),
        "nest 401 deep; at most 16"
    )]
    #[case::deep_nested_queries(
        &format!("path = '${}'\nexists = true", "[?@".repeat(200) + &"]".repeat(200)),
        "nest 200 deep"
    )]
    #[case::long(&format!("path = '${}'\nexists = true", ".a".repeat(600)), "1201 characters")]
    fn rejects_bad_expectations(#[case] src: &str, #[case] message: &str) {
        let spec: ExpectSpec = toml::from_str(src).unwrap();
        let err = spec.compile().unwrap_err();
        assert!(err.contains(message), "{err}");
    }

    #[rstest]
    #[case("$.a", 0)]
    #[case("$.rows[?@.n > 10]", 1)]
    #[case("$[?(@.a && (@.b || @.c))]", 3)]
    #[case("$[?@.name == '(((['][0]", 1)]
    #[case(r#"$[?@.s == "a\"(("]"#, 1)]
    fn measures_nesting(#[case] path: &str, #[case] depth: usize) {
        assert_eq!(nesting_depth(path), depth);
    }

    /// The deepest nesting accepted still parses on a test thread's 2 MiB stack, in each
    /// construct that makes the parser recurse.
    #[rstest]
    #[case::parens(format!("$[?{}@.a{}]", "(".repeat(15), ")".repeat(15)))]
    #[case::queries(format!("${}", "[?@".repeat(16) + &"]".repeat(16)))]
    #[case::functions(format!("$[?{}@.a{} > 0]", "length(".repeat(15), ")".repeat(15)))]
    #[case::negations(format!("$[?{}@.a{}]", "!(".repeat(15), ")".repeat(15)))]
    fn parses_the_deepest_accepted(#[case] path: String) {
        let got = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                parse_json_path(&path)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(!got.as_ref().is_err_and(|e| e.contains("nest")), "{got:?}");
    }
}
