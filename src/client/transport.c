/*
 * The client's transport: libwebsockets on a thread of the client's own,
 * around the sans-IO protocol of client.c.
 *
 * One lws context with no listener, serviced by lws's own poll loop (one
 * connection needs nothing more), and at most one connection at a time to
 * the client's URL. What happens on it goes to client.c through the public
 * sans-IO calls, exactly as a caller driving its own socket would make
 * them: tp_client_opened, tp_client_feed, tp_client_next_frame and
 * tp_client_closed.
 *
 * Time: every deadline (the next attempt after a backoff, an attempt's
 * connect timeout, the keepalive ping, dropping a silent connection, the
 * grace given to the closing handshake at stop) is checked in the loop,
 * after each lws_service(); one lws timer (a sul) is kept at the nearest
 * deadline so that lws's poll() returns in time.
 *
 * Threads: everything here runs on the transport thread, except wake()
 * (any thread, c->mu held) and the start and stop calls. wake() only calls
 * lws_cancel_service(), which is thread-safe; lws then runs
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED on our thread, which asks for the
 * writeable callback. The thread clears c->wake under c->mu before it
 * destroys the context, so no wake() can reach a destroyed context.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "client/client.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"

#define SUBPROTOCOL "transports.v1"
/* The largest message assembled from a connection. The server's own limit
 * (max_message_bytes in hello) is client.c's to know; this one only keeps
 * a broken or hostile server from making the client buffer without end. */
#define MAX_MESSAGE_BYTES (64u * 1024 * 1024)
#define RX_BUFFER_BYTES 65536      /* what lws reads at a time */
#define STOP_GRACE_NS 1000000000LL /* the closing handshake at stop */
#define NS_PER_MS 1000000LL
#define DEADLINE_SLACK_NS 1000000LL /* poll() counts whole ms: due within 1 ms is due */
#define NEVER INT64_MAX

typedef struct transport {
    lws_sorted_usec_list_t sul; /* wakes lws's poll() at the nearest deadline */
    tp_client *c;
    struct lws_context *ctx;
    struct lws_protocols protocols[2];
    pthread_t thread;
    atomic_int stop;

    /* Options, defaults applied. */
    int64_t backoff_min_ns, backoff_max_ns, connect_timeout_ns, ping_interval_ns;

    /* The connection: at most one. */
    struct lws *wsi;  /* NULL between connections */
    int active;       /* an attempt or a connection is under way */
    int established;  /* the WebSocket is open (tp_client_opened was called) */
    int reached_live; /* this connection got to LIVE: the backoff starts over */
    int closing;      /* we close it (close_code), lws is told in the writeable callback */
    int close_code;   /* the code to report: ours, or the server's close frame */
    const char *why;  /* our reason for closing, for the log */
    int64_t connect_deadline_ns;
    int64_t last_rx_ns;
    int ping_sent;

    /* Between connections. */
    int64_t next_attempt_ns; /* NEVER: none scheduled */
    unsigned failures;       /* attempts since the last connection that reached LIVE */
    uint64_t rng;

    char *host_header; /* "host:port" (brackets for IPv6), what Host says */
    char *rx;          /* a message being assembled from fragments */
    size_t rx_len, rx_cap;
    unsigned char *tx; /* LWS_PRE + the frame being written */
    size_t tx_cap;
} transport;

static void connection_ended(transport *t, int code, const char *why);
static void check_deadlines(transport *t);
static void rearm(transport *t);

/* ------------------------------------------------------------------------ */
/* Time and backoff                                                          */
/* ------------------------------------------------------------------------ */

static uint64_t
next_random(transport *t)
{
    /* xorshift64*: enough for jitter, and no global state. */
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    return t->rng * 2685821657736338717ULL;
}

/* The delay before the next attempt: backoff_min doubled for each failure
 * since the last LIVE connection, up to backoff_max, then a random point
 * in [d/2, d] ("full jitter" kept above half, so clients that lost one
 * server together do not come back together, nor all at once). */
static int64_t
backoff_ns(transport *t)
{
    int64_t d = t->backoff_min_ns;
    for (unsigned i = 0; i < t->failures && d < t->backoff_max_ns; i++)
        d *= 2;
    if (d > t->backoff_max_ns)
        d = t->backoff_max_ns;
    int64_t half = d / 2;
    return half + (int64_t)(next_random(t) % (uint64_t)(d - half + 1));
}

/* The nearest deadline, or NEVER. */
static int64_t
next_deadline(const transport *t)
{
    int64_t d = NEVER;
    if (!t->active && t->next_attempt_ns < d)
        d = t->next_attempt_ns;
    if (t->active && !t->established && t->connect_deadline_ns < d)
        d = t->connect_deadline_ns;
    if (t->established && !t->closing) {
        int64_t ping = t->last_rx_ns + (t->ping_sent ? 2 : 1) * t->ping_interval_ns;
        if (ping < d)
            d = ping;
        /* Writes refused with rate_limited: their delay starts here. */
        int64_t retry = tp__client_retry(t->c, tp__clock_mono_ns() / NS_PER_MS);
        if (retry != INT64_MAX && retry * NS_PER_MS < d)
            d = retry * NS_PER_MS;
        /* A fresh token before the current one expires (4401). */
        int64_t auth = tp__client_token_tick(t->c, tp__clock_mono_ns() / NS_PER_MS);
        if (auth != INT64_MAX && auth * NS_PER_MS < d)
            d = auth * NS_PER_MS;
    }
    return d;
}

/* The timer: lws runs it before it polls, and a deadline met there can
 * move others (a connection closed there schedules the next attempt). */
static void
sul_fired(lws_sorted_usec_list_t *sul)
{
    transport *t = lws_container_of(sul, transport, sul);
    if (atomic_load(&t->stop))
        return;
    check_deadlines(t);
    rearm(t);
}

static void
arm(transport *t, int64_t deadline)
{
    if (deadline == NEVER) {
        lws_sul_cancel(&t->sul);
        return;
    }
    int64_t us = (deadline - tp__clock_mono_ns()) / 1000;
    lws_sul_schedule(t->ctx, 0, &t->sul, sul_fired, us > 1000 ? us : 1000);
}

/* Keeps the timer at the nearest deadline; called after anything that may
 * move one, inside lws's callbacks too: a change made while lws runs its
 * timers, before poll(), would otherwise wait for lws's next own timer. */
static void
rearm(transport *t)
{
    if (t->ctx != NULL && !atomic_load(&t->stop))
        arm(t, next_deadline(t));
}

/* ------------------------------------------------------------------------ */
/* Connecting                                                                */
/* ------------------------------------------------------------------------ */

/* The path and query of the URL to connect to now (tp_client_url adds
 * resume=1 and the token as needed). */
static char *
url_path(tp_client *c)
{
    char *url = tp_client_url(c);
    if (url == NULL)
        return NULL;
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    p = strchr(p, '/');
    char *path = tp__strdup(p ? p : "/");
    tp_free(url);
    return path;
}

/* Whether host does not resolve; why says so. */
static int
resolve_fails(const char *host, int port, char *why, size_t size)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc == 0) {
        freeaddrinfo(res);
        return 0;
    }
    snprintf(why, size, "cannot resolve host %s: %s", host, gai_strerror(rc));
    return 1;
}

/*
 * lws reports a failed TCP connection as "Unable to connect", whatever the
 * cause. Once that happened, one quick connection of our own (at most a
 * second) finds out why: "connection refused", "no route to host"...
 * Returns 1 with why filled, 0 when it cannot tell (the server answers
 * now, or the probe itself failed).
 */
static int
tcp_reason(const char *host, int port, char *why, size_t size)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    if (getaddrinfo(host, service, &hints, &res) != 0)
        return 0;
    int err = 0;
    int fd =
        socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, res->ai_protocol);
    if (fd >= 0) {
        if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
            err = errno;
            if (err == EINPROGRESS) {
                struct pollfd p = {fd, POLLOUT, 0};
                if (poll(&p, 1, 1000) == 1) {
                    socklen_t l = sizeof err;
                    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0)
                        err = 0;
                } else {
                    err = ETIMEDOUT;
                }
            }
        }
        close(fd);
    }
    freeaddrinfo(res);
    if (err == 0)
        return 0;
    snprintf(why, size, "%s", err == ECONNREFUSED ? "connection refused" : strerror(err));
    /* strerror's words start with a capital: a reason reads as lower case. */
    if (why[0] >= 'A' && why[0] <= 'Z')
        why[0] = (char)(why[0] - 'A' + 'a');
    return 1;
}

static void
connect_now(transport *t)
{
    tp_client *c = t->c;
    char *path = url_path(c); /* tp_client_url sets CONNECTING */
    if (path == NULL) {
        t->active = 1;
        connection_ended(t, 1006, "out of memory");
        return;
    }
    tp__log(&c->log, TP_LOG_INFO, "connecting url=%s%s", c->url_text,
            t->failures ? " (retry)" : "");
    /* lws says only "Unable to connect" when the name does not resolve:
     * resolve it first, so that the reason is said. */
    char why[200];
    if (resolve_fails(c->url.host, c->url.port, why, sizeof why)) {
        tp__free(path);
        t->active = 1;
        connection_ended(t, 1006, why);
        return;
    }
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = t->ctx;
    ci.address = c->url.host;
    ci.port = c->url.port;
    ci.path = path;
    ci.host = t->host_header;
    ci.origin = NULL; /* a client is not a browser: no Origin unless opt.headers has one */
    ci.protocol = SUBPROTOCOL;
    ci.local_protocol_name = SUBPROTOCOL;
    ci.ietf_version_or_minus_one = -1;
    if (c->url.tls) {
        ci.ssl_connection = LCCSCF_USE_SSL;
        if (c->opt.tls_insecure)
            ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
        ci.alpn = "http/1.1"; /* lws 4.1 has no WebSocket over h2 as a client */
    }
    t->active = 1;
    t->established = 0;
    t->reached_live = 0;
    t->closing = 0;
    t->close_code = 0;
    t->why = NULL;
    t->ping_sent = 0;
    t->rx_len = 0;
    t->connect_deadline_ns = tp__clock_mono_ns() + t->connect_timeout_ns;
    struct lws *wsi = lws_client_connect_via_info(&ci);
    tp__free(path);
    /* lws may have failed the attempt inside the call (its
     * CLIENT_CONNECTION_ERROR then ran already), or return NULL without it. */
    if (!t->active)
        return;
    if (wsi == NULL) {
        connection_ended(t, 1006, "the connection could not start");
        return;
    }
    t->wsi = wsi;
}

/*
 * The attempt or the connection is over: tell client.c (which decides the
 * next state: WAITING, REFUSED, or STOPPED with no_reconnect), then
 * schedule the next attempt unless there is none to make.
 */
static void
connection_ended(transport *t, int code, const char *why)
{
    tp_client *c = t->c;
    if (!t->active)
        return;
    int was_open = t->established;
    t->active = 0;
    t->established = 0;
    t->wsi = NULL;
    t->rx_len = 0;
    if (t->reached_live)
        t->failures = 0;
    t->reached_live = 0;

    pthread_mutex_lock(&c->mu);
    tp_client_closed(c, code, why);
    tp_client_state state = c->state;
    pthread_mutex_unlock(&c->mu);

    const char *what = was_open ? "disconnected" : "connection failed";
    int refused =
        state == TP_CLIENT_REFUSED || code == 400 || code == 401 || code == 403 || code == 404;
    if (atomic_load(&t->stop)) {
        tp__log(&c->log, TP_LOG_INFO, "%s code=%d: %s", what, code, why);
        return;
    }
    if (refused || state == TP_CLIENT_STOPPED || c->opt.no_reconnect) {
        t->next_attempt_ns = NEVER;
        tp__log(&c->log, refused ? TP_LOG_ERROR : TP_LOG_INFO, "%s code=%d: %s; not retrying%s",
                what, code, why, refused ? " (the server refused the handshake)" : "");
        return;
    }
    int64_t delay = backoff_ns(t);
    t->failures++;
    t->next_attempt_ns = tp__clock_mono_ns() + delay;
    tp__log(&c->log, TP_LOG_INFO, "%s code=%d: %s; retrying in %lld ms", what, code, why,
            (long long)(delay / NS_PER_MS));
}

/* Drops the connection without a closing handshake (a silent peer, an
 * attempt that takes too long): lws closes it on its next service. */
static void
drop(transport *t, const char *why)
{
    t->close_code = 1006;
    t->why = why;
    t->closing = 1;
    t->connect_deadline_ns = NEVER;
    lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Starts our side of the closing handshake: lws sends the close frame from
 * the writeable callback. */
static void
close_with(transport *t, struct lws *wsi, int code, const char *why)
{
    t->closing = 1;
    t->close_code = code;
    t->why = why;
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)why, strlen(why));
}

/* The deadlines, after each lws_service(). */
static void
check_deadlines(transport *t)
{
    int64_t now = tp__clock_mono_ns() + DEADLINE_SLACK_NS;
    if (!t->active) {
        if (t->next_attempt_ns <= now) {
            t->next_attempt_ns = NEVER;
            connect_now(t);
        }
        return;
    }
    if (t->wsi == NULL || t->closing)
        return;
    if (!t->established) {
        if (t->connect_deadline_ns <= now) {
            tp__log(&t->c->log, TP_LOG_WARN, "connect timed out after %lld ms",
                    (long long)(t->connect_timeout_ns / NS_PER_MS));
            drop(t, "timed out");
        }
        return;
    }
    /* Held writes whose delay has passed are queued (wake asks for the
     * writeable callback). */
    tp__client_retry(t->c, now / NS_PER_MS);
    tp__client_token_tick(t->c, now / NS_PER_MS);
    if (now - t->last_rx_ns >= 2 * t->ping_interval_ns) {
        tp__log(&t->c->log, TP_LOG_WARN, "nothing received for %lld ms: dropping the connection",
                (long long)(2 * t->ping_interval_ns / NS_PER_MS));
        drop(t, "the server stopped answering");
    } else if (now - t->last_rx_ns >= t->ping_interval_ns && !t->ping_sent) {
        t->ping_sent = 1;
        tp__log(&t->c->log, TP_LOG_DEBUG, "quiet for %lld ms: ping",
                (long long)(t->ping_interval_ns / NS_PER_MS));
        tp__client_ping(t->c);
        lws_callback_on_writable(t->wsi);
    }
}

/* ------------------------------------------------------------------------ */
/* The connection's events                                                   */
/* ------------------------------------------------------------------------ */

static int
append_headers(transport *t, struct lws *wsi, char **p, char *end)
{
    tp_client *c = t->c;
    if (c->token != NULL && !c->opt.token_in_query) {
        size_t n = strlen(c->token);
        char *v = tp__malloc(n + 8);
        if (v == NULL)
            return -1;
        memcpy(v, "Bearer ", 7);
        memcpy(v + 7, c->token, n + 1);
        int r = lws_add_http_header_by_name(
            wsi, (const unsigned char *)"Authorization:", (const unsigned char *)v, (int)(n + 7),
            (unsigned char **)p, (unsigned char *)end);
        tp__free(v);
        if (r != 0) {
            tp__log(&c->log, TP_LOG_ERROR, "the token does not fit in the handshake");
            return -1;
        }
    }
    for (size_t i = 0; c->headers != NULL && c->headers[i] != NULL; i++) {
        const char *h = c->headers[i];
        const char *colon = strchr(h, ':');
        if (colon == NULL || colon == h) {
            tp__log(&c->log, TP_LOG_WARN, "header %zu is not \"Name: value\": left out", i);
            continue;
        }
        char name[256];
        size_t nl = (size_t)(colon - h) + 1; /* with the colon, as lws wants it */
        if (nl >= sizeof name) {
            tp__log(&c->log, TP_LOG_WARN, "header %zu has a name too long: left out", i);
            continue;
        }
        memcpy(name, h, nl);
        name[nl] = '\0';
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)name, (const unsigned char *)v,
                                        (int)strlen(v), (unsigned char **)p,
                                        (unsigned char *)end) != 0) {
            tp__log(&c->log, TP_LOG_ERROR, "the headers do not fit in the handshake");
            return -1;
        }
    }
    return 0;
}

static int
feed(transport *t, struct lws *wsi, const char *text, size_t len)
{
    tp_client *c = t->c;
    pthread_mutex_lock(&c->mu);
    int r = tp_client_feed(c, text, len);
    int live = c->state == TP_CLIENT_LIVE;
    pthread_mutex_unlock(&c->mu);
    if (r < 0) {
        tp__log(&c->log, TP_LOG_ERROR, "the server broke the protocol (%s): closing with 1002",
                tp_strerror(r));
        close_with(t, wsi, 1002, "protocol error");
        return -1;
    }
    if (live && !t->reached_live) {
        t->reached_live = 1;
        tp__log(&c->log, TP_LOG_INFO, "live");
    }
    return 0;
}

/* A frame, or a piece of one: messages are fed whole. */
static int
receive(transport *t, struct lws *wsi, const char *in, size_t len)
{
    t->last_rx_ns = tp__clock_mono_ns();
    t->ping_sent = 0;
    if (t->closing)
        return 0;
    if (lws_frame_is_binary(wsi)) {
        tp__log(&t->c->log, TP_LOG_ERROR, "the server sent a binary frame: closing with 1003");
        close_with(t, wsi, 1003, "binary frames are not accepted");
        return -1;
    }
    size_t remaining = lws_remaining_packet_payload(wsi);
    int last = lws_is_final_fragment(wsi) && remaining == 0;
    if (last && t->rx_len == 0)
        return feed(t, wsi, in, len); /* whole: no copy */
    if (t->rx_len + len + remaining > MAX_MESSAGE_BYTES) {
        tp__log(&t->c->log, TP_LOG_ERROR,
                "a message from the server is over %u bytes: closing with 1009", MAX_MESSAGE_BYTES);
        close_with(t, wsi, 1009, "message too big");
        return -1;
    }
    if (t->rx_len + len + 1 > t->rx_cap) {
        size_t cap = t->rx_cap ? t->rx_cap : 4096;
        while (cap < t->rx_len + len + remaining + 1)
            cap *= 2;
        char *b = tp__realloc(t->rx, cap);
        if (b == NULL) {
            close_with(t, wsi, 1011, "out of memory");
            return -1;
        }
        t->rx = b;
        t->rx_cap = cap;
    }
    if (len > 0)
        memcpy(t->rx + t->rx_len, in, len);
    t->rx_len += len;
    if (!last)
        return 0;
    size_t n = t->rx_len;
    t->rx_len = 0;
    return feed(t, wsi, t->rx, n);
}

/* Writes every frame client.c has, as long as the socket takes them. */
static int
writeable(transport *t, struct lws *wsi)
{
    tp_client *c = t->c;
    if (t->closing)
        return -1; /* lws sends the close frame given to lws_close_reason */
    for (;;) {
        if (lws_send_pipe_choked(wsi)) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        size_t len = 0;
        pthread_mutex_lock(&c->mu);
        const char *f = tp_client_next_frame(c, &len);
        if (f != NULL && LWS_PRE + len > t->tx_cap) {
            size_t cap = t->tx_cap ? t->tx_cap : LWS_PRE + 4096;
            while (cap < LWS_PRE + len)
                cap *= 2;
            unsigned char *b = tp__realloc(t->tx, cap);
            if (b == NULL) {
                pthread_mutex_unlock(&c->mu);
                tp__log(&c->log, TP_LOG_ERROR, "out of memory for a frame of %zu bytes", len);
                close_with(t, wsi, 1011, "out of memory");
                return -1;
            }
            t->tx = b;
            t->tx_cap = cap;
        }
        if (f != NULL)
            memcpy(t->tx + LWS_PRE, f, len);
        pthread_mutex_unlock(&c->mu);
        if (f == NULL)
            return 0;
        if (lws_write(wsi, t->tx + LWS_PRE, len, LWS_WRITE_TEXT) < (int)len) {
            tp__log(&c->log, TP_LOG_WARN, "the socket failed while sending");
            t->close_code = 1006;
            t->why = "the socket failed";
            return -1;
        }
    }
}

static const char *
status_reason(int status)
{
    switch (status) {
    case 400: return "the server found the handshake invalid";
    case 401: return "a credential is required";
    case 403: return "forbidden";
    case 404: return "no such route";
    case 503: return "the server is at its connection limit";
    default: return "the server refused the handshake";
    }
}

static int event(transport *t, struct lws *wsi, enum lws_callback_reasons reason, void *in,
                 size_t len);

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    (void)user;
    struct lws_context *ctx = lws_get_context(wsi);
    transport *t = ctx ? lws_context_user(ctx) : NULL;
    if (t == NULL)
        return 0;
    int r = event(t, wsi, reason, in, len);
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
    case LWS_CALLBACK_CLIENT_RECEIVE:
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY: rearm(t); break;
    default: break;
    }
    return r;
}

static int
event(transport *t, struct lws *wsi, enum lws_callback_reasons reason, void *in, size_t len)
{
    tp_client *c = t->c;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return append_headers(t, wsi, (char **)in, *(char **)in + len);

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        t->wsi = wsi;
        t->established = 1;
        t->last_rx_ns = tp__clock_mono_ns();
        tp__log(&c->log, TP_LOG_INFO, "connected url=%s", c->url_text);
        pthread_mutex_lock(&c->mu);
        tp_client_opened(c);
        pthread_mutex_unlock(&c->mu);
        lws_callback_on_writable(wsi);
        return 0;

    case LWS_CALLBACK_CLIENT_RECEIVE: return receive(t, wsi, in, len);

    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        t->last_rx_ns = tp__clock_mono_ns();
        t->ping_sent = 0;
        return 0;

    case LWS_CALLBACK_CLIENT_WRITEABLE: return writeable(t, wsi);

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* wake(): client.c has frames to send. */
        if (t->wsi != NULL && t->established)
            lws_callback_on_writable(t->wsi);
        return 0;

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        const unsigned char *p = in;
        int code = len >= 2 ? p[0] << 8 | p[1] : 1005;
        if (!t->closing || t->close_code == 0) {
            t->close_code = code;
            t->why = "closed by the server";
        }
        tp__log(&c->log, TP_LOG_DEBUG, "the server closes code=%d", code);
        return 0;
    }

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        int status = (int)lws_http_client_http_response(wsi);
        const char *text = in != NULL && len > 0 ? (const char *)in : "unknown error";
        char msg[160];
        int code;
        if (status >= 200 && status != 101) {
            code = status;
            snprintf(msg, sizeof msg, "HTTP %d: %s", status, status_reason(status));
        } else if (t->close_code != 0) {
            code = t->close_code;
            snprintf(msg, sizeof msg, "%s", t->why ? t->why : "closed");
        } else {
            code = 1006;
            if (!tcp_reason(c->url.host, c->url.port, msg, sizeof msg))
                snprintf(msg, sizeof msg, "%.*s", (int)(len < 120 ? len : 120), text);
        }
        connection_ended(t, code, msg);
        return 0;
    }

    case LWS_CALLBACK_CLIENT_CLOSED:
        connection_ended(t, t->close_code ? t->close_code : 1006,
                         t->why ? t->why : "the connection was lost");
        return 0;

    case LWS_CALLBACK_WSI_DESTROY:
        /* A connection that ended without either callback above. */
        if (t->active && wsi == t->wsi)
            connection_ended(t, t->close_code ? t->close_code : 1006,
                             t->why ? t->why : "the connection was lost");
        return 0;

    default: return 0;
    }
}

/* ------------------------------------------------------------------------ */
/* The thread                                                                */
/* ------------------------------------------------------------------------ */

/* c->wake: any thread, c->mu held. */
static void
wake(tp_client *c)
{
    transport *t = c->transport;
    if (t != NULL)
        lws_cancel_service(t->ctx);
}

static void *
run(void *arg)
{
    transport *t = arg;
    tp_client *c = t->c;
    connect_now(t);
    while (!atomic_load(&t->stop)) {
        arm(t, next_deadline(t));
        lws_service(t->ctx, 0);
        if (!atomic_load(&t->stop))
            check_deadlines(t);
    }
    /* Stopping: the closing handshake (1000), for at most STOP_GRACE_NS. */
    if (t->active && t->established && !t->closing) {
        close_with(t, t->wsi, 1000, "client stopping");
        lws_callback_on_writable(t->wsi);
    }
    int64_t until = tp__clock_mono_ns() + STOP_GRACE_NS;
    while (t->active && t->established && tp__clock_mono_ns() < until) {
        arm(t, until);
        lws_service(t->ctx, 0);
    }
    lws_sul_cancel(&t->sul);
    pthread_mutex_lock(&c->mu);
    c->wake = NULL;
    pthread_mutex_unlock(&c->mu);
    /* Closes what is left (its callbacks run here, on this thread). */
    lws_context_destroy(t->ctx);
    t->ctx = NULL;
    if (t->active) {
        t->close_code = t->close_code ? t->close_code : 1006;
        connection_ended(t, t->close_code, "client stopping");
    }
    return NULL;
}

/* lws's own lines are for debugging lws itself. */
static void
lws_logger(int level, const char *line)
{
    (void)level;
    fputs(line, stderr);
}

static void
transport_free(transport *t)
{
    if (t == NULL)
        return;
    if (t->ctx != NULL)
        lws_context_destroy(t->ctx);
    tp__free(t->host_header);
    tp__free(t->rx);
    tp__free(t->tx);
    tp__free(t);
}

static int64_t
ms_or(unsigned ms, unsigned def)
{
    return (int64_t)(ms ? ms : def) * NS_PER_MS;
}

int
tp__client_transport_start(tp_client *c, tp_error *err)
{
    if (c->transport != NULL)
        return tp__error_set(err, TP_EARG, "the client is already started");
    transport *t = tp__calloc(1, sizeof *t);
    if (t == NULL)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    t->c = c;
    atomic_init(&t->stop, 0);
    t->backoff_min_ns = ms_or(c->opt.backoff_min_ms, 250);
    t->backoff_max_ns = ms_or(c->opt.backoff_max_ms, 30000);
    if (t->backoff_max_ns < t->backoff_min_ns)
        t->backoff_max_ns = t->backoff_min_ns;
    t->connect_timeout_ns = ms_or(c->opt.connect_timeout_ms, 10000);
    t->ping_interval_ns = ms_or(c->opt.ping_interval_ms, 20000);
    t->next_attempt_ns = NEVER;
    t->rng = (uint64_t)tp__clock_mono_ns() ^ ((uint64_t)(uintptr_t)t << 16) ^ 0x9e3779b97f4a7c15ULL;
    if (t->rng == 0)
        t->rng = 1;

    /* Host: with the port unless it is the scheme's own (RFC 6455, 4.1). */
    int default_port = c->url.port == (c->url.tls ? 443 : 80);
    int v6 = strchr(c->url.host, ':') != NULL;
    size_t hn = strlen(c->url.host) + 16;
    t->host_header = tp__malloc(hn);
    if (t->host_header == NULL) {
        transport_free(t);
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    }
    if (default_port)
        snprintf(t->host_header, hn, v6 ? "[%s]" : "%s", c->url.host);
    else
        snprintf(t->host_header, hn, v6 ? "[%s]:%d" : "%s:%d", c->url.host, c->url.port);

    t->protocols[0] = (struct lws_protocols){
        .name = SUBPROTOCOL,
        .callback = callback,
        .rx_buffer_size = RX_BUFFER_BYTES,
    };
    /* lws's log level is the process's: set as the server does. */
    lws_set_log_level(c->log.level >= TP_LOG_DEBUG && c->log.fn != NULL ? LLL_ERR | LLL_WARN : 0,
                      lws_logger);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = t->protocols;
    info.user = t;
    info.gid = -1;
    info.uid = -1;
    /* One connection, lws's event pipe, DNS: the pollfd table lws sizes
     * from this would otherwise follow the process's open-files limit. */
    info.fd_limit_per_thread = 16;
    info.timeout_secs = (unsigned)((t->connect_timeout_ns / NS_PER_MS + 999) / 1000);
    if (c->url.tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.client_ssl_ca_filepath = c->ca_file;
    }
    t->ctx = lws_create_context(&info);
    if (t->ctx == NULL) {
        transport_free(t);
        return tp__error_set(err, TP_EINTERNAL, "the client's event loop could not start");
    }
    pthread_mutex_lock(&c->mu);
    c->transport = t;
    c->wake = wake;
    /* CONNECTING before tp_client_start returns: a tp_client_wait right
     * after it must not see the STOPPED of an earlier tp_client_stop. */
    tp__client_set_state(c, TP_CLIENT_CONNECTING, NULL);
    pthread_mutex_unlock(&c->mu);
    if (pthread_create(&t->thread, NULL, run, t) != 0) {
        pthread_mutex_lock(&c->mu);
        c->transport = NULL;
        c->wake = NULL;
        pthread_mutex_unlock(&c->mu);
        transport_free(t);
        return tp__error_set(err, TP_EINTERNAL, "the client's thread could not start");
    }
    tp__error_clear(err);
    return TP_OK;
}

void
tp__client_transport_stop(tp_client *c)
{
    /* The first caller takes the transport; a second one finds none. */
    pthread_mutex_lock(&c->mu);
    transport *t = c->transport;
    c->transport = NULL;
    if (t != NULL) {
        atomic_store(&t->stop, 1);
        /* Under c->mu: the thread leaves its loop only once it sees the
         * flag, and clears c->wake under c->mu before it destroys the
         * context, so the context is alive here. */
        lws_cancel_service(t->ctx);
    }
    pthread_mutex_unlock(&c->mu);
    if (t == NULL)
        return;
    pthread_join(t->thread, NULL);
    transport_free(t);
}
