/*
 * A tenant's session (hub.c): its private models, its subscriptions to
 * shared models and its client records (exactly-once delivery).
 */
#ifndef TP_CORE_SESSION_H
#define TP_CORE_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/model.h"
#include "transports.h"
#include "util/buf.h"
#include "util/map.h"
#include "util/vec.h"

#define TP__CLIENT_ID_MAX 64 /* PROTOCOL.md: client ids */
#define TP__OUTCOMES 256     /* PROTOCOL.md: outcomes remembered per client id */
/* What a client record and an outcome cost against client_record_bytes:
 * about what the store keeps of them (the key, the ref, the message). */
#define TP__CLIENT_COST(idlen) (64 + (idlen))
#define TP__OUTCOME_COST(msglen) (16 + (msglen))

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
    int olog;    /* a cluster node: 1 while its outcomes are read from the log (order.c) */
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
    tp__vec ord_ops; /* struct tp__op *: its writes queued in the shared order (order.c) */
};

/* ---- hub.c: sessions and client records ---- */
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
/* tp__session_sub finds a session's subscription to a shared model. Inline:
 * journal.c needs it, and would otherwise call hub.c (a cycle). */
static inline tp__sub *
tp__session_sub(tp_session *s, const char *sid)
{
    return tp__map_get(&s->subs, sid);
}
/* tp__session_ready loads an evicted session's contents back; returns
 * TP_OK or a negative code. */
int tp__session_ready(tp_session *s);

#endif /* TP_CORE_SESSION_H */
