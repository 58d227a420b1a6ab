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
 * caused it. pending says it has records to store (a transaction is due
 * even when the hub noted nothing); committed says which are durable.
 */
struct tp__txn;
typedef struct tp__observer {
    void (*model_changed)(void *user, int shared, const char *tenant, const char *id, int64_t rev);
    void (*conn_event)(void *user, const char *tenant, const char *conn, int opened);
    /* Adds its records to the transaction tx of sequence seq (tx NULL: no
     * store; they count as stored); TP_OK means they are in it. */
    int (*journal)(void *user, struct tp__txn *tx, uint64_t seq, tp_error *err);
    int (*pending)(void *user);
    /* Every transaction up to seq is durable. */
    void (*committed)(void *user, uint64_t seq);
    void *user;
} tp__observer;

/* ---- hub.c ---- */
/* tp__valid_key says whether a tenant key, id or sid is usable: 1 to
 * TP__KEY_MAX bytes of UTF-8. */
int tp__valid_key(const char *key);

/* ---- ticket.c, order.c, catalog.c: a cluster node's host changes ---- */
/*
 * Tickets: each change the host makes that goes to a cluster's log (a host
 * API patch, a model made, a change of what exists) has one, so the host
 * API answers only once the log has it (HOST-API.md, "Durability"), as it
 * waits for a commit on one node. tp__ticket_last is the last one given;
 * tp__ticket_state says of (from, to]: 1 some are still open, 0 all ended
 * well, or a negative code (err: the first failure). The server asks at the
 * end of each loop iteration, as it does for commits. Without a cluster no
 * ticket is ever given.
 */
uint64_t tp__ticket_last(const tp_hub *hub);
int tp__ticket_state(const tp_hub *hub, uint64_t from, uint64_t to, tp_error *err);
/* tp__order_barrier opens a ticket that ends once the node applied the
 * catalog's version as it is now (and read the models it named that the
 * node lacked): what a call through another node did before is then here
 * (the host API asks before each call). 0 without a catalog.
 * tp__order_refresh opens one that ends once the model read what the log
 * has past the node's rev (it may be behind: a private model no connection
 * here sees is not followed, a message may be on its way); 0 when not in a
 * cluster. */
uint64_t tp__order_barrier(tp_hub *hub);
uint64_t tp__order_refresh(tp_hub *hub, const char *owner, const char *id);

/* ---- journal.c: transactions, durability, the store's reads ---- */
/*
 * tp__hub_seal ends an epoch: what is noted becomes one transaction, queued
 * for the committer (with no store: nothing is held). Returns the epoch
 * sealed: everything changed before the call is durable once
 * tp__hub_released reaches it. made: set to 1 when a transaction was made.
 * The transport calls it at the end of each loop iteration.
 */
uint64_t tp__hub_seal(tp_hub *hub, int *made);
/* Every message queued in an epoch up to this one may leave. */
uint64_t tp__hub_released(const tp_hub *hub);
/* tp__hub_collect takes in what the committer made durable: frames are
 * released (their connections become ready) and the observer is told. The
 * transport calls it when the committer's wake callback fired. */
void tp__hub_collect(tp_hub *hub);
/* tp__hub_set_wake registers the callback the committer calls (its own
 * thread, under its lock: only signal the loop, as uv_async_send does)
 * after each attempt. Registered, the hub is driven by the transport's
 * loop: tp_hub_next_ready no longer commits. NULL unregisters. */
void tp__hub_set_wake(tp_hub *hub, void (*fn)(void *user), void *user);
/* tp__hub_commit seals and waits until durable (tp_hub_commit); returns
 * TP_OK (also without a store) or TP_EINTERNAL while the store fails: the
 * transactions stay queued, memory stays ahead, frames stay held. */
int tp__hub_commit(tp_hub *hub, tp_error *err);
/* Asks the committer to try again after a failure. */
void tp__hub_commit_retry(tp_hub *hub);
/* Whether transactions wait for a retry (commits are failing). */
int tp__hub_commit_pending(const tp_hub *hub);
/* tp__hub_writable is TP_OK, or TP_EINTERNAL (err names the storage
 * failure) while commits fail: new writes are refused until one succeeds. */
int tp__hub_writable(tp_hub *hub, tp_error *err);
/* The store's state for health checks: TP__STORE_NONE (no store),
 * TP__STORE_OK, or TP__STORE_FAILING while the last commit failed (writes
 * are refused: it turns OK again with the next commit that succeeds). */
enum { TP__STORE_NONE, TP__STORE_OK, TP__STORE_FAILING };
int tp__hub_store_state(const tp_hub *hub);
/* Reads of the store from the loop thread (a tenant's load, the host
 * API's listings, the webhooks' records at start): _begin seals, waits
 * until every transaction is durable and keeps the committer off the store
 * until _end. TP_EINTERNAL (nothing to end) while commits fail. */
int tp__store_read_begin(tp_hub *hub, tp_error *err);
void tp__store_read_end(tp_hub *hub);

/* ---- outbox.c ---- */
/*
 * A transport that frames for itself (the built-in server) takes frames
 * straight into its own write buffer: tp__conn_frame_plan says how many
 * messages from the head the next frame holds (0: none) and its length;
 * tp__conn_frame_take writes that frame (a message alone, or a batch
 * `[m,m,...]`) to dst and takes the messages off the outbox.
 */
/* tp__conn_sendable says whether the message at the head may leave. */
int tp__conn_sendable(const tp_conn *c);
size_t tp__conn_frame_plan(const tp_conn *c, size_t *len);
void tp__conn_frame_take(tp_conn *c, size_t n, char *dst);

/* ---- hubapi.c: what the hub's config and state say, read for net ---- */
/* The hub's clock, ms (tp_hub_config.clock). Here, not in hub.c, so that
 * merge.c and presence.c, which only need the time, do not call hub.c. */
int64_t tp__hub_now(tp_hub *hub);
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
