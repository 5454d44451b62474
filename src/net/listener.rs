//! Binding `Listen` sockets as Momentum describes them, and the accept loop
//! that enforces each socket's connection limit.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_net::TcpListener;
use async_net::unix::UnixListener;
use futures_lite::FutureExt;
use socket2::{Domain, Protocol, Socket, Type};

use super::conn::{Conn, Remote};
use super::shutdown::{DrainGuard, Shutdown};
use super::tls::Material;
use crate::config::{ListenAddr, SocketSettings};

/// A bound, listening socket.
#[derive(Debug)]
pub struct Bound {
    /// The listener scope (`ECCluster_Listener`, `msgcserver_listener`).
    pub listener: &'static str,
    pub settings: SocketSettings,
    /// The address really bound (port 0 resolved).
    pub local: Local,
    /// The socket's TLS, parsed once.
    pub tls: Option<Material>,
    socket: Listening,
}

#[derive(Debug)]
enum Listening {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// A bound address, as logged and shown by `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Local {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Local {
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Local::Tcp(a) => Some(*a),
            Local::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Local::Tcp(a) => write!(f, "{a}"),
            Local::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A bind failure that names the listener, the address and the OS error.
#[derive(Debug)]
pub struct BindError {
    pub listener: &'static str,
    pub addr: ListenAddr,
    pub origin: String,
    pub error: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: cannot listen on \"{}\" ({}): {}",
            self.listener, self.addr, self.origin, self.error
        )
    }
}

impl std::error::Error for BindError {}

/// Binds one `Listen` scope. Must run inside the reactor (any smol context).
pub fn bind(listener: &'static str, settings: &SocketSettings) -> Result<Bound, BindError> {
    let fail = |error| BindError {
        listener,
        addr: settings.addr.clone(),
        origin: settings.origin.clone(),
        error,
    };
    let (socket, local) = match &settings.addr {
        ListenAddr::Any { port } => {
            // One dual-stack socket covers v4 and v6; hosts without v6 get v4 only.
            let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, *port));
            match bind_tcp(v6, Some(false), settings) {
                Ok(l) => l,
                Err(e) if v6_unavailable(&e) => bind_tcp(
                    SocketAddr::from((Ipv4Addr::UNSPECIFIED, *port)),
                    None,
                    settings,
                )
                .map_err(fail)?,
                Err(e) => return Err(fail(e)),
            }
        }
        ListenAddr::AnyV6 { port } => bind_tcp(
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, *port)),
            Some(true),
            settings,
        )
        .map_err(fail)?,
        ListenAddr::Ip(addr) => {
            let only_v6 = addr.is_ipv6().then_some(true);
            bind_tcp(*addr, only_v6, settings).map_err(fail)?
        }
        ListenAddr::Unix(path) => bind_unix(path, settings).map_err(fail)?,
    };
    let tls = match &settings.tls {
        Some(t) => Some(Material::from_settings(t).map_err(|(_, e)| fail(io::Error::other(e)))?),
        None => None,
    };
    Ok(Bound {
        listener,
        settings: settings.clone(),
        local,
        tls,
        socket,
    })
}

fn v6_unavailable(e: &io::Error) -> bool {
    // EAFNOSUPPORT (97) and EADDRNOTAVAIL (99) on Linux: no IPv6 on this host.
    matches!(e.raw_os_error(), Some(97) | Some(99))
}

fn bind_tcp(
    addr: SocketAddr,
    only_v6: Option<bool>,
    settings: &SocketSettings,
) -> io::Result<(Listening, Local)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(v6) = only_v6 {
        socket.set_only_v6(v6)?;
    }
    // A restarted daemon must rebind at once, not after TIME_WAIT.
    socket.set_reuse_address(true)?;
    // Accepted sockets inherit these from the listener.
    if let Some(n) = settings.recv_buffer {
        socket.set_recv_buffer_size(n as usize)?;
    }
    if let Some(n) = settings.send_buffer {
        socket.set_send_buffer_size(n as usize)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog(settings.backlog))?;
    socket.set_nonblocking(true)?;
    let std: std::net::TcpListener = socket.into();
    let local = std.local_addr()?;
    let listener = TcpListener::try_from(std)?;
    Ok((Listening::Tcp(listener), Local::Tcp(local)))
}

fn backlog(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn bind_unix(path: &Path, settings: &SocketSettings) -> io::Result<(Listening, Local)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        // A socket nobody answers on is left over from a crash: reuse the path.
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process is listening on this socket",
                ));
            }
            Err(_) => std::fs::remove_file(path)?,
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(settings.file_mode))?;
    socket.listen(backlog(settings.backlog))?;
    socket.set_nonblocking(true)?;
    let std: std::os::unix::net::UnixListener = socket.into();
    let listener = UnixListener::try_from(std)?;
    Ok((
        Listening::Unix(listener, path.to_owned()),
        Local::Unix(path.to_owned()),
    ))
}

/// What a listener does with its connections.
pub trait Service: Send + Sync + 'static {
    /// Serves one connection until it ends or `shutdown` fires. `tls` is
    /// the socket's TLS, when configured: the service decides when the
    /// handshake happens (after INFO on msgcserver_listener, first on
    /// ECCluster_Listener).
    fn serve(
        self: Arc<Self>,
        conn: Conn,
        remote: Remote,
        local: Local,
        tls: Option<Material>,
        shutdown: Shutdown,
    ) -> futures_lite::future::Boxed<()>;

    /// Written to a connection refused because the socket is at its limit;
    /// `None`: closed without a word. `tls` says the socket has TLS.
    fn refusal(&self, tls: bool) -> Option<&'static [u8]>;
}

/// Live connections of one socket; shared with `status`.
pub type Gauge = Arc<AtomicUsize>;

/// Accepts until shutdown, spawning one task per connection.
pub async fn accept_loop(
    bound: Bound,
    service: Arc<dyn Service>,
    ex: Arc<smol::Executor<'static>>,
    shutdown: Shutdown,
    drain: DrainGuard,
    live: Gauge,
) {
    let limit = match bound.settings.max_connections {
        0 => usize::MAX,
        n => n as usize,
    };
    let nodelay = bound.settings.nodelay;
    let tls = bound.tls.clone();
    let name = bound.listener;
    let local = bound.local.clone();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = async {
            Some(match &bound.socket {
                Listening::Tcp(l) => l.accept().await.map(|(s, a)| {
                    if nodelay {
                        let _ = s.set_nodelay(true);
                    }
                    (Conn::Tcp(s), Remote::Tcp(a))
                }),
                Listening::Unix(l, _) => {
                    l.accept().await.map(|(s, _)| (Conn::Unix(s), Remote::Unix))
                }
            })
        }
        .or(async {
            shutdown.wait().await;
            None
        })
        .await;
        let (conn, remote) = match accepted {
            None => break,
            Some(Ok(c)) => {
                backoff = Duration::from_millis(5);
                c
            }
            Some(Err(e)) => {
                // EMFILE and friends: wait for descriptors to free up instead of spinning.
                log::warn!("{name} {local}: accept failed: {e}; retrying in {backoff:?}");
                smol::Timer::after(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let guard = drain.clone();
        if live.load(Ordering::Relaxed) >= limit {
            log::warn!("{name} {local}: refusing {remote}: at max_connections ({limit})");
            let refusal = service.refusal(tls.is_some());
            ex.spawn(async move {
                let mut conn = conn;
                match refusal {
                    Some(line) => conn.refuse(line).await,
                    None => conn.shutdown(),
                }
                drop(guard);
            })
            .detach();
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        log::debug!("{name} {local}: accepted {remote}");
        let fut = service
            .clone()
            .serve(conn, remote, local.clone(), tls.clone(), shutdown.clone());
        let live = live.clone();
        ex.spawn(async move {
            fut.await;
            live.fetch_sub(1, Ordering::Relaxed);
            drop(guard);
        })
        .detach();
    }
    if let Listening::Unix(_, path) = &bound.socket {
        let _ = std::fs::remove_file(path);
    }
}
