//! Reading files and splicing `include` / `readonly_include` in place:
//! relative paths are tried against the including file's folder, then the
//! working directory; a directory includes its regular, non-dot files in
//! lexical order; cycles and runaway depth are errors.

use std::path::{Path, PathBuf};

use super::diag::{Diag, Files, Pos};
use super::parser::parse;
use super::source::{Kind, MAX_FILE_SIZE, Source};
use super::tree::Item;

/// Deepest chain of includes.
pub const MAX_INCLUDE_DEPTH: usize = 16;

pub(crate) struct Loader<'s> {
    source: &'s dyn Source,
    pub(crate) files: Files,
    /// Canonical paths of the files being read, outermost first.
    stack: Vec<(PathBuf, PathBuf)>,
}

impl<'s> Loader<'s> {
    pub(crate) fn new(source: &'s dyn Source) -> Self {
        Loader {
            source,
            files: Files::default(),
            stack: Vec::new(),
        }
    }

    /// Reads the main file and everything it includes.
    pub(crate) fn load_main(&mut self, path: &Path) -> Result<Vec<Item>, Diag> {
        match self.source.kind(path) {
            Some(Kind::File) => {}
            Some(Kind::Dir) => {
                return Err(Diag::new(format!(
                    "cannot read `{}`: it is a directory",
                    path.display()
                )));
            }
            _ => {
                return Err(Diag::new(format!(
                    "cannot read `{}`: no such file",
                    path.display()
                )));
            }
        }
        self.load_file(path, 0, None)
    }

    fn load_file(&mut self, path: &Path, depth: usize, at: Option<Pos>) -> Result<Vec<Item>, Diag> {
        let text = self.source.read(path).map_err(|e| {
            let d = Diag::new(format!("cannot read `{}`: {e}", path.display()));
            match at {
                Some(p) => d.with_pos(p),
                None => d,
            }
        })?;
        if text.len() as u64 > MAX_FILE_SIZE {
            let d = Diag::new(format!(
                "cannot read `{}`: file is larger than 16 MiB",
                path.display()
            ));
            return Err(match at {
                Some(p) => d.with_pos(p),
                None => d,
            });
        }
        let id = self.files.add(path.to_path_buf(), String::new());
        // Parse against a copy so the table owns the text for rendering.
        let parsed = parse(&text, id, depth);
        self.files.set_text(id, text);
        let items = parsed?;
        let canon = self.source.canonical(path);
        self.stack.push((canon, path.to_path_buf()));
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let out = self.expand(items, &dir, depth);
        self.stack.pop();
        out
    }

    fn expand(&mut self, items: Vec<Item>, dir: &Path, depth: usize) -> Result<Vec<Item>, Diag> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Item::Include(inc) => {
                    for file in self.resolve(&inc.path.text, dir, inc.path.pos)? {
                        let canon = self.source.canonical(&file);
                        if let Some(i) = self.stack.iter().position(|(c, _)| *c == canon) {
                            let mut chain: Vec<String> = self.stack[i..]
                                .iter()
                                .map(|(_, p)| format!("`{}`", p.display()))
                                .collect();
                            chain.push(format!("`{}`", file.display()));
                            return Err(Diag::at(
                                format!("include cycle: {}", chain.join(" → ")),
                                inc.path.pos,
                            ));
                        }
                        if self.stack.len() >= MAX_INCLUDE_DEPTH {
                            return Err(Diag::at(
                                format!(
                                    "includes nested too deep: more than {MAX_INCLUDE_DEPTH} levels"
                                ),
                                inc.path.pos,
                            ));
                        }
                        out.extend(self.load_file(&file, depth, Some(inc.path.pos))?);
                    }
                }
                Item::Scope(mut s) => {
                    s.body = self.expand(std::mem::take(&mut s.body), dir, depth + 1)?;
                    out.push(Item::Scope(s));
                }
                other => out.push(other),
            }
        }
        Ok(out)
    }

    /// The files an include names, in reading order.
    fn resolve(&self, name: &str, dir: &Path, pos: Pos) -> Result<Vec<PathBuf>, Diag> {
        let wanted = Path::new(name);
        let mut candidates = Vec::new();
        if wanted.is_absolute() {
            candidates.push(wanted.to_path_buf());
        } else {
            candidates.push(dir.join(wanted));
            if !dir.as_os_str().is_empty() {
                candidates.push(wanted.to_path_buf());
            }
        }
        for c in &candidates {
            match self.source.kind(c) {
                Some(Kind::File) => return Ok(vec![c.clone()]),
                Some(Kind::Dir) => {
                    let mut files: Vec<PathBuf> = self
                        .source
                        .list_dir(c)
                        .map_err(|e| Diag::at(format!("cannot list `{}`: {e}", c.display()), pos))?
                        .into_iter()
                        .filter(|p| {
                            p.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| !n.starts_with('.'))
                                && self.source.kind(p) == Some(Kind::File)
                        })
                        .collect();
                    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
                    return Ok(files);
                }
                _ => {}
            }
        }
        let looked: Vec<String> = candidates
            .iter()
            .map(|c| format!("`{}`", c.display()))
            .collect();
        Err(Diag::at(
            format!(
                "include file `{name}` not found (looked for {})",
                looked.join(" and ")
            ),
            pos,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::MemSource;
    use crate::config::tree::{Value, clear_positions};

    fn load(src: &MemSource, main: &str) -> Result<(Vec<Item>, Vec<PathBuf>), String> {
        let mut l = Loader::new(src);
        match l.load_main(Path::new(main)) {
            Ok(mut items) => {
                clear_positions(&mut items);
                Ok((items, l.files.paths()))
            }
            Err(e) => Err(e.render(&l.files).to_string()),
        }
    }

    fn keys(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Option(o) => match &o.value {
                    Value::Scalar(s) => Some(format!("{}={}", o.key.name, s.text)),
                    _ => None,
                },
                Item::Scope(s) => Some(format!("{}{{{}}}", s.name.name, keys(&s.body).join(","))),
                Item::Include(_) => None,
            })
            .collect()
    }

    #[test]
    fn include_relative_to_including_file_then_cwd() {
        let src = MemSource::new()
            .with(
                "etc/main.conf",
                "a = 1 include \"sub.conf\" s { include other.conf } z = 9",
            )
            .with("etc/sub.conf", "b = 2")
            .with("other.conf", "c = 3");
        let (items, files) = load(&src, "etc/main.conf").unwrap();
        assert_eq!(keys(&items), ["a=1", "b=2", "s{c=3}", "z=9"]);
        assert_eq!(
            files,
            [
                PathBuf::from("etc/main.conf"),
                PathBuf::from("etc/sub.conf"),
                PathBuf::from("other.conf")
            ]
        );
    }

    #[test]
    fn directory_include_order_skips_dot_files_and_subdirs() {
        let src = MemSource::new()
            .with("m.conf", "include d")
            .with("d/b.conf", "b = 1")
            .with("d/a.conf", "a = 1")
            .with("d/.hidden", "h = 1")
            .with("d/sub/c.conf", "c = 1")
            .with("d/C.conf", "cc = 1");
        let (items, _) = load(&src, "m.conf").unwrap();
        assert_eq!(keys(&items), ["cc=1", "a=1", "b=1"]);
    }

    #[test]
    fn cycles_and_missing_files() {
        let src = MemSource::new()
            .with("a.conf", "include b.conf")
            .with("b.conf", "x = 1\ninclude \"a.conf\"");
        let e = load(&src, "a.conf").unwrap_err();
        assert!(
            e.contains("include cycle: `a.conf` → `b.conf` → `a.conf`"),
            "{e}"
        );
        assert!(e.contains("b.conf:2:9"), "{e}");
        let src = MemSource::new().with("a.conf", "x = 1\n  include nope.conf");
        let e = load(&src, "a.conf").unwrap_err();
        assert!(e.contains("include file `nope.conf` not found"), "{e}");
        assert!(e.contains("a.conf:2:11"), "{e}");
        let e = load(&src, "missing.conf").unwrap_err();
        assert!(e.contains("cannot read `missing.conf`"), "{e}");
    }

    #[test]
    fn same_file_twice_is_not_a_cycle_but_depth_is_bounded() {
        let src = MemSource::new()
            .with("a.conf", "include b.conf include b.conf")
            .with("b.conf", "x = 1");
        let (items, files) = load(&src, "a.conf").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(files.len(), 2);
        let mut src = MemSource::new();
        for i in 0..20 {
            src.insert(format!("f{i}.conf"), format!("include f{}.conf", i + 1));
        }
        src.insert("f20.conf", "");
        let e = load(&src, "f0.conf").unwrap_err();
        assert!(e.contains("includes nested too deep"), "{e}");
    }

    #[test]
    fn nesting_counts_across_includes() {
        let src = MemSource::new()
            .with(
                "a.conf",
                "a { ".repeat(40) + "include b.conf" + &"}".repeat(40),
            )
            .with("b.conf", "b { ".repeat(40) + &"}".repeat(40));
        let e = load(&src, "a.conf").unwrap_err();
        assert!(e.contains("nesting too deep"), "{e}");
    }
}
