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
 * connection has been quiet for ping_interval_ms), and sends again the
 * writes the server refused with rate_limited: time has passed. Takes mu. */
void tp__client_ping(tp_client *c);

/* The transport, in transport.c: start runs the thread; stop ends it and
 * waits. Both called under no lock by tp_client_start/stop. */
int tp__client_transport_start(tp_client *c, tp_error *err);
void tp__client_transport_stop(tp_client *c);

#endif /* TP_CLIENT_CLIENT_H */
