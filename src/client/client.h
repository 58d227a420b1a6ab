/*
 * The client, inside: what client.c (the protocol, sans-IO: replicas,
 * pending writes, the frames to send) and transport.c (libwebsockets on the
 * client's own thread: connect, reconnect with backoff, ping) share.
 *
 * Locking: every public call takes c->mu (recursive, so callbacks may call
 * back in). The transport thread calls the sans-IO functions like any
 * caller, and is told there is something to send through c->wake.
 */
#ifndef TP_CLIENT_CLIENT_H
#define TP_CLIENT_CLIENT_H

#include <pthread.h>
#include <stdint.h>

#include "transports.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/map.h"
#include "util/vec.h"

/* A URL, split (tp__client_parse_url). */
typedef struct tp__url {
    int tls;    /* wss */
    char *host; /* without brackets for IPv6 */
    int port;   /* 80 / 443 when the URL has none */
    char *path; /* path and query as given, at least "/" */
} tp__url;

/* tp__client_parse_url checks and splits a ws:// or wss:// URL; returns
 * TP_OK or TP_EARG with a message naming what is wrong. */
int tp__client_parse_url(const char *url, tp__url *out, tp_error *err);
void tp__client_url_free(tp__url *u);

struct tp_client {
    pthread_mutex_t mu; /* recursive */
    pthread_cond_t cv;  /* broadcast on every state change and every ack/error */
    char *url_text;
    tp__url url;
    tp_client_options opt; /* a copy: its strings are owned (below) */
    char *token, *ca_file, *client_id;
    char **headers; /* NULL-terminated copy */
    tp__logger log;
    tp_client_state state;

    /* The protocol (client.c): replicas, pending writes, frames to send. */
    void *proto;

    /* The transport (transport.c), while tp_client_start runs it. wake is
     * called (under mu) when a frame is queued, so that the thread sends
     * it soon; NULL without a transport. */
    void *transport;
    void (*wake)(tp_client *c);
};

/* tp__client_set_state changes the state, calls the state callback, and
 * wakes tp_client_wait. Called under mu. */
void tp__client_set_state(tp_client *c, tp_client_state state, const char *why);

/* tp__client_ping queues a `ping` (the transport calls it when the
 * connection has been quiet for ping_interval_ms). Takes mu. */
void tp__client_ping(tp_client *c);

/* tp__client_retry is the clock of the writes the server refused with
 * rate_limited: they wait (held) for a delay of TP__RETRY_MIN_MS doubled
 * with each refusal since the last ack, up to TP__RETRY_MAX_MS, taken at a
 * random point of its upper half (jitter, so that clients refused together
 * do not come back together). Given the time now (milliseconds of any
 * monotonic clock), it starts that delay if a refusal is waiting for one,
 * sends the held writes again once it has passed, and returns when it ends
 * (INT64_MAX: nothing held). The transport calls it with its deadlines; a
 * new connection sends held writes at once. Takes mu. */
int64_t tp__client_retry(tp_client *c, int64_t now_ms);

/*
 * tp__client_token_tick sends an `auth` with a fresh token from the token
 * source once it is due (now_ms: the monotonic clock); returns the next
 * time it is due, or INT64_MAX.
 */
int64_t tp__client_token_tick(tp_client *c, int64_t now_ms);

/* tp__jwt_exp_ms reads a JWT's exp claim without verifying anything (the
 * client only needs to know when to renew it): wall ms, or 0. */
int64_t tp__jwt_exp_ms(const char *token);
#define TP__CLIENT_TOKEN_MAX 8193 /* the longest token (8 KiB) and its NUL */
#define TP__RETRY_MIN_MS 100
#define TP__RETRY_MAX_MS 10000

/* ---- The protocol's state, shared by client.c and replica.c ----
 *
 * client.c: life cycle, URL, the frames to send, the connection's events.
 * replica.c: replicas, local views, pending writes, incoming messages.
 *
 * Invariants:
 * - A replica's confirmed value is the server's value at its rev. Its view
 *   is confirmed with the model's pending writes applied on top, in ref
 *   order; it is computed lazily (dirty), because a burst of acks would
 *   otherwise recompute it once per ack.
 * - Every pending write is in the client's ref-ordered list and in its
 *   replica's list. It leaves both on its ack, on its error (the rollback),
 *   or when its model is removed.
 * - While connected, every pending write has been queued once on this
 *   connection (sent = 1), except those refused with rate_limited, which
 *   are held until tp__client_retry's delay has passed or the next
 *   connection, and those beyond the window (TP__CLIENT_WINDOW).
 * - Every json_t held is shared with others (merge patches share subtrees):
 *   never changed in place.
 */
typedef struct tp__pending tp__pending;

typedef struct tp__replica {
    char *key;   /* "p/<id>" or "s/<id>": the map's key */
    char *scope; /* "private" or "shared" */
    char *id;
    char *schema;
    json_t *confirmed; /* the server's value at rev */
    int64_t rev;
    tp_access access;
    json_t *view;   /* confirmed + pending, valid unless dirty */
    int dirty;      /* view must be recomputed */
    int gap;        /* a resume for it is under way: its patches are ignored */
    tp__vec writes; /* tp__pending *, in ref order */
} tp__replica;

struct tp__pending {
    int64_t ref;
    tp__replica *r;
    json_t *patch;
    char *msg; /* the encoded write, the same bytes for every resend */
    size_t msg_len;
    int sent; /* queued on the current connection */
    int held; /* refused with rate_limited: not sent before the retry */
};

typedef struct tp__proto {
    tp__map replicas; /* key -> tp__replica * */
    tp__vec writes;   /* tp__pending *, in ref order */
    int64_t next_ref; /* the next write's ref: never reused */
    int64_t pings;    /* pings use negative refs: -1, -2, ... never a write's */
    int connected;    /* between tp_client_opened and tp_client_closed */
    int stopping;     /* tp_client_stop is under way: a connection that ends now is STOPPED */
    int broken;       /* a message could not be queued: the connection must end */
    size_t max_message_bytes;
    char *conn_id; /* the server's id of this connection, from hello */
    /* The token source (tp_client_options.token_fn): the current token's
     * expiry (wall ms, 0: unknown), and when (monotonic ms) to send an
     * `auth` with a fresh one (0: never). */
    int64_t token_exp_ms;
    int64_t auth_at_ms;
    /* rate_limited (tp__client_retry): writes are held; the delay ends at
     * retry_at (0: not started yet); refusals since the last ack. */
    int holding;
    int resume_held; /* a resume after a rev gap was refused: asked again then */
    int64_t retry_at;
    unsigned retry_streak;
    uint64_t rng;
    /* Frames to send: encoded messages from out_head on. */
    char **out;
    size_t *out_lens;
    size_t out_head, out_len, out_cap;
    char *frame; /* the frame tp_client_next_frame last returned */
    /* Presence (presence.c): the states this client set, "p/<id>" or
     * "s/<id>" -> {scope, id, state}, sent again on every connection; the
     * others' states, key -> {conn: state}, cleared when it ends; pres_held:
     * refused with rate_limited, sent again at the retry. */
    json_t *pres_mine;
    json_t *pres_others;
    int pres_held;
} tp__proto;

#define TP__PROTO(c) ((tp__proto *)(c)->proto)

/* client.c: queue a message to send (steals msg; NULL counts as out of
 * memory) or a pending write's text; both return TP_OK or TP_ENOMEM, and a
 * failure while connected marks the connection broken. */
int tp__client_queue_json(tp_client *c, json_t *msg);
int tp__client_send_write(tp_client *c, tp__pending *w);
/* At most this many writes sent and unanswered on a connection: the
 * outcomes the server remembers per client id (PROTOCOL.md: at least 256). */
#define TP__CLIENT_WINDOW 256
/* Sends pending writes not yet sent, in ref order, within the window. */
int tp__client_send_unsent(tp_client *c);

/* replica.c */
void tp__pending_free(tp__pending *w);
/* Queues one `resume` of every replica waiting for one (a rev gap). */
int tp__client_resync_gaps(tp_client *c);
void tp__replica_free(tp__replica *r);
/* tp__client_on_message handles one message from the server; TP_OK, or
 * TP_EBADREQUEST (protocol violation, logged) or TP_ENOMEM. */
int tp__client_on_message(tp_client *c, const json_t *msg);

/* presence.c: `presence` (snapshot 0) and `presence_snapshot` (1); a model
 * removed; the connection ended (the others' states go, each told); the
 * states this client set, queued again; freeing. */
int tp__client_on_presence(tp_client *c, const json_t *msg, int snapshot);
void tp__client_presence_removed(tp_client *c, const char *scope, const char *id);
void tp__client_presence_closed(tp_client *c);
int tp__client_presence_resend(tp_client *c);
void tp__client_presence_free(tp_client *c);

/* The transport, in transport.c: start runs the thread; stop ends it and
 * waits. Both called under no lock by tp_client_start/stop. */
int tp__client_transport_start(tp_client *c, tp_error *err);
void tp__client_transport_stop(tp_client *c);

#endif /* TP_CLIENT_CLIENT_H */
