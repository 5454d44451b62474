//! One client connection on msgcserver_listener: the reader half parses and
//! hands operations to the router, the writer half drains the client's
//! outbound queue in batches, and a keepalive half pings. All three run in
//! the connection's task; the router is shared between tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt, future};
use smol::Timer;

use super::MsgcService;
use super::admit::{Admission, Decision, Route, Surroundings, err_line};
use super::ordered::Input;
use super::outbound::{Batch, Closed};
use super::router::{Client, Message, Router, SubError};
use super::status::Counters;
use crate::nats::proto::{self, ConnectOptions, ProtoError, Publish, text};
use crate::net::{Conn, Local, Remote, Shutdown};

/// Read buffer bounds: a busy publisher's buffer grows to the maximum so one
/// syscall brings many frames; an idle connection's stays small (10,000 idle
/// clients would otherwise pin 640 MB).
const READ_MIN: usize = 512;
const READ_MAX: usize = 64 * 1024;
/// Reads in a row that use under a quarter of the buffer before it shrinks.
const SHRINK_AFTER: u32 = 8;
/// Unanswered server PINGs before the connection is declared stale.
const MAX_PINGS_OUT: u32 = 2;
/// How long a closing connection gets to take its last `-ERR`.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// Per-connection state the halves share.
struct Shared {
    client: Arc<Client>,
    pings_out: AtomicU32,
    /// Set by the reader whenever bytes arrive; cleared by the keepalive tick.
    active: AtomicBool,
    /// The reader waits for room in the ordering queue.
    blocked: AtomicBool,
}

pub async fn serve(
    bus: Arc<MsgcService>,
    mut conn: Conn,
    remote: Remote,
    local: Local,
    tls: Option<crate::net::tls::Material>,
    shutdown: Shutdown,
) {
    let id = bus.next_client_id();
    let private_name = crate::nats::proto::private_name(id, &bus.node);
    // With a cluster secret every connection is offered a challenge, since a
    // peer server is told apart only by what it sends after INFO.
    let challenge = bus
        .mesh()
        .filter(|m| m.has_secret())
        .and_then(|_| crate::mesh::secret::nonce());
    let verify = tls.as_ref().map(|t| t.verify());
    let info = bus.info(
        id,
        &remote,
        &local,
        &private_name,
        challenge.as_deref(),
        verify,
    );
    if conn.write_all(&info).await.is_err() {
        return;
    }
    let mut deadline = Timer::after(bus.limits.connect_timeout);
    // With TLS, as nats-server does: INFO in plain text, then the client's handshake.
    if let Some(tls) = &tls {
        let upgraded = async { Some(upgrade(conn.clone(), tls).await) }
            .or(async {
                (&mut deadline).await;
                None
            })
            .await;
        match upgraded {
            Some(Ok(c)) => conn = c,
            Some(Err(Upgrade::Plain)) => {
                log::info!("msgc client {remote}: plain text on a TLS listener; refused");
                let _ = conn
                    .write_all(err_line(text::TLS_REQUIRED).as_bytes())
                    .await;
                conn.shutdown();
                return;
            }
            Some(Err(Upgrade::Failed(e))) => {
                log::info!("msgc client {remote}: TLS handshake failed: {e}");
                conn.shutdown();
                return;
            }
            None => {
                log::info!("msgc client {remote}: no TLS handshake within connect_timeout");
                conn.shutdown();
                return;
            }
        }
    }
    // Clients and peer servers share this port: the first bytes tell them apart.
    let mut first = Vec::new();
    let mut buf = vec![0u8; READ_MIN];
    loop {
        if let Some(peer) = crate::mesh::is_peer_hello(&first) {
            if peer {
                match bus.mesh() {
                    Some(mesh) => {
                        let (r, l) = (remote.tcp(), local.tcp());
                        mesh.accept(conn, first, r, l, challenge, shutdown).await;
                    }
                    None => {
                        log::warn!("msgc peer handshake from {remote}, but this node has no peers");
                        conn.refuse(
                            b"-ERR 'msgc peer refused: this node has no peers configured'\r\n",
                        )
                        .await;
                    }
                }
                return;
            }
            break;
        }
        let n = async { Some(conn.read(&mut buf).await) }
            .or(async {
                (&mut deadline).await;
                None
            })
            .await;
        match n {
            Some(Ok(n)) if n > 0 => first.extend_from_slice(&buf[..n]),
            Some(_) => return,
            None => {
                let _ = conn
                    .write_all(err_line(text::AUTHENTICATION_TIMEOUT).as_bytes())
                    .await;
                let _ = conn.flush().await;
                conn.shutdown();
                return;
            }
        }
    }

    let client = Arc::new(Client::new(id, &bus.node, bus.limits.outbound));
    Counters::add(&bus.counters.connections_total, 1);
    bus.router().add_client(client.clone());
    let shared = Shared {
        client,
        pings_out: AtomicU32::new(0),
        active: AtomicBool::new(false),
        blocked: AtomicBool::new(false),
    };
    log::debug!(
        "msgc client {} connected from {remote}",
        shared.client.private_name
    );

    let reader = read_half(&bus, &shared, conn.clone(), &remote, first, deadline);
    let writer = write_half(&shared, &bus.counters, conn.clone());
    let keepalive = keepalive(&bus, &shared);
    let stop = async {
        shutdown.wait().await;
        shared.client.out.close();
        // Give the writer a moment to flush; then the reader is cut off below.
        Timer::after(LAST_WORDS).await;
    };
    // The writer decides when the connection ends: after the reader closed the
    // queue (EOF, error, stale) and what was queued is written.
    async {
        future::zip(reader.or(stop), writer).await;
    }
    .or(keepalive)
    .await;
    conn.shutdown();
    {
        let mut r = bus.router();
        r.remove_client(id);
        submit_group_changes(&bus, &mut r);
    }
    log::debug!("msgc client {} closed", shared.client.private_name);
}

enum Upgrade {
    /// The first byte was not a TLS handshake record: a plain client.
    Plain,
    Failed(std::io::Error),
}

/// The server side of the TLS handshake after INFO.
async fn upgrade(mut conn: Conn, tls: &crate::net::tls::Material) -> Result<Conn, Upgrade> {
    let first = crate::net::tls::first_bytes(&mut conn)
        .await
        .map_err(Upgrade::Failed)?;
    match first.first() {
        None => Err(Upgrade::Failed(std::io::ErrorKind::UnexpectedEof.into())),
        Some(&crate::net::tls::HANDSHAKE_RECORD) => crate::net::tls::accept(conn, tls, first)
            .await
            .map_err(Upgrade::Failed),
        Some(_) => Err(Upgrade::Plain),
    }
}

/// Closes the outbound queue with a final `-ERR` the writer still sends.
fn fail(shared: &Shared, err: &str) {
    let _ = shared.client.out.push_control(err_line(err).as_bytes());
    shared.client.out.close();
}

/// The reader's side of a session: the parser, the admission decisions,
/// and the CONNECT deadline until CONNECT came.
struct Reading {
    parser: proto::ClientParser,
    admission: Admission,
    connect_deadline: Option<Timer>,
}

impl Reading {
    /// Takes bytes read from the client and handles every operation they
    /// complete. True when the connection must end.
    async fn take(
        &mut self,
        bus: &MsgcService,
        shared: &Shared,
        bytes: &[u8],
        remote: &Remote,
    ) -> bool {
        shared.active.store(true, Ordering::Relaxed);
        Counters::add(&bus.counters.bytes_in, bytes.len() as u64);
        self.parser.feed(bytes);
        handle(bus, shared, self, remote).await
    }
}

async fn read_half(
    bus: &MsgcService,
    shared: &Shared,
    mut conn: Conn,
    remote: &Remote,
    first: Vec<u8>,
    deadline: Timer,
) {
    let mut input = Reading {
        parser: proto::ClientParser::new(bus.limits.proto),
        admission: Admission::default(),
        connect_deadline: Some(deadline),
    };
    let mut buf = ReadBuf::new();
    if !first.is_empty() && input.take(bus, shared, &first, remote).await {
        return;
    }
    loop {
        let read = async { Some(conn.read(buf.space()).await) };
        let n = match input.connect_deadline.as_mut() {
            Some(deadline) => {
                read.or(async {
                    deadline.await;
                    None
                })
                .await
            }
            None => read.await,
        };
        let n = match n {
            None => {
                log::info!("msgc client from {remote}: no CONNECT within connect_timeout; closing");
                fail(shared, text::AUTHENTICATION_TIMEOUT);
                return;
            }
            Some(Ok(0)) | Some(Err(_)) => break,
            Some(Ok(n)) => n,
        };
        if input.take(bus, shared, buf.filled(n), remote).await {
            return;
        }
        // The router was released with the chunk, so other connections get their turn.
        if shared.client.out.closed().is_some() {
            return;
        }
        // A socket that always has data never makes `read` pend; yield so the
        // writers this chunk woke (on this thread too) get to run.
        future::yield_now().await;
    }
    shared.client.out.close();
}

/// Handles what the parser holds, waiting for room in the ordering queue
/// when it is full. True when the connection must end.
async fn handle(bus: &MsgcService, shared: &Shared, input: &mut Reading, remote: &Remote) -> bool {
    loop {
        let flow = process(
            bus,
            shared,
            &mut input.admission,
            &mut input.parser,
            &mut input.connect_deadline,
            remote,
        );
        match flow {
            Flow::Go => return false,
            Flow::Stop => return true,
            Flow::Wait(publish) => {
                let Some(ord) = bus.ordered() else {
                    return true;
                };
                // Held back by us, not silent: no keepalive PINGs meanwhile.
                shared.blocked.store(true, Ordering::Relaxed);
                ord.submit_wait(publish).await;
                shared.blocked.store(false, Ordering::Relaxed);
                ok(shared);
            }
        }
    }
}

/// A read buffer that follows the connection's traffic.
struct ReadBuf {
    buf: Vec<u8>,
    small_reads: u32,
}

impl ReadBuf {
    fn new() -> Self {
        ReadBuf {
            buf: vec![0; READ_MIN],
            small_reads: 0,
        }
    }

    fn space(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The `n` bytes just read; resizes for the next read.
    fn filled(&mut self, n: usize) -> &[u8] {
        let len = self.buf.len();
        if n == len && len < READ_MAX {
            self.buf.resize(len * 2, 0);
            self.small_reads = 0;
        } else if n < len / 4 && len > READ_MIN {
            self.small_reads += 1;
            if self.small_reads >= SHRINK_AFTER {
                self.buf.truncate(len / 2);
                self.buf.shrink_to_fit();
                self.small_reads = 0;
            }
        } else {
            self.small_reads = 0;
        }
        &self.buf[..n.min(self.buf.len())]
    }
}

enum Flow {
    Go,
    Stop,
    /// The ordering queue is full: queue this publish when there is room,
    /// then go on with the operations still in the parser.
    Wait(Box<Input>),
}

/// Handles every complete operation of one read: `admit` decides, the
/// handlers below perform. The router is locked at most once per read, and
/// released before the next await.
fn process(
    bus: &MsgcService,
    shared: &Shared,
    admission: &mut Admission,
    parser: &mut proto::ClientParser,
    connect_deadline: &mut Option<Timer>,
    remote: &Remote,
) -> Flow {
    let reply_route = |subject: &str| bus.reply_route(subject);
    let around = Surroundings {
        auth: &bus.auth,
        node: &bus.node,
        ordered: bus.ordered().is_some(),
        reply_route: &reply_route,
    };
    let mut router = None;
    while let Some(op) = parser.next_op() {
        let decision = match op {
            Ok(op) => admission.decide(op, &around),
            Err(e) => {
                log_error(shared, &e, remote);
                Admission::error(&e)
            }
        };
        let flow = match decision {
            Decision::Ack => ok(shared),
            Decision::Nothing => Flow::Go,
            Decision::Ping => {
                // With peers, only once every earlier publish is ordered.
                shared.client.ping();
                Flow::Go
            }
            Decision::Pong => {
                shared.pings_out.store(0, Ordering::Relaxed);
                Flow::Go
            }
            Decision::Connected { opts, perms } => {
                *connect_deadline = None;
                connected(shared, &opts, perms.is_some(), remote)
            }
            Decision::AuthFailed => {
                Counters::add(&bus.counters.refused_auth, 1);
                log::warn!("msgc client from {remote}: authorization violation");
                fail(shared, text::AUTHORIZATION_VIOLATION);
                Flow::Stop
            }
            Decision::Refuse(line) => refuse(shared, &bus.counters.refused_protocol, &line),
            Decision::Forbid(line) => refuse(shared, &bus.counters.refused_permission, &line),
            Decision::Close(text) => {
                match text {
                    Some(t) => fail(shared, t),
                    None => shared.client.out.close(),
                }
                Flow::Stop
            }
            Decision::ClientError(e) => {
                log::info!(
                    "msgc client {} sent -ERR {e}; closing",
                    shared.client.private_name
                );
                shared.client.out.close();
                Flow::Stop
            }
            Decision::Subscribe {
                subject,
                queue,
                sid,
            } => {
                let r = router.get_or_insert_with(|| bus.router());
                subscribe(bus, shared, r, &subject, queue.as_deref(), &sid)
            }
            Decision::Unsubscribe { sid, max } => {
                let r = router.get_or_insert_with(|| bus.router());
                r.unsubscribe(shared.client.id, &sid, max);
                ok(shared)
            }
            Decision::NodeRequest {
                req,
                reply,
                payload,
            } => {
                Counters::add(&bus.counters.msgs_in, 1);
                if let Some(reply) = reply {
                    bus.links.request(req, payload, reply);
                }
                ok(shared)
            }
            Decision::Publish { route, publish } => {
                Counters::add(&bus.counters.msgs_in, 1);
                let r = router.get_or_insert_with(|| bus.router());
                match route {
                    Route::Local { status } => publish_local(bus, shared, r, publish, status),
                    Route::Direct { node } => send_direct(bus, shared, node, publish),
                    Route::Order => order(bus, shared, publish),
                }
            }
        };
        match flow {
            Flow::Go => {}
            stop_or_wait => return stop_or_wait,
        }
    }
    if let Some(r) = router.as_mut() {
        submit_group_changes(bus, r);
    }
    Flow::Go
}

/// Says `line` (an `-ERR`), counts it under `why`, and goes on.
fn refuse(shared: &Shared, why: &std::sync::atomic::AtomicU64, line: &str) -> Flow {
    Counters::add(why, 1);
    log::info!(
        "msgc client {}: {}",
        shared.client.private_name,
        line.trim_end()
    );
    let _ = shared.client.out.push_control(line.as_bytes());
    Flow::Go
}

fn subscribe(
    bus: &MsgcService,
    shared: &Shared,
    r: &mut Router,
    subject: &str,
    queue: Option<&str>,
    sid: &str,
) -> Flow {
    match r.subscribe(shared.client.id, subject, queue, sid) {
        Ok(()) => return ok(shared),
        Err(SubError::InvalidSubject) => {
            let _ = shared
                .client
                .out
                .push_control(err_line(text::INVALID_SUBJECT).as_bytes());
        }
        Err(SubError::TooMany { limit }) => {
            Counters::add(&bus.counters.refused_max_subscriptions, 1);
            log::info!(
                "msgc client {}: subscription refused, at max_subscriptions ({limit})",
                shared.client.private_name
            );
            let _ = shared
                .client
                .out
                .push_control(err_line(text::MAX_SUBSCRIPTIONS_EXCEEDED).as_bytes());
        }
    }
    Flow::Go
}

/// To this node's subscribers; `$MSGC.STATUS` with a reply subject gets
/// this node's status too.
fn publish_local(
    bus: &MsgcService,
    shared: &Shared,
    r: &mut Router,
    p: Publish,
    status: bool,
) -> Flow {
    let msg = Message {
        subject: &p.subject,
        reply: p.reply.as_deref(),
        headers: p.headers.as_deref(),
        payload: &p.payload,
        sender: &shared.client.private_name,
    };
    r.publish(shared.client.id, &msg);
    if status && let Some(reply) = p.reply.as_deref() {
        let json = bus.status_json(r);
        r.publish_system(reply, &json);
    }
    ok(shared)
}

/// Straight to `node`; into the order when its link cannot take it.
fn send_direct(bus: &MsgcService, shared: &Shared, node: String, p: Publish) -> Flow {
    let d = crate::node::codec::Delivery {
        subject: p.subject.clone(),
        reply: p.reply.clone(),
        sender: shared.client.private_name.clone(),
        headers: p.headers.clone(),
        payload: p.payload.clone(),
    };
    if bus.links.send_direct(&node, d, shared.client.id) {
        return ok(shared);
    }
    order(bus, shared, p)
}

/// Into the total order; when its queue is full, the rest of the read
/// waits in the parser.
fn order(bus: &MsgcService, shared: &Shared, p: Publish) -> Flow {
    let Some(ord) = bus.ordered() else {
        return Flow::Stop;
    };
    let c = &shared.client;
    let seq = c.published.fetch_add(1, Ordering::Relaxed) + 1;
    let input = Input::Publish {
        client: c.id,
        seq,
        at: std::time::Instant::now(),
        subject: p.subject,
        reply: p.reply,
        headers: p.headers,
        payload: p.payload,
    };
    match ord.submit(input) {
        Ok(()) => ok(shared),
        Err(input) => Flow::Wait(input),
    }
}

/// Hands local group joins and leaves to the total order (nodes with peers).
fn submit_group_changes(bus: &MsgcService, r: &mut super::router::Router) {
    let Some(ord) = bus.ordered() else { return };
    for ch in r.take_group_changes() {
        ord.submit_group(Input::Group {
            join: ch.join,
            client: ch.client,
            member: ch.member,
            group: ch.group,
        });
    }
}

fn ok(shared: &Shared) -> Flow {
    if shared.client.verbose.load(Ordering::Relaxed) {
        let _ = shared.client.out.push_control(b"+OK\r\n");
    }
    Flow::Go
}

/// Logs a protocol error: at info where nats-server says `-ERR`, else at
/// debug (client libraries react to the two differently).
fn log_error(shared: &Shared, e: &ProtoError, remote: &Remote) {
    let name = &shared.client.private_name;
    match e.err_text() {
        // Logged with the `-ERR` line it gets (`Decision::Refuse`).
        Some(_) if !e.is_fatal() => {}
        Some(_) => log::info!("msgc client {name} ({remote}): {e}"),
        None => {
            let what = if e.is_fatal() { "; closing" } else { "" };
            log::debug!("msgc client {name} ({remote}): {e}{what}");
        }
    }
}

/// Applies an accepted CONNECT's options, then acks.
fn connected(shared: &Shared, opts: &ConnectOptions, restricted: bool, remote: &Remote) -> Flow {
    let c = &shared.client;
    c.headers.store(opts.headers, Ordering::Relaxed);
    c.echo.store(opts.echo, Ordering::Relaxed);
    c.no_responders
        .store(opts.no_responders && opts.headers, Ordering::Relaxed);
    c.verbose.store(opts.verbose, Ordering::Relaxed);
    log::debug!(
        "msgc client {} ({remote}) connected: name {:?}, {} {}, protocol {}{}",
        c.private_name,
        opts.name.as_deref().unwrap_or(""),
        opts.lang.as_deref().unwrap_or("?"),
        opts.version.as_deref().unwrap_or("?"),
        opts.protocol,
        if restricted { ", with permissions" } else { "" }
    );
    ok(shared)
}

async fn write_half(shared: &Shared, counters: &Counters, mut conn: Conn) {
    let mut batch = Batch::default();
    loop {
        let taken = future::poll_fn(|cx| shared.client.out.poll_take(cx, &mut batch)).await;
        if taken.is_none() {
            break;
        }
        // A client cut off as a slow consumer does not read: stop waiting
        // on its socket.
        let cut_off = async {
            future::poll_fn(|cx| shared.client.out.poll_cut_off(cx)).await;
            Err(std::io::Error::other("cut off as a slow consumer"))
        };
        if write_batch(&mut conn, &batch).or(cut_off).await.is_err() {
            shared.client.out.close();
            break;
        }
    }
    if shared.client.out.closed() == Some(Closed::SlowConsumer) {
        // Counted here, once per connection, whether messages or control
        // lines (a client that sends PINGs and never reads) filled the
        // queue. Closed without an `-ERR`, as nats-server does: nats.c gives
        // up for good after an `-ERR` it does not know, but reconnects after
        // a plain close.
        Counters::add(&counters.slow_consumers, 1);
        log::warn!(
            "msgc client {} is a slow consumer: cut off (outbound queue limit reached)",
            shared.client.private_name
        );
    }
    let _ = conn
        .flush()
        .or(async {
            Timer::after(LAST_WORDS).await;
            Ok(())
        })
        .await;
    conn.shutdown();
}

async fn write_batch(conn: &mut Conn, batch: &Batch) -> std::io::Result<()> {
    let total = batch.len();
    let mut done = 0;
    while done < total {
        let slices = batch.slices(done, 1024);
        let n =
            future::poll_fn(|cx| std::pin::Pin::new(&mut *conn).poll_write_vectored(cx, &slices))
                .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    // A no-op on plain sockets; TLS sends the records it holds.
    conn.flush().await
}

async fn keepalive(bus: &MsgcService, shared: &Shared) {
    let every = bus.limits.keepalive_interval;
    if every.is_zero() {
        return future::pending().await;
    }
    loop {
        Timer::after(every).await;
        if shared.active.swap(false, Ordering::Relaxed) || shared.blocked.load(Ordering::Relaxed) {
            // Traffic proves the peer is alive; no PING needed this round.
            shared.pings_out.store(0, Ordering::Relaxed);
            continue;
        }
        if shared.pings_out.fetch_add(1, Ordering::Relaxed) >= MAX_PINGS_OUT {
            log::info!(
                "msgc client {}: {MAX_PINGS_OUT} PINGs unanswered; closing as stale",
                shared.client.private_name
            );
            fail(shared, text::STALE_CONNECTION);
            return future::pending().await;
        }
        if shared.client.out.push_control(b"PING\r\n").is_err() {
            return future::pending().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buffer_grows_with_full_reads_and_shrinks_when_idle() {
        let mut b = ReadBuf::new();
        assert_eq!(b.space().len(), READ_MIN);
        let mut len = READ_MIN;
        while len < READ_MAX {
            assert_eq!(b.filled(len).len(), len);
            len *= 2;
            assert_eq!(b.space().len(), len);
        }
        b.filled(READ_MAX);
        assert_eq!(b.space().len(), READ_MAX, "never past the maximum");
        for _ in 0..SHRINK_AFTER {
            b.filled(10);
        }
        assert_eq!(b.space().len(), READ_MAX / 2);
        for _ in 0..SHRINK_AFTER * 20 {
            assert_eq!(b.filled(1).len(), 1);
        }
        assert_eq!(b.space().len(), READ_MIN, "never under the minimum");
    }
}
