//! TLS for both listeners and the links between nodes (rustls with the ring
//! provider, through `futures-rustls`). A driver-level layer: it wraps an
//! accepted or dialled [`Conn`] in a TLS session and hands back a `Conn`, so
//! the protocol cores never see TLS. Behind the cargo feature `tls` (on by
//! default); without it [`Material::load`] always fails, so a configuration
//! that asks for TLS is refused and nothing below can be reached.
//!
//! What is checked where:
//! - [`check`] (handed to `config::load`, so `check` and `run` report errors
//!   with the option's position): the PEM files parse, the key matches the
//!   certificate, `tls_client_ca` holds at least one certificate. `config`
//!   reads the files; only this module parses them.
//! - the handshake: the acceptor asks for a client certificate per
//!   `tls_verify_mode` and verifies it against `tls_client_ca`; a dialler
//!   verifies the acceptor's certificate against `tls_client_ca` for the
//!   peer's host from `peers`.
//! - [`check_peer_name`]: after a link's handshake names the peer, its client
//!   certificate must be valid for that peer's `peers` host too.

use std::io;

use crate::net::Conn;

use crate::config::TlsSettings;
pub use crate::config::{TlsPart as Part, VerifyMode};

impl Material {
    /// A socket's TLS as configured (the files `config` read).
    pub fn from_settings(t: &TlsSettings) -> Result<Material, (Part, String)> {
        Material::load(
            &t.pem.certificate,
            &t.pem.key,
            t.pem.client_ca.as_deref(),
            t.verify_mode,
        )
    }

    /// The TLS a node dials other nodes with, from its listener's settings
    /// (checked when the configuration was loaded, so an error here is
    /// only logged).
    pub fn dialer_of(t: Option<&TlsSettings>) -> Option<ClientTls> {
        let t = t?;
        Material::from_settings(t)
            .map_err(|(_, e)| log::error!("TLS of {}: {e}", t.certificate.display()))
            .ok()?
            .dialer()
            .cloned()
    }
}

/// The [`crate::config::TlsCheck`] `config::load` runs on each socket's TLS.
pub fn check(t: &TlsSettings) -> Result<(), (Part, String)> {
    Material::from_settings(t).map(drop)
}

/// The first byte of a TLS record carrying a handshake (a ClientHello).
pub const HANDSHAKE_RECORD: u8 = 0x16;

#[cfg(feature = "tls")]
pub use enabled::*;

#[cfg(not(feature = "tls"))]
pub use disabled::*;

#[cfg(feature = "tls")]
mod enabled {
    use std::io;
    use std::net::IpAddr;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use futures_lite::{AsyncRead, AsyncWrite};
    use futures_rustls::rustls::{
        self, ClientConfig, RootCertStore, ServerConfig, crypto::CryptoProvider,
        server::WebPkiClientVerifier,
    };
    use futures_rustls::{TlsAcceptor, TlsConnector, TlsStream};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    use super::{Part, VerifyMode};
    use crate::net::Conn;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A listener's certificate, key and client CA, parsed and checked, with
    /// the rustls configurations built from them.
    #[derive(Clone)]
    pub struct Material {
        server: Arc<ServerConfig>,
        /// For dialling other nodes: their certificates must chain to
        /// `tls_client_ca`, and ours is presented. `None` without a client CA.
        dialer: Option<ClientTls>,
        verify: VerifyMode,
    }

    impl std::fmt::Debug for Material {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Material")
                .field("verify", &self.verify)
                .finish_non_exhaustive()
        }
    }

    /// A client-side TLS configuration (dialling nodes, the CLI tools).
    #[derive(Clone)]
    pub struct ClientTls(Arc<ClientConfig>);

    impl std::fmt::Debug for ClientTls {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ClientTls")
        }
    }

    fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{what}: not a PEM certificate file ({e})"))?;
        if certs.is_empty() {
            return Err(format!("{what}: no PEM certificate in the file"));
        }
        Ok(certs)
    }

    fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PEM private key in the file (PKCS#8, PKCS#1 or SEC1)".to_owned()
            }
            e => format!("not a PEM private key file ({e})"),
        })
    }

    fn roots(pem: &[u8]) -> Result<Arc<RootCertStore>, String> {
        let mut store = RootCertStore::empty();
        for c in certs(pem, "tls_client_ca")? {
            store
                .add(c)
                .map_err(|e| format!("a certificate in the file is not usable as a CA: {e}"))?;
        }
        Ok(Arc::new(store))
    }

    impl Material {
        /// Parses and checks a listener's PEM inputs (file contents).
        pub fn load(
            cert: &[u8],
            key_pem: &[u8],
            client_ca: Option<&[u8]>,
            verify: VerifyMode,
        ) -> Result<Material, (Part, String)> {
            let chain = certs(cert, "tls_certificate").map_err(|e| (Part::Certificate, e))?;
            let key = key(key_pem).map_err(|e| (Part::Key, e))?;
            let roots = client_ca
                .map(roots)
                .transpose()
                .map_err(|e| (Part::ClientCa, e))?;
            let builder = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| (Part::Certificate, e.to_string()))?;
            let builder = match (&roots, verify) {
                (Some(r), VerifyMode::Optional | VerifyMode::Require) => {
                    let v = WebPkiClientVerifier::builder_with_provider(r.clone(), provider());
                    let v = if verify == VerifyMode::Optional {
                        v.allow_unauthenticated()
                    } else {
                        v
                    };
                    let v = v.build().map_err(|e| (Part::ClientCa, e.to_string()))?;
                    builder.with_client_cert_verifier(v)
                }
                _ => builder.with_no_client_auth(),
            };
            let server = builder
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| {
                    (
                        Part::Key,
                        match e {
                            rustls::Error::InconsistentKeys(_) => {
                                "the key does not match the certificate of `tls_certificate`"
                                    .to_owned()
                            }
                            e => format!("unusable key or certificate: {e}"),
                        },
                    )
                })?;
            let dialer = match roots {
                Some(r) => Some(ClientTls(Arc::new(
                    ClientConfig::builder_with_provider(provider())
                        .with_safe_default_protocol_versions()
                        .map_err(|e| (Part::Certificate, e.to_string()))?
                        .with_root_certificates(r)
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| (Part::Key, e.to_string()))?,
                ))),
                None => None,
            };
            Ok(Material {
                server: Arc::new(server),
                dialer,
                verify,
            })
        }

        pub fn verify(&self) -> VerifyMode {
            self.verify
        }

        /// The configuration for dialling other nodes (needs `tls_client_ca`).
        pub fn dialer(&self) -> Option<&ClientTls> {
            self.dialer.as_ref()
        }
    }

    impl ClientTls {
        /// For the CLI tools: trust `ca` (PEM); present `cert_key` when given.
        pub fn new(ca: &[u8], cert_key: Option<(&[u8], &[u8])>) -> Result<ClientTls, String> {
            let roots = roots(ca)?;
            let b = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots);
            let cfg = match cert_key {
                Some((c, k)) => b
                    .with_client_auth_cert(certs(c, "certificate")?, key(k)?)
                    .map_err(|e| e.to_string())?,
                None => b.with_no_client_auth(),
            };
            Ok(ClientTls(Arc::new(cfg)))
        }
    }

    fn server_name(host: &str) -> io::Result<ServerName<'static>> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => Ok(ServerName::IpAddress(ip.into())),
            Err(_) => ServerName::try_from(host.to_owned())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e)),
        }
    }

    /// Bytes read before the handshake began (the peeked first byte), then the socket.
    #[derive(Debug)]
    pub struct Prefixed {
        prefix: Vec<u8>,
        conn: Conn,
    }

    impl AsyncRead for Prefixed {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let me = self.get_mut();
            if !me.prefix.is_empty() {
                let n = me.prefix.len().min(buf.len());
                buf[..n].copy_from_slice(&me.prefix[..n]);
                me.prefix.drain(..n);
                return Poll::Ready(Ok(n));
            }
            Pin::new(&mut me.conn).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Prefixed {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().conn).poll_write(cx, buf)
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().conn).poll_flush(cx)
        }
        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().conn).poll_close(cx)
        }
    }

    /// A TLS session over a socket. Clones share the session (one reader
    /// task, one writer task, as with a plain socket): each poll takes the
    /// lock for its own duration only, never across an `.await`.
    #[derive(Clone)]
    pub struct TlsConn {
        stream: Arc<Mutex<TlsStream<Prefixed>>>,
        /// The socket underneath, to shut it down without the lock.
        raw: Box<Conn>,
    }

    impl std::fmt::Debug for TlsConn {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TlsConn").field("raw", &self.raw).finish()
        }
    }

    impl TlsConn {
        fn lock(&self) -> std::sync::MutexGuard<'_, TlsStream<Prefixed>> {
            self.stream.lock().unwrap_or_else(|p| p.into_inner())
        }

        pub fn raw(&self) -> &Conn {
            &self.raw
        }

        /// The certificate the other end presented, if any.
        fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
            let s = self.lock();
            s.get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned())
        }
    }

    impl AsyncRead for TlsConn {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let mut s = self.lock();
            Pin::new(&mut *s).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for TlsConn {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let mut s = self.lock();
            Pin::new(&mut *s).poll_write(cx, buf)
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let mut s = self.lock();
            Pin::new(&mut *s).poll_flush(cx)
        }
        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let mut s = self.lock();
            Pin::new(&mut *s).poll_close(cx)
        }
    }

    /// The server side of a handshake on `conn`, whose first bytes (already
    /// read) are `prefix`. The caller bounds the time it may take.
    pub async fn accept(conn: Conn, tls: &Material, prefix: Vec<u8>) -> io::Result<Conn> {
        let raw = Box::new(conn.clone());
        let s = TlsAcceptor::from(tls.server.clone())
            .accept(Prefixed { prefix, conn })
            .await?;
        Ok(Conn::Tls(TlsConn {
            stream: Arc::new(Mutex::new(TlsStream::Server(s))),
            raw,
        }))
    }

    /// The client side: the other end's certificate must be valid for `host`
    /// (an IP address or a DNS name) and chain to the configured CA.
    pub async fn connect(conn: Conn, tls: &ClientTls, host: &str) -> io::Result<Conn> {
        let name = server_name(host)?;
        let raw = Box::new(conn.clone());
        let s = TlsConnector::from(tls.0.clone())
            .connect(
                name,
                Prefixed {
                    prefix: Vec::new(),
                    conn,
                },
            )
            .await?;
        Ok(Conn::Tls(TlsConn {
            stream: Arc::new(Mutex::new(TlsStream::Client(s))),
            raw,
        }))
    }

    /// On a TLS connection: the other end presented a certificate (which the
    /// handshake verified against `tls_client_ca`) that is valid for `host`,
    /// the node's host in `peers`. A plain connection passes.
    pub fn check_peer_name(conn: &Conn, host: &str) -> Result<(), String> {
        let Conn::Tls(t) = conn else { return Ok(()) };
        let Some(cert) = t.peer_certificate() else {
            return Err("no client certificate (peers must present one)".to_owned());
        };
        let name = server_name(host).map_err(|e| e.to_string())?;
        let ee = webpki::EndEntityCert::try_from(&cert)
            .map_err(|e| format!("unreadable client certificate: {e}"))?;
        ee.verify_is_valid_for_subject_name(&name)
            .map_err(|_| format!("its certificate is not valid for `{host}` (its host in peers)"))
    }
}

#[cfg(not(feature = "tls"))]
mod disabled {
    use std::convert::Infallible;
    use std::io;

    use super::{Part, VerifyMode};
    use crate::net::Conn;

    const NO_TLS: &str = "this ecclusterd was built without TLS (cargo feature `tls`)";

    /// Cannot exist in a build without TLS.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Material(Infallible);

    #[derive(Debug, Clone)]
    pub struct ClientTls(Infallible);

    /// Cannot exist in a build without TLS.
    #[derive(Debug, Clone)]
    pub struct TlsConn(Infallible);

    impl TlsConn {
        pub fn raw(&self) -> &Conn {
            match self.0 {}
        }
    }

    impl futures_lite::AsyncRead for TlsConn {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            match self.0 {}
        }
    }

    impl futures_lite::AsyncWrite for TlsConn {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            match self.0 {}
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            match self.0 {}
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            match self.0 {}
        }
    }

    impl Material {
        pub fn load(
            _: &[u8],
            _: &[u8],
            _: Option<&[u8]>,
            _: VerifyMode,
        ) -> Result<Material, (Part, String)> {
            Err((Part::Certificate, NO_TLS.to_owned()))
        }
        pub fn verify(&self) -> VerifyMode {
            match self.0 {}
        }
        pub fn dialer(&self) -> Option<&ClientTls> {
            match self.0 {}
        }
    }

    impl ClientTls {
        pub fn new(_: &[u8], _: Option<(&[u8], &[u8])>) -> Result<ClientTls, String> {
            Err(NO_TLS.to_owned())
        }
    }

    pub async fn accept(_: Conn, tls: &Material, _: Vec<u8>) -> io::Result<Conn> {
        match tls.0 {}
    }

    pub async fn connect(_: Conn, tls: &ClientTls, _: &str) -> io::Result<Conn> {
        match tls.0 {}
    }

    pub fn check_peer_name(conn: &Conn, _: &str) -> Result<(), String> {
        match conn {
            Conn::Tls(t) => match t.0 {},
            _ => Ok(()),
        }
    }
}

/// Reads the first byte after INFO on a TLS listener: a TLS client starts
/// its handshake; anything else is a plain client. Returns what was read.
pub async fn first_bytes(conn: &mut Conn) -> io::Result<Vec<u8>> {
    use futures_lite::AsyncReadExt;
    let mut b = [0u8; 1];
    let n = conn.read(&mut b).await?;
    Ok(b[..n].to_vec())
}
