//! Imports point one way, down the data flow: a module may use the ones listed before it,
//! never one after. A new top-level module must take its place in `LAYERS`.

use std::path::Path;

/// Bottom first: helpers, the check kinds, the file formats, then the run's flow
/// spec -> platform -> checks -> report, driven by `run`.
const LAYERS: &[&str] = &[
    "mask", "template", "clients", "kinds", "spec", "secrets", "platform", "checks", "report",
    "run",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_import_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel.iter().next().unwrap().to_string_lossy();
        let module = first.trim_end_matches(".rs");
        let Some(from) = LAYERS.iter().position(|l| *l == module) else {
            assert!(
                ["lib", "bin"].contains(&module),
                "{module} is not in LAYERS"
            );
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for (i, _) in line.match_indices("crate::") {
                let target: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if let Some(to) = LAYERS.iter().position(|l| *l == target) {
                    if to > from {
                        upward.push(format!("{}:{}: {module} -> {target}", rel.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports pointing up:\n{}",
        upward.join("\n")
    );
}

/// What `cargo tree` says the crate links, normal dependencies only, with `args` added.
fn dependencies(args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .args([
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .args(args)
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// `validate` needs the spec layer alone: without the `run` feature no service client, no
/// engine and no async runtime is linked (`.ci/run` builds that configuration).
#[test]
fn the_spec_layer_links_no_client() {
    const CLIENTS: &[&str] = &[
        "tokio-postgres",
        "rdkafka",
        "aws-sdk-s3",
        "reqwest",
        "redis",
        "testcontainers",
        "tokio",
    ];
    let full = dependencies(&[]);
    let spec_only = dependencies(&["--no-default-features"]);
    for client in CLIENTS {
        assert!(
            full.iter().any(|d| d == client),
            "{client} is no dependency at all"
        );
        assert!(
            !spec_only.iter().any(|d| d == client),
            "{client} is linked without the `run` feature"
        );
    }
    assert!(spec_only.iter().any(|d| d == "toml"), "{spec_only:?}");
}
