"""nats-py, the real Python NATS client, against a running ecclusterd node.

Sync pytest tests, each running its own event loop with asyncio.run. Every
wait is bounded by PATIENCE as a safety net only; ordering comes from
flush() (PING/PONG): the server answers a PING after the client's earlier
operations are processed, and delivers to a subscriber before answering
that subscriber's own later PING.
"""

import asyncio
import json
import pathlib
import re
import socket
import ssl
import time

import nats
import nats.errors
import pytest

from conftest import PATIENCE

DEFAULT_MAX_PAYLOAD = 1024 * 1024
PRIVATE_NAME = re.compile(r"^#(\d+)#node1$")


def run(coro):
    return asyncio.run(coro)


def w(aw):
    """Awaits `aw` with the safety-net timeout."""
    return asyncio.wait_for(aw, PATIENCE)


class Client:
    """A nats-py connection that records asynchronous errors (-ERR and the like)."""

    def __init__(self):
        self.errors = []
        self.nc = None

    async def connect(self, url, **kw):
        async def on_error(e):
            self.errors.append(e)

        self.nc = await w(
            nats.connect(url, allow_reconnect=False, connect_timeout=PATIENCE, error_cb=on_error, **kw)
        )
        return self.nc


async def connect(url, **kw):
    """Returns (nc, errors list)."""
    c = Client()
    nc = await c.connect(url, **kw)
    return nc, c.errors


def private_name(nc):
    return nc._server_info["msgc_private_name"]


async def next_json(sub):
    msg = await sub.next_msg(timeout=PATIENCE)
    return json.loads(msg.data)


async def drain_pending(sub):
    """Every message already queued on a callback-less subscription."""
    out = []
    while sub.pending_msgs:
        out.append(await sub.next_msg(timeout=PATIENCE))
    return out


# --- connect -----------------------------------------------------------------


def test_connect_server_info(node):
    async def main():
        nc, errors = await connect(node.url)
        info = nc._server_info
        assert nc.is_connected
        assert info["server_name"] == "node1"
        assert info["headers"] is True
        assert info["max_payload"] == DEFAULT_MAX_PAYLOAD
        assert nc.max_payload == DEFAULT_MAX_PAYLOAD
        assert info["proto"] == 1
        assert info["port"] == node.port
        assert info["server_id"]
        assert info["version"]
        assert info["client_ip"] == "127.0.0.1"
        m = PRIVATE_NAME.match(info["msgc_private_name"])
        assert m, info
        assert int(m.group(1)) == info["client_id"] == nc.client_id
        # Every connection gets its own private name.
        nc2, _ = await connect(node.url)
        assert private_name(nc2) != private_name(nc)
        await w(nc2.close())
        await w(nc.close())
        assert nc.is_closed
        assert errors == []

    run(main())


# --- publish / subscribe -------------------------------------------------------


def test_publish_subscribe(node):
    async def main():
        sub_nc, sub_err = await connect(node.url)
        pub_nc, pub_err = await connect(node.url)
        sub = await sub_nc.subscribe("greet")
        got_cb = asyncio.Queue()

        async def cb(msg):
            await got_cb.put(msg)

        await sub_nc.subscribe("greet", cb=cb)
        await w(sub_nc.flush())

        await pub_nc.publish("greet", b"hello")
        await pub_nc.publish("greet", b"")  # empty payload
        await pub_nc.publish("greet", b"a\r\nb\x00\xff")  # any bytes, CRLF included
        await w(pub_nc.flush())

        for want in (b"hello", b"", b"a\r\nb\x00\xff"):
            msg = await sub.next_msg(timeout=PATIENCE)
            assert (msg.subject, msg.data) == ("greet", want)
            msg = await w(got_cb.get())
            assert (msg.subject, msg.data) == ("greet", want)
        await w(sub_nc.flush())
        assert sub.pending_msgs == 0, "each message delivered once per subscription"
        await w(pub_nc.close())
        await w(sub_nc.close())
        assert sub_err == pub_err == []

    run(main())


def test_wildcard_subscriptions(node):
    async def main():
        sub_nc, sub_err = await connect(node.url)
        pub_nc, pub_err = await connect(node.url)
        star = await sub_nc.subscribe("orders.*")
        gt = await sub_nc.subscribe("orders.>")
        mid = await sub_nc.subscribe("orders.*.paris")
        await w(sub_nc.flush())

        for subject in ("orders.eu", "orders.eu.paris", "orders.us.nyc", "orders", "other.eu"):
            await pub_nc.publish(subject, subject.encode())
        await w(pub_nc.flush())
        await w(sub_nc.flush())  # deliveries precede the PONG

        def subjects(msgs):
            return [m.subject for m in msgs]

        assert subjects(await drain_pending(star)) == ["orders.eu"]
        assert subjects(await drain_pending(gt)) == ["orders.eu", "orders.eu.paris", "orders.us.nyc"]
        assert subjects(await drain_pending(mid)) == ["orders.eu.paris"]
        await w(pub_nc.close())
        await w(sub_nc.close())
        assert sub_err == pub_err == []

    run(main())


def test_queue_subscriptions(node):
    n = 200

    async def main():
        a_nc, a_err = await connect(node.url)
        b_nc, b_err = await connect(node.url)
        pub_nc, pub_err = await connect(node.url)
        qa = await a_nc.subscribe("jobs", queue="workers")
        qa2 = await a_nc.subscribe("jobs.>", queue="workers")  # same group, other pattern
        qb = await b_nc.subscribe("jobs", queue="workers")
        plain = await b_nc.subscribe("jobs")  # not in the group: sees everything
        await w(a_nc.flush())
        await w(b_nc.flush())

        for i in range(n):
            await pub_nc.publish("jobs", str(i).encode())
        await w(pub_nc.flush())
        await w(a_nc.flush())
        await w(b_nc.flush())

        got_a = [m.data for m in await drain_pending(qa)]
        got_b = [m.data for m in await drain_pending(qb)]
        assert await drain_pending(qa2) == [], "jobs.> does not match jobs"
        everything = sorted(got_a + got_b, key=int)
        assert everything == [str(i).encode() for i in range(n)], "each message delivered once, to one member"
        assert got_a and got_b, f"split across members: a={len(got_a)} b={len(got_b)}"
        assert len(await drain_pending(plain)) == n

        # Across patterns: one group member per message, whichever pattern matched.
        for i in range(n):
            await pub_nc.publish("jobs.x", str(i).encode())
        await w(pub_nc.flush())
        await w(a_nc.flush())
        await w(b_nc.flush())
        assert len(await drain_pending(qa2)) == n, "only member matching jobs.x"
        assert await drain_pending(qa) == await drain_pending(qb) == []

        for c in (pub_nc, a_nc, b_nc):
            await w(c.close())
        assert a_err == b_err == pub_err == []

    run(main())


# --- request / reply -------------------------------------------------------------


def test_request_reply(node):
    async def main():
        svc_nc, svc_err = await connect(node.url)
        req_nc, req_err = await connect(node.url)

        async def echo(msg):
            await msg.respond(b"echo:" + msg.data)

        await svc_nc.subscribe("svc.echo", cb=echo)
        await w(svc_nc.flush())

        reply = await req_nc.request("svc.echo", b"hi", timeout=PATIENCE)
        assert reply.data == b"echo:hi"
        # Many in flight at once share one inbox subscription; each gets its own answer.
        replies = await asyncio.gather(
            *(req_nc.request("svc.echo", str(i).encode(), timeout=PATIENCE) for i in range(20))
        )
        assert [r.data for r in replies] == [f"echo:{i}".encode() for i in range(20)]
        # Old-style request: its own inbox, UNSUB 1.
        reply = await req_nc.request("svc.echo", b"old", timeout=PATIENCE, old_style=True)
        assert reply.data == b"echo:old"
        await w(req_nc.close())
        await w(svc_nc.close())
        assert svc_err == req_err == []

    run(main())


# --- headers ----------------------------------------------------------------------


def test_headers_and_msgc_sender(node):
    async def main():
        sub_nc, sub_err = await connect(node.url)
        pub_nc, pub_err = await connect(node.url)
        sub = await sub_nc.subscribe("hdr")
        await w(sub_nc.flush())

        await pub_nc.publish("hdr", b"with", headers={"X-Trace": "abc-123", "X-Spaces": "a b  c"})
        await pub_nc.publish("hdr", b"without")
        await w(pub_nc.flush())

        sender = private_name(pub_nc)
        assert PRIVATE_NAME.match(sender)
        msg = await sub.next_msg(timeout=PATIENCE)
        assert msg.data == b"with"
        assert msg.headers == {"X-Trace": "abc-123", "X-Spaces": "a b  c", "Msgc-Sender": sender}
        # A message published without headers gets a block naming its sender.
        msg = await sub.next_msg(timeout=PATIENCE)
        assert msg.data == b"without"
        assert msg.headers == {"Msgc-Sender": sender}

        # Headers travel on requests and replies too.
        async def responder(m):
            # Msg.respond takes no headers in nats-py: publish to the reply subject.
            await sub_nc.publish(m.reply, m.data, headers={"X-Reply": m.headers["X-Req"]})

        await sub_nc.subscribe("hdr.svc", cb=responder)
        await w(sub_nc.flush())
        reply = await req(pub_nc, "hdr.svc", b"q", headers={"X-Req": "42"})
        assert reply.headers["X-Reply"] == "42"
        assert reply.headers["Msgc-Sender"] == private_name(sub_nc)
        await w(pub_nc.close())
        await w(sub_nc.close())
        assert sub_err == pub_err == []

    async def req(nc, subject, data, headers):
        return await nc.request(subject, data, timeout=PATIENCE, headers=headers)

    run(main())


def test_no_responders(node):
    async def main():
        nc, errors = await connect(node.url)
        t0 = time.monotonic()
        with pytest.raises(nats.errors.NoRespondersError):
            await nc.request("nobody.home", b"?", timeout=PATIENCE)
        assert time.monotonic() - t0 < PATIENCE / 2, "answered by the 503 status, not by a timeout"
        with pytest.raises(nats.errors.NoRespondersError):
            await nc.request("nobody.home", b"?", timeout=PATIENCE, old_style=True)
        await w(nc.close())
        assert errors == []

    run(main())


# --- unsubscribe ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["subscribe_max_msgs", "unsubscribe_limit"])
def test_unsubscribe_with_max(node, how):
    async def main():
        watch_nc, watch_err = await connect(node.url)
        sub_nc, sub_err = await connect(node.url)
        pub_nc, pub_err = await connect(node.url)
        events = await watch_nc.subscribe("$MSGC.GROUP.limited")
        await w(watch_nc.flush())

        if how == "subscribe_max_msgs":
            sub = await sub_nc.subscribe("limited", max_msgs=2)  # SUB then UNSUB <sid> 2
        else:
            sub = await sub_nc.subscribe("limited")
            await sub.unsubscribe(limit=2)
        await w(sub_nc.flush())
        ev = await next_json(events)
        assert (ev["event"], ev["member"]) == ("join", private_name(sub_nc))

        for i in range(5):
            await pub_nc.publish("limited", str(i).encode())
        await w(pub_nc.flush())
        await w(sub_nc.flush())

        got = [(await sub.next_msg(timeout=PATIENCE)).data for _ in range(2)]
        assert got == [b"0", b"1"]
        assert sub.pending_msgs == 0, "nothing past the limit reached the application"
        if how == "unsubscribe_limit":
            # UNSUB <sid> 2 went to the server, which dropped the subscription
            # after 2 deliveries: the member left its group.
            ev = await next_json(events)
            assert ev == {"event": "leave", "member": private_name(sub_nc), "group": "limited", "members": []}
        else:
            # nats-py's subscribe(max_msgs=N) sends no UNSUB (client-side
            # limit only, as against nats-server): the server keeps it.
            await w(watch_nc.flush())
            assert events.pending_msgs == 0
            await sub.unsubscribe()
            ev = await next_json(events)
            assert ev["event"] == "leave"
        # And plain UNSUB removes at once.
        s2 = await sub_nc.subscribe("limited")
        ev = await next_json(events)
        assert ev["event"] == "join"
        await s2.unsubscribe()
        ev = await next_json(events)
        assert ev["event"] == "leave"

        for c in (pub_nc, sub_nc, watch_nc):
            await w(c.close())
        assert watch_err == sub_err == pub_err == []

    run(main())


# --- flush / drain ------------------------------------------------------------------


def test_flush(node):
    n = 1000

    async def main():
        sub_nc, sub_err = await connect(node.url)
        pub_nc, pub_err = await connect(node.url)
        sub = await sub_nc.subscribe("flushed")
        await w(sub_nc.flush())  # the SUB is in place before anything is published
        for i in range(n):
            await pub_nc.publish("flushed", b"x" * 100)
        await w(pub_nc.flush())  # PONG: the server has processed all n publishes
        status = json.loads((await pub_nc.request("$MSGC.STATUS", b"", timeout=PATIENCE)).data)
        assert status["msgs_in"] >= n
        await w(sub_nc.flush())  # PONG after every delivery queued for this client
        assert sub.pending_msgs == n
        await w(pub_nc.close())
        await w(sub_nc.close())
        assert sub_err == pub_err == []

    run(main())


def test_drain(node):
    n = 300

    async def main():
        sub_nc, sub_err = await connect(node.url)
        pub_nc, pub_err = await connect(node.url)
        watch_nc, _ = await connect(node.url)
        events = await watch_nc.subscribe("$MSGC.GROUP.drained")
        await w(watch_nc.flush())
        got = []

        async def slow(msg):
            await asyncio.sleep(0)  # yield: the callback lags behind the reader
            got.append(int(msg.data))

        await sub_nc.subscribe("drained", cb=slow)
        await w(sub_nc.flush())
        assert (await next_json(events))["event"] == "join"
        for i in range(n):
            await pub_nc.publish("drained", str(i).encode())
        await w(pub_nc.flush())

        await w(sub_nc.drain())  # UNSUB, flush, let callbacks finish, close
        assert sub_nc.is_closed
        assert got == list(range(n)), "every message handled before drain returned, in order"
        ev = await next_json(events)
        assert (ev["event"], ev["member"], ev["members"]) == ("leave", private_name(sub_nc), [])

        await w(pub_nc.drain())  # a publisher-only connection drains too
        assert pub_nc.is_closed
        await w(watch_nc.close())
        assert sub_err == pub_err == []

    run(main())


# --- max_payload ----------------------------------------------------------------------


SMALL = "msgc_server { max_payload = 1024 }"


def test_max_payload_client_side(start_node):
    node = start_node(SMALL)

    async def main():
        nc, errors = await connect(node.url)
        assert nc._server_info["max_payload"] == 1024
        assert nc.max_payload == 1024
        sub = await nc.subscribe("big")
        await w(nc.flush())
        with pytest.raises(nats.errors.MaxPayloadError):
            await nc.publish("big", b"x" * 2048)
        await nc.publish("big", b"y" * 1024)  # exactly max_payload is fine
        await w(nc.flush())
        msg = await sub.next_msg(timeout=PATIENCE)
        assert msg.data == b"y" * 1024
        assert sub.pending_msgs == 0, "the oversize message never left the client"
        assert nc.is_connected
        await w(nc.close())
        assert errors == []

    run(main())


def test_max_payload_server_side(start_node):
    node = start_node(SMALL)
    with socket.create_connection((node.host, node.port), timeout=PATIENCE) as s:
        f = s.makefile("rb")
        info = f.readline()
        assert info.startswith(b"INFO ") and info.endswith(b"\r\n")
        assert json.loads(info[5:])["max_payload"] == 1024
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPUB big 1024\r\n' + b"y" * 1024 + b"\r\nPING\r\n")
        assert f.readline() == b"PONG\r\n", "exactly max_payload is accepted"
        s.sendall(b"PUB big 2048\r\n" + b"x" * 2048 + b"\r\n")
        assert f.readline() == b"-ERR 'Maximum Payload Violation'\r\n"
        assert f.read() == b"", "then the server closes the connection"


# --- msgc extensions --------------------------------------------------------------------


def test_group_membership_events(node):
    async def main():
        watch_nc, watch_err = await connect(node.url)
        a_nc, a_err = await connect(node.url)
        b_nc, b_err = await connect(node.url)
        a, b = private_name(a_nc), private_name(b_nc)
        events = await watch_nc.subscribe("$MSGC.GROUP.ec_console")
        await w(watch_nc.flush())

        sa = await a_nc.subscribe("ec_console")
        assert await next_json(events) == {"event": "join", "member": a, "group": "ec_console", "members": [a]}
        sb = await b_nc.subscribe("ec_console")
        assert await next_json(events) == {
            "event": "join", "member": b, "group": "ec_console", "members": sorted([a, b])
        }

        # A second subscription by a member, a queue subscription, and
        # wildcard subscriptions make no event; removing the extra one neither.
        sa2 = await a_nc.subscribe("ec_console")
        await a_nc.subscribe("ec_console.*")
        await a_nc.subscribe(">")
        await sa2.unsubscribe()
        await w(a_nc.flush())
        # So the next event is B's leave (events are published in order).
        await sb.unsubscribe()
        assert await next_json(events) == {"event": "leave", "member": b, "group": "ec_console", "members": [a]}

        # A connection that closes leaves every group it was in.
        await w(a_nc.close())
        assert await next_json(events) == {"event": "leave", "member": a, "group": "ec_console", "members": []}
        await w(watch_nc.flush())
        assert events.pending_msgs == 0
        del sa

        await w(b_nc.close())
        await w(watch_nc.close())
        assert watch_err == a_err == b_err == []

    run(main())


def test_status_request(node):
    async def main():
        nc, errors = await connect(node.url)
        other, _ = await connect(node.url)
        await other.subscribe("s.one")
        await other.subscribe("s.two")
        await other.publish("s.one", b"12345")
        await w(other.flush())

        reply = await nc.request("$MSGC.STATUS", b"", timeout=PATIENCE)
        st = json.loads(reply.data)
        for key in (
            "node", "version", "uptime_secs", "connections", "connections_total", "subscriptions",
            "groups", "msgs_in", "bytes_in", "msgs_out", "bytes_out", "slow_consumers",
            "auth_failures", "listeners",
        ):
            assert key in st, (key, st)
        assert st["node"] == "node1"
        assert st["version"] == nc._server_info["version"]
        assert st["uptime_secs"] >= 0
        assert st["connections"] == 2
        assert st["connections_total"] >= 2
        assert st["subscriptions"] >= 2
        assert st["groups"] >= 2  # s.one, s.two
        assert st["msgs_in"] >= 1 and st["bytes_in"] >= 5
        assert st["msgs_out"] >= 1 and st["bytes_out"] >= 5
        assert st["slow_consumers"] == 0 and st["auth_failures"] == 0
        listeners = {(l["listener"], l["address"]) for l in st["listeners"]}
        assert ("msgcserver_listener", f"127.0.0.1:{node.port}") in listeners, st["listeners"]

        await w(other.close())
        await w(nc.close())
        assert errors == []

    run(main())


# A self-signed certificate for 127.0.0.1 and its key (test-only, shared
# with the broken TLS configurations).
TLS_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs" / "tls"


def test_tls_with_nats_py(start_node):
    cert, key = TLS_DIR / "cert.pem", TLS_DIR / "key.pem"
    node = start_node(msgc_opts=f'tls_certificate = "{cert}" tls_key = "{key}"')
    ctx = ssl.create_default_context(cafile=str(cert))

    async def main():
        nc, errors = await connect(f"tls://{node.host}:{node.port}", tls=ctx)
        assert nc._server_info["tls_required"] is True
        sub = await nc.subscribe("secure.>")
        await w(nc.flush())
        await nc.publish("secure.one", b"over TLS")
        msg = await sub.next_msg(timeout=PATIENCE)
        assert (msg.subject, msg.data) == ("secure.one", b"over TLS")
        await w(nc.close())
        assert errors == []

    run(main())
    # A plain client is told TLS is required, and closed.
    with socket.create_connection((node.host, node.port), timeout=PATIENCE) as s:
        f = s.makefile("rb")
        assert json.loads(f.readline()[5:])["tls_required"] is True
        s.sendall(b"CONNECT {}\r\n")
        assert f.readline() == b"-ERR 'Secure Connection - TLS Required'\r\n"


# --- what nats-server lets a connection survive ----------------------------------------


def test_publish_to_a_malformed_subject_keeps_the_connection(node):
    """nats-server drops `a..b` without a word unless the client is pedantic;
    nats-py, like nats.c, closes for good on an -ERR it does not know."""

    async def main():
        nc, errors = await connect(node.url)
        sub = await nc.subscribe("after")
        await nc.publish("a..b", b"x")
        await nc.publish("after", b"y")
        await w(nc.flush())
        assert (await sub.next_msg(timeout=PATIENCE)).data == b"y"
        assert nc.is_connected and errors == []
        await w(nc.close())

    run(main())


def test_no_quorum_refusal_keeps_the_connection(start_node):
    """A node of three alone refuses ordered publishes; nats-py reports it to
    the error callback and stays connected."""
    port = free_port("127.0.0.1")
    peers = " ".join(f'node{i} = "127.0.0.{i}:{port if i == 1 else free_port(f"127.0.0.{i}")}"' for i in (1, 2, 3))
    node = start_node(f"msgc_server {{ peers = [ {peers} ] keepalive_interval = 0.2 }}", port=port)

    async def main():
        nc, errors = await connect(node.url)
        await nc.publish("ord.x", b"x")
        await w(nc.flush())
        for _ in range(int(PATIENCE * 100)):
            if errors:
                break
            await asyncio.sleep(0.01)
        assert any("no quorum" in str(e) for e in errors), errors
        await w(nc.flush())
        assert nc.is_connected
        await w(nc.close())

    run(main())


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
