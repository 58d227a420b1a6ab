/*
 * floor_relay: the benchmark's floor (bench/README.md). A WebSocket relay on
 * libwebsockets with nothing of ours in it, no JSON, no hub: every text
 * message received is passed to every other connection as it is.
 *
 * It batches exactly as transportsd does (src/net/server.c, read, not
 * linked): a message is stored once, refcounted, and every recipient's queue
 * holds a reference; lws runs on a libuv loop (epoll), and at the end of
 * each iteration (a uv_prepare handle) every connection whose queue went
 * from empty to not empty gets everything queued pre-framed (RFC 6455
 * header, FIN, text, unmasked) into one buffer of at most 256 KiB, handed
 * to lws in one LWS_WRITE_RAW write, at once (or from its writeable
 * callback when lws still holds unsent bytes). So the ratio of transportsd to this relay is the
 * cost of everything transports adds to moving the bytes.
 *
 * usage: floor_relay [--port PORT]   (0, the default: any free port)
 * It prints `listening addr=127.0.0.1:PORT` on stdout once bound.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>
#include <uv.h>

#define SEND_CHUNK (256 * 1024)

typedef struct msg {
    size_t refs;
    size_t len;
    unsigned char data[];
} msg;

typedef struct peer {
    struct lws *wsi;
    size_t index;  /* in relay.peers */
    msg **q;       /* messages waiting, oldest first from head */
    size_t head, len, cap;
    int ready;     /* listed in relay.ready */
    unsigned char *rx; /* a message arriving in fragments */
    size_t rxlen, rxcap;
} peer;

typedef struct relay {
    peer **peers;
    size_t npeers, peerscap;
    peer **ready;
    size_t nready, readycap;
    unsigned char *sendbuf;
    size_t sendcap;
} relay;

static int flush_peer(relay *r, peer *p);

static void
on_signal(uv_signal_t *h, int sig)
{
    (void)sig;
    uv_stop(h->loop);
}

/* The end of a loop iteration: transportsd's before_sleep()/flush_ready(). */
static void
before_sleep(uv_prepare_t *h)
{
    relay *r = h->data;
    for (size_t i = 0; i < r->nready; i++) {
        peer *p = r->ready[i];
        p->ready = 0;
        if (lws_partial_buffered(p->wsi) || flush_peer(r, p) < 0)
            lws_callback_on_writable(p->wsi);
    }
    r->nready = 0;
}

static void *
grow(void *p, size_t *cap, size_t need, size_t each)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(p, c * each);
    if (q == NULL) {
        fputs("floor_relay: out of memory\n", stderr);
        exit(1);
    }
    *cap = c;
    return q;
}

static void
unref(msg *m)
{
    if (--m->refs == 0)
        free(m);
}

static void
push(relay *r, peer *p, msg *m)
{
    if (p->head + p->len == p->cap && p->head > 0) {
        memmove(p->q, p->q + p->head, p->len * sizeof *p->q);
        p->head = 0;
    }
    p->q = grow(p->q, &p->cap, p->head + p->len + 1, sizeof *p->q);
    p->q[p->head + p->len++] = m;
    m->refs++;
    if (!p->ready) {
        p->ready = 1;
        r->ready = grow(r->ready, &r->readycap, r->nready + 1, sizeof *r->ready);
        r->ready[r->nready++] = p;
    }
}

static void
broadcast(relay *r, peer *from, const void *data, size_t len)
{
    msg *m = malloc(sizeof *m + len);
    if (m == NULL)
        return;
    m->refs = 1; /* ours, until every push is done */
    m->len = len;
    memcpy(m->data, data, len);
    for (size_t i = 0; i < r->npeers; i++)
        if (r->peers[i] != from)
            push(r, r->peers[i], m);
    unref(m);
}

static size_t
frame_header(unsigned char *p, size_t n)
{
    p[0] = 0x81;
    if (n < 126) {
        p[1] = (unsigned char)n;
        return 2;
    }
    if (n <= 0xffff) {
        p[1] = 126;
        p[2] = (unsigned char)(n >> 8);
        p[3] = (unsigned char)n;
        return 4;
    }
    p[1] = 127;
    for (int i = 0; i < 8; i++)
        p[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    return 10;
}

static int
flush_peer(relay *r, peer *p)
{
    size_t used = 0;
    while (used < SEND_CHUNK && p->len > 0) {
        msg *m = p->q[p->head];
        r->sendbuf = grow(r->sendbuf, &r->sendcap, LWS_PRE + used + m->len + 10, 1);
        unsigned char *b = r->sendbuf + LWS_PRE + used;
        size_t h = frame_header(b, m->len);
        memcpy(b + h, m->data, m->len);
        used += h + m->len;
        p->head++;
        p->len--;
        unref(m);
    }
    if (p->len == 0)
        p->head = 0;
    if (used > 0 && lws_write(p->wsi, r->sendbuf + LWS_PRE, used, LWS_WRITE_RAW) < (int)used)
        return -1;
    if (p->len > 0)
        lws_callback_on_writable(p->wsi);
    return 0;
}

static void
drop_peer(relay *r, peer *p)
{
    if (p->wsi == NULL)
        return;
    r->peers[p->index] = r->peers[--r->npeers];
    r->peers[p->index]->index = p->index;
    for (size_t i = 0; i < r->nready; i++)
        if (r->ready[i] == p) {
            r->ready[i] = r->ready[--r->nready];
            break;
        }
    while (p->len > 0) {
        unref(p->q[p->head++]);
        p->len--;
    }
    free(p->q);
    free(p->rx);
    p->wsi = NULL;
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    relay *r = lws_context_user(lws_get_context(wsi));
    peer *p = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(p, 0, sizeof *p);
        p->wsi = wsi;
        r->peers = grow(r->peers, &r->peerscap, r->npeers + 1, sizeof *r->peers);
        p->index = r->npeers;
        r->peers[r->npeers++] = p;
        return 0;
    case LWS_CALLBACK_RECEIVE: {
        int last = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
        if (last && p->rxlen == 0) {
            broadcast(r, p, in, len); /* whole in lws's buffer: no copy */
            return 0;
        }
        p->rx = grow(p->rx, &p->rxcap, p->rxlen + len, 1);
        memcpy(p->rx + p->rxlen, in, len);
        p->rxlen += len;
        if (last) {
            broadcast(r, p, p->rx, p->rxlen);
            p->rxlen = 0;
        }
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return flush_peer(r, p);
    case LWS_CALLBACK_CLOSED:
        drop_peer(r, p);
        return 0;
    default:
        return 0;
    }
}

int
main(int argc, char **argv)
{
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end != '\0' || v < 0 || v > 65535) {
                fprintf(stderr, "floor_relay: bad port %s\n", argv[i]);
                return 2;
            }
            port = (int)v;
        } else {
            fprintf(stderr, "usage: floor_relay [--port PORT]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_signal_t sigint, sigterm;
    uv_signal_init(&loop, &sigint);
    uv_signal_init(&loop, &sigterm);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_prepare_t prepare;
    uv_prepare_init(&loop, &prepare);
    lws_set_log_level(LLL_ERR, NULL);

    relay r;
    memset(&r, 0, sizeof r);
    /* The first protocol is also the one a client offering none gets. */
    struct lws_protocols protocols[] = {
        {.name = "floor",
         .callback = callback,
         .per_session_data_size = sizeof(peer),
         .rx_buffer_size = 65536},
        {0},
    };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.user = &r;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.vhost_name = "default";
    void *loops[1] = {&loop};
    info.foreign_loops = loops;
    info.options |= LWS_SERVER_OPTION_LIBUV;
    struct lws_context *ctx = lws_create_context(&info);
    if (ctx == NULL) {
        fprintf(stderr, "floor_relay: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(ctx, "default");
    printf("listening addr=127.0.0.1:%d\n", vh ? lws_get_vhost_listen_port(vh) : port);
    fflush(stdout);

    prepare.data = &r;
    uv_prepare_start(&prepare, before_sleep);
    uv_run(&loop, UV_RUN_DEFAULT);
    /* lws on a foreign loop destroys in two calls around a run of it. */
    lws_context_destroy(ctx);
    uv_prepare_stop(&prepare);
    uv_signal_stop(&sigint);
    uv_signal_stop(&sigterm);
    uv_close((uv_handle_t *)&prepare, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    lws_context_destroy(ctx);
    uv_loop_close(&loop);
    free(r.peers);
    free(r.ready);
    free(r.sendbuf);
    return 0;
}
