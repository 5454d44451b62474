//! The servers under test: start on 127.0.0.1 with raised fd limits, wait until ready,
//! read their memory, stop them on every path out (Drop).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::util::{self, Result};

/// How long a server gets to become ready, and to exit after SIGTERM.
const PATIENCE: Duration = Duration::from_secs(20);

/// Log lines of ecclusterd kept for error reports and the end-of-run summary.
const LOG_KEEP: usize = 200;

/// `sh -c` prefix that raises the descriptor limit as far as allowed, then execs the rest:
/// 65536 if we may, else the hard limit (a container without CAP_SYS_RESOURCE).
const RAISE_FDS: &str =
    r#"ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@""#;

/// `program args...` under [`RAISE_FDS`]; the child's pid is the program's own (exec).
pub fn with_fd_limit(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = util::cmd("sh");
    cmd.args(["-c", RAISE_FDS]).arg(program);
    cmd
}

pub struct Server {
    /// "ecclusterd" or "nats-server".
    pub name: &'static str,
    /// HOST:PORT of its NATS client listener.
    pub addr: String,
    /// `--version` output, first line.
    pub version: String,
    child: Child,
    /// ecclusterd's recent log lines.
    log: Arc<Mutex<VecDeque<String>>>,
    /// ecclusterd's temp config directory, removed on drop.
    dir: Option<PathBuf>,
}

impl Server {
    /// `ecclusterd run` on a config in `dir` with ephemeral 127.0.0.1 ports; ready when it
    /// logs ` ready `, its client address taken from `msgcserver_listener: listening on`.
    pub fn ecclusterd(bin: &Path, dir: &Path) -> Result<Server> {
        // max_connections lifted so the idle-connection row measures memory, not the limit.
        let text = "cluster { nodename = \"bench\" }\n\
            ECCluster_Listener { Listen \"127.0.0.1:0\" { } }\n\
            msgcserver_listener { Listen \"127.0.0.1:0\" { max_connections = 0 } }\n";
        let (mut server, rx) = Server::spawn_ecclusterd(bin, dir, text)?;
        server.wait_for_line(&rx, " ready ", Instant::now() + PATIENCE)?;
        Ok(server)
    }

    /// `ecclusterd run` on the config `text`, written to `dir`; not yet ready. The
    /// receiver gets its log lines (for [`Server::wait_for_line`]).
    pub fn spawn_ecclusterd(
        bin: &Path,
        dir: &Path,
        text: &str,
    ) -> Result<(Server, mpsc::Receiver<String>)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let conf = dir.join("ecclusterd.conf");
        std::fs::write(&conf, text).map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let version = version(bin)?;
        let mut cmd = with_fd_limit(bin);
        cmd.arg("run")
            .arg("-c")
            .arg(&conf)
            .args(["--log-level", "info"])
            .env_remove("ECCLUSTERD_CONF")
            .env_remove("EC_NODE_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let line = util::display(&cmd);
        eprintln!("$ {line}");
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("could not start `{line}`: {e}"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line.clone());
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    if log.len() == LOG_KEEP {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        let server = Server {
            name: "ecclusterd",
            addr: String::new(),
            version,
            child,
            log,
            dir: Some(dir.to_path_buf()),
        };
        Ok((server, rx))
    }

    /// Reads ecclusterd's log until a line contains `needle`, taking the client address
    /// from `msgcserver_listener: listening on` on the way.
    pub fn wait_for_line(
        &mut self,
        rx: &mpsc::Receiver<String>,
        needle: &str,
        deadline: Instant,
    ) -> Result<()> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|_| {
                format!(
                    "ecclusterd (pid {}) logged no `{needle}` in time; its log:\n{}",
                    self.pid(),
                    self.log_tail()
                )
            })?;
            if let Some((_, addr)) = line.split_once("msgcserver_listener: listening on ") {
                self.addr = addr.trim().to_owned();
            }
            if line.contains(needle) {
                break;
            }
        }
        if self.addr.is_empty() {
            return Err(format!(
                "ecclusterd logged `{needle}` but no msgcserver_listener address; its log:\n{}",
                self.log_tail()
            ));
        }
        Ok(())
    }

    /// `nats-server -a 127.0.0.1 -p PORT` on a free port; ready when a TCP client gets INFO.
    pub fn nats(program: &Path, log_file: &Path) -> Result<Server> {
        let port = free_port("127.0.0.1")?;
        let args = [
            "-a".to_owned(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        Server::nats_with(program, &args, &format!("127.0.0.1:{port}"), log_file)
    }

    /// `nats-server ARGS` listening for clients on `addr`; ready when a TCP client gets INFO.
    fn nats_with(program: &Path, args: &[String], addr: &str, log_file: &Path) -> Result<Server> {
        let version = version(program)?;
        let log = std::fs::File::create(log_file)
            .map_err(|e| format!("cannot create {}: {e}", log_file.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", log_file.display()))?;
        let mut cmd = with_fd_limit(program);
        cmd.args(args).stdin(Stdio::null()).stdout(log).stderr(log2);
        let line = util::display(&cmd);
        eprintln!("$ {line}");
        let child = cmd
            .spawn()
            .map_err(|e| format!("could not start `{line}`: {e}"))?;
        let mut server = Server {
            name: "nats-server",
            addr: addr.to_owned(),
            version,
            child,
            log: Arc::default(),
            dir: None,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "nats-server exited ({status}) before it was ready; see {}",
                    log_file.display()
                ));
            }
            if reads_info(&server.addr) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nats-server sent no INFO on {} within {PATIENCE:?}; see {}",
                    server.addr,
                    log_file.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The folder files sent to this node land in (the cluster's bulk row).
    pub fn incoming_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("incoming"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process, in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
        text.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no VmRSS line in {path}"))
    }

    /// Open descriptors of the server process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// ecclusterd's log lines at WARN or ERROR (empty for nats-server).
    pub fn warnings(&self) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .cloned()
            .collect()
    }

    fn log_tail(&self) -> String {
        self.log_last(LOG_KEEP)
    }

    /// ecclusterd's last `n` log lines, each prefixed with its pid (empty for nats-server).
    pub fn log_last(&self, n: usize) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let skip = log.len().saturating_sub(n);
        log.iter()
            .skip(skip)
            .map(|l| format!("[{}] {l}", self.pid()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// ecclusterd: SIGTERM, then SIGKILL if it has not exited within [`PATIENCE`].
    /// nats-server: SIGKILL. Returns how it ended, for the report.
    pub fn stop(&mut self) -> String {
        if let Ok(Some(status)) = self.child.try_wait() {
            return format!("had already exited ({status})");
        }
        if self.name == "ecclusterd" {
            let term = util::cmd("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
            if term.is_ok_and(|s| s.success()) {
                let deadline = Instant::now() + PATIENCE;
                while Instant::now() < deadline {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        return format!("stopped by SIGTERM ({status})");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => format!("killed ({status})"),
            Err(e) => format!("kill failed: {e}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let how = self.stop();
        eprintln!("{} (pid {}): {how}", self.name, self.pid());
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// First line of `program --version`.
fn version(program: &Path) -> Result<String> {
    let out = util::output(util::cmd(program).arg("--version"))?;
    Ok(out.lines().next().unwrap_or_default().trim().to_owned())
}

/// A port that was free on `ip` a moment ago.
pub fn free_port(ip: &str) -> Result<u16> {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on {ip}: {e}"))
}

/// The loopback addresses of the cluster nodes.
pub const NODE_IPS: [&str; 3] = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];

/// Whether a listener can be bound on 127.0.0.2 and 127.0.0.3 (Linux routes all of
/// 127/8 to loopback; other systems may not).
pub fn cluster_ips_usable() -> bool {
    NODE_IPS
        .iter()
        .all(|ip| TcpListener::bind((*ip, 0)).is_ok())
}

/// Three nodes of one server kind on 127.0.0.1, .2, .3; stopped on drop (each [`Server`]).
pub struct Cluster {
    pub name: &'static str,
    pub nodes: Vec<Server>,
}

/// A free msgc port on each of [`NODE_IPS`] and the `msgc_server { peers }` lines naming them
/// `node1..node3`.
pub fn cluster_ports() -> Result<(Vec<u16>, String)> {
    let ports = NODE_IPS
        .iter()
        .map(|ip| free_port(ip))
        .collect::<Result<Vec<_>>>()?;
    let peers = NODE_IPS
        .iter()
        .zip(&ports)
        .enumerate()
        .map(|(i, (ip, port))| format!("    node{} = \"{ip}:{port}\"\n", i + 1))
        .collect();
    Ok((ports, peers))
}

impl Cluster {
    /// Node i's client address.
    pub fn addr(&self, i: usize) -> &str {
        &self.nodes[i].addr
    }

    /// Three `ecclusterd run` nodes `node1..node3`, each with its msgc port listed in every
    /// node's `msgc_server { peers }` (as `tests/common::cluster_confs`, but with the default
    /// keepalive; reconnects every 0.2 s so the nodes find each other quickly); ready when each has
    /// logged the membership view `members node1 node2 node3 (`.
    pub fn ecclusterd(bin: &Path, dir: &Path) -> Result<Cluster> {
        let (ports, peers) = cluster_ports()?;
        let mut cluster = Cluster {
            name: "ecclusterd",
            nodes: Vec::new(),
        };
        let mut logs = Vec::new();
        for (i, (ip, port)) in NODE_IPS.iter().zip(&ports).enumerate() {
            // Each node takes files (the bulk row) into its own folder.
            let incoming = dir.join(format!("node{}", i + 1)).join("incoming");
            std::fs::create_dir_all(&incoming)
                .map_err(|e| format!("{}: {e}", incoming.display()))?;
            let incoming = std::fs::canonicalize(&incoming).map_err(|e| e.to_string())?;
            let text = format!(
                "cluster {{ nodename = \"node{n}\" }}\n\
                 ECCluster_Listener {{ incoming_dir = \"{inc}\" Listen \"{ip}:0\" {{ }} }}\n\
                 msgcserver_listener {{ Listen \"{ip}:{port}\" {{ }} }}\n\
                 msgc_server {{\n  peers = [\n{peers}  ]\n  reconnect_interval = 0.2\n}}\n",
                n = i + 1,
                inc = incoming.display()
            );
            let (server, rx) =
                Server::spawn_ecclusterd(bin, &dir.join(format!("node{}", i + 1)), &text)?;
            cluster.nodes.push(server);
            logs.push(rx);
        }
        let deadline = Instant::now() + PATIENCE;
        for (node, rx) in cluster.nodes.iter_mut().zip(&logs) {
            node.wait_for_line(rx, "members node1 node2 node3 (", deadline)?;
        }
        Ok(cluster)
    }

    /// Three `nats-server` nodes routed to each other (`--cluster_name bench`); ready when
    /// a probe published on node 1 reaches a subscriber on node 3.
    pub fn nats(program: &Path, log_dir: &Path) -> Result<Cluster> {
        let client = NODE_IPS
            .iter()
            .map(|ip| free_port(ip))
            .collect::<Result<Vec<_>>>()?;
        let route = NODE_IPS
            .iter()
            .map(|ip| free_port(ip))
            .collect::<Result<Vec<_>>>()?;
        let mut cluster = Cluster {
            name: "nats-server",
            nodes: Vec::new(),
        };
        for (i, ip) in NODE_IPS.iter().enumerate() {
            let routes: Vec<String> = (0..NODE_IPS.len())
                .filter(|&j| j != i)
                .map(|j| format!("nats://{}:{}", NODE_IPS[j], route[j]))
                .collect();
            let args = [
                "-a".to_owned(),
                ip.to_string(),
                "-p".into(),
                client[i].to_string(),
                "--cluster_name".into(),
                "bench".into(),
                "--cluster".into(),
                format!("nats://{ip}:{}", route[i]),
                "--routes".into(),
                routes.join(","),
            ];
            let log = log_dir.join(format!("nats-cluster-{}.log", i + 1));
            let addr = format!("{ip}:{}", client[i]);
            cluster
                .nodes
                .push(Server::nats_with(program, &args, &addr, &log)?);
        }
        probe_routes(cluster.addr(0), cluster.addr(2), Instant::now() + PATIENCE)?;
        Ok(cluster)
    }
}

/// Publishes a probe on `from` every 100 ms until a subscriber on `to` receives one.
fn probe_routes(from: &str, to: &str, deadline: Instant) -> Result<()> {
    use std::io::Write;
    let open = |addr: &str, out: &str| -> std::io::Result<BufReader<TcpStream>> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut r = BufReader::new(s);
        let mut info = String::new();
        r.read_line(&mut info)?;
        r.get_mut().write_all(out.as_bytes())?;
        Ok(r)
    };
    let err = |e: std::io::Error| format!("nats-server cluster probe: {e}");
    let mut sub = open(to, "CONNECT {}\r\nSUB bench.probe 1\r\nPING\r\n").map_err(err)?;
    let mut publ = open(from, "CONNECT {}\r\n").map_err(err)?;
    let mut line = String::new();
    while Instant::now() < deadline {
        publ.get_mut()
            .write_all(b"PUB bench.probe 5\r\nprobe\r\n")
            .map_err(err)?;
        let until = Instant::now() + Duration::from_millis(100);
        while Instant::now() < until {
            line.clear();
            match sub.read_line(&mut line) {
                Ok(0) => return Err("nats-server cluster probe: node 3 closed".into()),
                Ok(_) if line.starts_with("MSG bench.probe") => return Ok(()),
                Ok(_) if line.starts_with("PING") => {
                    sub.get_mut().write_all(b"PONG\r\n").map_err(err)?;
                }
                _ => {}
            }
        }
    }
    Err(format!(
        "nats-server cluster: a message published on {from} did not reach {to} within {PATIENCE:?}"
    ))
}

/// Whether a client connecting to `addr` is greeted with an `INFO` line.
fn reads_info(addr: &str) -> bool {
    let Ok(stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let mut reader = BufReader::new(stream.take(64 * 1024));
    reader.read_line(&mut line).is_ok() && line.starts_with("INFO ")
}

/// `nats-server` on PATH; else, as root with apt-get, `apt-get install -y nats-server`
/// (after `apt-get update` if the first try fails). None when it cannot be had.
pub fn find_or_install_nats() -> Option<PathBuf> {
    util::find_or_apt_install("nats-server", "nats-server")
}
