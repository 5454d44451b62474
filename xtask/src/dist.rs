//! `cargo xtask dist`: the static musl release archive in `target/dist/`.
//!
//! Steps: ensure the musl target, `cargo build --profile dist` with `+crt-static`, check the
//! ELF is static ([`crate::elf`]), smoke-run `--version`, then write a reproducible
//! `ecclusterd-<ver>-<target>.tar.gz` (sorted entries, fixed mtime/uid/gid/modes) and its
//! `.sha256` in `sha256sum` format.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::util::{self, Result};

pub const TARGET: &str = "x86_64-unknown-linux-musl";
const BIN: &str = "ecclusterd";
const PROFILE: &str = "dist";

pub fn run(args: &[String]) -> Result {
    // `--no-tls`: the binary without the `tls` feature, to measure what TLS costs.
    let tls = match args {
        [] => true,
        [a] if a == "--no-tls" => false,
        [a, ..] => return Err(format!("`dist` takes only `--no-tls`, got `{a}`")),
    };
    let root = util::project_root();
    let version = util::package_version()?;

    // Fail before the slow build if a file that must ship is missing.
    let entries = entries(
        &root,
        &util::target_dir().join(TARGET).join(PROFILE).join(BIN),
    )?;

    let bin = static_binary(tls)?;
    let size = fs::metadata(&bin).map_or(0, |m| m.len());

    let out = util::output(util::cmd(&bin).arg("--version"))?;
    let out = out.trim();
    if !out.contains(&version) {
        return Err(format!(
            "`{} --version` printed {out:?}, expected it to contain {version}",
            bin.display()
        ));
    }
    println!("smoke run: {out}");

    let name = format!(
        "{BIN}-{version}-{TARGET}{}",
        if tls { "" } else { "-no-tls" }
    );
    let dist = root.join("target").join("dist");
    clean(&dist)?;

    let archive_name = format!("{name}.tar.gz");
    let archive = build_archive(&name, entries)?;
    let archive_path = dist.join(&archive_name);
    fs::write(&archive_path, &archive)
        .map_err(|e| format!("cannot write {}: {e}", archive_path.display()))?;

    let hex: String = Sha256::digest(&archive)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let sum_path = dist.join(format!("{archive_name}.sha256"));
    fs::write(&sum_path, format!("{hex}  {archive_name}\n"))
        .map_err(|e| format!("cannot write {}: {e}", sum_path.display()))?;

    println!("binary:  {}", util::size(size));
    println!(
        "archive: {} -> {}",
        util::size(archive.len() as u64),
        archive_path.display()
    );
    println!("sha256:  {hex}  ({})", sum_path.display());
    Ok(())
}

/// Remove earlier archives from `dist`, and only those: `target/dist/` is also where cargo
/// keeps the host-side artifacts (build scripts, proc macros) of `--profile dist`, and wiping
/// it would force a full rebuild every time.
fn clean(dist: &Path) -> Result {
    fs::create_dir_all(dist).map_err(|e| format!("cannot create {}: {e}", dist.display()))?;
    let read = fs::read_dir(dist).map_err(|e| format!("cannot list {}: {e}", dist.display()))?;
    for item in read {
        let path = item
            .map_err(|e| format!("cannot list {}: {e}", dist.display()))?
            .path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let ours = name.starts_with(&format!("{BIN}-"))
            && (name.ends_with(".tar.gz") || name.ends_with(".tar.gz.sha256"));
        if ours && path.is_file() {
            fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// `rustup target add` the musl target unless `rustup target list --installed` has it.
fn ensure_target() -> Result {
    let installed = util::output(util::cmd("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim() == TARGET) {
        return Ok(());
    }
    util::run(util::cmd("rustup").args(["target", "add", TARGET]))
}

/// ring (rustls' crypto) and mimalloc compile C for the target: musl-gcc (Debian
/// `musl-tools`) is installed when missing.
fn ensure_musl_gcc() -> Result {
    if util::on_path("musl-gcc").is_some() {
        return Ok(());
    }
    eprintln!("musl-gcc is missing (ring needs it for {TARGET}): installing musl-tools");
    util::apt_install("musl-tools")?;
    match util::on_path("musl-gcc") {
        Some(_) => Ok(()),
        None => Err("musl-tools installed, but musl-gcc is still not on PATH".to_owned()),
    }
}

/// Build the binary at `bin` (its path under the target dir).
/// Builds the shipped binary (static musl, profile `dist`) and checks that it is static;
/// returns its path. `cargo xtask bench` measures this one.
pub fn static_binary(tls: bool) -> Result<PathBuf> {
    let bin = util::target_dir().join(TARGET).join(PROFILE).join(BIN);
    ensure_target()?;
    ensure_musl_gcc()?;
    build(&bin, tls)?;
    let data = fs::read(&bin).map_err(|e| format!("cannot read {}: {e}", bin.display()))?;
    let linkage = crate::elf::check_static(&data)
        .map_err(|e| format!("{} is not static: {e}", bin.display()))?;
    println!(
        "{}: {linkage} ELF, no PT_INTERP, no DT_NEEDED",
        bin.display()
    );
    Ok(bin)
}

fn build(bin: &Path, tls: bool) -> Result {
    let mut cmd = util::cargo();
    cmd.args([
        "build",
        "--profile",
        PROFILE,
        "--target",
        TARGET,
        "--bin",
        BIN,
    ]);
    // C for the musl target either way: ring (TLS) and mimalloc (the allocator).
    cmd.env("CC_x86_64_unknown_linux_musl", "musl-gcc");
    if !tls {
        cmd.arg("--no-default-features");
    }
    // Append to the caller's flags. CARGO_ENCODED_RUSTFLAGS wins over RUSTFLAGS in cargo, so
    // extend whichever is in effect.
    const STATIC: &str = "-C target-feature=+crt-static";
    match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(enc) if !enc.is_empty() => {
            cmd.env(
                "CARGO_ENCODED_RUSTFLAGS",
                format!("{enc}\x1f-C\x1ftarget-feature=+crt-static"),
            );
        }
        _ => {
            let flags = match std::env::var("RUSTFLAGS") {
                Ok(f) if !f.trim().is_empty() => format!("{} {STATIC}", f.trim()),
                _ => STATIC.to_string(),
            };
            cmd.env("RUSTFLAGS", flags);
        }
    }
    util::run(&mut cmd)?;
    if !bin.is_file() {
        return Err(format!("build succeeded but {} is missing", bin.display()));
    }
    Ok(())
}

/// A file to put in the archive: path inside the top directory, source, mode.
struct Entry {
    rel: String,
    src: PathBuf,
    mode: u32,
}

/// The files of the archive, sorted by path: binary, conf/**, deploy/** (systemd unit,
/// sysusers entry, container recipe), README.md, LICENSE, ARCHITECTURE.md if present.
fn entries(root: &Path, bin: &Path) -> Result<Vec<Entry>> {
    let mut entries = vec![Entry {
        rel: BIN.into(),
        src: bin.into(),
        mode: 0o755,
    }];
    for doc in ["README.md", "LICENSE", "ARCHITECTURE.md"] {
        let src = root.join(doc);
        if src.is_file() {
            entries.push(Entry {
                rel: doc.into(),
                src,
                mode: 0o644,
            });
        } else if doc != "ARCHITECTURE.md" {
            return Err(format!(
                "{} is missing; it must ship in the archive",
                src.display()
            ));
        }
    }
    for dir in ["conf", "deploy"] {
        let src = root.join(dir);
        if !src.is_dir() {
            return Err(format!(
                "{} is missing; it must ship in the archive",
                src.display()
            ));
        }
        collect(&src, dir, &mut entries)?;
    }
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(entries)
}

/// Every regular file under `dir` (following symlinks), as `prefix/...`.
fn collect(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result {
    let read = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for item in read {
        let item = item.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let src = item.path();
        let file_name = item.file_name();
        let Some(file_name) = file_name.to_str() else {
            return Err(format!("non-UTF-8 file name {}", src.display()));
        };
        let rel = format!("{prefix}/{file_name}");
        if src.is_dir() {
            collect(&src, &rel, out)?;
        } else if src.is_file() {
            out.push(Entry {
                rel,
                src,
                mode: 0o644,
            });
        } else {
            return Err(format!(
                "{} is neither a file nor a directory",
                src.display()
            ));
        }
    }
    Ok(())
}

/// Reproducible tar.gz bytes: `<name>/` plus every entry, fixed owner and mtime.
fn build_archive(name: &str, entries: Vec<Entry>) -> Result<Vec<u8>> {
    let mtime = source_date_epoch();
    let gz = GzEncoder::new(Vec::new(), Compression::best());
    let mut tar = tar::Builder::new(gz);
    let io = |e: std::io::Error| format!("writing the archive: {e}");

    // Directories first (a BTreeSet sorts parents before children), then the files.
    let mut dirs = std::collections::BTreeSet::from([name.to_string()]);
    for entry in &entries {
        let mut dir = name.to_string();
        let parts: Vec<&str> = entry.rel.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            dir = format!("{dir}/{part}");
            dirs.insert(dir.clone());
        }
    }
    for dir in dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0, mtime);
        tar.append_data(&mut h, format!("{dir}/"), std::io::empty())
            .map_err(io)?;
    }
    for entry in entries {
        let data = fs::read(&entry.src)
            .map_err(|e| format!("cannot read {}: {e}", entry.src.display()))?;
        let mut h = header(
            tar::EntryType::Regular,
            entry.mode,
            data.len() as u64,
            mtime,
        );
        tar.append_data(&mut h, format!("{name}/{}", entry.rel), data.as_slice())
            .map_err(io)?;
    }
    let gz = tar.into_inner().map_err(io)?;
    let mut bytes = gz.finish().map_err(io)?;
    bytes.flush().map_err(io)?;
    Ok(bytes)
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    // Best effort: names are cosmetic; ignore the (impossible) too-long error.
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    h
}

/// Archive timestamps: `$SOURCE_DATE_EPOCH`, else the last commit's time, else 0.
fn source_date_epoch() -> u64 {
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return t;
    }
    let mut git = util::cmd("git");
    git.args(["log", "-1", "--format=%ct"])
        .stderr(std::process::Stdio::null());
    git.output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
