/*
 * Presence (PROTOCOL.md, "presence" and "presence_snapshot"): the ephemeral
 * state of a connection on a model it can see. Never stored, never in a rev
 * or in history, gone with the connection. Only the core's files include
 * this header; conn.c and hub.c call it at the few points where a
 * connection's view of a model starts or ends.
 */
#ifndef TP_CORE_PRESENCE_H
#define TP_CORE_PRESENCE_H

#include <stdint.h>

#include <jansson.h>

#include "core/model.h"

#define TP__PRESENCE_MAX 4096 /* PROTOCOL.md: a state is at most 4 KiB (its compact JSON) */

/*
 * One connection's presence on one model. It is listed by the model (every
 * viewer's snapshot reads it), by the connection (to leave when it closes)
 * and, while a state waits for the tick, by the hub.
 */
typedef struct tp__presence {
    tp_conn *conn; /* NULL once the connection left, while its leave waits for the tick */
    tp__model *model;
    char id[24];       /* the connection's id (its leave outlives it) */
    char *gone_tenant; /* once it left: a copy of its tenant key, for the host's callback */
    tp__buf *state;    /* compact JSON of the latest state; NULL: the client left (pending) */
    int pending;       /* the latest state has not been delivered yet */
    int shown;         /* viewers were sent a state of it (so they must hear it leave) */
    int64_t sent_at;   /* hub clock ms of the last delivery */
    size_t midx;       /* in model->presence */
    size_t cidx;       /* in conn->presence */
    size_t didx;       /* in hub->presence_dirty while pending */
} tp__presence;

/* tp__presence_set takes a connection's new state on a model it can see
 * (state: an object, or NULL to leave). Delivered at once when the hub has
 * no tick, else at the next tick (tp__presence_tick) at least tick_ms after
 * the last delivery, the latest state winning. Returns TP_OK, or
 * TP_ETOOLARGE / TP_ENOMEM with err naming the field. */
int tp__presence_set(tp_conn *c, tp__model *m, const json_t *state, tp_error *err);

/* tp__presence_tick delivers the states that waited for the tick and are
 * due (tp_hub_sync calls it). */
void tp__presence_tick(tp_hub *hub);

/* tp__presence_send_snapshot queues `presence_snapshot` for a model to a
 * connection that was just sent the model's snapshot or answered for it by
 * a resume: the states of every other connection that sees the model. Sends
 * nothing when nobody else has a state there. */
void tp__presence_send_snapshot(tp_conn *c, tp__model *m);

/* Leaving: viewers that were shown a state get `state: null`. */
void tp__presence_conn_gone(tp_conn *c);                      /* the connection closes */
void tp__presence_session_leave(tp_session *s, tp__model *m); /* access to m withdrawn */
void tp__presence_model_gone(tp__model *m);                   /* the model is freed */
void tp__presence_hub_free(tp_hub *hub);

#endif /* TP_CORE_PRESENCE_H */
