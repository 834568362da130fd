//! A distinctive password seeded as the platform's PostgreSQL secret, and checks that
//! fail with it in their SQL, a URL and the server's error text, raw, URL-encoded and
//! JSON-escaped: the console, the JUnit file and the Markdown summary hold none of it.
//! Needs Docker and platform-kit/postgres:15 (run under /tmp/platform-heavy.lock).

use std::path::{Path, PathBuf};
use std::process::Command;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_platform-verify");

/// Every character class an encoder treats differently: `$` (templates), `/` and space
/// (URLs), `\` and `"` (JSON).
const PASSWORD: &str = r#"Zx9-leak-pa$$word/with space\and"quote"#;
/// A piece of the password no encoding changes: its presence means a partial leak.
const FRAGMENT: &str = "leak-pa";

fn url_encoded() -> String {
    utf8_percent_encode(PASSWORD, NON_ALPHANUMERIC).to_string()
}

fn form_encoded() -> String {
    // application/x-www-form-urlencoded: `+` for space.
    url_encoded().replace("%20", "+")
}

fn json_escaped() -> String {
    let quoted = serde_json::to_string(PASSWORD).unwrap();
    quoted[1..quoted.len() - 1].to_string()
}

/// Every form that must not appear, named for the assertion message.
fn forms() -> Vec<(&'static str, String)> {
    vec![
        ("raw", PASSWORD.to_string()),
        ("url-encoded", url_encoded()),
        ("url-encoded lowercase", url_encoded().to_lowercase()),
        ("form-encoded", form_encoded()),
        ("json-escaped", json_escaped()),
        ("fragment", FRAGMENT.to_string()),
    ]
}

/// SQL text in a suite goes through `${var}` rendering: `$` is written `$$`.
fn in_suite(text: &str) -> String {
    text.replace('$', "$$")
}

fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn suite() -> String {
    let ident = format!("\"{}\"", PASSWORD.replace('"', "\"\""));
    let db_uri = format!("postgresql://platform:{}@postgres:5432/x", url_encoded());
    let form = format!("https://h/login?user=platform&password={}", form_encoded());
    let checks = [
        // The server's error text quotes the password raw.
        (
            "raw_in_server_error",
            format!("SELECT * FROM {ident}"),
            None,
        ),
        // A database URI in an error: URL-encoded.
        (
            "uri_in_server_error",
            format!("SELECT {}::int", sql_literal(&db_uri)),
            None,
        ),
        (
            "form_in_server_error",
            format!("SELECT {}::int", sql_literal(&form)),
            None,
        ),
        // An expectation's "got" shows the value as JSON: escaped.
        (
            "json_in_failed_expectation",
            format!(
                "SELECT {} AS pw, {} AS uri",
                sql_literal(PASSWORD),
                sql_literal(&db_uri)
            ),
            Some("{ path = \"$.rows[0]\", equals = \"not this\" }"),
        ),
    ];
    let mut out = String::from("service = \"postgres\"\n");
    for (name, sql, expect) in checks {
        out.push_str(&format!(
            "\n[[check]]\nname = \"{name}\"\n[[check.step]]\npostgres.query.sql = {}\n",
            toml_string(&in_suite(&sql))
        ));
        if let Some(e) = expect {
            out.push_str(&format!("expect = [{e}]\n"));
        }
    }
    // An HTTP request whose URL carries the password: the client's error quotes the URL.
    out.push_str(&format!(
        "\n[[check]]\nname = \"url_in_client_error\"\n[[check.step]]\nhttp.get = {{ path = {}, port = \"sql\" }}\n",
        toml_string(&in_suite(&format!("/login?password={}", url_encoded())))
    ));
    out
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn workdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-leak-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(
        dir.join("platform.toml"),
        common::postgres_platform("{ env = \"LEAK_TEST_PG_PASSWORD\" }"),
    )
    .unwrap();
    std::fs::write(dir.join("suites/leak.toml"), suite()).unwrap();
    dir
}

/// XML escapes undone, so an escaped form cannot hide from the grep.
fn xml_unescaped(xml: &str) -> String {
    xml.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn occurrences(text: &str) -> Vec<(&'static str, usize)> {
    forms()
        .into_iter()
        .map(|(name, form)| (name, text.matches(form.as_str()).count()))
        .collect()
}

fn validate(dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["validate", "--suites"])
        .arg(dir.join("suites"))
        .arg("--platform")
        .arg(dir.join("platform.toml"))
        .env("LEAK_TEST_PG_PASSWORD", PASSWORD)
        .output()
        .unwrap()
}

#[test]
fn the_suite_is_valid() {
    let dir = workdir();
    let out = validate(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn no_form_of_the_password_reaches_console_junit_or_summary() {
    let dir = workdir();
    let run = Command::new(BIN)
        .args(["run", "--suites"])
        .arg(dir.join("suites"))
        .arg("--platform")
        .arg(dir.join("platform.toml"))
        .arg("--junit")
        .arg(dir.join("junit.xml"))
        .env("LEAK_TEST_PG_PASSWORD", PASSWORD)
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap();
    let console =
        String::from_utf8_lossy(&run.stdout).to_string() + &String::from_utf8_lossy(&run.stderr);
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("JUnit written");
    let summary = std::fs::read_to_string(dir.join("platform-summary.md")).expect("summary");

    let leaking_lines: Vec<&str> = console
        .lines()
        .chain(junit.lines())
        .chain(summary.lines())
        .filter(|l| l.contains(FRAGMENT))
        .collect();
    let counts = [
        ("console", occurrences(&console)),
        ("junit", occurrences(&junit)),
        ("junit, XML-unescaped", occurrences(&xml_unescaped(&junit))),
        ("summary", occurrences(&summary)),
    ];
    for (output, found) in &counts {
        eprintln!("{output}: {found:?}");
    }
    // The checks failed for the reasons planted, so the password was in their messages.
    assert_eq!(run.status.code(), Some(1), "{console}");
    for expected in [
        "relation \"****\" does not exist",
        "invalid input syntax for type integer: \"postgresql://platform:****@postgres",
        "password=****",
        "equal \"not this\", got {\"pw\":\"****\",\"uri\":\"postgresql://platform:****@",
        "/login?password=****",
    ] {
        assert!(console.contains(expected), "`{expected}` in:\n{console}");
    }
    for (output, found) in counts {
        assert!(
            found.iter().all(|(_, n)| *n == 0),
            "{output} leaks the password: {found:?}\n{}",
            leaking_lines.join("\n")
        );
    }
    assert!(junit.contains("****"), "{junit}");
}
