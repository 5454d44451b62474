//! `Settings::describe`: what `ecclusterd check` prints.

use std::fmt::Write;
use std::time::Duration;

use super::settings::{BusSettings, ListenAddr, ListenerSettings, MsgcCommon, Settings};

impl Settings {
    /// A plain, readable summary of the resolved configuration.
    pub fn describe(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "node: {}", self.node);
        if let Some(a) = &self.nodeaddr {
            let _ = writeln!(o, "node address: {a}");
        }
        let _ = writeln!(o, "files read:");
        for f in &self.files {
            let _ = writeln!(o, "  {}", f.display());
        }
        listener(&mut o, &self.eccluster);
        listener(&mut o, &self.msgcserver);
        listener(&mut o, &self.http);

        let s = &self.server;
        let _ = writeln!(o, "msgc_server: {}, port {}", on(s.enabled), s.port);
        if s.peers.is_empty() {
            let _ = writeln!(o, "  peers: none (single node)");
        } else {
            let _ = writeln!(o, "  peers:");
            for p in &s.peers {
                let host = if p.host.contains(':') {
                    format!("[{}]", p.host)
                } else {
                    p.host.clone()
                };
                let me = if p.name == self.node {
                    "  (this node)"
                } else {
                    ""
                };
                let _ = writeln!(o, "    {} {}:{}{me}", p.name, host, p.port);
            }
        }
        common(&mut o, &s.common);
        bus(&mut o, &s.bus);

        let c = &self.client;
        let _ = writeln!(o, "msgc_client: {}", on(c.enabled));
        let _ = writeln!(o, "  servers: {}", c.servers.join(" "));
        if let Some(b) = &c.bind_address {
            let _ = writeln!(o, "  bind_address: {b}");
        }
        common(&mut o, &c.common);
        o
    }
}

fn on(b: bool) -> &'static str {
    if b { "enabled" } else { "disabled" }
}

fn listener(o: &mut String, l: &ListenerSettings) {
    if l.sockets.is_empty() {
        let _ = writeln!(o, "{}: not listening", l.name);
        return;
    }
    let _ = writeln!(o, "{}:", l.name);
    for s in &l.sockets {
        let buf = |b: Option<u32>| b.map_or("OS".to_owned(), |n| n.to_string());
        let max = match s.max_connections {
            0 => "unlimited".to_owned(),
            n => n.to_string(),
        };
        let _ = write!(
            o,
            "  {}  backlog {}, nodelay {}, recv buffer {}, send buffer {}, max connections {}",
            s.addr,
            s.backlog,
            s.nodelay,
            buf(s.recv_buffer),
            buf(s.send_buffer),
            max
        );
        if matches!(s.addr, ListenAddr::Unix(_)) {
            let _ = write!(o, ", file mode {:04o}", s.file_mode);
        }
        let _ = writeln!(o, "  [{}]", s.origin);
        if let Some(t) = &s.tls {
            let _ = writeln!(
                o,
                "    TLS: certificate {}, key {}, client CA {}, verify {}",
                t.certificate.display(),
                t.key.display(),
                t.client_ca
                    .as_ref()
                    .map_or("none".to_owned(), |p| p.display().to_string()),
                t.verify_mode.as_str()
            );
        }
    }
    if let Some(d) = &l.incoming_dir {
        let _ = writeln!(o, "  incoming_dir: {}", d.display());
        let _ = writeln!(o, "  transfer_window: {} bytes", l.transfer_window);
    }
}

fn bus(o: &mut String, b: &BusSettings) {
    let subs = match b.max_subscriptions {
        0 => "unlimited".to_owned(),
        n => n.to_string(),
    };
    let _ = writeln!(
        o,
        "  clients: max_payload {}, max_control_line {}, max_pending {}, max_subscriptions {}, auth {}",
        b.max_payload,
        b.max_control_line,
        b.max_pending,
        subs,
        match (&b.auth_token, b.users.len()) {
            (None, 0) => "none".to_owned(),
            (Some(_), 0) => "token".to_owned(),
            (None, n) => format!("{n} user(s)"),
            (Some(_), n) => format!("token or {n} user(s)"),
        }
    );
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn common(o: &mut String, c: &MsgcCommon) {
    let _ = writeln!(
        o,
        "  connect_timeout {}, idle_timeout {}, keepalive_interval {}, reconnect_interval {}",
        secs(c.connect_timeout),
        secs(c.idle_timeout),
        secs(c.keepalive_interval),
        secs(c.reconnect_interval)
    );
    let _ = writeln!(
        o,
        "  max_backlog {}, messages_per_iter {}, tcpbuf_size {}, debug_level {}",
        c.max_backlog, c.messages_per_iter, c.tcpbuf_size, c.debug_level
    );
}
