//! Positions and diagnostics: every error the reader produces names
//! file:line:column and is rendered like rustc's, source line and caret.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a config file: file index into [`Files`], 1-based line and
/// column (columns count characters), and the length of the marked text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Pos {
    pub file: u32,
    pub line: u32,
    pub col: u32,
    pub len: u32,
}

impl Pos {
    /// Packs into one integer so it can travel through serde (see `de::Spanned`).
    pub(crate) fn pack(self) -> u128 {
        (u128::from(self.file) << 96)
            | (u128::from(self.line) << 64)
            | (u128::from(self.col) << 32)
            | u128::from(self.len)
    }

    pub(crate) fn unpack(v: u128) -> Pos {
        // Truncation is the point: each field is 32 bits wide.
        Pos {
            file: (v >> 96) as u32,
            line: (v >> 64) as u32,
            col: (v >> 32) as u32,
            len: v as u32,
        }
    }
}

/// Every file read, indexed by `Pos::file`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Files {
    files: Vec<(PathBuf, String)>,
}

impl Files {
    pub(crate) fn add(&mut self, path: PathBuf, text: String) -> u32 {
        self.files.push((path, text));
        u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX)
    }

    pub(crate) fn set_text(&mut self, file: u32, text: String) {
        if let Some(f) = self.files.get_mut(file as usize) {
            f.1 = text;
        }
    }

    pub(crate) fn path(&self, file: u32) -> Option<&Path> {
        self.files.get(file as usize).map(|(p, _)| p.as_path())
    }

    pub(crate) fn text(&self, file: u32) -> Option<&str> {
        self.files.get(file as usize).map(|(_, t)| t.as_str())
    }

    /// Paths in the order read, each once.
    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for (p, _) in &self.files {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }

    /// "file:line:column".
    pub(crate) fn origin(&self, pos: Pos) -> String {
        let file = self
            .path(pos.file)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        format!("{file}:{}:{}", pos.line, pos.col)
    }
}

/// An error inside the reader, before it is rendered against [`Files`].
#[derive(Debug, Clone, PartialEq)]
pub struct Diag {
    pub(crate) pos: Option<Pos>,
    /// The option the message is about, filled by the enclosing scope for
    /// "expects ..." messages so they read "`port` expects ...".
    pub(crate) subject: Option<String>,
    pub(crate) wants_subject: bool,
    pub(crate) msg: String,
    pub(crate) help: Vec<String>,
}

impl Diag {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Diag {
            pos: None,
            subject: None,
            wants_subject: false,
            msg: msg.into(),
            help: Vec::new(),
        }
    }

    pub(crate) fn at(msg: impl Into<String>, pos: Pos) -> Self {
        Diag::new(msg).with_pos(pos)
    }

    /// A type error: "expects X, found Y", completed with the option name.
    pub(crate) fn expects(msg: impl Into<String>) -> Self {
        let mut d = Diag::new(msg);
        d.wants_subject = true;
        d
    }

    pub(crate) fn with_pos(mut self, pos: Pos) -> Self {
        self.pos = Some(pos);
        self
    }

    /// Sets the position unless an inner node already did.
    pub(crate) fn or_pos(mut self, pos: Pos) -> Self {
        if self.pos.is_none() {
            self.pos = Some(pos);
        }
        self
    }

    pub(crate) fn or_subject(mut self, subject: &str) -> Self {
        if self.wants_subject && self.subject.is_none() {
            self.subject = Some(subject.to_owned());
        }
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }

    pub(crate) fn message(&self) -> String {
        match &self.subject {
            Some(s) => format!("`{s}` {}", self.msg),
            None => self.msg.clone(),
        }
    }

    pub(crate) fn render(self, files: &Files) -> ConfigError {
        let message = self.message();
        let located = self.pos.map(|pos| {
            let file = files
                .path(pos.file)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let text = files
                .text(pos.file)
                .and_then(|t| t.split('\n').nth((pos.line as usize).saturating_sub(1)))
                .map(|l| l.trim_end_matches('\r').replace('\t', " "));
            Located {
                file,
                line: pos.line as usize,
                col: pos.col as usize,
                len: pos.len as usize,
                text,
            }
        });
        ConfigError {
            message,
            located,
            help: self.help,
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Diag {}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Located {
    file: String,
    line: usize,
    col: usize,
    len: usize,
    text: Option<String>,
}

/// Why a configuration was refused. `Display` renders the full diagnostic:
///
/// ```text
/// error: unknown option `kepalive_interval` in `msgc_server`
///  --> conf/msgc_server.conf:7:4
///   |
/// 7 |    kepalive_interval = 5
///   |    ^^^^^^^^^^^^^^^^^
///   = help: did you mean `keepalive_interval`?
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
    located: Option<Located>,
    help: Vec<String>,
}

impl ConfigError {
    /// The one-line message, without position or help.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `(file, line, column)`, 1-based, when the error has a place.
    pub fn position(&self) -> Option<(&str, usize, usize)> {
        self.located
            .as_ref()
            .map(|l| (l.file.as_str(), l.line, l.col))
    }

    /// The `= help:` lines.
    pub fn help(&self) -> &[String] {
        &self.help
    }

    /// An error about no place in particular (a file that cannot be read).
    pub(crate) fn plain(message: String) -> Self {
        ConfigError {
            message,
            located: None,
            help: Vec::new(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        if let Some(l) = &self.located {
            let num = l.line.to_string();
            let pad = " ".repeat(num.len());
            writeln!(f, "{pad}--> {}:{}:{}", l.file, l.line, l.col)?;
            if let Some(text) = &l.text {
                // Long lines (minified or binary junk) are cut for display.
                let shown: String = text.chars().take(200).collect();
                let width = shown.chars().count();
                let start = l.col.saturating_sub(1).min(width);
                let carets = l.len.clamp(1, (width - start).max(1));
                writeln!(f, "{pad} |")?;
                writeln!(f, "{num} | {shown}")?;
                writeln!(f, "{pad} | {}{}", " ".repeat(start), "^".repeat(carets))?;
            }
            for h in &self.help {
                writeln!(f, "{pad} = help: {h}")?;
            }
        } else {
            for h in &self.help {
                writeln!(f, "  = help: {h}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
