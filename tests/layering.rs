//! The layering check: reads every file under `src/` and fails on an import that goes up the
//! stage order stated in `ARCHITECTURE.md`, or on a cycle among top-level modules. It keeps the
//! layout true after the refactor that introduced it; run with `--nocapture` to print the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules from the top of the stack down. A module may import only modules after it
/// in this list; modules on one rank (`gpu` and `files`) may not import each other.
const ORDER: &[&[&str]] = &[
    &["cli"],
    &["viewer"],
    &["engine"],
    &["cpu"],
    &["compose"],
    &["figure"],
    &["color"],
    &["pool"],
    &["source"],
    &["gpu", "files"],
    &["error"],
];

/// The binary's own modules (under `src/cli/`) reach the library as `attnviz::…`.
const CRATE_PATHS: &[&str] = &["crate::", "attnviz::"];

fn rank(module: &str) -> Option<usize> {
    ORDER.iter().position(|r| r.contains(&module))
}

/// The top-level module a file under `src/` belongs to (`src/pool/ingest.rs` -> `pool`).
fn owner(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every top-level module `text` names through a crate path, outside comments.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for prefix in CRATE_PATHS {
            let mut rest = code;
            while let Some(i) = rest.find(prefix) {
                rest = &rest[i + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && rest[name.len()..].starts_with("::") {
                    out.insert(name);
                }
            }
        }
    }
    out
}

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

/// Edges between top-level modules: importer -> imported, with the files that make each.
fn graph() -> BTreeMap<(String, String), Vec<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let from = owner(rel);
        if from == "lib" || from == "main" {
            continue; // the roots declare and re-export modules; they import nothing
        }
        for to in imports(&std::fs::read_to_string(&file).unwrap()) {
            if to != from {
                edges
                    .entry((from.clone(), to))
                    .or_default()
                    .push(rel.display().to_string());
            }
        }
    }
    edges
}

#[test]
fn imports_only_go_down_the_stage_order() {
    let edges = graph();
    let mut bad = Vec::new();
    for ((from, to), files) in &edges {
        println!("{from} -> {to}");
        match (rank(from), rank(to)) {
            (Some(a), Some(b)) if a < b => {}
            (Some(_), Some(_)) => bad.push(format!("{from} imports {to} ({})", files.join(", "))),
            _ => bad.push(format!(
                "{from} -> {to}: a top-level module missing from ORDER (and ARCHITECTURE.md)"
            )),
        }
    }
    assert!(
        bad.is_empty(),
        "imports against the stage order:\n{}",
        bad.join("\n")
    );
    assert!(
        edges.len() >= 20,
        "the graph has only {} edges: the check read nothing",
        edges.len()
    );
}

#[test]
fn no_cycle_among_top_level_modules() {
    let edges = graph();
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    // Depth-first search; a node met again while on the stack closes a cycle.
    fn visit<'a>(
        n: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(i) = stack.iter().position(|s| *s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n);
            return Some(cycle);
        }
        if !done.insert(n) {
            return None;
        }
        stack.push(n);
        for m in next.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, next, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let (mut stack, mut done) = (Vec::new(), BTreeSet::new());
    for n in next.keys() {
        if let Some(c) = visit(n, &next, &mut stack, &mut done) {
            panic!("import cycle: {}", c.join(" -> "));
        }
    }
}

#[test]
fn the_check_sees_an_upward_import() {
    // The detector itself, on a line that imports the engine from the pool stage.
    let found =
        imports("use crate::engine::Engine; // crate::viewer::ignored\nlet x = attnviz::pool::X;");
    assert_eq!(
        found,
        BTreeSet::from(["engine".to_string(), "pool".to_string()])
    );
    assert!(rank("pool") > rank("engine"));
}
