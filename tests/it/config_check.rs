//! Every broken config in `tests/configs/` is refused with the right
//! position and message. The table lives in `tests/configs/expected.txt`
//! (`name.conf<TAB>line<TAB>column<TAB>message substring`) so the CLI tests
//! can reuse it; files of `tests/configs/` not in the table fail the test.

use std::path::{Path, PathBuf};

use ecclusterd::config::{ConfigPath, Identity, load};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs")
}

/// The identity every case is loaded with.
fn identity() -> Identity {
    Identity {
        cli_node: Some("node1".into()),
        env_node: None,
        hostname: None,
    }
}

struct Case {
    name: String,
    line: usize,
    col: usize,
    substring: String,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(dir().join("expected.txt")).expect("expected.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, '\t').collect();
            assert_eq!(f.len(), 4, "bad line in expected.txt: {l:?}");
            Case {
                name: f[0].to_owned(),
                line: f[1].parse().expect("line"),
                col: f[2].parse().expect("column"),
                substring: f[3].to_owned(),
            }
        })
        .collect()
}

#[test]
fn every_broken_config_is_refused_at_the_right_place() {
    let cases = cases();
    assert!(cases.len() >= 28, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let path = dir().join(&c.name);
        let actual = match load(
            &ConfigPath::File(path.clone()),
            &identity(),
            &ecclusterd::net::tls::check,
        ) {
            Ok(_) => {
                failures.push(format!("{}: accepted", c.name));
                continue;
            }
            Err(e) => e,
        };
        let pos = actual.position();
        let ok = pos.is_some_and(|(file, line, col)| {
            Path::new(file).file_name() == path.file_name() && line == c.line && col == c.col
        }) && actual.message().contains(&c.substring);
        if !ok {
            let (l, col) = pos.map_or((0, 0), |(_, l, c)| (l, c));
            failures.push(format!(
                "{}: expected {}:{} `{}`\n   actual: {}\t{l}\t{col}\t{}\n{actual}",
                c.name,
                c.line,
                c.col,
                c.substring,
                c.name,
                actual.message()
            ));
        }
        // The rendered diagnostic always shows the line and a caret.
        let shown = actual.to_string();
        assert!(shown.starts_with("error: "), "{shown}");
        assert!(shown.contains(" --> ") && shown.contains('^'), "{shown}");
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_config_file_has_a_case() {
    let names: Vec<String> = cases().into_iter().map(|c| c.name).collect();
    for entry in std::fs::read_dir(dir()).expect("tests/configs") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "conf") {
            let n = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            assert!(names.contains(&n), "{n} has no line in expected.txt");
        }
    }
}

#[test]
fn shipped_config_loads() {
    let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/ecelerity-cluster.conf");
    let s = load(
        &ConfigPath::File(main),
        &Identity::default(),
        &ecclusterd::net::tls::check,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.node, "node1");
    assert_eq!(s.files.len(), 2);
}
