//! Client commands: `pub`, `sub`, `request`, `status`, `bench`. They speak
//! the NATS client protocol, so they work against any NATS-speaking server.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use crate::bench;
use crate::config::{self, Identity};
use crate::msgc::STATUS_SUBJECT;
use crate::msgc::status::Status;
use crate::nats::conn::Connection;
use crate::nats::proto::headers::{MSGC_SENDER, parse_headers};

/// Where a client command connects when `-s` is absent.
const FALLBACK_SERVER: &str = "127.0.0.1:4809";

/// Picks the server: `-s`, else the configuration's first
/// `msgc_client { server }`, else 127.0.0.1:4809.
fn server(explicit: Option<String>, conf: Option<PathBuf>) -> String {
    if let Some(s) = explicit {
        return s;
    }
    let path = config::locate(conf.as_deref(), std::env::var_os("ECCLUSTERD_CONF"));
    match config::load(&path, &Identity::from_env(None), &crate::net::tls::check) {
        Ok(s) => s
            .client
            .servers
            .first()
            .cloned()
            .unwrap_or_else(|| FALLBACK_SERVER.to_owned()),
        Err(e) => {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or_default().to_owned();
            eprintln!("note: configuration not usable ({first}); using {FALLBACK_SERVER}");
            FALLBACK_SERVER.to_owned()
        }
    }
}

/// `--tls-ca`, `--tls-cert`, `--tls-key` as a client TLS configuration.
fn client_tls(
    ca: &Option<PathBuf>,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<Option<crate::net::tls::ClientTls>, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let Some(ca) = ca else {
        return match (cert, key) {
            (None, None) => Ok(None),
            _ => Err("--tls-cert and --tls-key need --tls-ca".to_owned()),
        };
    };
    let ca = read(ca)?;
    let pair = match (cert, key) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".to_owned()),
    };
    crate::net::tls::ClientTls::new(
        &ca,
        pair.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
    )
    .map(Some)
}

/// Connects a client command to `server` as `name`, over TLS when
/// `--tls-ca`, `--tls-cert`, `--tls-key` ask for it; on failure says why and
/// gives the exit code.
async fn connect(
    server: &str,
    name: &str,
    ca: &Option<PathBuf>,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<Connection, ExitCode> {
    let tls = client_tls(ca, cert, key).map_err(|e| fail("TLS", e))?;
    Connection::connect_default_tls(server, name, tls.as_ref())
        .await
        .map_err(|e| fail(&format!("cannot connect to {server}"), e))
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("ecclusterd: {what}: {e}");
    ExitCode::FAILURE
}

/// Publish MSG (or each line of standard input) to SUBJECT; exits once the server has every message.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "pub",
    example = "ecclusterd pub orders.eu 'hello'\nprintf 'a\\nb\\n' | ecclusterd pub -s 10.0.0.1:4809 orders.eu"
)]
pub struct PubArgs {
    /// server HOST:PORT (default: msgc_client server from the configuration, else 127.0.0.1:4809)
    #[argh(option, short = 's')]
    server: Option<String>,
    /// configuration file to take the default server from
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// CA certificate (PEM) to verify a TLS server with; needed when the server requires TLS
    #[argh(option)]
    tls_ca: Option<PathBuf>,
    /// client certificate (PEM) to present over TLS, with --tls-key
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// the client certificate's private key (PEM)
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// subject to publish to (msgc: the group to multicast to)
    #[argh(positional)]
    subject: String,
    /// message; without it each line of standard input is one message
    #[argh(positional)]
    msg: Option<String>,
}

/// Print messages on SUBJECT (wildcards `*` and `>` allowed) as they arrive.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "sub",
    example = "ecclusterd sub 'orders.>'\necclusterd sub jobs --queue workers --count 10"
)]
pub struct SubArgs {
    /// server HOST:PORT (default: as for pub)
    #[argh(option, short = 's')]
    server: Option<String>,
    /// configuration file to take the default server from
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// CA certificate (PEM) to verify a TLS server with; needed when the server requires TLS
    #[argh(option)]
    tls_ca: Option<PathBuf>,
    /// client certificate (PEM) to present over TLS, with --tls-key
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// the client certificate's private key (PEM)
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// subject or pattern (msgc: the group to join)
    #[argh(positional)]
    subject: String,
    /// exit after this many messages
    #[argh(option)]
    count: Option<u64>,
    /// join queue group Q: each message goes to one member of the group
    #[argh(option)]
    queue: Option<String>,
}

/// Send MSG as a request on SUBJECT and print the reply.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "request",
    example = "ecclusterd request time.now ''"
)]
pub struct RequestArgs {
    /// server HOST:PORT (default: as for pub)
    #[argh(option, short = 's')]
    server: Option<String>,
    /// configuration file to take the default server from
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// CA certificate (PEM) to verify a TLS server with; needed when the server requires TLS
    #[argh(option)]
    tls_ca: Option<PathBuf>,
    /// client certificate (PEM) to present over TLS, with --tls-key
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// the client certificate's private key (PEM)
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// subject of the service
    #[argh(positional)]
    subject: String,
    /// request body
    #[argh(positional)]
    msg: String,
    /// milliseconds to wait for the reply (default 2000)
    #[argh(option, default = "2000")]
    timeout: u64,
}

/// Show a node's status: connections, subscriptions, groups, message counters.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "status",
    example = "ecclusterd status\necclusterd status -s 10.0.0.2:4809 --json"
)]
pub struct StatusArgs {
    /// server HOST:PORT (default: as for pub)
    #[argh(option, short = 's')]
    server: Option<String>,
    /// configuration file to take the default server from
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// CA certificate (PEM) to verify a TLS server with; needed when the server requires TLS
    #[argh(option)]
    tls_ca: Option<PathBuf>,
    /// client certificate (PEM) to present over TLS, with --tls-key
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// the client certificate's private key (PEM)
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// print the raw JSON the node answered with
    #[argh(switch)]
    json: bool,
    /// another node of the cluster: its status, fetched by this node over the direct link
    #[argh(option)]
    node: Option<String>,
}

/// Measure round trips to another node over the daemon's direct link (ECCluster_Listener).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "ping",
    example = "ecclusterd ping node2\necclusterd ping node3 --count 10 --interval 200 -s 10.0.0.1:4809",
    note = "The client asks its daemon ($MSGC.PING.<node>); the daemon pings NODE over its direct link and answers with the round-trip time, which is what is printed."
)]
pub struct PingArgs {
    /// server HOST:PORT (default: as for pub)
    #[argh(option, short = 's')]
    server: Option<String>,
    /// configuration file to take the default server from
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// CA certificate (PEM) to verify a TLS server with; needed when the server requires TLS
    #[argh(option)]
    tls_ca: Option<PathBuf>,
    /// client certificate (PEM) to present over TLS, with --tls-key
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// the client certificate's private key (PEM)
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// the node to ping (a name in peers)
    #[argh(positional)]
    node: String,
    /// pings to send (default 4)
    #[argh(option, default = "4")]
    count: u64,
    /// milliseconds between pings (default 1000)
    #[argh(option, default = "1000")]
    interval: u64,
}

/// Send a file to another node's ECCluster_Listener incoming_dir, read and streamed by the daemon.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "send-file",
    example = "ecclusterd send-file node2 /var/log/ecelerity/mainlog.ec",
    note = "PATH must be absolute and a regular file the daemon can read; the receiving node writes it into its incoming_dir under the same name (atomically, sha256 checked)."
)]
pub struct SendFileArgs {
    /// server HOST:PORT (default: as for pub)
    #[argh(option, short = 's')]
    server: Option<String>,
    /// configuration file to take the default server from
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// CA certificate (PEM) to verify a TLS server with; needed when the server requires TLS
    #[argh(option)]
    tls_ca: Option<PathBuf>,
    /// client certificate (PEM) to present over TLS, with --tls-key
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// the client certificate's private key (PEM)
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// the receiving node (a name in peers)
    #[argh(positional)]
    node: String,
    /// absolute path of the file, as the daemon sees it
    #[argh(positional)]
    path: String,
    /// seconds to wait for the transfer to finish (default 3600)
    #[argh(option, default = "3600")]
    timeout: u64,
}

/// Load generator for any NATS-speaking server: throughput (default) or request/reply latency.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "bench",
    example = "ecclusterd bench --pub 1 --sub 4 --msgs 1000000 --size 128\necclusterd bench --latency --msgs 10000 -s 127.0.0.1:4222\necclusterd bench --idle 10000\necclusterd bench --pub 3 --sub 3 --pub-server 127.0.0.1:4809,127.0.0.2:4809,127.0.0.3:4809 --sub-server 127.0.0.1:4809,127.0.0.2:4809,127.0.0.3:4809",
    note = "Throughput: PUB publishers share MSGS messages of SIZE bytes on one subject; SUB subscribers each receive all of them; with SIZE >= 12 each payload starts with its publisher and sequence number, and the result says whether all subscribers received one order and each publisher's messages in FIFO order. Latency: MSGS request/reply round trips, one at a time, through a responder on its own connection. Idle: N connections held open, for measuring a server's memory per connection."
)]
pub struct BenchArgs {
    /// server HOST:PORT (default: as for pub)
    #[argh(option, short = 's')]
    server: Option<String>,
    /// configuration file to take the default server from
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// publishers (default 1)
    #[argh(option, default = "1")]
    r#pub: usize,
    /// subscribers (default 1)
    #[argh(option, default = "1")]
    sub: usize,
    /// comma-separated servers for the publishers: publisher i uses entry i mod count (default: the server)
    #[argh(option)]
    pub_server: Option<String>,
    /// comma-separated servers for the subscribers: subscriber j uses entry j mod count (default: the server)
    #[argh(option)]
    sub_server: Option<String>,
    /// messages in all (default 1000000; 10000 with --latency)
    #[argh(option)]
    msgs: Option<u64>,
    /// payload bytes (default 128)
    #[argh(option, default = "128")]
    size: usize,
    /// measure request/reply round trips instead of throughput
    #[argh(switch)]
    latency: bool,
    /// print one JSON object instead of text
    #[argh(switch)]
    json: bool,
    /// open N idle connections (CONNECT + PING/PONG each), print `ready COUNT`, and hold them until standard input closes or SIGTERM
    #[argh(option)]
    idle: Option<usize>,
    /// CA certificate (PEM) to verify a TLS server with; needed when the server requires TLS
    #[argh(option)]
    tls_ca: Option<PathBuf>,
    /// client certificate (PEM) to present over TLS, with --tls-key
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// the client certificate's private key (PEM)
    #[argh(option)]
    tls_key: Option<PathBuf>,
}

pub fn publish(a: PubArgs) -> ExitCode {
    let server = server(a.server, a.config);
    smol::block_on(async {
        let mut c = match connect(
            &server,
            "ecclusterd-pub",
            &a.tls_ca,
            &a.tls_cert,
            &a.tls_key,
        )
        .await
        {
            Ok(c) => c,
            Err(code) => return code,
        };
        let mut n = 0u64;
        match a.msg {
            Some(m) => {
                c.publish(&a.subject, None, m.as_bytes());
                n += 1;
            }
            None => {
                for line in io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    c.publish(&a.subject, None, line.as_bytes());
                    n += 1;
                    if c.buffered() >= 64 * 1024
                        && let Err(e) = c.flush().await
                    {
                        return fail("publish", e);
                    }
                }
            }
        }
        // The PONG comes only after the server has taken every message.
        if let Err(e) = c.ping().await {
            return fail("publish", e);
        }
        eprintln!("published {n} message(s) to {}", a.subject);
        ExitCode::SUCCESS
    })
}

pub fn subscribe(a: SubArgs) -> ExitCode {
    let server = server(a.server, a.config);
    smol::block_on(async {
        let mut c = match connect(
            &server,
            "ecclusterd-sub",
            &a.tls_ca,
            &a.tls_cert,
            &a.tls_key,
        )
        .await
        {
            Ok(c) => c,
            Err(code) => return code,
        };
        c.subscribe(&a.subject, a.queue.as_deref());
        if let Err(e) = c.ping().await {
            return fail(&format!("subscribe to {}", a.subject), e);
        }
        eprintln!("listening on {} at {server}", a.subject);
        let mut n = 0u64;
        let mut out = io::stdout();
        while a.count.is_none_or(|max| n < max) {
            let d = match c.next_msg().await {
                Ok(d) => d,
                Err(e) => return fail("subscription ended", e),
            };
            n += 1;
            let sender = d
                .headers
                .as_deref()
                .and_then(|h| parse_headers(h).ok())
                .and_then(|h| h.get(MSGC_SENDER).map(str::to_owned));
            let from = sender.map(|s| format!(" from {s}")).unwrap_or_default();
            let reply = d
                .reply
                .map(|r| format!(" (reply to {r})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "[#{n}] {}{from}{reply}: {}",
                d.subject,
                String::from_utf8_lossy(&d.payload)
            );
            let _ = out.flush();
        }
        ExitCode::SUCCESS
    })
}

pub fn request(a: RequestArgs) -> ExitCode {
    let server = server(a.server, a.config);
    smol::block_on(async {
        let mut c = match connect(
            &server,
            "ecclusterd-request",
            &a.tls_ca,
            &a.tls_cert,
            &a.tls_key,
        )
        .await
        {
            Ok(c) => c,
            Err(code) => return code,
        };
        match c
            .request(
                &a.subject,
                a.msg.as_bytes(),
                Duration::from_millis(a.timeout),
            )
            .await
        {
            Ok(Some(d)) => {
                println!("{}", String::from_utf8_lossy(&d.payload));
                ExitCode::SUCCESS
            }
            Ok(None) => fail(
                "request",
                format!("no reply on {} within {} ms", a.subject, a.timeout),
            ),
            Err(e) => fail("request", e),
        }
    })
}

pub fn status(a: StatusArgs) -> ExitCode {
    let server = server(a.server, a.config);
    smol::block_on(async {
        let mut c = match connect(
            &server,
            "ecclusterd-status",
            &a.tls_ca,
            &a.tls_cert,
            &a.tls_key,
        )
        .await
        {
            Ok(c) => c,
            Err(code) => return code,
        };
        let subject = match &a.node {
            Some(n) => format!("{STATUS_SUBJECT}.{n}"),
            None => STATUS_SUBJECT.to_owned(),
        };
        // A remote status may wait for a dial (connect_timeout) and an answer.
        let wait = Duration::from_secs(if a.node.is_some() { 130 } else { 5 });
        let reply = match c.request(&subject, b"", wait).await {
            Ok(Some(d)) => d,
            Ok(None) => return fail("status", format!("no answer within {wait:?}")),
            Err(e) => return fail("status", format!("{e} (is {server} an ecclusterd node?)")),
        };
        if let Some(e) = node_error(&reply.payload) {
            return fail("status", e);
        }
        if a.json {
            println!("{}", String::from_utf8_lossy(&reply.payload));
            return ExitCode::SUCCESS;
        }
        match serde_json::from_slice::<Status>(&reply.payload) {
            Ok(s) => {
                print!("{}", s.render());
                ExitCode::SUCCESS
            }
            Err(e) => fail("status", format!("unreadable answer: {e}")),
        }
    })
}

/// The error of a node request's answer (`{"node": .., "error": ..}`), if it is one.
fn node_error(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let e = v.get("error")?.as_str()?;
    let node = v.get("node").and_then(|n| n.as_str()).unwrap_or("?");
    Some(format!("node {node}: {e}"))
}

pub fn ping(a: PingArgs) -> ExitCode {
    let server = server(a.server, a.config);
    smol::block_on(async {
        let mut c = match connect(
            &server,
            "ecclusterd-ping",
            &a.tls_ca,
            &a.tls_cert,
            &a.tls_key,
        )
        .await
        {
            Ok(c) => c,
            Err(code) => return code,
        };
        let subject = format!("$MSGC.PING.{}", a.node);
        println!("PING {} via {server}", a.node);
        let mut rtts = Vec::new();
        for seq in 1..=a.count {
            if seq > 1 && a.interval > 0 {
                smol::Timer::after(Duration::from_millis(a.interval)).await;
            }
            let reply = match c.request(&subject, b"", Duration::from_secs(130)).await {
                Ok(Some(d)) => d,
                Ok(None) => return fail("ping", "no answer from the local daemon"),
                Err(e) => return fail("ping", format!("{e} (is {server} an ecclusterd node?)")),
            };
            if let Some(e) = node_error(&reply.payload) {
                eprintln!("ecclusterd: ping: {e}");
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
            let Some(rtt) = v.get("rtt_ms").and_then(|r| r.as_f64()) else {
                return fail("ping", "unreadable answer");
            };
            println!("reply from {}: seq={seq} time={rtt:.3} ms", a.node);
            rtts.push(rtt);
        }
        let lost = a.count - rtts.len() as u64;
        println!(
            "--- {} ping statistics ---\n{} sent, {} received, {} lost",
            a.node,
            a.count,
            rtts.len(),
            lost
        );
        if !rtts.is_empty() {
            let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
            let max = rtts.iter().copied().fold(0.0, f64::max);
            let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
            println!("rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms");
        }
        if lost == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

pub fn send_file(a: SendFileArgs) -> ExitCode {
    let server = server(a.server, a.config);
    smol::block_on(async {
        let mut c = match connect(
            &server,
            "ecclusterd-send-file",
            &a.tls_ca,
            &a.tls_cert,
            &a.tls_key,
        )
        .await
        {
            Ok(c) => c,
            Err(code) => return code,
        };
        let subject = format!("$MSGC.SENDFILE.{}", a.node);
        let reply = match c
            .request(&subject, a.path.as_bytes(), Duration::from_secs(a.timeout))
            .await
        {
            Ok(Some(d)) => d,
            Ok(None) => return fail("send-file", format!("no answer within {} s", a.timeout)),
            Err(e) => {
                return fail(
                    "send-file",
                    format!("{e} (is {server} an ecclusterd node?)"),
                );
            }
        };
        if let Some(e) = node_error(&reply.payload) {
            return fail("send-file", e);
        }
        let v: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
        let bytes = v.get("bytes").and_then(|b| b.as_u64()).unwrap_or(0);
        let secs = v.get("secs").and_then(|b| b.as_f64()).unwrap_or(0.0);
        let sha = v.get("sha256").and_then(|b| b.as_str()).unwrap_or("?");
        let mbs = if secs > 0.0 {
            bytes as f64 / 1e6 / secs
        } else {
            0.0
        };
        println!(
            "sent {} to {}: {bytes} bytes in {secs:.3} s ({mbs:.1} MB/s), sha256 {sha} (verified by {})",
            a.path, a.node, a.node
        );
        ExitCode::SUCCESS
    })
}

pub fn bench(a: BenchArgs) -> ExitCode {
    let server = server(a.server, a.config);
    let tls = match client_tls(&a.tls_ca, &a.tls_cert, &a.tls_key) {
        Ok(t) => t,
        Err(e) => return fail("TLS", e),
    };
    if let Some(n) = a.idle {
        return idle(&server, n, tls.as_ref());
    }
    if a.latency {
        let msgs = a.msgs.unwrap_or(10_000);
        // With --pub-server/--sub-server: the requester on the first
        // pub-server, the responder on the first sub-server.
        let first = |l: &Option<String>| {
            l.as_deref()
                .and_then(|l| l.split(',').next())
                .map_or_else(|| server.clone(), |s| s.trim().to_owned())
        };
        let (req, resp) = (first(&a.pub_server), first(&a.sub_server));
        match bench::latency_between(&req, &resp, msgs, a.size, tls.as_ref()) {
            Ok(r) if a.json => println!("{}", serde_json::to_string(&r).unwrap_or_default()),
            Ok(r) => println!(
                "request/reply {} B x {}: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us",
                r.size, r.msgs, r.p50_us, r.p90_us, r.p99_us, r.max_us
            ),
            Err(e) => return fail("bench", e),
        }
    } else {
        let msgs = a.msgs.unwrap_or(1_000_000);
        let list = |l: Option<String>| -> Vec<String> {
            l.map_or_else(
                || vec![server.clone()],
                |l| l.split(',').map(|s| s.trim().to_owned()).collect(),
            )
        };
        let (pub_servers, sub_servers) = (list(a.pub_server), list(a.sub_server));
        match bench::throughput(
            &pub_servers,
            &sub_servers,
            a.r#pub,
            a.sub,
            msgs,
            a.size,
            tls.as_ref(),
        ) {
            Ok(r) if a.json => println!("{}", serde_json::to_string(&r).unwrap_or_default()),
            Ok(r) => {
                let yes = |b: Option<bool>| match b {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "-",
                };
                println!(
                    "{} pub -> {} sub, {} msgs x {} B in {:.2} s: publish {:.0} msg/s, deliver {:.0} msg/s ({:.1} MB/s); one order: {}, fifo: {}",
                    r.pubs,
                    r.subs,
                    r.msgs,
                    r.size,
                    r.secs,
                    r.pub_rate,
                    r.sub_rate,
                    r.sub_mb,
                    yes(r.same_order),
                    yes(r.fifo)
                )
            }
            Err(e) => return fail("bench", e),
        }
    }
    ExitCode::SUCCESS
}

/// `bench --idle N`: open the connections, report how many, then answer the
/// server's PINGs on each until standard input reaches end of file.
fn idle(server: &str, n: usize, tls: Option<&crate::net::tls::ClientTls>) -> ExitCode {
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let (conns, err) = bench::idle_connections(&ex, server, n, tls).await;
        if let Some(e) = err {
            eprintln!(
                "ecclusterd: bench: {} of {n} connections to {server}: {e}",
                conns.len()
            );
        }
        if conns.is_empty() {
            return ExitCode::FAILURE;
        }
        println!("ready {}", conns.len());
        let _ = io::stdout().flush();
        let _held: Vec<_> = conns
            .into_iter()
            .map(|mut c| ex.spawn(async move { while c.next_msg().await.is_ok() {} }))
            .collect();
        let _ = smol::unblock(|| io::copy(&mut io::stdin(), &mut io::sink())).await;
        ExitCode::SUCCESS
    }))
}
