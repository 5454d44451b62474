/* What a user of nats.c (Debian libnats-dev) relies on, one check per run:
 *
 *     natsc_check <url> <check>
 *
 * Prints "ok <check>" and exits 0, or "FAIL <check>: why" and exits 1.
 * tests/interop/test_clients.py builds it and runs every check against
 * ecclusterd and nats-server alike. The `restart` check prints "RESTART"
 * and waits for a line on stdin: the harness restarts the server meanwhile.
 * Timeouts below are safety nets for events that take milliseconds. */
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATIENCE 10000 /* ms */

static const char *check_name;

#define FAIL(...)                                            \
    do {                                                     \
        fprintf(stdout, "FAIL %s: ", check_name);            \
        fprintf(stdout, __VA_ARGS__);                        \
        fprintf(stdout, " (line %d)\n", __LINE__);           \
        fflush(stdout);                                      \
        exit(1);                                             \
    } while (0)

#define OK(call)                                                           \
    do {                                                                   \
        natsStatus s_ = (call);                                            \
        if (s_ != NATS_OK)                                                 \
            FAIL("%s: %s (%s)", #call, natsStatus_GetText(s_),             \
                 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");  \
    } while (0)

/* What the callbacks saw, guarded by `mu`. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void lock(void) { pthread_mutex_lock(&mu); }
static void unlock(void) { pthread_mutex_unlock(&mu); }
static int reconnects, disconnects, slow_consumers, not_permitted, async_count, closed;

static void on_reconnected(natsConnection *nc, void *c) {
    (void)nc; (void)c;
    lock(); reconnects++; unlock();
}
static void on_disconnected(natsConnection *nc, void *c) {
    (void)nc; (void)c;
    lock(); disconnects++; unlock();
}
static void on_closed(natsConnection *nc, void *c) {
    (void)nc; (void)c;
    lock(); closed++; unlock();
}
static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *c) {
    (void)nc; (void)sub; (void)c;
    lock();
    if (err == NATS_SLOW_CONSUMER) slow_consumers++;
    if (err == NATS_NOT_PERMITTED) not_permitted++;
    unlock();
}
static int get(int *v) {
    lock(); int x = *v; unlock(); return x;
}
/* Polls `*v` until it reaches `want` (callbacks run on nats.c's threads). */
static void wait_for(int *v, int want, const char *what) {
    for (int i = 0; i < PATIENCE / 10; i++) {
        if (get(v) >= want) return;
        nats_Sleep(10);
    }
    FAIL("%s: %d after %d ms, wanted %d", what, get(v), PATIENCE, want);
}

static natsConnection *connect_to(const char *url) {
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    OK(natsOptions_Create(&o));
    OK(natsOptions_SetURL(o, url));
    OK(natsOptions_SetReconnectWait(o, 50));
    OK(natsOptions_SetMaxReconnect(o, 400));
    OK(natsOptions_SetReconnectedCB(o, on_reconnected, NULL));
    OK(natsOptions_SetDisconnectedCB(o, on_disconnected, NULL));
    OK(natsOptions_SetClosedCB(o, on_closed, NULL));
    OK(natsOptions_SetErrorHandler(o, on_error, NULL));
    OK(natsConnection_Connect(&nc, o));
    natsOptions_Destroy(o);
    return nc;
}

static void expect_msg(natsSubscription *sub, const char *subject, const char *data) {
    natsMsg *m = NULL;
    OK(natsSubscription_NextMsg(&m, sub, PATIENCE));
    if (strcmp(natsMsg_GetSubject(m), subject) != 0)
        FAIL("subject %s, wanted %s", natsMsg_GetSubject(m), subject);
    if (data && (natsMsg_GetDataLength(m) != (int)strlen(data) ||
                 memcmp(natsMsg_GetData(m), data, strlen(data)) != 0))
        FAIL("data %.*s, wanted %s", natsMsg_GetDataLength(m), natsMsg_GetData(m), data);
    natsMsg_Destroy(m);
}

/* Nothing more queued: a flush proves the server handled everything sent. */
static void expect_none(natsConnection *nc, natsSubscription *sub) {
    int n = 0;
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    OK(natsSubscription_GetPending(sub, &n, NULL));
    if (n != 0) FAIL("%d unexpected messages pending", n);
}

static void check_connected(natsConnection *nc) {
    if (natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED)
        FAIL("connection status %d, wanted CONNECTED", (int)natsConnection_Status(nc));
}

static void pubsub_order(natsConnection *nc) {
    natsSubscription *sub = NULL;
    char buf[32];
    OK(natsConnection_SubscribeSync(&sub, nc, "order"));
    OK(natsSubscription_SetPendingLimits(sub, -1, -1));
    for (int i = 0; i < 10000; i++) {
        snprintf(buf, sizeof buf, "%d", i);
        OK(natsConnection_PublishString(nc, "order", buf));
    }
    for (int i = 0; i < 10000; i++) {
        snprintf(buf, sizeof buf, "%d", i);
        expect_msg(sub, "order", buf);
    }
    natsSubscription_Destroy(sub);
}

static void wildcards(natsConnection *nc) {
    natsSubscription *star = NULL, *gt = NULL;
    OK(natsConnection_SubscribeSync(&star, nc, "w.*"));
    OK(natsConnection_SubscribeSync(&gt, nc, "w.>"));
    OK(natsConnection_PublishString(nc, "w.a", "1"));
    OK(natsConnection_PublishString(nc, "w.a.b", "2"));
    OK(natsConnection_PublishString(nc, "x.a", "3"));
    expect_msg(star, "w.a", "1");
    expect_msg(gt, "w.a", "1");
    expect_msg(gt, "w.a.b", "2");
    expect_none(nc, star);
    expect_none(nc, gt);
    natsSubscription_Destroy(star);
    natsSubscription_Destroy(gt);
}

static void queue_groups(natsConnection *nc) {
    natsSubscription *q[3] = {0}, *plain = NULL;
    int total = 0, n;
    for (int i = 0; i < 3; i++) OK(natsConnection_QueueSubscribeSync(&q[i], nc, "q", "workers"));
    OK(natsConnection_SubscribeSync(&plain, nc, "q"));
    for (int i = 0; i < 300; i++) OK(natsConnection_PublishString(nc, "q", "x"));
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    /* Every plain subscriber gets all 300; the group shares them, once each. */
    for (int i = 0; i < 300; i++) expect_msg(plain, "q", "x");
    for (int tries = 0; tries < PATIENCE / 10 && total < 300; tries++) {
        total = 0;
        for (int i = 0; i < 3; i++) {
            OK(natsSubscription_GetPending(q[i], &n, NULL));
            total += n;
        }
        if (total < 300) nats_Sleep(10);
    }
    if (total != 300) FAIL("queue group received %d of 300", total);
    expect_none(nc, plain);
    for (int i = 0; i < 3; i++) natsSubscription_Destroy(q[i]);
    natsSubscription_Destroy(plain);
}

static void responder(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *c) {
    (void)sub; (void)c;
    char buf[64];
    snprintf(buf, sizeof buf, "re:%.*s", natsMsg_GetDataLength(msg), natsMsg_GetData(msg));
    natsConnection_PublishString(nc, natsMsg_GetReply(msg), buf);
    natsMsg_Destroy(msg);
}

static void request_reply(natsConnection *nc) {
    natsSubscription *sub = NULL;
    natsMsg *reply = NULL;
    OK(natsConnection_Subscribe(&sub, nc, "svc", responder, NULL));
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    for (int i = 0; i < 100; i++) {
        OK(natsConnection_RequestString(&reply, nc, "svc", "hi", PATIENCE));
        if (strncmp(natsMsg_GetData(reply), "re:hi", 5) != 0)
            FAIL("reply %.*s", natsMsg_GetDataLength(reply), natsMsg_GetData(reply));
        natsMsg_Destroy(reply);
    }
    natsSubscription_Destroy(sub);
}

static void no_responders(natsConnection *nc) {
    natsMsg *reply = NULL;
    natsStatus s = natsConnection_RequestString(&reply, nc, "nobody.home", "hi", PATIENCE);
    if (s != NATS_NO_RESPONDERS) FAIL("request status %s, wanted NATS_NO_RESPONDERS", natsStatus_GetText(s));
    check_connected(nc);
}

static void with_headers(natsConnection *nc) {
    natsSubscription *sub = NULL;
    natsMsg *m = NULL, *got = NULL;
    const char *v = NULL;
    OK(natsConnection_SubscribeSync(&sub, nc, "h"));
    OK(natsMsg_Create(&m, "h", NULL, "body", 4));
    OK(natsMsgHeader_Set(m, "X-Key", "v1"));
    OK(natsMsgHeader_Add(m, "X-Key", "v2"));
    OK(natsConnection_PublishMsg(nc, m));
    OK(natsSubscription_NextMsg(&got, sub, PATIENCE));
    OK(natsMsgHeader_Get(got, "X-Key", &v));
    if (strcmp(v, "v1") != 0) FAIL("header X-Key %s, wanted v1", v);
    const char **vals = NULL;
    int count = 0;
    OK(natsMsgHeader_Values(got, "X-Key", &vals, &count));
    if (count != 2 || strcmp(vals[1], "v2") != 0) FAIL("%d values of X-Key, wanted v1 v2", count);
    free((void *)vals);
    if (natsMsg_GetDataLength(got) != 4 || memcmp(natsMsg_GetData(got), "body", 4) != 0)
        FAIL("body %.*s", natsMsg_GetDataLength(got), natsMsg_GetData(got));
    natsMsg_Destroy(m);
    natsMsg_Destroy(got);
    natsSubscription_Destroy(sub);
}

static void auto_unsubscribe(natsConnection *nc) {
    natsSubscription *sub = NULL, *all = NULL;
    natsMsg *m = NULL;
    OK(natsConnection_SubscribeSync(&sub, nc, "au"));
    OK(natsConnection_SubscribeSync(&all, nc, "au"));
    OK(natsSubscription_AutoUnsubscribe(sub, 5));
    for (int i = 0; i < 10; i++) OK(natsConnection_PublishString(nc, "au", "x"));
    for (int i = 0; i < 10; i++) expect_msg(all, "au", "x");
    for (int i = 0; i < 5; i++) expect_msg(sub, "au", "x");
    natsStatus s = natsSubscription_NextMsg(&m, sub, 100);
    if (s == NATS_OK) FAIL("a sixth message after auto-unsubscribe at 5");
    natsSubscription_Destroy(sub);
    natsSubscription_Destroy(all);
}

static void count_async(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *c) {
    (void)nc; (void)sub; (void)c;
    nats_Sleep(0);
    lock(); async_count++; unlock();
    natsMsg_Destroy(msg);
}

static void drain(natsConnection *nc, const char *url) {
    natsSubscription *sub = NULL;
    OK(natsConnection_Subscribe(&sub, nc, "dr", count_async, NULL));
    /* The subscription is in place before another connection publishes. */
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    natsConnection *pub = connect_to(url);
    for (int i = 0; i < 1000; i++) OK(natsConnection_PublishString(pub, "dr", "x"));
    OK(natsConnection_FlushTimeout(pub, PATIENCE));
    /* Everything the server sent before the UNSUB is still handed over. */
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    OK(natsSubscription_Drain(sub));
    OK(natsSubscription_WaitForDrainCompletion(sub, PATIENCE));
    if (get(&async_count) != 1000) FAIL("%d of 1000 delivered by the drain", get(&async_count));
    natsSubscription_Destroy(sub);
    /* A whole connection drains and closes. */
    OK(natsConnection_DrainTimeout(pub, PATIENCE));
    for (int i = 0; i < PATIENCE / 10 && !natsConnection_IsClosed(pub); i++) nats_Sleep(10);
    if (!natsConnection_IsClosed(pub)) FAIL("drained connection not closed");
    natsConnection_Destroy(pub);
}

static void payloads(natsConnection *nc) {
    int64_t max = natsConnection_GetMaxPayload(nc);
    if (max != 1024 * 1024) FAIL("max_payload %lld, wanted 1 MiB", (long long)max);
    natsSubscription *sub = NULL;
    natsMsg *m = NULL;
    char *big = malloc((size_t)max + 1);
    if (!big) FAIL("out of memory");
    for (int64_t i = 0; i <= max; i++) big[i] = (char)(i * 7 + 3);
    OK(natsConnection_SubscribeSync(&sub, nc, "big"));
    OK(natsConnection_Publish(nc, "big", big, (int)max));
    OK(natsSubscription_NextMsg(&m, sub, PATIENCE));
    if (natsMsg_GetDataLength(m) != (int)max || memcmp(natsMsg_GetData(m), big, (size_t)max) != 0)
        FAIL("1 MiB payload came back as %d different bytes", natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
    natsStatus s = natsConnection_Publish(nc, "big", big, (int)max + 1);
    if (s != NATS_MAX_PAYLOAD) FAIL("max_payload + 1: %s, wanted NATS_MAX_PAYLOAD", natsStatus_GetText(s));
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    check_connected(nc);
    free(big);
    natsSubscription_Destroy(sub);
}

static void slow_consumer(natsConnection *nc) {
    natsSubscription *sub = NULL;
    OK(natsConnection_SubscribeSync(&sub, nc, "slow"));
    OK(natsSubscription_SetPendingLimits(sub, 10, 1024 * 1024));
    for (int i = 0; i < 100; i++) OK(natsConnection_PublishString(nc, "slow", "x"));
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    wait_for(&slow_consumers, 1, "slow-consumer callbacks");
    int dropped = 0;
    for (int i = 0; i < PATIENCE / 10; i++) {
        int64_t d = 0;
        OK(natsSubscription_GetDropped(sub, &d));
        dropped = (int)d;
        if (dropped >= 90) break;
        nats_Sleep(10);
    }
    if (dropped != 90) FAIL("%d dropped, wanted 90", dropped);
    check_connected(nc);
    natsSubscription_Destroy(sub);
}

/* `a..b`: nats-server drops it silently (not pedantic), so the connection
 * must survive; nats.c closes for good on an -ERR it does not know. */
static void bad_subject(natsConnection *nc) {
    natsSubscription *sub = NULL;
    OK(natsConnection_SubscribeSync(&sub, nc, "after"));
    OK(natsConnection_PublishString(nc, "a..b", "x"));
    OK(natsConnection_PublishString(nc, "after", "y"));
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    expect_msg(sub, "after", "y");
    check_connected(nc);
    if (get(&disconnects) != 0) FAIL("%d disconnects", get(&disconnects));
    natsSubscription_Destroy(sub);
}

/* `PUB x y r 2`: one argument too many. The server closes; nats.c must
 * reconnect by itself with its subscriptions. */
static void extra_argument(natsConnection *nc) {
    natsSubscription *sub = NULL;
    OK(natsConnection_SubscribeSync(&sub, nc, "after"));
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    OK(natsConnection_PublishRequestString(nc, "x y", "r", "hi"));
    wait_for(&reconnects, 1, "reconnects");
    OK(natsConnection_PublishString(nc, "after", "y"));
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    expect_msg(sub, "after", "y");
    if (get(&closed) != 0) FAIL("connection closed for good");
    natsSubscription_Destroy(sub);
}

/* ecclusterd only, on a node outside a primary component: the publish is
 * refused with a publish permission violation, which nats.c reports to the
 * error handler and survives. */
static void refused(natsConnection *nc) {
    OK(natsConnection_PublishString(nc, "ord.x", "x"));
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    wait_for(&not_permitted, 1, "NATS_NOT_PERMITTED errors");
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    check_connected(nc);
    if (get(&disconnects) != 0) FAIL("%d disconnects", get(&disconnects));
}

static void restart(natsConnection *nc) {
    natsSubscription *sub = NULL, *q = NULL;
    char line[16];
    OK(natsConnection_SubscribeSync(&sub, nc, "r.>"));
    OK(natsConnection_QueueSubscribeSync(&q, nc, "r.q", "g"));
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    printf("RESTART\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) FAIL("no go-ahead on stdin");
    wait_for(&reconnects, 1, "reconnects");
    OK(natsConnection_PublishString(nc, "r.q", "z"));
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    expect_msg(sub, "r.q", "z");
    expect_msg(q, "r.q", "z");
    natsSubscription_Destroy(sub);
    natsSubscription_Destroy(q);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: natsc_check <url> <check>\n");
        return 2;
    }
    const char *url = argv[1];
    check_name = argv[2];
    natsConnection *nc = connect_to(url);
    const char *c = check_name;
    if (!strcmp(c, "pubsub_order")) pubsub_order(nc);
    else if (!strcmp(c, "wildcards")) wildcards(nc);
    else if (!strcmp(c, "queue_groups")) queue_groups(nc);
    else if (!strcmp(c, "request_reply")) request_reply(nc);
    else if (!strcmp(c, "no_responders")) no_responders(nc);
    else if (!strcmp(c, "headers")) with_headers(nc);
    else if (!strcmp(c, "auto_unsubscribe")) auto_unsubscribe(nc);
    else if (!strcmp(c, "drain")) drain(nc, url);
    else if (!strcmp(c, "payloads")) payloads(nc);
    else if (!strcmp(c, "slow_consumer")) slow_consumer(nc);
    else if (!strcmp(c, "bad_subject")) bad_subject(nc);
    else if (!strcmp(c, "extra_argument")) extra_argument(nc);
    else if (!strcmp(c, "refused")) refused(nc);
    else if (!strcmp(c, "restart")) restart(nc);
    else FAIL("unknown check");
    OK(natsConnection_FlushTimeout(nc, PATIENCE));
    natsConnection_Destroy(nc);
    nats_Close();
    printf("ok %s\n", check_name);
    return 0;
}
