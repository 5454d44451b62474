//! The status snapshot as Prometheus metrics, in the text format (0.0.4)
//! that Prometheus and `promtool` read, through the Rust Prometheus client's
//! registry and encoder. Counters come from the daemon's own monotonic
//! counters, so a registry built per scrape is exact.

use prometheus::core::Collector;
use prometheus::proto::{Bucket, Histogram, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::msgc::latency;
use crate::msgc::status::Status;

/// The registry being filled; the first error (a bad name, which tests
/// would catch) is kept and the rest skipped.
struct Metrics {
    r: Registry,
    error: Option<prometheus::Error>,
}

impl Metrics {
    fn add<C: Collector + 'static>(&mut self, c: Result<C, prometheus::Error>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = c.and_then(|c| self.r.register(Box::new(c))) {
            self.error = Some(e);
        }
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.add(IntCounter::new(name, help).inspect(|c| {
            c.inc_by(v);
        }));
    }

    fn gauge(&mut self, name: &str, help: &str, v: i64) {
        self.add(IntGauge::new(name, help).inspect(|g| {
            g.set(v);
        }));
    }

    /// A gauge per peer.
    fn per_peer(&mut self, name: &str, help: &str, values: &[(&str, f64)]) {
        self.add(
            GaugeVec::new(Opts::new(name, help), &["peer"]).inspect(|g| {
                for (peer, v) in values {
                    g.with_label_values(&[*peer]).set(*v);
                }
            }),
        );
    }
}

/// Every metric of `s`, named `ecclusterd_*`; an error says what went wrong.
pub fn render(s: &Status) -> Result<String, String> {
    let r = Registry::new_custom(Some("ecclusterd".into()), None).map_err(|e| e.to_string())?;
    let mut m = Metrics { r, error: None };
    m.add(
        IntGaugeVec::new(
            Opts::new("info", "This node's name and version"),
            &["node", "version"],
        )
        .inspect(|g| {
            g.with_label_values(&[s.node.as_str(), s.version.as_str()])
                .set(1);
        }),
    );
    m.add(
        Gauge::new("uptime_seconds", "Seconds since the daemon started").inspect(|g| {
            g.set(s.uptime_secs);
        }),
    );
    m.counter(
        "messages_in_total",
        "Messages published by this node's clients",
        s.msgs_in,
    );
    m.counter(
        "received_bytes_total",
        "Payload bytes published by this node's clients",
        s.bytes_in,
    );
    m.counter(
        "messages_out_total",
        "Messages delivered to this node's clients",
        s.msgs_out,
    );
    m.counter(
        "sent_bytes_total",
        "Payload bytes delivered to this node's clients",
        s.bytes_out,
    );
    m.counter(
        "connections_total",
        "Client connections accepted since the start",
        s.connections_total,
    );
    m.counter(
        "slow_consumers_total",
        "Clients cut off for not reading (max_pending reached)",
        s.slow_consumers,
    );
    m.counter(
        "auth_failures_total",
        "Clients refused at CONNECT for their credentials",
        s.auth_failures,
    );
    m.add(
        IntCounterVec::new(
            Opts::new(
                "refusals_total",
                "What was refused, by reason (auth, permission, protocol, max_subscriptions, no_quorum)",
            ),
            &["reason"],
        )
        .inspect(|c| {
            for (reason, n) in &s.refusals {
                c.with_label_values(&[reason.as_str()]).inc_by(*n);
            }
        }),
    );
    m.counter(
        "direct_frames_in_total",
        "Frames received on direct node links",
        s.direct_frames_in,
    );
    m.counter(
        "direct_frames_out_total",
        "Frames sent on direct node links",
        s.direct_frames_out,
    );
    m.counter(
        "direct_received_bytes_total",
        "Bytes received on direct node links",
        s.direct_bytes_in,
    );
    m.counter(
        "direct_sent_bytes_total",
        "Bytes sent on direct node links",
        s.direct_bytes_out,
    );
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    m.gauge(
        "open_connections",
        "Client connections open now",
        n(s.connections),
    );
    m.gauge(
        "subscriptions",
        "Subscriptions of this node's clients",
        n(s.subscriptions),
    );
    m.gauge("groups", "msgc groups with members", n(s.groups));
    let peers: Vec<_> = s.peers.iter().filter(|p| p.state != "self").collect();
    if !peers.is_empty() {
        let up: Vec<(&str, f64)> = peers
            .iter()
            .map(|p| (p.name.as_str(), f64::from(u8::from(p.state == "up"))))
            .collect();
        m.per_peer(
            "peer_link_up",
            "1 while the msgc link to the peer is up",
            &up,
        );
        let rtt: Vec<(&str, f64)> = peers
            .iter()
            .filter_map(|p| Some((p.name.as_str(), p.rtt_ms? / 1000.0)))
            .collect();
        m.per_peer(
            "peer_rtt_seconds",
            "Last keepalive round trip to the peer",
            &rtt,
        );
    }
    let ready = super::routes::ready(s).is_ok();
    m.gauge(
        "ready",
        "1 when this node orders (see /readyz)",
        i64::from(ready),
    );
    if let Some(o) = &s.order {
        let flag = |b: bool| i64::from(b);
        m.gauge(
            "order_delivering",
            "1 while this node's clients receive the ordered stream",
            flag(o.delivering),
        );
        m.gauge(
            "order_normal",
            "1 while the order is in normal mode (not changing views or recovering)",
            flag(o.mode == "normal"),
        );
        m.gauge(
            "order_epoch",
            "The epoch of the history this node holds",
            n(o.epoch),
        );
        m.gauge("order_vr_view", "The VR view number", n(o.vr_view));
        m.gauge(
            "order_view",
            "The membership view ($MSGC.VIEW id)",
            n(o.view_id),
        );
        m.gauge(
            "order_members",
            "Members of the membership view",
            o.members.len() as i64,
        );
        m.gauge(
            "order_committed",
            "Position committed in the order",
            n(o.committed),
        );
        m.gauge(
            "order_delivered",
            "Position delivered to this node's clients",
            n(o.delivered),
        );
        m.gauge(
            "order_pending",
            "This node's publishes waiting to be ordered",
            o.pending as i64,
        );
        m.counter(
            "order_view_changes_total",
            "View changes this node took part in",
            o.view_changes,
        );
        let lag: Vec<(&str, f64)> = o
            .lag
            .iter()
            .map(|(p, ops)| (p.as_str(), *ops as f64))
            .collect();
        m.per_peer(
            "order_lag_ops",
            "Leader only: ops each member is behind the commit point",
            &lag,
        );
    }
    if let Some(e) = m.error {
        return Err(e.to_string());
    }
    let mut families = m.r.gather();
    if let Some(o) = &s.order {
        families.push(histogram(
            "ecclusterd_publish_commit_seconds",
            "Own publishes, from the client's publish to the commit",
            &o.commit_latency,
        ));
    }
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&families, &mut out)
        .map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// A histogram family from counts kept elsewhere (the client's `Histogram`
/// only takes observations).
fn histogram(name: &str, help: &str, h: &latency::Histogram) -> MetricFamily {
    let buckets = h
        .cumulative()
        .into_iter()
        .map(|(bound, n)| {
            let mut b = Bucket::default();
            b.set_upper_bound(bound);
            b.set_cumulative_count(n);
            b
        })
        .collect();
    let mut p = Histogram::default();
    p.set_bucket(buckets);
    p.set_sample_count(h.count);
    p.set_sample_sum(h.sum_secs);
    let mut metric = Metric::default();
    metric.set_histogram(p);
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(MetricType::HISTOGRAM);
    f.set_metric(vec![metric]);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::PeerStatus;
    use crate::msgc::ordered::OrderStatus;

    #[test]
    fn counters_gauges_and_per_peer_families() {
        let s = Status {
            node: "node1".into(),
            version: "1.2.3".into(),
            msgs_in: 42,
            connections: 3,
            peers: vec![
                PeerStatus {
                    name: "node2".into(),
                    address: "a:1".into(),
                    state: "up".into(),
                    since_secs: 1.0,
                    rtt_ms: Some(0.5),
                    eccluster: None,
                    last_error: None,
                },
                PeerStatus {
                    name: "node3".into(),
                    address: "b:1".into(),
                    state: "down".into(),
                    since_secs: 1.0,
                    rtt_ms: None,
                    eccluster: None,
                    last_error: None,
                },
            ],
            refusals: [("no_quorum".to_string(), 2)].into(),
            order: Some(OrderStatus {
                mode: "normal".into(),
                delivering: true,
                epoch: 2,
                committed: 99,
                lag: [("node2".to_string(), 5)].into(),
                commit_latency: {
                    let mut h = crate::msgc::latency::Histogram::default();
                    h.observe(std::time::Duration::from_micros(700));
                    h
                },
                ..OrderStatus::default()
            }),
            ..Status::default()
        };
        let text = render(&s).unwrap();
        for line in [
            "ecclusterd_info{node=\"node1\",version=\"1.2.3\"} 1",
            "ecclusterd_messages_in_total 42",
            "ecclusterd_open_connections 3",
            "ecclusterd_peer_link_up{peer=\"node2\"} 1",
            "ecclusterd_peer_link_up{peer=\"node3\"} 0",
            "ecclusterd_peer_rtt_seconds{peer=\"node2\"} 0.0005",
            "ecclusterd_order_epoch 2",
            "ecclusterd_order_committed 99",
            "ecclusterd_order_lag_ops{peer=\"node2\"} 5",
            "ecclusterd_ready 1",
            "ecclusterd_refusals_total{reason=\"no_quorum\"} 2",
            "ecclusterd_publish_commit_seconds_bucket{le=\"0.0005\"} 0",
            "ecclusterd_publish_commit_seconds_bucket{le=\"0.001\"} 1",
            "ecclusterd_publish_commit_seconds_bucket{le=\"+Inf\"} 1",
            "ecclusterd_publish_commit_seconds_count 1",
            "# TYPE ecclusterd_publish_commit_seconds histogram",
            "# TYPE ecclusterd_messages_in_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
