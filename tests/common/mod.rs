//! Starts the real `ecclusterd` binary for integration tests: config in a
//! temp dir, ephemeral ports, readiness and addresses read from its log.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous upper bound for events that normally take milliseconds; hitting
/// it means the test failed, never that it passed.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ecclusterd")
}

/// A running node.
pub struct Node {
    pub child: Child,
    pub dir: tempfile::TempDir,
    /// Listener name (as logged) → bound addresses, in bind order.
    pub listening: HashMap<String, Vec<String>>,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

/// Writes `files` (name → text) into a new temp dir.
pub fn config_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write config");
    }
    dir
}

/// A single-node configuration on 127.0.0.1 with ephemeral ports; `extra`
/// is appended inside the global scope.
pub fn single_node_conf(extra: &str) -> String {
    format!(
        r#"
cluster {{ nodename = "node1" }}
ECCluster_Listener {{ Listen "127.0.0.1:0" {{ }} }}
msgcserver_listener {{ Listen "127.0.0.1:0" {{ }} }}
{extra}
"#
    )
}

impl Node {
    /// Starts `ecclusterd run -c <dir>/<main> args...` and waits until it is ready.
    pub fn start_in(dir: tempfile::TempDir, main: &str, args: &[&str]) -> Node {
        Node::start_wrapped(&[], dir, main, args)
    }

    /// As [`Node::start_in`], run through `wrapper` (e.g. `ip netns exec
    /// NS`, which execs the binary in place: the child's pid is the node's).
    pub fn start_wrapped(
        wrapper: &[&str],
        dir: tempfile::TempDir,
        main: &str,
        args: &[&str],
    ) -> Node {
        let conf = dir.path().join(main);
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let mut child = cmd
            .arg("run")
            .arg("-c")
            .arg(&conf)
            .args(["--log-level", "debug"])
            .args(args)
            .env_remove("ECCLUSTERD_CONF")
            .env_remove("EC_NODE_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ecclusterd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Node {
            child,
            dir,
            listening: HashMap::new(),
            lines: rx,
            log: Vec::new(),
        };
        node.wait_for_log(" ready ");
        node
    }

    /// Starts a node whose whole configuration is `conf`.
    pub fn start(conf: &str) -> Node {
        Node::start_in(
            config_dir(&[("ecclusterd.conf", conf)]),
            "ecclusterd.conf",
            &[],
        )
    }

    /// Reads log lines until one contains `needle`; panics with the log otherwise.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.take(line),
                Err(_) => panic!(
                    "no log line containing {needle:?} within {PATIENCE:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    fn take(&mut self, line: String) {
        if let Some((head, addr)) = line.split_once(": listening on ") {
            let name = head.rsplit(' ').next().unwrap_or(head).to_owned();
            self.listening
                .entry(name)
                .or_default()
                .push(addr.trim().to_owned());
        }
        self.log.push(line);
    }

    /// Drains whatever the node has logged so far without waiting.
    pub fn pump(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.take(line);
        }
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.listening
            .get(listener)
            .and_then(|v| v.first())
            .unwrap_or_else(|| panic!("{listener} not listening; log:\n{}", self.log.join("\n")))
            .parse()
            .expect("a TCP address")
    }

    pub fn msgc(&self) -> SocketAddr {
        self.addr("msgcserver_listener")
    }

    pub fn eccluster(&self) -> SocketAddr {
        self.addr("ECCluster_Listener")
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit()
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Collect the last lines for assertions.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.take(line);
                }
                return status;
            }
            assert!(Instant::now() < deadline, "ecclusterd did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ecclusterd <args>` to completion: (exit code, stdout, stderr).
pub fn run_cmd(args: &[&str], cwd: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("ECCLUSTERD_CONF")
        .env_remove("EC_NODE_NAME")
        .stdin(Stdio::null());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().expect("run ecclusterd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A blocking line-oriented TCP client with a read timeout as a safety net.
pub struct Line {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Line {
    pub fn connect(addr: SocketAddr) -> Line {
        Line::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    pub fn from_stream(stream: TcpStream) -> Line {
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Line { stream, reader }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next line without its CRLF; empty string at EOF.
    pub fn line(&mut self) -> String {
        let mut s = String::new();
        self.reader.read_line(&mut s).expect("read line");
        s.trim_end_matches(['\r', '\n']).to_owned()
    }

    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf).expect("read payload");
        buf
    }

    /// True when the server closed the connection (EOF or reset).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

/// A free TCP port on `ip` (bound and released: another process could take
/// it in between, which the kernel makes unlikely for ephemeral ports).
/// A private secret file with `content`, in its own temp dir.
pub fn secret_file(content: &str) -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cluster.secret");
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = p.display().to_string();
    (dir, s)
}

pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A cluster of `n` nodes `node1..noden` on 127.0.0.1..n, each with its own
/// msgc port fixed up front (peers must know it) and an ephemeral
/// ECCluster_Listener. Returns each node's configuration text.
pub fn cluster_confs(n: usize, extra: &str) -> Vec<String> {
    let nodes: Vec<ConfAddrs> = (1..=n)
        .map(|i| {
            let ip = format!("127.0.0.{i}");
            let port = free_port(&ip);
            ConfAddrs {
                eccluster: format!("{ip}:0"),
                peer: format!("{ip}:{port}"),
                clients: Vec::new(),
            }
        })
        .collect();
    cluster_confs_at(&nodes, extra)
}

/// Where one node of [`cluster_confs_at`] listens.
pub struct ConfAddrs {
    /// ECCluster_Listener address.
    pub eccluster: String,
    /// The node's `peers` entry (`ip:port`), also its first msgcserver_listener.
    pub peer: String,
    /// More msgcserver_listener addresses (e.g. one only clients reach).
    pub clients: Vec<String>,
}

/// Configurations of nodes `node1..` at the given addresses, with fast
/// keepalives (0.2 s) and redials; `extra` goes into `msgc_server`.
pub fn cluster_confs_at(nodes: &[ConfAddrs], extra: &str) -> Vec<String> {
    let peers: String = nodes
        .iter()
        .enumerate()
        .map(|(i, a)| format!("    node{} = \"{}\"\n", i + 1, a.peer))
        .collect();
    nodes
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let listens: String = std::iter::once(&a.peer)
                .chain(&a.clients)
                .map(|l| format!("  Listen \"{l}\" {{ }}\n"))
                .collect();
            format!(
                r#"
cluster {{ nodename = "node{}" }}
ECCluster_Listener {{ Listen "{}" {{ }} }}
msgcserver_listener {{
{listens}}}
msgc_server {{
  peers = [
{peers}  ]
  keepalive_interval = 0.2
  reconnect_interval = 0.1
{extra}
}}
"#,
                i + 1,
                a.eccluster
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The msgc bus tests' client: the library's blocking client, with the
// assertions tests make (every wait bounded by PATIENCE; a surprise panics).

use ecclusterd::nats::blocking::Client;
pub use ecclusterd::nats::blocking::Polled;
use ecclusterd::nats::proto::{Delivery, ServerInfo, ServerOp};

pub struct Nats {
    client: Client,
    pub info: ServerInfo,
}

/// The CONNECT a plain client sends: not verbose, not pedantic.
pub const QUIET: &str = r#"{"verbose":false,"pedantic":false}"#;
/// As [`QUIET`], with headers and no_responders.
pub const WITH_HEADERS: &str =
    r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true}"#;

impl Nats {
    /// Connects and reads the server's `INFO`; sends nothing.
    pub fn raw(addr: SocketAddr) -> Nats {
        let client = Client::connect(addr, PATIENCE).expect("connect and read INFO");
        let info = client.info.clone();
        Nats { client, info }
    }

    /// Connects, sends `CONNECT <json>`, and round-trips a PING so the
    /// server has applied it.
    pub fn connect(addr: SocketAddr, json: &str) -> Nats {
        let mut c = Nats::raw(addr);
        c.send(format!("CONNECT {json}\r\n").as_bytes());
        let before = c.sync();
        assert!(
            before.iter().all(|op| matches!(op, ServerOp::Ok)),
            "unexpected reply to CONNECT: {before:?}"
        );
        c
    }

    /// `connect(addr, QUIET)`.
    pub fn quiet(addr: SocketAddr) -> Nats {
        Nats::connect(addr, QUIET)
    }

    /// For clients that live through faults: connects within `timeout`,
    /// reads INFO and sends `CONNECT <json>`; reads then time out after
    /// `poll` so [`Nats::poll_op`] can return [`Polled::Idle`]. An error
    /// instead of a panic when the server is unreachable or misbehaves.
    pub fn try_connect(
        addr: SocketAddr,
        json: &str,
        timeout: Duration,
        poll: Duration,
    ) -> Result<Nats, String> {
        let mut client = Client::connect(addr, timeout).map_err(|e| e.to_string())?;
        client.set_read_timeout(poll).map_err(|e| e.to_string())?;
        client.connect_with(json);
        client
            .flush()
            .map_err(|_| "closed before CONNECT".to_owned())?;
        let info = client.info.clone();
        Ok(Nats { client, info })
    }

    /// Writes; false when the connection is gone.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.client.send(bytes).is_ok()
    }

    /// The next op, [`Polled::Idle`] when nothing came within the read
    /// timeout, [`Polled::Closed`] once the server is gone (or sent
    /// something unparsable).
    pub fn poll_op(&mut self) -> Polled {
        self.client.poll()
    }

    /// The client's private name on the bus, from INFO.
    pub fn name(&self) -> String {
        self.info
            .msgc_private_name
            .clone()
            .expect("msgc_private_name in INFO")
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.client.send(bytes).expect("write");
    }

    /// Writes, ignoring errors (the server may already have closed).
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.client.send(bytes);
    }

    pub fn publish(&mut self, subject: &str, payload: &[u8]) {
        self.client.publish(subject, None, payload);
        self.client.flush().expect("write");
    }

    /// The next op, or `None` once the server has closed (EOF or reset).
    pub fn try_op(&mut self) -> Option<ServerOp> {
        match self.client.poll() {
            Polled::Op(op) => Some(op),
            Polled::Closed => None,
            Polled::Bad(e) => panic!("server sent bad protocol: {e}"),
            Polled::Idle => panic!("nothing from the server within {PATIENCE:?}"),
        }
    }

    /// The next op; panics if the server closed.
    pub fn op(&mut self) -> ServerOp {
        self.try_op()
            .expect("the server closed the connection unexpectedly")
    }

    /// Sends PING and reads until its PONG: the server has processed all
    /// that was sent before. Returns what arrived before the PONG (server
    /// PINGs are answered and left out).
    pub fn sync(&mut self) -> Vec<ServerOp> {
        self.send(b"PING\r\n");
        let mut got = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(Instant::now() < deadline, "no PONG within {PATIENCE:?}");
            match self.op() {
                ServerOp::Pong => return got,
                ServerOp::Ping => self.send(b"PONG\r\n"),
                op => got.push(op),
            }
        }
    }

    /// `sync`, asserting that only messages arrived; returns them.
    pub fn sync_msgs(&mut self) -> Vec<Delivery> {
        self.sync()
            .into_iter()
            .map(|op| match op {
                ServerOp::Msg(d) => d,
                other => panic!("expected only messages, got {other:?}"),
            })
            .collect()
    }

    /// `sync`, asserting nothing arrived before the PONG.
    pub fn sync_empty(&mut self) {
        let got = self.sync();
        assert!(got.is_empty(), "expected nothing, got {got:?}");
    }

    /// The next delivered message; server PINGs are answered, anything else
    /// fails, and so does waiting longer than [`PATIENCE`] (PINGs alone must
    /// not keep a test waiting for ever).
    pub fn msg(&mut self) -> Delivery {
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(Instant::now() < deadline, "no message within {PATIENCE:?}");
            match self.op() {
                ServerOp::Msg(d) => return d,
                ServerOp::Ping => self.send(b"PONG\r\n"),
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// The next op must be `-ERR '<text>'`.
    pub fn expect_err(&mut self, text: &str) {
        match self.op() {
            ServerOp::Err(e) => assert_eq!(e, text),
            other => panic!("expected -ERR '{text}', got {other:?}"),
        }
    }

    /// Reads until the server closes; returns what it sent on the way.
    pub fn until_closed(&mut self) -> Vec<ServerOp> {
        let mut got = Vec::new();
        while let Some(op) = self.try_op() {
            got.push(op);
        }
        got
    }

    /// The next op must be `-ERR '<text>'`, then the connection must close.
    pub fn expect_fatal(&mut self, text: &str) {
        self.expect_err(text);
        let rest = self.until_closed();
        assert!(rest.is_empty(), "after -ERR '{text}': {rest:?}");
    }

    /// The server must close the connection without a word, as nats-server
    /// does where client libraries would give up for good on an `-ERR`.
    pub fn expect_silent_close(&mut self) {
        let rest = self.until_closed();
        assert!(rest.is_empty(), "closed without a word, got {rest:?}");
    }
}

/// A deterministic xorshift generator for seeded random tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Requests `$MSGC.STATUS` over `c` (which must not be subscribed to
/// `_INBOX.status`) and returns the parsed JSON.
pub fn status(c: &mut Nats) -> serde_json::Value {
    c.send(b"SUB _INBOX.status 9999\r\nPUB $MSGC.STATUS _INBOX.status 0\r\n\r\n");
    let d = c.msg();
    assert_eq!(d.subject, "_INBOX.status");
    c.send(b"UNSUB 9999\r\n");
    serde_json::from_slice(&d.payload).expect("status is JSON")
}
