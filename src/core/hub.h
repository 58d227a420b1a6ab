/*
 * The hub's internal structures, shared by the files of the core:
 *   hub.c      tenants, private and shared models, subscriptions, host writes
 *   model.c    a model's value, rev, history and the messages that reveal it
 *   merge.c    merge strategies: lww, lww-map (field stamps), custom
 *   conn.c     a connection: the protocol of PROTOCOL.md without sockets
 *   outbox.c   a connection's outbox and the frames built from it
 *   request.c  the handshake seen by the key function
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
#include "transports.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/map.h"
#include "util/vec.h"

#define TP__FRAME_MAX (64 * 1024) /* PROTOCOL.md: a batch frame is at most 64 KiB */
#define TP__KEY_MAX 256           /* tenant keys, model ids, sids */
#define TP__CLIENT_ID_MAX 64      /* PROTOCOL.md: client ids */
#define TP__OUTCOMES 256          /* PROTOCOL.md: outcomes remembered per client id */
/* What a client record and an outcome cost against client_record_bytes:
 * about what the store keeps of them (the key, the ref, the message). */
#define TP__CLIENT_COST(idlen) (64 + (idlen))
#define TP__OUTCOME_COST(msglen) (16 + (msglen))
#define TP__RESUME_EXTRA 256        /* ids a resume may list beyond the models it can see */
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

    tp__vec presence; /* struct tp__presence * (presence.c): connections' states here */
} tp__model;

struct tp__sub {
    tp_session *session;
    tp__model *model;
    tp_access access;
    /* The model's rev when the tenant's access last changed, or when it
     * subscribed again after an unsubscription (0: never): a client that
     * resumes from a rev at or below it may hold a stale access, and gets a
     * snapshot. */
    int64_t access_rev;
    size_t idx; /* index in model->subs */
};

/* What one client id's writes came to, for exactly-once delivery. */
typedef struct tp__client {
    char id[4 * TP__CLIENT_ID_MAX + 1]; /* 64 characters of UTF-8 */
    tp_session *session;
    int64_t highest; /* the highest ref processed with a recorded outcome */
    uint64_t used;   /* the session's use counter when last used: the oldest is evicted */
    unsigned conns;  /* live connections named with this id: never evicted while > 0 */
    size_t bytes;    /* what it costs against client_record_bytes (TP__CLIENT_COST...) */
    unsigned start, len;
    /* Storage (journal.c): outcomes recorded ever (the newest one's number;
     * outcome k of the ring has seq - len + 1 + k), what the store holds. */
    uint64_t seq, seq_saved, seq_floor;
    int jdirty;
    size_t jidx; /* in hub->jclients */
    struct {
        int64_t ref;
        tp__buf *msg; /* the encoded ack or error, sent again on a resend */
    } outcomes[TP__OUTCOMES];
} tp__client;

struct tp_session {
    tp_hub *hub;
    char *tenant;
    char *tenant_json; /* the tenant key as a JSON string, for `hello` */
    tp__map models;    /* private id -> tp__model * */
    uint64_t next_id;
    tp__map subs;     /* sid -> tp__sub * */
    tp__map gone;     /* sids this tenant was unsubscribed from (hub.c, remember_gone) */
    tp__map gone_ids; /* private ids of deleted models */
    tp__vec conns;    /* tp_conn *, each knowing its index here */
    tp__map clients;  /* client id -> tp__client * */
    uint64_t client_uses;
    size_t client_bytes; /* the sum of its client records' bytes */
    int pinned;          /* handed to the host by tp_hub_tenant: lives as long as the hub */
    int loaded;          /* its models, subscriptions and clients are in memory */
    const char *iname;   /* the tenant key interned (tp__hub_intern), once it stamped */
    int64_t idle_since;  /* hub clock ms: the last use without a connection */
    int jdirty;          /* storage: the tenant's record changed (index in hub->jsessions) */
    size_t jidx;
    uint64_t jepoch; /* the epoch of its last change noted: evicted once released */
    /* Pattern-checking steps its writes owe, as of pattern_at (hub clock
     * ms): conn.c, TP__PATTERN_SHARE_STEPS. */
    double pattern_debt;
    int64_t pattern_at;
};

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
};

/* ---- hub.c ---- (and hubapi.h: tp__valid_key, tp__hub_now) */
/* tp__hub_session finds or makes a tenant's session; pin: the host keeps it. */
tp_session *tp__hub_session(tp_hub *hub, const char *tenant, int pin);
/* tp__session_clear frees what a session holds (models, subscriptions, taken
 * off their shared models, client records, gone ids); tp__session_free
 * closes its connections, clears it and frees it. */
void tp__session_clear(tp_session *s);
void tp__session_free(tp_session *s);
/* tp__client_free frees a client record and its remembered outcomes. */
void tp__client_free(tp__client *cl);
/* tp__client_trim keeps a session's client records within client_record_bytes
 * (conn.c): the least recently used records no live connection holds go
 * first, then the oldest outcomes of `keep` (the record just written, never
 * evicted: at least its newest outcome stays). */
void tp__client_trim(tp_session *s, tp__client *keep);
/* tp__session_release frees an unpinned session that holds nothing. */
void tp__session_release(tp_session *s);
/* tp__publish_pending publishes a model's pending host value, if any: returns
 * the members changed (0: none, or nothing pending) or a negative code. */
int tp__publish_pending(tp__model *m);
tp__sub *tp__session_sub(tp_session *s, const char *sid);
/* tp__set_pending makes v a model's pending host value (takes the reference). */
int tp__set_pending(tp__model *m, json_t *v, tp_error *err);
/* tp__parse_value parses a host value: an object, nulls stripped, defaults filled, valid. */
json_t *tp__parse_value(const tp_hub *hub, const tp_schema *schema, const char *text,
                        tp_error *err);

/* tp__session_ready loads an evicted session's contents back; returns
 * TP_OK or a negative code. */
int tp__session_ready(tp_session *s);
/* tp__hub_intern returns a copy of a tenant key that lives as long as the
 * hub (lww-map stamps name tenants that may be evicted), or NULL. */
const char *tp__hub_intern(tp_hub *hub, const char *tenant);

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
} tp__change;

void tp__change_free(tp__change *ch);
/* tp__change_add appends a member change (takes the value reference, even on
 * failure); returns 0 or TP_ENOMEM. */
int tp__change_add(tp__change *ch, const char *key, json_t *value, int same);

/*
 * tp__model_commit validates a change against the schema, applies it,
 * bumps the rev, encodes the patch once, keeps it in history and fans it out.
 * `origin` is the writing connection (NULL for the host), `except` a
 * connection that gets no patch (a private write's writer).
 * Returns the number of members changed (0: nothing to publish), or a
 * negative code with err filled (TP_EINVALID, TP_ENOMEM).
 */
int tp__model_commit(tp__model *m, tp__change *ch, tp_conn *origin, tp_conn *except, tp_error *err);

/* ---- merge.c ---- */
/* tp__merge_compute turns a write's merge patch into a change of the model. */
int tp__merge_compute(tp__model *m, const json_t *patch, const tp__stamp *stamp, tp_conn *origin,
                      tp__change *ch, tp_error *err);
/* tp__stamp_now takes a fresh stamp from the hub's hybrid logical clock. */
void tp__stamp_now(tp_hub *hub, tp__stamp *st);
/* tp__stamp_observe clamps a client's ts and moves the hub's clock past it. */
void tp__stamp_observe(tp_hub *hub, tp__stamp *st);
int tp__stamp_cmp(const tp__stamp *a, const tp__stamp *b);
void tp__stamps_free(tp__map *stamps);

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
/* tp__fanout sends a message to every live connection that sees the model. */
void tp__fanout(tp__model *m, tp__buf *msg, tp_conn *except);

/* ---- conn.c ---- */
void tp__conn_send_snapshot(tp_conn *c, tp__model *m, tp_access access);

#endif /* TP_CORE_HUB_H */
