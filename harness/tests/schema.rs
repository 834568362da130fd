//! The committed JSON Schemas are what the parsing types generate (regenerate with
//! `UPDATE_SCHEMA=1 cargo test --test schema`), and every file in `suites/` is valid
//! against them, so an editor that follows a file's `#:schema` line agrees with `validate`.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn committed(name: &str, generated: &Value) -> Value {
    let path = root().join("harness/schema").join(name);
    let text = serde_json::to_string_pretty(generated).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SCHEMA=1)", path.display()));
    assert!(
        on_disk == text,
        "{} differs from the schema the parsers generate: run `UPDATE_SCHEMA=1 cargo test --test schema` and commit it",
        path.display()
    );
    generated.clone()
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(toml_files(&path));
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn errors_of(schema: &Value, file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let doc: Value = serde_json::to_value(toml::from_str::<toml::Value>(&text).unwrap()).unwrap();
    let validator = jsonschema::validator_for(schema).expect("a valid schema");
    validator
        .iter_errors(&doc)
        .map(|e| format!("{}: {} at {}", file.display(), e, e.instance_path()))
        .collect()
}

#[test]
fn suite_schema_is_committed_and_every_suite_satisfies_it() {
    let schema = committed(
        "suite.schema.json",
        &platform_harness::spec::schema::suite(),
    );
    let suites = toml_files(&root().join("suites"));
    assert!(suites.len() >= 6, "found {suites:?}");
    let errors: Vec<String> = suites.iter().flat_map(|f| errors_of(&schema, f)).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    for f in &suites {
        let first = std::fs::read_to_string(f).unwrap();
        assert!(
            first.starts_with("#:schema ")
                && first
                    .lines()
                    .next()
                    .unwrap()
                    .ends_with("harness/schema/suite.schema.json"),
            "{} lacks its `#:schema` line",
            f.display()
        );
    }
}

fn assert_schema_line(files: &[PathBuf], schema_file: &str) {
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("#:schema ") && first.ends_with(schema_file),
            "{} lacks its `#:schema ...{schema_file}` line",
            f.display()
        );
        let target = f
            .parent()
            .unwrap()
            .join(first.trim_start_matches("#:schema ").trim());
        assert!(
            target.is_file(),
            "{}: {} does not exist",
            f.display(),
            target.display()
        );
    }
}

#[test]
fn platform_schema_is_committed_and_every_platform_file_satisfies_it() {
    let schema = committed(
        "platform.schema.json",
        &platform_harness::spec::schema::platform(),
    );
    let mut files = vec![root().join("fixtures/platform.toml")];
    files.extend(toml_files(&root().join("fixtures/platforms")));
    let errors: Vec<String> = files.iter().flat_map(|f| errors_of(&schema, f)).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert_schema_line(&files, "harness/schema/platform.schema.json");
}

#[test]
fn endpoints_schema_is_committed_and_the_example_satisfies_it() {
    let schema = committed(
        "endpoints.schema.json",
        &platform_harness::platform::external::schema(),
    );
    let files = vec![root().join("fixtures/endpoints.example.toml")];
    let errors: Vec<String> = files.iter().flat_map(|f| errors_of(&schema, f)).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert_schema_line(&files, "harness/schema/endpoints.schema.json");
    // A credential given as a value where a reference belongs is not valid.
    let validator = jsonschema::validator_for(&schema).unwrap();
    let bad = serde_json::json!({ "services": { "pg": { "host": "h", "ports": { "sql": 5432 }, "credentials": { "password": "hunter22" } } } });
    assert!(!validator.is_valid(&bad));
}

#[test]
fn the_suite_schema_rejects_what_validate_rejects() {
    let schema = platform_harness::spec::schema::suite();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let bad = [
        // unknown verb
        r#"[[check]]
name = "a"
[[check.step]]
postgres.qurey.sql = "select 1""#,
        // two actions in one step
        r#"[[check]]
name = "a"
[[check.step]]
postgres.query.sql = "select 1"
s3.list_buckets = {}"#,
        // unknown key
        r#"[[check]]
name = "a"
frob = 1
[[check.step]]
postgres.query.sql = "select 1""#,
    ];
    for src in bad {
        let doc = serde_json::to_value(toml::from_str::<toml::Value>(src).unwrap()).unwrap();
        assert!(!validator.is_valid(&doc), "accepted:\n{src}");
    }
    let good = r#"[[check]]
name = "a"
[[check.step]]
postgres.query.sql = "select 1"
expect = [{ path = "$.row_count", equals = 1 }]"#;
    let doc = serde_json::to_value(toml::from_str::<toml::Value>(good).unwrap()).unwrap();
    assert!(validator.is_valid(&doc));
}
