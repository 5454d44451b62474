//! Typed scopes → [`Settings`]: defaults, Listen → listener → default
//! fallback, address parsing, node identity and cross-checks. Takes its
//! inputs as arguments (no environment reads) so it is testable.

use std::time::Duration;

use super::Identity;
use super::de::{Seconds, Spanned};
use super::diag::{Diag, Files, Pos};
use super::listen_addr::{LISTEN_FORMS, parse_host_port, parse_listen};
use super::schema::{Config, ListenOpts, Listener, MsgcClient, MsgcServer};
use std::path::PathBuf;

use super::settings::{
    BusSettings, ListenAddr, ListenerSettings, MsgcClientSettings, MsgcCommon, MsgcServerSettings,
    Peer, Permissions, Settings, SocketSettings, TRANSFER_WINDOW, TRANSFER_WINDOW_RANGE, TlsCheck,
    TlsPart, TlsPem, TlsSettings, VerifyMode,
};

/// Momentum's debug levels.
pub(crate) const DEBUG_LEVELS: [&str; 6] =
    ["DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"];

/// Default sockets when a listener scope is absent (Momentum's ports).
const ECCLUSTER_DEFAULT: ListenAddr = ListenAddr::Any { port: 4802 };
const MSGCSERVER_DEFAULT: ListenAddr = ListenAddr::Any { port: 4809 };

pub(crate) fn resolve(
    cfg: Config,
    id: &Identity,
    files: &Files,
    check_tls: TlsCheck,
) -> Result<Settings, Diag> {
    let cluster = cfg.cluster.unwrap_or_default();
    if let Some(d) = cluster.debug_level.clone() {
        debug_level(Some(d))?;
    }
    let node = node_name(id, cluster.nodename.as_ref())?;

    let msgc_server = cfg.msgc_server.unwrap_or_default();
    let secret_file = msgc_server.secret_file.as_ref().map(|f| {
        // Relative to the folder of the file that names it, as includes are.
        (relative(files, f), files.origin(f.pos))
    });
    let mut server = server(msgc_server, &node)?;
    server.0.secret_file = secret_file;
    let has_peers = server.0.peers.iter().any(|p| p.name != node);

    let mut seen: Vec<(ListenAddr, Pos)> = Vec::new();
    let eccluster = listener(
        "ECCluster_Listener",
        cfg.eccluster_listener.as_ref(),
        Some(ECCLUSTER_DEFAULT),
        files,
        &mut seen,
        has_peers,
        check_tls,
    )?;
    let msgcserver = listener(
        "msgcserver_listener",
        cfg.msgcserver_listener.as_ref(),
        Some(MSGCSERVER_DEFAULT),
        files,
        &mut seen,
        has_peers,
        check_tls,
    )?;
    // Off unless configured: a scope without `Listen` binds nothing.
    let http = listener(
        "HTTP_Listener",
        cfg.http_listener.as_ref(),
        None,
        files,
        &mut seen,
        has_peers,
        check_tls,
    )?;
    check_port(
        &server,
        &node,
        &msgcserver,
        cfg.msgcserver_listener.as_ref(),
    )?;
    let client = client(cfg.msgc_client.unwrap_or_default(), server.0.port)?;

    Ok(Settings {
        node,
        nodeaddr: cluster.nodeaddr,
        eccluster,
        msgcserver,
        http,
        server: server.0,
        client,
        files: files.paths(),
    })
}

/// `--node`, `cluster { nodename }`, `EC_NODE_NAME`, host name up to the first dot.
fn node_name(id: &Identity, nodename: Option<&Spanned<String>>) -> Result<String, Diag> {
    let (name, pos) = if let Some(n) = &id.cli_node {
        (n.clone(), None)
    } else if let Some(n) = nodename {
        (n.value.clone(), Some(n.pos))
    } else if let Some(n) = &id.env_node {
        (n.clone(), None)
    } else if let Some(h) = &id.hostname {
        (h.split('.').next().unwrap_or_default().to_owned(), None)
    } else {
        return Err(Diag::new(
            "cannot tell this node's name: give `--node`, set `cluster { nodename = ... }` or EC_NODE_NAME",
        ));
    };
    let name = name.trim().to_lowercase();
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        let d = Diag::new(format!("node name `{name}` must be a non-empty word"));
        return Err(match pos {
            Some(p) => d.with_pos(p),
            None => d,
        });
    }
    Ok(name)
}

fn debug_level(d: Option<Spanned<String>>) -> Result<String, Diag> {
    let Some(d) = d else {
        return Ok("ERROR".to_owned());
    };
    let up = d.value.to_ascii_uppercase();
    if DEBUG_LEVELS.contains(&up.as_str()) {
        Ok(up)
    } else {
        Err(Diag::at(
            format!(
                "`debug_level` must be one of {}, found `{}`",
                DEBUG_LEVELS.join(" "),
                d.value
            ),
            d.pos,
        ))
    }
}

/// An option that holds for the whole listener: set on it, else on the
/// first `Listen` scope that sets it.
fn listener_wide<'a, T>(
    l: &'a Listener,
    own: Option<&'a T>,
    on_listen: impl Fn(&'a ListenOpts) -> Option<&'a T>,
) -> Option<&'a T> {
    own.or_else(|| {
        l.listen
            .iter()
            .flat_map(|n| n.0.iter())
            .find_map(|(_, o)| on_listen(o))
    })
}

/// A listener scope's settings; without the scope, one socket at `default`
/// (none when `default` is `None`: the listener is off unless configured).
fn listener(
    name: &'static str,
    scope: Option<&Spanned<Listener>>,
    default: Option<ListenAddr>,
    files: &Files,
    seen: &mut Vec<(ListenAddr, Pos)>,
    has_peers: bool,
    check_tls: TlsCheck,
) -> Result<ListenerSettings, Diag> {
    let Some(scope) = scope else {
        let none = ListenOpts::default();
        let parent = Listener::default();
        return Ok(ListenerSettings {
            name,
            sockets: default
                .into_iter()
                .map(|addr| socket(addr, &none, &parent, "<default>".to_owned(), None))
                .collect(),
            incoming_dir: None,
            transfer_window: TRANSFER_WINDOW,
        });
    };
    let l = &scope.value;
    let mut sockets = Vec::new();
    for (inst, opts) in l.listen.iter().flat_map(|n| n.0.iter()) {
        let addr = parse_listen(&inst.value).map_err(|why| {
            Diag::at(format!("bad `Listen` address in `{name}`: {why}"), inst.pos)
                .help(format!("accepted forms: {LISTEN_FORMS}"))
        })?;
        let enabled = opts.enable.or(l.enable).unwrap_or(true) && l.enable.unwrap_or(true);
        if !enabled {
            continue;
        }
        // Port 0 binds a fresh ephemeral port each time, so it never clashes.
        let ephemeral = matches!(&addr, ListenAddr::Ip(a) if a.port() == 0)
            || matches!(
                &addr,
                ListenAddr::Any { port: 0 } | ListenAddr::AnyV6 { port: 0 }
            );
        if let Some((_, first)) = seen.iter().find(|(a, _)| *a == addr && !ephemeral) {
            return Err(Diag::at(
                format!(
                    "`Listen \"{}\"` is configured twice (first at line {}, column {})",
                    inst.value, first.line, first.col
                ),
                inst.pos,
            ));
        }
        seen.push((addr.clone(), inst.pos));
        let tls = tls(name, opts, l, files, has_peers, check_tls)?;
        sockets.push(socket(addr, opts, l, files.origin(inst.key), tls));
    }
    let dir = listener_wide(l, l.incoming_dir.as_ref(), |o| o.incoming_dir.as_ref());
    let incoming_dir = match dir {
        None => None,
        Some(d) if std::path::Path::new(&d.value).is_absolute() => {
            Some(std::path::PathBuf::from(&d.value))
        }
        Some(d) => {
            return Err(Diag::at(
                format!(
                    "`incoming_dir` must be an absolute path, found \"{}\"",
                    d.value
                ),
                d.pos,
            ));
        }
    };
    let window = listener_wide(l, l.transfer_window.as_ref(), |o| {
        o.transfer_window.as_ref()
    });
    let transfer_window = match window {
        None => TRANSFER_WINDOW,
        Some(w) if TRANSFER_WINDOW_RANGE.contains(&w.value) => w.value,
        Some(w) => {
            return Err(Diag::at(
                format!(
                    "`transfer_window` must be from {} to {} bytes, found {}",
                    TRANSFER_WINDOW_RANGE.start(),
                    TRANSFER_WINDOW_RANGE.end(),
                    w.value
                ),
                w.pos,
            ));
        }
    };
    Ok(ListenerSettings {
        name,
        sockets,
        incoming_dir,
        transfer_window,
    })
}

/// One socket's options: Listen, else listener, else default.
fn socket(
    addr: ListenAddr,
    o: &ListenOpts,
    l: &Listener,
    origin: String,
    tls: Option<TlsSettings>,
) -> SocketSettings {
    // Momentum documents 4096 for its SMTP-era listeners; a bus capped by
    // 4 KiB socket buffers moves a few MB/s, so unset means the kernel's
    // autotuning here (documented in README).
    let buf = |v: Option<u32>| match v.unwrap_or(0) {
        0 => None,
        n => Some(n),
    };
    SocketSettings {
        addr,
        backlog: o.listen_backlog.or(l.listen_backlog).unwrap_or(500),
        // Momentum's default is false, but both protocols batch their own
        // writes, so Nagle would only add delayed-ACK stalls (40 ms) to replies.
        nodelay: o
            .disable_nagle_algorithm
            .or(l.disable_nagle_algorithm)
            .unwrap_or(true),
        recv_buffer: buf(o.tcp_recv_buffer_size.or(l.tcp_recv_buffer_size)),
        send_buffer: buf(o.tcp_send_buffer_size.or(l.tcp_send_buffer_size)),
        file_mode: o.file_mode.or(l.file_mode).map_or(0o660, |m| m.0),
        max_connections: o.max_connections.or(l.max_connections).unwrap_or(10_000),
        tls,
        origin,
    }
}

/// A path option, relative to the folder of the file that names it (as includes are).
fn relative(files: &Files, f: &Spanned<String>) -> PathBuf {
    let written = PathBuf::from(&f.value);
    match files.path(f.pos.file).and_then(|p| p.parent()) {
        Some(dir) if written.is_relative() => dir.join(written),
        _ => written,
    }
}

/// One socket's TLS options (Listen, else listener), read and checked.
fn tls(
    name: &str,
    o: &ListenOpts,
    l: &Listener,
    files: &Files,
    has_peers: bool,
    check_tls: TlsCheck,
) -> Result<Option<TlsSettings>, Diag> {
    let cert = o.tls_certificate.as_ref().or(l.tls_certificate.as_ref());
    let key = o.tls_key.as_ref().or(l.tls_key.as_ref());
    let ca = o.tls_client_ca.as_ref().or(l.tls_client_ca.as_ref());
    let mode = o.tls_verify_mode.as_ref().or(l.tls_verify_mode.as_ref());
    let (cert, key) = match (cert, key) {
        (None, None) => {
            if let Some(x) = ca.or(mode) {
                return Err(Diag::at(
                    "TLS options need `tls_certificate` and `tls_key` on this listener or Listen",
                    x.key,
                ));
            }
            return Ok(None);
        }
        (Some(c), None) => {
            return Err(Diag::at("`tls_certificate` needs `tls_key` too", c.key));
        }
        (None, Some(k)) => {
            return Err(Diag::at("`tls_key` needs `tls_certificate` too", k.key));
        }
        (Some(c), Some(k)) => (c, k),
    };
    let verify_mode = match mode {
        None if ca.is_some() => VerifyMode::Optional,
        None => VerifyMode::None,
        Some(m) => VerifyMode::parse(&m.value).ok_or_else(|| {
            Diag::at(
                format!(
                    "`tls_verify_mode` must be one of {}, found `{}`",
                    VerifyMode::VALUES,
                    m.value
                ),
                m.pos,
            )
        })?,
    };
    if verify_mode != VerifyMode::None && ca.is_none() {
        let pos = mode.map_or(cert.key, |m| m.pos);
        return Err(Diag::at(
            format!(
                "`tls_verify_mode = {}` needs `tls_client_ca` (the CA client certificates must chain to)",
                verify_mode.as_str()
            ),
            pos,
        ));
    }
    if has_peers && (ca.is_none() || verify_mode == VerifyMode::None) {
        let pos = mode.map_or(cert.key, |m| m.pos);
        return Err(Diag::at(
            format!(
                "TLS on `{name}` of a node with peers needs `tls_client_ca` and `tls_verify_mode` optional or require: nodes verify each other's certificates against it"
            ),
            pos,
        ));
    }
    let read = |f: &Spanned<String>, what: &str| {
        let path = relative(files, f);
        std::fs::read(&path)
            .map(|b| (path.clone(), b))
            .map_err(|e| {
                Diag::at(
                    format!("cannot read `{what}` file {}: {e}", path.display()),
                    f.pos,
                )
            })
    };
    let (cert_path, cert_pem) = read(cert, "tls_certificate")?;
    let (key_path, key_pem) = read(key, "tls_key")?;
    let ca = ca
        .map(|c| read(c, "tls_client_ca").map(|r| (c, r)))
        .transpose()?;
    let settings = TlsSettings {
        certificate: cert_path,
        key: key_path,
        client_ca: ca.as_ref().map(|(_, (p, _))| p.clone()),
        verify_mode,
        pem: TlsPem {
            certificate: cert_pem,
            key: key_pem,
            client_ca: ca.as_ref().map(|(_, (_, b))| b.clone()),
        },
    };
    check_tls(&settings).map_err(|(part, why)| {
        let pos = match part {
            TlsPart::Certificate => cert.pos,
            TlsPart::Key => key.pos,
            TlsPart::ClientCa => ca.as_ref().map_or(cert.pos, |(c, _)| c.pos),
        };
        Diag::at(why, pos)
    })?;
    Ok(Some(settings))
}

macro_rules! common {
    ($s:expr) => {{
        let d = MsgcCommon::default();
        let t = |v: Option<Seconds>, d: Duration| v.map_or(d, |s| s.0);
        MsgcCommon {
            connect_timeout: t($s.connect_timeout, d.connect_timeout),
            idle_timeout: t($s.idle_timeout, d.idle_timeout),
            keepalive_interval: t($s.keepalive_interval, d.keepalive_interval),
            max_backlog: $s.max_backlog.unwrap_or(d.max_backlog),
            messages_per_iter: $s.messages_per_iter.unwrap_or(d.messages_per_iter),
            reconnect_interval: t($s.reconnect_interval, d.reconnect_interval),
            tcpbuf_size: $s.tcpbuf_size.unwrap_or(d.tcpbuf_size),
            debug_level: debug_level($s.debug_level.clone())?,
        }
    }};
}

/// ecclusterd's client-side limits and credentials on `msgc_server`.
fn bus(s: &MsgcServer) -> Result<BusSettings, Diag> {
    let d = BusSettings::default();
    let positive = |v: &Option<Spanned<u64>>, name: &str, default: usize, min: u64| match v {
        None => Ok(default),
        Some(x) if x.value < min => Err(Diag::at(
            format!("`{name}` must be at least {min}, found `{}`", x.value),
            x.pos,
        )),
        Some(x) => Ok(usize::try_from(x.value).unwrap_or(usize::MAX)),
    };
    let users = match &s.users {
        None => Vec::new(),
        Some(dict) => dict
            .value
            .0
            .iter()
            .map(|(u, p)| (u.value.clone(), p.value.clone()))
            .collect(),
    };
    let mut permissions = Vec::new();
    for (user, p) in s.permissions.iter().flat_map(|n| n.0.iter()) {
        if !users.iter().any(|(u, _)| *u == user.value) {
            return Err(Diag::at(
                format!("permissions for `{}`, who is not in `users`", user.value),
                user.pos,
            ));
        }
        let list = |v: &Option<Vec<Spanned<String>>>| -> Result<Vec<String>, Diag> {
            v.iter()
                .flatten()
                .map(|s| {
                    if crate::subject::valid_subject(&s.value, true) {
                        Ok(s.value.clone())
                    } else {
                        Err(Diag::at(
                            format!("`{}` is not a subject pattern", s.value),
                            s.pos,
                        ))
                    }
                })
                .collect()
        };
        permissions.push((
            user.value.clone(),
            Permissions {
                publish: list(&p.publish)?,
                publish_deny: list(&p.publish_deny)?,
                subscribe: list(&p.subscribe)?,
                subscribe_deny: list(&p.subscribe_deny)?,
            },
        ));
    }
    if let Some(t) = &s.auth_token
        && t.value.is_empty()
    {
        return Err(Diag::at("`auth_token` is empty", t.pos)
            .help("remove it to let clients in without a token"));
    }
    Ok(BusSettings {
        // A payload limit below 1 byte or a control line shorter than a
        // `PUB x 0` frame would make the bus unusable.
        max_payload: positive(&s.max_payload, "max_payload", d.max_payload, 1)?,
        max_control_line: positive(
            &s.max_control_line,
            "max_control_line",
            d.max_control_line,
            32,
        )?,
        max_pending: positive(&s.max_pending, "max_pending", d.max_pending, 1024)?,
        max_subscriptions: positive(
            &s.max_subscriptions,
            "max_subscriptions",
            d.max_subscriptions,
            0,
        )?,
        auth_token: s.auth_token.as_ref().map(|t| t.value.clone()),
        users,
        permissions,
    })
}

/// The resolved server, and where `port` was written (if it was).
fn server(s: MsgcServer, node: &str) -> Result<(MsgcServerSettings, Option<Pos>), Diag> {
    let common = common!(s);
    let port = match &s.port {
        Some(p) if p.value == 0 => {
            return Err(Diag::at(
                "`port` expects a port from 1 to 65535, found `0`",
                p.pos,
            ));
        }
        Some(p) => p.value,
        None => 4809,
    };
    let mut peers: Vec<Peer> = Vec::new();
    let mut seen: Vec<(String, Pos)> = Vec::new();
    if let Some(dict) = &s.peers {
        for (name, addr) in &dict.value.0 {
            if name.value != name.value.to_lowercase() {
                return Err(Diag::at(
                    format!(
                        "peer names must be lower-case (Momentum requires it): `{}`",
                        name.value
                    ),
                    name.pos,
                )
                .help(format!("write `{}`", name.value.to_lowercase())));
            }
            if name.value.is_empty() {
                return Err(Diag::at("peer name is empty", name.pos));
            }
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name.value) {
                return Err(Diag::at(
                    format!(
                        "duplicate peer `{}` (first at line {}, column {})",
                        name.value, first.line, first.col
                    ),
                    name.pos,
                ));
            }
            seen.push((name.value.clone(), name.pos));
            let (host, p) = parse_host_port(&addr.value).map_err(|why| {
                Diag::at(
                    format!("bad address for peer `{}`: {why}", name.value),
                    addr.pos,
                )
                .help("write `\"host\"`, `\"host:port\"` or `\"[IPv6]:port\"`")
            })?;
            peers.push(Peer {
                name: name.value.clone(),
                host,
                port: p.unwrap_or(port),
            });
        }
        if !peers.is_empty() && !peers.iter().any(|p| p.name == node) {
            let names: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
            return Err(Diag::at(
                format!(
                    "this node `{node}` is not in `peers` (which has: {})",
                    names.join(", ")
                ),
                dict.key,
            )
            .help("add it to `peers`, or name the node with `--node`, `cluster { nodename }` or EC_NODE_NAME"));
        }
    }
    Ok((
        MsgcServerSettings {
            enabled: s.enabled.unwrap_or(true),
            peers,
            port,
            common,
            bus: bus(&s)?,
            secret_file: None,
        },
        s.port.as_ref().map(|p| p.key),
    ))
}

/// Momentum: msgc_server `port` must match the msgcserver_listener Listen
/// port, since that is where peers dial. What peers dial is this node's own
/// `peers` entry, so that is what is checked; a standalone node (no peers)
/// with no `port` written may listen anywhere, an ephemeral port included.
fn check_port(
    server: &(MsgcServerSettings, Option<Pos>),
    node: &str,
    listener: &ListenerSettings,
    scope: Option<&Spanned<Listener>>,
) -> Result<(), Diag> {
    let ports: Vec<u16> = listener
        .sockets
        .iter()
        .filter_map(|s| match &s.addr {
            ListenAddr::Any { port } | ListenAddr::AnyV6 { port } => Some(*port),
            ListenAddr::Ip(a) => Some(a.port()),
            ListenAddr::Unix(_) => None,
        })
        .collect();
    let own = server.0.peers.iter().find(|p| p.name == node);
    if own.is_none() && server.1.is_none() {
        return Ok(());
    }
    let port = own.map_or(server.0.port, |p| p.port);
    if ports.is_empty() || ports.contains(&port) {
        return Ok(());
    }
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let (msg, pos) = match server.1 {
        Some(p) => (
            format!(
                "msgc_server `port = {port}` must match a `msgcserver_listener` Listen port (it listens on {})",
                list.join(", ")
            ),
            Some(p),
        ),
        None => (
            format!(
                "`msgcserver_listener` listens on {} but msgc_server uses port {port} (the default): they must match",
                list.join(", ")
            ),
            scope.map(|s| s.key),
        ),
    };
    let d = Diag::new(msg).help("set `msgc_server { port = ... }` to the Listen port");
    Err(match pos {
        Some(p) => d.with_pos(p),
        None => d,
    })
}

fn client(c: MsgcClient, port: u16) -> Result<MsgcClientSettings, Diag> {
    let common = common!(c);
    let servers = match &c.server {
        None => vec![format!("127.0.0.1:{port}")],
        Some(list) if list.value.is_empty() => {
            return Err(Diag::at(
                "`server` needs at least one \"host:port\"",
                list.pos,
            ));
        }
        Some(list) => list
            .value
            .iter()
            .map(|s| {
                let (host, p) = parse_host_port(&s.value).map_err(|why| {
                    Diag::at(format!("bad msgc_client `server`: {why}"), s.pos)
                        .help("write `\"host:port\"` or `\"[IPv6]:port\"`")
                })?;
                let p = p.unwrap_or(port);
                Ok(if host.contains(':') {
                    format!("[{host}]:{p}")
                } else {
                    format!("{host}:{p}")
                })
            })
            .collect::<Result<Vec<_>, Diag>>()?,
    };
    Ok(MsgcClientSettings {
        enabled: c.enabled.unwrap_or(true),
        servers,
        bind_address: c.bind_address,
        common,
    })
}
