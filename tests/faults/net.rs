//! Network namespaces for the fault harness: one namespace per node, a
//! bridge in its own namespace for cluster traffic (10.77.0.<i>/24, veth
//! `c0` in the node, `p<i>` on the bridge), and one veth pair per node from
//! the root namespace for client traffic (a /30 per node out of a /24 of
//! 198.18.0.0/15, the benchmarking range, picked by pid and run so that a
//! namespace still being torn down by the kernel never shares a subnet
//! with a new one), so partitions and loss touch only the cluster network while
//! the test process itself is every node's client. Every name carries the
//! test process's pid; [`Net`]'s Drop deletes what it made, and
//! [`sweep_stale`] what earlier runs that died left behind.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// Prefix of every namespace and root-namespace interface we create.
const PREFIX: &str = "ecf";

/// Runs a command; Err with its stderr when it fails.
pub fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `sh`, panicking on failure (setup and fault steps must work).
pub fn must(args: &[&str]) -> String {
    sh(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Why this machine cannot run the harness, if it cannot: not root, no
/// `ip`, no network namespaces or veth pairs, no `iptables`.
pub fn unavailable() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Some(format!("not running as root (uid {uid:?})"));
    }
    if let Err(e) = sh(&["ip", "-V"]) {
        return Some(format!("no `ip` command (iproute2): {e}"));
    }
    let ns = format!("{PREFIX}{}probe", std::process::id());
    let probe = (|| {
        sh(&["ip", "netns", "add", &ns])?;
        sh(&[
            "ip", "-n", &ns, "link", "add", "a0", "type", "veth", "peer", "name", "b0",
        ])?;
        sh(&["ip", "-n", &ns, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "netns", "exec", &ns, "iptables", "-L", "-n"])?;
        Ok::<(), String>(())
    })();
    let _ = sh(&["ip", "netns", "del", &ns]);
    probe
        .err()
        .map(|e| format!("cannot build the test network: {e}"))
}

/// Whether `tc qdisc ... netem` works on this kernel (it needs sch_netem).
pub fn netem_available(ns: &str, dev: &str) -> bool {
    let ok = sh(&[
        "ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay",
        "1ms",
    ])
    .is_ok();
    if ok {
        let _ = sh(&[
            "ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root",
        ]);
    }
    ok
}

/// Deletes namespaces and root interfaces named `ecf<pid>...` whose pid is
/// no longer running (a harness run that was killed).
pub fn sweep_stale() {
    let dead = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            return false;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        !digits.is_empty()
            && digits.parse::<u32>().is_ok_and(|p| p != std::process::id())
            && !std::path::Path::new(&format!("/proc/{digits}")).exists()
    };
    if let Ok(list) = sh(&["ip", "netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if dead(name) {
                let _ = sh(&["ip", "netns", "del", name]);
            }
        }
    }
    if let Ok(links) = sh(&["ip", "-o", "link", "show"]) {
        for l in links.lines() {
            let name = l
                .split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n));
            if let Some(name) = name
                && dead(name)
            {
                let _ = sh(&["ip", "link", "del", name]);
            }
        }
    }
}

/// The test network of one scenario.
pub struct Net {
    pub n: usize,
    /// `198.18.x.y`'s x and y: the client links' /24.
    client_net: (u16, u16),
    tag: String,
    bridge_ns: String,
    node_ns: Vec<String>,
    root_ifs: Vec<String>,
}

impl Net {
    /// Builds the network for `n` nodes; `run` tells scenarios apart.
    pub fn new(n: usize, run: usize) -> Net {
        let tag = format!("{PREFIX}{}s{run}", std::process::id());
        let k = (std::process::id() as usize * 16 + run) % 512;
        let mut net = Net {
            n,
            client_net: (18 + k as u16 / 256, k as u16 % 256),
            bridge_ns: format!("{tag}b"),
            node_ns: (1..=n).map(|i| format!("{tag}n{i}")).collect(),
            root_ifs: Vec::new(),
            tag,
        };
        // From here on Drop cleans up whatever was made.
        let b = net.bridge_ns.clone();
        must(&["ip", "netns", "add", &b]);
        must(&["ip", "-n", &b, "link", "set", "lo", "up"]);
        must(&["ip", "-n", &b, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &b, "link", "set", "br0", "up"]);
        for i in 1..=n {
            let ns = net.node_ns[i - 1].clone();
            must(&["ip", "netns", "add", &ns]);
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            let port = format!("p{i}");
            must(&[
                "ip", "-n", &b, "link", "add", &port, "type", "veth", "peer", "name", "c0",
                "netns", &ns,
            ]);
            must(&["ip", "-n", &b, "link", "set", &port, "master", "br0"]);
            must(&["ip", "-n", &b, "link", "set", &port, "up"]);
            must(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", Net::cluster_ip(i)),
                "dev",
                "c0",
            ]);
            must(&["ip", "-n", &ns, "link", "set", "c0", "up"]);
            let rif = format!("{}c{i}", net.tag);
            assert!(rif.len() <= 15, "interface name {rif} too long");
            must(&[
                "ip", "link", "add", &rif, "type", "veth", "peer", "name", "k0", "netns", &ns,
            ]);
            net.root_ifs.push(rif.clone());
            let here = format!("{}/30", net.client_host(i, 1));
            must(&["ip", "addr", "add", &here, "dev", &rif]);
            must(&["ip", "link", "set", &rif, "up"]);
            must(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/30", net.client_ip(i)),
                "dev",
                "k0",
            ]);
            must(&["ip", "-n", &ns, "link", "set", "k0", "up"]);
        }
        net
    }

    /// Node `i`'s (1-based) address on the cluster network.
    pub fn cluster_ip(i: usize) -> String {
        format!("10.77.0.{i}")
    }

    /// Node `i`'s address on its client link.
    /// Host `h` (1 or 2) of node `i`'s client /30.
    fn client_host(&self, i: usize, h: usize) -> String {
        let (a, b) = self.client_net;
        format!("198.{a}.{b}.{}", 4 * i + h)
    }

    /// Node `i`'s address on its client link (the root namespace is `.1`).
    pub fn client_ip(&self, i: usize) -> String {
        self.client_host(i, 2)
    }

    pub fn client_addr(&self, i: usize) -> SocketAddr {
        format!("{}:4809", self.client_ip(i))
            .parse()
            .expect("address")
    }

    /// The namespace of node `i` (1-based).
    pub fn ns(&self, i: usize) -> &str {
        &self.node_ns[i - 1]
    }

    /// `ip netns exec <ns of i>`, to start a node in.
    pub fn wrapper(&self, i: usize) -> [&str; 4] {
        ["ip", "netns", "exec", self.ns(i)]
    }

    fn exec(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["ip", "netns", "exec", self.ns(i)];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// Takes node `i`'s port on the bridge down (or up): it is cut off from
    /// every other node at once, as by a pulled cable.
    pub fn link(&self, i: usize, up: bool) {
        must(&[
            "ip",
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            &format!("p{i}"),
            if up { "up" } else { "down" },
        ]);
    }

    /// Splits the cluster network into `groups` (1-based node numbers):
    /// iptables in every node drops what comes from or goes to a node of
    /// another group. Nodes of one group still talk.
    pub fn partition(&self, groups: &[&[usize]]) {
        for (gi, g) in groups.iter().enumerate() {
            for (gj, h) in groups.iter().enumerate() {
                if gi == gj {
                    continue;
                }
                for &i in *g {
                    for &j in *h {
                        let ip = Net::cluster_ip(j);
                        for rule in [["INPUT", "-s"], ["OUTPUT", "-d"]] {
                            self.exec(i, &["iptables", "-A", rule[0], rule[1], &ip, "-j", "DROP"])
                                .unwrap_or_else(|e| panic!("{e}"));
                        }
                    }
                }
            }
        }
    }

    /// Drops each packet node `i` sends on the cluster network with
    /// probability `p` (one direction only).
    pub fn egress_loss(&self, i: usize, p: f64) {
        self.exec(
            i,
            &[
                "iptables",
                "-A",
                "OUTPUT",
                "-o",
                "c0",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &format!("{p}"),
                "-j",
                "DROP",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Drops everything node `i` receives on the cluster network (it can
    /// still send: a one-way cut).
    pub fn deaf(&self, i: usize) {
        self.exec(i, &["iptables", "-A", "INPUT", "-i", "c0", "-j", "DROP"])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Delays what node `i` sends on the cluster network: with netem, a
    /// fixed delay with jitter (and `loss` on top); without, a tbf rate
    /// limit whose queue delays packets under load (up to `latency`) and
    /// drops beyond it. Returns what was installed.
    pub fn egress_delay(&self, i: usize, netem: bool) -> String {
        let args: Vec<&str> = if netem {
            vec![
                "tc", "qdisc", "add", "dev", "c0", "root", "netem", "delay", "40ms", "20ms",
                "loss", "5%",
            ]
        } else {
            vec![
                "tc", "qdisc", "add", "dev", "c0", "root", "tbf", "rate", "512kbit", "burst",
                "4kb", "latency", "200ms",
            ]
        };
        self.exec(i, &args).unwrap_or_else(|e| panic!("{e}"));
        args[5..].join(" ")
    }

    /// A qdisc's counters on node `i`'s cluster veth (for the report).
    pub fn qdisc_stats(&self, i: usize) -> String {
        self.exec(i, &["tc", "-s", "qdisc", "show", "dev", "c0"])
            .unwrap_or_default()
            .lines()
            .take(3)
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Packets dropped by node `i`'s iptables rules so far.
    pub fn dropped(&self, i: usize) -> u64 {
        self.exec(i, &["iptables", "-L", "OUTPUT", "-n", "-v", "-x"])
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("DROP"))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Removes every injected fault: links up, rules and qdiscs gone.
    pub fn heal(&self) {
        for i in 1..=self.n {
            self.link(i, true);
            self.exec(i, &["iptables", "-F"])
                .unwrap_or_else(|e| panic!("{e}"));
            let _ = self.exec(i, &["tc", "qdisc", "del", "dev", "c0", "root"]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.node_ns.iter().chain([&self.bridge_ns]) {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        // Deleting a namespace deletes the veth ends in it, and so their
        // peers here; make sure anyway.
        for rif in &self.root_ifs {
            let _ = sh(&["ip", "link", "del", rif]);
        }
    }
}
