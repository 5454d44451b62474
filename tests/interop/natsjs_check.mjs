// What a user of nats.js (npm `nats`, 2.x) relies on, one check per run:
//
//     node natsjs_check.mjs <url> <check>
//
// Prints "ok <check>" and exits 0, or "FAIL <check>: why" and exits 1.
// tests/interop/test_clients.py runs every check against ecclusterd and
// nats-server alike (NODE_PATH points at the installed `nats` package). The
// `restart` check prints "RESTART" and waits for a line on stdin: the
// harness restarts the server meanwhile. Timeouts are safety nets for
// events that take milliseconds.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(import.meta.url);
const { connect, StringCodec, headers, Events, ErrorCode } = require("nats");

const PATIENCE = 10_000; // ms
const [url, check] = process.argv.slice(2);
const sc = StringCodec();
const seen = { reconnects: 0, disconnects: 0, errors: [] };

function fail(why) {
  console.log(`FAIL ${check}: ${why}`);
  process.exit(1);
}

function expect(cond, why) {
  if (!cond) fail(why);
}

async function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${PATIENCE} ms`)), PATIENCE);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/// Polls `f` until it is true (status events arrive on their own schedule).
async function waitFor(f, what) {
  for (let i = 0; i < PATIENCE / 10; i++) {
    if (f()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  fail(`${what}: not after ${PATIENCE} ms`);
}

async function open() {
  const nc = await connect({
    servers: url,
    reconnectTimeWait: 50,
    maxReconnectAttempts: 400,
    pingInterval: 60_000,
  });
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === Events.Reconnect) seen.reconnects++;
      if (s.type === Events.Disconnect) seen.disconnects++;
      if (s.type === Events.Error) seen.errors.push(s.data);
    }
  })();
  return nc;
}

/// The next message of an iterator-style subscription (one iterator per
/// subscription: each call of `[Symbol.asyncIterator]` starts another).
const iterators = new WeakMap();
async function next(sub, what) {
  if (!iterators.has(sub)) iterators.set(sub, sub[Symbol.asyncIterator]());
  const it = iterators.get(sub);
  const r = await within(it.next(), what);
  expect(!r.done, `${what}: subscription ended`);
  return r.value;
}

async function expectMsg(sub, subject, data) {
  const m = await next(sub, `message on ${subject}`);
  expect(m.subject === subject, `subject ${m.subject}, wanted ${subject}`);
  if (data !== undefined) {
    expect(sc.decode(m.data) === data, `data ${sc.decode(m.data)}, wanted ${data}`);
  }
  return m;
}

/// Nothing beyond the `n` expected: a flush proves the server handled
/// everything sent before it.
async function expectNone(nc, sub, n) {
  await nc.flush();
  expect(sub.getReceived() === n, `${sub.getReceived()} messages received, wanted ${n}`);
}

const checks = {
  async pubsub_order(nc) {
    const sub = nc.subscribe("order");
    const got = [];
    const done = (async () => {
      for await (const m of sub) {
        got.push(sc.decode(m.data));
        if (got.length === 10_000) break;
      }
    })();
    for (let i = 0; i < 10_000; i++) nc.publish("order", sc.encode(String(i)));
    await within(done, "10,000 messages");
    got.forEach((v, i) => expect(v === String(i), `message ${i} was ${v}`));
  },

  async wildcards(nc) {
    const star = nc.subscribe("w.*");
    const gt = nc.subscribe("w.>");
    nc.publish("w.a", sc.encode("1"));
    nc.publish("w.a.b", sc.encode("2"));
    nc.publish("x.a", sc.encode("3"));
    await expectMsg(star, "w.a", "1");
    await expectMsg(gt, "w.a", "1");
    await expectMsg(gt, "w.a.b", "2");
    await expectNone(nc, star, 1);
    await expectNone(nc, gt, 2);
  },

  async queue_groups(nc) {
    const q = [0, 1, 2].map(() => nc.subscribe("q", { queue: "workers" }));
    const plain = nc.subscribe("q");
    for (let i = 0; i < 300; i++) nc.publish("q", sc.encode("x"));
    await nc.flush();
    for (let i = 0; i < 300; i++) await expectMsg(plain, "q", "x");
    // The group shares the 300, once each.
    const total = () => q.reduce((n, s) => n + s.getReceived(), 0);
    await waitFor(() => total() >= 300, "queue group total");
    await nc.flush();
    expect(total() === 300, `queue group received ${total()} of 300`);
    await expectNone(nc, plain, 300);
  },

  async request_reply(nc) {
    nc.subscribe("svc", {
      callback: (err, m) => {
        if (!err) m.respond(sc.encode(`re:${sc.decode(m.data)}`));
      },
    });
    await nc.flush();
    for (let i = 0; i < 100; i++) {
      const r = await nc.request("svc", sc.encode("hi"), { timeout: PATIENCE });
      expect(sc.decode(r.data) === "re:hi", `reply ${sc.decode(r.data)}`);
    }
  },

  async no_responders(nc) {
    try {
      await nc.request("nobody.home", sc.encode("hi"), { timeout: PATIENCE });
      fail("a reply from nobody");
    } catch (e) {
      expect(e.code === ErrorCode.NoResponders, `request error ${e.code}, wanted ${ErrorCode.NoResponders}`);
    }
    expect(!nc.isClosed(), "connection closed");
  },

  async headers(nc) {
    const sub = nc.subscribe("h");
    const h = headers();
    h.append("X-Key", "v1");
    h.append("X-Key", "v2");
    nc.publish("h", sc.encode("body"), { headers: h });
    const m = await expectMsg(sub, "h", "body");
    expect(m.headers, "no headers");
    expect(m.headers.get("X-Key") === "v1", `X-Key ${m.headers.get("X-Key")}, wanted v1`);
    const vals = m.headers.values("X-Key");
    expect(vals.length === 2 && vals[1] === "v2", `X-Key values ${vals}, wanted v1 v2`);
  },

  async auto_unsubscribe(nc) {
    // nats.js sends `UNSUB <sid> 5` for `max`.
    const sub = nc.subscribe("au", { max: 5 });
    const all = nc.subscribe("au");
    for (let i = 0; i < 10; i++) nc.publish("au", sc.encode("x"));
    for (let i = 0; i < 10; i++) await expectMsg(all, "au", "x");
    let n = 0;
    for await (const _ of sub) n++;
    expect(n === 5, `${n} messages before auto-unsubscribe at 5`);
  },

  async drain(nc) {
    let count = 0;
    const sub = nc.subscribe("dr", { callback: () => count++ });
    // The subscription is in place before another connection publishes.
    await nc.flush();
    const pub = await open();
    for (let i = 0; i < 1000; i++) pub.publish("dr", sc.encode("x"));
    await pub.flush();
    // Everything the server sent before the UNSUB is still handed over.
    await nc.flush();
    await within(sub.drain(), "subscription drain");
    expect(count === 1000, `${count} of 1000 delivered by the drain`);
    // A whole connection drains and closes.
    await within(pub.drain(), "connection drain");
    expect(pub.isClosed(), "drained connection not closed");
  },

  async payloads(nc) {
    const max = nc.info.max_payload;
    expect(max === 1024 * 1024, `max_payload ${max}, wanted 1 MiB`);
    const big = new Uint8Array(max);
    for (let i = 0; i < max; i++) big[i] = (i * 7 + 3) & 0xff;
    const sub = nc.subscribe("big");
    nc.publish("big", big);
    const m = await expectMsg(sub, "big");
    expect(m.data.length === max && m.data.every((b, i) => b === big[i]), "1 MiB payload changed");
    try {
      nc.publish("big", new Uint8Array(max + 1));
      fail("max_payload + 1 was sent");
    } catch (e) {
      expect(e.code === ErrorCode.MaxPayloadExceeded, `max_payload + 1: ${e.code}`);
    }
    await nc.flush();
    expect(!nc.isClosed(), "connection closed");
  },

  // nats-server drops `a..b` silently (not pedantic); the connection lives.
  async bad_subject(nc) {
    const sub = nc.subscribe("after");
    nc.publish("a..b", sc.encode("x"));
    nc.publish("after", sc.encode("y"));
    await nc.flush();
    await expectMsg(sub, "after", "y");
    expect(seen.disconnects === 0, `${seen.disconnects} disconnects`);
    expect(seen.errors.length === 0, `errors: ${seen.errors}`);
  },

  // `PUB x y r 2`: one argument too many. The server closes; nats.js
  // reconnects by itself with its subscriptions.
  async extra_argument(nc) {
    const sub = nc.subscribe("after");
    await nc.flush();
    nc.publish("x y", sc.encode("hi"), { reply: "r" });
    await waitFor(() => seen.reconnects >= 1, "reconnect");
    nc.publish("after", sc.encode("y"));
    await nc.flush();
    await expectMsg(sub, "after", "y");
    expect(!nc.isClosed(), "connection closed for good");
  },

  // ecclusterd only, on a node outside a primary component: the publish is
  // refused with a publish permission violation; the connection lives.
  async refused(nc) {
    nc.publish("ord.x", sc.encode("x"));
    await nc.flush();
    await waitFor(() => seen.errors.includes(ErrorCode.PermissionsViolation), "permissions error");
    await nc.flush();
    expect(!nc.isClosed() && seen.disconnects === 0, "connection lost");
  },

  async restart(nc) {
    const sub = nc.subscribe("r.>");
    const q = nc.subscribe("r.q", { queue: "g" });
    await nc.flush();
    console.log("RESTART");
    const rl = createInterface({ input: process.stdin });
    await within(new Promise((r) => rl.once("line", r)), "go-ahead on stdin");
    rl.close();
    await waitFor(() => seen.reconnects >= 1, "reconnect");
    nc.publish("r.q", sc.encode("z"));
    await nc.flush();
    await expectMsg(sub, "r.q", "z");
    await expectMsg(q, "r.q", "z");
  },
};

const run = checks[check];
if (!run) fail("unknown check");
try {
  const nc = await open();
  await run(nc);
  await nc.flush();
  await nc.close();
} catch (e) {
  fail(e.stack || String(e));
}
console.log(`ok ${check}`);
process.exit(0);
