/*
 * The shared order as the rest of the core calls it (order.c; order.h is
 * what the daemon's backend sees).
 */
#ifndef TP_CORE_ORDER_INT_H
#define TP_CORE_ORDER_INT_H

#include <jansson.h>

#include "core/model.h"
#include "core/order.h"
#include "core/session.h"
#include "transports.h"

struct tp__ord; /* a model's queue and call in flight (order.c) */

/* A model the hub now holds joins the order (read from the log, followed);
 * nothing without an order. Returns TP_OK or TP_ENOMEM. */
int tp__order_model_added(tp__model *m);
/* A model leaves the hub: its waiting changes end with not_found (or,
 * while the hub is freed, silently), and it is no longer followed. */
void tp__order_model_gone(tp__model *m);
/* tp__order_write queues a client's write (its merge patch, stamped); the
 * outcome reaches tp__conn_write_done once the log has it or refused it.
 * tp__order_host queues a host's value (a reference is taken): its patch is
 * taken in its turn, from the model as the log has it then. */
int tp__order_write(tp__model *m, tp_conn *c, const json_t *patch, const tp__stamp *stamp,
                    json_int_t ref);
int tp__order_host(tp__model *m, json_t *value, const tp__stamp *stamp);
/* tp__order_host_patch queues a host API merge patch (always TP_OK: its
 * outcome ends the ticket it opens, tp__order_last_ticket). tp__order_track
 * opens a ticket for a model the host just made, ended when the log has it. */
int tp__order_host_patch(tp__model *m, const json_t *patch, const tp__stamp *stamp);
uint64_t tp__order_track(tp__model *m);

/* tp__order_free frees what the order keeps beside the models (tickets,
 * the catalog); tp_hub_free calls it. */
void tp__order_free(tp_hub *hub);

/* A client holds rev, past the node's: the model reads the log. */
void tp__order_behind(tp__model *m, int64_t rev);
/* Whether a client's ref is queued or in flight: then the resend waits for
 * its outcome, which is sent to c too (once). */
int tp__order_resent(tp_conn *c, const char *client, json_int_t ref);
/* A session's first connection opened (seen 1), or its last closed (0): a
 * node follows a private model only while a connection of its tenant is on
 * the node; the others are dormant, read from the log when next needed. */
void tp__order_session_seen(tp_session *s, int seen);
/* A shared model gained (on 1) or lost a subscribed session with a
 * connection here: it is followed while it has one, dormant otherwise. */
void tp__order_watch(tp__model *m, int on);
/* A connection closes: its writes whose turn has not come are dropped (never
 * applied nor acked: the client resends them, maybe to another node), the
 * one in flight goes on without it. */
void tp__order_conn_gone(tp_conn *c);

/* conn.c: an ordered write's outcome (out: the ack or error, taken; NULL:
 * out of memory; message: an error's, for the log), recorded for the client (unless internal) and
 * sent to the writer and to resent, the connection that sent it again while it waited. */
void tp__conn_write_done(tp_session *s, tp_conn *c, tp_conn *resent, const char *client,
                         json_int_t ref, tp__buf *out, int code, const char *message, int record);
/* conn.c: whether a client's ref was seen (PROTOCOL.md, exactly once): 1 with
 * its outcome in *was (borrowed), -1 a duplicate whose outcome is forgotten,
 * 0 new. tp__client_merge adds the outcomes the log recorded on any node. */
int tp__client_seen(const tp__client *cl, json_int_t ref, tp__buf **was);
void tp__client_merge(tp__client *cl, const tp__order_outcomes *log);
#define TP__DUPLICATE_MESSAGE "ref: already used by this client and its outcome is no longer known"

/* A connection named the client: the node reads its outcomes from the log.
 * While it does (tp__order_client_loading), its writes wait in their queues. */
void tp__order_client_named(tp__client *cl);
int tp__order_client_loading(const tp__client *cl);

#endif /* TP_CORE_ORDER_INT_H */
