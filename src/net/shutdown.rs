//! Stopping: one trigger that every task can await, and a drain that tells
//! the main task when the last connection has gone.

use async_channel::{Receiver, Sender};

/// Cloned into every task; `wait` completes once `Trigger::fire` is called.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: Receiver<()>,
}

/// Held by the main task only.
#[derive(Debug)]
pub struct Trigger {
    tx: Sender<()>,
}

/// A new pair; nothing is ever sent, closing the channel is the signal.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = async_channel::bounded(1);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    pub fn fire(&self) {
        self.tx.close();
    }
}

impl Shutdown {
    /// Completes when shutdown has been triggered (at once if it already was).
    pub async fn wait(&self) {
        // Only closing ends the wait: `recv` errs exactly then.
        while self.rx.recv().await.is_ok() {}
    }

    pub fn is_triggered(&self) -> bool {
        self.rx.is_closed()
    }
}

/// Counts live tasks without a counter: each holds a `DrainGuard`, and
/// `Drain::wait` completes when every guard is dropped.
#[derive(Debug)]
pub struct Drain {
    tx: Option<Sender<()>>,
    rx: Receiver<()>,
}

/// Dropped when its task ends.
#[derive(Clone, Debug)]
pub struct DrainGuard {
    _tx: Sender<()>,
}

impl Drain {
    pub fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Self { tx: Some(tx), rx }
    }

    /// A guard for a new task; `None` once `wait` has begun.
    pub fn guard(&self) -> Option<DrainGuard> {
        self.tx.as_ref().map(|tx| DrainGuard { _tx: tx.clone() })
    }

    /// Completes once every guard handed out is dropped.
    pub async fn wait(mut self) {
        self.tx = None;
        while self.rx.recv().await.is_ok() {}
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn wait_completes_after_fire_and_for_late_waiters() {
        let (trigger, shutdown) = channel();
        let other = shutdown.clone();
        assert!(!shutdown.is_triggered());
        trigger.fire();
        future::block_on(shutdown.wait());
        future::block_on(other.wait());
        assert!(other.is_triggered());
    }

    #[test]
    fn drain_waits_for_every_guard() {
        let drain = Drain::new();
        let g1 = drain.guard().expect("guard before wait");
        let g2 = g1.clone();
        let mut wait = Box::pin(drain.wait());
        assert!(future::block_on(future::poll_once(&mut wait)).is_none());
        drop(g1);
        assert!(future::block_on(future::poll_once(&mut wait)).is_none());
        drop(g2);
        future::block_on(wait);
    }
}
