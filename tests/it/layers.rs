//! The layering of ARCHITECTURE.md, checked: a top-level module of `src/`
//! may import only modules on floors below it. Test-only code (`tests.rs`
//! files and `#[cfg(test)]` modules) is exempt. The floors are read from
//! ARCHITECTURE.md's "Floors" list, so the document and the check cannot
//! drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floors, lowest first, from the numbered list under `## Floors`:
/// each item starts with its modules in backticks, comma-separated.
fn floors(architecture: &str) -> Vec<Vec<String>> {
    let section = architecture
        .split("\n## ")
        .find(|s| s.starts_with("Floors"))
        .expect("ARCHITECTURE.md has a `## Floors` section");
    let mut out = Vec::new();
    for line in section.lines() {
        let Some((num, rest)) = line.split_once(". ") else {
            continue;
        };
        if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let head = rest.split(':').next().unwrap_or("");
        let mods: Vec<String> = head
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, m)| m.to_string())
            .collect();
        assert!(!mods.is_empty(), "floor without modules: {line}");
        out.push(mods);
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file's text without test-only code: a `#[cfg(test)]` item runs to
/// the end of the file here (the project keeps test modules last).
fn non_test(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Top-level modules named after `crate::` in `text` (outside `//`
/// comments: a doc link up is no dependency): `crate::a::..`, and each
/// top-level path of `crate::{a::.., b}`.
fn imports(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 1 => {
                        start = false;
                        out.insert(ident(&group[j..]));
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

/// Module → (imported module → a file that imports it).
fn graph(src: &Path) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        if matches!(top.as_str(), "lib" | "main") || f.file_name().is_some_and(|n| n == "tests.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read source");
        let edges = g.entry(top.clone()).or_default();
        for m in imports(non_test(&text)) {
            if m != top {
                edges.entry(m).or_insert_with(|| rel.to_path_buf());
            }
        }
    }
    g
}

/// Edges that go to the same floor or up, as messages.
fn violations(
    floors: &[Vec<String>],
    g: &BTreeMap<String, BTreeMap<String, PathBuf>>,
) -> Vec<String> {
    let floor_of: BTreeMap<&str, usize> = floors
        .iter()
        .enumerate()
        .flat_map(|(i, ms)| ms.iter().map(move |m| (m.as_str(), i)))
        .collect();
    let mut bad = Vec::new();
    for (m, edges) in g {
        let Some(&mine) = floor_of.get(m.as_str()) else {
            bad.push(format!("src/{m}: a module on no floor of ARCHITECTURE.md"));
            continue;
        };
        for (to, file) in edges {
            match floor_of.get(to.as_str()) {
                Some(&theirs) if theirs < mine => {}
                Some(&theirs) => bad.push(format!(
                    "src/{}: `{m}` (floor {}) imports `{to}` (floor {})",
                    file.display(),
                    mine + 1,
                    theirs + 1
                )),
                None => bad.push(format!(
                    "src/{}: `{m}` imports `{to}`, on no floor",
                    file.display()
                )),
            }
        }
    }
    bad
}

#[test]
fn every_module_imports_only_floors_below_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let arch = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let fl = floors(&arch);
    let bad = violations(&fl, &graph(&root.join("src")));
    assert!(
        bad.is_empty(),
        "imports against the floors of ARCHITECTURE.md:\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn a_wrong_import_is_caught() {
    let fl = vec![vec!["low".to_string()], vec!["high".to_string()]];
    let mut g = BTreeMap::new();
    g.insert(
        "low".to_string(),
        BTreeMap::from([("high".to_string(), PathBuf::from("low/mod.rs"))]),
    );
    g.insert("high".to_string(), BTreeMap::new());
    assert_eq!(
        violations(&fl, &g),
        ["src/low/mod.rs: `low` (floor 1) imports `high` (floor 2)"]
    );
}

#[test]
fn imports_are_read_from_paths_and_groups() {
    let text = "use crate::a::B;\nuse crate::{b::{C, D}, c};\nlet x = crate::d::f();\n\
                /// see `crate::f`\n#[cfg(test)]\nmod tests { use crate::e; }";
    let got: Vec<String> = imports(non_test(text)).into_iter().collect();
    assert_eq!(got, ["a", "b", "c", "d"]);
}

/// `cargo test --test it layers::graph -- --ignored --nocapture` prints who
/// imports whom (with one file for each edge).
#[test]
#[ignore = "prints the import graph"]
fn graph_of_imports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (m, edges) in graph(&root.join("src")) {
        for (to, file) in edges {
            println!("{m} -> {to}  ({})", file.display());
        }
    }
}
