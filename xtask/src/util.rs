//! Helpers shared by tasks: project paths, running commands with readable errors.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Task result; the error is a message for a human, naming what failed.
pub type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root (the parent of `xtask/`).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(1)
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => project_root().join(d),
        _ => project_root().join("target"),
    }
}

/// A `cargo` command (the one that runs us, via `$CARGO`) in the project root.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(project_root());
    cmd
}

/// Any command, run in the project root.
pub fn cmd(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(project_root());
    cmd
}

/// `cmd` as a shell-ish line, with the env vars we set, for logs and errors.
pub fn display(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            parts.push(format!("{}={}", k.to_string_lossy(), quote(v)));
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Run `cmd` with inherited stdio; a spawn failure or non-zero exit is an error naming it.
pub fn run(cmd: &mut Command) -> Result {
    let line = display(cmd);
    eprintln!("$ {line}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `{line}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("command failed ({status}): `{line}`"))
    }
}

/// Run `cmd` and return its stdout (stderr inherited); errors as in [`run`].
pub fn output(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not start `{line}`: {e}"))?;
    if !out.status.success() {
        return Err(format!("command failed ({}): `{line}`", out.status));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("`{line}` printed non-UTF-8 output"))
}

/// Whether `cmd` starts and exits 0, with all output discarded.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `[package] version` of the root Cargo.toml, found by reading lines (no toml parser).
pub fn package_version() -> Result<String> {
    let path = project_root().join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_package_version(&text).ok_or_else(|| {
        format!(
            "no `version = \"...\"` line in the [package] section of {}",
            path.display()
        )
    })
}

fn parse_package_version(toml: &str) -> Option<String> {
    let mut in_package = false;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        let Some(rest) = line.strip_prefix("version") else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim();
        let value = value.strip_prefix('"')?;
        let end = value.find('"')?;
        let version = &value[..end];
        return (!version.is_empty()).then(|| version.to_string());
    }
    None
}

/// Human size: `123456 bytes (120.6 KiB)`.
pub fn size(bytes: u64) -> String {
    format!("{bytes} bytes ({:.1} KiB)", bytes as f64 / 1024.0)
}

/// `apt-get install -y PACKAGE` (non-interactive, as root), after `apt-get update` if the
/// first try fails.
pub fn apt_install(package: &str) -> Result {
    if !is_root() || on_path("apt-get").is_none() {
        return Err(format!(
            "the Debian package `{package}` is needed, and apt-get is not usable here (not root): install it"
        ));
    }
    let install = || {
        run(cmd("apt-get")
            .args(["install", "-y", package])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    install().or_else(|e| {
        eprintln!("{e}; retrying after apt-get update");
        run(cmd("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .and_then(|()| install())
    })
}

/// `program` on PATH; else [`apt_install`] `package`. None when it cannot be had (the
/// reason is printed).
pub fn find_or_apt_install(program: &str, package: &str) -> Option<PathBuf> {
    if let Some(p) = on_path(program) {
        return Some(p);
    }
    if let Err(e) = apt_install(package) {
        eprintln!("{program} is not on PATH: {e}");
        return None;
    }
    on_path(program)
}

/// The first executable `name` on PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether this process runs as root (apt-get works).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().nth(1))
            == Some("0")
    })
}

/// `s` as a JSON string literal (the reports are written without a JSON crate).
pub fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_package_section_only() {
        let toml = "[workspace]\nversion = \"9.9.9\"\n\n[package]\nname = \"x\"\nversion = \"0.1.0\" # c\n\n[dependencies]\nversion = \"1\"\n";
        assert_eq!(parse_package_version(toml).as_deref(), Some("0.1.0"));
        assert_eq!(
            parse_package_version("[package]\nversion.workspace = true\n"),
            None
        );
        assert_eq!(
            parse_package_version("[dependencies]\nversion = \"1\"\n"),
            None
        );
        assert_eq!(
            parse_package_version("[package]\nversions = 3\nversion=\"2.0\"\n").as_deref(),
            Some("2.0")
        );
    }

    #[test]
    fn root_manifest_has_a_version() {
        assert!(package_version().is_ok());
    }

    #[test]
    fn display_quotes() {
        let mut c = Command::new("cargo");
        c.args(["build", "a b"]).env("RUSTFLAGS", "-C x");
        assert_eq!(display(&c), "RUSTFLAGS='-C x' cargo build 'a b'");
    }
}
