//! Files between nodes: the receiving side of a transfer ([`Incoming`],
//! written into `incoming_dir` atomically) and the sending side
//! ([`send_file`], credit-based flow control). File I/O runs on smol's
//! blocking pool, never on an executor thread, and never in the link's
//! reader: each side streams through a blocking worker of its own (the
//! sender's reads ahead, the receiver's hashes and writes), so disk, hashing
//! and the network overlap.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures_lite::FutureExt;
use sha2::{Digest, Sha256};

use super::NodeError;
use super::codec::{self, Frame};
use super::links::{LinkHandle, NodeLinks};

/// Bytes of file data per chunk frame (the frame limit is 1 MiB).
pub const CHUNK: usize = 256 * 1024;
/// Chunks the sender reads ahead of the network.
const READ_AHEAD: usize = 4;

struct Inner {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    size: u64,
    expected: [u8; 32],
}

/// A file being received: a temp file `.<name>.<id>.part` in `incoming_dir`,
/// renamed to `<name>` once complete, synced and its sha256 checked. The
/// link's reader queues chunks here; a blocking writer hashes and writes
/// them, grants their length back as credit and answers FILE_DONE.
pub struct Incoming {
    chunks: async_channel::Sender<Bytes>,
    /// The offset the next chunk must start at.
    next: u64,
    size: u64,
    window: u64,
    /// Bytes the writer has written (and granted back).
    written: Arc<AtomicU64>,
}

/// What became of a chunk handed to [`Incoming::push`].
pub enum Pushed {
    /// Queued; more are due.
    More,
    /// The last byte is queued: the writer finishes and answers.
    Last,
    /// The writer already ended (and answered).
    Ended,
}

impl Incoming {
    /// Accepts an offer (granting the first credit through `link`), or says
    /// why not. At most `window` bytes are ever queued or in flight.
    pub async fn start(
        dir: Option<&Path>,
        (id, name, size, expected): (u64, &str, u64, [u8; 32]),
        window: u64,
        (peer, link): (&str, LinkHandle),
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
        let inner = Inner {
            file,
            tmp,
            dest,
            size,
            expected,
        };
        let (tx, rx) = async_channel::unbounded();
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let first = window.min(size);
        if size > 0
            && link
                .control(Frame::FileCredit { id, bytes: first })
                .is_err()
        {
            let _ = std::fs::remove_file(&inner.tmp);
            return Err("the link closed".to_owned());
        }
        let from = format!("node link {peer}: transfer {id}");
        smol::unblock(move || receive(inner, (id, &from), &rx, &link, &w)).detach();
        Ok(Incoming {
            chunks: tx,
            next: 0,
            size,
            window,
            written,
        })
    }

    /// Queues the chunk at `offset`; an error (out of order, past the size,
    /// beyond the credit granted) fails the transfer.
    pub fn push(&mut self, offset: u64, bytes: Bytes) -> Result<Pushed, String> {
        let n = bytes.len() as u64;
        let end = self.next.saturating_add(n);
        if offset != self.next || end > self.size {
            return Err(format!(
                "chunk at {offset} (+{n}) does not follow byte {} of {}",
                self.next, self.size
            ));
        }
        let allowed = self.written.load(Ordering::Acquire) + self.window;
        if end > allowed {
            return Err(format!(
                "chunk at {offset} (+{n}) goes past the credit granted (byte {allowed})"
            ));
        }
        if self.chunks.try_send(bytes).is_err() {
            return Ok(Pushed::Ended);
        }
        self.next = end;
        Ok(if end == self.size {
            Pushed::Last
        } else {
            Pushed::More
        })
    }
}

/// The receiver's blocking side: this thread hashes every chunk and hands it
/// to a writer thread of its own, which writes it and grants its length back
/// (so hashing and the disk overlap, and the credit bounds both); then sync,
/// check, rename and FILE_DONE. A queue that closes early (the link ended,
/// the sender aborted, a bad chunk) removes the temp file.
fn receive(
    t: Inner,
    (id, from): (u64, &str),
    chunks: &async_channel::Receiver<Bytes>,
    link: &LinkHandle,
    written: &AtomicU64,
) {
    let mut hasher = Sha256::new();
    let (file, tmp, size) = (&t.file, &t.tmp, t.size);
    let (hashed, wrote) = std::thread::scope(|scope| {
        let (to_disk, from_hasher) = std::sync::mpsc::channel::<Bytes>();
        let writer = scope.spawn(move || -> Result<u64, String> {
            let mut flush = Flush::default();
            let mut done = 0u64;
            for bytes in from_hasher {
                let n = bytes.len() as u64;
                let mut f = file;
                f.write_all(&bytes)
                    .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
                done += n;
                written.fetch_add(n, Ordering::Release);
                flush.wrote(file, n);
                if done < size {
                    // A closed link: the chunks stop coming, the hasher stops.
                    let _ = link.control(Frame::FileCredit { id, bytes: n });
                }
            }
            Ok(done)
        });
        let mut hashed = 0u64;
        while hashed < size {
            let Ok(bytes) = chunks.recv_blocking() else {
                break;
            };
            hasher.update(&bytes);
            hashed += bytes.len() as u64;
            if to_disk.send(bytes).is_err() {
                break;
            }
        }
        drop(to_disk);
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err("the writer thread panicked".to_owned()));
        (hashed, wrote)
    });
    let error = match wrote {
        Ok(n) if n == size && hashed == size => None,
        Ok(_) => {
            // Ended early: the link or the sender said so already.
            let _ = std::fs::remove_file(tmp);
            return;
        }
        Err(e) => Some(e),
    };
    let dest = t.dest.display().to_string();
    let (ok, error) = match error {
        None => finish(t, hasher.finalize().into()),
        Some(e) => {
            let _ = std::fs::remove_file(tmp);
            (false, e)
        }
    };
    if ok {
        log::info!("{from}: received {dest} ({size} bytes, sha256 checked)");
    } else {
        log::warn!("{from} failed: {error}");
    }
    let _ = link.control(Frame::FileDone { id, ok, error });
}

/// Bytes written between two background syncs of a file being received.
const FLUSH_EVERY: u64 = 16 << 20;

/// Starts the disk's writeback while the file still arrives: every
/// [`FLUSH_EVERY`] bytes an `fdatasync` on the blocking pool (one at a time),
/// so the sync before the rename finds little left to write.
#[derive(Default)]
struct Flush {
    since: u64,
    busy: Arc<std::sync::atomic::AtomicBool>,
}

impl Flush {
    fn wrote(&mut self, file: &File, n: u64) {
        self.since += n;
        if self.since < FLUSH_EVERY || self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        self.since = 0;
        let Ok(f) = file.try_clone() else {
            self.busy.store(false, Ordering::Release);
            return;
        };
        let busy = self.busy.clone();
        smol::unblock(move || {
            // Only a head start: the sync before the rename reports errors.
            let _ = f.sync_data();
            busy.store(false, Ordering::Release);
        })
        .detach();
    }
}

/// Syncs, checks the sha256 and renames into place: `(ok, error)`.
fn finish(t: Inner, got: [u8; 32]) -> (bool, String) {
    let Inner {
        file,
        tmp,
        dest,
        expected,
        ..
    } = t;
    let fail = |e: String| {
        let _ = std::fs::remove_file(&tmp);
        (false, e)
    };
    if let Err(e) = file.sync_all() {
        return fail(format!("cannot sync {}: {e}", tmp.display()));
    }
    if got != expected {
        return fail(format!(
            "sha256 mismatch: got {}, offered {}",
            hex(&got),
            hex(&expected)
        ));
    }
    if let Err(e) = std::fs::rename(&tmp, &dest) {
        return fail(format!("cannot rename to {}: {e}", dest.display()));
    }
    if let Some(dir) = dest.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    (true, String::new())
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
        let chunks = read_ahead(p.clone(), size);
        let (mut offset, mut credit) = (0u64, 0u64);
        let mut chunk = Bytes::new();
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
            if chunk.is_empty() {
                chunk = match chunks.recv().await {
                    Ok(Ok(b)) => b,
                    Ok(Err(error)) => {
                        let _ = link.control(Frame::FileDone {
                            id,
                            ok: false,
                            error: error.clone(),
                        });
                        return Err(error.into());
                    }
                    Err(_) => return Err("the file reader stopped".to_owned().into()),
                };
            }
            // As much of the chunk as the credit allows.
            let n = chunk
                .len()
                .min(usize::try_from(credit).unwrap_or(usize::MAX));
            let bytes = chunk.split_to(n);
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

/// Reads `size` bytes of the file at `path` in [`CHUNK`]s on the blocking
/// pool, up to [`READ_AHEAD`] chunks ahead of the sender; stops when the
/// receiver of the queue is dropped.
fn read_ahead(path: PathBuf, size: u64) -> async_channel::Receiver<Result<Bytes, String>> {
    let (tx, rx) = async_channel::bounded(READ_AHEAD);
    smol::unblock(move || {
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send_blocking(Err(format!("{}: {e}", path.display())));
                return;
            }
        };
        let mut left = size;
        while left > 0 {
            let n = (CHUNK as u64).min(left) as usize;
            let mut buf = vec![0u8; n];
            let r = f
                .read_exact(&mut buf)
                .map(|()| Bytes::from(buf))
                .map_err(|e| format!("cannot read {}: {e}", path.display()));
            let failed = r.is_err();
            if tx.send_blocking(r).is_err() || failed {
                return;
            }
            left -= n as u64;
        }
    })
    .detach();
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 64 * 1024;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn sha(b: &[u8]) -> [u8; 32] {
        Sha256::digest(b).into()
    }

    /// A transfer of `size` bytes offered with `sha256`, accepted into `dir`.
    fn offered(
        dir: &Path,
        (id, name, size, sha256): (u64, &str, usize, [u8; 32]),
    ) -> (Incoming, async_channel::Receiver<Frame>) {
        let (link, ctl) = LinkHandle::detached();
        let offer = (id, name, size as u64, sha256);
        let t = smol::block_on(Incoming::start(Some(dir), offer, WINDOW, ("node2", link)));
        (t.unwrap(), ctl)
    }

    /// The frames the receiver sends until FILE_DONE: (credit granted, done).
    fn until_done(ctl: &async_channel::Receiver<Frame>) -> (u64, (bool, String)) {
        let mut credit = 0;
        loop {
            match ctl.recv_blocking() {
                Ok(Frame::FileCredit { bytes, .. }) => credit += bytes,
                Ok(Frame::FileDone { ok, error, .. }) => return (credit, (ok, error)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_file_arrives_within_its_window_checked_and_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let body = data(200 * 1024);
        let (mut t, ctl) = offered(dir.path(), (7, "f.bin", body.len(), sha(&body)));
        // The offer grants one window; a byte beyond it fails the transfer.
        assert!(matches!(
            ctl.recv_blocking(),
            Ok(Frame::FileCredit { bytes: WINDOW, .. })
        ));
        let first = Bytes::copy_from_slice(&body[..WINDOW as usize]);
        assert!(matches!(t.push(0, first), Ok(Pushed::More)));
        // Each credit the writer grants lets as many bytes more through.
        let mut at = WINDOW as usize;
        let mut granted = WINDOW as usize;
        while at < body.len() {
            if at == granted {
                let Ok(Frame::FileCredit { bytes, .. }) = ctl.recv_blocking() else {
                    panic!("no credit");
                };
                granted += bytes as usize;
            }
            let end = granted.min(body.len()).min(at + 10_000);
            let r = t.push(at as u64, Bytes::copy_from_slice(&body[at..end]));
            let want_last = end == body.len();
            assert!(matches!(r, Ok(Pushed::Last)) == want_last, "at {at}");
            at = end;
        }
        let (_, done) = until_done(&ctl);
        assert_eq!(done, (true, String::new()));
        assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), body);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file"
        );
    }

    #[test]
    fn chunks_out_of_order_or_past_the_credit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let body = data(3 * WINDOW as usize);
        let (mut t, ctl) = offered(dir.path(), (8, "g.bin", body.len(), sha(&body)));
        let _ = ctl.recv_blocking();
        let e = t.push(5, Bytes::from_static(b"x")).err().unwrap();
        assert!(e.contains("does not follow byte 0"), "{e}");
        // One byte more than the window, before the writer could grant any.
        let over = Bytes::copy_from_slice(&body[..WINDOW as usize + 1]);
        let e = t.push(0, over).err().unwrap();
        assert!(e.contains("past the credit granted"), "{e}");
        // Dropping it (what the link reader does on an error) removes the temp file.
        drop(t);
        while std::fs::read_dir(dir.path()).unwrap().count() > 0 {
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_checksum_mismatch_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let body = data(1000);
        let (mut t, ctl) = offered(dir.path(), (9, "h.bin", body.len(), sha(b"something else")));
        assert!(matches!(t.push(0, Bytes::from(body)), Ok(Pushed::Last)));
        let (_, (ok, error)) = until_done(&ctl);
        assert!(!ok && error.contains("sha256 mismatch"), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
