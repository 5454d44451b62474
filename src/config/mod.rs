//! Momentum's configuration syntax, read by hand, into [`Settings`].
//!
//! Pipeline: `lexer` → `parser` (tree with positions) → `include` (files
//! spliced in, via a [`Source`]) → `de` (serde `Deserializer` over the tree)
//! → `schema` (typed scopes) → `resolve` (defaults, addresses, node
//! identity, cross-checks) → [`Settings`].
//!
//! Semantics worth knowing (Momentum's where it documents them):
//! * names of options and scopes are case-insensitive; values, instance
//!   names and dictionary keys keep their case;
//! * an option given twice in one scope: the last one wins;
//! * an anonymous scope given twice (`msgc_server {}` twice) is one scope,
//!   later options winning; named scopes (`Listen "x" {}`) are kept apart;
//! * options are `key = value`: the `=` is optional only at Momentum's
//!   console, not in files;
//! * a missing `ECCluster_Listener` means `Listen "*:4802"`, a missing
//!   `msgcserver_listener` means `Listen ":4809"` (Momentum's ports); a
//!   listener scope without `Listen` scopes listens nowhere;
//! * `msgc_client { server }` defaults to `127.0.0.1:<msgc_server port>`;
//!   entries without a port get that port too.

mod de;
mod describe;
mod diag;
mod include;
mod lexer;
mod listen_addr;
mod parser;
mod print;
mod resolve;
mod schema;
mod settings;
mod source;
mod tree;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use diag::ConfigError;
pub use settings::*;
pub use source::{FsSource, Kind, MAX_FILE_SIZE, MemSource, Source};

/// The default configuration compiled into the binary.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "ecelerity-cluster.conf",
        include_str!("../../conf/ecelerity-cluster.conf"),
    ),
    (
        "msgc_server.conf",
        include_str!("../../conf/msgc_server.conf"),
    ),
];

/// The folder the embedded files appear to live in (shown in messages).
const EMBEDDED_DIR: &str = "<embedded>";

/// Which configuration to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigPath {
    File(PathBuf),
    /// The default compiled into the binary ([`embedded_files`]).
    Embedded,
}

/// Where the configuration is: `-c PATH` if given, else `$ECCLUSTERD_CONF`,
/// else `./conf/ecelerity-cluster.conf`, else
/// `/etc/ecclusterd/ecelerity-cluster.conf`, else the embedded default.
pub fn locate(explicit: Option<&Path>, env_conf: Option<OsString>) -> ConfigPath {
    if let Some(p) = explicit {
        return ConfigPath::File(p.to_path_buf());
    }
    if let Some(p) = env_conf.filter(|p| !p.is_empty()) {
        return ConfigPath::File(PathBuf::from(p));
    }
    for p in [
        "conf/ecelerity-cluster.conf",
        "/etc/ecclusterd/ecelerity-cluster.conf",
    ] {
        if Path::new(p).is_file() {
            return ConfigPath::File(PathBuf::from(p));
        }
    }
    ConfigPath::Embedded
}

/// What names this node, besides `cluster { nodename }` in the file.
/// Precedence: `cli_node`, nodename, `env_node`, `hostname` up to the first dot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `--node`.
    pub cli_node: Option<String>,
    /// `EC_NODE_NAME`.
    pub env_node: Option<String>,
    /// The host name (full; the resolver cuts at the first dot).
    pub hostname: Option<String>,
}

impl Identity {
    /// Reads `EC_NODE_NAME` and the host name (`/proc/sys/kernel/hostname`,
    /// `/etc/hostname`, else `$HOSTNAME`).
    pub fn from_env(cli_node: Option<String>) -> Self {
        let non_empty = |s: String| {
            let t = s.trim().to_owned();
            (!t.is_empty()).then_some(t)
        };
        let hostname = ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok().and_then(non_empty))
            .or_else(|| std::env::var("HOSTNAME").ok().and_then(non_empty));
        Identity {
            cli_node,
            env_node: std::env::var("EC_NODE_NAME").ok().and_then(non_empty),
            hostname,
        }
    }
}

/// Reads, checks and resolves a configuration; `check_tls` parses the TLS
/// files it names (`net::tls::check`). The first error found (in file
/// order) is returned, rendered against its source line.
pub fn load(
    path: &ConfigPath,
    id: &Identity,
    check_tls: TlsCheck,
) -> Result<Settings, ConfigError> {
    match path {
        ConfigPath::File(p) => load_from(&FsSource, p, id, check_tls),
        ConfigPath::Embedded => {
            let mut src = MemSource::new();
            for (name, text) in EMBEDDED {
                src.insert(Path::new(EMBEDDED_DIR).join(name), *text);
            }
            let main = Path::new(EMBEDDED_DIR).join(EMBEDDED[0].0);
            load_from(&src, &main, id, check_tls)
        }
    }
}

/// [`load`] over any [`Source`] (tests, fuzzing, in-memory configs).
pub fn load_from(
    source: &dyn Source,
    main: &Path,
    id: &Identity,
    check_tls: TlsCheck,
) -> Result<Settings, ConfigError> {
    let mut loader = include::Loader::new(source);
    let items = match loader.load_main(main) {
        Ok(items) => items,
        Err(e) => {
            return Err(match e.pos {
                Some(_) => e.render(&loader.files),
                None => ConfigError::plain(e.message()),
            });
        }
    };
    let files = loader.files;
    de::from_items::<schema::Config>(&items)
        .and_then(|cfg| resolve::resolve(cfg, id, &files, check_tls))
        .map_err(|e| e.render(&files))
}

/// Parses one file's text (includes are not followed) and prints it back
/// normalised: one statement per line, two-space indent, values quoted
/// only where needed. Printing the result again gives the same text.
pub fn reformat(text: &str) -> Result<String, ConfigError> {
    let mut files = diag::Files::default();
    let id = files.add(PathBuf::from("<input>"), text.to_owned());
    parser::parse(text, id, 0)
        .map(|items| print::print(&items))
        .map_err(|e| e.render(&files))
}

/// A [`TlsCheck`] that accepts any file contents (tools and tests that
/// never serve TLS).
pub fn any_tls(_: &TlsSettings) -> Result<(), (TlsPart, String)> {
    Ok(())
}

/// The embedded default configuration: `(file name, text)`, main file first.
pub fn embedded_files() -> &'static [(&'static str, &'static str)] {
    EMBEDDED
}

#[cfg(test)]
mod tests;
