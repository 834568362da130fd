//! Property test over the public parsers: suites, platform and endpoints files taken from
//! the repository, mutated (bytes, lines, deep nesting, huge numbers, odd unicode), never
//! panic, never overflow the stack, and every error carries file:line:column.
//!
//! `PROPTEST_CASES` sets the number of cases (default sized for CI, ~20 s in a debug
//! build). The input of the running case is written to `$CARGO_TARGET_TMPDIR/
//! parser-fuzz-last.toml` first: a stack overflow aborts the process, and that file is
//! then the crashing input. Crashes found are kept as cases of `regressions` below.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use platform_harness::platform::external::ExternalPlatform;
use platform_harness::spec::{PlatformSpec, SpecErrors, Suite};
use proptest::prelude::*;
use proptest::sample::Index;
use rstest::rstest;

/// A test thread's default stack; the CLI's main thread has 8 MiB, so this is stricter.
const STACK: usize = 2 << 20;
const DEFAULT_CASES: u32 = 3000;
/// A parse slower than this on a few-KB file counts as a hang.
const SLOW: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Suite,
    Platform,
    Endpoints,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The real files: every suite, the platform, the endpoints example.
fn seeds() -> &'static [(Kind, PathBuf, String)] {
    static SEEDS: OnceLock<Vec<(Kind, PathBuf, String)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        let mut suites: Vec<PathBuf> = std::fs::read_dir(root().join("suites"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        suites.sort();
        for p in suites {
            out.push((Kind::Suite, p.clone(), std::fs::read_to_string(&p).unwrap()));
        }
        for (kind, rel) in [
            (Kind::Platform, "fixtures/platform.toml"),
            (Kind::Endpoints, "fixtures/endpoints.example.toml"),
        ] {
            let p = root().join(rel);
            out.push((kind, p.clone(), std::fs::read_to_string(&p).unwrap()));
        }
        out
    })
}

fn platform() -> &'static PlatformSpec {
    static P: OnceLock<PlatformSpec> = OnceLock::new();
    P.get_or_init(|| PlatformSpec::load(&root().join("fixtures/platform.toml")).unwrap())
}

/// Parses `text` as `kind` on a thread with a fixed stack and checks the property:
/// `Ok` holds the errors' text (empty when the file is valid), `Err` the violation.
fn check(kind: Kind, file: &Path, text: String) -> Result<String, String> {
    let file = file.to_path_buf();
    let _ = platform();
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let start = Instant::now();
            let result: Result<(), SpecErrors> = match kind {
                Kind::Suite => Suite::parse(&file, &text, platform()).map(|_| ()),
                Kind::Platform => PlatformSpec::parse(&file, &text).map(|_| ()),
                Kind::Endpoints => ExternalPlatform::parse(&file, &text).map(|_| ()),
            };
            let took = start.elapsed();
            if took > SLOW {
                return Err(format!("parsing took {took:?}"));
            }
            let Err(errors) = result else {
                return Ok(String::new());
            };
            if errors.0.is_empty() {
                return Err("an error without any message".into());
            }
            let lines = text.lines().count() + 1;
            for e in &errors.0 {
                let shown = e.to_string();
                let prefix = format!("{}:{}:{}: ", file.display(), e.line, e.column);
                if e.line == 0 || e.column == 0 || e.line > lines.max(1) {
                    return Err(format!("position out of the file: {shown}"));
                }
                if !shown.starts_with(&prefix) || e.message.trim().is_empty() {
                    return Err(format!("not file:line:column: message: {shown}"));
                }
            }
            Ok(errors.to_string())
        })
        .unwrap()
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert(Index, String),
    Delete(Index, usize),
    SetByte(Index, u8),
    DuplicateLine(Index),
    DeleteLine(Index),
    SwapLines(Index, Index),
    /// The text after the first `=` of a line.
    ReplaceValue(Index, String),
    /// The contents of one JSONPath string (`"$...`), where the JSONPath parser sees it.
    ReplaceJsonPath(Index, String),
}

/// JSONPaths that make a recursive-descent parser recurse: nested filters, parentheses,
/// function calls, negations; sometimes broken halfway.
fn json_path() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            ("[?(", ")]"),
            ("[?@", "]"),
            ("[?length(", ") > 0]"),
            ("[?!(", ")]"),
            ("[?@.a && (", ")]"),
            ("[?count(@[?", "]) > 0]"),
        ]),
        1usize..400,
        any::<bool>(),
    )
        .prop_map(|((open, close), n, closed)| {
            let inner = "@.a == 1";
            let closes = if closed {
                close.repeat(n)
            } else {
                String::new()
            };
            format!("${}{inner}{closes}", open.repeat(n))
        })
}

fn deep() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["[", "{ a = ", "(", "[?@", "!(", "length(", "[[", "{"]),
        1usize..2000,
    )
        .prop_map(|(open, n)| open.repeat(n))
}

fn odd() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "99999999999999999999999999999",
            "-9223372036854775809",
            "18446744073709551616",
            "1e999",
            "-1e-999",
            "nan",
            "-inf",
            "0x7fffffffffffffffffff",
            "\"99999999999999999999999h\"",
            "\"18446744073709551615 TiB\"",
            "\"-1s\"",
            "\u{202E}",
            "\u{FEFF}",
            "\u{0}",
            "\u{10FFFF}",
            "\u{1F600}",
            "\u{2028}",
            "é\u{301}",
            "\r",
            "\r\n",
            "\"\"\"",
            "'''",
            "\\u{",
            "\\",
            "${",
            "${secret.nope}",
            "$$",
            "=",
            "]]",
            "\n[[check]]\nname = \"x\"\n",
            "\n[[check.step]]\n",
            "\n[services.x]\n",
            "depends_on = [\"x\"]",
            "\"$[?@.a == 1]\"",
            "{ path = \"$..*\", count = 99999999999999999999 }",
        ])
        .prop_map(String::from),
        "\\PC{0,24}",
        deep(),
        (1usize..600).prop_map(|n| format!("\"$[?{}@.a{}]\"", "(".repeat(n), ")".repeat(n))),
        (1usize..400).prop_map(|n| format!("\"${}{}\"", "[?@".repeat(n), "]".repeat(n))),
        (1usize..5000).prop_map(|n| format!("\"{}\"", "a".repeat(n))),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), odd()).prop_map(|(i, s)| Mutation::Insert(i, s)),
        2 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        1 => any::<Index>().prop_map(Mutation::DuplicateLine),
        1 => any::<Index>().prop_map(Mutation::DeleteLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        3 => (any::<Index>(), odd()).prop_map(|(i, s)| Mutation::ReplaceValue(i, s)),
        2 => (any::<Index>(), json_path()).prop_map(|(i, s)| Mutation::ReplaceJsonPath(i, s)),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Insert(i, s) => {
                let at = i.index(len + 1).min(bytes.len());
                bytes.splice(at..at, s.bytes());
            }
            Mutation::Delete(i, n) => {
                let at = i.index(len).min(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::SetByte(i, b) => {
                if !bytes.is_empty() {
                    let at = i.index(bytes.len());
                    bytes[at] = *b;
                }
            }
            Mutation::ReplaceJsonPath(i, path) => {
                let starts: Vec<usize> = bytes
                    .windows(2)
                    .enumerate()
                    .filter(|(_, w)| w == b"\"$")
                    .map(|(at, _)| at + 1)
                    .collect();
                if !starts.is_empty() {
                    let at = starts[i.index(starts.len())];
                    let end = bytes[at..]
                        .iter()
                        .position(|b| *b == b'"' || *b == b'\n')
                        .map_or(bytes.len(), |e| at + e);
                    bytes.splice(at..end, path.bytes());
                }
            }
            Mutation::DuplicateLine(i)
            | Mutation::DeleteLine(i)
            | Mutation::SwapLines(i, _)
            | Mutation::ReplaceValue(i, _) => {
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<String> = s.split('\n').map(String::from).collect();
                let a = i.index(lines.len());
                match m {
                    Mutation::DuplicateLine(_) => lines.insert(a, lines[a].clone()),
                    Mutation::DeleteLine(_) => {
                        lines.remove(a);
                    }
                    Mutation::SwapLines(_, j) => {
                        let b = j.index(lines.len());
                        lines.swap(a, b);
                    }
                    Mutation::ReplaceValue(_, v) => {
                        if let Some(eq) = lines[a].find('=') {
                            lines[a] = format!("{}= {v}", &lines[a][..eq]);
                        }
                    }
                    _ => unreachable!(),
                }
                bytes = lines.join("\n").into_bytes();
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn last_input_file() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("parser-fuzz-last.toml")
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Shrinking re-parses many times; a failure's first input is already small enough
        // to read, and its seed is saved by proptest's persistence file.
        max_shrink_iters: 200,
        max_global_rejects: cases(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_files_parse_or_fail_with_a_position(
        seed in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let (kind, file, text) = &seeds()[seed.index(seeds().len())];
        let mutated = apply(text, &mutations);
        let _ = std::fs::write(
            last_input_file(),
            format!("# {kind:?} {}\n{mutated}", file.display()),
        );
        let outcome = check(*kind, file, mutated);
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

/// Inputs the fuzzing found (or that motivated a bound), kept as they were, with a piece
/// of the error each must give.
#[rstest]
#[case::long_expect_filter(Kind::Suite, "a JSONPath of 6007 characters is longer", format!(
    "[[check]]\nname = \"x\"\nservice = \"postgres\"\n[[check.step]]\npostgres.connect = {{}}\nexpect = [{{ path = \"$[?{}@.a{}]\", exists = true }}]\n",
    "(".repeat(3000), ")".repeat(3000)
))]
#[case::deep_expect_filter(Kind::Suite, "nest 301 deep", format!(
    "[[check]]\nname = \"x\"\nservice = \"postgres\"\n[[check.step]]\npostgres.connect = {{}}\nexpect = [{{ path = \"$[?{}@.a{}]\", exists = true }}]\n",
    "(".repeat(300), ")".repeat(300)
))]
#[case::deep_expect_queries(Kind::Suite, "nest 250 deep", format!(
    "[[check]]\nname = \"x\"\nservice = \"postgres\"\n[[check.step]]\npostgres.connect = {{}}\nexpect = [{{ path = \"${}{}\", exists = true }}]\n",
    "[?@".repeat(250), "]".repeat(250)
))]
#[case::deep_toml_arrays(Kind::Platform, "max recursion depth", format!("[services.x]\nimage = \"i\"\nenv = {}1{}\n", "[".repeat(100_000), "]".repeat(100_000)))]
#[case::deep_toml_tables(Kind::Endpoints, "max recursion depth", format!("[services.x]\nhost = {}1{}\n", "{ a = ".repeat(100_000), "}".repeat(100_000)))]
#[case::long_dependency_cycle(Kind::Platform, "dependency cycle s0 -> s1 -> s2", (0..5_000).map(|i| format!(
    "[services.s{i}]\nimage = \"i\"\ndepends_on = [\"s{}\"]\nready = [{{ command = [\"true\"] }}]\n", (i + 1) % 5_000
)).collect::<String>())]
// Found by this test in ~1 s with the JSONPath bound switched off (a stack overflow).
#[case::found_nested_filter_queries(Kind::Suite, "field `expect`: `path`: brackets and parentheses nest", include_str!("parser_regressions/mlflow-nested-filter-queries.toml").to_string())]
fn regressions(#[case] kind: Kind, #[case] expected: &str, #[case] text: String) {
    let file = root().join(match kind {
        Kind::Suite => "suites/regression.toml",
        Kind::Platform => "fixtures/regression.toml",
        Kind::Endpoints => "fixtures/endpoints-regression.toml",
    });
    let errors = check(kind, &file, text).unwrap();
    assert!(errors.contains(expected), "{errors}");
}

/// A capture path is bounded like an expectation's.
#[test]
fn deep_capture_path() {
    let text = format!(
        "[[check]]\nname = \"x\"\nservice = \"postgres\"\n[[check.step]]\npostgres.connect = {{}}\ncapture = {{ v = \"$[?{}@.a{}]\" }}\n",
        "(".repeat(300),
        ")".repeat(300)
    );
    let file = root().join("suites/regression.toml");
    let errors = check(Kind::Suite, &file, text).unwrap();
    assert!(errors.contains("nest 301 deep"), "{errors}");
}
