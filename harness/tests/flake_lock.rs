//! flake.lock against flake.nix, without Nix. Nobody can run `nix flake lock` on a machine
//! without GitHub, so the lock is written by hand from other public locks; this test makes
//! sure such a lock is one Nix accepts as is (no re-lock on first use):
//!
//! - valid JSON, lock format version 7, root node "root";
//! - root's inputs are exactly the inputs flake.nix declares;
//! - every locked node has type, owner, repo, a full 40-hex rev, a sha256 SRI narHash and
//!   lastModified, and its `original` is the URL flake.nix gives (owner, repo, ref);
//! - each `inputs.<x>.follows` of flake.nix is a follows in the lock, and every node is used;
//! - rust-overlay is not older than the Rust release rust-toolchain.toml pins (an older
//!   overlay cannot know that toolchain).
//!
//! flake.nix is read with a small scanner, not a Nix parser: it understands the usual
//! shapes (`inputs = { x.url = "..."; y = { url = "..."; inputs.z.follows = "..."; }; }` and
//! `inputs.x.url = "...";` at the top level) and fails loudly on anything else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;

fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn read(name: &str) -> String {
    let path = repo_root().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn flake_lock_matches_flake_nix() {
    let problems = check(
        &read("flake.nix"),
        &read("flake.lock"),
        Some(&read("rust-toolchain.toml")),
    );
    assert!(
        problems.is_empty(),
        "flake.lock does not fit flake.nix:\n  - {}",
        problems.join("\n  - ")
    );
}

// ---------------------------------------------------------------------------------------------
// The checks

/// Every problem found, as one sentence each; empty when the lock fits.
fn check(flake_nix: &str, lock_json: &str, rust_toolchain: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    let inputs = match declared_inputs(flake_nix) {
        Ok(i) => i,
        Err(e) => return vec![format!("flake.nix: {e}")],
    };
    if inputs.is_empty() {
        return vec!["flake.nix: no inputs found".into()];
    }
    let lock: Value = match serde_json::from_str(lock_json) {
        Ok(v) => v,
        Err(e) => return vec![format!("flake.lock is not valid JSON: {e}")],
    };

    if lock["version"] != 7 {
        problems.push(format!("version is {}, expected 7", lock["version"]));
    }
    let Some(root_name) = lock["root"].as_str() else {
        return vec!["no \"root\" (string) in flake.lock".into()];
    };
    if root_name != "root" {
        problems.push(format!("root is {root_name:?}, expected \"root\""));
    }
    let Some(nodes) = lock["nodes"].as_object() else {
        return vec!["no \"nodes\" object in flake.lock".into()];
    };
    let Some(root) = nodes.get(root_name) else {
        return vec![format!("no node {root_name:?} in flake.lock")];
    };
    let root_inputs = root["inputs"].as_object().cloned().unwrap_or_default();

    let declared: BTreeSet<&str> = inputs.keys().map(String::as_str).collect();
    let locked: BTreeSet<&str> = root_inputs.keys().map(String::as_str).collect();
    for name in declared.difference(&locked) {
        problems.push(format!(
            "input {name:?} is declared in flake.nix but not in the lock's root"
        ));
    }
    for name in locked.difference(&declared) {
        problems.push(format!(
            "the lock's root has input {name:?}, which flake.nix does not declare"
        ));
    }

    // Each declared input: its node, locked fields, original = flake.nix's URL, follows.
    for (name, input) in &inputs {
        let Some(node_ref) = root_inputs.get(name) else {
            continue; // reported above
        };
        let Some(node_name) = node_ref.as_str() else {
            problems.push(format!(
                "root input {name:?} is a follows ({node_ref}), expected a node name"
            ));
            continue;
        };
        let Some(node) = nodes.get(node_name) else {
            problems.push(format!(
                "root input {name:?} points to node {node_name:?}, which does not exist"
            ));
            continue;
        };
        let Some(url) = &input.url else {
            problems.push(format!("flake.nix gives input {name:?} no url"));
            continue;
        };
        match parse_github_url(url) {
            Ok(source) => {
                let original = &node["original"];
                let want = |field: &str, value: Option<&str>| -> Option<String> {
                    let got = original.get(field).and_then(Value::as_str);
                    (got != value).then(|| {
                        format!(
                            "node {node_name:?}: original.{field} is {got:?}, flake.nix's url {url:?} says {value:?}"
                        )
                    })
                };
                problems.extend(want("type", Some("github")));
                problems.extend(want("owner", Some(&source.owner)));
                problems.extend(want("repo", Some(&source.repo)));
                problems.extend(want("ref", source.git_ref.as_deref()));
                problems.extend(want("rev", source.rev.as_deref()));
                let locked = &node["locked"];
                for field in ["owner", "repo"] {
                    if locked.get(field) != original.get(field) {
                        problems.push(format!(
                            "node {node_name:?}: locked.{field} ({}) differs from original.{field} ({})",
                            locked.get(field).unwrap_or(&Value::Null),
                            original.get(field).unwrap_or(&Value::Null)
                        ));
                    }
                }
                if let Some(rev) = &source.rev {
                    if locked.get("rev").and_then(Value::as_str) != Some(rev) {
                        problems.push(format!(
                            "node {node_name:?}: flake.nix pins rev {rev}, the lock has {}",
                            locked.get("rev").unwrap_or(&Value::Null)
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!("input {name:?}: {e}")),
        }
        if input.flake == Some(false) && node.get("flake") != Some(&Value::Bool(false)) {
            problems.push(format!(
                "input {name:?} has flake = false in flake.nix but not in the lock"
            ));
        }
        let node_inputs = node["inputs"].as_object().cloned().unwrap_or_default();
        for (dep, target) in &input.follows {
            let want: Vec<Value> = target.split('/').map(|s| Value::String(s.into())).collect();
            match node_inputs.get(dep) {
                Some(Value::Array(got)) if *got == want => {}
                got => problems.push(format!(
                    "node {node_name:?}: inputs.{dep} should follow {:?} (as flake.nix says), the lock has {}",
                    target,
                    got.unwrap_or(&Value::Null)
                )),
            }
        }
    }

    // Every node but the root: a complete `locked` entry; references resolve; none unused.
    let sri = Regex::new(r"^sha256-[A-Za-z0-9+/]{43}=$").unwrap();
    let hex40 = Regex::new(r"^[0-9a-f]{40}$").unwrap();
    let mut used = BTreeSet::new();
    for (node_name, node) in nodes {
        if node_name == root_name {
            continue;
        }
        let locked = &node["locked"];
        let field = |f: &str| locked.get(f).and_then(Value::as_str).unwrap_or("");
        if field("type") != "github" {
            problems.push(format!(
                "node {node_name:?}: locked.type is {:?}; this test knows github inputs only",
                locked.get("type")
            ));
        }
        for f in ["owner", "repo"] {
            if field(f).is_empty() {
                problems.push(format!("node {node_name:?}: locked.{f} is missing"));
            }
        }
        if !hex40.is_match(field("rev")) {
            problems.push(format!(
                "node {node_name:?}: locked.rev {:?} is not a full 40-hex commit",
                field("rev")
            ));
        }
        if !sri.is_match(field("narHash")) {
            problems.push(format!(
                "node {node_name:?}: locked.narHash {:?} is not a sha256 SRI hash (sha256-<44 base64>)",
                field("narHash")
            ));
        }
        // Commit times of real revisions: after Nix flakes existed (2019) and not in the future.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(u64::MAX);
        match locked.get("lastModified").and_then(Value::as_u64) {
            Some(t) if (1_546_300_800..=now + 86_400).contains(&t) => {}
            other => problems.push(format!(
                "node {node_name:?}: locked.lastModified {other:?} is not a plausible commit time (seconds)"
            )),
        }
        if node["original"].as_object().is_none() {
            problems.push(format!("node {node_name:?}: no original"));
        }
    }
    for (node_name, node) in nodes {
        let Some(node_inputs) = node["inputs"].as_object() else {
            continue;
        };
        for (dep, target) in node_inputs {
            match target {
                Value::String(target) if nodes.contains_key(target) => {
                    used.insert(target.clone());
                }
                Value::Array(path) => match resolve(nodes, root_name, path) {
                    Ok(resolved) => {
                        used.insert(resolved);
                    }
                    Err(e) => problems.push(format!("node {node_name:?}: inputs.{dep}: {e}")),
                },
                other => problems.push(format!(
                    "node {node_name:?}: inputs.{dep} = {other} names no node"
                )),
            }
        }
    }
    for node_name in nodes.keys() {
        if node_name != root_name && !used.contains(node_name) {
            problems.push(format!(
                "node {node_name:?} is not used by any input (a leftover?)"
            ));
        }
    }

    // rust-overlay must know the toolchain rust-toolchain.toml pins.
    if let Some(toolchain) = rust_toolchain {
        problems.extend(check_overlay_age(&inputs, &root_inputs, nodes, toolchain));
    }
    problems
}

/// A follows path (`["nixpkgs"]`, `["a", "b"]`) from the root, as Nix resolves it.
fn resolve(
    nodes: &serde_json::Map<String, Value>,
    root_name: &str,
    path: &[Value],
) -> Result<String, String> {
    let mut current = root_name.to_string();
    for segment in path {
        let segment = segment
            .as_str()
            .ok_or_else(|| format!("follows path {path:?} has a non-string"))?;
        let next = &nodes
            .get(&current)
            .ok_or_else(|| format!("follows path {path:?}: no node {current:?}"))?["inputs"]
            [segment];
        current = match next {
            Value::String(s) => s.clone(),
            Value::Array(p) => resolve(nodes, root_name, p)?,
            _ => {
                return Err(format!(
                    "follows path {path:?}: node {current:?} has no input {segment:?}"
                ))
            }
        };
    }
    if nodes.contains_key(&current) {
        Ok(current)
    } else {
        Err(format!(
            "follows path {path:?} ends at missing node {current:?}"
        ))
    }
}

/// Rust 1.N.0 comes out on the Thursday 6·N weeks after 2015-05-14 (1.0 was the day after).
/// A rust-overlay revision committed before that day cannot list the toolchain.
fn check_overlay_age(
    inputs: &BTreeMap<String, Input>,
    root_inputs: &serde_json::Map<String, Value>,
    nodes: &serde_json::Map<String, Value>,
    rust_toolchain: &str,
) -> Vec<String> {
    let Ok(toml) = rust_toolchain.parse::<toml::Table>() else {
        return vec!["rust-toolchain.toml is not valid TOML".into()];
    };
    let channel = toml
        .get("toolchain")
        .and_then(|t| t.get("channel"))
        .and_then(|c| c.as_str())
        .unwrap_or("");
    let Some(minor) = Regex::new(r"^1\.(\d+)(?:\.\d+)?$")
        .unwrap()
        .captures(channel)
        .and_then(|c| c[1].parse::<u64>().ok())
    else {
        return Vec::new(); // stable/beta/nightly or a dated channel: nothing to compare
    };
    const THURSDAY_2015_05_14: u64 = 1_431_561_600;
    let release = THURSDAY_2015_05_14 + minor * 42 * 86_400;
    let overlay = inputs.iter().find(|(_, i)| {
        i.url
            .as_deref()
            .and_then(|u| parse_github_url(u).ok())
            .is_some_and(|s| s.owner == "oxalica" && s.repo == "rust-overlay")
    });
    let Some((name, _)) = overlay else {
        return Vec::new();
    };
    let last_modified = root_inputs
        .get(name)
        .and_then(Value::as_str)
        .and_then(|n| nodes.get(n))
        .and_then(|n| n["locked"]["lastModified"].as_u64());
    match last_modified {
        Some(t) if t >= release => Vec::new(),
        Some(t) => vec![format!(
            "rust-overlay is locked at a commit of {t} (seconds), before Rust {channel} came out \
             (~{release}); it cannot know that toolchain: run `nix flake update rust-overlay`"
        )],
        None => Vec::new(), // reported by the node checks
    }
}

// ---------------------------------------------------------------------------------------------
// flake.nix, read just enough

#[derive(Debug, Default)]
struct Input {
    url: Option<String>,
    /// `inputs.<dep>.follows = "<target>"` of this input.
    follows: BTreeMap<String, String>,
    flake: Option<bool>,
}

#[derive(Debug)]
struct GithubSource {
    owner: String,
    repo: String,
    git_ref: Option<String>,
    rev: Option<String>,
}

/// `github:owner/repo`, `github:owner/repo/<ref or rev>`, `github:owner/repo?ref=..&rev=..`.
fn parse_github_url(url: &str) -> Result<GithubSource, String> {
    let rest = url.strip_prefix("github:").ok_or_else(|| {
        format!("url {url:?} is not github:owner/repo[/ref]; this test knows github inputs only")
    })?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let parts: Vec<&str> = path.split('/').collect();
    let (owner, repo, third) = match parts.as_slice() {
        [o, r] => (*o, *r, None),
        [o, r, x] => (*o, *r, Some(*x)),
        _ => return Err(format!("url {url:?} is not github:owner/repo[/ref]")),
    };
    if owner.is_empty() || repo.is_empty() {
        return Err(format!("url {url:?} has an empty owner or repo"));
    }
    let hex40 = Regex::new(r"^[0-9a-f]{40}$").unwrap();
    let mut source = GithubSource {
        owner: owner.into(),
        repo: repo.into(),
        git_ref: None,
        rev: None,
    };
    match third {
        Some(x) if hex40.is_match(x) => source.rev = Some(x.into()),
        Some(x) => source.git_ref = Some(x.into()),
        None => {}
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("ref", v)) => source.git_ref = Some(v.into()),
            Some(("rev", v)) => source.rev = Some(v.into()),
            _ => {
                return Err(format!(
                    "url {url:?}: query {pair:?} is not understood here"
                ))
            }
        }
    }
    Ok(source)
}

/// The inputs flake.nix declares, by name.
fn declared_inputs(flake_nix: &str) -> Result<BTreeMap<String, Input>, String> {
    let mut bindings = Vec::new();
    top_level_inputs(
        &strip_comments(flake_nix).chars().collect::<Vec<_>>(),
        &mut bindings,
    )?;

    let mut inputs: BTreeMap<String, Input> = BTreeMap::new();
    for (path, value) in bindings {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let Some((name, attr)) = path[1..].split_first() else {
            return Err("`inputs = ...` is not an attribute set".into());
        };
        let input = inputs.entry(name.to_string()).or_default();
        match (attr, &value) {
            (["url"], Nix::Str(url)) => input.url = Some(url.clone()),
            (["inputs", dep, "follows"], Nix::Str(target)) => {
                input.follows.insert(dep.to_string(), target.clone());
            }
            (["flake"], Nix::Raw(b)) if b == "false" || b == "true" => {
                input.flake = Some(b == "true")
            }
            _ => {
                return Err(format!(
                    "inputs.{name}: `{} = {value:?}` is not a shape this test understands (url, flake, inputs.<x>.follows)",
                    attr.join(".")
                ))
            }
        }
    }
    Ok(inputs)
}

/// The bindings under `inputs` of the flake's attribute set, flattened (`["inputs",
/// "rust-overlay", "url"]`). Other bindings (`description`, `outputs`, ...) are skipped.
fn top_level_inputs(c: &[char], out: &mut Vec<(Vec<String>, Nix)>) -> Result<(), String> {
    let mut pos = 0;
    skip_ws(c, &mut pos);
    if c.get(pos) != Some(&'{') {
        return Err("flake.nix is not an attribute set `{ ... }`".into());
    }
    let close = matching(c, pos)?;
    pos += 1;
    loop {
        skip_ws(c, &mut pos);
        if pos >= close {
            return Ok(());
        }
        let path = read_attrpath(c, &mut pos, &[])?;
        expect(c, &mut pos, '=', &path)?;
        if path[0] == "inputs" {
            parse_value(&c[..close], &mut pos, path, out)?;
        } else {
            skip_expr(&c[..close], &mut pos)?;
        }
        skip_ws(c, &mut pos);
        expect(c, &mut pos, ';', &[])?;
    }
}

/// Moves `pos` to the `;` that ends the expression starting there (not past it). Brackets
/// and strings are skipped whole; `let ... in` and `with e;` / `assert e;` are counted, as
/// their `;` do not end the binding.
fn skip_expr(c: &[char], pos: &mut usize) -> Result<(), String> {
    let start = *pos;
    let (mut lets, mut semis) = (0usize, 0usize);
    while *pos < c.len() {
        if let Some(end) = string_end(c, *pos) {
            *pos = end;
            continue;
        }
        match c[*pos] {
            '{' | '[' | '(' => *pos = matching(c, *pos)? + 1,
            ';' if semis > 0 => {
                semis -= 1;
                *pos += 1;
            }
            ';' if lets > 0 => *pos += 1,
            ';' => return Ok(()),
            ch if ch.is_alphabetic() || ch == '_' => {
                let word_start = *pos;
                while *pos < c.len()
                    && (c[*pos].is_alphanumeric() || matches!(c[*pos], '_' | '-' | '\''))
                {
                    *pos += 1;
                }
                match c[word_start..*pos].iter().collect::<String>().as_str() {
                    "let" => lets += 1,
                    "in" => lets = lets.saturating_sub(1),
                    "with" | "assert" => semis += 1,
                    _ => {}
                }
            }
            _ => *pos += 1,
        }
    }
    Err(format!(
        "no `;` ends the expression at {:?}",
        context(c, start)
    ))
}

#[derive(Debug)]
enum Nix {
    Str(String),
    Raw(String),
}

/// `# ...` and `/* ... */` removed (outside strings), everything else kept in place.
fn strip_comments(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        if let Some(end) = string_end(&c, i) {
            out.extend(&c[i..end]);
            i = end;
        } else if c[i] == '#' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            i += 2;
            while i < c.len() && !(c[i] == '*' && c.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i = (i + 2).min(c.len());
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// If a string literal (`"..."` or `''...''`) starts at `i`, the index just past it.
fn string_end(c: &[char], i: usize) -> Option<usize> {
    if c[i] == '"' {
        let mut j = i + 1;
        while j < c.len() {
            match c[j] {
                '\\' => j += 2,
                '"' => return Some(j + 1),
                _ => j += 1,
            }
        }
        Some(c.len())
    } else if c[i] == '\'' && c.get(i + 1) == Some(&'\'') {
        let mut j = i + 2;
        while j < c.len() {
            if c[j] == '\'' && c.get(j + 1) == Some(&'\'') {
                // `'''` and `''$` / `''\` are escapes inside an indented string.
                if matches!(c.get(j + 2), Some('\'') | Some('$') | Some('\\')) {
                    j += 3;
                    continue;
                }
                return Some(j + 2);
            }
            j += 1;
        }
        Some(c.len())
    } else {
        None
    }
}

fn skip_ws(c: &[char], pos: &mut usize) {
    while *pos < c.len() && c[*pos].is_whitespace() {
        *pos += 1;
    }
}

/// `a.b."c"` at `pos`, appended to `prefix`.
fn read_attrpath(c: &[char], pos: &mut usize, prefix: &[String]) -> Result<Vec<String>, String> {
    skip_ws(c, pos);
    let mut path = prefix.to_vec();
    loop {
        let start = *pos;
        if c.get(*pos) == Some(&'"') {
            let end = string_end(c, *pos).unwrap();
            path.push(unquote(&c[start..end])?);
            *pos = end;
        } else {
            while *pos < c.len()
                && (c[*pos].is_alphanumeric() || matches!(c[*pos], '_' | '-' | '\''))
            {
                *pos += 1;
            }
            if *pos == start {
                return Err(format!(
                    "expected an attribute name at {:?}",
                    context(c, start)
                ));
            }
            path.push(c[start..*pos].iter().collect());
        }
        skip_ws(c, pos);
        if c.get(*pos) == Some(&'.') {
            *pos += 1;
            skip_ws(c, pos);
        } else {
            return Ok(path);
        }
    }
}

fn expect(c: &[char], pos: &mut usize, want: char, after: &[String]) -> Result<(), String> {
    skip_ws(c, pos);
    if c.get(*pos) != Some(&want) {
        return Err(format!(
            "expected `{want}` after `{}` at {:?}",
            after.join("."),
            context(c, *pos)
        ));
    }
    *pos += 1;
    Ok(())
}

/// The value of the binding `path` at `pos`: a string, an attribute set (its bindings are
/// flattened under `path`) or a plain word such as `false`.
fn parse_value(
    c: &[char],
    pos: &mut usize,
    path: Vec<String>,
    out: &mut Vec<(Vec<String>, Nix)>,
) -> Result<(), String> {
    skip_ws(c, pos);
    match c.get(*pos) {
        Some('{') => {
            let close = matching(c, *pos)?;
            let mut inner = *pos + 1;
            loop {
                skip_ws(c, &mut inner);
                if inner >= close {
                    break;
                }
                let inner_path = read_attrpath(&c[..close], &mut inner, &path)?;
                expect(&c[..close], &mut inner, '=', &inner_path)?;
                parse_value(&c[..close], &mut inner, inner_path, out)?;
                expect(&c[..close], &mut inner, ';', &[])?;
            }
            *pos = close + 1;
        }
        Some('"') => {
            let end = string_end(c, *pos).unwrap();
            out.push((path, Nix::Str(unquote(&c[*pos..end])?)));
            *pos = end;
        }
        _ => {
            let start = *pos;
            while *pos < c.len() && c[*pos] != ';' {
                if matches!(c[*pos], '{' | '[' | '(') {
                    return Err(format!(
                        "`{}` has a value this test does not read: {:?}",
                        path.join("."),
                        context(c, start)
                    ));
                }
                *pos += 1;
            }
            let word: String = c[start..*pos].iter().collect();
            out.push((path, Nix::Raw(word.trim().into())));
        }
    }
    Ok(())
}

/// The `}` closing the `{` at `open`.
fn matching(c: &[char], open: usize) -> Result<usize, String> {
    let mut level = 0usize;
    let mut i = open;
    while i < c.len() {
        if let Some(end) = string_end(c, i) {
            i = end;
            continue;
        }
        match c[i] {
            '{' | '[' | '(' => level += 1,
            '}' | ']' | ')' => {
                level -= 1;
                if level == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(format!("unbalanced `{{` at {:?}", context(c, open)))
}

fn unquote(lit: &[char]) -> Result<String, String> {
    let s: String = lit.iter().collect();
    if s.contains("${") {
        return Err(format!("{s} has an interpolation; inputs must be literal"));
    }
    let inner = s
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(|| format!("{s} is not a \"string\""))?;
    Ok(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
}

fn context(c: &[char], at: usize) -> String {
    c[at.min(c.len())..(at + 40).min(c.len())].iter().collect()
}

// ---------------------------------------------------------------------------------------------
// The checker's own tests: each mistake a hand-written lock can make is caught.

const FLAKE: &str = r#"{
  description = "x";
  inputs = {
    # a comment with inputs.fake.url = "github:no/no";
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };
  outputs = inputs@{ self, nixpkgs, ... }:
    let
      inputs = 1;
    in { x = inputs.nixpkgs; };
}"#;

const LOCK: &str = r#"{
  "nodes": {
    "nixpkgs": {
      "locked": {
        "lastModified": 1779796641,
        "narHash": "sha256-ZsIrKmhp4vbBXoXXmR/tBXA/UCsAQiJL9vsgZEduhVY=",
        "owner": "NixOS", "repo": "nixpkgs",
        "rev": "25f538306313eae3927264466c70d7001dcea1df", "type": "github"
      },
      "original": { "owner": "NixOS", "ref": "nixos-25.11", "repo": "nixpkgs", "type": "github" }
    },
    "root": { "inputs": { "nixpkgs": "nixpkgs", "rust-overlay": "rust-overlay" } },
    "rust-overlay": {
      "inputs": { "nixpkgs": ["nixpkgs"] },
      "locked": {
        "lastModified": 1778469574,
        "narHash": "sha256-NTZzJ7xJvMXOonYqut3WLUhryeZj5QuuL0ANcqS7d30=",
        "owner": "oxalica", "repo": "rust-overlay",
        "rev": "4852a8aa041c94af55e136cde5b8b6d42c3563e8", "type": "github"
      },
      "original": { "owner": "oxalica", "repo": "rust-overlay", "type": "github" }
    }
  },
  "root": "root",
  "version": 7
}"#;

const TOOLCHAIN: &str = "[toolchain]\nchannel = \"1.95.0\"\n";

fn problems_with(flake: &str, lock: &str) -> String {
    check(flake, lock, Some(TOOLCHAIN)).join("\n")
}

#[test]
fn checker_accepts_a_consistent_pair() {
    assert_eq!(problems_with(FLAKE, LOCK), "");
    let inputs = declared_inputs(FLAKE).unwrap();
    assert_eq!(
        inputs.keys().collect::<Vec<_>>(),
        ["nixpkgs", "rust-overlay"],
        "comments and `inputs` inside outputs are not declarations"
    );
}

#[test]
fn checker_rejects_each_inconsistency() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (what, flake.nix edit (from, to), flake.lock edit (from, to) as "a=>b", expected)
        (
            "branch changed in flake.nix",
            "nixos-25.11\"",
            "nixos-26.05\"",
            "original.ref",
        ),
        (
            "input added",
            "  };\n  outputs",
            "  crane.url = \"github:ipetkov/crane\";\n  };\n  outputs",
            "\"crane\" is declared",
        ),
        (
            "a follows the lock does not have",
            "inputs.nixpkgs.follows",
            "inputs.flake-utils.follows",
            "inputs.flake-utils should follow",
        ),
        (
            "owner differs",
            "github:oxalica/",
            "github:Oxalica/",
            "original.owner",
        ),
    ];
    for (what, from, to, expected) in cases {
        let flake = FLAKE.replacen(from, to, 1);
        assert_ne!(flake, FLAKE, "{what}: edit did not apply");
        let problems = problems_with(&flake, LOCK);
        assert!(
            problems.contains(expected),
            "{what}: expected {expected:?} in:\n{problems}"
        );
    }

    let lock_cases: &[(&str, &str, &str, &str)] = &[
        (
            "short rev",
            "\"rev\": \"25f538306313eae3927264466c70d7001dcea1df\"",
            "\"rev\": \"25f5383\"",
            "not a full 40-hex",
        ),
        (
            "hex narHash",
            "sha256-ZsIrKmhp4vbBXoXXmR/tBXA/UCsAQiJL9vsgZEduhVY=",
            "sha256-66c2232a",
            "not a sha256 SRI",
        ),
        (
            "no lastModified",
            "\"lastModified\": 1779796641,",
            "",
            "lastModified None",
        ),
        (
            "lastModified in ms",
            "1779796641",
            "1779796641000",
            "not a plausible commit time",
        ),
        (
            "own nixpkgs instead of follows",
            "\"inputs\": { \"nixpkgs\": [\"nixpkgs\"] }",
            "\"inputs\": { \"nixpkgs\": \"nixpkgs\" }",
            "should follow",
        ),
        (
            "version 6",
            "\"version\": 7",
            "\"version\": 6",
            "expected 7",
        ),
        (
            "extra root input",
            "\"rust-overlay\": \"rust-overlay\" }",
            "\"rust-overlay\": \"rust-overlay\", \"crane\": \"nixpkgs\" }",
            "which flake.nix does not declare",
        ),
        (
            "overlay older than the toolchain",
            "\"lastModified\": 1778469574",
            "\"lastModified\": 1700000000",
            "nix flake update rust-overlay",
        ),
        (
            "not JSON",
            "\"version\": 7",
            "\"version\": 7,",
            "not valid JSON",
        ),
        (
            "ref locked in original but not in flake.nix",
            "\"original\": { \"owner\": \"oxalica\",",
            "\"original\": { \"ref\": \"master\", \"owner\": \"oxalica\",",
            "original.ref",
        ),
    ];
    for (what, from, to, expected) in lock_cases {
        let lock = LOCK.replacen(from, to, 1);
        assert_ne!(lock, LOCK, "{what}: edit did not apply");
        let problems = problems_with(FLAKE, &lock);
        assert!(
            problems.contains(expected),
            "{what}: expected {expected:?} in:\n{problems}"
        );
    }

    // A node nothing refers to.
    let leftover = LOCK.replacen(
        "\"root\": { \"inputs\"",
        "\"nixpkgs_2\": { \"locked\": { \"lastModified\": 1779796641, \"narHash\": \"sha256-ZsIrKmhp4vbBXoXXmR/tBXA/UCsAQiJL9vsgZEduhVY=\", \"owner\": \"NixOS\", \"repo\": \"nixpkgs\", \"rev\": \"25f538306313eae3927264466c70d7001dcea1df\", \"type\": \"github\" }, \"original\": { \"owner\": \"NixOS\", \"repo\": \"nixpkgs\", \"type\": \"github\" } },\n    \"root\": { \"inputs\"",
        1,
    );
    assert!(problems_with(FLAKE, &leftover).contains("\"nixpkgs_2\" is not used"));
}

#[test]
fn github_urls() {
    let s = parse_github_url("github:NixOS/nixpkgs/nixos-25.11").unwrap();
    assert_eq!(
        (
            s.owner.as_str(),
            s.repo.as_str(),
            s.git_ref.as_deref(),
            s.rev.as_deref()
        ),
        ("NixOS", "nixpkgs", Some("nixos-25.11"), None)
    );
    let s = parse_github_url("github:ipetkov/crane?ref=v0.21.0").unwrap();
    assert_eq!(s.git_ref.as_deref(), Some("v0.21.0"));
    let s =
        parse_github_url("github:oxalica/rust-overlay/4852a8aa041c94af55e136cde5b8b6d42c3563e8")
            .unwrap();
    assert_eq!(
        s.rev.as_deref(),
        Some("4852a8aa041c94af55e136cde5b8b6d42c3563e8")
    );
    assert!(parse_github_url("git+https://example.org/x").is_err());
}
