//! A listener whose protocol is not built yet: it holds connections, and
//! answers the first bytes a peer sends with a clear error before closing.

use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};

use super::conn::{Conn, Remote};
use super::listener::{Local, Service};
use super::shutdown::Shutdown;

pub struct Placeholder {
    pub listener: &'static str,
    /// The full error line, e.g. `-ERR 'ECCluster_Listener: ...'\r\n`.
    pub reply: &'static [u8],
}

impl Service for Placeholder {
    fn serve(
        self: Arc<Self>,
        mut conn: Conn,
        remote: Remote,
        local: Local,
        shutdown: Shutdown,
    ) -> futures_lite::future::Boxed<()> {
        Box::pin(async move {
            let mut buf = [0u8; 512];
            let read = async { Some(conn.read(&mut buf).await) }
                .or(async {
                    shutdown.wait().await;
                    None
                })
                .await;
            if let Some(Ok(n)) = read
                && n > 0
            {
                log::info!(
                    "{} {local}: {remote} sent {n} bytes of a protocol not served yet; closing",
                    self.listener
                );
                let _ = conn.write_all(self.reply).await;
                let _ = conn.flush().await;
            }
            conn.shutdown();
        })
    }

    fn refusal(&self) -> &'static [u8] {
        b"-ERR 'maximum connections exceeded'\r\n"
    }
}
