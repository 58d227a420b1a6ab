/*
 * The hub as the net layer sees it: functions over the opaque tp_hub,
 * tp_session and tp_conn of transports.h, and the observer interface, with
 * no struct of the core's internals. net/ reaches the core through this
 * header, route.h, hostops.h and journal.h only, never hub.h: so no field of
 * the hub is read outside the core, and the core may change its structures
 * without the server noticing (tests/check-layers.sh enforces it).
 */
#ifndef TP_CORE_HUBAPI_H
#define TP_CORE_HUBAPI_H

#include <stddef.h>
#include <stdint.h>

#include "transports.h"
#include "util/log.h"

/*
 * An observer of the hub's changes (the daemon's webhooks, net/webhook.c):
 * told of every published model change and every connection opened or
 * closed, with plain values, and given each store transaction to add its
 * own records to, so that what it noted is stored with the change that
 * caused it. pending says it has records to store (a commit is due even
 * when the hub noted nothing); committed says whether they were stored.
 */
typedef struct tp__observer {
    void (*model_changed)(void *user, int shared, const char *tenant, const char *id, int64_t rev);
    void (*conn_event)(void *user, const char *tenant, const char *conn, int opened);
    int (*journal)(void *user, tp_store *st, tp_error *err);
    int (*pending)(void *user);
    void (*committed)(void *user, int ok);
    void *user;
} tp__observer;

/* ---- hub.c ---- */
/* tp__valid_key says whether a tenant key, id or sid is usable: 1 to
 * TP__KEY_MAX bytes of UTF-8. */
int tp__valid_key(const char *key);
/* The hub's clock, ms (tp_hub_config.clock). */
int64_t tp__hub_now(tp_hub *hub);

/* ---- persist.c ---- */
/* Commits what is noted, if anything, before frames leave: then they may
 * (after a failed commit, changed to say so). Returns 1. */
int tp__hub_flushable(tp_hub *hub);
/* Whether something is noted and not yet stored (a failed commit's host
 * changes): the transport tries tp_hub_commit again later. */
int tp__hub_commit_pending(const tp_hub *hub);
/* The store's state for health checks: TP__STORE_NONE (no store),
 * TP__STORE_OK, or TP__STORE_FAILING while the last commit failed (writes
 * cannot commit: it turns OK again with the next commit that succeeds). */
enum { TP__STORE_NONE, TP__STORE_OK, TP__STORE_FAILING };
int tp__hub_store_state(const tp_hub *hub);

/* ---- outbox.c ---- */
/*
 * A transport that frames for itself (the built-in server) takes frames
 * straight into its own write buffer: tp__conn_frame_plan says how many
 * messages from the head the next frame holds (0: none) and its length;
 * tp__conn_frame_take writes that frame (a message alone, or a batch
 * `[m,m,...]`) to dst and takes the messages off the outbox.
 */
size_t tp__conn_frame_plan(const tp_conn *c, size_t *len);
void tp__conn_frame_take(tp_conn *c, size_t n, char *dst);

/* ---- hubapi.c: what the hub's config and state say, read for net ---- */
const tp_limits *tp__hub_limits(const tp_hub *hub);
/* The hub's logger (tp_hub_config.log): the server logs through it. */
tp__logger *tp__hub_logger(tp_hub *hub);
/* Sets the sync tick `hello` announces, unless the config set one. */
void tp__hub_default_tick(tp_hub *hub, unsigned tick_ms);
/* Whether the hub authenticates tokens (tp_hub_config.verify), and the
 * verification of one at the hub's clock (TP_EINTERNAL without a verifier). */
int tp__hub_has_verify(const tp_hub *hub);
int tp__hub_verify(tp_hub *hub, const char *token, size_t len, tp_credential *cred, tp_error *err);
/* The live connections of a tenant in memory (0 when none or not loaded). */
size_t tp__hub_tenant_conns(const tp_hub *hub, const char *tenant);
/* Calls fn for every connection of every tenant in memory. fn must not open
 * or free connections (closing one's state, as tp_conn_expire does, is fine). */
void tp__hub_each_conn(tp_hub *hub, void (*fn)(tp_conn *c, void *user), void *user);
/* Whether some connection has frames not yet handed out (tp_hub_next_ready). */
int tp__hub_has_ready(const tp_hub *hub);
/* The hub's store (tp_hub_config.store), or NULL. */
tp_store *tp__hub_store(const tp_hub *hub);
/* The observer (one at a time), or NULL. */
const tp__observer *tp__hub_observer(const tp_hub *hub);
void tp__hub_set_observer(tp_hub *hub, const tp__observer *ob);

#endif /* TP_CORE_HUBAPI_H */
