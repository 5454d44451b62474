//! Where configuration text comes from: the file system, or memory (the
//! embedded default config, tests and fuzzing). The reader only talks to a
//! [`Source`], so every code path can run without touching disk.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Largest file the reader accepts (16 MiB): a config is small; anything
/// bigger is a mistake (an include of a log directory, say).
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// Something else (socket, device): never read.
    Other,
}

/// A file system, real or in memory.
pub trait Source {
    /// `None` when nothing is there.
    fn kind(&self, path: &Path) -> Option<Kind>;
    /// The whole text. Errors with `InvalidData` for non-UTF-8 text or a file
    /// larger than [`MAX_FILE_SIZE`].
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Every entry of a directory (full paths, any order).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// A stable identity for cycle detection (the real path on disk).
    fn canonical(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

/// The real file system; relative paths are relative to the working directory.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsSource;

impl Source for FsSource {
    fn kind(&self, path: &Path) -> Option<Kind> {
        let md = std::fs::metadata(path).ok()?;
        Some(if md.is_file() {
            Kind::File
        } else if md.is_dir() {
            Kind::Dir
        } else {
            Kind::Other
        })
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        use std::io::Read;
        let file = std::fs::File::open(path)?;
        let mut bytes = Vec::new();
        // Read one byte past the limit so an oversized file is detected even
        // when its metadata lies (pipes, /proc).
        file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_FILE_SIZE {
            return Err(too_big());
        }
        String::from_utf8(bytes).map_err(|_| not_utf8())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }

    fn canonical(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }
}

pub(crate) fn too_big() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("file is larger than {} MiB", MAX_FILE_SIZE / (1024 * 1024)),
    )
}

fn not_utf8() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "file is not valid UTF-8")
}

/// Files held in memory. Directories exist implicitly as the parents of
/// files, so `include "dir"` works as on disk.
#[derive(Debug, Default, Clone)]
pub struct MemSource {
    files: BTreeMap<PathBuf, String>,
}

impl MemSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file.
    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.insert(path, text);
        self
    }

    pub fn insert(&mut self, path: impl Into<PathBuf>, text: impl Into<String>) {
        self.files.insert(path.into(), text.into());
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.files
            .keys()
            .any(|f| f.ancestors().skip(1).any(|a| a == path))
    }
}

impl Source for MemSource {
    fn kind(&self, path: &Path) -> Option<Kind> {
        if self.files.contains_key(path) {
            Some(Kind::File)
        } else if self.is_dir(path) {
            Some(Kind::Dir)
        } else {
            None
        }
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        match self.files.get(path) {
            Some(t) if t.len() as u64 > MAX_FILE_SIZE => Err(too_big()),
            Some(t) => Ok(t.clone()),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "No such file or directory",
            )),
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        if !self.is_dir(path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        let mut out: Vec<PathBuf> = Vec::new();
        for f in self.files.keys() {
            if let Ok(rest) = f.strip_prefix(path)
                && let Some(first) = rest.components().next()
            {
                let child = path.join(first);
                if !out.contains(&child) {
                    out.push(child);
                }
            }
        }
        Ok(out)
    }
}
