//! A client's outgoing queue: what the routing side has decided to send and
//! the writer task has not yet written. Bounded in bytes and messages; the
//! first push past a bound marks the client a slow consumer, so a reader
//! that stalls never slows the publisher or anyone else.
//!
//! Small frames are copied into one contiguous chunk (copying 100 bytes is
//! cheaper than an iovec and a reference count); payloads from
//! [`INLINE_MAX`] up are queued as shared `Bytes`, so a fan-out to N
//! subscribers does not copy them N times.

use std::io::IoSlice;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::nats::proto::encode;

/// Payloads at least this long are shared, not copied.
pub const INLINE_MAX: usize = 512;
/// Control lines may exceed the byte limit by this much.
pub const CONTROL_SLACK: usize = 64 * 1024;

/// Why a client's queue refused data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// This push passed the pending limit: the client is now cut off.
    /// Reported once, by the push that crossed the limit.
    SlowConsumer,
    /// The queue was already closed (slow consumer, or the connection is going away).
    Gone,
}

#[derive(Debug)]
enum Chunk {
    Inline(Vec<u8>),
    Shared(Bytes),
}

impl Chunk {
    fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Inline(v) => v,
            Chunk::Shared(b) => b,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    chunks: Vec<Chunk>,
    bytes: usize,
    msgs: usize,
    closed: Option<Closed>,
    waker: Option<Waker>,
}

impl Inner {
    /// Remembers the writer's waker (one task: poll_take and poll_cut_off).
    fn park<T>(&mut self, cx: &Context<'_>) -> Poll<T> {
        match &self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Limits of one queue.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Pending bytes at most (`max_pending`).
    pub max_bytes: usize,
    /// Pending messages at most (`max_backlog`).
    pub max_msgs: usize,
}

#[derive(Debug)]
pub struct Outbound {
    inner: Mutex<Inner>,
    limits: Limits,
}

/// A frame under construction: the control line, an optional payload, and
/// the trailing CRLF, queued atomically.
pub struct Frame<'a> {
    pub head: &'a [u8],
    pub body: Option<&'a Bytes>,
    pub tail: &'a [u8],
}

impl Outbound {
    pub fn new(limits: Limits) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain bytes behind; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one message frame. `Err` when the queue is (or just became)
    /// closed; the first error for a slow consumer is `Err(SlowConsumer)`.
    pub fn push_msg(&self, frame: Frame<'_>) -> Result<(), Closed> {
        let len = frame.head.len() + frame.body.map_or(0, |b| b.len()) + frame.tail.len();
        let waker;
        {
            let mut g = self.lock();
            if g.closed.is_some() {
                return Err(Closed::Gone);
            }
            if g.bytes + len > self.limits.max_bytes || g.msgs + 1 > self.limits.max_msgs {
                g.closed = Some(Closed::SlowConsumer);
                g.chunks.clear();
                g.bytes = 0;
                g.msgs = 0;
                waker = g.waker.take();
                drop(g);
                if let Some(w) = waker {
                    w.wake();
                }
                return Err(Closed::SlowConsumer);
            }
            append(&mut g.chunks, frame.head);
            if let Some(b) = frame.body {
                if b.len() >= INLINE_MAX {
                    g.chunks.push(Chunk::Shared(b.clone()));
                } else {
                    append(&mut g.chunks, b);
                }
            }
            append(&mut g.chunks, frame.tail);
            g.bytes += len;
            g.msgs += 1;
            waker = g.waker.take();
        }
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Queues a protocol line (`PONG`, `+OK`, `-ERR`, `INFO`): not counted as
    /// a message. It may use [`CONTROL_SLACK`] bytes past the byte limit, so
    /// an error can still be said to a full queue; past that the client is a
    /// slow consumer too (one that sends PINGs and never reads).
    pub fn push_control(&self, line: &[u8]) -> Result<(), Closed> {
        let waker;
        {
            let mut g = self.lock();
            if g.closed.is_some() {
                return Err(Closed::Gone);
            }
            if g.bytes + line.len() > self.limits.max_bytes.saturating_add(CONTROL_SLACK) {
                g.closed = Some(Closed::SlowConsumer);
                g.chunks.clear();
                g.bytes = 0;
                g.msgs = 0;
                let waker = g.waker.take();
                drop(g);
                if let Some(w) = waker {
                    w.wake();
                }
                return Err(Closed::SlowConsumer);
            }
            append(&mut g.chunks, line);
            g.bytes += line.len();
            waker = g.waker.take();
        }
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Stops the queue: the writer finishes what is queued, then ends.
    pub fn close(&self) {
        let waker = {
            let mut g = self.lock();
            g.closed.get_or_insert(Closed::Gone);
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub fn closed(&self) -> Option<Closed> {
        self.lock().closed
    }

    /// Pending bytes, for status.
    pub fn pending_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Ready once the queue was closed for a slow consumer. The writer races
    /// its socket writes against it: a client that does not read would
    /// otherwise hold the writer, and so the connection, forever.
    pub fn poll_cut_off(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.lock();
        if g.closed == Some(Closed::SlowConsumer) {
            return Poll::Ready(());
        }
        g.park(cx)
    }

    /// Takes everything queued for the writer, or `Ready(None)` once the
    /// queue is closed and empty. `spare` is a recycled batch to swap in.
    pub fn poll_take(&self, cx: &mut Context<'_>, spare: &mut Batch) -> Poll<Option<()>> {
        let mut g = self.lock();
        if !g.chunks.is_empty() {
            spare.chunks.clear();
            std::mem::swap(&mut g.chunks, &mut spare.chunks);
            g.bytes = 0;
            g.msgs = 0;
            return Poll::Ready(Some(()));
        }
        if g.closed.is_some() {
            return Poll::Ready(None);
        }
        g.park(cx)
    }
}

fn append(chunks: &mut Vec<Chunk>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if let Some(Chunk::Inline(v)) = chunks.last_mut() {
        encode::extend(v, bytes);
    } else {
        let mut v = Vec::with_capacity(bytes.len().max(4096));
        encode::extend(&mut v, bytes);
        chunks.push(Chunk::Inline(v));
    }
}

/// What the writer took in one go; reused between takes.
#[derive(Debug, Default)]
pub struct Batch {
    chunks: Vec<Chunk>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(|c| c.as_slice().is_empty())
    }

    /// Up to `max` slices starting `skip` bytes into the batch.
    pub fn slices(&self, mut skip: usize, max: usize) -> Vec<IoSlice<'_>> {
        let mut out = Vec::with_capacity(self.chunks.len().min(max));
        for c in &self.chunks {
            let s = c.as_slice();
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            out.push(IoSlice::new(&s[skip..]));
            skip = 0;
            if out.len() == max {
                break;
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.as_slice().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    fn take(o: &Outbound) -> Option<Vec<u8>> {
        let mut b = Batch::default();
        future::block_on(future::poll_fn(|cx| o.poll_take(cx, &mut b)))?;
        Some(
            b.slices(0, usize::MAX)
                .iter()
                .flat_map(|s| s.to_vec())
                .collect(),
        )
    }

    fn limits(max_bytes: usize, max_msgs: usize) -> Limits {
        Limits {
            max_bytes,
            max_msgs,
        }
    }

    #[test]
    fn frames_come_out_in_order_with_shared_payloads() {
        let o = Outbound::new(limits(1 << 20, 100));
        let big = Bytes::from(vec![b'x'; INLINE_MAX]);
        let small = Bytes::from_static(b"hi");
        o.push_msg(Frame {
            head: b"MSG a 1 512\r\n",
            body: Some(&big),
            tail: b"\r\n",
        })
        .unwrap();
        o.push_msg(Frame {
            head: b"MSG a 1 2\r\n",
            body: Some(&small),
            tail: b"\r\n",
        })
        .unwrap();
        o.push_control(b"PONG\r\n").unwrap();
        let out = take(&o).unwrap();
        let mut want = b"MSG a 1 512\r\n".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"\r\nMSG a 1 2\r\nhi\r\nPONG\r\n");
        assert_eq!(out, want);
        assert_eq!(o.pending_bytes(), 0);
    }

    #[test]
    fn byte_limit_is_inclusive_and_the_next_push_is_a_slow_consumer() {
        // Exactly at the limit is fine; one byte over is not.
        let o = Outbound::new(limits(10, 100));
        let p = Bytes::from_static(b"12345");
        o.push_msg(Frame {
            head: b"",
            body: Some(&p),
            tail: b"",
        })
        .unwrap();
        o.push_msg(Frame {
            head: b"",
            body: Some(&p),
            tail: b"",
        })
        .unwrap();
        let one = Bytes::from_static(b"1");
        assert_eq!(
            o.push_msg(Frame {
                head: b"",
                body: Some(&one),
                tail: b""
            }),
            Err(Closed::SlowConsumer)
        );
        // Nothing more is queued; the reason is reported once, then kept.
        assert_eq!(
            o.push_msg(Frame {
                head: b"",
                body: Some(&one),
                tail: b""
            }),
            Err(Closed::Gone)
        );
        assert_eq!(o.push_control(b"PONG\r\n"), Err(Closed::Gone));
        assert_eq!(o.closed(), Some(Closed::SlowConsumer));
        assert_eq!(take(&o), None);
    }

    #[test]
    fn control_lines_get_slack_then_the_client_is_cut_off() {
        let o = Outbound::new(limits(10, 100));
        let p = Bytes::from_static(b"0123456789");
        o.push_msg(Frame {
            head: b"",
            body: Some(&p),
            tail: b"",
        })
        .unwrap();
        // Full for messages, but an error can still be said.
        o.push_control(b"-ERR 'x'\r\n").unwrap();
        // A client that PINGs and never reads cannot grow the queue for ever.
        let mut n = 0;
        while o.push_control(b"PONG\r\n").is_ok() {
            n += 1;
        }
        assert!(n * 6 <= CONTROL_SLACK, "{n}");
        assert_eq!(o.closed(), Some(Closed::SlowConsumer));
    }

    #[test]
    fn message_limit() {
        let o = Outbound::new(limits(1 << 20, 2));
        let p = Bytes::from_static(b"x");
        for _ in 0..2 {
            o.push_msg(Frame {
                head: b"",
                body: Some(&p),
                tail: b"",
            })
            .unwrap();
        }
        // Control lines never count as messages.
        o.push_control(b"PONG\r\n").unwrap();
        assert!(
            o.push_msg(Frame {
                head: b"",
                body: Some(&p),
                tail: b""
            })
            .is_err()
        );
    }

    #[test]
    fn draining_frees_room_and_close_ends_after_the_rest() {
        let o = Outbound::new(limits(4, 100));
        let p = Bytes::from_static(b"abcd");
        o.push_msg(Frame {
            head: b"",
            body: Some(&p),
            tail: b"",
        })
        .unwrap();
        assert_eq!(take(&o).unwrap(), b"abcd");
        o.push_msg(Frame {
            head: b"",
            body: Some(&p),
            tail: b"",
        })
        .unwrap();
        o.close();
        assert_eq!(take(&o).unwrap(), b"abcd");
        assert_eq!(take(&o), None);
    }

    #[test]
    fn slices_skip_partially_written_bytes() {
        let o = Outbound::new(limits(1 << 20, 100));
        let big = Bytes::from(vec![b'y'; INLINE_MAX]);
        o.push_msg(Frame {
            head: b"AB",
            body: Some(&big),
            tail: b"CD",
        })
        .unwrap();
        let mut b = Batch::default();
        future::block_on(future::poll_fn(|cx| o.poll_take(cx, &mut b))).unwrap();
        assert_eq!(b.len(), 4 + INLINE_MAX);
        let s = b.slices(3, 8);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].len(), INLINE_MAX - 1);
        assert_eq!(&*s[1], b"CD");
    }
}
