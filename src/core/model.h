/*
 * A model (model.c): its value, rev, history, encoded snapshots and, for
 * shared models, its merge strategy and lww-map field stamps; and the change
 * a merge computes (merge.h) and tp__model_commit applies.
 */
#ifndef TP_CORE_MODEL_H
#define TP_CORE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "transports.h"
#include "util/buf.h"
#include "util/map.h"
#include "util/vec.h"

#define TP__ENVELOPE 1024           /* room for a snapshot's envelope around its value */
#define TP__MAX_STAMPS 4096         /* lww-map fields per model, tombstones included */
#define TP__TS_COUNT_MAX 2147483647 /* the largest `count` of a client's ts */

typedef enum { TP__LWW, TP__LWW_MAP, TP__CUSTOM } tp__merge_kind;

/* A lww-map field stamp: (wall, count, tenant, conn), compared in that order.
 * The host's stamps have tenant "" and conn 0. */
typedef struct tp__stamp {
    int64_t wall;
    int64_t count;
    const char *tenant; /* a session's tenant key (lives as long as the hub) or "" */
    uint64_t conn;
} tp__stamp;

/* A field's stamp as a model keeps it (a tombstone when the field is absent). */
typedef struct tp__stamp_entry {
    tp__stamp st;
    char field[]; /* the field name, the stamp map's key */
} tp__stamp_entry;

/* One published change, kept for resume: the encoded `patch` message. */
typedef struct tp__hist {
    int64_t from;
    int64_t rev;
    tp__buf *msg;
} tp__hist;

typedef struct tp__sub tp__sub;

typedef struct tp__model {
    tp_hub *hub;
    int shared;        /* scope: 1 shared, 0 private */
    char *id;          /* the private id or the sid */
    tp_session *owner; /* private models: the session */
    tp_schema *schema;
    json_t *value; /* a root object without null members; below the root, immutable */
    size_t bytes;  /* the encoded size of value (an upper bound), kept for the size limit */
    int64_t rev;
    /* 1 when the id named an earlier model (deleted, unshared): a client
     * may list the old model's revs in a resume; rev 1 gets a snapshot. */
    int64_t reborn;
    json_t *pending;  /* a host value waiting for the next sync, or NULL */
    size_t dirty_idx; /* index in hub->dirty while pending != NULL */

    /* `"scope":"...","id":"..."`, encoded once for every message of the model. */
    char *addr;
    size_t addr_len;

    /* Shared models: the merge strategy and the subscriptions. */
    tp_merge merge; /* merge.name points at merge_name */
    char *merge_name;
    tp__merge_kind kind;
    tp__map stamps; /* lww-map: field -> tp__stamp_entry *, tombstones included */
    tp__vec subs;   /* tp__sub *, each knowing its index here */

    /* The last published patches, oldest first, for resume. */
    tp__hist *hist;
    unsigned hist_cap, hist_start, hist_len;
    size_t hist_bytes;

    uint64_t mark; /* resume: the model was listed by the resume with this mark */

    /* Encoded snapshots for read [0] and write [1] access, valid at snap_rev. */
    tp__buf *snap[2];
    int64_t snap_rev[2];

    /* Storage (journal.c): changed since the last seal (index in
     * hub->jmodels), and what of the history the store holds. */
    int jdirty;
    size_t jidx;
    int64_t hist_saved;  /* the newest rev whose patch is stored */
    int64_t hist_floor;  /* stored patches below this rev were deleted */
    size_t hist_dropped; /* bytes of patches dropped from the history since (journal.c) */
    int jschema;         /* the schema is known to be stored (in hub->schemas, for good) */

    tp__vec presence; /* struct tp__presence * (presence.c): connections' states here */

    struct tp__ord *ord; /* the shared order's state (order.c), NULL without one */
} tp__model;

/* ---- model.c ---- */
tp__model *tp__model_new(tp_hub *hub, int shared, const char *id, const tp_schema *schema,
                         json_t *value);
void tp__model_free(tp__model *m);
/* tp__value_bytes returns the encoded size of a value. */
size_t tp__value_bytes(const json_t *v);
/* tp__check_size refuses (TP_EINVALID) a value whose snapshot would pass
 * max_message_bytes. */
int tp__check_size(const tp_hub *hub, size_t bytes, tp_error *err);
/* tp__model_snapshot returns the encoded snapshot for an access (borrowed). */
tp__buf *tp__model_snapshot(tp__model *m, tp_access access);
/* tp__model_history_push keeps a published patch for resume (takes a reference). */
void tp__model_history_push(tp__model *m, int64_t from, int64_t rev, tp__buf *msg);
/* tp__model_history_from returns the index (0-based from the oldest) of the
 * entry with from == rev, or -1 when that rev is no longer kept. */
long tp__model_history_find(const tp__model *m, int64_t rev);
tp__buf *tp__model_history_at(const tp__model *m, unsigned i);
/* tp__model_history_clear drops the kept patches (the rev moved on without them). */
void tp__model_history_clear(tp__model *m);

/*
 * A change computed by a merge: the top-level members it sets (value) or
 * deletes (value NULL). A member whose new value equals the old one is kept
 * with `same` set: it publishes nothing, but a lww-map write that won the
 * field still records its stamp there.
 */
typedef struct tp__change {
    size_t n, cap;
    struct tp__member {
        const char *key; /* borrowed from the patch, or from `hold` */
        json_t *value;   /* new reference, or NULL for a deletion */
        int same;
    } * members;
    json_t *hold; /* a reference keeping borrowed keys alive (a custom merge's result) */
    int stamped;  /* lww-map: record `stamp` on every member when committed */
    tp__stamp stamp;
    int quiet; /* another node's change, from the shared log: its observer heard of it */
} tp__change;

/* tp__change_free and tp__change_add: merge.h. */

/*
 * tp__model_commit validates a change against the schema, applies it,
 * bumps the rev, encodes the patch once, keeps it in history and fans it out.
 * `origin` is the writing connection (NULL for the host), `except` a
 * connection that gets no patch (a private write's writer).
 * Returns the number of members changed (0: nothing to publish), or a
 * negative code with err filled (TP_EINVALID, TP_ENOMEM).
 */
int tp__model_commit(tp__model *m, tp__change *ch, tp_conn *origin, tp_conn *except, tp_error *err);

/*
 * tp__model_commit in two steps, for a change that must first be accepted
 * elsewhere (the shared order, order.c). tp__model_prepare checks the change
 * (validate: against the schema and the size limit; 0 for a change the
 * shared log already accepted), sets *bytes to the model's encoded size
 * after it and, when msg is not NULL, encodes the `patch` message by origin
 * (a connection id or "host") into *msg (NULL when nothing changes). It
 * changes nothing. Returns the members it changes or a negative code.
 * tp__model_apply then applies it with that message (msg NULL: a change of
 * stamps only), at the model's current rev, which must be the one it was
 * prepared at. Returns the members changed, or TP_ENOMEM (nothing changed).
 */
int tp__model_prepare(tp__model *m, const tp__change *ch, int validate, const char *origin,
                      tp__buf **msg, size_t *bytes, tp_error *err);
int tp__model_apply(tp__model *m, tp__change *ch, tp__buf *msg, size_t bytes, tp_conn *except,
                    tp_error *err);

#endif /* TP_CORE_MODEL_H */
