//! SIGHUP: re-read the configuration and say what changed. A bad file is
//! reported and the running configuration kept.

use crate::config::{self, ConfigPath, Identity, Settings};

/// Returns the configuration to keep running on.
pub fn reload(path: &ConfigPath, identity: &Identity, current: Settings) -> Settings {
    log::info!("SIGHUP: re-reading the configuration");
    match config::load(path, identity, &crate::net::tls::check) {
        Err(e) => {
            log::error!("configuration not reloaded, keeping the running one:\n{e}");
            current
        }
        Ok(new) => {
            let changes = changes(&current, &new);
            if changes.is_empty() {
                log::info!("configuration unchanged");
            } else {
                for c in &changes {
                    log::info!("configuration change: {c}");
                }
                log::warn!(
                    "{} change(s) read; listeners and peers take effect at the next restart",
                    changes.len()
                );
            }
            new
        }
    }
}

/// One human-readable line per difference an operator would care about.
pub fn changes(old: &Settings, new: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    if old.node != new.node {
        out.push(format!("node name {} -> {}", old.node, new.node));
    }
    if old.nodeaddr != new.nodeaddr {
        out.push(format!("nodeaddr {:?} -> {:?}", old.nodeaddr, new.nodeaddr));
    }
    for (o, n) in [
        (&old.eccluster, &new.eccluster),
        (&old.msgcserver, &new.msgcserver),
        (&old.http, &new.http),
    ] {
        for s in &n.sockets {
            match o.sockets.iter().find(|x| x.addr == s.addr) {
                None => out.push(format!("{}: Listen \"{}\" added", n.name, s.addr)),
                Some(x) if x != s => {
                    out.push(format!("{}: Listen \"{}\" options changed", n.name, s.addr))
                }
                Some(_) => {}
            }
        }
        for s in &o.sockets {
            if !n.sockets.iter().any(|x| x.addr == s.addr) {
                out.push(format!("{}: Listen \"{}\" removed", o.name, s.addr));
            }
        }
    }
    for p in &new.server.peers {
        match old.server.peers.iter().find(|x| x.name == p.name) {
            None => out.push(format!("peer {} added ({}:{})", p.name, p.host, p.port)),
            Some(x) if x != p => out.push(format!(
                "peer {} moved {}:{} -> {}:{}",
                p.name, x.host, x.port, p.host, p.port
            )),
            Some(_) => {}
        }
    }
    for p in &old.server.peers {
        if !new.server.peers.iter().any(|x| x.name == p.name) {
            out.push(format!("peer {} removed", p.name));
        }
    }
    if old.server.common != new.server.common || old.server.port != new.server.port {
        out.push("msgc_server options changed".to_owned());
    }
    if old.client != new.client {
        out.push("msgc_client options changed".to_owned());
    }
    out
}
