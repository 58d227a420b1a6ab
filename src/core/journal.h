/*
 * The interface between the hub and durable storage (DESIGN.md, "Layers":
 * the store sees every applied change and commits them in one transaction
 * per loop iteration).
 *
 * The core is the layer above the store, so it cannot include the store's
 * headers: it declares here the operations it calls, and each backend in
 * src/store/ (SQLite, memory) implements them, like a transport implements
 * a library's transport ops. A `tp_store` (public, opaque) is a backend's
 * struct whose first member is `struct tp_store`.
 *
 * What is stored is records: a kind, a key of up to two strings and an
 * integer, and a body. The core encodes and decodes the bodies (JSON text);
 * a backend never looks inside one. Keys:
 *
 *   kind          k1            k2          n      body
 *   META          name          ""          0      JSON (the hub's counters and clock)
 *   TENANT        tenant        ""          0      JSON (next id, deleted ids, gone sids)
 *   MODEL         owner         id          0      JSON (schema, merge, rev, value, stamps)
 *   HIST          owner         id          rev    the encoded `patch` message
 *   SUB           tenant        sid         0      JSON (access, access_rev)
 *   CLIENT        tenant        client id   0      JSON (highest ref)
 *   OUTCOME       tenant        client id   ref    the encoded `ack` or `error`
 *
 * owner is a private model's tenant key, or "" for a shared model (a tenant
 * key is never empty). Strings are UTF-8 without NUL; bodies may be any
 * bytes of body_len.
 *
 * Calls and transactions: begin, then any number of put/del/del_below/
 * del_key, then commit or rollback. scan runs outside a transaction (or
 * inside one, seeing its own writes). Every call returns TP_OK or a negative
 * code with err filled (TP_EINTERNAL: the message names the backend, the call
 * and the cause, such as "sqlite: commit: disk I/O error"); a failed commit
 * leaves nothing of the transaction stored and ends it. A failed call inside
 * a transaction dooms it: later writes and the commit fail until rollback
 * (SQLite may have rolled back already). A write outside a transaction is a
 * transaction of its own. src/store/store.h has the rest of what backends
 * promise. Thread: one thread at a time.
 */
#ifndef TP_CORE_JOURNAL_H
#define TP_CORE_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "transports.h"

typedef enum {
    TP__REC_META = 0,
    TP__REC_TENANT,
    TP__REC_MODEL,
    TP__REC_HIST,
    TP__REC_SUB,
    TP__REC_CLIENT,
    TP__REC_OUTCOME,
    TP__REC_KINDS
} tp__rec_kind;

typedef struct tp__rec {
    tp__rec_kind kind;
    const char *k1; /* "" when the kind does not use it */
    const char *k2; /* "" when the kind does not use it */
    int64_t n;      /* 0 when the kind does not use it */
    const char *body;
    size_t body_len;
} tp__rec;

/* A scan's callback: returns 0 to go on; anything else stops the scan, and
 * scan returns it. rec and its strings are valid during the call only. */
typedef int (*tp__rec_fn)(const tp__rec *rec, void *user);

typedef struct tp__store_ops {
    const char *name; /* "sqlite", "memory" */
    int (*begin)(tp_store *s, tp_error *err);
    /* put inserts or replaces the record with the same (kind, k1, k2, n). */
    int (*put)(tp_store *s, const tp__rec *rec, tp_error *err);
    /* del deletes one record; deleting a missing record is not an error. */
    int (*del)(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, int64_t n,
               tp_error *err);
    /* del_below deletes the records of (kind, k1, k2) whose n is below n. */
    int (*del_below)(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, int64_t n,
                     tp_error *err);
    /* del_key deletes every record of (kind, k1, k2), or of (kind, k1) when
     * k2 is NULL. */
    int (*del_key)(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, tp_error *err);
    int (*commit)(tp_store *s, tp_error *err);
    void (*rollback)(tp_store *s);
    /* scan calls fn for every record of kind (k1 NULL), of (kind, k1) (k2
     * NULL), or of (kind, k1, k2), ordered by k1, k2 (bytewise) and n. */
    int (*scan)(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, tp__rec_fn fn,
                void *user, tp_error *err);
    void (*free)(tp_store *s);
} tp__store_ops;

struct tp_store {
    const tp__store_ops *ops;
    /* The hub using the store, or NULL: a store serves one hub at a time. */
    tp_hub *hub;
};

#endif /* TP_CORE_JOURNAL_H */
