//! `Listen` addresses and `host[:port]` values as Momentum writes them.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use super::settings::ListenAddr;

/// What a `Listen` accepts, for error messages.
pub(crate) const LISTEN_FORMS: &str = "`*:PORT`, `:PORT`, `[*]:PORT`, `[::]:PORT`, `IPv4:PORT`, `[IPv6]:PORT` or an absolute Unix socket path such as `/run/ecclusterd.sock`";

/// Parses `"*:4802"`, `":4809"`, `"[*]:4802"`, `"[::]:4802"`,
/// `"1.2.3.4:4802"`, `"[::1]:4802"`, `"/path"`. Host names are refused:
/// Momentum documents none, and binding must not depend on DNS. Port 0 asks
/// the kernel for a free port (the bound one is logged): for tests and for
/// standalone nodes nobody dials.
pub(crate) fn parse_listen(s: &str) -> Result<ListenAddr, String> {
    if s.starts_with('/') {
        return Ok(ListenAddr::Unix(PathBuf::from(s)));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("`{s}` has no port"));
    };
    let port = match port {
        "0" => 0,
        p => parse_port(p).ok_or_else(|| format!("bad port in `{s}`"))?,
    };
    match host {
        "" | "*" => Ok(ListenAddr::Any { port }),
        "[*]" | "[::]" => Ok(ListenAddr::AnyV6 { port }),
        _ => {
            if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                let ip: Ipv6Addr = inner
                    .parse()
                    .map_err(|_| format!("`{inner}` is not an IPv6 address"))?;
                if ip.is_unspecified() {
                    return Ok(ListenAddr::AnyV6 { port });
                }
                Ok(ListenAddr::Ip(SocketAddr::new(IpAddr::V6(ip), port)))
            } else if host.contains(':') {
                Err(format!(
                    "IPv6 addresses must be in brackets: `[{host}]:{port}`"
                ))
            } else {
                let ip: std::net::Ipv4Addr = host.parse().map_err(|_| {
                    format!("`{host}` is not an IP address (host names are not accepted here)")
                })?;
                Ok(ListenAddr::Ip(SocketAddr::new(IpAddr::V4(ip), port)))
            }
        }
    }
}

/// A decimal port 1..=65535.
pub(crate) fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 literal.
/// Returns the host without brackets and the port if written.
pub(crate) fn parse_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let bad_host = |h: &str| {
        h.is_empty()
            || h.chars()
                .any(|c| c.is_whitespace() || c.is_control() || "/[]@".contains(c))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: missing `]`"))?;
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("`{inner}` is not an IPv6 address"))?;
        return match after {
            "" => Ok((inner.to_owned(), None)),
            _ => match after.strip_prefix(':').and_then(parse_port) {
                Some(p) => Ok((inner.to_owned(), Some(p))),
                None => Err(format!("bad port in `{s}`")),
            },
        };
    }
    if s.parse::<Ipv6Addr>().is_ok() {
        return Ok((s.to_owned(), None));
    }
    match s.split_once(':') {
        None if !bad_host(s) => Ok((s.to_owned(), None)),
        Some((h, p)) if !bad_host(h) => match parse_port(p) {
            Some(p) => Ok((h.to_owned(), Some(p))),
            None => Err(format!("bad port in `{s}`")),
        },
        _ => Err(format!("`{s}` is not a host name or address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(parse_listen("*:4802"), Ok(ListenAddr::Any { port: 4802 }));
        assert_eq!(parse_listen(":4809"), Ok(ListenAddr::Any { port: 4809 }));
        assert_eq!(
            parse_listen("[*]:4802"),
            Ok(ListenAddr::AnyV6 { port: 4802 })
        );
        assert_eq!(parse_listen("[::]:25"), Ok(ListenAddr::AnyV6 { port: 25 }));
        assert_eq!(
            parse_listen("[0:0:0:0:0:0:0:0]:25"),
            Ok(ListenAddr::AnyV6 { port: 25 })
        );
        assert_eq!(
            parse_listen("1.2.3.4:4802"),
            Ok(ListenAddr::Ip("1.2.3.4:4802".parse().unwrap()))
        );
        assert_eq!(
            parse_listen("[::1]:4802"),
            Ok(ListenAddr::Ip("[::1]:4802".parse().unwrap()))
        );
        assert_eq!(
            parse_listen("[::C0A8:1]:25"),
            Ok(ListenAddr::Ip("[::c0a8:1]:25".parse().unwrap()))
        );
        assert_eq!(
            parse_listen("127.0.0.1:0"),
            Ok(ListenAddr::Ip("127.0.0.1:0".parse().unwrap()))
        );
        assert_eq!(
            parse_listen("/tmp/x"),
            Ok(ListenAddr::Unix("/tmp/x".into()))
        );
        for bad in [
            "4802",
            "*",
            "*:",
            "*:00",
            "*:65536",
            "*:x",
            "localhost:4802",
            "::1:4802",
            "[::1]",
            "[zz]:1",
            "1.2.3:4",
            "*:+1",
            "",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(parse_host_port("10.0.0.1"), Ok(("10.0.0.1".into(), None)));
        assert_eq!(
            parse_host_port("a.example:99"),
            Ok(("a.example".into(), Some(99)))
        );
        assert_eq!(parse_host_port("[::1]:5"), Ok(("::1".into(), Some(5))));
        assert_eq!(parse_host_port("fe80::1"), Ok(("fe80::1".into(), None)));
        for bad in ["", ":5", "h:", "h:0", "[::1", "[x]:1", "a b", "h:1:2"] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
    }
}
