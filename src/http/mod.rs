//! HTTP_Listener: liveness, readiness, the status JSON and Prometheus
//! metrics, for load balancers, systemd, Kubernetes and dashboards. Off
//! unless configured. `request` parses a head and `routes` answers it, both
//! sans-IO; this driver reads one request per connection (bounded in bytes
//! and time), writes the answer and closes.

pub mod metrics;
pub mod request;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};

use crate::msgc::Server;
use crate::net::tls::{self, Material};
use crate::net::{Conn, Local, Remote, Service, Shutdown};
use request::Parsed;

/// A client has this long to send its request head (and finish TLS).
const READ_LIMIT: Duration = Duration::from_secs(10);

/// The service of HTTP_Listener's sockets.
pub struct HttpService {
    pub server: Arc<Server>,
}

impl Service for HttpService {
    fn serve(
        self: Arc<Self>,
        conn: Conn,
        _: Remote,
        _: Local,
        tls: Option<Material>,
        shutdown: Shutdown,
    ) -> futures_lite::future::Boxed<()> {
        Box::pin(async move {
            let answer = async {
                let _ = self.answer(conn, tls).await;
            };
            answer.or(shutdown.wait()).await;
        })
    }

    /// A plain socket at `max_connections` says 503; a TLS one closes
    /// (plain text would break the client's handshake).
    fn refusal(&self, tls: bool) -> Option<&'static [u8]> {
        (!tls).then_some(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
    }
}

impl HttpService {
    async fn answer(&self, conn: Conn, tls: Option<Material>) -> std::io::Result<()> {
        let read = async {
            let mut conn = match &tls {
                Some(m) => tls::accept(conn, m, Vec::new()).await?,
                None => conn,
            };
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            loop {
                match request::parse(&buf) {
                    Parsed::Partial => {}
                    Parsed::Done(req) => return Ok::<_, std::io::Error>((conn, Ok(req))),
                    Parsed::Bad(why) => return Ok((conn, Err(why))),
                }
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        };
        let timeout = async {
            smol::Timer::after(READ_LIMIT).await;
            Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
        };
        let (mut conn, req) = read.or(timeout).await?;
        let response = match req {
            Ok(r) => routes::respond(&r.method, &r.path, || {
                self.server.status(&self.server.router())
            }),
            Err(why) => routes::bad(why),
        };
        conn.write_all(&response.to_bytes()).await?;
        conn.flush().await?;
        conn.close().await
    }
}
