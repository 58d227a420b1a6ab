/*
 * The server through its C API, on a loopback port, with a small raw
 * WebSocket client written here from RFC 6455: life cycle and errors,
 * tp_server_post from other threads, tp_server_stop from a signal handler,
 * host changes published by the autosync tick, 1001 at stop, /metrics.
 * (The protocol in depth is tests/integration/, against the daemon.)
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "support.h"
#include "transports.h"

#define DOCUMENT                                                                                   \
    "{\"title\":\"Document\",\"type\":\"object\",\"properties\":{"                                 \
    "\"title\":{\"type\":\"string\"},\"body\":{\"default\":\"\",\"type\":\"string\"}},"            \
    "\"required\":[\"title\"]}"

static tp_hub *hub;
static tp_schema *doc;
static tp_server *server;
static pthread_t loop;
static int loop_started;

static void
setup(void)
{
    tp_error err;
    tp_hub_config cfg = {0};
    cfg.tick_ms = 10;
    hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    doc = tp_schema_new(DOCUMENT, &err);
    cr_assert_not_null(doc, "%s", err.message);
    tp_session *alice = tp_hub_tenant(hub, "alice");
    cr_assert_not_null(tp_session_host_as(alice, "notes", doc, "{\"title\":\"Alice notes\"}", &err),
                       "%s", err.message);
    cr_assert_not_null(
        tp_hub_share_as(hub, "roadmap", doc, "{\"title\":\"Roadmap\"}", &tp_lww_map_crdt, &err),
        "%s", err.message);
    cr_assert_eq(tp_hub_subscribe(hub, "alice", "roadmap", TP_WRITE), TP_OK);
}

static void
teardown(void)
{
    if (loop_started) {
        tp_server_stop(server);
        pthread_join(loop, NULL);
        loop_started = 0;
    }
    tp_server_free(server);
    server = NULL;
    tp_hub_free(hub);
    tp_schema_free(doc);
}

static void *
run_loop(void *arg)
{
    (void)arg;
    tp_server_run(server);
    return NULL;
}

/* Starts the server on a free port, its loop on a thread of its own
 * (sc.listen is set here). */
static void
start_with(tp_server_config sc)
{
    tp_error err;
    sc.listen = "127.0.0.1:0";
    server = tp_server_new(hub, &sc, &err);
    cr_assert_not_null(server, "%s", err.message);
    cr_assert_gt(tp_server_port(server), 0);
    cr_assert_eq(pthread_create(&loop, NULL, run_loop, NULL), 0);
    loop_started = 1;
}

static void
start(unsigned autosync_ms)
{
    tp_server_config sc = {0};
    sc.autosync_ms = autosync_ms;
    start_with(sc);
}

/* ---- A raw client: RFC 6455 from the client's side ---- */

static int
dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "%s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void
send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        cr_assert_gt(w, 0, "send: %s", strerror(errno));
        c += w;
        n -= (size_t)w;
    }
}

/* Reads exactly n bytes, failing the test after 10 s; returns 0, or -1 at EOF. */
static int
recv_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        struct pollfd pf = {fd, POLLIN, 0};
        cr_assert_eq(poll(&pf, 1, 10000), 1, "nothing from the server in 10 s");
        ssize_t r = recv(fd, c, n, 0);
        if (r == 0)
            return -1;
        cr_assert_gt(r, 0, "recv: %s", strerror(errno));
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Sends a request and returns the response head (malloc'd) up to the blank line. */
static char *
http(int fd, const char *request)
{
    send_all(fd, request, strlen(request));
    char *head = calloc(1, 8192);
    size_t n = 0;
    while (n < 8191 && (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0))
        cr_assert_eq(recv_all(fd, head + n++, 1), 0, "closed inside the response head");
    return head;
}

static int
ws_open(const char *path)
{
    int fd = dial(tp_server_port(server));
    char req[512];
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Protocol: transports.v1\r\n\r\n",
             path);
    char *head = http(fd, req);
    cr_assert(strncmp(head, "HTTP/1.1 101", 12) == 0, "%s", head);
    /* RFC 6455, 1.3: the accept value of this key is given by the RFC itself. */
    cr_assert_not_null(strstr(head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "%s", head);
    cr_assert_not_null(strstr(head, "transports.v1"), "%s", head);
    free(head);
    return fd;
}

/* Sends a masked text frame. */
static void
ws_send(int fd, const char *text)
{
    size_t n = strlen(text);
    unsigned char h[14] = {0x81};
    size_t hl = 2;
    if (n < 126) {
        h[1] = (unsigned char)(0x80 | n);
    } else {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    }
    const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(h + hl, mask, 4);
    hl += 4;
    unsigned char *buf = malloc(hl + n);
    memcpy(buf, h, hl);
    for (size_t i = 0; i < n; i++)
        buf[hl + i] = (unsigned char)text[i] ^ mask[i % 4];
    send_all(fd, buf, hl + n);
    free(buf);
}

/* Reads one frame: returns its opcode, the payload in *out (malloc'd). */
static int
ws_recv(int fd, char **out, size_t *len)
{
    unsigned char h[2];
    if (recv_all(fd, h, 2) != 0)
        return -1;
    cr_assert_eq(h[1] & 0x80, 0, "a server frame is never masked (RFC 6455, 5.1)");
    uint64_t n = h[1] & 0x7f;
    if (n == 126) {
        unsigned char e[2];
        recv_all(fd, e, 2);
        n = (uint64_t)e[0] << 8 | e[1];
    } else if (n == 127) {
        unsigned char e[8];
        recv_all(fd, e, 8);
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | e[i];
    }
    *out = malloc(n + 1);
    cr_assert_eq(recv_all(fd, *out, n), 0);
    (*out)[n] = '\0';
    *len = n;
    return h[0] & 0x0f;
}

/* Messages received but not yet looked at, per socket (a batch may hold more
 * than the one a test waits for). */
static json_t *held[1024];

/* Reads messages (batches flattened) until one of `type` arrives; returns it
 * (new reference) and keeps those after it for the next call. */
static json_t *
ws_until(int fd, const char *type)
{
    cr_assert_lt(fd, 1024);
    for (;;) {
        if (held[fd] == NULL)
            held[fd] = json_array();
        while (json_array_size(held[fd]) > 0) {
            json_t *m = json_incref(json_array_get(held[fd], 0));
            json_array_remove(held[fd], 0);
            if (strcmp(json_string_value(json_object_get(m, "type")), type) == 0)
                return m;
            json_decref(m);
        }
        char *p;
        size_t n;
        int op = ws_recv(fd, &p, &n);
        cr_assert_eq(op, 1, "expected a text frame, got opcode %d", op);
        json_error_t e;
        json_t *v = json_loads(p, 0, &e);
        cr_assert_not_null(v, "not JSON: %s", p);
        free(p);
        if (json_is_array(v))
            json_array_extend(held[fd], v);
        else
            json_array_append(held[fd], v);
        json_decref(v);
    }
}

static void
ws_close(int fd)
{
    json_decref(held[fd]);
    held[fd] = NULL;
    close(fd);
}

/* ---- Life cycle and errors ---- */

TestSuite(server, .init = setup, .fini = teardown, .timeout = 60);

Test(server, refuses_bad_listen_and_route)
{
    tp_error err;
    tp_server_config sc = {0};
    sc.listen = "nowhere";
    cr_assert_null(tp_server_new(hub, &sc, &err));
    cr_assert_eq(err.code, TP_EARG);
    cr_assert_str_eq(err.message, "listen: \"nowhere\" is not host:port");
    sc.listen = "127.0.0.1:70000";
    cr_assert_null(tp_server_new(hub, &sc, &err));
    cr_assert_str_eq(err.message, "listen: \"127.0.0.1:70000\" has a bad port");
    sc.listen = "127.0.0.1:0";
    sc.route = "ws/{tenant}";
    cr_assert_null(tp_server_new(hub, &sc, &err));
    cr_assert_eq(err.code, TP_EARG);
    cr_assert(strncmp(err.message, "route: ", 7) == 0, "%s", err.message);
}

Test(server, refuses_bad_trusted_proxies)
{
    tp_error err;
    tp_server_config sc = {0};
    sc.listen = "127.0.0.1:0";
    const char *const proxies[] = {"10.0.0.0/8", "x", NULL};
    sc.trusted_proxies = proxies;
    cr_assert_null(tp_server_new(hub, &sc, &err));
    cr_assert_str_eq(err.message,
                     "trusted_proxies and client_address_header: give both or neither");
    sc.client_address_header = "X-Forwarded-For";
    cr_assert_null(tp_server_new(hub, &sc, &err));
    cr_assert_eq(err.code, TP_EARG);
    cr_assert_str_eq(err.message, "trusted_proxies[1]: \"x\" is not an address or CIDR block");
    sc.trusted_proxies = proxies + 2; /* empty */
    cr_assert_null(tp_server_new(hub, &sc, &err));
    cr_assert_eq(err.code, TP_EARG);
    sc.trusted_proxies = proxies;
    sc.client_address_header = "X Forwarded";
    cr_assert_null(tp_server_new(hub, &sc, &err));
    cr_assert_str_eq(err.message, "client_address_header: not a header name");
}

Test(server, reports_an_address_in_use)
{
    start(0);
    tp_error err;
    tp_server_config sc = {0};
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", tp_server_port(server));
    sc.listen = listen;
    cr_assert_null(tp_server_new(hub, &sc, &err));
    cr_assert_eq(err.code, TP_EINTERNAL);
    cr_assert_not_null(strstr(err.message, "Address already in use"), "%s", err.message);
}

/* ---- Posts ---- */

static pthread_t loop_thread_seen;
static int order[64];
static int norder;

static void
record(void *arg)
{
    loop_thread_seen = pthread_self();
    order[norder++] = (int)(intptr_t)arg;
}

static void
stop_from_loop(void *arg)
{
    (void)arg;
    tp_server_stop(server);
}

Test(server, post_runs_on_the_loop_thread_in_order)
{
    start(0);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(tp_server_post(server, record, (void *)(intptr_t)i), TP_OK);
    cr_assert_eq(tp_server_post(server, stop_from_loop, NULL), TP_OK);
    pthread_join(loop, NULL);
    loop_started = 0;
    cr_assert_eq(norder, 50);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(order[i], i);
    cr_assert(pthread_equal(loop_thread_seen, loop), "posts run on the thread in tp_server_run");
}

Test(server, a_post_never_run_runs_at_free)
{
    tp_error err;
    tp_server_config sc = {0};
    sc.listen = "127.0.0.1:0";
    server = tp_server_new(hub, &sc, &err);
    cr_assert_not_null(server, "%s", err.message);
    cr_assert_eq(tp_server_post(server, record, (void *)(intptr_t)7), TP_OK);
    cr_assert_eq(norder, 0);
    tp_server_free(server);
    server = NULL;
    cr_assert_eq(norder, 1, "tp_server_post: fn runs exactly once");
    cr_assert_eq(order[0], 7);
}

static void
on_signal(int sig)
{
    (void)sig;
    tp_server_stop(server);
}

Test(server, stop_from_a_signal_handler)
{
    start(0);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    /* Delivered to the loop thread, interrupting its poll. */
    cr_assert_eq(pthread_kill(loop, SIGUSR1), 0);
    pthread_join(loop, NULL);
    loop_started = 0;
    signal(SIGUSR1, SIG_DFL);
}

/* ---- Over the wire ---- */

typedef struct host_write {
    const char *value;
} host_write;

static void
set_roadmap(void *arg)
{
    host_write *w = arg;
    tp_error err;
    cr_assert_eq(tp_hub_set_shared(hub, "roadmap", w->value, &err), TP_OK, "%s", err.message);
}

Test(server, host_changes_leave_on_the_autosync_tick)
{
    start(20);
    int fd = ws_open("/ws/alice");
    json_t *hello = ws_until(fd, "hello");
    cr_assert_str_eq(json_string_value(json_object_get(hello, "tenant")), "alice");
    json_decref(hello);
    json_decref(ws_until(fd, "synced"));
    host_write w = {"{\"title\":\"Roadmap 2\"}"};
    cr_assert_eq(tp_server_post(server, set_roadmap, &w), TP_OK);
    json_t *patch = ws_until(fd, "patch");
    cr_assert_str_eq(json_string_value(json_object_get(patch, "origin")), "host");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(patch, "patch"), "title")),
                     "Roadmap 2");
    cr_assert_eq(json_integer_value(json_object_get(patch, "from")), 1);
    cr_assert_eq(json_integer_value(json_object_get(patch, "rev")), 2);
    json_decref(patch);
    ws_close(fd);
}

Test(server, stop_closes_every_connection_with_1001_after_pending_frames)
{
    start(0);
    int a = ws_open("/ws/alice");
    int b = ws_open("/ws/alice");
    json_decref(ws_until(a, "synced"));
    json_decref(ws_until(b, "synced"));
    /* A write and the stop in one go: b must get the patch, then 1001. */
    ws_send(a,
            "{\"type\":\"write\",\"scope\":\"private\",\"id\":\"notes\",\"patch\":{\"body\":\"x\"},"
            "\"ref\":1}");
    json_decref(ws_until(a, "ack"));
    tp_server_stop(server);
    json_decref(ws_until(b, "patch"));
    for (int fd = a; fd != -1; fd = fd == a ? b : -1) {
        char *p;
        size_t n;
        int op = ws_recv(fd, &p, &n);
        cr_assert_eq(op, 8, "a close frame, got opcode %d", op);
        cr_assert_geq(n, 2);
        cr_assert_eq(((unsigned char)p[0] << 8) | (unsigned char)p[1], 1001);
        free(p);
        /* Answer the close; the server then closes TCP (RFC 6455, 7.1.1). */
        unsigned char close_frame[8] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9};
        send_all(fd, close_frame, sizeof close_frame);
        char c;
        cr_assert_eq(recv_all(fd, &c, 1), -1, "the server closes the connection");
        ws_close(fd);
    }
    pthread_join(loop, NULL);
    loop_started = 0;
}

static void
metrics_to(void *arg)
{
    *(char **)arg = tp_server_metrics(server);
}

Test(server, healthz_metrics_and_refusals)
{
    start(0);
    int fd = dial(tp_server_port(server));
    char *head = http(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(strncmp(head, "HTTP/1.1 200", 12) == 0, "%s", head);
    free(head);
    close(fd);

    fd = dial(tp_server_port(server));
    head = http(fd, "GET /ws/alice/extra HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n");
    cr_assert(strncmp(head, "HTTP/1.1 404", 12) == 0, "%s", head);
    free(head);
    close(fd);

    fd = dial(tp_server_port(server));
    head = http(fd, "GET /ws/alice HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 8\r\n\r\n");
    cr_assert(strncmp(head, "HTTP/1.1 400", 12) == 0, "%s", head);
    cr_assert_not_null(strstr(head, "Sec-WebSocket-Version: 13"), "%s", head);
    free(head);
    close(fd);

    int ws = ws_open("/ws/alice");
    json_decref(ws_until(ws, "synced"));
    ws_send(ws,
            "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"roadmap\",\"patch\":{\"title\":3},"
            "\"ref\":1}");
    json_t *e = ws_until(ws, "error");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "invalid");
    json_decref(e);

    char *m = NULL;
    cr_assert_eq(tp_server_post(server, metrics_to, &m), TP_OK);
    ws_send(ws, "{\"type\":\"ping\",\"ref\":9}");
    json_decref(ws_until(ws, "pong")); /* the post ran before the ping was answered */
    cr_assert_not_null(m);
    cr_assert_not_null(strstr(m, "\ntransports_connections 1\n"), "%s", m);
    cr_assert_not_null(strstr(m, "transports_refused_total{code=\"invalid\"} 1\n"), "%s", m);
    cr_assert_not_null(strstr(m, "transports_handshakes_refused_total{status=\"404\"} 1\n"), "%s",
                       m);
    cr_assert_not_null(strstr(m, "transports_handshakes_refused_total{status=\"400\"} 1\n"), "%s",
                       m);
    tp_free(m);
    ws_close(ws);
}

Test(server, pings_a_silent_peer_and_drops_it_when_it_does_not_answer)
{
    start_with((tp_server_config){.ping_interval_ms = 1000, .ping_timeout_ms = 1000});
    int fd = ws_open("/ws/alice");
    json_decref(ws_until(fd, "synced"));
    /* Silence: the server pings (RFC 6455, 5.5.2), then, unanswered, drops us. */
    int64_t t0 = (int64_t)time(NULL);
    char *p;
    size_t n;
    int op = ws_recv(fd, &p, &n);
    cr_assert_eq(op, 9, "a ping, got opcode %d", op);
    free(p);
    for (;;) {
        op = ws_recv(fd, &p, &n);
        if (op < 0)
            break; /* TCP closed */
        free(p);
        cr_assert(op == 9 || op == 8, "only pings and a close, got opcode %d", op);
    }
    cr_assert_leq((int64_t)time(NULL) - t0, 8, "dropped within the ping timeout");
    ws_close(fd);
}

Test(server, keeps_a_peer_that_answers_pings)
{
    start_with((tp_server_config){.ping_interval_ms = 1000, .ping_timeout_ms = 1000});
    int fd = ws_open("/ws/alice");
    json_decref(ws_until(fd, "synced"));
    /* Three pings answered (RFC 6455, 5.5.3: a pong echoes the ping's
     * payload): the connection outlives three ping timeouts. */
    for (int i = 0; i < 3; i++) {
        char *p;
        size_t n;
        int op = ws_recv(fd, &p, &n);
        cr_assert_eq(op, 9, "a ping, got opcode %d", op);
        cr_assert_lt(n, 126);
        unsigned char pong[2 + 4 + 125] = {0x8a, (unsigned char)(0x80 | n), 1, 2, 3, 4};
        for (size_t k = 0; k < n; k++)
            pong[6 + k] = (unsigned char)p[k] ^ pong[2 + k % 4];
        send_all(fd, pong, 6 + n);
        free(p);
    }
    ws_send(fd, "{\"type\":\"ping\",\"ref\":5}");
    json_t *pong = ws_until(fd, "pong");
    cr_assert_eq(json_integer_value(json_object_get(pong, "ref")), 5);
    json_decref(pong);
    ws_close(fd);
}

/* Reads one text frame and returns how many messages it holds. */
static size_t
frame_messages(int fd)
{
    char *p;
    size_t n;
    cr_assert_eq(ws_recv(fd, &p, &n), 1);
    json_t *v = json_loads(p, 0, NULL);
    cr_assert_not_null(v, "%s", p);
    size_t k = json_is_array(v) ? json_array_size(v) : 1;
    json_decref(v);
    free(p);
    return k;
}

Test(server, flush_ms_gathers_patches_into_one_write)
{
    start_with((tp_server_config){.flush_ms = 2000});
    int a = ws_open("/ws/alice"), b = ws_open("/ws/alice"), c = ws_open("/ws/alice");
    json_decref(ws_until(a, "synced"));
    json_decref(ws_until(b, "synced"));
    json_decref(ws_until(c, "synced"));
    /* Two writes from two connections, 50 ms apart, inside one flush
     * window: b gets both patches in one frame (without flush_ms the first
     * would leave at the end of its own loop iteration). */
    ws_send(a,
            "{\"type\":\"write\",\"scope\":\"private\",\"id\":\"notes\",\"patch\":{\"body\":\"1\"},"
            "\"ref\":1}");
    struct timespec gap = {0, 50 * 1000000};
    nanosleep(&gap, NULL);
    ws_send(c,
            "{\"type\":\"write\",\"scope\":\"private\",\"id\":\"notes\",\"patch\":{\"body\":\"2\"},"
            "\"ref\":1}");
    cr_assert_eq(frame_messages(b), 2, "both patches in one frame");
    ws_close(a);
    ws_close(b);
    ws_close(c);
}
