/*
 * The hub (hub.c): tenants, shared models, host writes. Each module of the
 * core keeps its structures in its own header:
 *   model.h     a model's value, rev, history and the messages that reveal it (model.c)
 *   merge.h     merge strategies: lww, lww-map (field stamps), custom (merge.c)
 *   session.h   a tenant's session, subscriptions and client records (hub.c)
 *   conn_int.h  a connection and its outbox (conn.c, outbox.c)
 *   request.c   the handshake seen by the key function
 *
 * Ownership in one picture: the hub owns sessions and shared models; a
 * session owns its private models, its subscriptions' records, its client
 * records and (by pointer) its connections; a model owns its value, its
 * history and its encoded snapshots. Nothing is shared between tenants but
 * shared models, and those only through subscription records.
 */
#ifndef TP_CORE_HUB_H
#define TP_CORE_HUB_H

#include <stdint.h>

#include <jansson.h>

#include "core/hubapi.h"
#include "core/model.h"
#include "core/order.h"
#include "transports.h"
#include "util/log.h"
#include "util/map.h"
#include "util/vec.h"

#define TP__KEY_MAX 256 /* tenant keys, model ids, sids */

/* The observer of the hub's changes (tp__observer) is in hubapi.h. */

struct tp_hub {
    const tp__observer *observer; /* or NULL */
    tp_key_fn key;
    void *key_user;
    tp_verify_fn verify; /* token authentication, or NULL */
    void *verify_user;
    tp_clock_fn clock;
    void *clock_user;
    tp_limits limits;
    unsigned tick_ms;
    tp__logger log;
    /* Counters of tp_hub_stats; what the hub holds is counted when asked. */
    uint64_t writes_accepted, refused[10], deliveries, syncs;

    tp__map tenants;   /* tenant -> tp_session * */
    tp__map shared;    /* sid -> tp__model * */
    tp__map gone_sids; /* sids of unshared models (hub.c, remember_gone) */
    uint64_t next_sid;
    uint64_t next_conn;
    uint64_t conn_bound;        /* with a store: connection numbers up to here may have been used */
    unsigned char conn_key[16]; /* connection ids: tp__prp64 of the number under this key */
    uint64_t seed;

    tp__vec dirty; /* tp__model * with a pending host value */
    tp__vec ready; /* tp_conn * with a non-empty outbox not yet handed out */

    /* Presence (presence.c): states waiting for the tick, the host's callback. */
    tp__vec presence_dirty; /* struct tp__presence * */
    tp_presence_fn presence_cb;
    void *presence_user;

    int64_t hlc_wall, hlc_count; /* the hybrid logical clock of lww-map stamps */

    /* Storage (journal.c, restore.c): what changed since the last seal. */
    tp_store *store;
    struct tp__committer *committer; /* the commit thread, with a store */
    tp__map schemas;   /* schema key -> tp_schema * (a reference) known to be stored */
    tp__map merges;    /* name -> const tp_merge * (config.merges) */
    tp__vec jmodels;   /* tp__model * with jdirty */
    tp__vec jsessions; /* tp_session * with jdirty */
    tp__vec jclients;  /* tp__client * with jdirty */
    tp__vec jsubs;     /* struct tp__jsub *: subscriptions to store again */
    tp__vec jdels;     /* struct tp__jdel *: records to delete */
    int jmeta;         /* the hub's record changed */
    int jbroken;       /* a change could not be noted: the next seal stores everything */
    tp__sb jsb;        /* the seal's scratch text, kept from seal to seal (journal.c) */
    int restored;      /* tp_hub_restored */
    int lazy;          /* sessions are loaded from the store when first needed */
    tp__map names;     /* interned tenant keys of lww-map stamps */
    unsigned evict_idle_ms;
    size_t memory_budget;
    uint64_t evictions, loads, resident_bytes;
    /* Epochs: one per seal. Messages are tagged with the epoch they are
     * queued in; those up to `released` may leave (UINT64_MAX without a
     * store). inflight: the sequences (epochs) of the transactions sealed
     * and not yet durable, oldest first. */
    uint64_t epoch, released, observed;
    uint64_t *inflight;
    size_t in_head, in_len, in_cap;
    tp__vec held;      /* tp_conn * holding messages not yet released */
    int async;         /* a transport's loop drives commits (tp__hub_set_wake) */
    int was_failing;   /* for the log: the committer's state last seen */
    uint64_t mark_gen; /* the last mark handed out to a resume */
    int freeing;       /* tp_hub_free is running: sessions go all at once */

    /* The shared order (order.c), or NULL: the models' log, and the models
     * not yet read from it. */
    const tp__order_ops *order;
    void *order_be;
    size_t unsynced;
    tp__order_stats ostats;
    tp__vec ord_stalled; /* tp__model * whose log cannot be reached */
    uint32_t ord_wait_ms;
    size_t ord_queued, ord_max_queued;
    /* Tickets of the host's changes in the order (order.c, order.h). */
    uint64_t ord_ticket;
    tp__vec ord_open;                /* tickets not ended, as (void *)(uintptr_t) */
    struct tp__ord_fail *ord_failed; /* the last failures, a ring (order.c) */
    unsigned ord_failed_next;
    /* The catalog (catalog.c): what exists on every node. */
    struct tp__catalog *cat;
    int cat_applying;         /* a change from the catalog: not announced again */
    const char *adopt_record; /* a model made from the log's record (catalog.c) */
    size_t adopt_len;
    int64_t adopt_rev;
    struct tp__names *snames; /* schemas by name (names.c), or NULL */
};

/* ---- hub.c ---- (and hubapi.h: tp__valid_key, tp__hub_now) */
/* tp__session_close closes a session's connections with code (4403, 4404)
 * after what they have pending; returns how many. */
int tp__session_close(tp_session *s, int code);
/* tp__hub_session finds or makes a tenant's session; pin: the host keeps it. */
tp_session *tp__hub_session(tp_hub *hub, const char *tenant, int pin);
/* tp__publish_pending publishes a model's pending host value, if any: returns
 * the members changed (0: none, or nothing pending) or a negative code. */
int tp__publish_pending(tp__model *m);
/* tp__host_patch returns the merge patch that makes the model's value
 * value, as a host write merges it (new), or NULL (out of memory). */
json_t *tp__host_patch(const tp__model *m, const json_t *value);
/* tp__set_pending makes v a model's pending host value (takes the reference). */
int tp__set_pending(tp__model *m, json_t *v, tp_error *err);
/* tp__parse_value parses a host value: an object, nulls stripped, defaults filled, valid. */
json_t *tp__parse_value(const tp_hub *hub, const tp_schema *schema, const char *text,
                        tp_error *err);
/* tp__hub_intern returns a copy of a tenant key that lives as long as the
 * hub (lww-map stamps name tenants that may be evicted), or NULL. */
const char *tp__hub_intern(tp_hub *hub, const char *tenant);

#endif /* TP_CORE_HUB_H */
