/*
 * floor_relay: the benchmark's floor (bench/README.md). A WebSocket relay on
 * libwebsockets with nothing of ours in it, no JSON, no hub: every text
 * message received is passed as it is to every other connection in the same
 * room. A connection's room is the path of its upgrade request (`/t17`), so
 * W1 puts everyone in one room, W2 one room per tenant's pair of
 * connections, and W3 a room per idle connection.
 *
 * It batches exactly as transportsd does (src/net/server.c, read, not
 * linked): a message is stored once, refcounted, and every recipient's queue
 * holds a reference; lws runs on a libuv loop (epoll), and at the end of
 * each iteration (a uv_prepare handle) every connection whose queue went
 * from empty to not empty gets everything queued pre-framed (RFC 6455
 * header, FIN, text, unmasked) into one buffer of at most 256 KiB, handed
 * to lws in one LWS_WRITE_RAW write, at once (or from its writeable
 * callback when lws still holds unsent bytes). lws is set up as transportsd
 * sets it up where that changes what a connection costs: the same receive
 * buffer (its size is most of lws's memory per idle connection), send size,
 * header room, UTF-8 validation and ping policy. So the ratio of transportsd
 * to this relay is the cost of everything transports adds to moving the
 * bytes.
 *
 * usage: floor_relay [--port PORT]   (0, the default: any free port)
 * It prints `listening addr=127.0.0.1:PORT` on stdout once bound.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/resource.h>

#include <libwebsockets.h>
#include <uv.h>

/* As src/net/net.h's TP__SEND_CHUNK and TP__TX_MAX. */
#define SEND_CHUNK (256 * 1024)
#define TX_MAX (4 * 1024 * 1024)
#define PATH_MAX_LEN 256

typedef struct msg {
    size_t refs;
    size_t len;
    unsigned char data[];
} msg;

typedef struct room room;

typedef struct peer {
    struct lws *wsi;
    room *room;
    size_t index;  /* in room->members */
    msg **q;       /* messages waiting, oldest first from head */
    size_t head, len, cap;
    int ready;     /* listed in relay.ready */
    unsigned char *rx; /* a message arriving in fragments */
    size_t rxlen, rxcap;
} peer;

/*
 * The connections that share a path. Rooms are made on a path's first
 * connection and kept until the relay stops: a benchmark's paths are few and
 * fixed, and a room costs 0.1 to 0.2 KB (the struct with its path, a members
 * array, a slot in the table), which W3's figure for the floor includes.
 */
struct room {
    peer **members;
    size_t n, cap;
    uint64_t hash;
    char path[];
};

typedef struct relay {
    room **rooms; /* open addressing, linear probing; a power of two */
    size_t nrooms, roomscap;
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

static uint64_t
fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void
rooms_resize(relay *r, size_t cap)
{
    room **slots = calloc(cap, sizeof *slots);
    if (slots == NULL) {
        fputs("floor_relay: out of memory\n", stderr);
        exit(1);
    }
    for (size_t i = 0; i < r->roomscap; i++) {
        room *rm = r->rooms[i];
        if (rm == NULL)
            continue;
        size_t j = (size_t)rm->hash & (cap - 1);
        while (slots[j] != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = rm;
    }
    free(r->rooms);
    r->rooms = slots;
    r->roomscap = cap;
}

/* The room of a path, made on first use; NULL when out of memory. */
static room *
room_get(relay *r, const char *path, size_t n)
{
    if (2 * (r->nrooms + 1) > r->roomscap)
        rooms_resize(r, r->roomscap ? 2 * r->roomscap : 64);
    uint64_t h = fnv1a(path, n);
    size_t j = (size_t)h & (r->roomscap - 1);
    for (room *rm; (rm = r->rooms[j]) != NULL; j = (j + 1) & (r->roomscap - 1))
        if (rm->hash == h && strncmp(rm->path, path, n) == 0 && rm->path[n] == '\0')
            return rm;
    room *rm = malloc(sizeof *rm + n + 1);
    if (rm == NULL)
        return NULL;
    rm->members = NULL;
    rm->n = rm->cap = 0;
    rm->hash = h;
    memcpy(rm->path, path, n);
    rm->path[n] = '\0';
    r->rooms[j] = rm;
    r->nrooms++;
    return rm;
}

static int
room_join(room *rm, peer *p)
{
    if (rm->n == rm->cap) {
        /* From 1, not grow()'s 16: W3 has a room per connection. */
        size_t cap = rm->cap ? 2 * rm->cap : 1;
        peer **m = realloc(rm->members, cap * sizeof *m);
        if (m == NULL)
            return -1;
        rm->members = m;
        rm->cap = cap;
    }
    p->room = rm;
    p->index = rm->n;
    rm->members[rm->n++] = p;
    return 0;
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
    room *rm = from->room;
    for (size_t i = 0; i < rm->n; i++)
        if (rm->members[i] != from)
            push(r, rm->members[i], m);
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
    room *rm = p->room;
    rm->members[p->index] = rm->members[--rm->n];
    rm->members[p->index]->index = p->index;
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
    case LWS_CALLBACK_ESTABLISHED: {
        /* The request's headers are still there: the path names the room. */
        char path[PATH_MAX_LEN];
        memset(p, 0, sizeof *p);
        int n = lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI);
        if (n <= 0)
            return -1;
        room *rm = room_get(r, path, (size_t)n);
        if (rm == NULL || room_join(rm, p) != 0)
            return -1;
        p->wsi = wsi;
        return 0;
    }
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
    /* As transportsd: one descriptor per connection, up to the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
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
    /*
     * The first protocol is also the one a client offering none gets. Its
     * buffers are transportsd's (src/net/server.c): lws mallocs
     * rx_buffer_size + LWS_PRE + 4 per connection, 2 KiB in all, and with
     * tx_packet_size at 4 MiB every write is one send() rather than cut at
     * rx_buffer_size. pt_serv_buf_size keeps its default there as here.
     */
    struct lws_protocols protocols[] = {
        {.name = "floor",
         .callback = callback,
         .per_session_data_size = sizeof(peer),
         .rx_buffer_size = 2048 - LWS_PRE - 4 - 16,
         .tx_packet_size = TX_MAX},
        {0},
    };
    /* transportsd's defaults: a ping after 30 s of silence, hang up 10 s
     * later (lws reschedules this timer as messages arrive, as there). */
    lws_retry_bo_t retry;
    memset(&retry, 0, sizeof retry);
    retry.secs_since_valid_ping = 30;
    retry.secs_since_valid_hangup = 40;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.user = &r;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.timeout_secs = 10;
    info.timeout_secs_ah_idle = 10;
    info.max_http_header_data = 8192;
    info.retry_and_idle_policy = &retry;
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
    for (size_t i = 0; i < r.roomscap; i++)
        if (r.rooms[i] != NULL) {
            free(r.rooms[i]->members);
            free(r.rooms[i]);
        }
    free(r.rooms);
    free(r.ready);
    free(r.sendbuf);
    return 0;
}
