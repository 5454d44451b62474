//! Counters every connection bumps without a lock, and the JSON a node
//! answers `$MSGC.STATUS` requests with (also what `ecclusterd status` prints).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::mesh::PeerStatus;
use crate::msgc::ordered::OrderStatus;
use crate::node::Traffic;

#[derive(Debug, Default)]
pub struct Counters {
    pub msgs_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub msgs_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub connections_total: AtomicU64,
    pub refused_auth: AtomicU64,
    /// `-ERR` for a permission violation (publish or subscribe).
    pub refused_permission: AtomicU64,
    /// `-ERR` for another protocol error the connection survives.
    pub refused_protocol: AtomicU64,
    pub refused_max_subscriptions: AtomicU64,
    /// Publishes refused for want of a quorum.
    pub refused_no_quorum: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A node's status, as JSON on the wire. Field names are part of the
/// documented protocol (docs/PROTOCOL.md); add, never rename.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub node: String,
    pub version: String,
    pub uptime_secs: f64,
    pub connections: u64,
    pub connections_total: u64,
    pub subscriptions: u64,
    pub groups: u64,
    pub msgs_in: u64,
    pub bytes_in: u64,
    pub msgs_out: u64,
    pub bytes_out: u64,
    pub slow_consumers: u64,
    pub auth_failures: u64,
    /// What was refused, by reason: `auth`, `permission`, `protocol`,
    /// `max_subscriptions`, `no_quorum`.
    #[serde(default)]
    pub refusals: std::collections::BTreeMap<String, u64>,
    /// Frames and bytes received / sent on direct node links.
    #[serde(default)]
    pub direct_frames_in: u64,
    #[serde(default)]
    pub direct_frames_out: u64,
    #[serde(default)]
    pub direct_bytes_in: u64,
    #[serde(default)]
    pub direct_bytes_out: u64,
    pub listeners: Vec<ListenerStatus>,
    /// msgc server peers and their links (empty on a standalone node).
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
    /// The total order (nodes with peers only).
    #[serde(default)]
    pub order: Option<OrderStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListenerStatus {
    pub listener: String,
    pub address: String,
}

/// Live figures that are not counters.
pub struct Gauges {
    pub connections: u64,
    pub subscriptions: u64,
    pub groups: u64,
}

impl Status {
    #[allow(clippy::too_many_arguments)] // one source per field group, named at the one call
    pub fn collect(
        node: &str,
        started: Instant,
        c: &Counters,
        direct: &Traffic,
        g: Gauges,
        listeners: Vec<ListenerStatus>,
        peers: Vec<PeerStatus>,
        order: Option<OrderStatus>,
    ) -> Status {
        Status {
            node: node.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: (started.elapsed().as_millis() as f64) / 1000.0,
            connections: g.connections,
            connections_total: Counters::get(&c.connections_total),
            subscriptions: g.subscriptions,
            groups: g.groups,
            msgs_in: Counters::get(&c.msgs_in),
            bytes_in: Counters::get(&c.bytes_in),
            msgs_out: Counters::get(&c.msgs_out),
            bytes_out: Counters::get(&c.bytes_out),
            slow_consumers: Counters::get(&c.slow_consumers),
            auth_failures: Counters::get(&c.refused_auth),
            refusals: [
                ("auth", &c.refused_auth),
                ("permission", &c.refused_permission),
                ("protocol", &c.refused_protocol),
                ("max_subscriptions", &c.refused_max_subscriptions),
                ("no_quorum", &c.refused_no_quorum),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Counters::get(v)))
            .collect(),
            direct_frames_in: Traffic::get(&direct.frames_in),
            direct_frames_out: Traffic::get(&direct.frames_out),
            direct_bytes_in: Traffic::get(&direct.bytes_in),
            direct_bytes_out: Traffic::get(&direct.bytes_out),
            listeners,
            peers,
            order,
        }
    }

    /// The human-readable form `ecclusterd status` prints.
    pub fn render(&self) -> String {
        let mut s = format!(
            "node {} (ecclusterd {}), up {:.1} s\n\
             connections: {} open, {} since start\n\
             subscriptions: {} in {} groups\n\
             messages in: {} ({} bytes)\n\
             messages out: {} ({} bytes)\n\
             slow consumers cut off: {}\n\
             authentication failures: {}\n\
             direct frames in: {} ({} bytes), out: {} ({} bytes)\n",
            self.node,
            self.version,
            self.uptime_secs,
            self.connections,
            self.connections_total,
            self.subscriptions,
            self.groups,
            self.msgs_in,
            self.bytes_in,
            self.msgs_out,
            self.bytes_out,
            self.slow_consumers,
            self.auth_failures,
            self.direct_frames_in,
            self.direct_bytes_in,
            self.direct_frames_out,
            self.direct_bytes_out,
        );
        for l in &self.listeners {
            s.push_str(&format!("listener {}: {}\n", l.listener, l.address));
        }
        if let Some(o) = &self.order {
            s.push_str(&format!(
                "order: {} in VR view {}, leader {}; membership view {} [{}]; {}\n",
                o.mode,
                o.vr_view,
                o.leader.as_deref().unwrap_or("none"),
                o.view_id,
                o.members.join(" "),
                if o.delivering {
                    "delivering"
                } else {
                    "not delivering"
                },
            ));
            s.push_str(&format!(
                "  committed {}, delivered {}, own publishes pending {}, view changes {}\n",
                o.committed, o.delivered, o.pending, o.view_changes
            ));
            for (peer, lag) in &o.lag {
                s.push_str(&format!("  lag {peer}: {lag} ops\n"));
            }
        }
        if !self.peers.is_empty() {
            s.push_str("peers:\n");
        }
        for p in &self.peers {
            let rtt = p
                .rtt_ms
                .map(|r| format!(", rtt {r:.2} ms"))
                .unwrap_or_default();
            let err = match (&p.last_error, p.state.as_str()) {
                (Some(e), "down") => format!(" ({e})"),
                _ => String::new(),
            };
            s.push_str(&format!(
                "  {} {}: {} for {:.1} s{rtt}, Address: {}{err}\n",
                p.name,
                p.address,
                p.state,
                p.since_secs,
                p.eccluster.as_deref().unwrap_or("unknown"),
            ));
        }
        s
    }
}
