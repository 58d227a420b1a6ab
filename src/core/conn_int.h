/*
 * A connection as the core keeps it: its state and its outbox (outbox.c),
 * shared by conn.c (the protocol of PROTOCOL.md without sockets), outbox.c
 * and the hub's files that queue messages.
 */
#ifndef TP_CORE_CONN_INT_H
#define TP_CORE_CONN_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/model.h"
#include "core/session.h"
#include "transports.h"
#include "util/buf.h"
#include "util/vec.h"

#define TP__FRAME_MAX (64 * 1024) /* PROTOCOL.md: a batch frame is at most 64 KiB */
#define TP__RESUME_EXTRA 256      /* ids a resume may list beyond the models it can see */

enum { TP__CONN_AWAIT_RESUME, TP__CONN_LIVE, TP__CONN_CLOSING };

struct tp_conn {
    tp_hub *hub;
    tp_session *session;
    uint64_t num;   /* the hub's count of connections (never reused) */
    uint64_t idnum; /* what the id says: tp__prp64(hub->conn_key, num) */
    char id[24];
    size_t idx; /* in session->conns */
    int state;
    int close_code;
    void *user;
    tp__client *client;

    /* The outbox: encoded messages in order, from head to len, each with
     * the epoch it was queued in (out_tag, same indexes): it leaves once
     * hub->released reaches it. */
    tp__buf **out;
    uint64_t *out_tag;
    size_t out_head, out_len, out_cap;
    size_t out_bytes;
    /* Bytes of the initial sync (hello, snapshots, the first resume's
     * answers) still in the outbox: the client asked for them and the
     * socket has not had a chance to take them yet, so they do not count
     * against max_outbox_bytes (nor does the message at the head). */
    size_t out_exempt;
    int syncing;
    int ready;        /* in hub->ready */
    size_t ready_idx; /* index in hub->ready */
    tp__buf *taken;   /* the buffer last returned by tp_conn_next_frame */
    /* Storage: it holds messages not yet released (in hub->held). */
    int in_held;
    size_t held_idx;
    tp__sb frame; /* scratch for batch frames */

    /* Token bucket of writes per second. */
    double tokens;
    int64_t tokens_at;
    /* When the credential expires (hub clock, ms); 0: never. */
    int64_t expires_at_ms;

    tp__vec presence; /* struct tp__presence * (presence.c): its states, a model each */
};

/* ---- outbox.c ---- */
/* tp__conn_send queues a message for a connection (takes a new reference). */
void tp__conn_send(tp_conn *c, tp__buf *msg);
void tp__conn_outbox_clear(tp_conn *c);
/* tp__conn_mark_ready puts a connection on the hub's ready list (once). */
void tp__conn_mark_ready(tp_conn *c);
/* tp__conn_unready takes a closing connection off the hub's ready list. */
void tp__conn_unready(tp_conn *c);
/* tp__conn_send_plain queues a message that reveals no state (a pong, an
 * error that is not a recorded outcome): it waits for nothing but the
 * messages before it. */
void tp__conn_send_plain(tp_conn *c, tp__buf *msg);
/* tp__conn_release marks a connection ready when its head may now leave;
 * returns 1 while it still holds messages not released (journal.c). */
int tp__conn_release(tp_conn *c);
/* tp__conn_frame_plan and tp__conn_frame_take: hubapi.h. */
/* tp__each_viewer calls fn for every live connection that sees m, but
 * `except`. A private model is seen by its tenant's connections only. */
void tp__each_viewer(tp__model *m, const tp_conn *except, void (*fn)(tp_conn *c, void *arg),
                     void *arg);
/* tp__fanout sends a message to every live connection that sees the model. */
void tp__fanout(tp__model *m, tp__buf *msg, tp_conn *except);

/* ---- conn.c ---- */
void tp__conn_send_snapshot(tp_conn *c, tp__model *m, tp_access access);

#endif /* TP_CORE_CONN_INT_H */
