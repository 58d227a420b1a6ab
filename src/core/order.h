/*
 * The shared order (issue 18): several hubs, one per node, keep the same
 * models through an outside log (Redis, src/cluster/clog.c) that orders
 * every model's changes. docs/internals/order.md describes the design.
 *
 * The core cannot include the cluster layer, so, as with the store
 * (journal.h), it declares here the calls it makes, and the daemon
 * (src/daemon/cluster.c) implements them on the cluster layer and feeds the
 * answers back through the tp__order_* calls below, on the loop's thread.
 *
 * With an order, a change of a model (a client's write, a host's value) is
 * merged on the model as the node holds it at rev r, without changing it,
 * and appended to the log at r. Only when the log has it (rev r + 1) is it
 * applied, fanned out and acked. When another node got there first, the
 * node catches up from the log and merges the change again. Every node
 * applies the log's changes in rev order, so all hold the same values.
 */
#ifndef TP_CORE_ORDER_H
#define TP_CORE_ORDER_H

#include <stddef.h>
#include <stdint.h>

#include "transports.h"

/* An append: the model (owner, id) goes from base_rev to base_rev + 1. */
typedef struct tp__order_append {
    const char *owner; /* a private model's tenant, "" for a shared one */
    const char *id;
    int64_t base_rev;  /* 0: the model is created */
    const char *entry; /* the change as every node applies it (order.c's format) */
    size_t entry_len;
    const char *record; /* the model's record after the change (a snapshot) */
    size_t record_len;
    const char *tenant; /* the writer's tenant, or NULL (host) */
    const char *client; /* the writer's client id, or NULL (host, or no client id) */
    int64_t ref;
    /* The writer's ack, recorded as the ref's outcome (a private model's with
     * the change, atomically; a shared model's after it: the writer's client
     * record is under its tenant, elsewhere on a Redis Cluster), or NULL. */
    const char *outcome;
    size_t outcome_len;
} tp__order_append;

/* What a read found (tp__order_read_done). */
typedef enum {
    TP__ORDER_ABSENT = 0,   /* no such model in the log */
    TP__ORDER_ENTRIES = 1,  /* entries after the reader's rev, in rev order, up to rev */
    TP__ORDER_SNAPSHOT = 2, /* the record at rev */
    TP__ORDER_DELETED = 3   /* deleted at rev */
} tp__order_state;

typedef struct tp__order_entry {
    int64_t rev;
    char kind; /* 'a' a change, 'd' a deletion */
    const char *entry;
    size_t entry_len;
} tp__order_entry;

typedef struct tp__order_read {
    tp__order_state state;
    int64_t rev;
    const char *record;
    size_t record_len;
    const tp__order_entry *entries;
    size_t n;
} tp__order_read;

/*
 * What a backend does. Each call returns TP_OK and answers later, exactly
 * once, through the tp__order_* call named; or fails (err filled) and never
 * answers. be is the backend's pointer given to tp__hub_set_order.
 */
struct tp__order_item;
typedef struct tp__order_ops {
    /* append: atomically, if the model is at a->base_rev, append the entry at
     * base_rev + 1, store the record (and the outcome), publish the entry to
     * the nodes following the model. Answer: tp__order_appended. */
    int (*append)(void *be, const tp__order_append *a, tp_error *err);
    /* append_many: n changes of one model in one atomic call, a[i] going
     * from a[0].base_rev + i; the record is a[n - 1]'s. Answer:
     * tp__order_appended_many (dup: the index of a change whose writer's
     * ref has an outcome already, with conflict 2). May be NULL: one change
     * per append. */
    int (*append_many)(void *be, const tp__order_append *a, size_t n, tp_error *err);
    /* read: what a node at after_rev needs to reach the current rev (entries,
     * or the snapshot); after_rev 0 asks for the snapshot. Answer:
     * tp__order_read_done. */
    int (*read)(void *be, const char *owner, const char *id, int64_t after_rev, tp_error *err);
    /* follow: start (on 1) or stop (on 0) getting the model's appends, each
     * given to tp__order_message. No answer. */
    int (*follow)(void *be, const char *owner, const char *id, int on, tp_error *err);
    /* outcomes: a client's outcomes the log recorded (private writes' with
     * their change, shared writes' after it). Answer: tp__order_outcomes_done.
     * May be NULL: a node then knows only the outcomes it made. */
    int (*outcomes)(void *be, const char *tenant, const char *client, tp_error *err);
    /* remove: delete the model from the log if it is at base_rev (a
     * tombstone at base_rev + 1; a model made again under the id goes on
     * from it). Answer: tp__order_appended (ignored: the model is gone here). */
    int (*remove)(void *be, const char *owner, const char *id, int64_t base_rev, tp_error *err);
    /* catalog_put: atomically, if expect < 0 or the catalog's version is
     * expect, set (body non-NULL) or delete every item, raise the version
     * and publish "op" to every node. Answer: tp__order_catalog_done. */
    int (*catalog_put)(void *be, int64_t expect, const char *op, size_t op_len,
                       const struct tp__order_item *items, size_t n, tp_error *err);
    /* catalog_load: the catalog's version and every item, atomically.
     * Answer: tp__order_catalog_loaded. The backend follows the catalog's
     * messages from tp__hub_set_order on, handing each to
     * tp__order_catalog_message. */
    int (*catalog_load)(void *be, tp_error *err);
    /* catalog_version: the catalog's version now. Answer:
     * tp__order_catalog_version. */
    int (*catalog_version)(void *be, tp_error *err);
} tp__order_ops;

/*
 * The catalog (catalog.c; docs/internals/order.md, "The catalog"): what
 * exists on every node, beside the models' logs: named schemas, private and
 * shared models (by schema name and merge), subscriptions. Items are opaque
 * to the backend: a field and a JSON body, NULL when deleted.
 */
typedef struct tp__order_item {
    const char *field;
    size_t field_len;
    const char *body; /* NULL: deleted */
    size_t body_len;
} tp__order_item;

/* conflict 1: expect did not match (version: the catalog's). */
void tp__order_catalog_done(tp_hub *hub, int conflict, int64_t version, const tp_error *err);
void tp__order_catalog_loaded(tp_hub *hub, int64_t version, const tp__order_item *items, size_t n,
                              const tp_error *err);
void tp__order_catalog_message(tp_hub *hub, int64_t version, const char *op, size_t len);
void tp__order_catalog_version(tp_hub *hub, int64_t version, const tp_error *err);

/*
 * tp__hub_set_order makes the hub keep its models in the shared order: every
 * model it holds, and every model made later, is read from the log (or
 * created there) before it takes a change, and followed. Call it once,
 * before anything is served, on a hub without a store. Returns TP_OK or
 * TP_EARG (a store, or an order already) or TP_ENOMEM.
 */
int tp__hub_set_order(tp_hub *hub, const tp__order_ops *ops, void *be, tp_error *err);

/* The backend's answers, on the loop's thread. err non-NULL: the call failed
 * (the log's state is unknown: an append may or may not have happened).
 * conflict: 0 appended at rev, 1 a conflict (the model is at rev), 2 the
 * writer's ref has an outcome in the log already (an earlier append of the
 * same write, through another node): nothing was written, and was (when not
 * NULL) is that outcome, which the writer gets. */
void tp__order_appended(tp_hub *hub, const char *owner, const char *id, int conflict, int64_t rev,
                        const char *was, size_t was_len, const tp_error *err);
void tp__order_appended_many(tp_hub *hub, const char *owner, const char *id, int conflict,
                             int64_t rev, size_t dup, const char *was, size_t was_len,
                             const tp_error *err);
void tp__order_read_done(tp_hub *hub, const char *owner, const char *id, const tp__order_read *res,
                         const tp_error *err);
/* A client's outcomes in the log: ascending refs, each its ack or error. */
typedef struct tp__order_outcome {
    int64_t ref;
    const char *bytes;
    size_t len;
} tp__order_outcome;
typedef struct tp__order_outcomes {
    int64_t highest;    /* the highest ref with an outcome (found 0: none) */
    uint64_t forgotten; /* outcomes the log no longer keeps */
    const tp__order_outcome *items;
    size_t n;
} tp__order_outcomes;
void tp__order_outcomes_done(tp_hub *hub, const char *tenant, const char *client,
                             const tp__order_outcomes *res, const tp_error *err);

/* An append of a followed model, from any node (this one included). */
void tp__order_message(tp_hub *hub, const char *owner, const char *id, const tp__order_entry *e);
/* Messages may have been missed (the backend lost its link): every model
 * reads what it missed. */
void tp__order_resync(tp_hub *hub);

/* How long a change waits for a log that cannot be reached (its link is
 * down) before it is refused with `internal`, and how many changes may wait
 * in all the hub's queues (past it, writes are refused with rate_limited). */
#define TP__ORDER_WAIT_MS 5000
#define TP__ORDER_MAX_QUEUED 65536
void tp__order_set_wait(tp_hub *hub, uint32_t wait_ms, size_t max_queued);

/* tp__order_tick ends the changes that waited too long (tp_hub_sync calls it). */
void tp__order_tick(tp_hub *hub);

/* tp__order_unsynced counts the models not yet read from the log: a node
 * serves once it is 0. */
size_t tp__order_unsynced(const tp_hub *hub);

/* Counters, for the metrics and the benchmarks. */
typedef struct tp__order_stats {
    uint64_t appends, conflicts, failures, reads, applied, snapshots;
} tp__order_stats;
void tp__order_get_stats(const tp_hub *hub, tp__order_stats *out);

#endif /* TP_CORE_ORDER_H */
