//! One accepted connection, TCP or Unix, behind a single type so protocol
//! handlers need not care which socket family they serve.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_net::TcpStream;
use async_net::unix::UnixStream;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Cloning yields a second handle on the same socket (one reader, one writer).
#[derive(Clone, Debug)]
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// A TLS session over one of the above (see `crate::net::tls`).
    Tls(crate::net::tls::TlsConn),
}

/// Where a connection came from, for logs and `INFO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    Tcp(SocketAddr),
    Unix,
}

impl Remote {
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Remote::Tcp(a) => Some(*a),
            Remote::Unix => None,
        }
    }
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Remote::Tcp(a) => write!(f, "{a}"),
            Remote::Unix => f.write_str("unix"),
        }
    }
}

impl Conn {
    /// Closes both directions so a peer blocked in read sees EOF at once.
    pub fn shutdown(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Conn::Tls(t) => {
                t.raw().shutdown();
                Ok(())
            }
        };
    }

    /// Says `line` (a last `-ERR`), as far as the peer still reads, and closes.
    pub async fn refuse(&mut self, line: &[u8]) {
        let _ = self.write_all(line).await;
        let _ = self.flush().await;
        self.shutdown();
    }

    /// The local address of a TCP connection (under TLS too).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Conn::Tcp(s) => s.local_addr().ok(),
            Conn::Unix(_) => None,
            Conn::Tls(t) => t.raw().local_addr(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_close(cx),
            Conn::Unix(s) => Pin::new(s).poll_close(cx),
            Conn::Tls(s) => Pin::new(s).poll_close(cx),
        }
    }
}
