/*
 * The net layer's internal structures, shared by its files:
 *   server.c   life cycle, the loop (service, then flush), post and stop,
 *              WebSocket connections: receive, send pre-framed, close
 *   http.c     the handshake checks and refusals, /healthz and /metrics
 *
 * One loop, one thread: everything here but tp_server_post and
 * tp_server_stop runs on the thread in tp_server_run (docs/internals/server.md).
 */
#ifndef TP_NET_NET_H
#define TP_NET_NET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <libwebsockets.h>
#include <uv.h>

#include "core/hubapi.h"
#include "core/route.h"
#include "transports.h"
#include "util/addr.h"
#include "util/log.h"
#include "util/map.h"

#define TP__SUBPROTOCOL "transports.v1"
#define TP__SEND_CHUNK (256 * 1024)       /* bytes of frames built per write */
#define TP__COMMIT_RETRY_MS 100           /* a failed store commit is tried again this often */
#define TP__EVICT_MS 1000                 /* idle tenants are evicted this often (with a store) */
#define TP__TX_MAX (4 * 1024 * 1024)      /* the most one send() is given (lws keeps the rest) */
#define TP__STATIC_MAX_BYTES (256 * 1024) /* the largest static file served (read whole) */
#define TP__STATIC_PATH_MAX 255           /* the longest static path asked for, in bytes */
#define TP__STATIC_DIR_MAX 3800           /* static_dir + '/' + path fits a 4 KiB buffer */
#define TP__HEADER_MAX 8192               /* lws's max_http_header_data: all headers of a request */
#define TP__EXPIRY_MS 250                 /* credentials are checked for expiry this often */
#define TP__ACCEPT_BATCH 64               /* connections accepted per loop iteration at most */
#define TP__ACCEPT_PAUSE_MS 100           /* out of descriptors: accepting waits this long */

/* The close codes and HTTP statuses counted in /metrics. */
#define TP__CLOSE_CODES 13
#define TP__STATUSES 9
#define TP__TICK_BUCKETS 12

typedef struct tp__post {
    void (*fn)(void *arg);
    void *arg;
    struct tp__post *next;
} tp__post;

/* What one client address holds: its WebSocket connections, and its TCP
 * connections not yet upgraded (a handshake pending). Freed at zero. */
typedef struct tp__peer {
    char key[TP__ADDR_KEY_MAX]; /* the map's key (tp__addr_key) */
    unsigned conns, pending;
} tp__peer;

/* A WebSocket connection's state: lws's per-session user space. */
typedef struct tp__ws {
    struct lws *wsi;
    tp_conn *conn;
    char *rx; /* a message being received across fragments or reads */
    size_t rx_len, rx_cap;
    int skipping;   /* the message being received is over the limit: dropped */
    int close_code; /* the code this connection closes (or was closed) with */
    int peer_closed;
    int close_sent; /* our close frame is out: nothing more is sent */
    int ready;      /* has frames waiting for the flush */
    /* The last message ended in a later read than it began (fragments, or a
     * frame cut by the socket): a ping may have come in between, and lws
     * holds its pong for the writeable callback. Its answer waits for that
     * callback too, so it cannot overtake the pong (RFC 6455 5.5.3, the
     * Autobahn testsuite's 5.6, 5.8, 5.19 and 5.20). */
    int after_pong;
    char peer[64];
    const char *close_why; /* the close frame's reason when not close_reason()'s */
    tp__peer *addr;        /* the client address this connection counts against, or NULL */
    /* A message begun and not ended: what it counts in unfinished_bytes,
     * when it must end, and its place in the server's list of them (oldest
     * first, so the deadline timer looks at the head only). */
    size_t rx_counted;
    int64_t rx_deadline_ns;
    struct tp__ws *un_prev, *un_next;
    int unfinished;
    /* HTTP responses (/healthz, /metrics, refusals) are written whole. */
    struct tp__apireq *api;   /* a host API request whose body is being read (hostapi.c) */
    struct tp__apiwait *wait; /* its answer, waiting for the change to be durable */
    int64_t since_ms;         /* when the connection opened (hub clock), for the host API */
} tp__ws;

struct tp_server {
    tp_hub *hub;
    struct tp__hostapi *api;       /* the host HTTP API (hostapi.c), or NULL: off */
    struct tp__webhooks *webhooks; /* webhook delivery (webhook.c), or NULL: none */
    tp__logger *log;
    char *host;
    int port;
    tp__route *route;
    unsigned autosync_ms, flush_ms;
    unsigned max_connections, max_per_tenant;
    unsigned handshake_timeout_ms, ping_interval_ms, ping_timeout_ms;
    char **origins; /* NULL-terminated, or NULL: any */
    unsigned max_per_address, max_pending_per_address, message_timeout_ms;
    size_t max_unfinished_bytes;
    tp__cidr *proxies; /* trusted_proxies */
    size_t nproxies;
    char *address_header;     /* client_address_header, or NULL */
    char *tls_cert, *tls_key; /* TLS on the listener, or NULL */
    char *metrics_token;      /* /metrics needs it as a Bearer token, or NULL */
    atomic_int reload_asked;  /* tp_server_reload_tls */
    void (*on_reload)(void *user);
    void *on_reload_user;
    int warned_origin; /* jwt without an Origin allowlist: the first browser handshake */
    uint64_t tls_reloads, tls_reload_failures;
    char *static_dir; /* static files served by GET, or NULL */

    uv_loop_t loop;
    int loop_ok;
    uv_prepare_t prepare;    /* before_sleep(): the end of each loop iteration */
    uv_timer_t sync_w;       /* the autosync tick */
    uv_timer_t flush_w;      /* the end of a flush_ms window; a failed commit's retry */
    uv_poll_t commit_w;      /* commit_fd: the committer made transactions durable (or failed) */
    int commit_ok;           /* commit_w is initialized */
    int commit_fd;           /* an eventfd the committer writes (commit_wake), or -1 */
    atomic_int commit_woken; /* commit_fd was written since the loop last read it */
    uv_timer_t stop_w;       /* the end of the grace period at stop */
    uv_timer_t evict_w;      /* with a store: idle tenants leave memory, every second */
    uv_timer_t message_w;    /* the deadline of the oldest unfinished message */
    uv_timer_t expiry_w;     /* with a verifier: closes connections whose credential expired */
    uv_timer_t accept_w;     /* the end of an accept pause (out of descriptors) */
    uv_poll_t listen_w;      /* the listening socket (ours: bind_listener) */
    int listen_fd, listen_ok, accept_paused, accept_starved;
    uint64_t accept_pauses; /* accepts that failed for lack of descriptors or memory */
    struct lws_context *ctx;
    struct lws_vhost *vh;
    struct lws_protocols protocols[3];
    lws_retry_bo_t retry;

    /* tp_server_post and tp_server_stop wake the loop through this pipe. */
    int wake[2];
    struct lws *wake_wsi;
    int wake_adopted; /* lws owns wake[0] (it closes it with its wsi): we must not */
    pthread_mutex_t mu;
    tp__post *posts, *posts_tail;
    atomic_int stop_asked;
    int running, stopping;
    int64_t stop_deadline_ns;

    /* The handshake just accepted, picked up when it is established. */
    struct lws *pending_wsi;
    char *pending_tenant;
    int pending_flags;
    int64_t pending_expiry; /* its credential's expiry (ms), or 0 */
    tp__peer *pending_addr; /* its connection, counted already */

    tp__map peers; /* client address key -> tp__peer */
    size_t unfinished_bytes;
    tp__ws *un_head, *un_tail;
    int message_armed;

    unsigned nconns;
    int flush_armed;

    unsigned char *sendbuf; /* LWS_PRE + TP__SEND_CHUNK + room for one large frame */
    size_t sendcap;

    /* Metrics of the transport (the hub counts its own). */
    uint64_t opened, frames_sent, bytes_sent, send_calls;
    uint64_t closes[TP__CLOSE_CODES];
    uint64_t refused[TP__STATUSES];
    uint64_t dropped_pending;      /* TCP connections closed at accept (pending per address) */
    uint64_t unfinished_closed[2]; /* 1008 past message_timeout_ms, 1013 past the bytes */
    uint64_t tick_buckets[TP__TICK_BUCKETS + 1], tick_count;
    /* Token authentication: handshakes accepted; refused for a missing
     * token, a token refused, a token for another tenant than the path. */
    uint64_t auth_accepted, auth_refused[3];
    uint64_t expired; /* connections closed with 4401 */
    double tick_sum;
};

/* ---- server.c: client addresses ---- */
/* tp__peer_get returns the entry of an address (made at zero), or NULL when
 * out of memory; tp__peer_put frees it once it holds nothing. */
tp__peer *tp__peer_get(tp_server *s, const tp__addr *a);
void tp__peer_put(tp_server *s, tp__peer *p);
int tp__peer_trusted(const tp_server *s, const tp__addr *a);
/* tp__tcp_peer reads the connection's peer address; 0, or -1 (not IP). */
int tp__tcp_peer(struct lws *wsi, tp__addr *a);

/* tp__server_run_posts runs the functions posted so far (webhook.c, at free). */
void tp__server_run_posts(tp_server *s);

/* ---- http.c ---- */
/* tp__http_confirm_upgrade checks a WebSocket handshake: 0 lets it proceed
 * (the tenant is left in server->pending_*), 1 when it was refused with an
 * HTTP status. */
int tp__http_confirm_upgrade(tp_server *s, struct lws *wsi);
/* tp__http_header copies the value of a header lws knows by token into buf
 * (n bytes) and returns buf, or NULL when it is absent or too long. */
const char *tp__http_header(struct lws *wsi, enum lws_token_indexes t, char *buf, int n);
/* tp__http_bearer_ok says whether the request's `Authorization: Bearer`
 * token equals token (len bytes), compared in constant time. */
int tp__http_bearer_ok(struct lws *wsi, const char *token, size_t len);
/* tp__http_serve answers a plain HTTP request; returns lws's verdict. */
int tp__http_serve(tp_server *s, struct lws *wsi, const char *uri);
/* tp__http_respond writes a whole response and closes the transaction
 * (extra: more header lines, each ending in \r\n, or NULL). */
int tp__http_respond(struct lws *wsi, int status, const char *type, const char *extra,
                     const char *body, size_t len);
/* The close codes counted one by one; the 0 at the end stands for any other. */
extern const int tp__close_codes[TP__CLOSE_CODES];
void tp__count_close(tp_server *s, int code);
void tp__count_refused(tp_server *s, int status);

#endif /* TP_NET_NET_H */
