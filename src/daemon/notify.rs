//! systemd's readiness protocol (`sd_notify`): one datagram to the socket in
//! `$NOTIFY_SOCKET` says `READY=1` once every socket is bound and served,
//! `RELOADING=1` then `READY=1` around a SIGHUP, and `STOPPING=1` at
//! shutdown, so a `Type=notify` unit starts its dependents only once the
//! node serves. Without the variable (not under systemd) nothing is sent.

use std::os::unix::net::UnixDatagram;

/// Tells the service manager `state`; a failure is logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|sock| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket: `@` stands for the leading NUL.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr)
            }
            None => sock.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        log::warn!(
            "cannot tell the service manager {state} (NOTIFY_SOCKET {}): {e}",
            path.to_string_lossy()
        );
    }
}
