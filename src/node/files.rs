//! Files between nodes: the receiving side of a transfer ([`Incoming`],
//! written into `incoming_dir` atomically) and the sending side
//! ([`send_file`], credit-based flow control). File I/O runs on smol's
//! blocking pool, never on an executor thread.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_lite::FutureExt;
use sha2::{Digest, Sha256};

use super::NodeError;
use super::codec::{self, Frame};
use super::links::NodeLinks;

/// Bytes of chunk data in flight per transfer: the receiver grants this much
/// at the offer, then as much as it has written.
pub const WINDOW: u64 = 1 << 20;
/// Bytes of file data per chunk frame.
pub const CHUNK: usize = 64 * 1024;

struct Inner {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    size: u64,
    received: u64,
    expected: [u8; 32],
    hasher: Sha256,
}

/// A file being received: a temp file `.<name>.<id>.part` in `incoming_dir`,
/// renamed to `<name>` once complete, synced and its sha256 checked.
pub struct Incoming(Option<Box<Inner>>);

impl Incoming {
    /// Accepts an offer, or says why not.
    pub async fn start(
        dir: Option<&Path>,
        id: u64,
        name: &str,
        size: u64,
        expected: [u8; 32],
    ) -> Result<Incoming, String> {
        let Some(dir) = dir else {
            return Err(
                "this node accepts no files (no ECCluster_Listener incoming_dir configured)"
                    .to_owned(),
            );
        };
        codec::check_file_name(name)?;
        let tmp = dir.join(format!(".{name}.{id:x}.part"));
        let dest = dir.join(name);
        let t = tmp.clone();
        let file = smol::unblock(move || File::create_new(&t))
            .await
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        Ok(Incoming(Some(Box::new(Inner {
            file,
            tmp,
            dest,
            size,
            received: 0,
            expected,
            hasher: Sha256::new(),
        }))))
    }

    /// Writes one chunk; `Ok(true)` once every byte has arrived.
    pub async fn write(&mut self, offset: u64, bytes: Bytes) -> Result<bool, String> {
        let Some(mut t) = self.0.take() else {
            return Err("transfer already ended".to_owned());
        };
        let n = bytes.len() as u64;
        if offset != t.received || t.received.saturating_add(n) > t.size {
            let e = format!(
                "chunk at {offset} (+{n}) does not follow byte {} of {}",
                t.received, t.size
            );
            self.0 = Some(t);
            return Err(e);
        }
        let (t, r) = smol::unblock(move || {
            t.hasher.update(&bytes);
            let r = t.file.write_all(&bytes);
            (t, r)
        })
        .await;
        let mut t = t;
        r.map_err(|e| {
            let e = format!("cannot write {}: {e}", t.tmp.display());
            e
        })
        .inspect_err(|_| self.0 = None)?;
        t.received += n;
        let done = t.received == t.size;
        self.0 = Some(t);
        Ok(done)
    }

    /// Syncs, checks the sha256 and renames into place: `(ok, error)`.
    pub async fn finish(mut self) -> (bool, String) {
        let Some(t) = self.0.take() else {
            return (false, "transfer already ended".to_owned());
        };
        let r = smol::unblock(move || -> Result<(), String> {
            let t = *t;
            let fail = |e: String| {
                let _ = std::fs::remove_file(&t.tmp);
                Err(e)
            };
            if let Err(e) = t.file.sync_all() {
                return fail(format!("cannot sync {}: {e}", t.tmp.display()));
            }
            let got: [u8; 32] = t.hasher.finalize().into();
            if got != t.expected {
                return fail(format!(
                    "sha256 mismatch: got {}, offered {}",
                    hex(&got),
                    hex(&t.expected)
                ));
            }
            if let Err(e) = std::fs::rename(&t.tmp, &t.dest) {
                return fail(format!("cannot rename to {}: {e}", t.dest.display()));
            }
            if let Some(dir) = t.dest.parent()
                && let Ok(d) = File::open(dir)
            {
                let _ = d.sync_all();
            }
            Ok(())
        })
        .await;
        match r {
            Ok(()) => (true, String::new()),
            Err(e) => (false, e),
        }
    }

    /// Removes the temp file of a transfer that will not complete.
    pub async fn abandon(mut self) {
        if let Some(t) = self.0.take() {
            smol::unblock(move || {
                let _ = std::fs::remove_file(&t.tmp);
            })
            .await;
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a finished transfer reports.
pub struct Sent {
    pub name: String,
    pub bytes: u64,
    pub secs: f64,
    pub sha256: String,
}

/// Sends the regular file at the absolute `path` to `peer`'s incoming_dir.
pub async fn send_file(links: &Arc<NodeLinks>, peer: &str, path: &str) -> Result<Sent, NodeError> {
    let p = PathBuf::from(path);
    if !p.is_absolute() {
        return Err(format!("{path:?} is not an absolute path").into());
    }
    // Hash first: the offer carries the checksum.
    let hp = p.clone();
    let (size, sha256) = smol::unblock(move || -> Result<(u64, [u8; 32]), String> {
        let meta = std::fs::metadata(&hp).map_err(|e| format!("{}: {e}", hp.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", hp.display()));
        }
        let mut f = File::open(&hp).map_err(|e| format!("{}: {e}", hp.display()))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| format!("{}: {e}", hp.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        Ok((size, h.finalize().into()))
    })
    .await?;
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{path:?} has no usable file name"))?
        .to_owned();
    codec::check_file_name(&name)?;
    let link = links.link(peer).await?;
    let id = links.next_id();
    let rx = links.wait_for(id, &link);
    let started = Instant::now();
    let result: Result<(), NodeError> = async {
        link.control(Frame::FileOffer {
            id,
            size,
            sha256,
            name: name.clone(),
        })?;
        let op = p.clone();
        let mut file = Some(
            smol::unblock(move || File::open(&op))
                .await
                .map_err(|e| NodeError::Transfer(format!("{}: {e}", p.display())))?,
        );
        let (mut offset, mut credit) = (0u64, 0u64);
        loop {
            // Take every answer already there; wait when out of credit or done.
            loop {
                let f = if credit == 0 || offset == size {
                    rx.recv()
                        .await
                        .map_err(|_| NodeError::Closed("the link closed during the transfer"))?
                } else {
                    match rx.try_recv() {
                        Ok(f) => f,
                        Err(_) => break,
                    }
                };
                match f {
                    Frame::FileCredit { bytes, .. } => credit = credit.saturating_add(bytes),
                    Frame::FileDone { ok: true, .. } if offset == size => return Ok(()),
                    Frame::FileDone { ok: true, .. } => {
                        return Err("receiver ended the transfer early".to_owned().into());
                    }
                    Frame::FileDone { error, .. } => return Err(error.into()),
                    _ => {}
                }
            }
            let n = (CHUNK as u64).min(credit).min(size - offset) as usize;
            let Some(mut f) = file.take() else {
                return Err("file closed".to_owned().into());
            };
            let (f, r) = smol::unblock(move || {
                let mut buf = vec![0u8; n];
                let r = f.read_exact(&mut buf).map(|()| buf);
                (f, r)
            })
            .await;
            file = Some(f);
            let bytes = match r {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    let error = format!("cannot read {path}: {e}");
                    let _ = link.control(Frame::FileDone {
                        id,
                        ok: false,
                        error: error.clone(),
                    });
                    return Err(error.into());
                }
            };
            link.bulk
                .send(Frame::FileChunk { id, offset, bytes })
                .or(async {
                    links.shutdown.wait().await;
                    Err(async_channel::SendError(Frame::Ping { id }))
                })
                .await
                .map_err(|_| NodeError::Closed("the link closed during the transfer"))?;
            offset += n as u64;
            credit -= n as u64;
        }
    }
    .await;
    links.done_waiting(id);
    result.map(|()| Sent {
        name,
        bytes: size,
        secs: started.elapsed().as_secs_f64(),
        sha256: hex(&sha256),
    })
}
